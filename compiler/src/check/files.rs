//! Files relayd opens while it parses: TLS keypairs of relays that listen with TLS, CA
//! files, and the key files of filter rules. They exist on the deploy host; `--root DIR`
//! points at a copy of its tree, and `--no-file-checks` turns a missing file into a
//! warning so CI without secrets can still gate on everything else.
//!
//! A file that is there is always read and checked, whatever `--no-file-checks` says:
//! certificates must parse (RD0705), a keypair's key must belong to its certificate
//! (RD0701), a certificate file must list the server certificate first and then each
//! issuer (RD0702), and certificates must be valid at `--now` (RD0703, RD0704).
//! Private keys are judged by what relayd-run can load: rustls with its *ring* provider.

use super::Ctx;
use crate::diag::{Code, Diagnostic, Severity};
use crate::parse::ast::*;
use crate::source::Span;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate};

/// A certificate expiring sooner than this many days gets RD0703.
const EXPIRY_WARNING_DAYS: i64 = 30;

pub fn check(file: &File, ctx: &mut Ctx) {
    let protocols: Vec<&Protocol> = file
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Protocol(p) => Some(p),
            _ => None,
        })
        .collect();
    for item in &file.items {
        match item {
            Item::Relay(b) => relay(ctx, b, &protocols),
            Item::Protocol(p) => rule_files(ctx, p),
            _ => {}
        }
    }
}

fn tls_opts(p: &Protocol) -> impl Iterator<Item = &Sp<TlsOpt>> {
    p.body.iter().flatten().flat_map(|o| match &o.node {
        ProOpt::Tls { opts, .. } => opts.iter(),
        _ => [].iter(),
    })
}

/// One keypair of a protocol: its name and the files given for it (current relayd).
struct Keypair<'a> {
    name: String,
    name_span: Option<Span>,
    cert: Option<&'a Text>,
    key: Option<&'a Text>,
}

fn relay(ctx: &mut Ctx, b: &Block<RlyOpt>, protocols: &[&Protocol]) {
    let proto = b.opts.iter().find_map(|o| match &o.node {
        RlyOpt::Protocol(n) => protocols.iter().find(|p| p.name.text == n.text).copied(),
        _ => None,
    });
    // relayd loads keypairs for the relay's first listener when any listener has TLS.
    let first_listen = b.opts.iter().find_map(|o| match &o.node {
        RlyOpt::Listen { addr, port, .. } => Some((addr, port)),
        _ => None,
    });
    let tls_listen = b.opts.iter().find_map(|o| match &o.node {
        RlyOpt::Listen { tls: Some(t), .. } => Some(t.span),
        _ => None,
    });
    let tls_client = b
        .opts
        .iter()
        .any(|o| matches!(&o.node, RlyOpt::Forward { tls: Some(_), .. }));
    if tls_listen.is_some() || tls_client {
        ca_files(ctx, b, proto);
    }
    let (Some(at), Some((addr, port))) = (tls_listen, first_listen) else {
        return;
    };
    let port = match &port.value {
        PortValue::Number(n) => n.to_string(),
        PortValue::Name(n) => crate::services::lookup(n).map_or(n.clone(), |p| p.to_string()),
    };
    // Keypair names, with explicit files (current relayd) where given.
    let mut keypairs: Vec<Keypair> = Vec::new();
    for t in proto.into_iter().flat_map(tls_opts) {
        let (name, file) = match &t.node {
            TlsOpt::Keypair(n) => (n, None),
            TlsOpt::KeypairFile { name, kind, path } => (name, Some((kind, path))),
            _ => continue,
        };
        let idx = match keypairs.iter().position(|k| k.name == name.node) {
            Some(i) => i,
            None => {
                keypairs.push(Keypair {
                    name: name.node.clone(),
                    name_span: Some(name.span),
                    cert: None,
                    key: None,
                });
                keypairs.len() - 1
            }
        };
        match file {
            Some((KeypairFile::Cert, path)) => keypairs[idx].cert = Some(path),
            Some((KeypairFile::Key, path)) => keypairs[idx].key = Some(path),
            _ => {}
        }
    }
    let default_name = keypairs.is_empty();
    if default_name {
        keypairs.push(Keypair {
            name: addr.node.clone(),
            name_span: None,
            cert: None,
            key: None,
        });
    }
    for kp in keypairs {
        let name = &kp.name;
        let default = relaydc_spec::tls::keypair_paths(name, &port);
        let certs = match kp.cert {
            Some(c) => vec![c.node.clone()],
            None => default.certs.to_vec(),
        };
        let keys = match kp.key {
            Some(k) => vec![k.node.clone()],
            None => default.keys.to_vec(),
        };
        // relayd tries NAME:PORT first, then NAME, as a pair.
        let last_key = keys.last().cloned().unwrap_or_default();
        let found = certs
            .iter()
            .zip(keys.iter().chain(std::iter::repeat(&last_key)))
            .find(|(c, k)| readable(ctx, c) && readable(ctx, k));
        if let Some((c, k)) = found {
            let fallback = kp.name_span.unwrap_or(at);
            let pair = KeypairFiles {
                cert: c,
                key: k,
                cert_at: kp.cert.map_or(fallback, |t| t.span),
                key_at: kp.key.map_or(fallback, |t| t.span),
            };
            keypair_material(ctx, &pair);
            continue;
        }
        let relayd = if default_name {
            format!("cannot load certificates for relay {}", b.name.text)
        } else {
            format!("cannot load keypair {name} for relay {}", b.name.text)
        };
        let looked: Vec<String> = certs
            .iter()
            .chain(keys.iter())
            .map(|p| shown(ctx, p))
            .collect();
        let d = Diagnostic::new(Code::TlsFiles, at, format!("{relayd}: no readable certificate and key"))
            .relayd_message(relayd)
            .severity(ctx.file_severity())
            .help(format!("looked for {}", looked.join(", ")))
            .help("on a build host without the keys, use `--no-file-checks`, or `--root DIR` for a copy of the deploy host's files");
        ctx.report(d);
    }
}

