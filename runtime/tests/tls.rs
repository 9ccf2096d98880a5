//! TLS end to end: real relayd-run processes with certificates made here (rcgen), real
//! clients (curl, `openssl s_client`, a rustls client where the test must see raw
//! handshake data), TLS backends of our own, everything on 127.0.0.1.
//!
//! Covered: seed example 2 served over TLS; SNI choosing among three keypairs (and
//! the OCSP staple); `client ca`; `forward with tls` with and without `ca file`; both
//! sides TLS; TLS inspection; relayd's `tls session … established` line.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{connect_when_ready, free_port, temp_dir, workspace, Relay};

// ------------------------------------------------------------------------ certificates

fn pem(label: &str, der: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let v = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
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

struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "ca");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn pem(&self) -> String {
        pem("CERTIFICATE", self.cert.der())
    }

    /// A certificate for `names` (DNS names or IP addresses), with `cn` as its subject.
    fn issue(&self, cn: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert: cert.der().clone(),
            key: key.serialize_der(),
        }
    }
}

struct Leaf {
    cert: CertificateDer<'static>,
    key: Vec<u8>,
}

impl Leaf {
    fn cert_pem(&self) -> String {
        pem("CERTIFICATE", &self.cert)
    }

    fn key_pem(&self) -> String {
        pem("PRIVATE KEY", &self.key)
    }

    fn rustls_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.clone()))
    }
}

/// Writes `text` to `root` + `path`, private keys readable by their owner only (as
/// relaydc wants them).
fn put(root: &Path, path: &str, text: &str) -> PathBuf {
    let p = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    if path.contains("/private/") {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    p
}

/// A keypair where relayd looks for it: `/etc/ssl/NAME.crt` and
/// `/etc/ssl/private/NAME.key` under `root`.
fn install_keypair(root: &Path, name: &str, leaf: &Leaf) {
    put(root, &format!("/etc/ssl/{name}.crt"), &leaf.cert_pem());
    put(
        root,
        &format!("/etc/ssl/private/{name}.key"),
        &leaf.key_pem(),
    );
}

/// `relaydc compile --root ROOT [-D …] CONF -o OUT`. `--root` moves every absolute
/// path under ROOT, the configuration's own too, so a copy of it goes there.
fn compile(conf: &Path, root: &Path, defines: &[String], out: &Path) {
    let copy = root.join(conf.strip_prefix("/").unwrap());
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(conf, &copy).unwrap();
    let mut argv: Vec<String> = vec!["relaydc".into(), "compile".into()];
    for d in defines {
        argv.push("-D".into());
        argv.push(d.clone());
    }
    argv.push("--root".into());
    argv.push(root.to_string_lossy().into());
    argv.push(conf.to_string_lossy().into());
    argv.push("-o".into());
    argv.push(out.to_string_lossy().into());
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = relaydc::cli::run(argv.into_iter().map(Into::into).collect(), &mut o, &mut e);
    assert_eq!(code, 0, "compile: {}", String::from_utf8_lossy(&e));
}

/// Compiles `conf` (written to `dir`) and starts relayd-run on it with its own control
/// socket.
fn start(dir: &Path, conf: &str, extra: &[&str]) -> Relay {
    let conf_path = dir.join("relayd.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf_path, dir, &[], &plan);
    let sock = dir.join("relayd.sock");
    let mut args = vec!["-s", sock.to_str().unwrap()];
    args.extend_from_slice(extra);
    Relay::start(&plan, &args)
}

// ------------------------------------------------------------------------ clients

/// Runs a client command, killed (by its own pid) after 20 s.
fn run(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("client command (apt-get install curl openssl)");
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn curl(args: &[&str]) -> Output {
    run(Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The subject `openssl s_client` saw, with `-servername NAME` or without SNI.
fn s_client_subject(port: u16, servername: Option<&str>) -> String {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match servername {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let out = run(&mut cmd);
    let stdout = text(&out.stdout);
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("subject="))
        .unwrap_or_else(|| panic!("no subject from s_client: {stdout}{}", text(&out.stderr)))
        .trim()
        .to_string()
}

/// What a TLS client saw of the server: its certificate and its OCSP staple.
#[derive(Debug, Default)]
struct Seen {
    cert: Option<Vec<u8>>,
    ocsp: Vec<u8>,
}

#[derive(Debug)]
struct Recorder(Arc<Mutex<Seen>>, Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        ocsp: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let mut s = self.0.lock().unwrap();
        s.cert = Some(end_entity.to_vec());
        s.ocsp = ocsp.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.1.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.1.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

/// A rustls handshake with `server_name` as SNI; what the client saw.
fn rustls_handshake(port: u16, server_name: &str) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Recorder(Arc::clone(&seen), provider)))
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string()).unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = connect_when_ready(port);
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    conn.send_close_notify();
    let _ = conn.complete_io(&mut sock);
    let mut s = seen.lock().unwrap();
    std::mem::take(&mut *s)
}

// ------------------------------------------------------------------------ backends

/// Answers every request on the connection with 200 and `body`, until the client
/// closes or asks to close.
fn serve_http<S: Read + Write>(s: &mut S, body: &str) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_ascii_lowercase();
            buf.drain(..end + 4);
            let close = head.contains("http/1.0") || head.contains("connection: close");
            let reply = format!(
                "HTTP/1.1 200 OK\r\nServer: TestServer\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if close { "Connection: close\r\n" } else { "" }
            );
            if s.write_all(reply.as_bytes()).is_err() || s.flush().is_err() || close {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A plain HTTP backend on 127.0.0.1 answering `ok`.
fn http_backend(port: u16) -> u16 {
    let l = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                serve_http(&mut s, "ok");
            });
        }
    });
    port
}

