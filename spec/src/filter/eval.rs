//! What a list of filter rules does to one HTTP message: relay_http.c `relay_test`.
//!
//! [`evaluate`] is the one definition the runtime runs on live traffic and the compiler
//! runs to explain rules; `analysis` reasons about exactly this function. It follows
//! relayd's source where it differs from the reference (§4.6); every such place says so:
//!
//! * **Skip steps** (`relay_calc_skip_steps`, `RELAY_GET_SKIP_STEP`): when a rule fails
//!   its direction, address-family, `from`, `to` or `method` check, relayd does not go to
//!   the next rule but jumps over every following rule in the same "run" of that
//!   attribute. relayd computes the runs with an `if … else if` chain (unlike pf), and
//!   compares families with `RELAY_AF_NEQ` and prefixes with `RELAY_ADDR_NEQ`, both of
//!   which treat "unspecified" as equal to anything, so a jump can pass over rules that
//!   would have matched (e.g. after `pass inet …`, an IPv6 client skips the following
//!   family-less rules of the same direction). The reference calls skip steps a pure
//!   optimisation; we reproduce what relayd does.
//! * **Addresses**: `from` is compared with the address of the peer that sent the
//!   message (`cre->ss`): the client for requests but the *backend* for responses. The
//!   family check looks at both ends of the message. A rule that selects a table clears
//!   the backend address (`relay_match_actions` sets `se_out.ss.ss_family = AF_UNSPEC`),
//!   after which checks against it pass (see [`SessionState::backend_cleared`]).
//! * **The selected table** is per request (`relay_test`'s local `tbl`, applied for
//!   requests only by `relay_apply_actions`), not sticky like tag and label.
//! * **Entity tests** are run in relayd's order — header, query, path, url, cookie — and a
//!   `url` test that meets a `Host` relayd cannot canonicalise ends evaluation at once
//!   with 400 "Bad Request" (`relay_lookup_url` → `RES_BAD`).
//! * Test details (`relay_http*_test`, `relay_lookup_*`, relayd.c `kv_find`): header keys
//!   with `*?[` are globs (case folded) selecting the first header *in sorted order*
//!   whose name matches, other keys are compared literally ignoring case; duplicate
//!   headers hang under the first one, so only the first occurrence's value is tested.
//!   Cookie keys are always literal (case-insensitive), cookie values are folded globs,
//!   and only the first `Cookie`/`Set-Cookie` line is read. A `url` key is compared
//!   literally (ignoring case) with each candidate, never as a glob, and the rule's
//!   `value` is not looked at. A non-`block` `url log K` rule matches when `K` globs the
//!   path (folded). A request without `Host` matches every current-syntax `url` rule.
//!   `path`, `query` and `url` tests always hold on responses.
//!
//! Rules lowered from relayd ≤ 5.5 protocol nodes (`Legacy::Filter` / `Legacy::Expect`)
//! keep their own matching (relay_http.c 1.18, `relay_handle_http`, `relay_resolve`):
//! header keys are literal and every line of the header is examined; a `filter` node
//! fires when any line matches (folded glob) **or** when the header occurs twice (relayd
//! counts lines "to avoid circumventing the filter" and rejects at the end); an `expect`
//! node set fails when the header is missing or no line matched, answers 400 "repeated
//! header line" when the header comes again after a matching line, and — relayd's own
//! counting — lets two non-matching lines through. `url` nodes only run when there is a
//! `Host` line. Their refusal texts are in [`Refusal`]. relayd ran node checks while
//! streaming headers and at the end in tree order; here they run in rule order, so when
//! several legacy nodes refuse the same request the text may differ from relayd's.
//!
//! Allocation: [`evaluate`] allocates nothing; it only pushes rule indices onto the
//! caller's `queued` vector (cleared on entry), which the runtime keeps and reuses.

use super::ctype::{cmp_ignore_case, eq_ignore_case};
use super::glob::{fnmatch, has_wildcards};
use super::url::{canonicalize_host, for_each_candidate};
use super::{
    lua, Action, Case, DigestAlg, Direction, Entity, EntityTest, Family, Key, KeyOption, LabelId,
    Legacy, Pattern, Prefix, Rule, SetOrClear, TableId, TagId, ValueTest,
};
use std::cmp::Ordering;
use std::net::IpAddr;

/// What filters look at in one HTTP message. Implemented by the runtime over its parsed
/// message (no copies needed) and by [`OwnedMessage`] for the compiler and tests.
pub trait Message {
    fn direction(&self) -> Direction;
    /// The request method as sent (exact case); `None` for responses.
    fn method(&self) -> Option<&[u8]>;
    /// relayd's `http_path`: the request target up to the first `?`, as sent (it need not
    /// start with `/`). Requests always have one; `None` is read as empty. `None` for
    /// responses.
    fn path(&self) -> Option<&[u8]>;
    /// What follows the first `?` of the target (possibly empty); `None` without `?`.
    fn query(&self) -> Option<&[u8]>;
    /// Number of header lines.
    fn header_count(&self) -> usize;
    /// Header line `i` in arrival order as relayd stores it: name (an RFC 9110 token, as
    /// relayd checks since `relay_http_header_name_valid`; `analysis` relies on it), and
    /// value with leading blanks removed. Lines relayd drops before filtering (e.g.
    /// `Content-Length` of a GET) must not be listed.
    fn header(&self, i: usize) -> (&[u8], &[u8]);
    /// The client's address.
    fn client(&self) -> Option<IpAddr>;
    /// The backend's address as relayd holds it in `se_out.ss`; `None` while it has none
    /// (before the session's first connection).
    fn backend(&self) -> Option<IpAddr>;
    /// The address the client connected to (relayd's `se_sockname`).
    fn local(&self) -> Option<IpAddr>;
}

/// An owned [`Message`], for the compiler ("what would this request meet") and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedMessage {
    pub direction: Direction,
    pub method: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub client: Option<IpAddr>,
    pub backend: Option<IpAddr>,
    pub local: Option<IpAddr>,
}