/// CA files relayd opens for a relay that speaks TLS on either side.
fn ca_files(ctx: &mut Ctx, b: &Block<RlyOpt>, proto: Option<&Protocol>) {
    let mut ca_cert: Option<(&Text, Vec<Cert>)> = None;
    let mut ca_key: Option<(&Text, Vec<u8>)> = None;
    for t in proto.into_iter().flat_map(tls_opts) {
        let path = match &t.node {
            TlsOpt::CaFile(p) | TlsOpt::CaCert(p) | TlsOpt::ClientCa(p) => p,
            TlsOpt::CaKey { path, .. } => path,
            _ => continue,
        };
        if !readable(ctx, &path.node) {
            let relayd = format!("cannot load certificates for relay {}", b.name.text);
            ctx.report(
                Diagnostic::new(
                    Code::TlsCaFile,
                    path.span,
                    format!("cannot read `{}`", path.node),
                )
                .relayd_message(relayd)
                .severity(ctx.file_severity())
                .help(format!("looked for {}", shown(ctx, &path.node))),
            );
            continue;
        }
        match &t.node {
            TlsOpt::CaFile(p) => ca_bundle(ctx, p, "`ca file`"),
            TlsOpt::ClientCa(p) => ca_bundle(ctx, p, "`client ca`"),
            TlsOpt::CaCert(p) => {
                if let Some(certs) = cert_file(ctx, p.span, &p.node) {
                    if let Some(first) = certs.first() {
                        validity(ctx, p.span, &p.node, first, "the `ca cert`");
                    }
                    ca_cert = Some((p, certs));
                }
            }
            TlsOpt::CaKey { path, password } => {
                if let Some(spki) = key_file(ctx, path.span, &path.node, Some(password)) {
                    ca_key = Some((path, spki));
                }
            }
            _ => {}
        }
    }
    // TLS inspection signs with `ca key` in the name of `ca cert`: they must match.
    if let (Some((cert_path, certs)), Some((key_path, spki))) = (ca_cert, ca_key) {
        if let Some(first) = certs.first() {
            if first.spki != spki {
                ctx.report(
                    Diagnostic::new(
                        Code::TlsKeyMismatch,
                        key_path.span,
                        format!(
                            "the `ca key` `{}` does not belong to the `ca cert` `{}` ({})",
                            key_path.node,
                            cert_path.node,
                            first.name()
                        ),
                    )
                    .label(cert_path.span, "the `ca cert` is set here")
                    .help("relayd signs the certificates it makes for TLS inspection with `ca key` and names `ca cert` as their issuer; clients that trust `ca cert` refuse them")
                    .help("use the key the CA certificate was made with"),
                );
            }
        }
    }
}

