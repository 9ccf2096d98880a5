#![no_main]
//! `cargo fuzz run dns`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::dns`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::dns(data));
