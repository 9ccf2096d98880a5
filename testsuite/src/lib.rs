//! Cross-crate tests live in `tests/`; see README.md in this folder. This library holds
//! what they share.

use std::path::{Path, PathBuf};

/// The workspace root (where `corpus/` and `spec/` are).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}