impl OwnedMessage {
    /// A request; `target` is split at its first `?` as relayd does.
    pub fn request(method: &str, target: &str) -> Self {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), Some(q.to_string())),
            None => (target.to_string(), None),
        };
        OwnedMessage {
            direction: Direction::Request,
            method: Some(method.to_string()),
            path: Some(path),
            query,
            headers: Vec::new(),
            client: None,
            backend: None,
            local: None,
        }
    }

    /// A response.
    pub fn response() -> Self {
        OwnedMessage {
            direction: Direction::Response,
            method: None,
            path: None,
            query: None,
            headers: Vec::new(),
            client: None,
            backend: None,
            local: None,
        }
    }

    /// Adds a header line.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

impl Message for OwnedMessage {
    fn direction(&self) -> Direction {
        self.direction
    }
    fn method(&self) -> Option<&[u8]> {
        self.method.as_deref().map(str::as_bytes)
    }
    fn path(&self) -> Option<&[u8]> {
        self.path.as_deref().map(str::as_bytes)
    }
    fn query(&self) -> Option<&[u8]> {
        self.query.as_deref().map(str::as_bytes)
    }
    fn header_count(&self) -> usize {
        self.headers.len()
    }
    fn header(&self, i: usize) -> (&[u8], &[u8]) {
        match self.headers.get(i) {
            Some((n, v)) => (n.as_bytes(), v.as_bytes()),
            None => (b"", b""),
        }
    }
    fn client(&self) -> Option<IpAddr> {
        self.client
    }
    fn backend(&self) -> Option<IpAddr> {
        self.backend
    }
    fn local(&self) -> Option<IpAddr> {
        self.local
    }
}

/// What persists between the messages of one client session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SessionState {
    /// `tag` / `tagged`; sticky for the session (`con->se_tag`).
    pub tag: Option<TagId>,
    /// `label`; sticky (`con->se_label`), shown on `return error` pages.
    pub label: Option<LabelId>,
    /// The table the last request selected (`forward to`); recomputed for every request
    /// (unchanged by responses). The runtime switches backends when it changes.
    pub table: Option<TableId>,
    /// Added for relayd's `se_out.ss.ss_family = AF_UNSPEC`: set once a rule selected a
    /// table; while set, rules' family checks against the backend address and response
    /// rules' `from` pass. The runtime clears it when it (re)connects to a backend.
    pub backend_cleared: bool,
}

/// The decision for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Block,
}

/// How a blocked message is answered (`relay_abort_http`); the connection is closed after
/// the page (or silently without `return error`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// A `block` verdict: 403 "Forbidden", page label = the session's label.
    Forbidden,
    /// A `url` test met a `Host` that relayd cannot canonicalise (`RES_BAD`): 400
    /// "Bad Request", page label = the session's label.
    BadRequest,
    /// Legacy `filter` node: 403 "rejecting request", page label = the node's label.
    LegacyRejecting,
    /// Legacy `expect` node: 403 "incomplete request", page label = the node's label.
    LegacyIncomplete,
    /// Legacy `expect` node and its header seen again: 400 "repeated header line".
    LegacyRepeatedHeader,
    /// Legacy `url` node with a bad `Host`: 400 "invalid host name".
    LegacyInvalidHost,
}

impl Refusal {
    /// HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Refusal::Forbidden | Refusal::LegacyRejecting | Refusal::LegacyIncomplete => 403,
            Refusal::BadRequest | Refusal::LegacyRepeatedHeader | Refusal::LegacyInvalidHost => 400,
        }
    }

    /// The message relayd puts on the page and in the log.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Forbidden => "Forbidden",
            Refusal::BadRequest => "Bad Request",
            Refusal::LegacyRejecting => "rejecting request",
            Refusal::LegacyIncomplete => "incomplete request",
            Refusal::LegacyRepeatedHeader => "repeated header line",
            Refusal::LegacyInvalidHost => "invalid host name",
        }
    }
}

/// Result of [`evaluate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome {
    pub verdict: Verdict,
    /// The pass/block rule that gave the verdict (the last one that matched, or the
    /// `quick` one that stopped the scan); `None` for the default pass and for aborts.
    /// The caller applies the options of the `queued` rules in order, then this rule's.
    pub decided_by: Option<usize>,
    /// `Some` exactly when the verdict is `Block`.
    pub refusal: Option<Refusal>,
    /// The rule whose `url` test aborted evaluation with 400 (`queued` is then empty:
    /// relayd applies no options).
    pub aborted_by: Option<usize>,
}

/// Runs `rules` over `msg` (relay_http.c `relay_test`). `state` carries the session's tag,
/// label, table and backend-address state in and out; `queued` receives, in order, the
/// indices of the `match` rules that matched (their options are to be applied).
pub fn evaluate<M: Message + ?Sized>(
    rules: &[Rule],
    msg: &M,
    state: &mut SessionState,
    queued: &mut Vec<usize>,
) -> Outcome {
    queued.clear();
    let dir = msg.direction();
    let mut table: Option<TableId> = None;
    let mut verdict = Verdict::Pass;
    let mut decided_by: Option<usize> = None;
    let mut legacy_refusal: Option<Refusal> = None;

    let mut r = 0usize;
    while let Some(rule) = rules.get(r) {
        if let Some(attr) = failed_skip_check(rule, msg, state) {
            r = skip_target(rules, r, attr);
            continue;
        }
        if let Some(t) = rule.tagged {
            if state.tag != Some(t) {
                r += 1;
                continue;
            }
        }
        // What a legacy `expect` node would answer if this rule gives the verdict.
        let kind = match rule_tests(rule, msg) {
            TestResult::Fail => {
                r += 1;
                continue;
            }
            TestResult::BadHost => {
                queued.clear();
                let refusal = if is_legacy_node(rule) {
                    Refusal::LegacyInvalidHost
                } else {
                    Refusal::BadRequest
                };
                return Outcome {
                    verdict: Verdict::Block,
                    decided_by: None,
                    refusal: Some(refusal),
                    aborted_by: Some(r),
                };
            }
            TestResult::Pass => Refusal::LegacyIncomplete,
            TestResult::PassRepeated => Refusal::LegacyRepeatedHeader,
        };
        match rule.action {
            Action::Match => {
                apply(rule, state, &mut table);
                queued.push(r);
                r += 1;
                continue;
            }
            Action::Block => verdict = Verdict::Block,
            Action::Pass => verdict = Verdict::Pass,
        }
        decided_by = Some(r);
        legacy_refusal = match rule.legacy {
            Some(Legacy::Filter) => Some(Refusal::LegacyRejecting),
            Some(Legacy::Expect) => Some(kind),
            _ => None,
        };
        if rule.quick {
            break;
        }
        r += 1;
    }

    if let Some(rule) = decided_by.and_then(|d| rules.get(d)) {
        apply(rule, state, &mut table);
    }
    if dir == Direction::Request {
        state.table = table;
    }
    let refusal = match verdict {
        Verdict::Pass => None,
        Verdict::Block => Some(legacy_refusal.unwrap_or(Refusal::Forbidden)),
    };
    Outcome {
        verdict,
        decided_by,
        refusal,
        aborted_by: None,
    }
}

