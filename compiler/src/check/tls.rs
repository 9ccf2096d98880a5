//! TLS policy as relayd-run will apply it: each protocol's `tls` options mapped onto
//! rustls with the functions of `relaydc_spec::tls` (the runtime calls the same ones).
//!
//! * RD0707 — `sslv3`, `tlsv1.0`, `tlsv1.1` (and the `tlsv1` alias) enable versions
//!   rustls does not speak;
//! * RD0706 — a cipher string that leaves relayd-run no suite: an error when no version
//!   is left with a suite, a warning when only TLS 1.3 is (TLS 1.2 clients are refused);
//! * RD0708 — terms of a cipher string that name only suites relayd-run does not offer,
//!   or that LibreSSL does not know at all;
//! * RD0709 — `ecdhe` curves rustls lacks, `edh`/`edh params` (rustls has no DHE suites),
//!   and `client-renegotiation` (rustls never renegotiates).
//!
//! Invalid flags, curves and an empty version set are values' findings (RD0312, RD0313,
//! RD0316); this module stays silent about them. Options of a protocol that is neither
//! tcp nor http are context's (RD0401) and are not judged here.

use super::Ctx;
use crate::diag::{Code, Diagnostic, Severity};
use crate::parse::ast::*;
use crate::source::Span;
use relaydc_spec::tls::{
    edh_requested, join_and, legacy_flags_ignored, select_ciphers, select_curves, CipherSelection,
    Flags, Group, Suite, Version, Versions,
};

pub fn check(file: &File, ctx: &mut Ctx) {
    for item in &file.items {
        if let Item::Protocol(p) = item {
            let ptype = p.ptype.as_ref().map_or("tcp", |t| t.node.as_str());
            if matches!(ptype, "tcp" | "http") {
                protocol(ctx, p);
            }
        }
    }
}

fn protocol(ctx: &mut Ctx, p: &Protocol) {
    let release = ctx.release;
    let mut flags = Flags::default_for(release);
    let mut ciphers: Option<&Text> = None;
    let mut legacy: Vec<&Text> = Vec::new();
    let mut renegotiation: Option<Span> = None;
    // relayd keeps the last `ecdhe` and the last `edh` setting.
    let mut curve_list: Option<&Text> = None;
    let mut dhe: Option<(Span, String)> = None;
    let mut any = false;
    for t in p.body.iter().flatten().flat_map(|o| match &o.node {
        ProOpt::Tls { opts, .. } => opts.iter(),
        _ => [].iter(),
    }) {
        any = true;
        match &t.node {
            TlsOpt::Flag { on, flag } => {
                if !flags.apply(&flag.node, *on, release) {
                    continue;
                }
                let adds_legacy = Versions::flag(&flag.node, release)
                    .is_some_and(|v| v.iter().any(|v| !v.in_rustls()));
                if *on && adds_legacy {
                    legacy.push(flag);
                }
                if flag.node == "client-renegotiation" {
                    renegotiation = on.then_some(t.span);
                }
            }
            TlsOpt::Ciphers(c) => ciphers = Some(c),
            TlsOpt::Ecdhe(c) | TlsOpt::EcdhCurve(c) => curve_list = Some(c),
            TlsOpt::Edh(true) => dhe = Some((t.span, "`edh`".into())),
            TlsOpt::Edh(false) => dhe = None,
            TlsOpt::EdhParams(v) => {
                dhe = edh_requested(&v.node).then(|| (t.span, format!("`edh params {}`", v.node)))
            }
            _ => {}
        }
    }
    if let Some(c) = curve_list {
        curves(ctx, c);
    }
    if let Some((at, what)) = dhe {
        edh(ctx, at, &what);
    }
    if !any || flags.versions.is_empty() {
        return;
    }
    for flag in legacy {
        legacy_version(ctx, flag, flags.versions);
    }
    if let Some(at) = renegotiation {
        ctx.report(
            Diagnostic::new(
                Code::TlsCurveUnsupported,
                at,
                "relayd-run cannot allow client-initiated renegotiation: `client-renegotiation` has no effect",
            )
            .help("rustls never renegotiates a TLS 1.2 session; a client that asks for it gets an alert, as with relayd's default `no client-renegotiation`"),
        );
    }
    if let Some(c) = ciphers {
        cipher_string(ctx, c, flags.versions);
    }
}

