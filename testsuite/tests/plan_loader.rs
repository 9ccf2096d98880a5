//! The plan loader of `relayd-run` (`relayd_run::load`, `load_public`) on real plan files:
//! plans compiled from the corpus load; every truncation, single-byte changes all over the
//! file, foreign files, other format versions and plans whose indexes point nowhere are
//! refused with one sentence that names the rebuild command, and never with a panic.
//!
//! The binary-level checks (`relayd-run --check`) are in `runtime/tests/check.rs`, where
//! cargo provides the binary's path.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use relayd_run::{load, load_public, Inconsistency, LoadError, Loaded, Problem};
use relaydc_spec::filter::{Prefix, SetOrClear};
use relaydc_spec::plan::container::{self, ContainerError, Flags, HEADER_LEN, REBUILD_COMMAND};
use relaydc_spec::plan::{self, KeyRef, Plan, Route, Router, Target};
use relaydc_testsuite::workspace;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

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
            "relayd-run-plan-loader-{}-{tag}-{}-{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `relaydc ARGS` through the compiler's real CLI entry point, with the workspace root as
/// the current directory (every test sets the same one).
fn relaydc(args: &[&str]) -> (i32, String) {
    std::env::set_current_dir(workspace()).expect("workspace root");
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("relaydc")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let code = relaydc::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err),
    )
}

/// Compiles `conf` (relative to the workspace root) into `dir/name` and returns its bytes.
fn compile(dir: &TempDir, name: &str, conf: &str, extra: &[&str]) -> (PathBuf, Vec<u8>) {
    let out = dir.path(name);
    let out_text = out.to_str().expect("utf-8 temp path");
    let mut args = vec!["compile", conf, "-o", out_text];
    args.extend_from_slice(extra);
    let (code, text) = relaydc(&args);
    assert_eq!(code, 0, "relaydc compile {conf} failed:\n{text}");
    let bytes = std::fs::read(&out).expect("read the compiled plan");
    (out, bytes)
}

/// The sample plan: OpenBSD's example relayd.conf, keypair embedded, one private key.
fn sample(dir: &TempDir) -> (PathBuf, Vec<u8>) {
    compile(
        dir,
        "sample.bin",
        "corpus/valid/openbsd-example.conf",
        &[
            "--root",
            "corpus/valid/files/root",
            "--now",
            "2026-11-26T00:00:00Z",
        ],
    )
}

fn header_digest(file: &mut [u8]) {
    let digest: [u8; 32] = Sha256::digest(&file[..224]).into();
    file[224..256].copy_from_slice(&digest);
}

/// Writes `plan` with the sample's header fields and the given keys bytes.
fn reencode(sample: &[u8], plan: &Plan, keys: &[u8]) -> Vec<u8> {
    let header = container::read_header(sample).expect("sample header");
    let body = plan::encode(plan).expect("encode plan");
    container::write(
        &header.compiler_version,
        header.flags,
        header.source_digest,
        &body,
        keys,
    )
}

fn keys_of(sample: &[u8]) -> Vec<u8> {
    container::open(sample).expect("sample opens").keys.to_vec()
}

/// Every refusal is one line that ends by naming the rebuild command.
fn assert_sentence(e: &LoadError) {
    let text = e.to_string();
    assert!(!text.contains('\n'), "more than one line: {text}");
    assert!(
        text.contains(REBUILD_COMMAND),
        "no rebuild command in: {text}"
    );
}

// ---------------------------------------------------------------------------------------
// Good plans
// ---------------------------------------------------------------------------------------