fn rule_files(ctx: &mut Ctx, p: &Protocol) {
    for o in p.body.iter().flatten() {
        if let ProOpt::Rule(r) = &o.node {
            for ro in &r.opts {
                if let RuleOpt::File { path, .. } = &ro.node {
                    if !readable(ctx, &path.node) {
                        ctx.report(
                            Diagnostic::relayd(
                                Code::RuleFile,
                                path.span,
                                format!("failed to load rules from {}", path.node),
                            )
                            .severity(ctx.file_severity())
                            .help(format!("looked for {}", shown(ctx, &path.node))),
                        );
                    }
                }
            }
        }
    }
}

fn readable(ctx: &Ctx, path: &str) -> bool {
    let p = ctx.sources.rules.host_path(path);
    Path::new(&p).is_file() && std::fs::File::open(&p).is_ok()
}

fn shown(ctx: &Ctx, path: &str) -> String {
    ctx.sources.rules.host_path(path).display().to_string()
}

fn read(ctx: &Ctx, path: &str) -> Option<Vec<u8>> {
    std::fs::read(ctx.sources.rules.host_path(path)).ok()
}

// ---------------------------------------------------------------------------------------
// TLS material
// ---------------------------------------------------------------------------------------

/// The files of one keypair that relayd found, and where to point at them.
struct KeypairFiles<'a> {
    cert: &'a str,
    key: &'a str,
    cert_at: Span,
    key_at: Span,
}

/// What the checks need of one certificate.
struct Cert {
    subject: String,
    subject_raw: Vec<u8>,
    issuer_raw: Vec<u8>,
    is_ca: bool,
    self_issued: bool,
    not_before: i64,
    not_after: i64,
    /// The SubjectPublicKeyInfo's algorithm OID and key bits.
    spki: Vec<u8>,
}

impl Cert {
    fn parse(der: &[u8]) -> Result<Cert, String> {
        let (_, c) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let subject = c
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map_or_else(|| c.subject().to_string(), |cn| format!("CN={cn}"));
        Ok(Cert {
            subject,
            subject_raw: c.subject().as_raw().to_vec(),
            issuer_raw: c.issuer().as_raw().to_vec(),
            is_ca: c.is_ca(),
            self_issued: c.subject().as_raw() == c.issuer().as_raw(),
            not_before: c.validity().not_before.timestamp(),
            not_after: c.validity().not_after.timestamp(),
            spki: spki_identity(c.public_key()),
        })
    }

    fn name(&self) -> String {
        format!("`{}`", self.subject)
    }
}

fn spki_identity(spki: &SubjectPublicKeyInfo) -> Vec<u8> {
    let mut out = spki.algorithm.algorithm.as_bytes().to_vec();
    out.push(0);
    out.extend_from_slice(&spki.subject_public_key.data);
    out
}

/// The certificates of a PEM file, in file order.
fn parse_certs(bytes: &[u8]) -> Result<Vec<Cert>, String> {
    let mut out = Vec::new();
    for (i, item) in CertificateDer::pem_slice_iter(bytes).enumerate() {
        let der = item.map_err(|e| format!("PEM section {} cannot be decoded ({e:?})", i + 1))?;
        let cert = Cert::parse(&der)
            .map_err(|_| format!("certificate {} is not a DER X.509 certificate", i + 1))?;
        out.push(cert);
    }
    if out.is_empty() {
        return Err("it holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".into());
    }
    Ok(out)
}

/// Reads and parses a certificate file, reporting RD0705; None when unusable.
fn cert_file(ctx: &mut Ctx, at: Span, path: &str) -> Option<Vec<Cert>> {
    let bytes = read(ctx, path)?;
    match parse_certs(&bytes) {
        Ok(certs) => Some(certs),
        Err(why) => {
            ctx.report(
                Diagnostic::new(
                    Code::TlsBadMaterial,
                    at,
                    format!("cannot parse the certificate file `{path}`: {why}"),
                )
                .help(format!("read from {}", shown(ctx, path)))
                .help("relayd wants PEM: `-----BEGIN CERTIFICATE-----` sections, the server certificate first, then its issuers"),
            );
            None
        }
    }
}

