//! Metric and model files: the YAML loader with its span mapping, validation, and every
//! diagnostic renderer. Input: one or more files separated by a line `---8<---`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    kpi::harness::definitions_text(&String::from_utf8_lossy(data));
});