#[test]
fn compiled_plan_loads_whole_and_public() {
    let dir = TempDir::new("good");
    let (path, bytes) = sample(&dir);
    let loaded: Loaded = load(&path).expect("the sample plan loads");
    assert_eq!(
        loaded.keys.keys.len(),
        1,
        "one private key in the keys section"
    );
    assert!(loaded.header.flags.contains(Flags::HAS_KEYS));
    assert!(!loaded.header.flags.contains(Flags::LATE_BIND));
    assert!(!loaded.plan.relays.is_empty() && !loaded.plan.redirects.is_empty());
    assert_eq!(loaded.header.file_len(), bytes.len() as u64);

    let public = load_public(&path).expect("the sample plan loads for the relay process");
    assert_eq!(public.plan, loaded.plan);
    assert_eq!(public.header, loaded.header);
    assert!(public.header.keys_len > 0);

    assert_eq!(
        relayd_run::load_bytes(&bytes).expect("same bytes from memory"),
        loaded
    );
}

#[test]
fn late_bound_plans_load() {
    let dir = TempDir::new("late");
    for conf in [
        "corpus/valid/RD0601-tls-files-fixed.conf",
        "corpus/valid/RD0304-invalid-address-names.conf",
    ] {
        let name = format!(
            "{}.bin",
            Path::new(conf).file_stem().unwrap().to_str().unwrap()
        );
        let (path, _) = compile(&dir, &name, conf, &["--late-bind"]);
        let loaded = load(&path).unwrap_or_else(|e| panic!("{conf}: {e}"));
        assert!(loaded.header.flags.contains(Flags::LATE_BIND), "{conf}");
        assert!(
            loaded.keys.keys.is_empty(),
            "{conf}: late binding embeds no keys"
        );
        let public = load_public(&path).unwrap_or_else(|e| panic!("{conf}: {e}"));
        assert_eq!(public.plan, loaded.plan);
    }
}

// ---------------------------------------------------------------------------------------
// Corruption
// ---------------------------------------------------------------------------------------

#[test]
fn every_truncation_is_refused() {
    let dir = TempDir::new("trunc");
    let (_, bytes) = sample(&dir);
    let path = dir.path("cut.bin");
    for len in 0..bytes.len() {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let expected = if len < HEADER_LEN {
            ContainerError::TooShort { len: len as u64 }
        } else {
            ContainerError::Truncated {
                len: len as u64,
                expected: bytes.len() as u64,
            }
        };
        for (who, got) in [
            ("load", load(&path).err()),
            ("load_public", load_public(&path).err()),
        ] {
            let Some(e) = got else {
                panic!(
                    "{who} accepted the plan cut to {len} of {} bytes",
                    bytes.len()
                );
            };
            assert_eq!(
                e,
                LoadError::Container(expected.clone()),
                "{who}, {len} bytes"
            );
        }
    }
    assert_sentence(&load(&path).unwrap_err());
}

#[test]
fn trailing_bytes_are_refused() {
    let dir = TempDir::new("trail");
    let (_, mut bytes) = sample(&dir);
    let expected = bytes.len() as u64;
    bytes.push(0);
    let path = dir.write("long.bin", &bytes);
    let want = LoadError::Container(ContainerError::TrailingBytes {
        len: expected + 1,
        expected,
    });
    assert_eq!(load(&path).unwrap_err(), want);
    assert_eq!(load_public(&path).unwrap_err(), want);
    assert_sentence(&want);
}

/// The positions to change: all of them in a small file, else 1500 spread evenly plus the
/// section edges.
fn positions(len: usize, body_end: usize) -> Vec<usize> {
    if len <= 8192 {
        return (0..len).collect();
    }
    let mut p: Vec<usize> = (0..1500).map(|i| i * len / 1500).collect();
    p.extend([0, 7, 8, 11, 12, 255, 256, body_end - 1, body_end, len - 1]);
    p.retain(|&i| i < len);
    p.sort_unstable();
    p.dedup();
    p
}

