//! The frozen plan: what `relaydc compile` writes and `relayd-run` executes.
//!
//! Plain data with everything resolved: addresses are socket addresses (or, with
//! `--late-bind`, names the runtime resolves at start), ports are numbers, tables are
//! instances with their hosts and check settings, filter rules are
//! [`crate::filter::Rule`]s with names turned into ids. Nothing in a plan needs a name
//! looked up or a string parsed at run time, except the late-bound names and paths, which
//! the runtime binds once, before serving.
//!
//! On disk (see [`container`]): a checksummed header, then the body — this [`Plan`] as an
//! rkyv archive, checked with bytecheck before use — then the keys section, [`Keys`], which
//! only the signer process reads. [`encode`] and [`decode`] go between the two.

pub mod container;

use crate::filter::Rule;
use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::Serialize;
use std::net::IpAddr;

macro_rules! plan_type {
    ($($item:item)*) => {$(
        #[derive(Clone, Debug, PartialEq, Eq, Serialize, Archive, RkyvSerialize, RkyvDeserialize)]
        $item
    )*};
}

plan_type! {
    /// The whole configuration, resolved.
    pub struct Plan {
        pub globals: Globals,
        /// Table instances (`name:port`), in relayd's id order (id = index + 1).
        pub tables: Vec<Table>,
        /// Hosts of all table instances (id = index + 1, as `parent N` counts them).
        pub hosts: Vec<Host>,
        pub protocols: Vec<Protocol>,
        pub relays: Vec<Relay>,
        pub redirects: Vec<Redirect>,
        pub routers: Vec<Router>,
        /// Tag names; a rule's `TagId` indexes this.
        pub tags: Vec<String>,
        /// Label texts; a rule's `LabelId` indexes this.
        pub labels: Vec<String>,
        /// Table names filter rules select with `forward to <t>`; a rule's `table` indexes
        /// this, and each relay binds it to one of its own instances (`Relay::rule_tables`).
        pub rule_tables: Vec<String>,
        /// TLS keypairs (certificates; their private keys are in the keys section).
        pub keypairs: Vec<Keypair>,
        /// The source files, relative to the main file's directory, in load order.
        pub sources: Vec<String>,
        /// The relayd release the file was judged by (`5.5`, `7.9`, …): runtime meanings
        /// that differ between releases follow it.
        pub release: String,
    }

    pub struct Globals {
        /// Health-check interval, seconds.
        pub interval_s: u32,
        /// Global check timeout, milliseconds (ICMP checks always use it).
        pub timeout_ms: u32,
        /// Relay worker threads (relayd's `prefork`).
        pub prefork: u32,
        pub log: LogSettings,
        /// Control socket path.
        pub socket: String,
    }

    pub struct LogSettings {
        pub state_changes: bool,
        pub host_checks: bool,
        pub connection: ConnectionLog,
        pub verbose: bool,
    }

    pub enum ConnectionLog {
        Off,
        Errors,
        All,
    }

    /// An address: resolved at compile time, or a name the runtime resolves at start
    /// (`--late-bind`).
    pub enum Address {
        Ip(IpAddr),
        Name(String),
    }

    pub struct Table {
        /// `name:port`.
        pub name: String,
        pub port: u16,
        pub check: Check,
        /// Check timeout, milliseconds.
        pub timeout_ms: u32,
        /// relayd's skip count: the table is checked on every `skip + 1`-th… see
        /// `health` (relayd runs it every `skip + 2` ticks when `skip > 0`).
        pub skip: u32,
        pub demote: Option<String>,
        pub disabled: bool,
        /// Host indexes, in table order (balancing indexes hosts in this order).
        pub hosts: Vec<u32>,
    }

    pub enum Check {
        /// No check: every host counts as up.
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
            send: Option<Vec<u8>>,
            expect: Vec<u8>,
            binary: bool,
            tls: bool,
        },
        Script(String),
    }

    pub enum HttpExpect {
        Code(u16),
        /// Lower-case hex SHA-1 (40 digits) or MD5 (32).
        Digest(String),
    }

    pub struct Host {
        /// The host as written (relayctl shows it).
        pub name: String,
        pub address: Address,
        /// Index of its table instance.
        pub table: u32,
        pub retry: u32,
        /// relayd host id of its parent.
        pub parent: Option<u32>,
        pub priority: Option<u8>,
        pub ip_ttl: Option<u8>,
    }

    pub enum ProtocolKind {
        Tcp,
        Http,
        Dns,
    }

    pub struct Protocol {
        pub name: String,
        pub kind: ProtocolKind,
        pub tcp: TcpOptions,
        pub http: HttpOptions,
        pub tls: TlsSettings,
        /// `return error`: send an HTML error page (with this style sheet, if any).
        pub return_error: Option<ErrorPage>,
        pub rules: Vec<Rule>,
    }

    pub struct ErrorPage {
        pub style: Option<String>,
    }

    pub struct TcpOptions {
        /// `nodelay` / `no nodelay`; unset leaves the choice to relayd-run.
        pub nodelay: Option<bool>,
        pub sack: bool,
        pub splice: bool,
        pub backlog: u32,
        pub socket_buffer: Option<u32>,
        pub ip_ttl: Option<u8>,
        pub ip_minttl: Option<u8>,
    }

    pub struct HttpOptions {
        pub headerlen: u32,
        pub websockets: bool,
    }

    /// TLS settings mapped onto what rustls offers (`crate::tls` did the mapping).
    pub struct TlsSettings {
        pub tls12: bool,
        pub tls13: bool,
        /// IANA cipher suite ids, in preference order.
        pub cipher_suites: Vec<u16>,
        /// Key-exchange groups by IANA id (x25519 = 29, secp256r1 = 23, secp384r1 = 24).
        pub kx_groups: Vec<u16>,
        pub session_tickets: bool,
        pub server_preference: bool,
        /// CA bundle to verify backends (`ca file`).
        pub ca_file: Option<Material>,
        /// CA bundle to verify client certificates (`client ca`).
        pub client_ca: Option<Material>,
        /// TLS inspection CA (`ca cert` / `ca key`): index into `Plan::keypairs`.
        pub inspection_ca: Option<u32>,
    }


    pub struct Keypair {
        /// The keypair's name (`tls keypair NAME`, or the listen address as text).
        pub name: String,
        /// PEM certificate chain, leaf first.
        pub certs: Material,
        pub key: KeyRef,
        pub ocsp: Option<Material>,
    }

    /// Where a private key is: in the plan's keys section, or in a file (late bind;
    /// the paths pair with the certificate paths, one for one).
    pub enum KeyRef {
        Section(u32),
        Paths(Vec<String>),
    }

    pub struct Relay {
        pub name: String,
        pub disabled: bool,
        pub listeners: Vec<Listener>,
        /// Index into `Plan::protocols`; `None` is relayd's built-in tcp protocol.
        pub protocol: Option<u32>,
        pub forwards: Vec<Forward>,
        /// Session (idle) timeout, seconds.
        pub session_timeout_s: u32,
        /// Keypairs for the TLS listeners, the default (first) one first.
        pub keypairs: Vec<u32>,
        /// For each of `Plan::rule_tables`, this relay's instance of that table.
        pub rule_tables: Vec<Option<u32>>,
    }

    pub struct Listener {
        pub address: Address,
        pub port: u16,
        pub tls: bool,
    }

    pub struct Forward {
        pub tls: bool,
        pub transparent: bool,
        pub target: Target,
        /// `inet` / `inet6 PREFIX`: map the destination to the other family.
        pub af: Option<AfMap>,
        /// `proxy-protocol v1|v2`.
        pub proxy_protocol: Option<u8>,
    }

    pub enum AfMap {
        Inet,
        Inet6(std::net::Ipv6Addr),
    }

    pub enum Target {
        Table {
            table: u32,
            mode: Mode,
            /// The hash key; `None` means relayd-run draws a random one at start.
            key: Option<[u8; 16]>,
        },
        Addr {
            address: Address,
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

    pub enum Mode {
        Roundrobin,
        Loadbalance,
        Hash,
        SourceHash,
        Random,
        LeastStates,
    }

    pub struct Redirect {
        pub name: String,
        pub disabled: bool,
        pub listeners: Vec<RdrListener>,
        /// Main table first, then the backup.
        pub tables: Vec<RdrTable>,
        pub sticky: bool,
        pub pftag: Option<String>,
        pub session_timeout_s: u32,
    }

    pub struct RdrListener {
        pub address: Address,
        pub udp: bool,
        pub port: u16,
        pub port_hi: Option<u16>,
        /// `interface NAME`: only packets arriving there are redirected.
        pub interface: Option<String>,
    }

    pub struct RdrTable {
        pub table: u32,
        pub mode: Mode,
        pub route: bool,
        pub interface: Option<String>,
    }

    pub struct Router {
        pub name: String,
        pub disabled: bool,
        pub routes: Vec<Route>,
        pub table: Option<u32>,
        pub rtable: Option<u32>,
        pub rtlabel: Option<String>,
    }

    pub struct Route {
        pub address: IpAddr,
        pub prefixlen: u8,
    }

    /// The keys section: private keys, indexed by `KeyRef::Section`.
    pub struct Keys {
        pub keys: Vec<PrivateKey>,
    }

    /// A private key as DER, in the encoding its kind names.
    pub struct PrivateKey {
        pub kind: KeyKind,
        pub der: Vec<u8>,
    }

    pub enum KeyKind {
        Pkcs8,
        /// `RSA PRIVATE KEY`.
        Pkcs1,
        /// `EC PRIVATE KEY`.
        Sec1,
    }
}

/// File contents embedded at compile time, or the paths the runtime tries in order
/// (relayd's lookup: `NAME:PORT` first, then `NAME`).
#[derive(Clone, Debug, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub enum Material {
    Embedded(Vec<u8>),
    Paths(Vec<String>),
}

