#![no_main]
//! `cargo fuzz run chunked`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::chunked`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::chunked(data));
