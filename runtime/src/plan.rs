//! Loading a plan: from a file to a validated [`Plan`] in memory, before anything starts.
//!
//! Two readers, one per process (DESIGN.md, "Processes"):
//!
//! * [`load`] reads the whole file, as the signer process (the only one that holds private
//!   keys) and `relayd-run --check` do: the container's header, length and every digest
//!   ([`container::open`]), the body ([`plan::decode`]), the keys section
//!   ([`plan::decode_keys`], when there is one), then the plan's own consistency
//!   ([`validate`]).
//! * [`load_public`] is for the relay process, which must never read the keys section: it
//!   reads the header, checks the file's length against it with `fstat`, then reads exactly
//!   header and body ([`container::open_public`]) and checks the same consistency, except
//!   that a key's index into the unread keys section can only be checked against the
//!   section being there at all.
//!
//! Either way a corrupt, truncated, foreign or inconsistent plan is refused as a whole with
//! a [`LoadError`], whose `Display` is one sentence that ends with the rebuild command.
//! A plan that passes never makes the runtime index out of bounds: every index it holds
//! points into the list it names ([`validate`]). Nothing here panics, whatever the bytes.

use relaydc_spec::filter::{Prefix, Rule, SetOrClear};
use relaydc_spec::plan::container::{self, ContainerError, Header, HEADER_LEN, REBUILD_COMMAND};
use relaydc_spec::plan::{self, KeyRef, Keys, Plan, Target};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::net::IpAddr;
use std::path::Path;

/// A whole plan, every byte checked: what the signer process and `--check` work from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub header: Header,
    pub plan: Plan,
    /// The private keys; empty when the plan has no keys section.
    pub keys: Keys,
}

/// The public part of a plan (header and body), checked: what the relay process works
/// from. The keys section was never read; `header` records its length and digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicPlan {
    pub header: Header,
    pub plan: Plan,
}

/// Why a plan file was refused. `Display` gives one sentence for an operator, without the
/// file's name (the caller puts it in front), ending with what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The file could not be opened or read.
    Read {
        kind: io::ErrorKind,
        message: String,
    },
    /// The container refused the file: not a plan, another format version, truncated,
    /// corrupted ([`ContainerError`] has the sentence).
    Container(ContainerError),
    /// The body's checksum is right but it is not a plan of this format version.
    Body {
        compiler_version: String,
        detail: String,
    },
    /// The keys section's checksum is right but it is not a keys section.
    Keys {
        compiler_version: String,
        detail: String,
    },
    /// The plan decodes but is not consistent (an index out of range, …).
    Inconsistent(Inconsistency),
}

/// A consistency problem inside a decoded plan: where it is and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inconsistency {
    /// The object, as an operator would name it: `relay "www"`, `host 3 "10.0.0.1"`,
    /// `rule 2 of protocol "https"`, …
    pub place: String,
    pub problem: Problem,
}

/// What is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// `field` holds `index`, but the list it indexes (`list`) has only `len` entries.
    IndexOutOfRange {
        field: &'static str,
        index: u32,
        len: usize,
        list: &'static str,
    },
    /// A host's parent is a relayd host id (counted from 1) that no host has.
    ParentOutOfRange { id: u32, hosts: usize },
    /// A relay binds `found` rule tables, but the plan's filter rules select `expected`.
    RuleTables { found: usize, expected: usize },
    /// A keypair's private key is in the keys section, but the plan has none.
    NoKeysSection { index: u32 },
    /// A prefix length longer than its address family's width.
    PrefixLen {
        field: &'static str,
        len: u8,
        width: u8,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rebuild = REBUILD_COMMAND;
        let version = container::FORMAT_VERSION;
        match self {
            LoadError::Read { kind, message } => match kind {
                io::ErrorKind::NotFound => {
                    write!(f, "there is no such file; build the plan with `{rebuild}`")
                }
                io::ErrorKind::IsADirectory => write!(
                    f,
                    "this is a directory, not a plan file; build the plan with `{rebuild}`"
                ),
                io::ErrorKind::PermissionDenied => write!(
                    f,
                    "cannot read the file ({message}); give relayd-run read access to it, or \
                     rebuild it with `{rebuild}`"
                ),
                _ => write!(
                    f,
                    "cannot read the file ({message}); rebuild it with `{rebuild}` or copy it \
                     again"
                ),
            },
            LoadError::Container(e) => e.fmt(f),
            LoadError::Body {
                compiler_version,
                detail,
            } => write!(
                f,
                "the plan's body is not a plan of format version {version} ({detail}), \
                 although its checksum is right, so it was written by an incompatible \
                 relaydc ({}); rebuild it with `{rebuild}`",
                writer(compiler_version)
            ),
            LoadError::Keys {
                compiler_version,
                detail,
            } => write!(
                f,
                "the plan's keys section is not a keys section of format version {version} \
                 ({detail}), although its checksum is right, so it was written by an \
                 incompatible relaydc ({}); rebuild it with `{rebuild}`",
                writer(compiler_version)
            ),
            LoadError::Inconsistent(i) => write!(f, "{i}"),
        }
    }
}

