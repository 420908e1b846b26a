//! Metric test files (`metrics/**/tests/*.yaml`): loading and rendering.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kpi::harness::test_file(&String::from_utf8_lossy(data));
});
