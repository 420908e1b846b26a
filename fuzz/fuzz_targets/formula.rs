//! Formulas and filters: the SQL parser, kpi's checks and diagnostics rendering.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        kpi::harness::formula(text);
    }
});