/// Why a private key cannot be used.
#[derive(Debug)]
enum KeyError {
    /// Not a key at all.
    Bad(String),
    /// A key rustls' *ring* provider cannot sign with.
    Unsupported(String),
    /// Encrypted, and no password was given (keypair keys have none).
    NeedsPassword,
    /// Encrypted with this password, but it does not decrypt.
    WrongPassword,
    /// Encrypted in a way relaydc cannot decrypt.
    CannotDecrypt(String),
}

/// Loads a private key (decrypting it with `password` if it is encrypted) and returns
/// the identity of its public key, as [`spki_identity`] gives it for certificates.
fn load_key(bytes: &[u8], password: Option<&str>) -> Result<Vec<u8>, KeyError> {
    let der = match pem_encryption(bytes) {
        Some(enc) => {
            let Some(pw) = password else {
                return Err(KeyError::NeedsPassword);
            };
            decrypt_key(&enc, pw)?
        }
        None => PrivateKeyDer::from_pem_slice(bytes).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => KeyError::Bad(
                "it holds no PEM private key (`-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)".into(),
            ),
            e => KeyError::Bad(format!("the PEM cannot be decoded ({e:?})")),
        })?,
    };
    let key = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|e| {
        if matches!(der, PrivateKeyDer::Pkcs8(_)) && pkcs8_is_garbage(&der) {
            KeyError::Bad("the PEM body is not a DER private key".into())
        } else {
            KeyError::Unsupported(e.to_string())
        }
    })?;
    let spki = key
        .public_key()
        .ok_or_else(|| KeyError::Unsupported("rustls cannot derive its public key".into()))?;
    let (_, parsed) = SubjectPublicKeyInfo::from_der(spki.as_ref())
        .map_err(|e| KeyError::Unsupported(e.to_string()))?;
    Ok(spki_identity(&parsed))
}

/// A private key file's key as DER, decrypted with `password` if it is encrypted — what
/// `relaydc compile` embeds in the plan's keys section.
pub(crate) fn private_key_der(
    bytes: &[u8],
    password: Option<&str>,
) -> Result<PrivateKeyDer<'static>, String> {
    let der = match pem_encryption(bytes) {
        Some(enc) => {
            let pw = password.ok_or("the key is encrypted and has no password")?;
            decrypt_key(&enc, pw).map_err(|e| format!("{e:?}"))?
        }
        None => PrivateKeyDer::from_pem_slice(bytes).map_err(|e| format!("{e:?}"))?,
    };
    Ok(der)
}

/// Whether a PKCS#8 body is not even a DER SEQUENCE (so "unsupported" would mislead).
fn pkcs8_is_garbage(der: &PrivateKeyDer) -> bool {
    der.secret_der().first() != Some(&0x30)
}

/// Reads a private key file, reporting RD0705; returns the key's public key identity.
fn key_file(ctx: &mut Ctx, at: Span, path: &str, password: Option<&Text>) -> Option<Vec<u8>> {
    let bytes = read(ctx, path)?;
    let what = if password.is_some() {
        "`ca key`"
    } else {
        "private key"
    };
    let err = match load_key(&bytes, password.map(|p| p.node.as_str())) {
        Ok(spki) => {
            // Only a key relayd-run can use is worth guarding.
            key_mode(ctx, at, path, what);
            return Some(spki);
        }
        Err(e) => e,
    };
    let d = match err {
        KeyError::Bad(why) => Diagnostic::new(
            Code::TlsBadMaterial,
            at,
            format!("cannot parse the {what} `{path}`: {why}"),
        )
        .help(format!("read from {}", shown(ctx, path))),
        KeyError::Unsupported(why) => Diagnostic::new(
            Code::TlsBadMaterial,
            at,
            format!("relayd-run cannot use the {what} `{path}`: {why}"),
        )
        .help("rustls (with the ring provider) signs with RSA keys of 2048 to 8192 bits, ECDSA P-256 and P-384 keys, and Ed25519 keys"),
        KeyError::NeedsPassword => Diagnostic::new(
            Code::TlsBadMaterial,
            at,
            format!("the {what} `{path}` is encrypted, and relayd reads keypair keys without a password"),
        )
        .help("store the key unencrypted (readable by root only), e.g. `openssl pkey -in KEY -out KEY.plain`"),
        KeyError::WrongPassword => {
            let mut d = Diagnostic::new(
                Code::TlsBadMaterial,
                at,
                format!("the {what} `{path}` does not decrypt with the password given"),
            )
            .help("relayd decrypts `ca key` while it parses the configuration and stops when that fails");
            if let Some(p) = password {
                d = d.label(p.span, "this password");
            }
            d
        }
        KeyError::CannotDecrypt(how) => Diagnostic::new(
            Code::TlsBadMaterial,
            at,
            format!("the {what} `{path}` is encrypted with {how}, which relaydc cannot decrypt: it was not checked"),
        )
        .severity(Severity::Note)
        .help("relaydc decrypts PKCS#8 (PBES2) keys and traditional PEM keys encrypted with AES-CBC or DES-EDE3-CBC; re-encrypt the key with `openssl pkcs8 -topk8 -v2 aes-256-cbc` to have it checked"),
    };
    ctx.report(d);
    None
}

