//! Forms of other releases, judged by the file's release (see `era`).
//!
//! A form the file's release accepts but a later release removed gets its 08xx warning
//! with the modern rewrite (machine-applicable only where the meaning is kept exactly).
//! A form the release does not accept at all, older or newer, is RD0813. A keyword
//! written where a name belongs is RD0202 when it is a keyword in that release.

use super::Ctx;
use crate::diag::{Applicability, Code, Diagnostic};
use crate::era::Judgement;
use crate::lex::Kw;
use crate::parse::ast::*;
use crate::source::Span;
use std::collections::HashMap;

/// What to say about one legacy form: its code, message, help and rewrite.
struct Finding {
    code: Code,
    message: String,
    help: Option<String>,
    fix: Option<(Span, String, Applicability)>,
}

pub fn check(file: &File, judgement: &Judgement, ctx: &mut Ctx) {
    let findings = legacy_findings(file);
    let release = judgement.release;
    for m in judgement.markers.iter().filter(|m| !m.form.is_value()) {
        let accepted = m.form.accepted();
        let finding = findings.get(&m.span);
        if accepted.contains(release) {
            if accepted.until.is_none() {
                continue;
            }
            let Some(f) = finding else { continue };
            let mut d = Diagnostic::new(f.code, m.span, f.message.clone());
            if let Some(h) = &f.help {
                d = d.help(h.clone());
            }
            if let Some((span, text, app)) = &f.fix {
                d = d.fix(*span, text.clone(), "rewrite it as", *app);
            }
            ctx.report(d);
        } else {
            let when = match accepted.until {
                Some(until) if release >= until => format!("relayd {until} removed it"),
                _ => format!("it appeared in relayd {}", accepted.since),
            };
            let mut d = Diagnostic::new(
                Code::NotInEra,
                m.span,
                format!(
                    "{} is not accepted by relayd {release}: {when}",
                    m.form.describe()
                ),
            )
            .relayd_message("syntax error")
            .help(format!(
                "this file is judged by {}; `--era` judges it by another release",
                judgement.reason()
            ));
            if let Some(f) = finding {
                if let Some(h) = &f.help {
                    d = d.help(h.clone());
                }
                if let Some((span, text, app)) = &f.fix {
                    d = d.fix(*span, text.clone(), "rewrite it as", *app);
                }
            }
            ctx.report(d);
        }
    }
    keyword_names(file, judgement, ctx);
}

fn q(t: &Text) -> String {
    format!("\"{}\"", t.node.replace('"', "\\\""))
}

