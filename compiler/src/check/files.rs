//! Files relayd opens while it parses: TLS keypairs of relays that listen with TLS, CA
//! files, and the key files of filter rules. They exist on the deploy host; `--root DIR`
//! points at a copy of its tree, and `--no-file-checks` turns a missing file into a
//! warning so CI without secrets can still gate on everything else.

use super::Ctx;
use crate::diag::{Code, Diagnostic};
use crate::parse::ast::*;
use std::path::Path;

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
    let mut keypairs: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    for t in proto.into_iter().flat_map(tls_opts) {
        match &t.node {
            TlsOpt::Keypair(n) => keypairs.push((n.node.clone(), None, None)),
            TlsOpt::KeypairFile { name, kind, path } => {
                let entry = match keypairs.iter_mut().find(|k| k.0 == name.node) {
                    Some(e) => e,
                    None => {
                        keypairs.push((name.node.clone(), None, None));
                        let last = keypairs.len() - 1;
                        &mut keypairs[last]
                    }
                };
                match kind {
                    KeypairFile::Cert => entry.1 = Some(path.node.clone()),
                    KeypairFile::Key => entry.2 = Some(path.node.clone()),
                    KeypairFile::Ocsp => {}
                }
            }
            _ => {}
        }
    }
    let default_name = keypairs.is_empty();
    if default_name {
        keypairs.push((addr.node.clone(), None, None));
    }
    for (name, cert, key) in keypairs {
        let certs = match cert {
            Some(c) => vec![c],
            None => vec![
                format!("/etc/ssl/{name}:{port}.crt"),
                format!("/etc/ssl/{name}.crt"),
            ],
        };
        let keys = match key {
            Some(k) => vec![k],
            None => vec![
                format!("/etc/ssl/private/{name}:{port}.key"),
                format!("/etc/ssl/private/{name}.key"),
            ],
        };
        // relayd tries NAME:PORT first, then NAME, as a pair.
        let found = certs
            .iter()
            .zip(keys.iter().chain(std::iter::repeat(&keys[keys.len() - 1])))
            .any(|(c, k)| readable(ctx, c) && readable(ctx, k));
        if found {
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
