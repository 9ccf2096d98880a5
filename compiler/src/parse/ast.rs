//! The syntax tree: what the file says, with a span on everything.
//!
//! It holds the union of all releases' syntax (current relayd, the 5.6–6.x filter
//! grammar, the 4.3–5.5 protocol nodes and hoststated's forms). Nothing is resolved or
//! defaulted here; values are kept as written so checks can quote them.

use crate::lex::Kw;
use crate::source::Span;

/// A value with the span it was written at.
#[derive(Clone, Debug, PartialEq)]
pub struct Sp<T> {
    pub node: T,
    pub span: Span,
}

impl<T> Sp<T> {
    pub fn new(node: T, span: Span) -> Self {
        Sp { node, span }
    }
}

pub type Text = Sp<String>;
pub type Number = Sp<i64>;

/// A name after `relay`, `protocol`, `redirect`, `router`, `table <…>`; `keyword` is set
/// when the word was lexed as a keyword (it must then be quoted in releases where it is
/// one).
#[derive(Clone, Debug, PartialEq)]
pub struct Name {
    pub text: String,
    pub span: Span,
    pub keyword: Option<Kw>,
}

#[derive(Debug, Default)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Debug)]
pub enum Item {
    Include(Text),
    Macro {
        name: Text,
        value: Text,
    },
    /// `name = 80`: relayd wants the value quoted.
    MacroNumber {
        name: Text,
        value: Number,
    },
    Global(Sp<Global>),
    Table(TableDef),
    Redirect(Block<RdrOpt>),
    Relay(Block<RlyOpt>),
    Protocol(Protocol),
    Router(Block<RtOpt>),
    /// hoststated: `table NAME { check …; host …; real port … }`.
    HTable(Block<HTableOpt>),
    /// hoststated: `service NAME { virtual host …; table …; … }`.
    Service(Block<SvcOpt>),
    Error(Span),
}

/// A named block of options (`relay NAME { … }` and its kin).
#[derive(Debug)]
pub struct Block<O> {
    pub name: Name,
    pub opts: Vec<Sp<O>>,
    pub span: Span,
}

