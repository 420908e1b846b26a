//! The source layer fed truncated and bit-flipped tables: the first byte picks CSV
//! (even) or Parquet (odd), the rest is the file.
#![no_main]

libfuzzer_sys::fuzz_target!(
    // kpi's own hook: a panic kpi catches is an error, as in the `kpi` binary; one that
    // escapes is still a crash.
    init: kpi::guard::install(),
    |data: &[u8]| {
    if let Some((&kind, bytes)) = data.split_first() {
        kpi::harness::source(bytes, kind % 2 == 0);
    }
    }
);
