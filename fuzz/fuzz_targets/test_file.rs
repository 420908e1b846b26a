//! Metric test files (`metrics/**/tests/*.yaml`): loading and rendering.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // kpi's own hook: a panic kpi catches is an error, as in the `kpi` binary; one that
    // escapes is still a crash.
    init: kpi::guard::install(),
    |data: &[u8]| {
    kpi::harness::test_file(&String::from_utf8_lossy(data));
    }
);
