//! Which relayd release a file is judged by.
//!
//! Every form whose acceptance changed over the releases is a [`Marker`]: where it is
//! and in which releases relayd accepted it. The file's release is the newest one that
//! accepts the most markers (all of them, for a file written for one release), unless
//! `--era` says otherwise. Checks then ask the release for its limits, and `legacy`
//! reports the markers: forms of older releases as warnings with their rewrite, forms
//! the release does not accept as errors.

use crate::parse::ast::*;
use crate::source::Span;
use relaydc_spec::era::Span as Accepted;
use relaydc_spec::Release;

/// What kind of form a marker stands for; `legacy` turns each into its diagnostic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    LogUpdates,
    LogAll,
    LogNew,
    LogLevel,
    Socket,
    Agentx,
    Snmp,
    SendTrap,
    GlobalDemote,
    Ssl,
    Tls,
    FilterRule,
    Node(NodeVerb),
    LegacyLabel,
    HoststatedType,
    HoststatedTable,
    HoststatedService,
    HoststatedTimeout,
    HoststatedTarget,
    RedirectTag,
    Pftag,
    Redirect,
    SessionTickets,
    SessionCache,
    Edh,
    Ecdhe,
    EcdhCurve,
    Keypair,
    KeypairFile,
    ClientCa,
    CaCertKey,
    HttpOptions,
    BinaryCheck,
    PathStrip,
    RuleForward,
    Pattern,
    ProxyProtocol,
    Pflog,
    /// A tcp `backlog` above 512 (the limit until 6.4 was 1024).
    LargeBacklog,
}

impl Form {
    /// The releases that accepted the form.
    pub fn accepted(self) -> Accepted {
        use Release as R;
        let between = Accepted::between;
        let since = Accepted::since;
        match self {
            Form::LogUpdates | Form::LogAll => between(R::H_FIRST, R::KEYPAIR),
            Form::LogNew | Form::Socket | Form::Ecdhe | Form::HttpOptions => since(R::LOG_STATE),
            Form::LogLevel | Form::KeypairFile | Form::Pattern | Form::ProxyProtocol => {
                since(R::CURRENT)
            }
            Form::Agentx | Form::ClientCa | Form::PathStrip | Form::Pflog => since(R::C_FIRST),
            Form::Snmp => between(R::L_LAST, R::C_FIRST),
            Form::SendTrap => between(R::H_FIRST, R::L_LAST),
            Form::GlobalDemote
            | Form::HoststatedType
            | Form::HoststatedTable
            | Form::HoststatedService
            | Form::HoststatedTimeout
            | Form::HoststatedTarget => between(R::H_FIRST, R::L_FIRST),
            Form::Ssl => between(R::H_FIRST, R::C_FIRST),
            Form::Tls | Form::Edh => since(R::TLS_KEYWORD),
            Form::FilterRule | Form::Pftag => since(R::F_FIRST),
            Form::Node(_) | Form::LegacyLabel | Form::RedirectTag => {
                between(R::L_FIRST, R::F_FIRST)
            }
            Form::Redirect => since(R::L_FIRST),
            Form::SessionTickets => since(R::TICKETS),
            Form::SessionCache => between(R::H_FIRST, R::TICKETS),
            Form::EcdhCurve => between(R::L_LAST, R::LOG_STATE),
            Form::Keypair | Form::BinaryCheck | Form::RuleForward => since(R::KEYPAIR),
            Form::CaCertKey => since(Release::new(5, 4)),
            Form::LargeBacklog => between(R::H_FIRST, R::LOG_STATE),
        }
    }

    /// Whether the form is a value rather than syntax: it only breaks ties between
    /// releases that accept the file's syntax, and is never reported by itself.
    pub fn is_value(self) -> bool {
        matches!(self, Form::LargeBacklog)
    }

