//! `relayd-run --check PLAN` and `relayd-run PLAN` as a user runs them: the real binary on
//! real files. A compiled plan passes; a sample of broken files (truncated, changed in
//! header, body or keys, foreign, empty, another format version, inconsistent) exits 1
//! with one line naming the file, what is wrong and the rebuild command.
//!
//! The exhaustive corruption sweeps run the library (`testsuite/tests/plan_loader.rs`).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use relaydc_spec::plan::container::{self, REBUILD_COMMAND};
use relaydc_spec::plan::{self, Target};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_relayd-run");

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fresh directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir = std::env::temp_dir().join(format!(
            "relayd-run-check-{}-{tag}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The OpenBSD example relayd.conf compiled by relaydc's CLI entry point (workspace root
/// as the current directory), keypair embedded: header, body and a keys section.
fn sample(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    std::env::set_current_dir(workspace()).expect("workspace root");
    let out = dir.0.join("plan.bin");
    let argv = [
        "relaydc",
        "compile",
        "corpus/valid/openbsd-example.conf",
        "-o",
        out.to_str().expect("utf-8 temp path"),
        "--root",
        "corpus/valid/files/root",
        "--now",
        "2026-11-26T00:00:00Z",
    ]
    .map(Into::into)
    .to_vec();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = relaydc::cli::run(argv, &mut o, &mut e);
    assert_eq!(code, 0, "relaydc compile: {}", String::from_utf8_lossy(&e));
    let bytes = std::fs::read(&out).expect("read the plan");
    (out, bytes)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn relayd_run(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("run relayd-run");
    Run {
        code: out.status.code().expect("exit code, not a signal"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn header_digest(file: &mut [u8]) {
    let digest: [u8; 32] = Sha256::digest(&file[..224]).into();
    file[224..256].copy_from_slice(&digest);
}

#[test]
fn a_compiled_plan_passes_the_check() {
    let dir = TempDir::new("ok");
    let (path, _) = sample(&dir);
    let p = path.to_str().unwrap();
    for flag in ["--check", "-n"] {
        let r = relayd_run(&[flag, p]);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (0, "", "configuration OK\n"),
            "{flag}"
        );
    }
    // The other options are accepted with --check too.
    let r = relayd_run(&["-d", "-v", "-v", "-s", "/tmp/x.sock", "--check", p]);
    assert_eq!((r.code, r.stderr.as_str()), (0, "configuration OK\n"));
}

#[test]
fn without_check_a_plan_needing_more_than_tcp_relays_is_refused() {
    let dir = TempDir::new("serve");
    let (path, _) = sample(&dir);
    let p = path.to_str().unwrap();
    // The OpenBSD example has HTTP and TLS relays and a redirect, all of which this
    // version serves; a user it cannot become still refuses it before anything starts.
    let r = relayd_run(&["-d", "-u", "relayd-run-no-such-user", p]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        !r.stderr.contains("cannot serve the plan yet")
            && r.stderr.contains("unknown user relayd-run-no-such-user"),
        "{}",
        r.stderr
    );
    // An invalid plan is refused the same way as with --check.
    let bad = dir.write("bad.bin", b"");
    let r = relayd_run(&[bad.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("too short"), "{}", r.stderr);
}

#[test]
fn usage_errors_exit_2() {
    let r = relayd_run(&[]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("Usage: relayd-run"), "{}", r.stderr);
    let r = relayd_run(&["--bogus", "plan.bin"]);
    assert_eq!(r.code, 2);
    let r = relayd_run(&["--version"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.starts_with("relayd-run "), "{}", r.stdout);
}

#[test]
fn broken_plans_fail_the_check_with_one_sentence() {
    let dir = TempDir::new("broken");
    let (_, good) = sample(&dir);
    let header = container::read_header(&good).unwrap();
    let body_start = container::HEADER_LEN;
    let keys_start = header.public_len() as usize;
    let len = good.len();
    assert!(len > keys_start, "the sample has a keys section");

    let cut = |n: usize| good[..n].to_vec();
    let flip = |at: usize| {
        let mut b = good.clone();
        b[at] ^= 0xff;
        b
    };
    let conf = std::fs::read(workspace().join("corpus/valid/openbsd-example.conf")).unwrap();
    let mut v2 = good.clone();
    v2[8..12].copy_from_slice(&3u32.to_le_bytes());
    header_digest(&mut v2);
    let mut flags = good.clone();
    flags[12] |= 0x80;
    header_digest(&mut flags);
    let mut long = good.clone();
    long.extend_from_slice(b"\n");
    let inconsistent = {
        let opened = container::open(&good).unwrap();
        let mut p = plan::decode(opened.body).unwrap();
        for r in &mut p.relays {
            for f in &mut r.forwards {
                if let Target::Table { table, .. } = &mut f.target {
                    *table = 40;
                }
            }
        }
        container::write(
            &header.compiler_version,
            header.flags,
            header.source_digest,
            &plan::encode(&p).unwrap(),
            opened.keys,
        )
    };
    let garbage_body = {
        let opened = container::open(&good).unwrap();
        let body: Vec<u8> = (0..opened.body.len()).map(|i| (i * 13) as u8).collect();
        container::write(
            &header.compiler_version,
            header.flags,
            header.source_digest,
            &body,
            opened.keys,
        )
    };

    let cut_last = format!(
        "the plan is truncated: the file has {} bytes but its header says {len}",
        len - 1
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "empty",
            Vec::new(),
            "the file is too short to be a relaydc plan (0 bytes",
        ),
        (
            "relayd-conf",
            conf,
            "this is not a relaydc plan: it starts with the text \"# expect: warnin\"",
        ),
        (
            "binary",
            (0u8..=255).rev().cycle().take(600).collect(),
            "this is not a relaydc plan: it starts with the bytes ff fe fd",
        ),
        ("cut-4", cut(4), "too short to be a relaydc plan (4 bytes"),
        (
            "cut-100",
            cut(100),
            "too short to be a relaydc plan (100 bytes",
        ),
        (
            "cut-header",
            cut(body_start),
            "the plan is truncated: the file has 256 bytes",
        ),
        ("cut-half", cut(len / 2), "the plan is truncated"),
        ("cut-body-end", cut(keys_start), "the plan is truncated"),
        ("cut-last", cut(len - 1), &cut_last),
        (
            "trailing",
            long,
            "the plan has 1 unexpected bytes after its end",
        ),
        ("magic", flip(0), "this is not a relaydc plan"),
        (
            "version-byte",
            flip(8),
            "the plan has format version 253, but this relayd-run reads version 2",
        ),
        (
            "version-2",
            v2,
            "the plan has format version 3, but this relayd-run reads version 2",
        ),
        (
            "flags",
            flags,
            "the plan uses features this relayd-run does not know",
        ),
        (
            "compiler-field",
            flip(20),
            "the plan's header does not match its checksum",
        ),
        (
            "reserved",
            flip(200),
            "the plan's header does not match its checksum",
        ),
        (
            "header-digest",
            flip(250),
            "the plan's header does not match its checksum",
        ),
        (
            "body-first",
            flip(body_start),
            "the plan's body does not match its checksum",
        ),
        (
            "body-middle",
            flip((body_start + keys_start) / 2),
            "the plan's body does not match its checksum",
        ),
        (
            "body-last",
            flip(keys_start - 1),
            "the plan's body does not match its checksum",
        ),
        (
            "keys-first",
            flip(keys_start),
            "the plan's keys section does not match its checksum",
        ),
        (
            "keys-last",
            flip(len - 1),
            "the plan's keys section does not match its checksum",
        ),
        (
            "garbage-body",
            garbage_body,
            "the plan's body is not a plan of format version 2",
        ),
        (
            "inconsistent",
            inconsistent,
            "the plan is inconsistent: index 40 out of range in relay \"wwwtls\"",
        ),
    ];
    for (name, bytes, expected) in &cases {
        let path = dir.write(&format!("{name}.bin"), bytes);
        let p = path.to_str().unwrap();
        let r = relayd_run(&["--check", p]);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);
        assert_eq!(r.stdout, "", "{name}");
        let line = r
            .stderr
            .strip_suffix('\n')
            .unwrap_or_else(|| panic!("{name}: no final newline: {:?}", r.stderr));
        assert!(!line.contains('\n'), "{name}: more than one line: {line}");
        let prefix = format!("relayd-run: {p}: ");
        assert!(line.starts_with(&prefix), "{name}: {line}");
        assert!(
            line.contains(expected),
            "{name}: expected …{expected}… in\n{line}"
        );
        assert!(line.contains(REBUILD_COMMAND), "{name}: {line}");
    }

    let missing = dir.0.join("missing.bin");
    let r = relayd_run(&["--check", missing.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stderr,
        format!(
            "relayd-run: {}: there is no such file; build the plan with `{REBUILD_COMMAND}`\n",
            missing.display()
        )
    );
}

/// Compiles `config` with `--late-bind` into `dir` and returns the plan's path.
fn late_plan(dir: &TempDir, config: &str, name: &str) -> PathBuf {
    std::env::set_current_dir(workspace()).expect("workspace root");
    let out = dir.0.join(name);
    let argv = [
        "relaydc",
        "compile",
        "--late-bind",
        config,
        "-o",
        out.to_str().expect("utf-8 temp path"),
    ]
    .map(Into::into)
    .to_vec();
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = relaydc::cli::run(argv, &mut o, &mut e);
    assert_eq!(code, 0, "relaydc compile: {}", String::from_utf8_lossy(&e));
    out
}

fn check_with(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(workspace())
        .output()
        .expect("run relayd-run");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn late_bound_plans_bind_at_check_time() {
    let dir = TempDir::new("late");
    // TLS material left as relayd's lookup paths: found under --root, missing on /.
    let tls = late_plan(&dir, "corpus/valid/openbsd-example.conf", "tls.bin");
    let tls = tls.to_str().unwrap();
    let (code, err) = check_with(&["--check", "--root", "corpus/valid/files/root", tls]);
    assert_eq!((code, err.trim()), (0, "configuration OK"));
    let (code, err) = check_with(&["--check", tls]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot read keypair 127.0.0.1")
            && err.contains("/etc/ssl/127.0.0.1.crt")
            && err.contains("1 late-bound fact could not be bound"),
        "{err}"
    );
    // Names: every one that does not resolve is reported, then the plan is refused.
    let names = late_plan(
        &dir,
        "corpus/valid/RD0304-invalid-address-names.conf",
        "n.bin",
    );
    let (code, err) = check_with(&["-n", names.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("cannot resolve `www1.example.com` (host 1 of table web:80)"),
        "{err}"
    );
    let invalid = late_plan(
        &dir,
        "corpus/invalid/RD0604-unresolvable-name.conf",
        "i.bin",
    );
    let (code, err) = check_with(&["-n", invalid.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot resolve `backend.invalid`"), "{err}");
    // A late plan whose names all resolve here (IP literals and localhost) passes.
    let local = dir.write(
        "local.conf",
        b"table <web> { localhost }\nrelay \"www\" {\n\tlisten on 127.0.0.1 port 8080\n\tforward to <web> port 80 check tcp\n}\n",
    );
    let plan = late_plan(&dir, local.to_str().unwrap(), "local.bin");
    let (code, err) = check_with(&["-n", plan.to_str().unwrap()]);
    assert_eq!((code, err.trim()), (0, "configuration OK"));
}