/// A TLS backend (rustls) with `leaf`, answering `tls-ok`; records the SNI of each
/// handshake (`None`: the client sent none).
fn tls_backend(leaf: &Leaf) -> (u16, Arc<Mutex<Vec<Option<String>>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert.clone()], leaf.rustls_key())
            .unwrap(),
    );
    let l = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let sni = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&sni);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let config = Arc::clone(&config);
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        return;
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(tls.conn.server_name().map(str::to_string));
                serve_http(&mut tls, "tls-ok");
                tls.conn.send_close_notify();
                let _ = tls.conn.complete_io(&mut tls.sock);
            });
        }
    });
    (port, sni)
}

// ------------------------------------------------------------------------ tests

/// Seed example 2 as written (legacy `ssl` syntax, the keypair found as relayd finds
/// it: `/etc/ssl/127.0.0.1.crt` for `listen on 127.0.0.1 … ssl`), its table on
/// loopback: curl gets the page through it over TLS, checking the relay's certificate
/// against the CA that issued it.
#[test]
fn seed_example_2_over_tls() {
    let dir = temp_dir("tls-seed2");
    let ca = Ca::new("seed ca");
    install_keypair(&dir, "127.0.0.1", &ca.issue("127.0.0.1", &["127.0.0.1"]));
    let ca_pem = put(&dir, "/client/ca.pem", &ca.pem());
    let bport = http_backend(0);
    let port = free_port();
    let seed = std::fs::read_to_string(workspace().join("corpus/seed/example2.conf")).unwrap();
    let conf = seed.replace("10.10.10.11, 10.10.10.22, 10.10.10.33", "127.0.0.1");
    assert_ne!(seed, conf);
    let conf_path = dir.join("example2.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let plan = dir.join("plan.bin");
    compile(
        &conf_path,
        &dir,
        &[format!("relayd_port={port}"), format!("web_port={bport}")],
        &plan,
    );
    let sock = dir.join("relayd.sock");
    let relay = Relay::start(&plan, &["-s", sock.to_str().unwrap()]);
    relay.wait_log("the backend up", |l| l.contains("state unknown -> up"));
    let url = format!("https://127.0.0.1:{port}/");
    let out = curl(&[
        "-i",
        "--cacert",
        ca_pem.to_str().unwrap(),
        "-H",
        "Host: calomel.org",
        &url,
    ]);
    let body = text(&out.stdout);
    assert!(out.status.success(), "curl: {}{}", body, text(&out.stderr));
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    // The protocol's rules still apply over TLS.
    assert!(body.contains("Server: JustSomeServer"), "{body}");
    assert!(body.ends_with("\r\n\r\nok"), "{body}");
    // A request its filters block gets relayd's error page, over TLS too.
    let out = curl(&[
        "-i",
        "--cacert",
        ca_pem.to_str().unwrap(),
        "-H",
        "Host: calomel.org",
        "-H",
        "User-Agent: TwoSandsBot",
        &url,
    ]);
    let body = text(&out.stdout);
    assert!(
        body.contains("403 Forbidden"),
        "{body}{}",
        text(&out.stderr)
    );
    let (code, _) = relay.terminate();
    assert_eq!(code, 0);
}

/// Three keypairs: the client's server name picks the one whose certificate names it
/// (wildcards as libtls matches them), the first serves everyone else. The keypair
/// with an OCSP file staples it. With `-vv`, each handshake logs relayd's line.
#[test]
fn sni_picks_the_keypair_and_logs_the_session() {
    let dir = temp_dir("tls-sni");
    let ca = Ca::new("sni ca");
    install_keypair(&dir, "one.test", &ca.issue("one.test", &["one.test"]));
    install_keypair(&dir, "two.test", &ca.issue("two.test", &["two.test"]));
    install_keypair(&dir, "wild", &ca.issue("wildcard", &["*.wild.test"]));
    let staple: Vec<u8> = (0u8..=255).cycle().take(700).collect();
    let p = dir.join("etc/ssl/two.test.ocsp");
    std::fs::write(&p, &staple).unwrap();
    let bport = http_backend(0);
    let port = free_port();
    let conf = format!(
        r#"
prefork 1
tcp protocol "sni" {{
    tls keypair "one.test"
    tls keypair "two.test"
    tls keypair "wild"
}}
relay "sni" {{
    listen on 127.0.0.1 port {port} tls
    protocol "sni"
    forward to 127.0.0.1 port {bport}
}}
"#
    );
    let relay = start(&dir, &conf, &["-vv"]);
    relay.wait_log("the relay running", |l| l.contains("relay_launch"));
    assert_eq!(s_client_subject(port, Some("two.test")), "CN = two.test");
    assert_eq!(s_client_subject(port, Some("one.test")), "CN = one.test");
    assert_eq!(s_client_subject(port, Some("a.wild.test")), "CN = wildcard");
    // Not a name any certificate has, a name a wildcard does not cover, no name.
    assert_eq!(s_client_subject(port, Some("other.test")), "CN = one.test");
    assert_eq!(
        s_client_subject(port, Some("a.b.wild.test")),
        "CN = one.test"
    );
    assert_eq!(s_client_subject(port, None), "CN = one.test");

    let seen = rustls_handshake(port, "two.test");
    assert_eq!(seen.ocsp, staple);
    let seen = rustls_handshake(port, "one.test");
    assert!(seen.ocsp.is_empty());

    // Bytes pass both ways over the TLS listener of a tcp relay.
    let url = format!("https://two.test:{port}/");
    let out = curl(&[
        "-k",
        "--resolve",
        &format!("two.test:{port}:127.0.0.1"),
        &url,
    ]);
    assert_eq!(text(&out.stdout), "ok", "{}", text(&out.stderr));

    let log = relay.wait_log("nine established lines", |l| {
        l.matches("tls session").count() >= 9
    });
    for id in 1..=9 {
        // The active count depends on how soon the previous session has ended.
        let start = format!("relay sni, tls session {id} established (");
        let lines: Vec<_> = log.lines().filter(|l| l.starts_with(&start)).collect();
        assert_eq!(lines.len(), 1, "{start} in:\n{log}");
        let active = lines[0][start.len()..].strip_suffix(" active)").unwrap();
        assert!(active.parse::<u32>().unwrap() >= 1, "{log}");
    }
    let (code, _) = relay.terminate();
    assert_eq!(code, 0);
}

/// `client ca`: a client without a certificate is refused, with relayd's words in the
/// close line; one whose certificate another CA issued is refused too; one with a
/// certificate the client CA issued is served. Without `-v` there is no handshake line.
#[test]
fn client_ca_requires_a_client_certificate() {
    let dir = temp_dir("tls-clientca");
    let ca = Ca::new("server ca");
    install_keypair(&dir, "127.0.0.1", &ca.issue("127.0.0.1", &["127.0.0.1"]));
    let server_ca = put(&dir, "/client/server-ca.pem", &ca.pem());
    let clients = Ca::new("client ca");
    put(&dir, "/etc/ssl/clients.pem", &clients.pem());
    let good = clients.issue("alice", &["alice.test"]);
    let good_cert = put(&dir, "/client/alice.pem", &good.cert_pem());
    let good_key = put(&dir, "/client/private/alice.key", &good.key_pem());
    let other = Ca::new("other ca").issue("mallory", &["mallory.test"]);
    let bad_cert = put(&dir, "/client/mallory.pem", &other.cert_pem());
    let bad_key = put(&dir, "/client/private/mallory.key", &other.key_pem());
    let bport = http_backend(0);
    let port = free_port();
    let conf = format!(
        r#"
log connection
http protocol "cca" {{
    tls client ca "/etc/ssl/clients.pem"
}}
relay "cca" {{
    listen on 127.0.0.1 port {port} tls
    protocol "cca"
    forward to 127.0.0.1 port {bport}
}}
"#
    );
    let relay = start(&dir, &conf, &[]);
    // A connection closed at once fails its handshake; it is the first session.
    drop(connect_when_ready(port));
    let url = format!("https://127.0.0.1:{port}/");
    let cacert = server_ca.to_str().unwrap();

    let out = curl(&["--cacert", cacert, &url]);
    assert!(!out.status.success(), "served without a client certificate");
    let log = relay.wait_log("the refusal", |l| {
        l.contains("peer did not return a certificate")
    });
    let refusal = log
        .lines()
        .find(|l| l.contains("peer did not return a certificate"))
        .unwrap();
    assert!(
        refusal.starts_with("relay cca, session ")
            && refusal.contains(" active), 0, 127.0.0.1 -> :0, TLS handshake error: ")
            && refusal.contains("handshake failed: peer did not return a certificate"),
        "{refusal}"
    );

    let out = curl(&[
        "--cacert",
        cacert,
        "--cert",
        bad_cert.to_str().unwrap(),
        "--key",
        bad_key.to_str().unwrap(),
        &url,
    ]);
    assert!(!out.status.success(), "served a certificate of another CA");
    relay.wait_log("the second refusal", |l| {
        l.contains("handshake failed: certificate verify failed")
    });

    let out = curl(&[
        "--cacert",
        cacert,
        "--cert",
        good_cert.to_str().unwrap(),
        "--key",
        good_key.to_str().unwrap(),
        &url,
    ]);
    assert_eq!(text(&out.stdout), "ok", "{}", text(&out.stderr));
    let (code, log) = relay.terminate();
    assert_eq!(code, 0);
    assert!(!log.contains("tls session"), "{log}");
}

/// `forward with tls`: without `ca file` any backend certificate is accepted (relayd
/// sets noverifycert); with the right `ca file` the session passes, with a wrong one it
/// fails with relayd's handshake error. No SNI reaches the backend (relayd connects
/// without a name). TCP and HTTP relays both, and TLS on both sides.
#[test]
fn tls_to_backends() {
    let dir = temp_dir("tls-backend");
    let backend_ca = Ca::new("backend ca");
    let (bport, sni) = tls_backend(&backend_ca.issue("backend.test", &["backend.test"]));
    put(&dir, "/etc/ssl/backend-ca.pem", &backend_ca.pem());
    put(&dir, "/etc/ssl/other-ca.pem", &Ca::new("other ca").pem());
    let ca = Ca::new("front ca");
    install_keypair(&dir, "127.0.0.1", &ca.issue("127.0.0.1", &["127.0.0.1"]));
    let front_ca = put(&dir, "/client/front-ca.pem", &ca.pem());
    let (p1, p2, p3, p4, p5) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let conf = format!(
        r#"
log connection
http protocol "noverify" {{
    return error
}}
tcp protocol "rightca" {{
    tls ca file "/etc/ssl/backend-ca.pem"
}}
http protocol "wrongca" {{
    tls ca file "/etc/ssl/other-ca.pem"
}}
relay "noverify" {{
    listen on 127.0.0.1 port {p1}
    protocol "noverify"
    forward with tls to 127.0.0.1 port {bport}
}}
relay "rightca" {{
    listen on 127.0.0.1 port {p2}
    protocol "rightca"
    forward with tls to 127.0.0.1 port {bport}
}}
relay "wrongca" {{
    listen on 127.0.0.1 port {p3}
    protocol "wrongca"
    forward with tls to 127.0.0.1 port {bport}
}}
relay "both" {{
    listen on 127.0.0.1 port {p4} tls
    protocol "rightca"
    forward with tls to 127.0.0.1 port {bport}
}}
relay "bare" {{
    listen on 127.0.0.1 port {p5} tls
    forward with tls to 127.0.0.1 port {bport}
}}
"#
    );
    let relay = start(&dir, &conf, &["-vv"]);
    relay.wait_log("the relays running", |l| {
        l.matches("relay_launch").count() >= 5
    });
    for p in [p1, p2] {
        let out = curl(&[&format!("http://127.0.0.1:{p}/")]);
        assert_eq!(
            text(&out.stdout),
            "tls-ok",
            "port {p}: {}",
            text(&out.stderr)
        );
    }
    // Both sides TLS, with a protocol and with relayd's built-in one.
    for p in [p4, p5] {
        let out = curl(&[
            "--cacert",
            front_ca.to_str().unwrap(),
            &format!("https://127.0.0.1:{p}/"),
        ]);
        assert_eq!(
            text(&out.stdout),
            "tls-ok",
            "port {p}: {}",
            text(&out.stderr)
        );
    }

    let out = curl(&[&format!("http://127.0.0.1:{p3}/")]);
    assert!(
        !out.status.success(),
        "wrong CA passed: {}",
        text(&out.stdout)
    );
    let log = relay.wait_log("the wrong CA's failure", |l| {
        l.contains("certificate verify failed")
    });
    let line = log
        .lines()
        .find(|l| l.contains("certificate verify failed"))
        .unwrap();
    assert!(
        line.starts_with("relay wrongca, session ")
            && line.contains(&format!(
                ", 0, 127.0.0.1 -> 127.0.0.1:{bport}, TLS handshake error: handshake failed: certificate verify failed"
            )),
        "{line}"
    );
    // The backend side's line says `connected`, the client side's `established`.
    assert!(log.contains("relay noverify, tls session "), "{log}");
    assert!(log.contains(" connected (1 active)"), "{log}");
    assert!(log.contains("relay both, tls session "), "{log}");
    assert!(log.contains(" established (1 active)"), "{log}");
    // Five handshakes reached the backend (the wrong CA's too), none with a name.
    let names = sni.lock().unwrap().clone();
    assert!(names.len() >= 4, "{names:?}");
    assert!(names.iter().all(Option::is_none), "SNI sent: {names:?}");
    let (code, _) = relay.terminate();
    assert_eq!(code, 0);
}

/// TLS inspection: the relay connects to the TLS backend first, then serves the client a
/// copy of the backend's certificate signed by the inspection CA. curl, trusting only
/// that CA, gets through, and the certificate it saw has the backend's name and the
/// CA as its issuer.
#[test]
fn inspection_mints_the_backend_certificate() {
    let dir = temp_dir("tls-inspect");
    let backend_ca = Ca::new("backend ca");
    let (bport, _) = tls_backend(&backend_ca.issue("inspect.test", &["inspect.test"]));
    let ca = Ca::new("inspection ca");
    put(&dir, "/etc/ssl/inspect-ca.crt", &ca.pem());
    put(
        &dir,
        "/etc/ssl/private/inspect-ca.key",
        &pem("PRIVATE KEY", &ca.key.serialize_der()),
    );
    // The relay's own keypair: its key signs the handshakes of the minted copies.
    let front = Ca::new("front ca");
    install_keypair(&dir, "127.0.0.1", &front.issue("127.0.0.1", &["127.0.0.1"]));
    let ca_pem = put(&dir, "/client/inspect-ca.pem", &ca.pem());
    let (port, tcp_port) = (free_port(), free_port());
    let conf = format!(
        r#"
prefork 1
log connection
http protocol "inspect" {{
    tls ca cert "/etc/ssl/inspect-ca.crt"
    tls ca key "/etc/ssl/private/inspect-ca.key" password "unused"
}}
tcp protocol "inspect-tcp" {{
    tls {{ ca cert "/etc/ssl/inspect-ca.crt", ca key "/etc/ssl/private/inspect-ca.key" password "unused" }}
}}
relay "inspect" {{
    listen on 127.0.0.1 port {port} tls
    protocol "inspect"
    forward with tls to 127.0.0.1 port {bport}
}}
relay "inspect-tcp" {{
    listen on 127.0.0.1 port {tcp_port} tls
    protocol "inspect-tcp"
    forward with tls to 127.0.0.1 port {bport}
}}
"#
    );
    let relay = start(&dir, &conf, &["-vv"]);
    relay.wait_log("the relays running", |l| {
        l.matches("relay_launch").count() >= 2
    });
    // The http relay twice (the second copy comes from the worker's cache), the tcp
    // relay once.
    for port in [port, port, tcp_port] {
        let out = curl(&[
            "-v",
            "--cacert",
            ca_pem.to_str().unwrap(),
            "--resolve",
            &format!("inspect.test:{port}:127.0.0.1"),
            &format!("https://inspect.test:{port}/"),
        ]);
        let err = text(&out.stderr);
        assert_eq!(text(&out.stdout), "tls-ok", "{err}");
        assert!(err.contains("subject: CN=inspect.test"), "{err}");
        assert!(err.contains("issuer: CN=inspection ca; OU=ca"), "{err}");
        assert!(
            err.contains("subjectAltName: host \"inspect.test\" matched"),
            "{err}"
        );
    }
    let log = relay.wait_log("the sessions' lines", |l| {
        l.matches("established").count() >= 3
    });
    // The backend's handshake comes first, as relayd's relay_preconnect orders them.
    let connected = log.find("relay inspect, tls session 1 connected (1 active)");
    let established = log.find("relay inspect, tls session 1 established (1 active)");
    assert!(
        connected.is_some() && established.is_some() && connected < established,
        "{log}"
    );
    let (code, _) = relay.terminate();
    assert_eq!(code, 0);
}

/// The request-head deadline (`--head-timeout`) covers an HTTPS relay's handshake: a
/// client that drips a ClientHello one byte at a time, never idle long enough for the
/// session timeout, is cut off at the deadline.
#[test]
fn a_dripped_handshake_meets_the_head_deadline() {
    let dir = temp_dir("tls-drip");
    let ca = Ca::new("drip ca");
    install_keypair(&dir, "drip.test", &ca.issue("drip.test", &["drip.test"]));
    let bport = http_backend(0);
    let port = free_port();
    let conf = format!(
        r#"
log connection
prefork 1
http protocol "drip" {{
    tls keypair "drip.test"
}}
relay "drip" {{
    listen on 127.0.0.1 port {port} tls
    protocol "drip"
    forward to 127.0.0.1 port {bport}
}}
"#
    );
    let relay = start(&dir, &conf, &["--head-timeout", "2"]);
    let mut s = common::connect_when_ready(port);
    s.set_nonblocking(true).unwrap();
    // The start of a TLS record carrying a ClientHello, a byte every 300 ms.
    let hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ];
    let t0 = Instant::now();
    let mut buf = [0u8; 1024];
    let mut sent = 0;
    let closed_after = loop {
        assert!(t0.elapsed() < Duration::from_secs(8), "never cut off");
        std::thread::sleep(Duration::from_millis(300));
        let _ = s.write_all(&hello[sent % hello.len()..][..1]);
        sent += 1;
        match s.read(&mut buf) {
            Ok(0) => break t0.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break t0.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(4),
        "cut off after {closed_after:?}"
    );
    relay.wait_log("the close line", |l| l.contains("TLS handshake timeout"));
    let (code, _) = relay.terminate();
    assert_eq!(code, 0);
}