/// relay_http.c `relay_match_actions`, the part applied at once.
fn apply(rule: &Rule, state: &mut SessionState, table: &mut Option<TableId>) {
    if let Some(t) = rule.table {
        *table = Some(t);
        state.backend_cleared = true;
    }
    match rule.tag {
        Some(SetOrClear::Set(t)) => state.tag = Some(t),
        Some(SetOrClear::Clear) => state.tag = None,
        None => {}
    }
    match rule.label {
        Some(SetOrClear::Set(l)) => state.label = Some(l),
        Some(SetOrClear::Clear) => state.label = None,
        None => {}
    }
}

// ---------------------------------------------------------------------------------------
// Skip steps

/// The attributes relayd keeps skip steps for (`RULE_SKIP_*`; the protocol one never
/// differs between the rules of one protocol).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SkipAttr {
    Dir,
    Af,
    Src,
    Dst,
    Method,
}

impl SkipAttr {
    pub(crate) const JUMPING: [SkipAttr; 4] =
        [SkipAttr::Af, SkipAttr::Src, SkipAttr::Dst, SkipAttr::Method];

    pub(crate) fn index(self) -> usize {
        match self {
            SkipAttr::Dir => 0,
            SkipAttr::Af => 1,
            SkipAttr::Src => 2,
            SkipAttr::Dst => 3,
            SkipAttr::Method => 4,
        }
    }
}

fn family_of(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::Inet,
        IpAddr::V6(_) => Family::Inet6,
    }
}

/// `RELAY_AF_NEQ`: different families, neither unspecified.
fn af_neq(a: Option<Family>, b: Option<Family>) -> bool {
    matches!((a, b), (Some(x), Some(y)) if x != y)
}