    /// How the form is named in messages.
    pub fn describe(self) -> &'static str {
        match self {
            Form::LogUpdates => "`log updates`",
            Form::LogAll => "`log all`",
            Form::LogNew => "`log state changes|host checks|connection`",
            Form::LogLevel => "`log level`",
            Form::Socket => "the `socket` option",
            Form::Agentx => "`agentx`",
            Form::Snmp => "`snmp`",
            Form::SendTrap => "`send trap`",
            Form::GlobalDemote => "a global `demote`",
            Form::Ssl => "the `ssl` keyword",
            Form::Tls => "the `tls` keyword",
            Form::FilterRule => "a `pass`/`block`/`match` filter rule",
            Form::Node(_) => "a protocol node (`header … to|from …`)",
            Form::LegacyLabel => "a protocol-level `label`",
            Form::HoststatedType => "`protocol TYPE` inside a protocol block",
            Form::HoststatedTable => "a `table NAME { … }` with its own check",
            Form::HoststatedService => "a `service` block",
            Form::HoststatedTimeout => "a relay `timeout`",
            Form::HoststatedTarget => "`forward to service|table NAME`",
            Form::RedirectTag => "the redirect option `tag`",
            Form::Pftag => "`pftag`",
            Form::Redirect => "a `redirect` block",
            Form::SessionTickets => "`session tickets`",
            Form::SessionCache => "`session cache`",
            Form::Edh => "`edh`",
            Form::Ecdhe => "`ecdhe`",
            Form::EcdhCurve => "`ecdh curve`",
            Form::Keypair => "`keypair`",
            Form::KeypairFile => "`keypair … cert|key|ocsp`",
            Form::ClientCa => "`client ca`",
            Form::CaCertKey => "`ca cert` / `ca key`",
            Form::HttpOptions => "http options (`headerlen`, `websockets`)",
            Form::BinaryCheck => "`binary send … expect …`",
            Form::PathStrip => "`path strip`",
            Form::RuleForward => "`forward to <table>` in a filter rule",
            Form::Pattern => "`pattern`",
            Form::ProxyProtocol => "`proxy-protocol`",
            Form::Pflog => "`pflog`",
            Form::LargeBacklog => "a `backlog` above 512",
        }
    }
}

/// One occurrence of a release-dependent form.
#[derive(Clone, Copy, Debug)]
pub struct Marker {
    pub form: Form,
    pub span: Span,
}

/// The release a file is judged by, and why.
#[derive(Clone, Debug)]
pub struct Judgement {
    pub release: Release,
    /// `--era` was given.
    pub forced: bool,
    pub markers: Vec<Marker>,
}

impl Judgement {
    /// One sentence saying why this release.
    pub fn reason(&self) -> String {
        if self.forced {
            return format!("relayd {} (set by --era)", self.release);
        }
        match self
            .markers
            .iter()
            .filter(|m| m.form.accepted().contains(self.release))
            .min_by_key(|m| {
                (
                    m.form.accepted().until,
                    std::cmp::Reverse(m.form.accepted().since),
                )
            }) {
            Some(m)
                if m.form.accepted().until.is_some()
                    || m.form.accepted().since > Release::H_FIRST =>
            {
                format!(
                    "relayd {} (inferred from {})",
                    self.release,
                    m.form.describe()
                )
            }
            _ => format!("relayd {} (no older forms used)", self.release),
        }
    }
}

/// Collects the markers of a file and picks its release.
pub fn judge(file: &File, forced: Option<Release>) -> Judgement {
    let mut markers = Vec::new();
    collect(file, &mut markers);
    let release = forced.unwrap_or_else(|| {
        let score = |r: Release| {
            markers
                .iter()
                .filter(|m| m.form.accepted().contains(r))
                .count()
        };
        Release::ALL
            .iter()
            .copied()
            .max_by_key(|r| (score(*r), *r))
            .unwrap_or(Release::CURRENT)
    });
    Judgement {
        release,
        forced: forced.is_some(),
        markers,
    }
}