/// In JSON (`relaydc inspect --format json`) embedded files show as their size and
/// SHA-256, not as their bytes.
impl Serialize for Material {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        match self {
            Material::Embedded(bytes) => {
                #[derive(Serialize)]
                struct Embedded {
                    bytes: usize,
                    sha256: String,
                }
                m.serialize_entry(
                    "embedded",
                    &Embedded {
                        bytes: bytes.len(),
                        sha256: sha256_hex(bytes),
                    },
                )?;
            }
            Material::Paths(p) => m.serialize_entry("paths", p)?,
        }
        m.end()
    }
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why a body or keys section cannot be turned back into a plan.
#[derive(Debug)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the plan body is not a valid plan ({}); rebuild it with `relaydc compile relayd.conf -o plan.bin`", self.0)
    }
}

impl std::error::Error for DecodeError {}

/// The body bytes of a plan (deterministic for equal plans).
pub fn encode(plan: &Plan) -> Result<Vec<u8>, DecodeError> {
    rkyv::to_bytes::<rkyv::rancor::Error>(plan)
        .map(|b| b.to_vec())
        .map_err(|e| DecodeError(e.to_string()))
}

/// The keys section bytes.
pub fn encode_keys(keys: &Keys) -> Result<Vec<u8>, DecodeError> {
    rkyv::to_bytes::<rkyv::rancor::Error>(keys)
        .map(|b| b.to_vec())
        .map_err(|e| DecodeError(e.to_string()))
}

