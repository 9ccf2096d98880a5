#![no_main]
//! `cargo fuzz run plan`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::plan`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::plan(data));
