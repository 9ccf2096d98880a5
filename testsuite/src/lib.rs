//! Cross-crate tests live in `tests/`; see README.md in this folder.
