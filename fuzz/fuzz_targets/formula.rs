//! Formulas and filters: the SQL parser, kpi's checks and diagnostics rendering.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // kpi's own hook: a panic kpi catches is an error, as in the `kpi` binary; one that
    // escapes is still a crash.
    init: kpi::guard::install(),
    |data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        kpi::harness::formula(text);
    }
    }
);
