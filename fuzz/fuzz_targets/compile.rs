#![no_main]
//! `cargo fuzz run compile`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::compile`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::compile(data));