/// RD0711: a key file that its group or everyone may read. relayd does not look (it
/// reads keys as root before it drops privileges), so a world-readable key goes unnoticed.
fn key_mode(ctx: &mut Ctx, at: Span, path: &str, what: &str) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::metadata(ctx.sources.rules.host_path(path)) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    let who = if mode & 0o007 != 0 {
        "every user on the host"
    } else {
        "the members of its group"
    };
    ctx.report(
        Diagnostic::new(
            Code::TlsKeyReadable,
            at,
            format!("the {what} `{path}` can be read by {who} (mode {mode:04o})"),
        )
        .help(format!(
            "keep private keys readable by their owner only: `chmod 600 {}`",
            shown(ctx, path)
        )),
    );
}

/// Checks a keypair: the certificate file, its chain order and dates, and the key.
fn keypair_material(ctx: &mut Ctx, kp: &KeypairFiles) {
    let certs = cert_file(ctx, kp.cert_at, kp.cert);
    let spki = key_file(ctx, kp.key_at, kp.key, None);
    let Some(certs) = certs else { return };
    chain_order(ctx, kp, &certs);
    for (i, c) in certs.iter().enumerate() {
        let what = if i == 0 {
            "the certificate".to_string()
        } else {
            format!("chain certificate {}", i + 1)
        };
        validity(ctx, kp.cert_at, kp.cert, c, &what);
    }
    let (Some(spki), Some(leaf)) = (spki, certs.first()) else {
        return;
    };
    if leaf.spki == spki {
        return;
    }
    let mut d = Diagnostic::new(
        Code::TlsKeyMismatch,
        kp.key_at,
        format!(
            "the private key `{}` does not belong to the certificate {} in `{}`",
            kp.key,
            leaf.name(),
            kp.cert
        ),
    );
    if kp.cert_at != kp.key_at {
        d = d.label(kp.cert_at, "the certificate file is set here");
    }
    d = match certs.iter().position(|c| c.spki == spki) {
        Some(i) => d.help(format!(
            "the key belongs to certificate {} ({}) of the file, which must come first",
            i + 1,
            certs[i].name()
        )),
        None => d.help(
            "relayd refuses a keypair whose key does not match the first certificate of the file; use the key the certificate was requested with",
        ),
    };
    ctx.report(d);
}

/// RD0702: the server certificate first, then each certificate's issuer.
fn chain_order(ctx: &mut Ctx, kp: &KeypairFiles, certs: &[Cert]) {
    if certs.len() < 2 {
        return;
    }
    let leaf_at = certs.iter().position(|c| !c.is_ca);
    let problem = match leaf_at {
        Some(i) if i > 0 => Some(format!(
            "the server certificate {} is certificate {} of `{}`, not the first",
            certs[i].name(),
            i + 1,
            kp.cert
        )),
        _ => certs.windows(2).enumerate().find_map(|(i, w)| {
            (w[0].issuer_raw != w[1].subject_raw && !w[0].self_issued).then(|| {
                format!(
                    "the chain in `{}` is out of order: certificate {} ({}) did not issue certificate {} ({})",
                    kp.cert,
                    i + 2,
                    w[1].name(),
                    i + 1,
                    w[0].name()
                )
            })
        }),
    };
    if let Some(message) = problem {
        ctx.report(
            Diagnostic::new(Code::TlsChainOrder, kp.cert_at, message)
                .help("relayd sends the file's certificates in file order: the server certificate first, then the certificate that issued it, and so on; clients that do not reorder the chain cannot verify it"),
        );
    }
}

