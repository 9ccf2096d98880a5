#![no_main]
//! `cargo fuzz run request_head`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::request_head`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::request_head(data));