#[derive(Debug, PartialEq)]
pub enum Global {
    Interval(Number),
    Timeout(Number),
    Prefork(Number),
    Log(Sp<LogOpt>),
    Socket(Text),
    Agentx {
        context: Option<Text>,
        path: Option<Text>,
    },
    Snmp {
        trap: bool,
        path: Option<Text>,
    },
    SendTrap,
    Demote(Text),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogOpt {
    StateChanges,
    HostChecks,
    Connection,
    ConnectionErrors,
    LevelBrief,
    LevelVerbose,
    Updates,
    All,
}

#[derive(Debug)]
pub struct TableDef {
    pub name: Name,
    pub opts: Vec<TableDefOpt>,
    pub span: Span,
}

#[derive(Debug)]
pub enum TableDefOpt {
    Disable(Span),
    Hosts(Vec<HostItem>),
}

#[derive(Debug)]
pub enum HostItem {
    Host(Host),
    Include(Text),
}

#[derive(Debug)]
pub struct Host {
    pub addr: Text,
    pub flags: Vec<Sp<HostFlag>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostFlag {
    Retry(i64),
    Parent(i64),
    Priority(i64),
    IpTtl(i64),
}

/// `<name> options…` after `forward to` / `route to`.
#[derive(Debug)]
pub struct TableRef {
    pub name: Name,
    pub opts: Vec<Sp<TableOpt>>,
    pub span: Span,
}

#[derive(Debug)]
pub enum TableOpt {
    Port(Port),
    Check(Sp<Check>),
    Timeout(Number),
    Interval(Number),
    Demote(Text),
    Mode {
        mode: Option<Sp<Mode>>,
        key: Option<Text>,
    },
}

/// A `port` argument as written.
#[derive(Clone, Debug, PartialEq)]
pub enum PortValue {
    Number(i64),
    /// A service name, `lo:hi` range, or the keyword `http`.
    Name(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub value: PortValue,
    /// The argument (not the `port` keyword).
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Roundrobin,
    Loadbalance,
    Hash,
    SourceHash,
    Random,
    LeastStates,
}

impl Mode {
    pub fn text(self) -> &'static str {
        match self {
            Mode::Roundrobin => "roundrobin",
            Mode::Loadbalance => "loadbalance",
            Mode::Hash => "hash",
            Mode::SourceHash => "source-hash",
            Mode::Random => "random",
            Mode::LeastStates => "least-states",
        }
    }
}

/// `tls`, or its old name `ssl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsWord {
    Tls,
    Ssl,
}

#[derive(Debug, PartialEq)]
pub enum Check {
    Icmp,
    Tcp,
    Tls(TlsWord),
    /// `http|https PATH [host H] code N`; `kind` is the word as written.
    HttpCode {
        kind: Text,
        path: Text,
        host: Option<Text>,
        code: Number,
    },
    HttpDigest {
        kind: Text,
        path: Text,
        host: Option<Text>,
        digest: Text,
    },
    SendExpect {
        binary: bool,
        send: Option<Text>,
        expect: Text,
        tls: Option<Sp<TlsWord>>,
    },
    Script(Text),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FwdMode {
    Forward,
    Route,
    Transparent,
}

#[derive(Debug)]
pub enum RdrOpt {
    Forward {
        mode: Sp<FwdMode>,
        table: TableRef,
        interface: Option<Text>,
    },
    Listen {
        addr: Text,
        proto: Option<Text>,
        port: Port,
        interface: Option<Text>,
        pflog: bool,
    },
    Disable,
    Sticky,
    /// `[match] pftag NAME`, or `[match] tag NAME` before 5.6 (`legacy`).
    Tag {
        matched: bool,
        name: Text,
        legacy: bool,
    },
    SessionTimeout(Number),
    Include(Text),
    Error,
}

#[derive(Debug)]
pub enum RlyOpt {
    Listen {
        addr: Text,
        port: Port,
        tls: Option<Sp<TlsWord>>,
    },
    Forward {
        mode: Sp<FwdMode>,
        tls: Option<Sp<TlsWord>>,
        target: FwdTarget,
        af: Option<Sp<DstAf>>,
        proxy: Option<Sp<u8>>,
        interface: Option<Text>,
    },
    Protocol(Name),
    SessionTimeout(Number),
    /// hoststated's relay `timeout SECONDS`.
    Timeout(Number),
    Disable,
    Include(Text),
    Error,
}

#[derive(Debug)]
pub enum FwdTarget {
    Addr {
        addr: Text,
        port: Port,
        retry: Option<Number>,
    },
    NatLookup {
        retry: Option<Number>,
    },
    Destination {
        retry: Option<Number>,
    },
    Table(TableRef),
    /// hoststated: `forward to service NAME`.
    Service {
        name: Name,
        retry: Option<Number>,
    },
    /// hoststated: `forward to table NAME MODE [no check]`.
    HTable {
        name: Name,
        mode: Option<Sp<Mode>>,
        no_check: bool,
    },
}

#[derive(Debug, PartialEq)]
pub enum DstAf {
    Inet,
    Inet6(Text),
}

#[derive(Debug)]
pub struct Protocol {
    /// `tcp`, `http` or a word (`dns`) before `protocol`.
    pub ptype: Option<Text>,
    pub name: Name,
    /// None: no `{ … }` at all.
    pub body: Option<Vec<Sp<ProOpt>>>,
    pub span: Span,
}

#[derive(Debug)]
pub enum ProOpt {
    Tls {
        word: Sp<TlsWord>,
        opts: Vec<Sp<TlsOpt>>,
    },
    Tcp(Vec<Sp<TcpOpt>>),
    Http(Vec<Sp<HttpOpt>>),
    ReturnError {
        styles: Vec<Text>,
    },
    /// Boxed: a rule is much larger than the other options, and the parser moves
    /// options around by value.
    Rule(Box<Rule>),
    Include(Text),
    /// Before 5.6: `label "X"` for all following nodes (`None`: `no label`).
    LegacyLabel(Option<Text>),
    Node(Node),
    /// hoststated: `protocol http` inside the block.
    HType(Text),
    Error,
}

#[derive(Debug, PartialEq)]
pub enum TlsOpt {
    SessionTickets(bool),
    /// `session cache N|disable` (before 6.2); None = disable.
    SessionCache(Option<Number>),
    Ciphers(Text),
    Edh(bool),
    EdhParams(Text),
    Ecdhe(Text),
    /// `ecdh curve NAME` (5.5 … 6.4).
    EcdhCurve(Text),
    CaFile(Text),
    CaCert(Text),
    CaKey {
        path: Text,
        password: Text,
    },
    Keypair(Text),
    KeypairFile {
        name: Text,
        kind: KeypairFile,
        path: Text,
    },
    ClientCa(Text),
    Flag {
        on: bool,
        flag: Text,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeypairFile {
    Cert,
    Key,
    Ocsp,
}

#[derive(Debug, PartialEq)]
pub enum TcpOpt {
    Sack(bool),
    Nodelay(bool),
    Splice(bool),
    Backlog(Number),
    SocketBuffer(Number),
    /// `ip ttl|minttl N`; `keyword_ttl` when `ttl` was lexed as a keyword.
    Ip {
        what: Text,
        value: Number,
        keyword_ttl: bool,
    },
}

#[derive(Debug, PartialEq)]
pub enum HttpOpt {
    Headerlen(Number),
    Websockets(bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Block,
    Match,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Request,
    Response,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Af {
    Inet,
    Inet6,
}

#[derive(Debug)]
pub struct AddrPrefix {
    pub addr: Text,
    pub len: Option<Number>,
    pub span: Span,
}

#[derive(Debug)]
pub struct Rule {
    pub action: Sp<Action>,
    pub dir: Option<Sp<Dir>>,
    pub quick: Option<Span>,
    pub af: Option<Sp<Af>>,
    pub from: Option<AddrPrefix>,
    pub to: Option<AddrPrefix>,
    pub opts: Vec<Sp<RuleOpt>>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvKind {
    Header,
    Cookie,
    Path,
    Query,
    Url,
}

impl KvKind {
    pub fn text(self) -> &'static str {
        match self {
            KvKind::Header => "header",
            KvKind::Cookie => "cookie",
            KvKind::Path => "path",
            KvKind::Query => "query",
            KvKind::Url => "url",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyOption {
    Append,
    Set,
    Remove,
    Hash,
    Log,
}

#[derive(Debug)]
pub struct Value {
    pub pattern: Option<Span>,
    pub text: Text,
}

#[derive(Debug)]
pub struct KvKey {
    pub pattern: Option<Span>,
    /// `url digest D`.
    pub digest: bool,
    pub key: Text,
    pub value: Option<Value>,
}

#[derive(Debug)]
pub enum RuleOpt {
    Method(Text),
    Kv {
        kind: Sp<KvKind>,
        option: Option<Sp<KeyOption>>,
        key: Option<KvKey>,
    },
    PathStrip(Number),
    ForwardTo(Name),
    Tag(Text),
    NoTag,
    Tagged(Text),
    Label(Text),
    NoLabel,
    File {
        path: Text,
        value: Option<Value>,
    },
}

/// A protocol node of relayd 4.3 … 5.5 (`header append V to K`, …).
#[derive(Debug)]
pub struct Node {
    pub dir: Option<Sp<Dir>>,
    pub kind: Sp<KvKind>,
    pub verb: Sp<NodeVerb>,
    pub arg: NodeArg,
    /// `mark … with N`.
    pub mark: Option<Number>,
    pub marked: Option<Number>,
    pub log: Option<Span>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeVerb {
    Append,
    Change,
    Remove,
    Expect,
    Filter,
    Hash,
    Log,
    Mark,
}

#[derive(Debug)]
pub enum NodeArg {
    /// `verb KEY`.
    Key(Text),
    /// `append V to K`, `expect|filter|mark V from K`.
    ValueKey {
        value: Text,
        key: Text,
    },
    /// `change K to V`.
    KeyValue {
        key: Text,
        value: Text,
    },
    Digest(Text),
    File(Text),
}

#[derive(Debug)]
pub enum RtOpt {
    Route(AddrPrefix),
    Forward(TableRef),
    Rtable(Number),
    Rtlabel(Text),
    Disable,
    Include(Text),
    Error,
}

#[derive(Debug)]
pub enum HTableOpt {
    Check(Sp<Check>),
    Host(Host),
    RealPort(Port),
    Timeout(Number),
    Interval(Number),
    Demote(Text),
    Disable,
    Error,
}

#[derive(Debug)]
pub enum SvcOpt {
    VirtualHost {
        addr: Text,
        port: Port,
        interface: Option<Text>,
    },
    Table {
        name: Name,
        port: Option<Port>,
        backup: bool,
    },
    Tag(Text),
    Sticky,
    Disable,
    Error,
}