/// RD0703/RD0704 for one certificate, against `ctx.now`.
fn validity(ctx: &mut Ctx, at: Span, path: &str, c: &Cert, what: &str) {
    let now = ctx.now;
    let (code, message, help) = if c.not_before > now {
        (
            Code::TlsCertExpired,
            format!(
                "{what} {} in `{path}` is not valid before {}",
                c.name(),
                date(c.not_before)
            ),
            "relayd serves it all the same, and clients refuse the connection until then; check the clock of the machine that issued it",
        )
    } else if c.not_after < now {
        (
            Code::TlsCertExpired,
            format!(
                "{what} {} in `{path}` expired on {}",
                c.name(),
                date(c.not_after)
            ),
            "relayd serves it all the same, and clients refuse the connection; renew the certificate",
        )
    } else if c.not_after - now < EXPIRY_WARNING_DAYS * 86_400 {
        let days = (c.not_after - now) / 86_400;
        (
            Code::TlsCertExpiring,
            format!(
                "{what} {} in `{path}` expires on {}, in {days} day{}",
                c.name(),
                date(c.not_after),
                if days == 1 { "" } else { "s" }
            ),
            "renew it before then, or clients will refuse the connection",
        )
    } else {
        return;
    };
    ctx.report(
        Diagnostic::new(code, at, message)
            .help(help)
            .help(format!("judged at {} (`--now`)", date_time(now))),
    );
}

