//! Running as a service: privileges dropped after binding (`-u`, `_relayd`,
//! `--no-privdrop`), CAP_NET_RAW kept only for raw ICMP checks, the signer process that
//! alone holds the private keys (its API, and that the relay process's memory never
//! holds a key), systemd's readiness protocol, and the shipped unit file.
//!
//! Real processes as root: users are created with `useradd --system` under unique names
//! and removed again; every wait is bounded; only processes started here are stopped,
//! by their pid.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use common::{compile, free_port, temp_dir, Relay};
use relayd_run::privs::Privileges;
use relayd_run::signer::{KeySource, Options, Signer, SignerError};
use relaydc_spec::plan::{self, KeyKind, KeyRef, Keypair, Keys, Material, PrivateKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::{CertifiedKey, SigningKey, SingleCertAndKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_relayd-run");

/// A throwaway RSA-2048 key, made for this test only (ring cannot generate RSA keys).
const RSA_TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC8uX5MjyExa1b2
RIs0NIKAN9NZKOGkcU/HrM7S1u2o776BGXjobnqjfYITzXYOQtPRhsQ5bXaxE127
ncf7RIW8BN48s0YFoeQWEvY+Ck65278jlT4s6qffqUL2hoLLIfDgw5QQy59aJFS2
pb8SPQ+WrKqb5exortLeAze+7QG3XfSiwcbgYoP3kGJXwg8kPBOS4hGZBSByHaRV
1DgQ3rRPa/8n6/Kb6j7NoBDcgN+w8UCIHGsKQkqf65Kcl4OfdLGutIICxZCNvSJm
0Qmz6LJPZX2esm0+OcvElyeETvAmZko0hjyhYW1zxtjJzKETHhGabdkf6LGND7kZ
MXjvVuCbAgMBAAECggEAEqZwHUe9u4EEkIS4jvmrddlOeQ6psdMC09Q3gi18Qggj
NuXaBXo5g2OZUbSpuIIRJbEgPh6brqcfybUveJzObIS8o5oBzvevLyFDlWD2Y7ac
HnuWr+Cmo1s6Q1uKnGFnyQZ64OgGgOV7O6uIhNhk7Hp2x75CjRvNuePug98vHrwu
DaBridnV7VwIue3BT30Rryb6+pT+6o5Pcrgs2o+g3G1WBqwRJljOXJdR/8qq+Q4+
PvGnqiKeUGsenWIaRTtSI/v4KJ5ItetitmtXwhslIqyS63WBjIltpeXAUW6rm/at
ZoIYR3uzPmht1fNGov83/fcqAfIzmPAl2bKiuvDReQKBgQDz4q1mvPHDPcnznqMH
LtxD9MznoXcn6rCEKwJXFBHuXe17IVug7onaQvLD6FH9aF+LmlewxIVW0vZ1tT2j
p+GZP1KItP3cKauHRwn9COxo8FM6go5nA4+io2H2fKygD7x3UIABrmnjpJJ2RRbS
lPMzxi34isXMi1BBE0Qrg21rMwKBgQDGGV+R88Fl0w30RLGR5mDaBjYf7K99f1+b
abQIXgnOidNS6ZEOrncc4eMiLj4SYS+vtCk42QvFsLe5sISO+1N7H41yztb4EuAc
vhpTs22ueFxVQHMeW+iCDcOj47lG1XOO0SZvECOaP6JC//36/XOoKcfpjQtu6a+M
MDPDWU/0+QKBgQDfsJM23ioo1215w5DoL7Tbp5ahBVnTBNEuCHy2/bOMnB4Lh4cR
Tnil9i3QPi+la6vm0YOIoFdkUU64m6mTh5HGC2xZ8xe8bYPkKeYhbaPYhETyL3kJ
RxzhIVXizGtQy94i2XTvFdgNcY7cZ3YNY4zFegoEItRVTZooddFaz8r2PQKBgQCF
QYo1TsgYq8lmOFNOdq9N2gHMpdVC0UzJ6WfufPuR0MqzqmQmgRuk9Rpp4rtkd7Wx
NrrH/9DYcdCU+3WgDNYSK55lzVdz1palHwfsp/Uu+M37lvgZQu/7lDC3bTczu+AZ
AP4elbetSgLnmPYLQTTsuPY+V9+KA25QGhin3stXWQKBgD1Zeih5ociMilBm0lQG
fhoEIBvz9Nf8QpIfO6rEI248sBrfWQHOBvXmqcfpK9USdXNPXznwsESvFCUTeOu/
XbMB6f0LLCOmpqPEVPeoOehHqqH1tuc58BUTWeBYtuDThV8uGFWT1bs8nifEewep
Zg3+XXevvShaOOhbhMS+EPcE
-----END PRIVATE KEY-----
";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A system user made for one test (`useradd --system`), removed when dropped.
struct TestUser {
    name: String,
}

impl TestUser {
    fn new(tag: &str) -> TestUser {
        let name = format!("rdt{}{tag}", std::process::id());
        let mut last = String::new();
        // Other tests may hold the passwd lock for a moment.
        for _ in 0..50 {
            let out = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--user-group",
                    "--shell",
                    "/usr/sbin/nologin",
                    &name,
                ])
                .output()
                .expect("run useradd");
            if out.status.success() {
                return TestUser { name };
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("useradd {name}: {last}");
    }

    fn ids(&self) -> (u32, u32) {
        let a = relayd_run::privs::lookup(&self.name)
            .unwrap()
            .expect("the test user exists");
        (a.uid, a.gid)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        for _ in 0..50 {
            let ok = Command::new("userdel")
                .arg(&self.name)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Where USERGROUPS_ENAB is off, the group stays behind.
        let _ = Command::new("groupdel")
            .arg(&self.name)
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// A backend that answers every connection with `reply` and closes.
fn backend(reply: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().take(1000) {
            let Ok(mut s) = s else { continue };
            let _ = s.write_all(reply.as_bytes());
        }
    });
    port
}

/// What the relay at `port` passes back, connecting once the relay listens (bounded).
fn fetch(port: u16) -> String {
    let mut s = common::connect_when_ready(port);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn tcp_relay_conf(dir: &Path, port: u16, backend: u16, extra: &str) -> PathBuf {
    let conf = dir.join("relayd.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 2\n{extra}relay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to 127.0.0.1 port {backend}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    plan
}

/// /proc/PID/status as name → value.
fn status(pid: u32) -> HashMap<String, String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect()
}

fn cap(s: &HashMap<String, String>, name: &str) -> u64 {
    u64::from_str_radix(s.get(name).map_or("", String::as_str), 16).unwrap_or(u64::MAX)
}

const CAP_NET_RAW: u64 = 1 << 13;

/// The children of `pid` (any of its threads').
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let text = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// Whether process `pid` is gone (or a zombie waiting for a parent that is not us).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn wait_until(what: &str, secs: u64, cond: impl Fn() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Which of `needles` occur in the readable memory of process `pid`
/// (/proc/PID/mem over the regions /proc/PID/maps lists as readable).
fn memory_holds(pid: u32, needles: &[&[u8]]) -> Vec<bool> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    let mut found = vec![false; needles.len()];
    let mut regions = 0;
    for line in maps.lines() {
        let mut f = line.split_whitespace();
        let (Some(range), Some(perms)) = (f.next(), f.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0u8; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        regions += 1;
        for (i, n) in needles.iter().enumerate() {
            found[i] |= memchr::memmem::find(&buf, n).is_some();
        }
    }
    assert!(regions > 3, "read only {regions} regions of process {pid}");
    found
}

struct TestKey {
    der: Vec<u8>,
    cert: CertificateDer<'static>,
    cert_pem: String,
    public_key: Vec<u8>,
}

fn test_key(alg: &'static rcgen::SignatureAlgorithm) -> TestKey {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    certify(kp)
}

fn rsa_test_key() -> TestKey {
    let der = PrivateKeyDer::from_pem_slice(RSA_TEST_KEY.as_bytes()).unwrap();
    certify(rcgen::KeyPair::try_from(&der).unwrap())
}

fn certify(kp: rcgen::KeyPair) -> TestKey {
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&kp)
        .unwrap();
    TestKey {
        der: kp.serialize_der(),
        cert: cert.der().clone(),
        cert_pem: pem("CERTIFICATE", cert.der()),
        public_key: kp.public_key_raw().to_vec(),
    }
}

/// PEM text of `der` (rcgen is built without its PEM writer here).
fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for c in der.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pkcs8(k: &TestKey) -> PrivateKey {
    PrivateKey {
        kind: KeyKind::Pkcs8,
        der: k.der.clone(),
    }
}

/// A signer run from the relayd-run binary (this test binary is not relayd-run).
fn start_signer(keys: &[PrivateKey]) -> Signer {
    start_signer_with(KeySource { section: &[], keys }).unwrap()
}

fn start_signer_with(keys: KeySource<'_>) -> Result<Signer, SignerError> {
    Signer::start_with(
        keys,
        &Options {
            program: PathBuf::from(BIN),
            privileges: Privileges::keep(),
            seccomp: true,
        },
    )
}

/// Checks `sig` over `message` with the certificate's public key, by ring's verifiers
/// as rustls uses them.
fn verifies(scheme: SignatureScheme, public_key: &[u8], message: &[u8], sig: &[u8]) -> bool {
    let provider = rustls::crypto::ring::default_provider();
    provider
        .signature_verification_algorithms
        .mapping
        .iter()
        .filter(|(s, _)| *s == scheme)
        .flat_map(|(_, algs)| algs.iter())
        .any(|alg| alg.verify_signature(public_key, message, sig).is_ok())
}

// ---------------------------------------------------------------------------------------
// Privileges
// ---------------------------------------------------------------------------------------

#[test]
fn privileges_are_dropped_to_the_named_user_after_binding() {
    let user = TestUser::new("a");
    let (uid, gid) = user.ids();
    let dir = temp_dir("privdrop");
    let port = free_port();
    let plan = tcp_relay_conf(&dir, port, backend("hello\n"), "");
    let relay = Relay::start(&plan, &["-v", "-u", &user.name]);
    relay.wait_log("the privilege drop", |l| {
        l.contains(&format!(
            "privileges dropped: running as user {}, no capabilities",
            user.name
        ))
    });
    assert_eq!(fetch(port), "hello\n", "log:\n{}", relay.log());
    let s = status(relay.child.id());
    assert_eq!(s["Uid"], format!("{uid}\t{uid}\t{uid}\t{uid}"));
    assert_eq!(s["Gid"], format!("{gid}\t{gid}\t{gid}\t{gid}"));
    assert_eq!(s["Groups"], gid.to_string());
    for c in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(cap(&s, c), 0, "{c}: {s:?}");
    }
    assert_eq!(s["NoNewPrivs"], "1");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(log.contains("parent terminating"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn icmp_checks_keep_only_cap_net_raw_where_ping_sockets_are_not_allowed() {
    let dir = temp_dir("privicmp");
    let port = free_port();
    let b = backend("pong\n");
    let conf = dir.join("relayd.conf");
    std::fs::write(
        &conf,
        format!(
            "interval 1\ntimeout 800\nprefork 1\ntable <ping> {{ 127.0.0.1 }}\n\
             relay \"ping\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <ping> port {b} check icmp\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let nobody = relayd_run::privs::lookup("nobody")
        .unwrap()
        .expect("a nobody user");
    let ping_sockets = relayd_run::privs::ping_allowed(&nobody.groups);
    let relay = Relay::start(&plan, &["-v", "-u", "nobody"]);
    relay.wait_log("the icmp check", |l| {
        l.contains("host 127.0.0.1, check icmp (") && l.contains("icmp ok), state unknown -> up")
    });
    let s = status(relay.child.id());
    let kept = if ping_sockets { 0 } else { CAP_NET_RAW };
    assert_eq!(cap(&s, "CapEff"), kept, "{s:?}");
    assert_eq!(cap(&s, "CapPrm"), kept, "{s:?}");
    assert_eq!(cap(&s, "CapBnd"), kept, "{s:?}");
    assert_eq!(cap(&s, "CapInh"), 0, "{s:?}");
    assert_eq!(cap(&s, "CapAmb"), 0, "{s:?}");
    assert_eq!(s["NoNewPrivs"], "1");
    assert!(
        relay.log().contains(if ping_sockets {
            "no capabilities"
        } else {
            "CAP_NET_RAW (raw ICMP checks)"
        }),
        "{}",
        relay.log()
    );
    assert_eq!(fetch(port), "pong\n");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn as_root_without_a_user_relayd_run_refuses_to_start() {
    let dir = temp_dir("privrefuse");
    let plan = tcp_relay_conf(&dir, free_port(), backend("x"), "");
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).arg(&plan).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    if relayd_run::privs::lookup("_relayd").unwrap().is_none() {
        let (code, err) = run(&["-d"]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("there is no user _relayd")
                && err.contains("-u USER")
                && err.contains("--no-privdrop"),
            "{err}"
        );
    }
    let (code, err) = run(&["-d", "-u", "no-such-user-relayd-test"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("unknown user no-such-user-relayd-test"),
        "{err}"
    );
    let (code, err) = run(&["-d", "-u", "root"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("uid 0"), "{err}");
    let (code, err) = run(&["-d", "-u", "nobody", "--no-privdrop"]);
    assert_eq!(code, Some(2), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// The signer process
// ---------------------------------------------------------------------------------------

/// A servable plan with a keys section: the TCP relay plan plus one keypair whose key is
/// in the section (no relay uses it yet: TLS listeners are served elsewhere).
fn plan_with_key(dir: &Path, port: u16, backend: u16, key: &TestKey) -> PathBuf {
    let plain = tcp_relay_conf(dir, port, backend, "");
    let loaded = relayd_run::load(&plain).unwrap();
    let mut p = loaded.plan;
    p.keypairs.push(Keypair {
        name: "test".into(),
        certs: Material::Embedded(key.cert_pem.clone().into_bytes()),
        key: KeyRef::Section(0),
        ocsp: None,
    });
    let keys = Keys {
        keys: vec![pkcs8(key)],
    };
    let bytes = plan::container::write(
        &loaded.header.compiler_version,
        loaded.header.flags,
        loaded.header.source_digest,
        &plan::encode(&p).unwrap(),
        &plan::encode_keys(&keys).unwrap(),
    );
    let path = dir.join("keyed.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The 32-byte windows of a key that overlap its secret: the private scalar of a P-256
/// PKCS#8 key (after `04 20` in the ECPrivateKey) and its neighbourhood.
fn secret_windows(der: &[u8]) -> Vec<Vec<u8>> {
    let at = memchr::memmem::find(der, &[0x02, 0x01, 0x01, 0x04, 0x20]).expect("an EC key") + 5;
    vec![
        der[at..at + 32].to_vec(),
        der[at - 16..at + 16].to_vec(),
        der[at + 16..at + 48].to_vec(),
    ]
}

#[test]
fn the_relay_process_never_holds_a_private_key() {
    let dir = temp_dir("signerproc");
    let port = free_port();
    let key = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let plan = plan_with_key(&dir, port, backend("keyed\n"), &key);
    let relay = Relay::start(&plan, &["-v", "-u", "nobody"]);
    let log = relay.wait_log("the signer", |l| {
        l.contains("signer: 1 private key, pid ") && l.contains("privileges dropped")
    });
    assert_eq!(fetch(port), "keyed\n", "{log}");
    let pid = relay.child.id();

    // The signer: relayd-run's only child, unprivileged, holding the key.
    let kids = children(pid);
    assert_eq!(kids.len(), 1, "children of {pid}: {kids:?}");
    let signer = kids[0];
    assert!(
        log.contains(&format!("signer: 1 private key, pid {signer}")),
        "{log}"
    );
    let cmdline = std::fs::read(format!("/proc/{signer}/cmdline")).unwrap();
    assert!(cmdline.starts_with(b"relayd-run: signer\0__signer\0"));
    let s = status(signer);
    assert_eq!(s["Uid"], "65534\t65534\t65534\t65534", "{s:?}");
    for c in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(cap(&s, c), 0, "signer {c}: {s:?}");
    }
    assert_eq!(s["NoNewPrivs"], "1");

    // The relay process's memory: the certificate (public, in the plan) is there, no
    // window of the private key is.
    let cert_window = key.cert_pem.as_bytes()[100..132].to_vec();
    let windows = secret_windows(&key.der);
    let mut needles: Vec<&[u8]> = vec![&cert_window];
    needles.extend(windows.iter().map(Vec::as_slice));
    let found = memory_holds(pid, &needles);
    assert!(
        found[0],
        "the search finds the certificate in the relay process"
    );
    assert_eq!(
        &found[1..],
        &[false, false, false],
        "private key bytes in the relay process"
    );

    // The signer goes with the relay process.
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    wait_until("the signer to exit", 5, || gone(signer));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_signer_exits_when_the_relay_process_is_killed() {
    let dir = temp_dir("signerkill");
    let port = free_port();
    let key = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let plan = plan_with_key(&dir, port, backend("k\n"), &key);
    let mut relay = Relay::start(&plan, &["-v"]);
    relay.wait_log("the signer", |l| l.contains("signer: 1 private key"));
    let pid = relay.child.id();
    let kids = children(pid);
    assert_eq!(kids.len(), 1, "{kids:?}");
    relay.child.kill().unwrap();
    let _ = relay.child.wait();
    wait_until("the orphaned signer to exit", 5, || gone(kids[0]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn signatures_made_through_the_signer_verify() {
    let cases: Vec<(TestKey, SignatureAlgorithm, Vec<SignatureScheme>)> = vec![
        (
            test_key(&rcgen::PKCS_ECDSA_P256_SHA256),
            SignatureAlgorithm::ECDSA,
            vec![SignatureScheme::ECDSA_NISTP256_SHA256],
        ),
        (
            test_key(&rcgen::PKCS_ECDSA_P384_SHA384),
            SignatureAlgorithm::ECDSA,
            vec![SignatureScheme::ECDSA_NISTP384_SHA384],
        ),
        (
            test_key(&rcgen::PKCS_ED25519),
            SignatureAlgorithm::ED25519,
            vec![SignatureScheme::ED25519],
        ),
        (
            rsa_test_key(),
            SignatureAlgorithm::RSA,
            vec![
                SignatureScheme::RSA_PSS_SHA512,
                SignatureScheme::RSA_PSS_SHA384,
                SignatureScheme::RSA_PSS_SHA256,
                SignatureScheme::RSA_PKCS1_SHA512,
                SignatureScheme::RSA_PKCS1_SHA384,
                SignatureScheme::RSA_PKCS1_SHA256,
            ],
        ),
    ];
    let keys: Vec<PrivateKey> = cases.iter().map(|(k, _, _)| pkcs8(k)).collect();
    let signer = start_signer(&keys);
    assert_eq!((signer.len(), signer.section_keys()), (4, 0));
    let all = [
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureScheme::ED25519,
        SignatureScheme::RSA_PKCS1_SHA256,
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureScheme::RSA_PSS_SHA256,
        SignatureScheme::RSA_PSS_SHA384,
        SignatureScheme::RSA_PSS_SHA512,
    ];
    let message = b"TLS 1.3, server CertificateVerify\0 and a transcript hash";
    for (i, (k, alg, schemes)) in cases.iter().enumerate() {
        let key = signer.signing_key(i, &k.cert).unwrap();
        assert_eq!(key.algorithm(), *alg);
        // The key's first choice among everything offered is the key type's own.
        let first = key.choose_scheme(&all).unwrap();
        assert_eq!(first.scheme(), schemes[0], "key {i}");
        for scheme in schemes {
            let s = key.choose_scheme(&[*scheme]).expect("offered");
            let sig = s.sign(message).unwrap();
            assert!(
                verifies(*scheme, &k.public_key, message, &sig),
                "key {i} {scheme:?}"
            );
            assert!(!verifies(*scheme, &k.public_key, b"another message", &sig));
        }
        assert!(key
            .choose_scheme(&[SignatureScheme::ECDSA_NISTP521_SHA512])
            .is_none());
    }
    // A certificate of another key, a key that is not there, a scheme the key lacks.
    assert_eq!(
        signer.signing_key(0, &cases[1].0.cert).unwrap_err(),
        SignerError::KeyMismatch { index: 0 }
    );
    assert!(matches!(
        signer.signing_key(4, &cases[0].0.cert),
        Err(SignerError::NoSuchKey { index: 4, keys: 4 })
    ));
    assert!(matches!(
        signer.sign(0, SignatureScheme::RSA_PSS_SHA256, message),
        Err(SignerError::Scheme { index: 0, .. })
    ));
}

#[test]
fn the_signer_takes_a_plans_keys_section_and_refuses_what_is_not_a_key() {
    let a = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let b = test_key(&rcgen::PKCS_ED25519);
    let section = plan::encode_keys(&Keys {
        keys: vec![pkcs8(&a)],
    })
    .unwrap();
    let late = [pkcs8(&b)];
    let signer = start_signer_with(KeySource {
        section: &section,
        keys: &late,
    })
    .unwrap();
    assert_eq!((signer.len(), signer.section_keys()), (2, 1));
    for (i, k, scheme) in [
        (0, &a, SignatureScheme::ECDSA_NISTP256_SHA256),
        (1, &b, SignatureScheme::ED25519),
    ] {
        let sig = signer.sign(i, scheme, b"m").unwrap();
        assert!(verifies(scheme, &k.public_key, b"m", &sig));
    }
    let pid = signer.pid();
    drop(signer);
    assert!(gone(pid), "the signer outlived its last handle");

    let bad = [PrivateKey {
        kind: KeyKind::Sec1,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
    }];
    match start_signer_with(KeySource {
        section: &[],
        keys: &bad,
    }) {
        Err(SignerError::Refused(why)) => assert!(why.contains("private key 0"), "{why}"),
        other => panic!("{other:?}"),
    }
    match start_signer_with(KeySource {
        section: b"not rkyv",
        keys: &[],
    }) {
        Err(SignerError::Refused(why)) => assert!(why.contains("keys section"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn threads_sign_at_once_each_on_its_own_connection() {
    let k = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let signer = start_signer(&[pkcs8(&k)]);
    let pk = Arc::new(k.public_key.clone());
    let signed = Arc::new(std::sync::Barrier::new(5));
    let done = Arc::new(std::sync::Barrier::new(5));
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let signer = signer.clone();
            let pk = Arc::clone(&pk);
            let (signed, done) = (Arc::clone(&signed), Arc::clone(&done));
            std::thread::spawn(move || {
                for n in 0..50u8 {
                    let msg = [t, n, 1, 2, 3];
                    let sig = signer
                        .sign(0, SignatureScheme::ECDSA_NISTP256_SHA256, &msg)
                        .unwrap();
                    assert!(verifies(
                        SignatureScheme::ECDSA_NISTP256_SHA256,
                        &pk,
                        &msg,
                        &sig
                    ));
                }
                signed.wait();
                done.wait();
            })
        })
        .collect();
    signed.wait();
    // Each thread's connection is served by a thread of the signer's own.
    let tasks = std::fs::read_dir(format!("/proc/{}/task", signer.pid()))
        .unwrap()
        .count();
    done.wait();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(tasks, 5, "the signer's main thread and one per connection");
}

/// A verifier that takes any certificate but checks the handshake signature with ring,
/// offering only `schemes`, so each scheme of a key is exercised.
#[derive(Debug)]
struct Offer(Vec<SignatureScheme>);

impl rustls::client::danger::ServerCertVerifier for Offer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone()
    }
}

/// A whole handshake in memory: a rustls server whose key is in the signer, a client
/// that checks the signature.
fn handshake(
    key: Arc<dyn SigningKey>,
    cert: &CertificateDer<'static>,
    version: &'static rustls::SupportedProtocolVersion,
    scheme: SignatureScheme,
) -> Result<(), rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[version])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            vec![cert.clone()],
            key,
        ))));
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Offer(vec![scheme])))
        .with_no_client_auth();
    let mut s = rustls::ServerConnection::new(Arc::new(server))?;
    let mut c = rustls::ClientConnection::new(
        Arc::new(client),
        ServerName::try_from("localhost").unwrap(),
    )?;
    for _ in 0..20 {
        let mut buf = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut buf).unwrap();
        }
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets()?;
        let mut buf = Vec::new();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        c.process_new_packets()?;
        if !c.is_handshaking() && !s.is_handshaking() {
            return Ok(());
        }
    }
    Err(rustls::Error::General(
        "the handshake did not finish".into(),
    ))
}

#[test]
fn rustls_handshakes_sign_through_the_signer() {
    let ec = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let rsa = rsa_test_key();
    let ed = test_key(&rcgen::PKCS_ED25519);
    let signer = start_signer(&[pkcs8(&ec), pkcs8(&rsa), pkcs8(&ed)]);
    let (v13, v12) = (&rustls::version::TLS13, &rustls::version::TLS12);
    for (i, k, version, scheme) in [
        (0, &ec, v13, SignatureScheme::ECDSA_NISTP256_SHA256),
        (0, &ec, v12, SignatureScheme::ECDSA_NISTP256_SHA256),
        (1, &rsa, v13, SignatureScheme::RSA_PSS_SHA256),
        (1, &rsa, v13, SignatureScheme::RSA_PSS_SHA512),
        (1, &rsa, v12, SignatureScheme::RSA_PKCS1_SHA256),
        (1, &rsa, v12, SignatureScheme::RSA_PKCS1_SHA384),
        (2, &ed, v13, SignatureScheme::ED25519),
    ] {
        let key = signer.signing_key(i, &k.cert).unwrap();
        handshake(key, &k.cert, version, scheme)
            .unwrap_or_else(|e| panic!("key {i} {version:?} {scheme:?}: {e}"));
    }
}

/// Microseconds per signature through the signer and in-process, printed (run with
/// `--nocapture` to read them) and bounded loosely.
#[test]
fn signing_latency() {
    let ec = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let rsa = rsa_test_key();
    let signer = start_signer(&[pkcs8(&ec), pkcs8(&rsa)]);
    for (i, k, scheme, n) in [
        (0, &ec, SignatureScheme::ECDSA_NISTP256_SHA256, 300u32),
        (1, &rsa, SignatureScheme::RSA_PSS_SHA256, 40),
    ] {
        let msg = [7u8; 130];
        let remote = signer.signing_key(i, &k.cert).unwrap();
        let der = PrivateKeyDer::try_from(k.der.clone()).unwrap();
        let local = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        // Alternating rounds, the fastest of each: other processes on the machine only
        // ever slow a round down.
        let mut per = [f64::MAX; 2];
        let signers = [
            remote.choose_scheme(&[scheme]).unwrap(),
            local.choose_scheme(&[scheme]).unwrap(),
        ];
        for _ in 0..5 {
            for (j, s) in signers.iter().enumerate() {
                s.sign(&msg).unwrap();
                let t0 = Instant::now();
                for _ in 0..n {
                    s.sign(&msg).unwrap();
                }
                per[j] = per[j].min(t0.elapsed().as_secs_f64() * 1e6 / f64::from(n));
            }
        }
        eprintln!(
            "{scheme:?}: {:.1} µs per signature through the signer, {:.1} µs in-process \
             ({:.1} µs for the round trip)",
            per[0],
            per[1],
            per[0] - per[1]
        );
        assert!(per[0] < per[1] + 5000.0, "{per:?}");
    }
}

// ---------------------------------------------------------------------------------------
// sd_notify
// ---------------------------------------------------------------------------------------

fn recv_state(sock: &UnixDatagram, want: &str) -> String {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    }
    panic!("no {want} within 10 s");
}

fn notify_run(target: &str, sock: &UnixDatagram, extra: &[&str]) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let dir = temp_dir("notify");
    let port = free_port();
    let plan = tcp_relay_conf(&dir, port, backend("ready\n"), "");
    let env = format!("NOTIFY_SOCKET={target}");
    let relay = Relay::start_via(&["env", &env], &plan, extra);
    let msg = recv_state(sock, "READY=1");
    assert!(
        msg.lines()
            .any(|l| l == format!("MAINPID={}", relay.child.id())),
        "{msg}"
    );
    // Ready means accepting: one connection, no retries.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert_eq!(got, "ready\n");
    let pid = relay.child.id();
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -TERM {pid}")])
        .status();
    recv_state(sock, "STOPPING=1");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn notify_socket_gets_ready_and_stopping_after_privileges_are_dropped() {
    // A root-only directory: the socket is reached only because it was connected
    // before the privilege drop.
    let dir = temp_dir("notifysock");
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let path = dir.join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    notify_run(path.to_str().unwrap(), &sock, &["-u", "nobody"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn notify_socket_may_be_abstract() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("relayd-run-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    notify_run(&format!("@{name}"), &sock, &[]);
}

// ---------------------------------------------------------------------------------------
// The systemd unit
// ---------------------------------------------------------------------------------------

#[test]
fn the_systemd_unit_is_shipped_and_verifies() {
    let unit = common::workspace().join("dist/relayd-run.service");
    let text = std::fs::read_to_string(&unit).expect("dist/relayd-run.service");
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/sbin/relayd-run -s /run/relayd/relayd.sock /etc/relayd/plan.bin",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "RuntimeDirectory=relayd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "KillMode=mixed",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing");
    }
    // `systemd-analyze verify` where it is installed. It wants every command to exist,
    // so a copy names the binary built here; it exits 0 even on warnings, so its output
    // must be empty.
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
        return;
    };
    assert!(out.status.success());
    let dir = temp_dir("unit");
    let copy = dir.join("relayd-run.service");
    std::fs::write(&copy, text.replace("/usr/local/sbin/relayd-run", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------
// Seccomp
// ---------------------------------------------------------------------------------------

/// Each thread of process `pid`: its name and its `Seccomp:` mode (0 none, 2 filter).
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                .unwrap_or_default()
        };
        out.push((field("Name:"), field("Seccomp:")));
    }
    out.sort();
    out
}

/// `plan_with_key`'s plan with its relay listening over TLS with that keypair, so that
/// every session's handshake is signed by the signer process.
fn tls_plan_with_key(dir: &Path, port: u16, backend: u16, key: &TestKey) -> PathBuf {
    let keyed = plan_with_key(dir, port, backend, key);
    let loaded = relayd_run::load(&keyed).unwrap();
    let mut p = loaded.plan;
    for l in &mut p.relays[0].listeners {
        l.tls = true;
    }
    p.relays[0].keypairs = vec![0];
    let bytes = plan::container::write(
        &loaded.header.compiler_version,
        loaded.header.flags,
        loaded.header.source_digest,
        &plan::encode(&p).unwrap(),
        &plan::encode_keys(&loaded.keys).unwrap(),
    );
    let path = dir.join("tls.bin");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// What the TLS relay at `port` passes back, the certificate not checked.
fn fetch_tls(port: u16) -> String {
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(Offer(vec![
        SignatureScheme::ECDSA_NISTP256_SHA256,
    ])))
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(client), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, common::connect_when_ready(port));
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    out
}

#[test]
fn the_relay_and_signer_processes_run_under_seccomp() {
    let dir = temp_dir("seccomp");
    let port = free_port();
    let key = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let plan = tls_plan_with_key(&dir, port, backend("sealed\n"), &key);
    // --no-privdrop (Relay::start): the filters do not depend on the privilege drop.
    let relay = Relay::start(&plan, &["-v"]);
    let log = relay.wait_log("the filter", |l| {
        l.contains("signer: 1 private key") && l.contains("system calls allowed, others refused")
    });
    // A session through both filters: the worker's TLS, the signer's signature.
    assert_eq!(fetch_tls(port), "sealed\n", "{log}");
    let pid = relay.child.id();
    let threads = seccomp_modes(pid);
    for n in ["relay 1", "relay 2"] {
        assert!(threads.iter().any(|(name, _)| name == n), "{threads:?}");
    }
    assert!(
        threads.iter().all(|(_, mode)| mode == "2"),
        "every thread of the relay process is filtered: {threads:?}"
    );
    let kids = children(pid);
    assert_eq!(kids.len(), 1, "{kids:?}");
    let signer = seccomp_modes(kids[0]);
    assert!(
        signer.iter().any(|(name, _)| name == "sign"),
        "the signer signed on a thread of its own: {signer:?}"
    );
    assert!(
        signer.iter().all(|(_, mode)| mode == "2"),
        "every thread of the signer is filtered: {signer:?}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn no_seccomp_leaves_both_processes_unfiltered() {
    let dir = temp_dir("noseccomp");
    let port = free_port();
    let key = test_key(&rcgen::PKCS_ECDSA_P256_SHA256);
    let plan = tls_plan_with_key(&dir, port, backend("open\n"), &key);
    let relay = Relay::start(&plan, &["-v", "--no-seccomp"]);
    let log = relay.wait_log("the signer", |l| l.contains("signer: 1 private key"));
    assert_eq!(fetch_tls(port), "open\n", "{log}");
    assert!(!relay.log().contains("system calls allowed"));
    let pid = relay.child.id();
    let kids = children(pid);
    assert_eq!(kids.len(), 1, "{kids:?}");
    for p in [pid, kids[0]] {
        let threads = seccomp_modes(p);
        assert!(threads.iter().all(|(_, mode)| mode == "0"), "{threads:?}");
    }
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A plan whose table `<s>` (127.0.0.1) is checked by `script`.
fn script_plan(dir: &Path, port: u16, backend: u16, script: &Path) -> PathBuf {
    let conf = dir.join("scripts.conf");
    std::fs::write(
        &conf,
        format!(
            "interval 1\ntimeout 400\nprefork 1\ntable <s> {{ 127.0.0.1 }}\n\
             relay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <s> port {backend} check script \"{}\"\n}}\n",
            script.display()
        ),
    )
    .unwrap();
    let plan = dir.join("scripts.bin");
    compile(&conf, &[], &plan);
    plan
}

fn up_script(dir: &Path) -> PathBuf {
    let script = dir.join("up.sh");
    std::fs::write(&script, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

#[test]
fn check_scripts_run_from_the_one_thread_outside_the_filter() {
    let dir = temp_dir("seccompscript");
    let port = free_port();
    let plan = script_plan(&dir, port, backend("checked\n"), &up_script(&dir));
    let relay = Relay::start(&plan, &["-v"]);
    let log = relay.wait_log("the script's check", |l| {
        l.contains("check script (") && l.contains("script ok), state unknown -> up")
    });
    assert_eq!(fetch(port), "checked\n", "{log}");
    let threads = seccomp_modes(relay.child.id());
    let outside: Vec<&(String, String)> = threads.iter().filter(|(_, m)| m != "2").collect();
    assert_eq!(
        outside,
        [&("scripts".to_string(), "0".to_string())],
        "{threads:?}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_cannot_add_check_scripts_once_the_filter_is_on() {
    let dir = temp_dir("seccompreload");
    let port = free_port();
    let back = backend("kept\n");
    let plan = tcp_relay_conf(&dir, port, back, "");
    let relay = Relay::start(&plan, &["-v"]);
    relay.wait_log("the filter", |l| l.contains("system calls allowed"));
    assert_eq!(fetch(port), "kept\n");
    let scripted = script_plan(&dir, port, back, &up_script(&dir));
    std::fs::copy(&scripted, &plan).unwrap();
    let pid = relay.child.id();
    let _ = Command::new("sh")
        .args(["-c", &format!("kill -HUP {pid}")])
        .status();
    let log = relay.wait_log("the refusal", |l| {
        l.contains("the running plan is unchanged")
    });
    assert!(
        log.contains("check script tables") && log.contains("restart relayd-run"),
        "{log}"
    );
    assert!(
        seccomp_modes(pid).iter().all(|(_, mode)| mode == "2"),
        "no thread left the filter"
    );
    assert_eq!(fetch(port), "kept\n");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
