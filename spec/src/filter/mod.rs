//! HTTP filter rules: what a rule is, and (in [`eval`]) what a list of rules does to one
//! HTTP message.
//!
//! This is the one definition of filter semantics. The runtime evaluates live requests
//! and responses with it; the compiler evaluates it to find rules that can never decide
//! (`analysis`) and to explain what a request would meet. Everything here is plain data
//! with names already resolved to ids, so the same values can sit in a frozen plan.
//!
//! Semantics (relayd's relay_http.c, current and 5.6–7.x; reference §4.6):
//! rules are scanned in order; a rule applies when direction, address family, `from`,
//! `to`, `method`, `tagged` and every entity test match; `match` rules apply their
//! tag/label/table at once and queue their options; the **last** matching pass/block rule
//! is the verdict, `quick` stops the scan; no pass/block rule → pass.
//!
//! Rules of relayd 4.3–5.5 ("protocol nodes") are lowered into the same type, keeping
//! their own meaning: case-insensitive value globs ([`Case::Insensitive`]), `expect`
//! alternatives OR'ed ([`ValueTest::NoneOf`]), and their own refusal texts ([`Legacy`]).
//!
//! Modules (added beside the types; the types themselves are unchanged):
//! * [`glob`] — OpenBSD `fnmatch(3)` with relayd's flags, and static questions on globs;
//! * [`lua`] — patterns(7) as relayd's `patterns.c` runs them;
//! * [`url`] — `Host` canonicalisation, url lookup candidates, digests;
//! * [`eval`] — [`evaluate`]: one message through a rule list (`relay_test`);
//! * [`analysis`] — [`analyze`]: rules that can never decide or apply.
//!
//! The main entry points are re-exported here.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub mod analysis;
pub mod apply;
mod ctype;
pub mod eval;
pub mod glob;
pub mod head;
pub mod lua;
pub mod url;

pub use analysis::{analyze, Finding, FindingKind};
pub use eval::{evaluate, Message, Outcome, OwnedMessage, Refusal, SessionState, Verdict};

/// Interned tag name (`tag`/`tagged`); the names live beside the rules in the plan.
pub type TagId = u32;
/// Interned label text (`label`).
pub type LabelId = u32;
/// A table instance (`name:port`) as numbered by the compiler.
pub type TableId = u32;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Action {
    Pass,
    Block,
    Match,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Direction {
    Request,
    Response,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Family {
    Inet,
    Inet6,
}

/// An address prefix (`from 10.0.0.0/8`); `len` is within the family's width.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Case {
    Sensitive,
    Insensitive,
}

/// A text test as written in a rule.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Pattern {
    /// fnmatch(3)-style glob (`*`, `?`, `[…]`, `\` escapes), with its pre-compiled
    /// [`GlobShape`] (build it with [`Pattern::glob`]).
    Glob {
        text: String,
        case: Case,
        shape: GlobShape,
    },
    /// Lua-style pattern (patterns(7)) after the `pattern` keyword: unanchored search,
    /// always case-sensitive.
    Lua { text: String },
}

impl Pattern {
    /// A glob with its shape computed once (at compile time, so the runtime matches the
    /// common shapes without interpreting the pattern).
    pub fn glob(text: impl Into<String>, case: Case) -> Pattern {
        let text = text.into();
        let shape = GlobShape::of(text.as_bytes());
        Pattern::Glob { text, case, shape }
    }
}

/// The matcher form of a glob: most globs in relayd.conf files are a literal, `*`, or a
/// literal with one `*` at an end, and those match with a comparison; only the rest run
/// the fnmatch(3) port. [`glob::matches`] gives exactly `glob::fnmatch`'s answer for
/// every shape (a property test holds it to that).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum GlobShape {
    /// Only `*`s: matches everything.
    Any,
    /// No wildcard at all: equality.
    Literal,
    /// `literal*`: a prefix of this many bytes.
    Prefix(u32),
    /// `*literal`: a suffix of this many bytes.
    Suffix(u32),
    /// Anything else: fnmatch.
    General,
}

impl GlobShape {
    pub fn of(text: &[u8]) -> GlobShape {
        // A NUL ends the pattern for fnmatch (C strings); leave such text to it.
        let special = |b: &u8| matches!(b, b'*' | b'?' | b'[' | b'\\' | 0);
        if !text.is_empty() && text.iter().all(|b| *b == b'*') {
            return GlobShape::Any;
        }
        if !text.iter().any(special) {
            return GlobShape::Literal;
        }
        if let Some(lit) = text.strip_suffix(b"*") {
            if !lit.iter().any(special) {
                return GlobShape::Prefix(lit.len() as u32);
            }
        }
        if let Some(lit) = text.strip_prefix(b"*") {
            if !lit.iter().any(special) {
                return GlobShape::Suffix(lit.len() as u32);
            }
        }
        GlobShape::General
    }
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Entity {
    Header,
    Cookie,
    Path,
    Query,
    Url,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum KeyOption {
    Append,
    Set,
    Remove,
    Hash,
    Log,
}

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum DigestAlg {
    Sha1,
    Md5,
}

/// What an entity test looks for.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Key {
    /// No key written (`header log`, `block request header`): relayd uses `*`.
    Any,
    Pattern(Pattern),
    /// `url digest D`: lower-case hex digest of a url candidate.
    Digest {
        alg: DigestAlg,
        hex: String,
    },
}

/// The test on the value found under the key.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum ValueTest {
    /// No `value` written: relayd's `*`.
    Any,
    Matches(Pattern),
    /// relayd ≤ 5.5 `expect` nodes for one key, OR'ed: the test holds when the entity is
    /// missing or no alternative matches (so the node's rule refuses the request).
    NoneOf(Vec<Pattern>),
}

/// One `header|cookie|path|query|url …` part of a rule (at most one per entity).
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct EntityTest {
    pub entity: Entity,
    pub option: Option<KeyOption>,
    pub key: Key,
    pub value: ValueTest,
    /// The value an `append`/`set` writes (may hold runtime macros such as
    /// `$REMOTE_ADDR`); for those options `value` is [`ValueTest::Any`].
    pub write: Option<String>,
}

/// `tag X` / `no tag`, `label X` / `no label`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum SetOrClear<T> {
    Set(T),
    Clear,
}

/// How a legacy (≤ 5.5) node refuses a request; current rules refuse with 403 and the
/// session label.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub enum Legacy {
    /// `filter`: 403 "rejecting request" as soon as it matches.
    Filter,
    /// `expect`: 403 "incomplete request" when no alternative matched.
    Expect,
    /// `append V to K`: joins with `, ` into the existing line instead of adding one.
    AppendJoin,
    /// `change K to V`: drops the line and emits it at the end of the header block.
    Change,
}

/// One filter rule, fully resolved.
#[derive(
    Clone,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct Rule {
    pub action: Action,
    pub direction: Direction,
    pub quick: bool,
    pub family: Option<Family>,
    /// Client address.
    pub from: Option<Prefix>,
    /// The address the client connected to (the relay's listener).
    pub to: Option<Prefix>,
    /// Exact upper-case method name; requests only.
    pub method: Option<String>,
    pub tests: Vec<EntityTest>,
    pub tagged: Option<TagId>,
    pub tag: Option<SetOrClear<TagId>>,
    pub label: Option<SetOrClear<LabelId>>,
    /// `forward to <t>`: the table instance this request goes to.
    pub table: Option<TableId>,
    /// `path strip N`.
    pub strip: Option<u32>,
    /// Set for rules lowered from relayd ≤ 5.5 protocol nodes.
    pub legacy: Option<Legacy>,
}