#[test]
fn every_byte_change_is_refused() {
    let dir = TempDir::new("flip");
    let (_, bytes) = sample(&dir);
    let header = container::read_header(&bytes).unwrap();
    let body_end = header.public_len() as usize;
    assert!(bytes.len() > body_end, "the sample has a keys section");
    let path = dir.path("flipped.bin");
    let mut tried = 0;
    for pos in positions(bytes.len(), body_end) {
        for pattern in [0x01u8, 0x80, 0xff, 0x5a] {
            let mut changed = bytes.clone();
            changed[pos] ^= pattern;
            std::fs::write(&path, &changed).unwrap();
            tried += 1;
            // What the container must say, by where the byte is.
            let expected = match pos {
                0..=7 => None, // not a plan: the message shows the first bytes
                8..=11 => Some(ContainerError::WrongVersion {
                    found: u32::from_le_bytes(changed[8..12].try_into().unwrap()),
                }),
                12..=255 => Some(ContainerError::HeaderChecksum),
                _ if pos < body_end => Some(ContainerError::BodyChecksum),
                _ => Some(ContainerError::KeysChecksum),
            };
            let whole = match load(&path) {
                Ok(_) => panic!("load accepted byte {pos} ^ {pattern:#04x}"),
                Err(e) => e,
            };
            match &expected {
                None => assert!(
                    matches!(whole, LoadError::Container(ContainerError::NotAPlan { .. })),
                    "byte {pos} ^ {pattern:#04x}: {whole:?}"
                ),
                Some(want) => assert_eq!(
                    whole,
                    LoadError::Container(want.clone()),
                    "byte {pos} ^ {pattern:#04x}"
                ),
            }
            // The relay process never reads the keys: a change there is the signer's
            // to refuse; anything else it refuses the same way.
            match load_public(&path) {
                Ok(_) => assert!(
                    pos >= body_end,
                    "load_public accepted byte {pos} ^ {pattern:#04x}"
                ),
                Err(e) => {
                    assert!(pos < body_end, "load_public refused a keys byte: {e}");
                    assert_eq!(e, whole, "byte {pos} ^ {pattern:#04x}");
                }
            }
        }
    }
    assert!(tried >= 4000, "only {tried} changes tried");
    assert_sentence(&load(&path).unwrap_err());
}

#[test]
fn foreign_and_missing_files_are_refused() {
    let dir = TempDir::new("foreign");
    let conf = std::fs::read(workspace().join("corpus/valid/openbsd-example.conf")).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("relayd.conf", conf),
        ("empty", Vec::new()),
        ("binary", (0u8..=255).cycle().take(1000).collect()),
        ("magic-only", b"RELAYDPL".to_vec()),
    ];
    for (name, bytes) in &cases {
        let path = dir.write(name, bytes);
        let e = load(&path).unwrap_err();
        assert_eq!(load_public(&path).unwrap_err(), e, "{name}");
        assert_sentence(&e);
        let text = e.to_string();
        match *name {
            "relayd.conf" => assert!(
                text.contains("not a relaydc plan") && text.contains("compile it first"),
                "{text}"
            ),
            "binary" => assert!(text.contains("starts with the bytes 00 01 02"), "{text}"),
            _ => assert!(text.contains("too short"), "{name}: {text}"),
        }
    }
    let missing = dir.path("missing.bin");
    let e = load(&missing).unwrap_err();
    assert!(matches!(&e, LoadError::Read { kind, .. } if *kind == std::io::ErrorKind::NotFound));
    assert_eq!(load_public(&missing).unwrap_err(), e);
    assert_sentence(&e);
    // A directory is not a plan either (open works, reading does not).
    let e = load(&dir.0).unwrap_err();
    assert!(matches!(e, LoadError::Read { .. }), "{e:?}");
    assert_sentence(&e);
}

