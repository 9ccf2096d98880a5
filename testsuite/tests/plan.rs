//! `relaydc compile` and `relaydc inspect`.
//!
//! * every `corpus/valid/` file and every seed example relayd of its era accepted
//!   compiles, and its `relaydc inspect` output is a snapshot
//!   (`snapshots/plan__inspect_NAME.snap`); a file whose hosts are names, or whose TLS
//!   files only the deploy host has, compiles with `--late-bind`;
//! * compiling is reproducible: twice, and from another working directory with
//!   includes written relative to the config, gives the same bytes;
//! * a configuration with errors writes nothing, not even a temporary file;
//! * a plan holding private keys is mode 0600.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test that cannot read its own fixtures should fail loudly"
)]

use relaydc_testsuite::workspace;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Tests change the working directory; one at a time.
static CWD: Mutex<()> = Mutex::new(());

fn run(args: &[&str]) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("relaydc")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let code = relaydc::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("relaydc-plan-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// `# args:` of a corpus file (or of its `.expect` beside it).
fn corpus_args(path: &Path) -> Vec<String> {
    let expect = path.with_extension("expect");
    let text =
        std::fs::read_to_string(if expect.exists() { &expect } else { path }).expect("corpus file");
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("args:"))
        .flat_map(|a| a.split_whitespace().map(str::to_string))
        // compile binds files itself; `--late-bind` replaces `--no-file-checks`; `--run
        // compile` only tells the corpus runner which command to run.
        .filter(|a| !matches!(a.as_str(), "--no-file-checks" | "--run" | "compile"))
        .collect()
}

fn outcome(path: &Path) -> String {
    let expect = path.with_extension("expect");
    let text =
        std::fs::read_to_string(if expect.exists() { &expect } else { path }).expect("corpus file");
    text.lines()
        .find_map(|l| l.trim_start_matches('#').trim().strip_prefix("expect:"))
        .unwrap_or("")
        .trim()
        .to_string()
}

