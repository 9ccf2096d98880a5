//! Binding deploy-host facts: addresses and TLS material.

use super::{unresolvable, Binding};
use crate::check::files::private_key_der;
use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir;
use crate::source::{PathRules, Span};
use relaydc_spec::plan::{self, Address, KeyKind, KeyRef, Keypair, Material, PrivateKey};
use rustls_pki_types::PrivateKeyDer;
use std::net::{IpAddr, ToSocketAddrs};

pub(super) struct Binder<'a> {
    paths: &'a PathRules,
    binding: Binding,
    diags: &'a mut Diagnostics,
    keypairs: Vec<Keypair>,
    keys: Vec<PrivateKey>,
    /// (name, port) of each keypair, so relays sharing one share the entry.
    seen: Vec<(String, u16)>,
}

impl<'a> Binder<'a> {
    pub(super) fn new(paths: &'a PathRules, binding: Binding, diags: &'a mut Diagnostics) -> Self {
        Binder {
            paths,
            binding,
            diags,
            keypairs: Vec::new(),
            keys: Vec::new(),
            seen: Vec::new(),
        }
    }

    pub(super) fn finish(self) -> (Vec<Keypair>, plan::Keys) {
        (self.keypairs, plan::Keys { keys: self.keys })
    }

    /// An address as relayd's `host()` takes it: an IP literal, else a name resolved to
    /// its first address (now, or by relayd-run with late binding).
    pub(super) fn address(&mut self, text: &str, at: Span) -> Address {
        if let Ok(ip) = text.split('%').next().unwrap_or(text).parse::<IpAddr>() {
            return Address::Ip(ip);
        }
        if self.binding == Binding::Late {
            return Address::Name(text.to_string());
        }
        let resolved = if plan::never_resolves(text) {
            None
        } else {
            (text, 0u16)
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .map(|a| a.ip())
        };
        match resolved {
            Some(ip) => Address::Ip(ip),
            None => {
                self.diags.push(unresolvable(at, text));
                Address::Name(text.to_string())
            }
        }
    }

    /// A CA bundle or other public file: embedded now, or its path.
    pub(super) fn material(&mut self, path: &str, at: Span) -> Material {
        if self.binding == Binding::Late {
            return Material::Paths(vec![path.to_string()]);
        }
        match std::fs::read(self.paths.host_path(path)) {
            Ok(bytes) => Material::Embedded(bytes),
            Err(e) => {
                self.diags.push(file_error(at, path, &e.to_string()));
                Material::Paths(vec![path.to_string()])
            }
        }
    }

    /// The `ca cert` / `ca key` pair of TLS inspection.
    pub(super) fn inspection_ca(
        &mut self,
        cert: &str,
        key: &str,
        password: Option<&str>,
        at: Span,
    ) -> Option<u32> {
        let certs = self.material(cert, at);
        let key = self.key(&[key.to_string()], password, at);
        self.keypairs.push(Keypair {
            name: "ca".to_string(),
            certs,
            key,
            ocsp: None,
        });
        Some(self.keypairs.len() as u32 - 1)
    }

    /// The keypairs of a relay with TLS listeners, found as relayd finds them: each
    /// `tls keypair NAME` (or, with none, the first listen address as text), looked up
    /// as `/etc/ssl/NAME:PORT.crt` then `/etc/ssl/NAME.crt`, keys under
    /// `/etc/ssl/private/`, unless `keypair NAME cert|key|ocsp PATH` names the files.
    pub(super) fn relay_keypairs(
        &mut self,
        r: &ir::Relay,
        protocol: Option<&ir::Protocol>,
    ) -> Vec<u32> {
        let Some(first) = r.listeners.first() else {
            return Vec::new();
        };
        let port = first.port;
        let tls = protocol.map(|p| &p.tls);
        let mut names: Vec<String> = tls.map(|t| t.keypairs.clone()).unwrap_or_default();
        if names.is_empty() {
            names.push(first.addr.clone());
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(i) = self.seen.iter().position(|s| *s == (name.clone(), port)) {
                out.push(i as u32);
                continue;
            }
            let explicit = |kind: ir::KeypairFile| {
                tls.and_then(|t| {
                    t.keypair_files
                        .iter()
                        .find(|(n, k, _)| *n == name && *k == kind)
                        .map(|(_, _, p)| p.clone())
                })
            };
            let default = relaydc_spec::tls::keypair_paths(&name, port);
            let certs = match explicit(ir::KeypairFile::Cert) {
                Some(p) => vec![p],
                None => default.certs.to_vec(),
            };
            let keys = match explicit(ir::KeypairFile::Key) {
                Some(p) => vec![p],
                None => default.keys.to_vec(),
            };
            let ocsp = match explicit(ir::KeypairFile::Ocsp) {
                Some(p) => vec![p],
                None => default.ocsp.to_vec(),
            };
            let keypair = if self.binding == Binding::Late {
                Keypair {
                    name: name.clone(),
                    certs: Material::Paths(certs),
                    key: KeyRef::Paths(keys),
                    ocsp: Some(Material::Paths(ocsp)),
                }
            } else {
                self.embedded_keypair(&name, &certs, &keys, &ocsp, r)
            };
            self.keypairs.push(keypair);
            self.seen.push((name, port));
            out.push(self.keypairs.len() as u32 - 1);
        }
        out
    }

