//! `relaydc compile FILE -o plan.bin`: check, freeze, encode, write atomically.

use super::{analyze, render, CheckArgs};
use crate::diag::{Diagnostics, Severity};
use crate::freeze::{self, Binding};
use crate::source::{FileId, SourceMap};
use relaydc_spec::plan::{self, container};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct CompileArgs {
    #[command(flatten)]
    pub check: CheckArgs,
    /// Where to write the plan (written to a temporary file first, then renamed).
    #[arg(short = 'o', long = "output", value_name = "PLAN")]
    pub output: PathBuf,
    /// Keep names and file paths in the plan; relayd-run resolves names and reads TLS
    /// material when it starts (for compiling without the deploy host's secrets).
    #[arg(long)]
    pub late_bind: bool,
}

pub fn run(args: &CompileArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if args.check.files.len() != 1 {
        let _ = writeln!(err, "relaydc compile: give exactly one configuration file");
        return 2;
    }
    let binding = if args.late_bind {
        Binding::Late
    } else {
        Binding::Now
    };
    // Binding now means the deploy host's files must be there.
    let mut check = args.check.clone();
    check.no_file_checks = args.late_bind;
    let mut analysis = analyze(&check, None);
    for u in &analysis.unreadable {
        let _ = writeln!(err, "relaydc: cannot read {u}");
    }
    if !analysis.unreadable.is_empty() {
        return 2;
    }
    let errors = count_errors(&analysis.diagnostics);
    if errors > 0 {
        let _ = render(&check, &analysis, err);
        let _ = writeln!(
            err,
            "relaydc: {} not written: the configuration has {errors} error{}",
            args.output.display(),
            if errors == 1 { "" } else { "s" }
        );
        return 1;
    }
    let (Some(config), Some(&(main, release))) = (analysis.configs.first(), analysis.mains.first())
    else {
        return 2;
    };
    let names = source_names(&analysis.sources, main);
    let mut diags = Diagnostics::default();
    let frozen = freeze::freeze(
        config,
        release,
        names.clone(),
        &analysis.sources.rules,
        binding,
        &mut diags,
    );
    // Warnings of the check, then whatever binding found.
    let mut all = Diagnostics::default();
    all.extend(std::mem::take(&mut analysis.diagnostics));
    all.extend(diags.sorted());
    analysis.diagnostics = all.sorted();
    let errors = count_errors(&analysis.diagnostics);
    if errors > 0 || !analysis.diagnostics.is_empty() {
        let _ = render(&check, &analysis, err);
    }
    if errors > 0 {
        let _ = writeln!(
            err,
            "relaydc: {} not written: {errors} deploy-host fact{} could not be bound",
            args.output.display(),
            if errors == 1 { "" } else { "s" }
        );
        return 1;
    }
    let files: Vec<(&str, &[u8])> = analysis
        .sources
        .files()
        .zip(&names)
        .map(|((_, f), n)| (n.as_str(), f.text.as_bytes()))
        .collect();
    let digest = container::source_digest(&files);
    let (body, keys) = match (plan::encode(&frozen.plan), encode_keys(&frozen.keys)) {
        (Ok(b), Ok(k)) => (b, k),
        (Err(e), _) | (_, Err(e)) => {
            let _ = writeln!(err, "relaydc: cannot encode the plan: {e}");
            return 2;
        }
    };
    let mut flags = container::Flags::EMPTY;
    if args.late_bind {
        flags = flags.union(container::Flags::LATE_BIND);
    }
    let bytes = container::write(
        &format!("relaydc {}", env!("CARGO_PKG_VERSION")),
        flags,
        digest,
        &body,
        &keys,
    );
    if let Err(e) = write_atomically(&args.output, &bytes, !keys.is_empty()) {
        let _ = writeln!(err, "relaydc: cannot write {}: {e}", args.output.display());
        return 2;
    }
    let _ = writeln!(
        out,
        "{}: plan written ({} bytes{})",
        args.output.display(),
        bytes.len(),
        if keys.is_empty() {
            String::new()
        } else {
            format!(
                ", {} private key{}, mode 0600",
                frozen.keys.keys.len(),
                if frozen.keys.keys.len() == 1 { "" } else { "s" }
            )
        }
    );
    0
}

fn count_errors(d: &[crate::diag::Diagnostic]) -> usize {
    d.iter().filter(|d| d.severity == Severity::Error).count()
}

/// An empty keys section stays empty (no archive at all), so plans without keys carry
/// no keys section.
fn encode_keys(keys: &plan::Keys) -> Result<Vec<u8>, plan::DecodeError> {
    if keys.keys.is_empty() {
        Ok(Vec::new())
    } else {
        plan::encode_keys(keys)
    }
}

/// Source names as the plan records them: relative to the main file's directory, so
/// the plan does not depend on where it was built.
fn source_names(sources: &SourceMap, main: FileId) -> Vec<String> {
    let main_dir = sources
        .identity(main)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    sources
        .files()
        .map(|(id, f)| {
            let full = sources.identity(id);
            match full.strip_prefix(&main_dir) {
                Ok(rel) => rel.to_string_lossy().into_owned(),
                Err(_) => f.name.clone(),
            }
        })
        .collect()
}

/// Writes beside the target and renames, so a reader never sees half a plan; a plan
/// with private keys is created with mode 0600 before any byte is written.
fn write_atomically(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plan".to_string());
    let tmp = dir
        .map(Path::to_path_buf)
        .unwrap_or_default()
        .join(format!(".{name}.tmp{}", std::process::id()));
    let mode = if secret { 0o600 } else { 0o644 };
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