/// RD0707 for a flag that turns on versions rustls does not speak.
fn legacy_version(ctx: &mut Ctx, flag: &Text, versions: Versions) {
    let release = ctx.release;
    let Some(set) = Versions::flag(&flag.node, release) else {
        return;
    };
    let old: Vec<&str> = set
        .iter()
        .filter(|v| !v.in_rustls())
        .map(Version::name)
        .collect();
    let message = if set.iter().all(|v| !v.in_rustls()) {
        // `tlsv1` before relayd 5.6 meant TLS 1.0: say so.
        let what = if set.iter().any(|v| v.flag() == flag.node) {
            String::new()
        } else {
            format!(" ({})", join_and(&old))
        };
        format!(
            "`{}`{what} has no effect: relayd-run speaks only TLS 1.2 and TLS 1.3",
            flag.node
        )
    } else {
        format!(
            "`{}` enables {} in relayd {release}; relayd-run does not speak {}",
            flag.node,
            set.describe(),
            join_and(&old)
        )
    };
    let rv = versions.rustls();
    let mut d = Diagnostic::new(Code::TlsLegacyVersion, flag.span, message);
    d = if rv.raised {
        d.help(format!(
            "relayd enables only {} here; relayd-run uses TLS 1.2 instead",
            versions.describe()
        ))
    } else {
        d.help(format!(
            "with these options relayd-run speaks {}",
            rv.describe()
        ))
    };
    if legacy_flags_ignored(release) {
        d = d.help(format!(
            "relayd {release} does not speak {} either",
            join_and(&old)
        ));
    }
    let instead = match (rv.tls12, rv.tls13) {
        (true, true) => "`tlsv1.2` and `tlsv1.3`",
        (false, true) => "`tlsv1.3`",
        _ => "`tlsv1.2`",
    };
    ctx.report(d.help(format!("say what relayd-run does: write {instead}")));
}

/// RD0709 for `edh` and `edh params auto|legacy`.
fn edh(ctx: &mut Ctx, at: Span, what: &str) {
    ctx.report(
        Diagnostic::new(
            Code::TlsCurveUnsupported,
            at,
            format!("relayd-run has no DHE cipher suites: {what} has no effect"),
        )
        .help("rustls offers ECDHE key exchange only; clients that offer nothing but DHE suites cannot connect, every other client uses ECDHE")
        .help("remove the option, or write `no edh`"),
    );
}

