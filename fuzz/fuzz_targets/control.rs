#![no_main]
//! `cargo fuzz run control`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::control`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::control(data));