fn legacy_findings(file: &File) -> HashMap<Span, Finding> {
    let mut out = Findings::default();
    for item in &file.items {
        match item {
            Item::Global(g) => match &g.node {
                Global::Log(Sp { node: LogOpt::Updates, .. }) => out.add(g.span, Code::LegacyLog, "`log updates` was replaced by `log state changes` (relayd 6.5) and removed in 6.6".into(), None, Some((g.span, "log state changes".into(), Applicability::MachineApplicable))),
                Global::Log(Sp { node: LogOpt::All, .. }) => out.add(g.span, Code::LegacyLog, "`log all` was replaced by `log state changes` and `log host checks` (relayd 6.5) and removed in 6.6".into(), None, Some((g.span, "log state changes\nlog host checks".into(), Applicability::MachineApplicable))),
                Global::SendTrap => out.add(g.span, Code::LegacyGlobal, "`send trap` was removed in relayd 5.5".into(), Some("SNMP traps have no Linux counterpart in relaydc; remove the line"), None),
                Global::Snmp { .. } => out.add(g.span, Code::LegacyGlobal, "`snmp` was replaced by `agentx` in relayd 7.6".into(), Some("relaydc does not export SNMP; remove the line"), None),
                Global::Demote(_) => out.add(g.span, Code::LegacyGlobal, "a global `demote` is hoststated syntax (relayd 4.2 and older)".into(), Some("put `demote GROUP` on the table references instead"), None),
                _ => {}
            },
            Item::HTable(b) => out.add(b.name.span, Code::Hoststated, format!("`table {} {{ … }}` is hoststated syntax (relayd 4.2 and older)", b.name.text), Some("write `table <NAME> { hosts }` and put `check`, `port`, `timeout` and `interval` on the `forward to <NAME>` line"), None),
            Item::Service(b) => out.add(b.name.span, Code::Hoststated, format!("`service {}` is hoststated syntax (relayd 4.2 and older)", b.name.text), Some("services became `redirect` blocks: `listen on ADDR port P` replaces `virtual host`, `forward to <TABLE> …` replaces `table`"), None),
            Item::Redirect(b) => {
                for o in &b.opts {
                    match &o.node {
                        RdrOpt::Tag { matched, name, legacy: true } => {
                            let text = format!("{}pftag {}", if *matched { "match " } else { "" }, name.node);
                            out.add(o.span, Code::LegacyRedirectTag, "the redirect option `tag` was renamed `pftag` in relayd 5.6".into(), None, Some((o.span, text, Applicability::MachineApplicable)));
                        }
                        RdrOpt::Forward { table, .. } => table_ssl(&mut out, table),
                        _ => {}
                    }
                }
            }
            Item::Relay(b) => {
                for o in &b.opts {
                    match &o.node {
                        RlyOpt::Listen { tls: Some(t), .. } => out.ssl(t, Applicability::MachineApplicable),
                        RlyOpt::Forward { tls, target, .. } => {
                            if let Some(t) = tls {
                                out.ssl(t, Applicability::MachineApplicable);
                            }
                            match target {
                                FwdTarget::Table(t) => table_ssl(&mut out, t),
                                FwdTarget::Service { name, .. } | FwdTarget::HTable { name, .. } => out.add(name.span, Code::Hoststated, "`forward to service|table NAME` is hoststated syntax (relayd 4.2 and older)".into(), Some("write `forward to <TABLE> port P mode M check …`"), None),
                                _ => {}
                            }
                        }
                        RlyOpt::Timeout(n) => out.add(n.span, Code::Hoststated, "a relay `timeout` is hoststated syntax (relayd 4.2 and older)".into(), None, Some((o.span, format!("session timeout {}", n.node), Applicability::MachineApplicable))),
                        _ => {}
                    }
                }
            }
            Item::Router(b) => {
                for o in &b.opts {
                    if let RtOpt::Forward(t) = &o.node {
                        table_ssl(&mut out, t);
                    }
                }
            }
            Item::Protocol(p) => {
                for o in p.body.iter().flatten() {
                    match &o.node {
                        ProOpt::Tls { word, opts } => {
                            out.ssl(word, Applicability::MaybeIncorrect);
                            for t in opts {
                                match &t.node {
                                    TlsOpt::SessionCache(_) => out.add(t.span, Code::LegacySslOption, "`session cache` was removed in relayd 6.2".into(), Some("relayd now uses `session tickets` (off by default); remove the option"), None),
                                    TlsOpt::EcdhCurve(c) => out.add(t.span, Code::LegacySslOption, "`ecdh curve` was replaced by `ecdhe` in relayd 6.5".into(), None, Some((t.span, format!("ecdhe {}", q(c)), Applicability::MachineApplicable))),
                                    _ => {}
                                }
                            }
                        }
                        ProOpt::LegacyLabel(l) => {
                            let text = match l {
                                Some(l) => format!("match request label {}", q(l)),
                                None => "match request no label".to_string(),
                            };
                            out.add(o.span, Code::LegacyLabel, "a protocol-level `label` was replaced by `match … label` in relayd 5.6".into(), Some("in relayd 5.5 the label applied to the nodes that follow it; with filter rules it is set by a matching rule"), Some((o.span, text, Applicability::MaybeIncorrect)));
                        }
                        ProOpt::Node(n) => node(&mut out, n),
                        ProOpt::HType(t) => out.add(o.span, Code::Hoststated, format!("`protocol {}` inside the block is hoststated syntax (relayd 4.2 and older)", t.node), Some("write the type before the keyword: `http protocol NAME { … }`"), None),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    out.0
}

#[derive(Default)]
struct Findings(HashMap<Span, Finding>);

impl Findings {
    fn add(
        &mut self,
        span: Span,
        code: Code,
        message: String,
        help: Option<&str>,
        fix: Option<(Span, String, Applicability)>,
    ) {
        self.0.insert(
            span,
            Finding {
                code,
                message,
                help: help.map(str::to_string),
                fix,
            },
        );
    }

    fn ssl(&mut self, t: &Sp<TlsWord>, app: Applicability) {
        if t.node == TlsWord::Ssl {
            self.add(
                t.span,
                Code::LegacySsl,
                "`ssl` was renamed `tls` in relayd 5.7 and removed in 7.6".into(),
                None,
                Some((t.span, "tls".into(), app)),
            );
        }
    }
}

fn table_ssl(out: &mut Findings, t: &TableRef) {
    for o in &t.opts {
        if let TableOpt::Check(c) = &o.node {
            match &c.node {
                Check::Tls(TlsWord::Ssl) => out.add(
                    c.span,
                    Code::LegacySsl,
                    "`check ssl` was renamed `check tls` in relayd 5.7 and removed in 7.6".into(),
                    None,
                    Some((c.span, "tls".into(), Applicability::MachineApplicable)),
                ),
                Check::SendExpect { tls: Some(w), .. } => {
                    out.ssl(w, Applicability::MachineApplicable)
                }
                _ => {}
            }
        }
    }
}

fn node(out: &mut Findings, n: &Node) {
    let dir = match n.dir.as_ref().map(|d| d.node) {
        Some(Dir::Response) => "response",
        _ => "request",
    };
    let kind = n.kind.node.text();
    let (code, rewrite, app, help): (Code, Option<String>, Applicability, Option<&str>) = match (&n.verb.node, &n.arg) {
        (NodeVerb::Append, NodeArg::ValueKey { value, key }) => (
            Code::LegacyHeaderAppend,
            Some(format!("match {dir} {kind} append {} value {}", q(key), q(value))),
            Applicability::MaybeIncorrect,
            Some("relayd 5.5 joined the value to an existing header with a comma; the rewrite adds a separate header line"),
        ),
        (NodeVerb::Change, NodeArg::KeyValue { key, value }) => (
            Code::LegacyHeaderChange,
            Some(format!("match {dir} {kind} set {} value {}", q(key), q(value))),
            Applicability::MachineApplicable,
            None,
        ),
        (NodeVerb::Filter, NodeArg::ValueKey { value, key }) => (
            Code::LegacyFilter,
            Some(format!("block {dir} quick {kind} {} value {}", q(key), q(value))),
            Applicability::MaybeIncorrect,
            Some("relayd 5.5 matched filter values case-insensitively; filter rules match header values case-sensitively"),
        ),
        (NodeVerb::Filter, NodeArg::Key(k)) => (
            Code::LegacyFilter,
            Some(format!("block {dir} quick {kind} {}", q(k))),
            Applicability::MaybeIncorrect,
            None,
        ),
        (NodeVerb::Filter, NodeArg::Digest(d)) => (
            Code::LegacyFilter,
            Some(format!("block {dir} quick url digest {}", q(d))),
            Applicability::MachineApplicable,
            None,
        ),
        (NodeVerb::Expect, NodeArg::ValueKey { value, key }) => (
            Code::LegacyExpect,
            None,
            Applicability::MaybeIncorrect,
            Some(leak(format!(
                "rewrite as `block {dir} {kind} {k}` followed by `pass {dir} {kind} {k} value {v}` (one `pass` per allowed value; several `expect` lines for one {kind} were alternatives, and relayd 5.5 matched them case-insensitively)",
                k = q(key),
                v = q(value)
            ))),
        ),
        (NodeVerb::Expect, _) => (Code::LegacyExpect, None, Applicability::MaybeIncorrect, Some("rewrite as a `block` rule followed by a `pass` rule for what is expected")),
        (NodeVerb::Remove, NodeArg::Key(k)) => (Code::LegacyNode, Some(format!("match {dir} {kind} remove {}", q(k))), Applicability::MachineApplicable, None),
        (NodeVerb::Hash, NodeArg::Key(k)) => (Code::LegacyNode, Some(format!("match {dir} {kind} hash {}", q(k))), Applicability::MachineApplicable, None),
        (NodeVerb::Log, NodeArg::Key(k)) => (Code::LegacyNode, Some(format!("match {dir} {kind} log {}", q(k))), Applicability::MachineApplicable, None),
        (NodeVerb::Mark, NodeArg::ValueKey { value, key }) => (
            Code::LegacyNode,
            n.mark.as_ref().map(|m| format!("match {dir} {kind} {} value {} tag \"{}\"", q(key), q(value), m.node)),
            Applicability::MaybeIncorrect,
            Some("marks became tags; `marked N` became `tagged \"N\"`"),
        ),
        _ => (Code::LegacyNode, None, Applicability::MaybeIncorrect, Some("rewrite it as a `match` rule")),
    };
    let verb = match n.verb.node {
        NodeVerb::Append => "append",
        NodeVerb::Change => "change",
        NodeVerb::Remove => "remove",
        NodeVerb::Expect => "expect",
        NodeVerb::Filter => "filter",
        NodeVerb::Hash => "hash",
        NodeVerb::Log => "log",
        NodeVerb::Mark => "mark",
    };
    let message =
        format!("the protocol node `{kind} {verb}` was replaced by filter rules in relayd 5.6");
    let rewrite = rewrite.map(|mut r| {
        if n.marked.is_some() {
            r.push_str(&format!(
                " tagged \"{}\"",
                n.marked.as_ref().map_or(0, |m| m.node)
            ));
        }
        (n.span, r, app)
    });
    out.add(n.span, code, message, help, rewrite);
}

fn leak(s: String) -> &'static str {
    // Help strings live as long as the run; a handful per file.
    Box::leak(s.into_boxed_str())
}

/// RD0202: a keyword used as a name, in a release where it is a keyword.
fn keyword_names(file: &File, judgement: &Judgement, ctx: &mut Ctx) {
    let mut names: Vec<&Name> = Vec::new();
    for item in &file.items {
        match item {
            Item::Table(t) => names.push(&t.name),
            Item::Redirect(b) => {
                names.push(&b.name);
                for o in &b.opts {
                    if let RdrOpt::Forward { table, .. } = &o.node {
                        names.push(&table.name);
                    }
                }
            }
            Item::Relay(b) => {
                names.push(&b.name);
                for o in &b.opts {
                    match &o.node {
                        RlyOpt::Protocol(n) => names.push(n),
                        RlyOpt::Forward {
                            target: FwdTarget::Table(t),
                            ..
                        } => names.push(&t.name),
                        _ => {}
                    }
                }
            }
            Item::Router(b) => names.push(&b.name),
            Item::Protocol(p) => {
                names.push(&p.name);
                for o in p.body.iter().flatten() {
                    if let ProOpt::Rule(r) = &o.node {
                        for ro in &r.opts {
                            if let RuleOpt::ForwardTo(n) = &ro.node {
                                names.push(n);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for n in names {
        let Some(kw) = n.keyword else { continue };
        if kw.is_keyword_in(judgement.release) && kw != Kw::Service {
            ctx.report(
                Diagnostic::new(
                    Code::KeywordAsName,
                    n.span,
                    format!(
                        "`{}` is a keyword in relayd {}, not a name",
                        n.text, judgement.release
                    ),
                )
                .relayd_message("syntax error")
                .help("quote names that are keywords")
                .fix(
                    n.span,
                    format!("\"{}\"", n.text),
                    "quote it",
                    Applicability::MachineApplicable,
                ),
            );
        }
    }
}
