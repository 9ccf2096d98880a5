#![no_main]
//! `cargo fuzz run lexer`: see `fuzz/README.md`; the entry is `relaydc_fuzz::entries::lexer`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| relaydc_fuzz::entries::lexer(data));
