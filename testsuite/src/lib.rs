//! Cross-crate tests live in `tests/`; see README.md in this folder. This library holds
//! what they share.

use std::path::{Path, PathBuf};

/// The workspace root (where `corpus/` and `spec/` are).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Gives the corpus's private key files the modes git cannot carry: 0600, as a deploy
/// host keeps them, except files whose name says `readable` (0644), which the RD0711
/// cases need. Every test that checks or compiles corpus files calls it first, so a
/// fresh clone (keys at 0644 by the umask) and a working tree agree.
pub fn fix_key_modes() {
    use std::os::unix::fs::PermissionsExt;
    fn walk(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p);
            } else if p.extension().is_some_and(|x| x == "key") {
                let readable = p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("readable"));
                let mode = if readable { 0o644 } else { 0o600 };
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
            }
        }
    }
    walk(&workspace().join("corpus"));
}