/// RD0709 for curves rustls (ring) does not have.
fn curves(ctx: &mut Ctx, c: &Text) {
    let sel = select_curves(&c.node);
    if sel.unsupported.is_empty() || !sel.unknown.is_empty() {
        // Unknown names are RD0316 (relayd refuses the whole list).
        return;
    }
    let names: Vec<String> = sel.unsupported.iter().map(|n| format!("`{n}`")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let offered: Vec<&str> = Group::ALL.iter().map(|g| g.name()).collect();
    let used: Vec<&str> = sel.groups.iter().map(|g| g.name()).collect();
    let mut d = Diagnostic::new(
        Code::TlsCurveUnsupported,
        c.span,
        format!(
            "relayd-run cannot use the curve{} {}",
            if names.len() == 1 { "" } else { "s" },
            join_and(&names)
        ),
    )
    .help(format!(
        "rustls (with the ring provider) offers {}",
        join_and(&offered)
    ));
    d = if sel.fallback {
        d.help(format!(
            "no curve of the list is available, so relayd-run uses its default groups {}",
            join_and(&used)
        ))
    } else {
        d.help(format!("relayd-run uses {}", join_and(&used)))
    };
    ctx.report(d);
}

/// RD0706 and RD0708 for a `ciphers` string.
fn cipher_string(ctx: &mut Ctx, c: &Text, versions: Versions) {
    let sel = select_ciphers(&c.node);
    let rv = versions.rustls();
    if sel.rejected {
        let why = if sel.invalid {
            "LibreSSL cannot parse it"
        } else {
            "it selects no cipher suite at all"
        };
        ctx.report(
            Diagnostic::new(
                Code::TlsCiphersNone,
                c.span,
                format!("the cipher string `{}` is unusable: {why}", c.node),
            )
            .help(format!(
                "relayd fails to start the relay (libtls: no ciphers for '{}')",
                sel.expanded
            ))
            .help(offer_help()),
        );
        return;
    }
    let usable12 = rv.tls12 && !sel.tls12.is_empty();
    let usable13 = rv.tls13 && !sel.tls13.is_empty();
    if !usable12 && !usable13 {
        let mut d = Diagnostic::new(
            Code::TlsCiphersNone,
            c.span,
            format!(
                "the cipher string `{}` leaves no cipher suite relayd-run can offer with {}",
                c.node,
                rv.describe()
            ),
        );
        if !sel.dropped.is_empty() {
            d = d.help(format!(
                "relayd would offer only suites relayd-run lacks: {}",
                some(&sel.dropped)
            ));
        }
        ctx.report(d.help(offer_help()));
        return;
    }
    if rv.tls12 && sel.tls12.is_empty() && sel.relayd_has_tls12() {
        ctx.report(
            Diagnostic::new(
                Code::TlsCiphersNone,
                c.span,
                format!(
                    "the cipher string `{}` leaves no TLS 1.2 suite relayd-run can offer: it will speak TLS 1.3 only",
                    c.node
                ),
            )
            .severity(Severity::Warning)
            .help(format!(
                "relayd serves TLS 1.2 clients with {}; relayd-run refuses them",
                some(&sel.dropped)
            ))
            .help(offer_help()),
        );
        return;
    }
    partial(ctx, c, &sel);
}

/// RD0708: terms that add only suites relayd-run lacks, and terms LibreSSL ignores.
fn partial(ctx: &mut Ctx, c: &Text, sel: &CipherSelection) {
    let offered: Vec<&str> = sel.suites().iter().map(|s| s.openssl()).collect();
    if let Some((first, rest)) = sel.unavailable.split_first() {
        let terms: Vec<String> = sel
            .unavailable
            .iter()
            .map(|t| format!("`{}`", t.text))
            .collect();
        let terms: Vec<&str> = terms.iter().map(String::as_str).collect();
        let mut d = Diagnostic::new(
            Code::TlsCiphersPartial,
            term_span(ctx, c, first.offset, first.text.len()),
            format!(
                "{} in the cipher string name{} only suites relayd-run does not offer",
                join_and(&terms),
                if terms.len() == 1 { "s" } else { "" }
            ),
        );
        for t in rest {
            d = d.label(term_span(ctx, c, t.offset, t.text.len()), "this one too");
        }
        ctx.report(
            d.help(format!("relayd-run offers from this string: {}", offered.join(", ")))
                .help("it has ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 for TLS 1.2, and the three TLS 1.3 suites; CBC, RC4, 3DES, Camellia, static RSA and DHE suites are left out"),
        );
    }
    for t in &sel.ignored {
        ctx.report(
            Diagnostic::new(
                Code::TlsCiphersPartial,
                term_span(ctx, c, t.offset, t.text.len()),
                format!(
                    "`{}` in the cipher string selects nothing, so relayd ignores it",
                    t.text
                ),
            )
            .help("LibreSSL's cipher names and aliases are case-sensitive (`HIGH`, `ECDHE`, `AESGCM`, `ECDHE-RSA-AES128-GCM-SHA256`), and `A+B` selects the suites that are both A and B"),
        );
    }
}

/// The span of a term inside the cipher string, when the string is written literally.
fn term_span(ctx: &Ctx, c: &Text, offset: usize, len: usize) -> Span {
    let written = ctx.text(c.span);
    let start = if written == c.node {
        0
    } else if written.len() == c.node.len() + 2
        && written.get(1..written.len() - 1) == Some(&c.node)
    {
        1
    } else {
        return c.span;
    };
    let from = c.span.start as usize + start + offset;
    Span::new(c.span.file, from, from + len)
}

/// `A, B, C and 4 more`.
fn some(names: &[&str]) -> String {
    const SHOWN: usize = 4;
    if names.len() <= SHOWN {
        return join_and(names);
    }
    format!(
        "{} and {} more",
        names[..SHOWN].join(", "),
        names.len() - SHOWN
    )
}

fn offer_help() -> String {
    let tls12: Vec<&str> = Suite::ALL
        .iter()
        .filter(|s| s.version() == Version::Tls12)
        .map(|s| s.openssl())
        .collect();
    format!(
        "relayd-run offers these TLS 1.2 suites: {}; `secure` (relayd's default) or `ECDHE+AESGCM:ECDHE+CHACHA20` selects them",
        tls12.join(", ")
    )
}