/// A prefix's bits as a number, with its family and clamped length.
fn prefix_bits(addr: IpAddr) -> (Family, u128, u8) {
    match addr {
        IpAddr::V4(a) => (Family::Inet, u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (Family::Inet6, u128::from(a), 128),
    }
}

/// The top `len` bits of a `width`-bit address (relayd.c `prefixlen2mask[6]`, which clamp
/// the length to the width).
pub(crate) fn mask(width: u8, len: u8) -> u128 {
    let width = u32::from(width.min(128));
    let len = u32::from(len).min(width);
    if len == 0 {
        return 0;
    }
    let all = if width == 128 {
        u128::MAX
    } else {
        (1u128 << width) - 1
    };
    // width - len < 128 because len >= 1.
    let low = (1u128 << (width - len)) - 1;
    all & !low
}

/// relayd.c `sockaddr_cmp(a, b, prefixlen) == 0`: unspecified matches anything,
/// otherwise the families must agree and the first `prefixlen` bits.
pub(crate) fn addr_eq(a: Option<IpAddr>, b: Option<IpAddr>, prefixlen: u8) -> bool {
    let (Some(a), Some(b)) = (a, b) else {
        return true;
    };
    let (fa, va, width) = prefix_bits(a);
    let (fb, vb, _) = prefix_bits(b);
    if fa != fb {
        return false;
    }
    let m = mask(width, prefixlen);
    va & m == vb & m
}

/// `RELAY_ADDR_NEQ` between two rules' prefixes (a missing prefix is mask 0, unspecified).
pub(crate) fn rule_addr_neq(a: Option<Prefix>, b: Option<Prefix>) -> bool {
    let ma = a.map_or(0, |p| p.len);
    let mb = b.map_or(0, |p| p.len);
    ma != mb || !addr_eq(a.map(|p| p.addr), b.map(|p| p.addr), ma)
}

/// `RELAY_ADDR_CMP(rule, addr) == 0`.
pub(crate) fn prefix_matches(p: Option<Prefix>, addr: Option<IpAddr>) -> bool {
    match p {
        None => true,
        Some(p) => addr_eq(Some(p.addr), addr, p.len),
    }
}

/// The first of relayd's skip-step checks (`relay_test` order) the rule fails, if any.
fn failed_skip_check<M: Message + ?Sized>(
    rule: &Rule,
    msg: &M,
    state: &SessionState,
) -> Option<SkipAttr> {
    let dir = msg.direction();
    if rule.direction != dir {
        return Some(SkipAttr::Dir);
    }
    let backend = if state.backend_cleared {
        None
    } else {
        msg.backend()
    };
    // cre->ss is the sender of this message; cre->dst->ss the other end.
    let (peer, other) = match dir {
        Direction::Request => (msg.client(), backend),
        Direction::Response => (backend, msg.client()),
    };
    if af_neq(rule.family, peer.map(family_of)) || af_neq(rule.family, other.map(family_of)) {
        return Some(SkipAttr::Af);
    }
    if !prefix_matches(rule.from, peer) {
        return Some(SkipAttr::Src);
    }
    if !prefix_matches(rule.to, msg.local()) {
        return Some(SkipAttr::Dst);
    }
    if let Some(m) = &rule.method {
        if dir == Direction::Response || msg.method() != Some(m.as_bytes()) {
            return Some(SkipAttr::Method);
        }
    }
    None
}

/// Which skip step `relay_calc_skip_steps` sets where `prev` is followed by `cur`: the
/// first attribute of its `if … else if` chain that differs.
pub(crate) fn skip_boundary(prev: &Rule, cur: &Rule) -> Option<SkipAttr> {
    if cur.direction != prev.direction {
        Some(SkipAttr::Dir)
    } else if af_neq(cur.family, prev.family) {
        Some(SkipAttr::Af)
    } else if rule_addr_neq(cur.from, prev.from) {
        Some(SkipAttr::Src)
    } else if rule_addr_neq(cur.to, prev.to) {
        Some(SkipAttr::Dst)
    } else if cur.method != prev.method {
        Some(SkipAttr::Method)
    } else {
        None
    }
}

/// `rule_skip[attr]` of rule `r`: the first later rule where a boundary of `attr` lies,
/// or the end. Scanning forward lazily keeps a whole evaluation linear: the walk
/// continues from where the scan stopped.
fn skip_target(rules: &[Rule], r: usize, attr: SkipAttr) -> usize {
    let mut cur = r + 1;
    while cur < rules.len() {
        if let (Some(prev), Some(c)) = (rules.get(cur - 1), rules.get(cur)) {
            if skip_boundary(prev, c) == Some(attr) {
                return cur;
            }
        }
        cur += 1;
    }
    rules.len()
}

// ---------------------------------------------------------------------------------------
// Entity tests

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TestResult {
    Fail,
    Pass,
    /// Passed, and a legacy `expect` saw its header repeated.
    PassRepeated,
    /// A `url` test could not canonicalise the `Host`.
    BadHost,
}

/// relayd's order of entity tests in `relay_test`.
const ENTITY_ORDER: [Entity; 5] = [
    Entity::Header,
    Entity::Query,
    Entity::Path,
    Entity::Url,
    Entity::Cookie,
];

pub(crate) fn is_legacy_node(rule: &Rule) -> bool {
    matches!(rule.legacy, Some(Legacy::Filter | Legacy::Expect))
}

fn rule_tests<M: Message + ?Sized>(rule: &Rule, msg: &M) -> TestResult {
    let mut repeated = false;
    for entity in ENTITY_ORDER {
        for t in rule.tests.iter().filter(|t| t.entity == entity) {
            match test_result(rule, t, msg) {
                TestResult::Pass => {}
                TestResult::PassRepeated => repeated = true,
                other => return other,
            }
        }
    }
    if repeated {
        TestResult::PassRepeated
    } else {
        TestResult::Pass
    }
}

/// Whether one entity test holds for `msg` in the context of `rule` (its action and
/// legacy kind matter). Shared with `analysis` through [`test_holds`].
fn test_result<M: Message + ?Sized>(rule: &Rule, t: &EntityTest, msg: &M) -> TestResult {
    let legacy = is_legacy_node(rule);
    let is_block = rule.action == Action::Block;
    match &t.value {
        ValueTest::NoneOf(alts) => none_of(t, alts, legacy, is_block, msg),
        ValueTest::Any => entity_test(t, ValueRef::Any, legacy, is_block, msg),
        ValueTest::Matches(p) => entity_test(t, ValueRef::Pattern(p), legacy, is_block, msg),
    }
}

/// Whether test `t` of `rule` holds for `msg` (a url abort counts as "does not hold").
pub fn test_holds<M: Message + ?Sized>(rule: &Rule, t: &EntityTest, msg: &M) -> bool {
    matches!(
        test_result(rule, t, msg),
        TestResult::Pass | TestResult::PassRepeated
    )
}

#[derive(Clone, Copy)]
enum ValueRef<'a> {
    Any,
    Pattern(&'a Pattern),
}

/// `kv_match_val` / `kv_match_key`: a glob with the call site's flags or'ed with the
/// pattern's own case, or a Lua pattern (always case-sensitive).
fn pattern_matches(p: &Pattern, s: &[u8], site_fold: bool) -> bool {
    match p {
        Pattern::Glob { text, case, shape } => {
            let fold = site_fold || *case == Case::Insensitive;
            super::glob::matches(
                text.as_bytes(),
                *shape,
                s,
                if fold {
                    Case::Insensitive
                } else {
                    Case::Sensitive
                },
            )
        }
        Pattern::Lua { text } => lua::is_match(text.as_bytes(), s),
    }
}

fn value_ok(v: ValueRef<'_>, s: &[u8], site_fold: bool) -> bool {
    match v {
        ValueRef::Any => true,
        ValueRef::Pattern(p) => pattern_matches(p, s, site_fold),
    }
}

/// The key a test uses once relayd's defaults are applied: no key at all (`kv_key` NULL,
/// the test holds) or a text/pattern. `rule_add` turns a missing key into `*` for `log`.
#[derive(Clone, Copy)]
pub(crate) enum EffKey<'a> {
    Null,
    Star,
    Pattern(&'a Pattern),
    Digest(DigestAlg, &'a str),
}

pub(crate) fn eff_key(t: &EntityTest) -> EffKey<'_> {
    eff_key_of(&t.key, t.entity, t.option)
}

fn eff_key_of(key: &Key, entity: Entity, option: Option<KeyOption>) -> EffKey<'_> {
    match key {
        Key::Any => {
            // A header test always looks for a header (`*` for `header log`; relayd has no
            // key to look with otherwise and would crash, so "*" is the only meaning).
            if entity == Entity::Header || option == Some(KeyOption::Log) {
                EffKey::Star
            } else {
                EffKey::Null
            }
        }
        Key::Pattern(p) => EffKey::Pattern(p),
        Key::Digest { alg, hex } => EffKey::Digest(*alg, hex),
    }
}

/// A key used as a glob/pattern on a string (`kv_match_key`).
fn key_matches(k: EffKey<'_>, s: &[u8], site_fold: bool) -> bool {
    match k {
        EffKey::Null => true,
        EffKey::Star => fnmatch(b"*", s, Case::Sensitive),
        EffKey::Pattern(p) => pattern_matches(p, s, site_fold),
        // A digest key is a plain string to fnmatch.
        EffKey::Digest(_, hex) => fnmatch(
            hex.as_bytes(),
            s,
            if site_fold {
                Case::Insensitive
            } else {
                Case::Sensitive
            },
        ),
    }
}

/// A key compared literally, ignoring case (`strcasecmp`).
fn key_literal_eq(k: EffKey<'_>, s: &[u8]) -> bool {
    match k {
        EffKey::Null => true,
        EffKey::Star => s == b"*",
        EffKey::Pattern(Pattern::Glob { text, .. }) => eq_ignore_case(text.as_bytes(), s),
        EffKey::Pattern(Pattern::Lua { text }) => lua::is_match(text.as_bytes(), s),
        EffKey::Digest(_, hex) => eq_ignore_case(hex.as_bytes(), s),
    }
}