/// A CA bundle (`ca file`, `client ca`): it must parse, and must hold a certificate
/// that is valid now (expired roots in a large bundle are normal and not reported).
fn ca_bundle(ctx: &mut Ctx, p: &Text, what: &str) {
    let Some(certs) = cert_file(ctx, p.span, &p.node) else {
        return;
    };
    let now = ctx.now;
    let current: Vec<&Cert> = certs
        .iter()
        .filter(|c| c.not_before <= now && now <= c.not_after)
        .collect();
    if current.is_empty() {
        let mut d = Diagnostic::new(
            Code::TlsCertExpired,
            p.span,
            format!(
                "no certificate in the {what} `{}` is valid at {}",
                p.node,
                date(now)
            ),
        );
        if let [only] = certs.as_slice() {
            d = d.help(if only.not_after < now {
                format!("{} expired on {}", only.name(), date(only.not_after))
            } else {
                format!(
                    "{} is not valid before {}",
                    only.name(),
                    date(only.not_before)
                )
            });
        }
        ctx.report(d.help("a CA file without a valid certificate verifies no peer"));
    } else if current
        .iter()
        .all(|c| c.not_after - now < EXPIRY_WARNING_DAYS * 86_400)
    {
        let last = current.iter().map(|c| c.not_after).max().unwrap_or(now);
        ctx.report(
            Diagnostic::new(
                Code::TlsCertExpiring,
                p.span,
                format!(
                    "every certificate in the {what} `{}` expires by {}",
                    p.node,
                    date(last)
                ),
            )
            .help("after that the CA file verifies no peer; add the renewed CA certificate"),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Encrypted private keys
// ---------------------------------------------------------------------------------------

/// How a PEM private key is encrypted.
enum Encryption {
    /// `-----BEGIN ENCRYPTED PRIVATE KEY-----`: PKCS#8 EncryptedPrivateKeyInfo.
    Pkcs8(Vec<u8>),
    /// `Proc-Type: 4,ENCRYPTED` with `DEK-Info: CIPHER,IV`: OpenSSL's traditional form.
    Traditional {
        label: String,
        cipher: String,
        iv: Vec<u8>,
        data: Vec<u8>,
    },
    /// Encrypted, but the PEM itself is broken.
    Broken(String),
}

/// Finds an encrypted private key in PEM text; None for anything else.
fn pem_encryption(bytes: &[u8]) -> Option<Encryption> {
    let text = String::from_utf8_lossy(bytes);
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        let mut headers = Vec::new();
        let mut body = String::new();
        for l in lines.by_ref() {
            if l.starts_with("-----END ") {
                break;
            }
            match l.split_once(':') {
                Some((k, v)) if body.is_empty() => headers.push((k.trim(), v.trim())),
                _ => body.push_str(l),
            }
        }
        let data = base64_decode(&body);
        if label == "ENCRYPTED PRIVATE KEY" {
            return Some(match data {
                Some(d) => Encryption::Pkcs8(d),
                None => Encryption::Broken("its base64 body is invalid".into()),
            });
        }
        let encrypted = headers
            .iter()
            .any(|(k, v)| *k == "Proc-Type" && v.ends_with("ENCRYPTED"));
        if !encrypted {
            continue;
        }
        let Some((cipher, iv)) = headers
            .iter()
            .find(|(k, _)| *k == "DEK-Info")
            .and_then(|(_, v)| v.split_once(','))
        else {
            return Some(Encryption::Broken("it has no `DEK-Info` header".into()));
        };
        return Some(match (hex_decode(iv), data) {
            (Some(iv), Some(data)) => Encryption::Traditional {
                label: label.to_string(),
                cipher: cipher.to_string(),
                iv,
                data,
            },
            _ => Encryption::Broken("its IV or base64 body is invalid".into()),
        });
    }
    None
}

fn decrypt_key(enc: &Encryption, password: &str) -> Result<PrivateKeyDer<'static>, KeyError> {
    match enc {
        Encryption::Broken(why) => {
            Err(KeyError::Bad(format!("the encrypted key is broken: {why}")))
        }
        Encryption::Pkcs8(der) => {
            // pkcs8 reads PBES2 only; PKCS#12 PBE (`PBE-SHA1-3DES`, what `openssl pkcs8
            // -topk8` writes without `-v2`) and PBES1 fail here.
            let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice()).map_err(|_| {
                KeyError::CannotDecrypt("a scheme other than PKCS#5 v2 (PBES2)".into())
            })?;
            match info.decrypt(password) {
                Ok(doc) => Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    doc.as_bytes().to_vec(),
                ))),
                // pkcs5 reports a bad padding as `EncryptFailed`; a wrong password that
                // happens to pass the padding check leaves bytes that are not DER.
                Err(
                    pkcs8::Error::EncryptedPrivateKey(
                        pkcs8::pkcs5::Error::DecryptFailed | pkcs8::pkcs5::Error::EncryptFailed,
                    )
                    | pkcs8::Error::Asn1(_),
                ) => Err(KeyError::WrongPassword),
                Err(e) => Err(KeyError::CannotDecrypt(format!(
                    "a scheme it reports as `{e}`"
                ))),
            }
        }
        Encryption::Traditional {
            label,
            cipher,
            iv,
            data,
        } => {
            let plain = traditional_decrypt(cipher, iv, data, password)?;
            // A wrong password usually fails the padding; otherwise the DER is garbage.
            if plain.first() != Some(&0x30) {
                return Err(KeyError::WrongPassword);
            }
            match label.as_str() {
                "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(plain.into())),
                "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(plain.into())),
                "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(plain.into())),
                other => Err(KeyError::Bad(format!("`{other}` is not a private key"))),
            }
        }
    }
}

/// OpenSSL's traditional PEM decryption: the key is EVP_BytesToKey(MD5, salt = the
/// first 8 bytes of the IV, one round), the cipher runs in CBC mode with PKCS#7 padding.
fn traditional_decrypt(
    cipher: &str,
    iv: &[u8],
    data: &[u8],
    password: &str,
) -> Result<Vec<u8>, KeyError> {
    use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
    let key_len = match cipher {
        "AES-128-CBC" => 16,
        "AES-192-CBC" => 24,
        "AES-256-CBC" => 32,
        "DES-EDE3-CBC" => 24,
        other => return Err(KeyError::CannotDecrypt(format!("`{other}`"))),
    };
    let salt = iv
        .get(..8)
        .ok_or(KeyError::Bad("its IV is too short".into()))?;
    let key = bytes_to_key(password.as_bytes(), salt, key_len);
    let bad_iv = |_| KeyError::Bad("its IV does not fit the cipher".into());
    let plain = match cipher {
        "AES-128-CBC" => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        "AES-192-CBC" => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        "AES-256-CBC" => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        _ => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, iv)
            .map_err(bad_iv)?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
    };
    plain.map_err(|_| KeyError::WrongPassword)
}