impl fmt::Display for Inconsistency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = &self.place;
        write!(f, "the plan is inconsistent: ")?;
        match &self.problem {
            Problem::IndexOutOfRange {
                field,
                index,
                len,
                list,
            } => write!(
                f,
                "index {index} out of range in {place} ({field}; the plan has {len} {list})"
            )?,
            Problem::ParentOutOfRange { id, hosts } => write!(
                f,
                "parent host id {id} out of range in {place} (host ids run from 1 to {hosts})"
            )?,
            Problem::RuleTables { found, expected } => write!(
                f,
                "{place} binds {found} rule tables, but the plan's filter rules select \
                 {expected}"
            )?,
            Problem::NoKeysSection { index } => write!(
                f,
                "{place} has its private key at index {index} of the keys section, but the \
                 plan has no keys section"
            )?,
            Problem::PrefixLen { field, len, width } => write!(
                f,
                "prefix length {len} out of range in {place} ({field}; the address has \
                 {width} bits)"
            )?,
        }
        write!(
            f,
            ", so it was not written by a working relaydc; rebuild it with `{REBUILD_COMMAND}`"
        )
    }
}

impl std::error::Error for LoadError {}

impl From<ContainerError> for LoadError {
    fn from(e: ContainerError) -> Self {
        LoadError::Container(e)
    }
}

impl From<Inconsistency> for LoadError {
    fn from(e: Inconsistency) -> Self {
        LoadError::Inconsistent(e)
    }
}