fn collect(file: &File, out: &mut Vec<Marker>) {
    let mut mark = |form: Form, span: Span| out.push(Marker { form, span });
    for item in &file.items {
        match item {
            Item::Global(g) => match &g.node {
                Global::Log(l) => mark(
                    match l.node {
                        LogOpt::Updates => Form::LogUpdates,
                        LogOpt::All => Form::LogAll,
                        LogOpt::LevelBrief | LogOpt::LevelVerbose => Form::LogLevel,
                        _ => Form::LogNew,
                    },
                    g.span,
                ),
                Global::Socket(_) => mark(Form::Socket, g.span),
                Global::Agentx { .. } => mark(Form::Agentx, g.span),
                Global::Snmp { .. } => mark(Form::Snmp, g.span),
                Global::SendTrap => mark(Form::SendTrap, g.span),
                Global::Demote(_) => mark(Form::GlobalDemote, g.span),
                _ => {}
            },
            Item::Table(_)
            | Item::Include(_)
            | Item::Macro { .. }
            | Item::MacroNumber { .. }
            | Item::Error(_) => {}
            Item::HTable(b) => {
                mark(Form::HoststatedTable, b.name.span);
                for o in &b.opts {
                    if let HTableOpt::Check(c) = &o.node {
                        check_markers(c, &mut mark);
                    }
                }
            }
            Item::Service(b) => mark(Form::HoststatedService, b.name.span),
            Item::Redirect(b) => {
                mark(Form::Redirect, b.name.span);
                for o in &b.opts {
                    match &o.node {
                        RdrOpt::Forward { table, .. } => table_markers(table, &mut mark),
                        RdrOpt::Listen { pflog: true, .. } => mark(Form::Pflog, o.span),
                        RdrOpt::Tag { legacy: true, .. } => mark(Form::RedirectTag, o.span),
                        RdrOpt::Tag { legacy: false, .. } => mark(Form::Pftag, o.span),
                        _ => {}
                    }
                }
            }
            Item::Relay(b) => {
                for o in &b.opts {
                    match &o.node {
                        RlyOpt::Listen { tls: Some(t), .. } => tls_word(t, &mut mark),
                        RlyOpt::Forward {
                            tls, target, proxy, ..
                        } => {
                            if let Some(t) = tls {
                                tls_word(t, &mut mark);
                            }
                            if let Some(p) = proxy {
                                mark(Form::ProxyProtocol, p.span);
                            }
                            match target {
                                FwdTarget::Table(t) => table_markers(t, &mut mark),
                                FwdTarget::Service { name, .. }
                                | FwdTarget::HTable { name, .. } => {
                                    mark(Form::HoststatedTarget, name.span)
                                }
                                _ => {}
                            }
                        }
                        RlyOpt::Timeout(n) => mark(Form::HoststatedTimeout, n.span),
                        _ => {}
                    }
                }
            }
            Item::Router(b) => {
                for o in &b.opts {
                    if let RtOpt::Forward(t) = &o.node {
                        table_markers(t, &mut mark);
                    }
                }
            }
            Item::Protocol(p) => {
                for o in p.body.iter().flatten() {
                    match &o.node {
                        ProOpt::Tls { word, opts } => {
                            tls_word(word, &mut mark);
                            for t in opts {
                                let form = match &t.node {
                                    TlsOpt::SessionTickets(_) => Some(Form::SessionTickets),
                                    TlsOpt::SessionCache(_) => Some(Form::SessionCache),
                                    TlsOpt::Edh(_) | TlsOpt::EdhParams(_) => Some(Form::Edh),
                                    TlsOpt::Ecdhe(_) => Some(Form::Ecdhe),
                                    TlsOpt::EcdhCurve(_) => Some(Form::EcdhCurve),
                                    TlsOpt::Keypair(_) => Some(Form::Keypair),
                                    TlsOpt::KeypairFile { .. } => Some(Form::KeypairFile),
                                    TlsOpt::ClientCa(_) => Some(Form::ClientCa),
                                    TlsOpt::CaCert(_) | TlsOpt::CaKey { .. } => {
                                        Some(Form::CaCertKey)
                                    }
                                    _ => None,
                                };
                                if let Some(f) = form {
                                    mark(f, t.span);
                                }
                            }
                        }
                        ProOpt::Http(_) => mark(Form::HttpOptions, o.span),
                        ProOpt::Tcp(opts) => {
                            for t in opts {
                                if let TcpOpt::Backlog(n) = &t.node {
                                    if (513..=1024).contains(&n.node) {
                                        mark(Form::LargeBacklog, n.span);
                                    }
                                }
                            }
                        }
                        ProOpt::Rule(r) => {
                            mark(Form::FilterRule, r.action.span);
                            for ro in &r.opts {
                                match &ro.node {
                                    RuleOpt::PathStrip(_) => mark(Form::PathStrip, ro.span),
                                    RuleOpt::ForwardTo(_) => mark(Form::RuleForward, ro.span),
                                    RuleOpt::Kv { key: Some(k), .. } => {
                                        if let Some(p) = k.pattern {
                                            mark(Form::Pattern, p);
                                        }
                                        if let Some(Value {
                                            pattern: Some(p), ..
                                        }) = &k.value
                                        {
                                            mark(Form::Pattern, *p);
                                        }
                                    }
                                    _ => {}
                                }
                            }
                        }
                        ProOpt::Node(n) => mark(Form::Node(n.verb.node), n.span),
                        ProOpt::LegacyLabel(_) => mark(Form::LegacyLabel, o.span),
                        ProOpt::HType(_) => mark(Form::HoststatedType, o.span),
                        _ => {}
                    }
                }
            }
        }
    }
}

fn tls_word(t: &Sp<TlsWord>, mark: &mut impl FnMut(Form, Span)) {
    match t.node {
        TlsWord::Ssl => mark(Form::Ssl, t.span),
        TlsWord::Tls => mark(Form::Tls, t.span),
    }
}

fn table_markers(t: &TableRef, mark: &mut impl FnMut(Form, Span)) {
    for o in &t.opts {
        if let TableOpt::Check(c) = &o.node {
            check_markers(c, mark);
        }
    }
}

fn check_markers(c: &Sp<Check>, mark: &mut impl FnMut(Form, Span)) {
    match &c.node {
        Check::Tls(TlsWord::Ssl) => mark(Form::Ssl, c.span),
        Check::Tls(TlsWord::Tls) => mark(Form::Tls, c.span),
        Check::SendExpect { binary, tls, .. } => {
            if *binary {
                mark(Form::BinaryCheck, c.span);
            }
            if let Some(t) = tls {
                tls_word(t, mark);
            }
        }
        _ => {}
    }
}
