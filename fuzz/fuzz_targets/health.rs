#![no_main]
//! `cargo fuzz run health`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::health`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::health(data));