impl From<io::Error> for LoadError {
    fn from(e: io::Error) -> Self {
        LoadError::Read {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

/// Who wrote the plan, as its header tells: `its header says "relaydc 0.1.0"`.
fn writer(compiler_version: &str) -> String {
    if compiler_version.is_empty() {
        "its header names no compiler".to_string()
    } else {
        format!("its header says {compiler_version:?}")
    }
}

/// A decoder's message as one line for an operator: whitespace runs become one space,
/// the memory addresses of rkyv's pointer errors (`…: ptr 0x7f… size 12 in range
/// 0x7f…..0x7f…`, different on every run) go, and so does trailing punctuation, so the
/// rest sits inside parentheses.
fn one_line(detail: &str) -> String {
    let detail = detail.split(": ptr 0x").next().unwrap_or(detail);
    let joined = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.trim_end_matches(['.', ';', ':']).to_string()
}

// ---------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------

/// Reads the header of an open plan file, checks it and checks the file's length against
/// it (with `fstat`, reading nothing more). Returns the header's bytes and the header.
fn read_header(file: &mut File) -> Result<(Vec<u8>, Header), LoadError> {
    let mut head = Vec::with_capacity(HEADER_LEN);
    file.by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut head)?;
    let header = container::parse_header(&head)?;
    let len = file.metadata()?.len();
    let expected = header.file_len();
    if len < expected {
        return Err(ContainerError::Truncated { len, expected }.into());
    }
    if len > expected {
        return Err(ContainerError::TrailingBytes { len, expected }.into());
    }
    Ok((head, header))
}

/// Appends at most `upto - bytes.len()` further bytes of `file` to `bytes` (the header's
/// bytes). A file that changed since its length was checked comes back short or long, and
/// the container refuses it.
fn read_rest(file: &mut File, mut bytes: Vec<u8>, upto: u64) -> Result<Vec<u8>, LoadError> {
    let more = upto.saturating_sub(bytes.len() as u64);
    bytes.reserve(usize::try_from(more).unwrap_or(0));
    file.by_ref().take(more).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Loads and checks a whole plan file: header, length, every digest, body, keys section
/// and consistency ([`validate`]). For the signer process and `relayd-run --check`.
pub fn load(path: &Path) -> Result<Loaded, LoadError> {
    let mut file = File::open(path)?;
    let (head, header) = read_header(&mut file)?;
    let bytes = read_rest(&mut file, head, header.file_len())?;
    load_bytes(&bytes)
}

/// [`load`] on a plan file's bytes already in memory.
pub fn load_bytes(file: &[u8]) -> Result<Loaded, LoadError> {
    let opened = container::open(file)?;
    let plan = decode_body(&opened.header, opened.body)?;
    let keys = if opened.keys.is_empty() {
        Keys { keys: Vec::new() }
    } else {
        plan::decode_keys(opened.keys).map_err(|e| LoadError::Keys {
            compiler_version: opened.header.compiler_version.clone(),
            detail: one_line(&e.0),
        })?
    };
    validate(&plan, KeysSection::Read(keys.keys.len()))?;
    Ok(Loaded {
        header: opened.header,
        plan,
        keys,
    })
}

/// Loads and checks the public part of a plan file without ever reading its keys section:
/// the header, the file's length (by `fstat`), exactly [`Header::public_len`] bytes with the
/// header and body digests, the body and its consistency. For the relay process.
pub fn load_public(path: &Path) -> Result<PublicPlan, LoadError> {
    let mut file = File::open(path)?;
    let (head, header) = read_header(&mut file)?;
    let prefix = read_rest(&mut file, head, header.public_len())?;
    let (header, body) = container::open_public(&prefix)?;
    let plan = decode_body(&header, body)?;
    validate(&plan, KeysSection::Unread(header.keys_len))?;
    Ok(PublicPlan { header, plan })
}

fn decode_body(header: &Header, body: &[u8]) -> Result<Plan, LoadError> {
    plan::decode(body).map_err(|e| LoadError::Body {
        compiler_version: header.compiler_version.clone(),
        detail: one_line(&e.0),
    })
}

// ---------------------------------------------------------------------------------------
// Consistency
// ---------------------------------------------------------------------------------------

/// What [`validate`] knows about the keys section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeysSection {
    /// Read and decoded: it holds this many private keys.
    Read(usize),
    /// Not read (the relay process): the header says it has this many bytes.
    Unread(u64),
}

/// Checks that every index in the plan points into the list it names, so the runtime can
/// never index out of bounds: host indexes of tables, table ids of hosts, forwards,
/// redirects, routers and relays' rule tables; parent host ids; protocol and keypair
/// indexes of relays; tag, label and rule-table ids of filter rules; the inspection CA
/// of protocols; keypairs' keys-section indexes; and that every relay binds one instance
/// slot per rule table. Prefix lengths must fit their address family.
pub fn validate(plan: &Plan, keys: KeysSection) -> Result<(), Inconsistency> {
    let tables = plan.tables.len();
    let hosts = plan.hosts.len();
    let keypairs = plan.keypairs.len();

    for (i, t) in plan.tables.iter().enumerate() {
        let place = || format!("table {} {:?}", i + 1, t.name);
        for &h in &t.hosts {
            index(h, hosts, "hosts", "a host of the table", place)?;
        }
    }
    for (i, h) in plan.hosts.iter().enumerate() {
        let place = || format!("host {} {:?}", i + 1, h.name);
        index(h.table, tables, "tables", "the host's table", place)?;
        if let Some(id) = h.parent {
            if id == 0 || id as usize > hosts {
                return Err(Inconsistency {
                    place: place(),
                    problem: Problem::ParentOutOfRange { id, hosts },
                });
            }
        }
    }
    for p in &plan.protocols {
        let place = || format!("protocol {:?}", p.name);
        if let Some(ca) = p.tls.inspection_ca {
            index(ca, keypairs, "keypairs", "the TLS inspection CA", place)?;
        }
        for (r, rule) in p.rules.iter().enumerate() {
            check_rule(plan, rule, || {
                format!("rule {} of protocol {:?}", r + 1, p.name)
            })?;
        }
    }
    for relay in &plan.relays {
        let place = || format!("relay {:?}", relay.name);
        if let Some(p) = relay.protocol {
            index(p, plan.protocols.len(), "protocols", "the protocol", place)?;
        }
        for f in &relay.forwards {
            if let Target::Table { table, .. } = f.target {
                index(table, tables, "tables", "the table of a forward", place)?;
            }
        }
        for &k in &relay.keypairs {
            index(k, keypairs, "keypairs", "a TLS keypair", place)?;
        }
        if relay.rule_tables.len() != plan.rule_tables.len() {
            return Err(Inconsistency {
                place: place(),
                problem: Problem::RuleTables {
                    found: relay.rule_tables.len(),
                    expected: plan.rule_tables.len(),
                },
            });
        }
        for t in relay.rule_tables.iter().flatten() {
            index(
                *t,
                tables,
                "tables",
                "a table filter rules forward to",
                place,
            )?;
        }
    }
    for r in &plan.redirects {
        let place = || format!("redirect {:?}", r.name);
        for t in &r.tables {
            index(t.table, tables, "tables", "a forward table", place)?;
        }
    }
    for r in &plan.routers {
        let place = || format!("router {:?}", r.name);
        if let Some(t) = r.table {
            index(t, tables, "tables", "the table", place)?;
        }
        for route in &r.routes {
            prefix_len(route.address, route.prefixlen, "a route", place)?;
        }
    }
    for k in &plan.keypairs {
        let place = || format!("keypair {:?}", k.name);
        if let KeyRef::Section(n) = k.key {
            match keys {
                KeysSection::Read(len) => index(n, len, "private keys", "the private key", place)?,
                KeysSection::Unread(0) => {
                    return Err(Inconsistency {
                        place: place(),
                        problem: Problem::NoKeysSection { index: n },
                    })
                }
                KeysSection::Unread(_) => {}
            }
        }
    }
    Ok(())
}

fn check_rule(plan: &Plan, rule: &Rule, place: impl Fn() -> String) -> Result<(), Inconsistency> {
    let tags = plan.tags.len();
    if let Some(t) = rule.tagged {
        index(t, tags, "tags", "`tagged`", &place)?;
    }
    if let Some(SetOrClear::Set(t)) = rule.tag {
        index(t, tags, "tags", "`tag`", &place)?;
    }
    if let Some(SetOrClear::Set(l)) = rule.label {
        index(l, plan.labels.len(), "labels", "`label`", &place)?;
    }
    if let Some(t) = rule.table {
        index(
            t,
            plan.rule_tables.len(),
            "rule tables",
            "`forward to`",
            &place,
        )?;
    }
    for (p, field) in [(rule.from, "`from`"), (rule.to, "`to`")] {
        if let Some(Prefix { addr, len }) = p {
            prefix_len(addr, len, field, &place)?;
        }
    }
    Ok(())
}

fn index(
    index: u32,
    len: usize,
    list: &'static str,
    field: &'static str,
    place: impl Fn() -> String,
) -> Result<(), Inconsistency> {
    if (index as usize) < len {
        Ok(())
    } else {
        Err(Inconsistency {
            place: place(),
            problem: Problem::IndexOutOfRange {
                field,
                index,
                len,
                list,
            },
        })
    }
}

fn prefix_len(
    addr: IpAddr,
    len: u8,
    field: &'static str,
    place: impl Fn() -> String,
) -> Result<(), Inconsistency> {
    let width = if addr.is_ipv4() { 32 } else { 128 };
    if len <= width {
        Ok(())
    } else {
        Err(Inconsistency {
            place: place(),
            problem: Problem::PrefixLen { field, len, width },
        })
    }
}