fn entity_test<M: Message + ?Sized>(
    t: &EntityTest,
    v: ValueRef<'_>,
    legacy: bool,
    is_block: bool,
    msg: &M,
) -> TestResult {
    let ok = |b: bool| {
        if b {
            TestResult::Pass
        } else {
            TestResult::Fail
        }
    };
    match t.entity {
        Entity::Header if legacy => legacy_filter_header(t, v, msg),
        Entity::Header => ok(header_test(t, v, msg)),
        Entity::Cookie => ok(cookie_test(t, v, msg)),
        Entity::Path => ok(path_test(t, v, msg)),
        Entity::Query => ok(query_test(t, v, msg)),
        Entity::Url => url_test(t, legacy, is_block, msg),
    }
}

fn appends(t: &EntityTest) -> bool {
    matches!(t.option, Some(KeyOption::Append | KeyOption::Set))
}

/// How a header key looks headers up (relayd.c `kv_find`).
#[derive(Clone, Copy)]
enum HeaderLookup<'a> {
    Exact(&'a [u8]),
    Glob(&'a [u8]),
    Lua(&'a [u8]),
}

fn header_lookup(k: EffKey<'_>) -> HeaderLookup<'_> {
    match k {
        EffKey::Null | EffKey::Star => HeaderLookup::Glob(b"*"),
        EffKey::Pattern(Pattern::Glob { text, .. }) => {
            if has_wildcards(text) {
                HeaderLookup::Glob(text.as_bytes())
            } else {
                HeaderLookup::Exact(text.as_bytes())
            }
        }
        EffKey::Pattern(Pattern::Lua { text }) => HeaderLookup::Lua(text.as_bytes()),
        EffKey::Digest(_, hex) => HeaderLookup::Exact(hex.as_bytes()),
    }
}

/// The header a key selects, as the index of its first line: exact keys by name ignoring
/// case; glob and Lua keys by scanning the header tree in `strcasecmp` order (only the
/// first line of each name is in the tree, with that line's spelling) and taking the
/// first name that matches. This is what `match` rules' options act on.
pub fn find_header<M: Message + ?Sized>(msg: &M, key: &Key) -> Option<usize> {
    find_header_by(msg, header_lookup(eff_key_of(key, Entity::Header, None)))
}

fn find_header_by<M: Message + ?Sized>(msg: &M, how: HeaderLookup<'_>) -> Option<usize> {
    let n = msg.header_count();
    match how {
        HeaderLookup::Exact(k) => (0..n).find(|&h| eq_ignore_case(msg.header(h).0, k)),
        HeaderLookup::Glob(_) | HeaderLookup::Lua(_) => {
            let mut best: Option<usize> = None;
            for h in 0..n {
                let name = msg.header(h).0;
                if let Some(b) = best {
                    if cmp_ignore_case(name, msg.header(b).0) != Ordering::Less {
                        continue;
                    }
                }
                // Later lines of a repeated header are not in the tree.
                if (0..h).any(|e| eq_ignore_case(msg.header(e).0, name)) {
                    continue;
                }
                let hit = match how {
                    HeaderLookup::Glob(g) => fnmatch(g, name, Case::Insensitive),
                    HeaderLookup::Lua(p) => lua::is_match(p, name),
                    HeaderLookup::Exact(_) => false,
                };
                if hit {
                    best = Some(h);
                }
            }
            best
        }
    }
}

/// relay_http.c `relay_httpheader_test`.
fn header_test<M: Message + ?Sized>(t: &EntityTest, v: ValueRef<'_>, msg: &M) -> bool {
    if appends(t) {
        // "header can be NULL and will be added later"
        return true;
    }
    match find_header_by(msg, header_lookup(eff_key(t))) {
        None => false,
        Some(h) => value_ok(v, msg.header(h).1, false),
    }
}

/// relay_http.c `relay_httpcookie_test` / `relay_lookup_cookie`.
fn cookie_test<M: Message + ?Sized>(t: &EntityTest, v: ValueRef<'_>, msg: &M) -> bool {
    if appends(t) {
        return true;
    }
    let name: &[u8] = match msg.direction() {
        Direction::Request => b"Cookie",
        Direction::Response => b"Set-Cookie",
    };
    let Some(h) = find_header_by(msg, HeaderLookup::Exact(name)) else {
        return false;
    };
    let key = eff_key(t);
    if matches!(key, EffKey::Null) {
        return true;
    }
    any_cookie(msg.header(h).1, |k, val| {
        key_literal_eq(key, k) && value_ok(v, val, true)
    })
}

/// Splits a cookie line exactly like `relay_lookup_cookie` and tells whether `f` holds
/// for some pair.
fn any_cookie(line: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> bool) -> bool {
    let mut rest = Some(line);
    while let Some(mut cur) = rest {
        if cur.is_empty() {
            break;
        }
        // One leading space is skipped.
        if cur.first() == Some(&b' ') {
            cur = cur.get(1..).unwrap_or(&[]);
        }
        let seg = match cur.iter().position(|&b| b == b';') {
            Some(k) => {
                rest = cur.get(k + 1..);
                cur.get(..k).unwrap_or(&[])
            }
            None => {
                rest = None;
                cur
            }
        };
        // RFC 2965 attributes ($Path, $Domain, $Port) are skipped.
        if seg.first() == Some(&b'$') {
            continue;
        }
        let Some(eq) = seg.iter().position(|&b| b == b'=') else {
            continue;
        };
        let key = seg.get(..eq).unwrap_or(&[]);
        let mut val = seg.get(eq + 1..).unwrap_or(&[]);
        if val.first() == Some(&b'"') {
            val = val.get(1..).unwrap_or(&[]);
        }
        if val.last() == Some(&b'"') {
            val = val.get(..val.len() - 1).unwrap_or(&[]);
        }
        if f(key, val) {
            return true;
        }
    }
    false
}

/// relay_http.c `relay_httppath_test`.
fn path_test<M: Message + ?Sized>(t: &EntityTest, v: ValueRef<'_>, msg: &M) -> bool {
    if msg.direction() == Direction::Response {
        return true;
    }
    let key = eff_key(t);
    if matches!(key, EffKey::Null) {
        return true;
    }
    let path = msg.path().unwrap_or(b"");
    if !key_matches(key, path, false) {
        return false;
    }
    if t.option.is_none() {
        // The value is matched against the query, folded.
        let query = msg.query().unwrap_or(b"");
        if !value_ok(v, query, true) {
            return false;
        }
    }
    true
}

/// relay_http.c `relay_httpquery_test` / `relay_lookup_query`: the first `k=v` pair whose
/// key and value both match.
fn query_test<M: Message + ?Sized>(t: &EntityTest, v: ValueRef<'_>, msg: &M) -> bool {
    if msg.direction() == Direction::Response {
        return true;
    }
    let key = eff_key(t);
    if matches!(key, EffKey::Null) {
        return true;
    }
    let Some(query) = msg.query() else {
        return false;
    };
    query_pairs(query).any(|(k, val)| key_matches(key, k, false) && value_ok(v, val, false))
}

/// The `k=v` pairs of a query string, split like `relay_lookup_query` (pieces without
/// `=` are skipped; an empty remainder ends the walk).
pub fn query_pairs(query: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = Some(query);
    std::iter::from_fn(move || loop {
        let cur = rest?;
        if cur.is_empty() {
            return None;
        }
        let seg = match cur.iter().position(|&b| b == b'&') {
            Some(k) => {
                rest = cur.get(k + 1..);
                cur.get(..k).unwrap_or(&[])
            }
            None => {
                rest = None;
                cur
            }
        };
        if let Some(eq) = seg.iter().position(|&b| b == b'=') {
            return Some((
                seg.get(..eq).unwrap_or(&[]),
                seg.get(eq + 1..).unwrap_or(&[]),
            ));
        }
    })
}

/// relay_http.c `relay_httpurl_test` / `relay_lookup_url`.
fn url_test<M: Message + ?Sized>(
    t: &EntityTest,
    legacy: bool,
    is_block: bool,
    msg: &M,
) -> TestResult {
    if msg.direction() == Direction::Response {
        return TestResult::Pass;
    }
    let key = eff_key(t);
    if matches!(key, EffKey::Null) {
        return TestResult::Pass;
    }
    let Some(h) = find_header_by(msg, HeaderLookup::Exact(b"Host")) else {
        // Current relayd: "a request without Host matches every url rule". Legacy nodes
        // were looked up from the Host line, so without one they never ran.
        return if legacy {
            TestResult::Fail
        } else {
            TestResult::Pass
        };
    };
    let path = msg.path().unwrap_or(b"");
    if !legacy && !is_block && t.option == Some(KeyOption::Log) && key_matches(key, path, true) {
        // "match url only for logging"
        return TestResult::Pass;
    }
    let Some(host) = canonicalize_host(msg.header(h).1) else {
        return TestResult::BadHost;
    };
    let hit = for_each_candidate(&host, path, msg.query(), |c| match key {
        EffKey::Null => true,
        EffKey::Star => c.eq_ignore_case(b"*"),
        EffKey::Pattern(Pattern::Glob { text, .. }) => c.eq_ignore_case(text.as_bytes()),
        EffKey::Pattern(Pattern::Lua { text }) => {
            matches!(lua::find_in(text.as_bytes(), c), Ok(true))
        }
        EffKey::Digest(alg, hex) => {
            let (buf, len) = c.digest_hex(alg);
            eq_ignore_case(buf.get(..len).unwrap_or(&[]), hex.as_bytes())
        }
    });
    if hit {
        TestResult::Pass
    } else {
        TestResult::Fail
    }
}

/// The values of every line of the header named (literally, ignoring case) by a legacy
/// node's key.
fn legacy_lines<'m, M: Message + ?Sized>(
    t: &'m EntityTest,
    msg: &'m M,
) -> impl Iterator<Item = &'m [u8]> + 'm {
    let key: &[u8] = match &t.key {
        Key::Any => b"*",
        Key::Pattern(Pattern::Glob { text, .. } | Pattern::Lua { text }) => text.as_bytes(),
        Key::Digest { hex, .. } => hex.as_bytes(),
    };
    (0..msg.header_count()).filter_map(move |h| {
        let (name, value) = msg.header(h);
        eq_ignore_case(name, key).then_some(value)
    })
}

/// A legacy `filter` node on a header: some line matches, or the header is repeated.
fn legacy_filter_header<M: Message + ?Sized>(
    t: &EntityTest,
    v: ValueRef<'_>,
    msg: &M,
) -> TestResult {
    let mut count = 0usize;
    for value in legacy_lines(t, msg) {
        if value_ok(v, value, false) {
            return TestResult::Pass;
        }
        count += 1;
    }
    if count >= 2 {
        TestResult::Pass
    } else {
        TestResult::Fail
    }
}

/// `ValueTest::NoneOf`, legacy `expect` alternatives: holds (the node refuses) when the
/// entity is missing or no alternative matched.
fn none_of<M: Message + ?Sized>(
    t: &EntityTest,
    alts: &[Pattern],
    legacy: bool,
    is_block: bool,
    msg: &M,
) -> TestResult {
    if t.entity == Entity::Header {
        // relay_handle_http's per-key counter: 0 = not seen, 1 = seen without match,
        // 2 = matched (or seen twice); a line arriving when it is above 1 is a repeat.
        let mut counter = 0u32;
        for value in legacy_lines(t, msg) {
            if counter > 1 {
                return TestResult::PassRepeated;
            }
            if alts.iter().any(|a| pattern_matches(a, value, false)) {
                counter = 1;
            }
            counter += 1;
        }
        return if counter > 1 {
            TestResult::Fail
        } else {
            TestResult::Pass
        };
    }
    for a in alts {
        match entity_test(t, ValueRef::Pattern(a), legacy, is_block, msg) {
            TestResult::Fail => {}
            TestResult::BadHost => return TestResult::BadHost,
            TestResult::Pass | TestResult::PassRepeated => return TestResult::Fail,
        }
    }
    TestResult::Pass
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn glob(s: &str) -> Pattern {
        Pattern::glob(s, Case::Sensitive)
    }

    fn rule(action: Action) -> Rule {
        Rule {
            action,
            direction: Direction::Request,
            quick: false,
            family: None,
            from: None,
            to: None,
            method: None,
            tests: Vec::new(),
            tagged: None,
            tag: None,
            label: None,
            table: None,
            strip: None,
            legacy: None,
        }
    }

    fn test(entity: Entity, key: Key, value: ValueTest) -> EntityTest {
        EntityTest {
            entity,
            option: None,
            key,
            value,
            write: None,
        }
    }

    fn header(k: &str, v: Option<&str>) -> EntityTest {
        test(
            Entity::Header,
            Key::Pattern(glob(k)),
            v.map_or(ValueTest::Any, |v| ValueTest::Matches(glob(v))),
        )
    }

    fn run(rules: &[Rule], msg: &OwnedMessage) -> (Outcome, Vec<usize>, SessionState) {
        let mut st = SessionState::default();
        let mut q = Vec::new();
        let o = evaluate(rules, msg, &mut st, &mut q);
        (o, q, st)
    }

    fn get(path: &str) -> OwnedMessage {
        let mut m = OwnedMessage::request("GET", path);
        m.client = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        m.local = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        m
    }

    #[test]
    fn default_pass_and_last_match_wins() {
        let (o, _, _) = run(&[], &get("/"));
        assert_eq!(o.verdict, Verdict::Pass);
        assert_eq!(o.decided_by, None);

        let rules = vec![rule(Action::Block), rule(Action::Pass)];
        let (o, _, _) = run(&rules, &get("/"));
        assert_eq!((o.verdict, o.decided_by), (Verdict::Pass, Some(1)));

        let mut b = rule(Action::Block);
        b.quick = true;
        let rules = vec![b, rule(Action::Pass)];
        let (o, _, _) = run(&rules, &get("/"));
        assert_eq!((o.verdict, o.decided_by), (Verdict::Block, Some(0)));
        assert_eq!(o.refusal, Some(Refusal::Forbidden));
    }

    #[test]
    fn match_tags_are_visible_pass_tags_are_not() {
        let mut m = rule(Action::Match);
        m.tag = Some(SetOrClear::Set(7));
        let mut b = rule(Action::Block);
        b.tagged = Some(7);
        let (o, q, st) = run(&[m, b], &get("/"));
        assert_eq!(o.verdict, Verdict::Block);
        assert_eq!(q, vec![0]);
        assert_eq!(st.tag, Some(7));

        // A pass rule's tag is applied only after the scan.
        let mut p = rule(Action::Pass);
        p.tag = Some(SetOrClear::Set(7));
        let mut b = rule(Action::Block);
        b.tagged = Some(7);
        b.quick = true;
        let rules = vec![p, b];
        let (o, _, st) = run(&rules, &get("/"));
        assert_eq!((o.verdict, o.decided_by), (Verdict::Pass, Some(0)));
        assert_eq!(st.tag, Some(7));
        // ... but it is sticky: the next message of the session sees it.
        let mut st2 = st;
        let mut q = Vec::new();
        let o = evaluate(&rules, &get("/"), &mut st2, &mut q);
        assert_eq!((o.verdict, o.decided_by), (Verdict::Block, Some(1)));
    }

    #[test]
    fn header_semantics() {
        let msg = get("/")
            .with_header("X-B", "second")
            .with_header("x-a", "First")
            .with_header("X-A", "dup");
        let mut r = rule(Action::Block);
        r.tests = vec![header("X-A", Some("First"))];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        // Only the first line of a repeated header is looked at.
        r.tests = vec![header("X-A", Some("dup"))];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        // Values are case-sensitive.
        r.tests = vec![header("X-A", Some("first"))];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        // A glob key takes the first header in sorted order: X-A, not X-B.
        r.tests = vec![header("X-*", Some("second"))];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        r.tests = vec![header("X-*", Some("First"))];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        assert_eq!(find_header(&msg, &Key::Pattern(glob("x-?"))), Some(1));
        // Missing header fails, append/set match anyway.
        r.tests = vec![header("X-None", None)];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        r.tests[0].option = Some(KeyOption::Set);
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
    }

    #[test]
    fn cookie_path_query_semantics() {
        let msg = get("/Images/a.png?Size=Big&x=1")
            .with_header("Cookie", "$Version=1; SessID=\"AbC\"; other=2");
        let mut r = rule(Action::Block);
        // Cookie names ignore case, values are folded globs.
        r.tests = vec![test(
            Entity::Cookie,
            Key::Pattern(glob("sessid")),
            ValueTest::Matches(glob("abc")),
        )];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        // Cookie keys are never globs.
        r.tests[0].key = Key::Pattern(glob("sess*"));
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        // Path key: case-sensitive glob; value: folded glob on the query.
        r.tests = vec![test(
            Entity::Path,
            Key::Pattern(glob("/Images/*")),
            ValueTest::Matches(glob("size=big*")),
        )];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        r.tests[0].key = Key::Pattern(glob("/images/*"));
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        // With an option the value is not tested.
        r.tests[0].key = Key::Pattern(glob("/Images/*"));
        r.tests[0].value = ValueTest::Matches(glob("nomatch"));
        r.tests[0].option = Some(KeyOption::Hash);
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        // Query: some pair matches key and value, case-sensitively.
        r.tests = vec![test(
            Entity::Query,
            Key::Pattern(glob("x")),
            ValueTest::Matches(glob("1")),
        )];
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        r.tests[0].key = Key::Pattern(glob("size"));
        r.tests[0].value = ValueTest::Any;
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        let pairs: Vec<_> = query_pairs(b"a=1&&b&c=&=d").collect();
        assert_eq!(
            pairs,
            vec![
                (&b"a"[..], &b"1"[..]),
                (&b"c"[..], &b""[..]),
                (&b""[..], &b"d"[..])
            ]
        );
    }

    #[test]
    fn url_semantics() {
        let mut r = rule(Action::Block);
        r.tests = vec![test(
            Entity::Url,
            Key::Pattern(glob("example.com/private/")),
            ValueTest::Any,
        )];
        let msg = get("/private/x.html").with_header("Host", "WWW.Example.com");
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        let msg = get("/public/x.html").with_header("Host", "www.example.com");
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        // No Host: every url rule matches.
        assert_eq!(run(&[r.clone()], &get("/public")).0.verdict, Verdict::Block);
        // Url keys are literal, not globs.
        r.tests[0].key = Key::Pattern(glob("*.com/private/"));
        let msg = get("/private/x").with_header("Host", "example.com");
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Pass);
        // Digests.
        let hex = super::super::url::digest_hex(DigestAlg::Sha1, b"example.com/private/");
        r.tests[0].key = Key::Digest {
            alg: DigestAlg::Sha1,
            hex: hex.to_uppercase(),
        };
        assert_eq!(run(&[r.clone()], &msg).0.verdict, Verdict::Block);
        // A Host relayd cannot canonicalise aborts with 400.
        let bad = get("/").with_header("Host", "...");
        let (o, q, _) = run(&[rule(Action::Match), r.clone()], &bad);
        assert_eq!(o.refusal, Some(Refusal::BadRequest));
        assert_eq!(o.aborted_by, Some(1));
        assert!(q.is_empty());
    }

    #[test]
    fn legacy_filter_and_expect() {
        // filter "*evil*" from "User-Agent": folded, any line, and repeated lines refuse.
        let mut f = rule(Action::Block);
        f.quick = true;
        f.legacy = Some(Legacy::Filter);
        f.tests = vec![test(
            Entity::Header,
            Key::Pattern(glob("User-Agent")),
            ValueTest::Matches(Pattern::glob("*evil*", Case::Insensitive)),
        )];
        let ok = get("/").with_header("user-agent", "good");
        assert_eq!(run(&[f.clone()], &ok).0.verdict, Verdict::Pass);
        let evil = get("/").with_header("User-Agent", "EVILbot");
        let o = run(&[f.clone()], &evil).0;
        assert_eq!(o.refusal, Some(Refusal::LegacyRejecting));
        let twice = ok.clone().with_header("User-Agent", "good too");
        assert_eq!(run(&[f], &twice).0.refusal, Some(Refusal::LegacyRejecting));

        // expect "a*" from "X", expect "b*" from "X": OR'ed.
        let mut e = rule(Action::Block);
        e.quick = true;
        e.legacy = Some(Legacy::Expect);
        let alt = |s: &str| Pattern::glob(s, Case::Insensitive);
        e.tests = vec![test(
            Entity::Header,
            Key::Pattern(glob("X")),
            ValueTest::NoneOf(vec![alt("a*"), alt("b*")]),
        )];
        let r = |m: &OwnedMessage| run(std::slice::from_ref(&e), m).0.refusal;
        assert_eq!(r(&get("/")), Some(Refusal::LegacyIncomplete));
        assert_eq!(r(&get("/").with_header("X", "Bee")), None);
        assert_eq!(r(&get("/").with_header("X", "alpha")), None);
        assert_eq!(
            r(&get("/").with_header("X", "zulu")),
            Some(Refusal::LegacyIncomplete)
        );
        assert_eq!(
            r(&get("/").with_header("X", "alpha").with_header("X", "zulu")),
            Some(Refusal::LegacyRepeatedHeader)
        );
        // relayd's counter lets two non-matching lines through.
        assert_eq!(
            r(&get("/").with_header("X", "y").with_header("X", "z")),
            None
        );
    }

    #[test]
    fn addresses_and_skip_steps() {
        let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
        let mut blk = rule(Action::Block);
        blk.from = Some(Prefix {
            addr: v4(10, 0, 0, 0),
            len: 8,
        });
        let (o, _, _) = run(&[blk.clone()], &get("/"));
        assert_eq!(o.verdict, Verdict::Block);
        let mut other = get("/");
        other.client = Some(v4(192, 168, 0, 1));
        assert_eq!(run(&[blk.clone()], &other).0.verdict, Verdict::Pass);

        // `pass inet6` then a family-less block: an IPv4 client fails the af check at
        // rule 0 and relayd's skip step jumps past rule 1 (RELAY_AF_NEQ treats the
        // missing family as equal), so the block never runs.
        let mut p6 = rule(Action::Pass);
        p6.family = Some(Family::Inet6);
        let rules = vec![p6, rule(Action::Block)];
        assert_eq!(run(&rules, &get("/")).0.verdict, Verdict::Pass);

        // The else-if chain: a `from` change hidden behind a direction change.
        let mut r0 = rule(Action::Match);
        r0.from = Some(Prefix {
            addr: v4(172, 16, 0, 0),
            len: 12,
        });
        let mut r1 = rule(Action::Match);
        r1.direction = Direction::Response;
        let mut r2 = rule(Action::Block);
        r2.tests = vec![];
        let mut r3 = rule(Action::Pass);
        r3.from = Some(Prefix {
            addr: v4(192, 168, 0, 0),
            len: 16,
        });
        let rules = vec![r0, r1, r2, r3];
        // Client 10.0.0.1 fails rule 0's from: rule_skip[SRC] of rule 0 is rule 3.
        assert_eq!(run(&rules, &get("/")).0.verdict, Verdict::Pass);
        assert_eq!(run(&rules, &get("/")).0.decided_by, None);

        // A table-selecting match rule clears the backend address.
        let mut sel = rule(Action::Match);
        sel.table = Some(3);
        let mut fam = rule(Action::Block);
        fam.family = Some(Family::Inet);
        let mut m = get("/");
        m.backend = Some("2001:db8::1".parse().unwrap());
        assert_eq!(run(&[fam.clone()], &m).0.verdict, Verdict::Pass);
        let (o, q, st) = run(&[sel, fam], &m);
        assert_eq!((o.verdict, q), (Verdict::Block, vec![0]));
        assert_eq!(st.table, Some(3));
        assert!(st.backend_cleared);
    }

    #[test]
    fn method_never_matches_responses() {
        let mut r = rule(Action::Block);
        r.method = Some("GET".into());
        assert_eq!(run(&[r.clone()], &get("/")).0.verdict, Verdict::Block);
        let mut post = get("/");
        post.method = Some("POST".into());
        assert_eq!(run(&[r.clone()], &post).0.verdict, Verdict::Pass);
        r.direction = Direction::Response;
        assert_eq!(
            run(&[r], &OwnedMessage::response()).0.verdict,
            Verdict::Pass
        );
    }

    #[test]
    fn masks() {
        assert_eq!(mask(32, 8), 0xff00_0000);
        assert_eq!(mask(32, 0), 0);
        assert_eq!(mask(32, 40), 0xffff_ffff);
        assert_eq!(mask(128, 128), u128::MAX);
        assert_eq!(mask(128, 1), 1u128 << 127);
    }
}
