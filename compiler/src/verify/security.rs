//! Security lints: configurations relayd accepts and runs as written, but whose effect
//! is probably not what the operator wants from a proxy in front of everything else.
//!
//! * RD0911 — `forward with tls` and no `ca file`: relayd talks TLS to the backend
//!   without verifying its certificate, so anyone on the path can pose as it;
//! * RD0912 — `header append "X-Forwarded-For"` on requests keeps whatever the client
//!   sent in front of the address relayd adds;
//! * RD0913 — `block` rules in a protocol without `return error`: relayd closes a
//!   blocked connection without an answer.
//!
//! Filter rules in a protocol that never runs them are RD0907's (`filters`); key files
//! readable by others are RD0711's (`check::files`, which reads the files).

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::*;
use relaydc_spec::filter::{Action, Direction, Entity, Key, KeyOption, Pattern};

pub fn check(c: &Config, diags: &mut Diagnostics) {
    unverified_backends(c, diags);
    for p in c
        .protocols
        .iter()
        .filter(|p| p.kind == ProtocolKind::Http && !p.users.is_empty())
    {
        forwarded_for_append(p, diags);
        silent_block(p, diags);
    }
}

fn unverified_backends(c: &Config, diags: &mut Diagnostics) {
    for r in c.relays.iter().filter(|r| !r.disabled) {
        let proto = r.protocol.map(|(id, _)| &c.protocols[id.0 as usize]);
        if proto.is_some_and(|p| p.tls.ca_file.is_some()) {
            continue;
        }
        for f in r.forwards.iter().filter(|f| f.tls) {
            let mut d = Diagnostic::new(
                Code::TlsBackendUnverified,
                f.span,
                format!(
                    "relay {} talks TLS to its backends without verifying their certificates",
                    r.name
                ),
            );
            let help = match proto {
                Some(p) => {
                    d = d.label(p.span, format!("protocol {} has no `tls ca file`", p.name));
                    format!(
                        "add `tls ca file \"/etc/ssl/backend-ca.pem\"` (the CA that signed the backends' certificates) to protocol {}",
                        p.name
                    )
                }
                None => "give the relay a protocol with `tls ca file \"/etc/ssl/backend-ca.pem\"` (the CA that signed the backends' certificates)".to_string(),
            };
            diags.push(d.help(help));
        }
    }
}

fn forwarded_for_append(p: &Protocol, diags: &mut Diagnostics) {
    for (rule, info) in p.rules.iter().zip(&p.rule_info) {
        if rule.direction != Direction::Request {
            continue;
        }
        for (t, span) in rule.tests.iter().zip(&info.test_spans) {
            let Key::Pattern(Pattern::Glob { text, .. }) = &t.key else {
                continue;
            };
            if t.entity == Entity::Header
                && t.option == Some(KeyOption::Append)
                && text.eq_ignore_ascii_case("X-Forwarded-For")
            {
                diags.push(
                    Diagnostic::new(
                        Code::ForwardedForAppend,
                        *span,
                        "appending to X-Forwarded-For keeps the addresses the client put there",
                    )
                    .help("unless another proxy you trust stands in front of relayd, replace what the client sent: `match request header set \"X-Forwarded-For\" value \"$REMOTE_ADDR\"`"),
                );
            }
        }
    }
}

fn silent_block(p: &Protocol, diags: &mut Diagnostics) {
    if p.return_error.is_some() || p.legacy_nodes {
        return;
    }
    let Some(i) = p
        .rules
        .iter()
        .position(|r| r.action == Action::Block && r.legacy.is_none())
    else {
        return;
    };
    diags.push(
        Diagnostic::new(
            Code::SilentBlock,
            p.rule_info[i].span,
            format!(
                "protocol {} blocks without `return error`: a blocked client gets no answer, only a closed connection",
                p.name
            ),
        )
        .label(p.span, format!("protocol {} has no `return error`", p.name))
        .help("add `return error` to the protocol so blocked clients get relayd's 403 page (`return error style \"…\"` styles it)"),
    );
}