    fn embedded_keypair(
        &mut self,
        name: &str,
        certs: &[String],
        keys: &[String],
        ocsp: &[String],
        r: &ir::Relay,
    ) -> Keypair {
        let at = r.listeners.first().map_or(r.span, |l| l.span);
        // relayd tries NAME:PORT, then NAME, as a pair.
        let pair = certs
            .iter()
            .zip(keys.iter().chain(keys.last()).cycle())
            .find(|(c, k)| self.paths.host_path(c).is_file() && self.paths.host_path(k).is_file());
        let Some((cert, key)) = pair else {
            self.diags.push(
                Diagnostic::new(
                    Code::TlsFiles,
                    at,
                    format!("cannot load keypair {name} for relay {}", r.name),
                )
                .help(format!("looked for {}", certs.join(", ")))
                .help("compile on the deploy host, use `--root DIR` for a copy of its files, or `--late-bind`"),
            );
            return Keypair {
                name: name.to_string(),
                certs: Material::Paths(certs.to_vec()),
                key: KeyRef::Paths(keys.to_vec()),
                ocsp: None,
            };
        };
        let certs = self.material(cert, at);
        let key = self.key(std::slice::from_ref(key), None, at);
        let ocsp = ocsp
            .iter()
            .find(|p| self.paths.host_path(p).is_file())
            .map(|p| self.material(p, at));
        Keypair {
            name: name.to_string(),
            certs,
            key,
            ocsp,
        }
    }

    /// A private key into the keys section (never into the body).
    fn key(&mut self, paths: &[String], password: Option<&str>, at: Span) -> KeyRef {
        if self.binding == Binding::Late {
            return KeyRef::Paths(paths.to_vec());
        }
        let Some(path) = paths.first() else {
            return KeyRef::Paths(Vec::new());
        };
        let read = std::fs::read(self.paths.host_path(path))
            .map_err(|e| e.to_string())
            .and_then(|bytes| private_key_der(&bytes, password));
        match read {
            Ok(der) => {
                let (kind, bytes) = match &der {
                    PrivateKeyDer::Pkcs8(k) => (KeyKind::Pkcs8, k.secret_pkcs8_der().to_vec()),
                    PrivateKeyDer::Pkcs1(k) => (KeyKind::Pkcs1, k.secret_pkcs1_der().to_vec()),
                    PrivateKeyDer::Sec1(k) => (KeyKind::Sec1, k.secret_sec1_der().to_vec()),
                    _ => (KeyKind::Pkcs8, der.secret_der().to_vec()),
                };
                self.keys.push(PrivateKey { kind, der: bytes });
                KeyRef::Section(self.keys.len() as u32 - 1)
            }
            Err(e) => {
                self.diags.push(file_error(at, path, &e));
                KeyRef::Paths(paths.to_vec())
            }
        }
    }
}

fn file_error(at: Span, path: &str, why: &str) -> Diagnostic {
    Diagnostic::new(Code::TlsCaFile, at, format!("cannot embed {path}: {why}")).help(
        "compile on the deploy host, use `--root DIR` for a copy of its files, or `--late-bind`",
    )
}