#[test]
fn other_format_versions_are_refused_with_the_version() {
    let dir = TempDir::new("version");
    let (_, bytes) = sample(&dir);
    for found in [0u32, 1, 3, 7, u32::MAX] {
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&found.to_le_bytes());
        header_digest(&mut other);
        let path = dir.write(&format!("v{found}.bin"), &other);
        let want = LoadError::Container(ContainerError::WrongVersion { found });
        assert_eq!(load(&path).unwrap_err(), want);
        assert_eq!(load_public(&path).unwrap_err(), want);
        let text = want.to_string();
        assert!(
            text.contains(&format!("format version {found}"))
                && text.contains(&format!("reads version {}", container::FORMAT_VERSION)),
            "{text}"
        );
        assert_sentence(&want);
    }
}

#[test]
fn bodies_and_keys_that_do_not_decode_are_refused() {
    let dir = TempDir::new("decode");
    let (_, bytes) = sample(&dir);
    let header = container::read_header(&bytes).unwrap();
    let good_body = container::open(&bytes).unwrap().body.to_vec();
    let good_keys = keys_of(&bytes);
    let write = |body: &[u8], keys: &[u8]| {
        container::write(
            &header.compiler_version,
            header.flags,
            header.source_digest,
            body,
            keys,
        )
    };
    // Right checksums, wrong contents: garbage, a cut archive, nothing.
    let garbage: Vec<u8> = (0..good_body.len()).map(|i| (i * 7 + 3) as u8).collect();
    let bodies = [
        garbage.clone(),
        good_body[..good_body.len() / 2].to_vec(),
        Vec::new(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let path = dir.write(&format!("body{i}.bin"), &write(body, &good_keys));
        let e = load(&path).unwrap_err();
        assert!(matches!(e, LoadError::Body { .. }), "body {i}: {e:?}");
        assert_eq!(load_public(&path).unwrap_err(), e);
        assert_sentence(&e);
        assert!(
            e.to_string()
                .contains(&format!("format version {}", container::FORMAT_VERSION)),
            "{e}"
        );
    }
    let path = dir.write("keys.bin", &write(&good_body, &garbage[..good_keys.len()]));
    let e = load(&path).unwrap_err();
    assert!(matches!(e, LoadError::Keys { .. }), "{e:?}");
    assert_sentence(&e);
    // The relay process does not read the keys, so it cannot tell.
    assert!(load_public(&path).is_ok());
}

// ---------------------------------------------------------------------------------------
// Consistency (indexes)
// ---------------------------------------------------------------------------------------

type Break = fn(&mut Plan);

#[test]
fn out_of_range_indexes_are_refused() {
    let dir = TempDir::new("index");
    let (path, bytes) = sample(&dir);
    let good = load(&path).unwrap().plan;
    let keys = keys_of(&bytes);
    // Re-encoding the unchanged plan gives the same file: the breakages below are all
    // that differs.
    assert_eq!(reencode(&bytes, &good, &keys), bytes);

    let wwwtls = good.relays.iter().position(|r| r.name == "wwwtls").unwrap();
    assert!(good.relays[wwwtls]
        .forwards
        .iter()
        .any(|f| matches!(f.target, Target::Table { .. })));
    let cases: Vec<(&str, Break, &str)> = vec![
        (
            "forward table",
            |p| {
                let n = p.tables.len() as u32;
                for r in &mut p.relays {
                    for f in &mut r.forwards {
                        if let Target::Table { table, .. } = &mut f.target {
                            *table = n;
                        }
                    }
                }
            },
            "index {tables} out of range in relay \"wwwtls\" (the table of a forward; the plan has {tables} tables)",
        ),
        (
            "relay protocol",
            |p| p.relays.iter_mut().for_each(|r| r.protocol = Some(99)),
            "index 99 out of range in relay \"wwwtls\" (the protocol;",
        ),
        (
            "relay keypair",
            |p| p.relays.iter_mut().for_each(|r| r.keypairs.push(42)),
            "index 42 out of range in relay \"wwwtls\" (a TLS keypair;",
        ),
        (
            "relay rule tables",
            |p| p.relays.iter_mut().for_each(|r| r.rule_tables.push(None)),
            "relay \"wwwtls\" binds 1 rule tables, but the plan's filter rules select 0",
        ),
        (
            "relay rule table instance",
            |p| {
                p.rule_tables.push("extra".into());
                p.relays.iter_mut().for_each(|r| r.rule_tables.push(Some(500)));
            },
            "index 500 out of range in relay \"wwwtls\" (a table filter rules forward to;",
        ),
        (
            "table host",
            |p| {
                let n = p.hosts.len() as u32;
                p.tables[0].hosts.push(n + 3);
            },
            "index {hosts+3} out of range in table 1 ",
        ),
        (
            "host table",
            |p| p.hosts[0].table = 1000,
            "index 1000 out of range in host 1 \"10.0.0.1\" (the host's table;",
        ),
        (
            "host parent 0",
            |p| p.hosts[1].parent = Some(0),
            "parent host id 0 out of range in host 2 ",
        ),
        (
            "host parent past the end",
            |p| {
                let n = p.hosts.len() as u32;
                p.hosts[1].parent = Some(n + 1);
            },
            "parent host id {hosts+1} out of range in host 2 ",
        ),
        (
            "redirect table",
            |p| p.redirects[0].tables[0].table = 77,
            "index 77 out of range in redirect \"www\" (a forward table;",
        ),
        (
            "router table",
            |p| {
                p.routers.push(Router {
                    name: "gw".into(),
                    disabled: false,
                    routes: Vec::new(),
                    table: Some(66),
                    rtable: None,
                    rtlabel: None,
                })
            },
            "index 66 out of range in router \"gw\" (the table;",
        ),
        (
            "route prefix",
            |p| {
                p.routers.push(Router {
                    name: "gw".into(),
                    disabled: false,
                    routes: vec![Route {
                        address: "10.0.0.0".parse().unwrap(),
                        prefixlen: 33,
                    }],
                    table: None,
                    rtable: None,
                    rtlabel: None,
                })
            },
            "prefix length 33 out of range in router \"gw\" (a route; the address has 32 bits)",
        ),
        (
            "rule tag",
            |p| p.protocols[0].rules[0].tag = Some(SetOrClear::Set(5)),
            "index 5 out of range in rule 1 of protocol \"https\" (`tag`; the plan has",
        ),
        (
            "rule tagged",
            |p| p.protocols[0].rules[1].tagged = Some(9),
            "index 9 out of range in rule 2 of protocol \"https\" (`tagged`;",
        ),
        (
            "rule label",
            |p| p.protocols[0].rules[0].label = Some(SetOrClear::Set(3)),
            "index 3 out of range in rule 1 of protocol \"https\" (`label`;",
        ),
        (
            "rule table",
            |p| p.protocols[0].rules[0].table = Some(0),
            "index 0 out of range in rule 1 of protocol \"https\" (`forward to`; the plan has 0 rule tables)",
        ),
        (
            "rule prefix",
            |p| {
                p.protocols[0].rules[0].from = Some(Prefix {
                    addr: "::".parse().unwrap(),
                    len: 129,
                })
            },
            "prefix length 129 out of range in rule 1 of protocol \"https\" (`from`; the address has 128 bits)",
        ),
        (
            "inspection ca",
            |p| p.protocols[0].tls.inspection_ca = Some(8),
            "index 8 out of range in protocol \"https\" (the TLS inspection CA;",
        ),
        (
            "key section index",
            |p| p.keypairs[0].key = KeyRef::Section(1),
            "index 1 out of range in keypair \"127.0.0.1\" (the private key; the plan has 1 private keys)",
        ),
    ];
    assert_eq!(good.protocols[0].name, "https");
    for (what, break_it, message) in cases {
        let mut broken = good.clone();
        break_it(&mut broken);
        let file = reencode(&bytes, &broken, &keys);
        let path = dir.write("broken.bin", &file);
        let e = load(&path).unwrap_err();
        assert!(
            matches!(e, LoadError::Inconsistent(Inconsistency { .. })),
            "{what}: {e:?}"
        );
        assert_sentence(&e);
        let message = message
            .replace("{tables}", &good.tables.len().to_string())
            .replace("{hosts+3}", &(good.hosts.len() + 3).to_string())
            .replace("{hosts+1}", &(good.hosts.len() + 1).to_string());
        let text = e.to_string();
        assert!(
            text.starts_with("the plan is inconsistent: ") && text.contains(&message),
            "{what}: expected …{message}… in\n{text}"
        );
        // The relay process checks the same (a keys-section index only against the
        // section being there).
        match load_public(&path) {
            Err(p) => assert_eq!(p, e, "{what}"),
            Ok(_) => assert_eq!(what, "key section index", "load_public accepted {what}"),
        }
        // And so does the in-memory loader.
        assert_eq!(relayd_run::load_bytes(&file).unwrap_err(), e, "{what}");
    }
}

#[test]
fn a_key_in_a_missing_keys_section_is_refused() {
    let dir = TempDir::new("nokeys");
    let (path, bytes) = sample(&dir);
    let good = load(&path).unwrap().plan;
    assert!(matches!(good.keypairs[0].key, KeyRef::Section(0)));
    // The same plan without its keys section: the keypair points into nothing.
    let file = reencode(&bytes, &good, &[]);
    let path = dir.write("nokeys.bin", &file);
    let e = load(&path).unwrap_err();
    assert!(
        e.to_string()
            .contains("index 0 out of range in keypair \"127.0.0.1\" (the private key; the plan has 0 private keys)"),
        "{e}"
    );
    let p = load_public(&path).unwrap_err();
    assert_eq!(
        p,
        LoadError::Inconsistent(Inconsistency {
            place: "keypair \"127.0.0.1\"".into(),
            problem: Problem::NoKeysSection { index: 0 },
        })
    );
    assert_sentence(&p);
    assert!(
        p.to_string().contains("but the plan has no keys section"),
        "{p}"
    );
}

/// Bodies and keys sections changed byte by byte *with* checksums that match: the changes
/// reach rkyv's validation and the consistency checks. Each is refused or loads a plan
/// that passed every check; none panics.
#[test]
fn changed_sections_with_matching_checksums_never_panic() {
    let dir = TempDir::new("rechecksum");
    let (_, bytes) = sample(&dir);
    let opened = container::open(&bytes).unwrap();
    let (header, body, keys) = (opened.header.clone(), opened.body, opened.keys);
    let write = |body: &[u8], keys: &[u8]| {
        container::write(
            &header.compiler_version,
            header.flags,
            header.source_digest,
            body,
            keys,
        )
    };
    let (mut refused, mut accepted) = (0usize, 0usize);
    let mut tally = |r: Result<Loaded, LoadError>| match r {
        Ok(_) => accepted += 1,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    LoadError::Body { .. } | LoadError::Keys { .. } | LoadError::Inconsistent(_)
                ),
                "{e:?}"
            );
            assert_sentence(&e);
            refused += 1;
        }
    };
    for pos in positions(body.len(), body.len()) {
        for pattern in [0x01u8, 0x80, 0xff] {
            let mut changed = body.to_vec();
            changed[pos] ^= pattern;
            tally(relayd_run::load_bytes(&write(&changed, keys)));
        }
    }
    for cut in 0..body.len() {
        tally(relayd_run::load_bytes(&write(&body[..cut], keys)));
    }
    for pos in 0..keys.len() {
        let mut changed = keys.to_vec();
        changed[pos] ^= 0xff;
        tally(relayd_run::load_bytes(&write(body, &changed)));
    }
    // Changes to the archive's structure are refused; changes inside data (names,
    // certificate and key bytes, a port) give another plan that passed every check.
    assert!(
        refused > 1000 && accepted > 0,
        "{refused} refused, {accepted} accepted"
    );
}
