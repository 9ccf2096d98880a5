//! The fuzz targets' entry functions, shared with the seed-corpus test of the main
//! workspace (`testsuite/tests/fuzz_seeds.rs` compiles `entries.rs` itself).

pub mod entries;
