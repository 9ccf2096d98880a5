//! The typed intermediate representation: what a configuration means.
//!
//! Built from the syntax tree by [`crate::lower`]. Names are resolved to ids, defaults
//! are applied, units are normalised (intervals in seconds, timeouts in milliseconds),
//! and table templates are instantiated the way relayd does it: each `forward to <t>`
//! with its port and check creates (or shares) a table instance `t:PORT` with its own
//! copy of the hosts. Every object keeps the span it came from, so the passes in
//! [`crate::verify`] can point at the text.
//!
//! Ids are indexes into the vectors of [`Config`]; relayd's own numbers (relayctl ids,
//! `parent N`) are the index plus one.

use crate::source::Span;
use relaydc_spec::filter::Rule;

macro_rules! ids {
    ($($name:ident),*) => {$(
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u32);
        impl $name {
            pub fn index(self) -> usize {
                self.0 as usize
            }
            /// The number relayd (and relayctl) shows for it.
            pub fn relayd_id(self) -> u32 {
                self.0 + 1
            }
        }
    )*};
}
ids!(TemplateId, TableId, HostId, ProtocolId, RelayId, RedirectId, RouterId);

/// The whole configuration of one main file and its includes.
#[derive(Debug, Default)]
pub struct Config {
    pub globals: Globals,
    /// `table <name> { … }` definitions, in file order.
    pub templates: Vec<Template>,
    /// Table instances, numbered in the order `forward to` lines create them.
    pub tables: Vec<Table>,
    /// Hosts of the instances (each instance has its own copies).
    pub hosts: Vec<Host>,
    pub protocols: Vec<Protocol>,
    pub relays: Vec<Relay>,
    pub redirects: Vec<Redirect>,
    pub routers: Vec<Router>,
    /// Interned `tag` names; a rule's `TagId` indexes this.
    pub tags: Vec<String>,
    /// Interned `label` texts.
    pub labels: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Globals {
    /// Check interval in seconds, and where it was set.
    pub interval: u32,
    pub interval_span: Option<Span>,
    /// Check timeout in milliseconds.
    pub timeout_ms: u32,
    pub timeout_span: Option<Span>,
    pub prefork: u32,
    pub log: LogSettings,
    /// Control socket path.
    pub socket: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub state_changes: bool,
    pub host_checks: bool,
    pub connection: ConnectionLog,
    pub verbose: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConnectionLog {
    #[default]
    Off,
    Errors,
    All,
}

#[derive(Debug)]
pub struct Template {
    pub name: String,
    pub span: Span,
    pub disabled: bool,
    pub hosts: Vec<HostDef>,
    /// The global check timeout when the template was defined (relayd copies it then).
    pub timeout_ms: u32,
    /// Instances created from it.
    pub instances: Vec<TableId>,
    /// Some `forward to`, `route to` or rule names it (even if that line had errors).
    pub referenced: bool,
    /// hoststated (relayd 4.1–4.2) tables carry their own check and port.
    pub legacy: Option<LegacyTable>,
}

#[derive(Clone, Debug)]
pub struct HostDef {
    /// Address or host name as written.
    pub addr: String,
    pub span: Span,
    pub retry: u32,
    /// `parent N`: a relayd host id.
    pub parent: Option<(u32, Span)>,
    pub priority: Option<u8>,
    pub ip_ttl: Option<u8>,
}

#[derive(Debug)]
pub struct Table {
    /// `name:port`, as relayd names the instance.
    pub name: String,
    pub template: TemplateId,
    pub port: u16,
    pub check: Check,
    pub timeout_ms: u32,
    /// Check every `interval` seconds (a multiple of the global interval).
    pub interval: Option<u32>,
    pub demote: Option<String>,
    pub disabled: bool,
    pub hosts: Vec<HostId>,
    /// The first `forward to` that created it.
    pub span: Span,
    /// Where the check was written.
    pub check_span: Option<Span>,
    /// Every `forward to` / `route to` that uses it.
    pub users: Vec<(Owner, Span)>,
}

/// What refers to a table instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Owner {
    Relay(RelayId),
    Redirect(RedirectId),
    Router(RouterId),
}

/// hoststated table settings that later releases moved to `forward to`.
#[derive(Clone, Debug, Default)]
pub struct LegacyTable {
    pub check: Check,
    pub check_span: Option<Span>,
    pub port: Option<u16>,
    pub timeout_ms: Option<u32>,
    pub interval: Option<u32>,
    pub demote: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Check {
    /// No check: every host counts as up.
    #[default]
    None,
    Icmp,
    Tcp,
    Tls,
    Http {
        tls: bool,
        path: String,
        host: Option<String>,
        expect: HttpExpect,
    },
    SendExpect {
        /// `None`: `send nothing`.
        send: Option<Vec<u8>>,
        expect: Vec<u8>,
        binary: bool,
        tls: bool,
    },
    Script(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HttpExpect {
    Code(u16),
    /// Lower-case hex SHA-1 (40) or MD5 (32).
    Digest(String),
}

#[derive(Debug)]
pub struct Host {
    pub table: TableId,
    pub def: HostDef,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProtocolKind {
    Tcp,
    Http,
    Dns,
}

impl ProtocolKind {
    pub fn text(self) -> &'static str {
        match self {
            ProtocolKind::Tcp => "tcp",
            ProtocolKind::Http => "http",
            ProtocolKind::Dns => "dns",
        }
    }
}

#[derive(Debug)]
pub struct Protocol {
    pub name: String,
    pub span: Span,
    pub kind: ProtocolKind,
    pub tcp: TcpOptions,
    pub http: HttpOptions,
    pub tls: TlsOptions,
    /// `return error`, with its styles.
    pub return_error: Option<Vec<String>>,
    /// The filter rules, as `spec::filter` evaluates and analyzes them …
    pub rules: Vec<Rule>,
    /// … and, index for index, where each came from.
    pub rule_info: Vec<RuleInfo>,
    /// The file's release accepted relayd ≤ 5.5 nodes here (their own evaluation order).
    pub legacy_nodes: bool,
    pub users: Vec<RelayId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpOptions {
    pub nodelay: Option<bool>,
    pub sack: bool,
    pub splice: bool,
    pub backlog: u32,
    pub socket_buffer: Option<u32>,
    pub ip_ttl: Option<u8>,
    pub ip_minttl: Option<u8>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            nodelay: None,
            sack: false,
            splice: true,
            backlog: 10,
            socket_buffer: None,
            ip_ttl: None,
            ip_minttl: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpOptions {
    pub headerlen: u32,
    pub websockets: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            headerlen: 8192,
            websockets: false,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// `None`: the release's default.
    pub ciphers: Option<String>,
    pub ecdhe: Option<String>,
    pub session_tickets: bool,
    pub ca_file: Option<String>,
    pub ca_cert: Option<String>,
    pub ca_key: Option<String>,
    pub client_ca: Option<String>,
    pub keypairs: Vec<String>,
    /// `tls keypair NAME cert|key|ocsp PATH` (current relayd): explicit files.
    pub keypair_files: Vec<(String, KeypairFile, String)>,
    pub ca_key_password: Option<String>,
    /// `[no] flag` words in order.
    pub flags: Vec<(bool, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeypairFile {
    Cert,
    Key,
    Ocsp,
}

/// Where a filter rule came from (kept beside the rules, so the rules themselves form
/// the plain slice `spec::filter` works on).
#[derive(Clone, Debug)]
pub struct RuleInfo {
    pub span: Span,
    /// `forward to <t>`: the template it names; each relay using the protocol binds it
    /// to its own instance of that template.
    pub forward: Option<(TemplateId, Span)>,
    /// Spans of the entity tests, in the order of `rule.tests`.
    pub test_spans: Vec<Span>,
    /// `tagged` span.
    pub tagged_span: Option<Span>,
}

#[derive(Debug)]
pub struct Relay {
    pub name: String,
    pub span: Span,
    pub disabled: bool,
    pub listeners: Vec<Listener>,
    pub protocol: Option<(ProtocolId, Span)>,
    pub forwards: Vec<Forward>,
    /// Seconds.
    pub session_timeout: u32,
}

#[derive(Clone, Debug)]
pub struct Listener {
    /// Address (or host / interface name) as written.
    pub addr: String,
    pub port: u16,
    /// Upper end of a `lo:hi` range (redirects only).
    pub port_hi: Option<u16>,
    pub tls: bool,
    /// IP protocol: `tcp` unless a redirect names another, `udp` for dns relays.
    pub udp: bool,
    /// A redirect's `interface NAME` (pf `on IF`).
    pub interface: Option<String>,
    pub span: Span,
}

#[derive(Debug)]
pub struct Forward {
    pub span: Span,
    pub tls: bool,
    pub transparent: bool,
    pub target: Target,
    /// `inet` / `inet6 PREFIX`: map the destination to the other address family.
    pub af: Option<AfMap>,
    /// `proxy-protocol v1|v2`.
    pub proxy_protocol: Option<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AfMap {
    Inet,
    /// The IPv6 prefix as written (relayd turns an invalid one into `::`).
    Inet6(String),
}

#[derive(Debug)]
pub enum Target {
    Table {
        table: TableId,
        mode: Mode,
        key: Option<String>,
    },
    Addr {
        addr: String,
        port: u16,
        retry: u32,
    },
    NatLookup {
        retry: u32,
    },
    Destination {
        retry: u32,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    Roundrobin,
    Loadbalance,
    Hash,
    SourceHash,
    Random,
    LeastStates,
}

#[derive(Debug)]
pub struct Redirect {
    pub name: String,
    pub span: Span,
    pub disabled: bool,
    pub listeners: Vec<Listener>,
    /// Main table first, then the backup table.
    pub tables: Vec<RdrTable>,
    pub sticky: bool,
    pub pftag: Option<String>,
    pub session_timeout: u32,
}

#[derive(Debug)]
pub struct RdrTable {
    pub table: TableId,
    pub mode: Mode,
    pub route: bool,
    pub interface: Option<String>,
    pub span: Span,
}

#[derive(Debug)]
pub struct Router {
    pub name: String,
    pub span: Span,
    pub disabled: bool,
    pub routes: Vec<(String, Option<u8>, Span)>,
    pub table: Option<TableId>,
    pub rtable: Option<u32>,
    pub rtlabel: Option<String>,
}