/// OpenSSL's EVP_BytesToKey with MD5 and one iteration.
fn bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut out = Vec::with_capacity(len + 16);
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < len {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(password);
        h.update(salt);
        prev = h.finalize().to_vec();
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    s.as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [_, _] => u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok(),
            _ => None,
        })
        .collect()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------

/// The real clock, in seconds since the Unix epoch (`--now` overrides it).
pub fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Parses `--now`: an RFC 3339 time (`2026-11-26T00:00:00Z`, an offset such as `+01:00`,
/// fractions of a second ignored), or a bare date meaning midnight UTC.
pub fn parse_now(s: &str) -> Result<i64, String> {
    let bad = || format!("`{s}` is not an RFC 3339 time such as 2026-11-26T00:00:00Z");
    let num = |t: &str| -> Result<i64, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse().map_err(|_| bad())
    };
    let (date_part, time_part) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date_part.splitn(3, '-');
    let (y, m, day) = match (d.next(), d.next(), d.next()) {
        (Some(y), Some(m), Some(day)) if y.len() == 4 && m.len() == 2 && day.len() == 2 => {
            (num(y)?, num(m)?, num(day)?)
        }
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || !(1..=days_in_month(y, m)).contains(&day) {
        return Err(bad());
    }
    let mut secs = days_from_civil(y, m, day) * 86_400;
    if let Some(t) = time_part {
        let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
            (c, 0)
        } else if let Some(i) = t.rfind(['+', '-']) {
            let (c, o) = t.split_at(i);
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
            let (oh, om) = (num(oh)?, num(om)?);
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            (c, sign * (oh * 3600 + om * 60))
        } else {
            return Err(bad());
        };
        let clock = clock.split('.').next().unwrap_or(clock);
        let mut parts = clock.split(':');
        let (h, mi, sec) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(mi), Some(sec), None) => (num(h)?, num(mi)?, num(sec)?),
            _ => return Err(bad()),
        };
        if h > 23 || mi > 59 || sec > 60 {
            return Err(bad());
        }
        secs += h * 3600 + mi * 60 + sec - offset;
    }
    Ok(secs)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a Unix time: `2026-12-10`.
fn date(t: i64) -> String {
    let z = t.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-26 00:00:00 UTC`.
fn date_time(t: i64) -> String {
    let s = t.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        date(t),
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn now_parses_rfc3339() {
        assert_eq!(parse_now("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(parse_now("2026-11-26T00:00:00Z"), Ok(1_795_651_200));
        assert_eq!(parse_now("2026-11-26"), Ok(1_795_651_200));
        assert_eq!(parse_now("2026-11-26T01:00:00.5+01:00"), Ok(1_795_651_200));
        assert_eq!(parse_now("2000-02-29T12:00:00z"), Ok(951_825_600));
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "26-11-26",
            "2026-11-26T00:00",
            "now",
        ] {
            assert!(parse_now(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dates_round_trip() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_795_651_200), "2026-11-26");
        assert_eq!(date(951_825_600), "2000-02-29");
        assert_eq!(date(-86_400), "1969-12-31");
        assert_eq!(date_time(1_795_654_861), "2026-11-26 01:01:01 UTC");
        for y in [1999, 2000, 2024, 2100] {
            assert_eq!(
                date(days_from_civil(y, 3, 1) * 86_400),
                format!("{y}-03-01")
            );
        }
    }

    #[test]
    fn base64_and_hex() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVs\nbG8h").unwrap(), b"hello!");
        assert!(base64_decode("a$").is_none());
        assert_eq!(hex_decode("0aFf").unwrap(), [0x0a, 0xff]);
        assert!(hex_decode("abc").is_none());
    }

    #[test]
    fn bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cbc -P -md md5 -S 0102030405060708 -pass pass:secret`
        let k = bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 32);
        assert_eq!(
            hex_decode("C9E5A1BD216DBE1317E230CEF48F38EE7F0E17AD64022144BCCEC4A1AA2879AB"),
            Some(k)
        );
    }
}