/// Validates a body (structure, every enum tag, every offset) and turns it into a plan.
/// The bytes are copied into an aligned buffer first, so any slice will do.
pub fn decode(body: &[u8]) -> Result<Plan, DecodeError> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(body.len());
    aligned.extend_from_slice(body);
    let archived = rkyv::access::<ArchivedPlan, rkyv::rancor::Error>(&aligned)
        .map_err(|e| DecodeError(e.to_string()))?;
    rkyv::deserialize::<Plan, rkyv::rancor::Error>(archived).map_err(|e| DecodeError(e.to_string()))
}

/// Validates and decodes the keys section.
pub fn decode_keys(bytes: &[u8]) -> Result<Keys, DecodeError> {
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(bytes.len());
    aligned.extend_from_slice(bytes);
    let archived = rkyv::access::<ArchivedKeys, rkyv::rancor::Error>(&aligned)
        .map_err(|e| DecodeError(e.to_string()))?;
    rkyv::deserialize::<Keys, rkyv::rancor::Error>(archived).map_err(|e| DecodeError(e.to_string()))
}

/// Names under `.invalid` never resolve (RFC 6761): the compiler and the runtime refuse
/// them without asking a resolver.
pub fn never_resolves(name: &str) -> bool {
    let n = name.trim_end_matches('.');
    n == "invalid" || n.ends_with(".invalid")
}