fn compilable() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["valid", "seed"] {
        for e in std::fs::read_dir(workspace().join("corpus").join(dir)).expect("corpus dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "conf") && outcome(&p) != "error" {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn every_accepted_config_compiles_and_inspects() {
    let _cwd = CWD.lock().unwrap_or_else(|e| e.into_inner());
    relaydc_testsuite::fix_key_modes();
    std::env::set_current_dir(workspace()).expect("workspace root");
    let out_dir = temp_dir("inspect");
    let mut failures = Vec::new();
    for path in compilable() {
        let rel = path
            .strip_prefix(workspace())
            .unwrap()
            .to_string_lossy()
            .to_string();
        let stem = path.file_stem().unwrap().to_string_lossy().to_string();
        let plan = out_dir.join(format!("{stem}.bin"));
        let plan_s = plan.to_string_lossy().to_string();
        let args = corpus_args(&path);
        let mut argv: Vec<&str> = vec!["compile"];
        argv.extend(args.iter().map(String::as_str));
        argv.extend([rel.as_str(), "-o", plan_s.as_str()]);
        let (mut code, _, mut err) = run(&argv);
        let mut mode = if args.iter().any(|a| a == "--late-bind") {
            "late-bound"
        } else {
            "bound at compile time"
        };
        if code == 1 && (err.contains("RD0604") || err.contains("RD0601") || err.contains("RD0602"))
        {
            // Deploy-host facts this machine lacks: bind them at start instead.
            argv.insert(1, "--late-bind");
            (code, _, err) = run(&argv);
            mode = "late-bound";
        }
        if code != 0 {
            failures.push(format!("{rel}: compile exited {code}\n{err}"));
            continue;
        }
        let (icode, text, ierr) = run(&["inspect", plan_s.as_str()]);
        if icode != 0 {
            failures.push(format!("{rel}: inspect exited {icode}\n{ierr}"));
            continue;
        }
        let (jcode, json, _) = run(&["inspect", "--format", "json", plan_s.as_str()]);
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        if jcode != 0 || doc["plan"]["globals"].is_null() {
            failures.push(format!(
                "{rel}: inspect --format json is not a plan document"
            ));
        }
        insta::with_settings!({ omit_expression => true, description => format!("{rel} ({mode})") }, {
            insta::assert_snapshot!(format!("inspect_{stem}"), text);
        });
    }
    let _ = std::fs::remove_dir_all(&out_dir);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

fn compile_bytes(cwd: &Path, config: &str, out: &Path, extra: &[&str]) -> Vec<u8> {
    std::env::set_current_dir(cwd).expect("cwd");
    let out_s = out.to_string_lossy().to_string();
    let mut argv = vec!["compile"];
    argv.extend_from_slice(extra);
    argv.extend([config, "-o", out_s.as_str()]);
    let (code, _, err) = run(&argv);
    assert_eq!(code, 0, "{config}: {err}");
    std::fs::read(out).expect("plan written")
}

#[test]
fn compiling_is_reproducible() {
    let _cwd = CWD.lock().unwrap_or_else(|e| e.into_inner());
    relaydc_testsuite::fix_key_modes();
    let dir = temp_dir("repro");
    let root = workspace();
    let valid = root.join("corpus/valid");
    // Twice from the workspace root.
    let a = compile_bytes(
        &root,
        "corpus/valid/include-relative.conf",
        &dir.join("a.bin"),
        &[],
    );
    let b = compile_bytes(
        &root,
        "corpus/valid/include-relative.conf",
        &dir.join("b.bin"),
        &[],
    );
    assert_eq!(a, b, "two compiles differ");
    // From the config's own directory: the includes are written relative to it.
    let c = compile_bytes(&valid, "include-relative.conf", &dir.join("c.bin"), &[]);
    assert_eq!(a, c, "compiling from another directory changes the plan");
    // From somewhere else entirely, with an absolute path to the config.
    let abs = valid
        .join("include-relative.conf")
        .to_string_lossy()
        .to_string();
    let d = compile_bytes(&dir, &abs, &dir.join("d.bin"), &[]);
    assert_eq!(a, d, "compiling by absolute path changes the plan");
    // With embedded TLS material too.
    let tls = [
        "--root",
        "corpus/valid/files/root",
        "--now",
        "2026-11-26T00:00:00Z",
    ];
    let e = compile_bytes(
        &root,
        "corpus/valid/openbsd-example.conf",
        &dir.join("e.bin"),
        &tls,
    );
    let f = compile_bytes(
        &root,
        "corpus/valid/openbsd-example.conf",
        &dir.join("f.bin"),
        &tls,
    );
    assert_eq!(e, f);
    assert_eq!(
        std::fs::metadata(dir.join("e.bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "a plan with private keys must be mode 0600"
    );
    assert_eq!(
        std::fs::metadata(dir.join("a.bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );
    std::env::set_current_dir(&root).expect("cwd");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn errors_write_nothing() {
    let _cwd = CWD.lock().unwrap_or_else(|e| e.into_inner());
    relaydc_testsuite::fix_key_modes();
    std::env::set_current_dir(workspace()).expect("workspace root");
    let dir = temp_dir("errors");
    let out = dir.join("plan.bin");
    let out_s = out.to_string_lossy().to_string();
    let (code, _, err) = run(&["compile", "corpus/seed/example3.conf", "-o", &out_s]);
    assert_eq!(code, 1);
    assert!(
        err.contains("RD0302") && err.contains("not written"),
        "{err}"
    );
    // Nothing at all in the directory: no plan, no temporary file.
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    // An unresolvable name is a compile error (and `--late-bind` keeps the name).
    let (code, _, err) = run(&[
        "compile",
        "corpus/invalid/RD0604-unresolvable-name.conf",
        "-o",
        &out_s,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("RD0604"), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    let (code, _, err) = run(&[
        "compile",
        "--late-bind",
        "corpus/invalid/RD0604-unresolvable-name.conf",
        "-o",
        &out_s,
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, text, _) = run(&["inspect", &out_s]);
    assert!(
        text.contains("backend.invalid (resolved at start)"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
