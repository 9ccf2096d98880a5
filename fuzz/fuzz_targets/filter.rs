#![no_main]
//! `cargo fuzz run filter`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::filter`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::filter(data));
