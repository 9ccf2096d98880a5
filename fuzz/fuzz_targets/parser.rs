#![no_main]
//! `cargo fuzz run parser`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::parser`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::parser(data));
