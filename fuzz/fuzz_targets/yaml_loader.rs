//! Metric and model files: the YAML loader with its span mapping, validation, and every
//! diagnostic renderer. Input: one or more files separated by a line `---8<---`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // kpi's own hook: a panic kpi catches is an error, as in the `kpi` binary; one that
    // escapes is still a crash.
    init: kpi::guard::install(),
    |data: &[u8]| {
    kpi::harness::definitions_text(&String::from_utf8_lossy(data));
    }
);
