//! Dead filter rules: rules that can never give the verdict nor have their options
//! applied, for the compiler's checks.
//!
//! [`analyze`] reasons about exactly [`super::eval::evaluate`], including its relayd
//! quirks (skip steps, the backend address a table selection clears, sticky tags), and
//! only claims what holds for every message and session:
//!
//! * [`FindingKind::Unsatisfiable`]: the rule never matches (a `tagged` tag no rule sets,
//!   a glob no string matches, a header name no header can have, a malformed Lua pattern,
//!   `method` on a response rule);
//! * [`FindingKind::ShadowedBy`]: an earlier `quick` pass/block rule matches every message
//!   this one matches, so evaluation has stopped before reaching it;
//! * [`FindingKind::OverriddenBy`]: a non-quick pass/block rule after which a later
//!   pass/block rule matches every message it matches, so it is never the last match.
//!
//! "Matches every message" is decided test by test with the matchers `eval` uses
//! (`glob::fnmatch`, `lua`), and only when nothing between the two rules can change what
//! the later one sees: no `match` rule changing the tag its `tagged` reads, no table
//! selection clearing an address it checks, no skip step that can jump over the rule in
//! between (relayd's skip steps may jump over rules, see `eval`). The analysis is
//! incomplete on purpose — a rule it does not flag may still be dead — but never wrong.
//!
//! Cost: candidates are found through an index: a dominating rule is filed under its
//! first non-trivial entity test — (direction, entity, normalised key, value class), the
//! key alone, the entity alone — or, without tests, under its `from` prefix. A rule looks
//! up the entries that can hold a rule dominating it and compares itself with at most a
//! few (4–16) nearest rules of each, so the pass is O(n log n) whatever the rules; the
//! price is missing dominating rules that sit far away in a crowded entry.
//!
//! A dead rule whose `url` test comes before a failing test may still end evaluation with
//! 400 when the request's `Host` is invalid (`relay_test` runs header, query, path, url,
//! cookie in that order); it still never decides.

use super::ctype::to_lower;
use super::eval::{eff_key, is_legacy_node, prefix_matches, skip_boundary, EffKey, SkipAttr};
use super::glob::{can_match, can_match_where, glob_matches_literal, has_wildcards, literal};
use super::lua::{self, LuaError};
use super::{
    Action, Case, Direction, Entity, EntityTest, Family, KeyOption, Pattern, Prefix, Rule,
    SetOrClear, TagId, ValueTest,
};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::net::IpAddr;

/// One dead rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Finding {
    /// Index of the dead rule.
    pub rule: usize,
    pub kind: FindingKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FindingKind {
    /// Rule `rule` (earlier, `quick`, pass or block) matches every message this one
    /// matches, so evaluation never gets here with a match.
    ShadowedBy { rule: usize },
    /// This non-quick pass/block rule is always followed by a match of the later
    /// pass/block rule `rule`, so it is never the verdict.
    OverriddenBy { rule: usize },
    /// The rule can never match.
    Unsatisfiable { reason: Unsatisfiable },
}

/// Which part of an entity test a reason is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Part {
    Key,
    Value,
}

/// Why a rule can never match. `test` indexes `Rule::tests`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Unsatisfiable {
    /// `tagged` names a tag no rule of the protocol sets.
    TagNeverSet { tag: TagId },
    /// `method` on a response rule (relay_test never matches a method on responses).
    MethodOnResponse,
    /// A glob that matches no string (e.g. the empty range `[z-a]`).
    GlobMatchesNothing { test: usize, part: Part },
    /// A header name that no header can have: only RFC 9110 token characters are
    /// accepted in names (relay_http.c `relay_http_header_name_valid`).
    ImpossibleHeaderName { test: usize },
    /// A Lua pattern with an error it meets on every way to a match.
    BadPattern {
        test: usize,
        part: Part,
        error: LuaError,
    },
}

impl fmt::Display for Unsatisfiable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |p: &Part| match p {
            Part::Key => "key",
            Part::Value => "value",
        };
        match self {
            Unsatisfiable::TagNeverSet { .. } => f.write_str("no rule sets the tag it tests"),
            Unsatisfiable::MethodOnResponse => f.write_str("responses have no method"),
            Unsatisfiable::GlobMatchesNothing { part: p, .. } => {
                write!(f, "the {} glob matches nothing", part(p))
            }
            Unsatisfiable::ImpossibleHeaderName { .. } => {
                f.write_str("no header name can match (names are RFC 9110 tokens)")
            }
            Unsatisfiable::BadPattern { part: p, error, .. } => {
                write!(f, "the {} pattern is invalid: {}", part(p), error)
            }
        }
    }
}

/// Finds rules that never decide and never apply, sorted by rule index, at most one
/// finding per rule (unsatisfiable before shadowed before overridden).
pub fn analyze(rules: &[Rule]) -> Vec<Finding> {
    let n = rules.len();
    let mut found: Vec<Option<FindingKind>> = vec![None; n];

    let set_tags: HashSet<TagId> = rules
        .iter()
        .filter_map(|r| match r.tag {
            Some(SetOrClear::Set(t)) => Some(t),
            _ => None,
        })
        .collect();
    for (i, r) in rules.iter().enumerate() {
        if let Some(reason) = unsatisfiable(r, &set_tags) {
            if let Some(slot) = found.get_mut(i) {
                *slot = Some(FindingKind::Unsatisfiable { reason });
            }
        }
    }

    let ctx = Ctx::new(rules);
    let mut keys: Vec<(Slot, usize)> = Vec::new();

    // Shadowing: sweep forward, indexing earlier quick pass/block rules.
    let mut index = Index::new(3 * n);
    for (i, ri) in rules.iter().enumerate() {
        if found.get(i).is_some_and(Option::is_none) {
            index.lookups(ri, &mut keys);
            let hit = keys
                .iter()
                .find_map(|&(k, cap)| index.nearest(k, cap).find(|&j| ctx.shadows(j, i)));
            if let (Some(j), Some(slot)) = (hit, found.get_mut(i)) {
                *slot = Some(FindingKind::ShadowedBy { rule: j });
            }
        }
        if ri.quick && ri.action != Action::Match {
            index.insert(ri, ctx.trivial.get(i).copied().unwrap_or(0), i);
        }
    }

    // Overriding: sweep backward, indexing later pass/block rules.
    let mut index = Index::new(3 * n);
    for (i, ri) in rules.iter().enumerate().rev() {
        let verdict_rule = ri.action != Action::Match;
        if verdict_rule && !ri.quick && found.get(i).is_some_and(Option::is_none) {
            index.lookups(ri, &mut keys);
            let hit = keys
                .iter()
                .find_map(|&(k, cap)| index.nearest(k, cap).find(|&j| ctx.overrides(j, i)));
            if let (Some(j), Some(slot)) = (hit, found.get_mut(i)) {
                *slot = Some(FindingKind::OverriddenBy { rule: j });
            }
        }
        if verdict_rule {
            index.insert(ri, ctx.trivial.get(i).copied().unwrap_or(0), i);
        }
    }

    found
        .into_iter()
        .enumerate()
        .filter_map(|(rule, kind)| kind.map(|kind| Finding { rule, kind }))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Unsatisfiable rules

/// relay_http.c `relay_http_header_name_valid`: RFC 9110 token characters.
pub fn is_header_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn unsatisfiable(rule: &Rule, set_tags: &HashSet<TagId>) -> Option<Unsatisfiable> {
    if let Some(t) = rule.tagged {
        if !set_tags.contains(&t) {
            return Some(Unsatisfiable::TagNeverSet { tag: t });
        }
    }
    if rule.method.is_some() && rule.direction == Direction::Response {
        return Some(Unsatisfiable::MethodOnResponse);
    }
    if is_legacy_node(rule) {
        // Legacy matching is opaque here.
        return None;
    }
    let is_block = rule.action == Action::Block;
    for (ti, t) in rule.tests.iter().enumerate() {
        if always_true(t, rule.direction, is_block) || matches!(t.value, ValueTest::NoneOf(_)) {
            continue;
        }
        if let Some(r) = unsatisfiable_test(t, ti, rule.direction) {
            return Some(r);
        }
    }
    None
}

fn glob_case(fold: bool, case: Case) -> Case {
    if fold || case == Case::Insensitive {
        Case::Insensitive
    } else {
        Case::Sensitive
    }
}

/// A pattern that can never match, given the flags its call site adds.
fn dead_pattern(p: &Pattern, site_fold: bool, test: usize, part: Part) -> Option<Unsatisfiable> {
    match p {
        Pattern::Glob { text, case, .. } => {
            (!can_match(text.as_bytes(), glob_case(site_fold, *case)))
                .then_some(Unsatisfiable::GlobMatchesNothing { test, part })
        }
        Pattern::Lua { text } => lua::validate(text.as_bytes())
            .err()
            .map(|error| Unsatisfiable::BadPattern { test, part, error }),
    }
}

fn dead_value(v: &ValueTest, site_fold: bool, test: usize) -> Option<Unsatisfiable> {
    match v {
        ValueTest::Matches(p) => dead_pattern(p, site_fold, test, Part::Value),
        _ => None,
    }
}

/// Tests that cannot hold (non-legacy, not trivially true); mirrors `eval`'s testers.
fn unsatisfiable_test(t: &EntityTest, ti: usize, dir: Direction) -> Option<Unsatisfiable> {
    let key = eff_key(t);
    match t.entity {
        Entity::Header => {
            match key {
                EffKey::Pattern(Pattern::Glob { text, .. }) => {
                    let g = text.as_bytes();
                    if has_wildcards(text) {
                        if !can_match(g, Case::Insensitive) {
                            return Some(Unsatisfiable::GlobMatchesNothing {
                                test: ti,
                                part: Part::Key,
                            });
                        }
                        if !can_match_where(g, Case::Insensitive, is_header_name_char) {
                            return Some(Unsatisfiable::ImpossibleHeaderName { test: ti });
                        }
                    } else if !g.iter().all(|&b| is_header_name_char(b)) {
                        return Some(Unsatisfiable::ImpossibleHeaderName { test: ti });
                    }
                }
                EffKey::Pattern(p @ Pattern::Lua { .. }) => {
                    if let Some(r) = dead_pattern(p, true, ti, Part::Key) {
                        return Some(r);
                    }
                }
                _ => {}
            }
            dead_value(&t.value, false, ti)
        }
        Entity::Cookie => {
            if matches!(key, EffKey::Null) {
                return None;
            }
            if let EffKey::Pattern(p @ Pattern::Lua { .. }) = key {
                if let Some(r) = dead_pattern(p, false, ti, Part::Key) {
                    return Some(r);
                }
            }
            dead_value(&t.value, true, ti)
        }
        Entity::Path | Entity::Query => {
            if dir == Direction::Response {
                return None;
            }
            if let EffKey::Pattern(p) = key {
                if let Some(r) = dead_pattern(p, false, ti, Part::Key) {
                    return Some(r);
                }
            }
            match t.entity {
                Entity::Path if t.option.is_none() => dead_value(&t.value, true, ti),
                Entity::Query => dead_value(&t.value, false, ti),
                _ => None,
            }
        }
        // Without a Host every url rule matches.
        Entity::Url => None,
    }
}

// ---------------------------------------------------------------------------------------
// Subsumption of entity tests (non-legacy semantics of `eval`)

fn appends(t: &EntityTest) -> bool {
    matches!(t.option, Some(KeyOption::Append | KeyOption::Set))
}

fn pattern_trivial(p: &Pattern) -> bool {
    match p {
        Pattern::Glob { text, .. } => super::glob::matches_everything(text.as_bytes()),
        Pattern::Lua { text } => text.is_empty(),
    }
}

fn value_trivial(v: &ValueTest) -> bool {
    match v {
        ValueTest::Any => true,
        ValueTest::Matches(p) => pattern_trivial(p),
        ValueTest::NoneOf(_) => false,
    }
}

fn key_trivial(k: EffKey<'_>) -> bool {
    match k {
        EffKey::Null | EffKey::Star => true,
        EffKey::Pattern(p) => pattern_trivial(p),
        EffKey::Digest(..) => false,
    }
}

/// Bit k set when test k of the rule holds for every message (never for legacy nodes,
/// whose matching is not modelled here; tests past the 64th are never marked).
fn trivial_mask(rule: &Rule) -> u64 {
    if is_legacy_node(rule) {
        return 0;
    }
    let is_block = rule.action == Action::Block;
    rule.tests
        .iter()
        .take(64)
        .enumerate()
        .filter(|(_, t)| always_true(t, rule.direction, is_block))
        .fold(0, |m, (k, _)| m | (1 << k))
}

/// Whether a (non-legacy) test holds for every message of direction `dir`.
fn always_true(t: &EntityTest, dir: Direction, is_block: bool) -> bool {
    if matches!(t.value, ValueTest::NoneOf(_)) {
        return false;
    }
    let key = eff_key(t);
    match t.entity {
        Entity::Header | Entity::Cookie => appends(t),
        _ if dir == Direction::Response => true,
        Entity::Path => {
            matches!(key, EffKey::Null)
                || (key_trivial(key) && (t.option.is_some() || value_trivial(&t.value)))
        }
        Entity::Query => matches!(key, EffKey::Null),
        Entity::Url => {
            matches!(key, EffKey::Null)
                || (!is_block && t.option == Some(KeyOption::Log) && key_trivial(key))
        }
    }
}

/// A pattern as the matcher sees it at one call site.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum View<'a> {
    Glob(&'a [u8], Case),
    Lua(&'a [u8]),
}

fn view(p: &Pattern, site_fold: bool) -> View<'_> {
    match p {
        Pattern::Glob { text, case, .. } => {
            View::Glob(text.as_bytes(), glob_case(site_fold, *case))
        }
        Pattern::Lua { text } => View::Lua(text.as_bytes()),
    }
}

/// A key used through `kv_match_key` (path, query); `None` for no key.
fn key_view(k: EffKey<'_>, site_fold: bool) -> Option<View<'_>> {
    let c = glob_case(site_fold, Case::Sensitive);
    match k {
        EffKey::Null => None,
        EffKey::Star => Some(View::Glob(b"*", c)),
        EffKey::Pattern(p) => Some(view(p, site_fold)),
        EffKey::Digest(_, hex) => Some(View::Glob(hex.as_bytes(), c)),
    }
}

fn view_trivial(v: View<'_>) -> bool {
    match v {
        View::Glob(g, _) => super::glob::matches_everything(g),
        View::Lua(p) => p.is_empty(),
    }
}

/// Every string `a` matches, `b` matches.
fn view_implies(a: View<'_>, b: View<'_>) -> bool {
    if view_trivial(b) || a == b {
        return true;
    }
    match (a, b) {
        (View::Glob(ga, ca), View::Glob(gb, cb)) => match literal(ga) {
            Some(lit) => glob_matches_literal(gb, cb, lit, ca),
            None => false,
        },
        (View::Glob(ga, Case::Sensitive), View::Lua(pb)) => match literal(ga) {
            Some(lit) => lua::is_match(pb, lit),
            None => false,
        },
        _ => false,
    }
}

fn value_implies(vi: &ValueTest, vj: &ValueTest, site_fold: bool) -> bool {
    if value_trivial(vj) {
        return true;
    }
    match (vi, vj) {
        (ValueTest::Matches(a), ValueTest::Matches(b)) => {
            view_implies(view(a, site_fold), view(b, site_fold))
        }
        _ => false,
    }
}

/// How a header test looks its header up.
#[derive(Clone, Copy, PartialEq, Eq)]
enum HLook<'a> {
    Exact(&'a [u8]),
    /// A glob matching every name: the first header, whatever it is.
    Star,
    Glob(&'a [u8]),
    Lua(&'a [u8]),
}

fn hlook(t: &EntityTest) -> HLook<'_> {
    match eff_key(t) {
        EffKey::Null | EffKey::Star => HLook::Star,
        EffKey::Pattern(Pattern::Glob { text, .. }) => {
            let g = text.as_bytes();
            if !has_wildcards(text) {
                HLook::Exact(g)
            } else if super::glob::matches_everything(g) {
                HLook::Star
            } else {
                HLook::Glob(g)
            }
        }
        EffKey::Pattern(Pattern::Lua { text }) => HLook::Lua(text.as_bytes()),
        EffKey::Digest(_, hex) => HLook::Exact(hex.as_bytes()),
    }
}

fn header_implies(ti: &EntityTest, tj: &EntityTest) -> bool {
    if appends(ti) {
        return false;
    }
    let (li, lj) = (hlook(ti), hlook(tj));
    let same = match (li, lj) {
        (HLook::Exact(a), HLook::Exact(b)) => a.eq_ignore_ascii_case(b),
        (a, b) => a == b,
    };
    if same {
        return value_implies(&ti.value, &tj.value, false);
    }
    if !value_trivial(&tj.value) {
        return false;
    }
    // j only needs some header its key finds; i's header is one of them.
    match (li, lj) {
        (_, HLook::Star) => true,
        (HLook::Exact(k), HLook::Glob(g)) => {
            glob_matches_literal(g, Case::Insensitive, k, Case::Insensitive)
        }
        _ => false,
    }
}

/// A cookie key compared with `strcasecmp`, or a Lua key.
fn cookie_key(k: EffKey<'_>) -> Option<View<'_>> {
    match k {
        EffKey::Null => None,
        EffKey::Star => Some(View::Glob(b"*", Case::Insensitive)),
        EffKey::Pattern(Pattern::Glob { text, .. }) => {
            Some(View::Glob(text.as_bytes(), Case::Insensitive))
        }
        EffKey::Pattern(Pattern::Lua { text }) => Some(View::Lua(text.as_bytes())),
        EffKey::Digest(_, hex) => Some(View::Glob(hex.as_bytes(), Case::Insensitive)),
    }
}

fn cookie_implies(ti: &EntityTest, tj: &EntityTest) -> bool {
    if appends(ti) {
        return false;
    }
    let Some(kj) = cookie_key(eff_key(tj)) else {
        // j only needs the Cookie line, which i needs too.
        return true;
    };
    let Some(ki) = cookie_key(eff_key(ti)) else {
        return false;
    };
    let same_key = match (ki, kj) {
        // Literal keys: equal ignoring case.
        (View::Glob(a, _), View::Glob(b, _)) => a.eq_ignore_ascii_case(b),
        (View::Lua(a), View::Lua(b)) => a == b,
        _ => false,
    };
    same_key && value_implies(&ti.value, &tj.value, true)
}

fn path_query_implies(ti: &EntityTest, tj: &EntityTest, path: bool) -> bool {
    let (Some(ki), Some(kj)) = (key_view(eff_key(ti), false), key_view(eff_key(tj), false)) else {
        return false;
    };
    if !view_implies(ki, kj) {
        return false;
    }
    if path {
        // The value is tested (folded, on the query) only without an option.
        if tj.option.is_some() || value_trivial(&tj.value) {
            return true;
        }
        ti.option.is_none() && value_implies(&ti.value, &tj.value, true)
    } else {
        value_implies(&ti.value, &tj.value, false)
    }
}

fn same_match(a: &EntityTest, b: &EntityTest) -> bool {
    a.entity == b.entity && a.option == b.option && a.key == b.key && a.value == b.value
}

/// Every message for which test `ti` of `ri` holds satisfies test `tj` of `rj` (same
/// direction; `tj` is not trivially true, the caller has checked).
fn test_implies(ri: &Rule, ti: &EntityTest, rj: &Rule, tj: &EntityTest) -> bool {
    let (li, lj) = (is_legacy_node(ri), is_legacy_node(rj));
    let (bi, bj) = (ri.action == Action::Block, rj.action == Action::Block);
    if ti.entity != tj.entity || li != lj {
        return false;
    }
    if same_match(ti, tj) && (ti.entity != Entity::Url || bi == bj) {
        return true;
    }
    if li || matches!(ti.value, ValueTest::NoneOf(_)) || matches!(tj.value, ValueTest::NoneOf(_)) {
        return false;
    }
    match ti.entity {
        Entity::Header => header_implies(ti, tj),
        Entity::Cookie => cookie_implies(ti, tj),
        Entity::Path => path_query_implies(ti, tj, true),
        Entity::Query => path_query_implies(ti, tj, false),
        Entity::Url => false,
    }
}

fn width(f: Family) -> u8 {
    match f {
        Family::Inet => 32,
        Family::Inet6 => 128,
    }
}

fn family_of(a: IpAddr) -> Family {
    match a {
        IpAddr::V4(_) => Family::Inet,
        IpAddr::V6(_) => Family::Inet6,
    }
}

/// Every address in `inner` is in `outer`.
fn prefix_within(inner: Prefix, outer: Prefix) -> bool {
    let fam = family_of(inner.addr);
    if fam != family_of(outer.addr) {
        return false;
    }
    let w = width(fam);
    inner.len.min(w) >= outer.len.min(w) && prefix_matches(Some(outer), Some(inner.addr))
}

// ---------------------------------------------------------------------------------------
// Rule-level subsumption and what lies between two rules

struct Ctx<'a> {
    rules: &'a [Rule],
    /// Per rule, bit k set when test k holds for every message (see `trivial_mask`).
    trivial: Vec<u64>,
    /// Per direction, prefix counts of `match` rules that set or clear the tag.
    tag_changers: [Vec<u32>; 2],
    /// Per direction, prefix counts of `match` rules that select a table.
    table_setters: [Vec<u32>; 2],
    /// For rule j: the smallest landing point of a skip step jumping over j from an
    /// earlier rule (`usize::MAX` when none).
    min_land_over: Vec<usize>,
    /// Sparse table of, per rule, the farthest landing point of its skip steps.
    far_jump: Vec<Vec<u32>>,
}

fn dir_index(d: Direction) -> usize {
    match d {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

fn can_fail(rule: &Rule, attr: SkipAttr) -> bool {
    match attr {
        SkipAttr::Dir => false,
        SkipAttr::Af => rule.family.is_some(),
        SkipAttr::Src => rule.from.is_some(),
        SkipAttr::Dst => rule.to.is_some(),
        SkipAttr::Method => rule.method.is_some(),
    }
}

impl<'a> Ctx<'a> {
    fn new(rules: &'a [Rule]) -> Self {
        let n = rules.len();
        let mut tag_changers = [vec![0u32; n + 1], vec![0u32; n + 1]];
        let mut table_setters = [vec![0u32; n + 1], vec![0u32; n + 1]];
        for (k, r) in rules.iter().enumerate() {
            for d in 0..2 {
                let here = usize::from(dir_index(r.direction) == d && r.action == Action::Match);
                let tc = tag_changers[d].get(k).copied().unwrap_or(0)
                    + u32::from(here == 1 && r.tag.is_some());
                let ts = table_setters[d].get(k).copied().unwrap_or(0)
                    + u32::from(here == 1 && r.table.is_some());
                if let Some(s) = tag_changers[d].get_mut(k + 1) {
                    *s = tc;
                }
                if let Some(s) = table_setters[d].get_mut(k + 1) {
                    *s = ts;
                }
            }
        }

        // Skip-step jumps (k, t): rule k can fail attribute a and then lands at t.
        let mut next = [n; 5];
        let mut jumps_from: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut far = vec![0u32; n];
        for r in (0..n).rev() {
            if let Some(rule) = rules.get(r) {
                for attr in SkipAttr::JUMPING {
                    let t = next.get(attr.index()).copied().unwrap_or(n);
                    if can_fail(rule, attr) && t > r + 1 {
                        if let Some(v) = jumps_from.get_mut(r) {
                            v.push(t);
                        }
                        if let Some(f) = far.get_mut(r) {
                            *f = (*f).max(t as u32);
                        }
                    }
                }
            }
            if r >= 1 {
                if let (Some(prev), Some(cur)) = (rules.get(r - 1), rules.get(r)) {
                    if let Some(a) = skip_boundary(prev, cur) {
                        if let Some(slot) = next.get_mut(a.index()) {
                            *slot = r;
                        }
                    }
                }
            }
        }
        let mut min_land_over = vec![usize::MAX; n];
        let mut heap: BinaryHeap<Reverse<usize>> = BinaryHeap::new();
        for j in 0..n {
            if j >= 1 {
                for &t in jumps_from.get(j - 1).map(Vec::as_slice).unwrap_or(&[]) {
                    heap.push(Reverse(t));
                }
            }
            while heap.peek().is_some_and(|Reverse(t)| *t <= j) {
                heap.pop();
            }
            if let (Some(Reverse(t)), Some(slot)) = (heap.peek(), min_land_over.get_mut(j)) {
                *slot = *t;
            }
        }
        let mut far_jump = vec![far];
        let mut span = 1usize;
        while span * 2 <= n {
            let prev = far_jump.last().cloned().unwrap_or_default();
            let level: Vec<u32> = (0..n)
                .map(|x| {
                    let a = prev.get(x).copied().unwrap_or(0);
                    let b = prev.get(x + span).copied().unwrap_or(0);
                    a.max(b)
                })
                .collect();
            far_jump.push(level);
            span *= 2;
        }
        Ctx {
            rules,
            trivial: rules.iter().map(trivial_mask).collect(),
            tag_changers,
            table_setters,
            min_land_over,
            far_jump,
        }
    }

    fn count(v: &[u32], from: usize, to: usize) -> u32 {
        if from >= to {
            return 0;
        }
        v.get(to).copied().unwrap_or(0) - v.get(from).copied().unwrap_or(0)
    }

    /// Match rules strictly between `lo` and `hi` (direction `d`) changing the tag.
    fn tag_changes_between(&self, d: Direction, lo: usize, hi: usize) -> bool {
        Self::count(&self.tag_changers[dir_index(d)], lo + 1, hi) > 0
    }

    fn table_set_between(&self, d: Direction, lo: usize, hi: usize) -> bool {
        Self::count(&self.table_setters[dir_index(d)], lo + 1, hi) > 0
    }

    /// The farthest landing point of skip steps from rules `a..=b`.
    fn far_jump(&self, a: usize, b: usize) -> usize {
        if a > b {
            return 0;
        }
        let len = b - a + 1;
        let level = (usize::BITS - 1 - len.leading_zeros()) as usize;
        let Some(row) = self.far_jump.get(level) else {
            return usize::MAX;
        };
        let x = row.get(a).copied().unwrap_or(u32::MAX);
        let y = row.get(b + 1 - (1 << level)).copied().unwrap_or(u32::MAX);
        x.max(y) as usize
    }

    /// Whether every message matching rule `i` (at its place) also matches rule `j` (at
    /// its place), `shadow` telling whether `j` comes first.
    fn implies(&self, i: usize, j: usize, shadow: bool) -> bool {
        let (Some(ri), Some(rj)) = (self.rules.get(i), self.rules.get(j)) else {
            return false;
        };
        if ri.direction != rj.direction {
            return false;
        }
        let d = ri.direction;
        let (lo, hi) = if j < i { (j, i) } else { (i, j) };
        if let Some(m) = &rj.method {
            if ri.method.as_ref() != Some(m) {
                return false;
            }
        }
        // A table selection between them clears the backend address; that only makes
        // the later rule's address checks easier, which is harmless when j is later.
        let cleared = shadow && self.table_set_between(d, lo, hi);
        if rj.family.is_some() && (ri.family != rj.family || cleared) {
            return false;
        }
        if let Some(pj) = rj.from {
            match ri.from {
                Some(pi) if prefix_within(pi, pj) => {}
                _ => return false,
            }
            if cleared && d == Direction::Response {
                return false;
            }
        }
        if let Some(pj) = rj.to {
            match ri.to {
                Some(pi) if prefix_within(pi, pj) => {}
                _ => return false,
            }
        }
        if let Some(t) = rj.tagged {
            if ri.tagged != Some(t) || self.tag_changes_between(d, lo, hi) {
                return false;
            }
        }
        // Each of j's tests is trivially true or implied by one of i's tests.
        let trivial = self.trivial.get(j).copied().unwrap_or(0);
        rj.tests.iter().enumerate().all(|(k, tj)| {
            (k < 64 && trivial & (1 << k) != 0)
                || ri.tests.iter().any(|ti| test_implies(ri, ti, rj, tj))
        })
    }

    /// Earlier quick pass/block rule `j` stops evaluation before rule `i` can match.
    fn shadows(&self, j: usize, i: usize) -> bool {
        let Some(rj) = self.rules.get(j) else {
            return false;
        };
        if j >= i || !rj.quick || rj.action == Action::Match {
            return false;
        }
        // No skip step may jump over j and land at or before i.
        if self.min_land_over.get(j).copied().unwrap_or(0) <= i {
            return false;
        }
        self.implies(i, j, true)
    }

    /// Later pass/block rule `j` matches whenever non-quick pass/block rule `i` did.
    fn overrides(&self, j: usize, i: usize) -> bool {
        let (Some(ri), Some(rj)) = (self.rules.get(i), self.rules.get(j)) else {
            return false;
        };
        if j <= i || ri.quick || ri.action == Action::Match || rj.action == Action::Match {
            return false;
        }
        // No skip step from a rule between them may jump over j.
        if j > i + 1 && self.far_jump(i + 1, j - 1) > j {
            return false;
        }
        self.implies(i, j, false)
    }
}

// ---------------------------------------------------------------------------------------
// The candidate index

/// FNV-1a, for index keys: fast and the same on every run.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn hash_of(x: impl Hash) -> u64 {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    x.hash(&mut h);
    h.finish()
}

/// The map's keys are hashes already.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Hash)]
enum Class<'a> {
    Trivial,
    Star,
    Null,
    /// Every value (an entry keyed by the key alone).
    KeyOnly,
    /// Bytes compared ignoring case (hashed lower-cased).
    Folded(Folded<'a>),
    Glob(&'a [u8], Case),
    Lua(&'a [u8]),
}

struct Folded<'a>(&'a [u8]);

impl Hash for Folded<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_usize(self.0.len());
        for &b in self.0 {
            h.write_u8(to_lower(b));
        }
    }
}

fn value_class(v: &ValueTest, site_fold: bool) -> Class<'_> {
    match v {
        ValueTest::Matches(p) if !pattern_trivial(p) => match view(p, site_fold) {
            View::Glob(g, c) => Class::Glob(g, c),
            View::Lua(l) => Class::Lua(l),
        },
        _ => Class::Trivial,
    }
}

fn header_class(t: &EntityTest) -> Class<'_> {
    match hlook(t) {
        HLook::Exact(k) => Class::Folded(Folded(k)),
        HLook::Star => Class::Star,
        HLook::Glob(g) => Class::Glob(g, Case::Insensitive),
        HLook::Lua(l) => Class::Lua(l),
    }
}

fn cookie_class(t: &EntityTest) -> Class<'_> {
    match cookie_key(eff_key(t)) {
        None => Class::Null,
        Some(View::Glob(k, _)) => Class::Folded(Folded(k)),
        Some(View::Lua(l)) => Class::Lua(l),
    }
}

fn pq_key_class(t: &EntityTest) -> Class<'_> {
    let k = eff_key(t);
    if matches!(k, EffKey::Null) {
        return Class::Null;
    }
    if key_trivial(k) {
        return Class::Star;
    }
    match key_view(k, false) {
        Some(View::Glob(g, c)) => Class::Glob(g, c),
        Some(View::Lua(l)) => Class::Lua(l),
        None => Class::Null,
    }
}

/// The classes of a non-opaque test: entity tag, key class, value class.
fn classes(t: &EntityTest) -> (char, Class<'_>, Class<'_>) {
    match t.entity {
        Entity::Header => ('h', header_class(t), value_class(&t.value, false)),
        Entity::Cookie => {
            let kc = cookie_class(t);
            let vc = if matches!(kc, Class::Null) {
                Class::Trivial
            } else {
                value_class(&t.value, true)
            };
            ('c', kc, vc)
        }
        Entity::Path => {
            let vc = if t.option.is_some() {
                Class::Trivial
            } else {
                value_class(&t.value, true)
            };
            ('p', pq_key_class(t), vc)
        }
        Entity::Query => ('q', pq_key_class(t), value_class(&t.value, false)),
        Entity::Url => ('u', Class::Null, Class::Null),
    }
}

fn opaque(rule: &Rule, t: &EntityTest) -> bool {
    is_legacy_node(rule) || t.entity == Entity::Url || matches!(t.value, ValueTest::NoneOf(_))
}

fn opaque_key(rule: &Rule, t: &EntityTest) -> u64 {
    hash_of((
        rule.direction,
        "eq",
        is_legacy_node(rule),
        t.entity == Entity::Url && rule.action == Action::Block,
        t.entity,
        t.option,
        &t.key,
        &t.value,
    ))
}

fn family_index(a: IpAddr) -> (usize, u8) {
    match a {
        IpAddr::V4(_) => (0, 32),
        IpAddr::V6(_) => (1, 128),
    }
}

/// A `from` prefix normalised to `len` bits.
fn bare_key(d: Direction, p: Option<Prefix>, len: u8) -> u64 {
    match p {
        None => hash_of((d, "bare")),
        Some(p) => {
            let (fam, w) = family_index(p.addr);
            let bits = match p.addr {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            };
            let len = len.min(w);
            hash_of((d, "bare", 1u8, fam, bits & super::eval::mask(w, len), len))
        }
    }
}

fn entity_rank(e: Entity) -> u8 {
    match e {
        Entity::Header => 0,
        Entity::Query => 1,
        Entity::Path => 2,
        Entity::Url => 3,
        Entity::Cookie => 4,
    }
}

/// Combines index-key parts cheaply (the parts are FNV hashes already).
fn mix(parts: &[u64]) -> u64 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for &p in parts {
        h = (h ^ p).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 29;
    }
    h
}

/// The hashed classes of a non-opaque test: entity tag, key class, value class.
fn class_hashes(t: &EntityTest) -> (u64, u64, u64) {
    let (tag, kc, vc) = classes(t);
    (hash_of(tag), hash_of(kc), hash_of(vc))
}

fn fixed(c: Class<'static>) -> u64 {
    hash_of(c)
}

/// Where a rule is filed: a hashed key, or one of the few fixed entries (per direction:
/// one per entity, and rules without tests or `from`), kept out of the hash map.
#[derive(Clone, Copy)]
enum Slot {
    Key(u64),
    Fixed(usize),
}

const FIXED: usize = 12;

fn fixed_entity(d: Direction, e: Entity) -> Slot {
    Slot::Fixed(dir_index(d) * 6 + usize::from(entity_rank(e)))
}

fn fixed_bare(d: Direction) -> Slot {
    Slot::Fixed(dir_index(d) * 6 + 5)
}

/// Candidate rules for domination, by the keys described in the module documentation.
/// Each entry is a list threaded through `links`, newest first, so filing allocates
/// nothing per entry.
struct Index {
    heads: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    fixed: [u32; FIXED],
    /// (rule, next older entry of the same key or `u32::MAX`).
    links: Vec<(u32, u32)>,
    /// Per direction and family, the `from` lengths of indexed rules without tests.
    from_lens: [[[bool; 129]; 2]; 2],
    trivial: u64,
    key_only: u64,
    star: u64,
    null: u64,
}

impl Index {
    fn new(capacity: usize) -> Self {
        Index {
            heads: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            links: Vec::with_capacity(capacity),
            fixed: [u32::MAX; FIXED],
            from_lens: [[[false; 129]; 2]; 2],
            trivial: fixed(Class::Trivial),
            key_only: fixed(Class::KeyOnly),
            star: fixed(Class::Star),
            null: fixed(Class::Null),
        }
    }

    fn push(&mut self, slot: Slot, i: usize) {
        let at = self.links.len() as u32;
        let prev = match slot {
            Slot::Key(key) => self.heads.insert(key, at).unwrap_or(u32::MAX),
            Slot::Fixed(f) => match self.fixed.get_mut(f) {
                Some(head) => std::mem::replace(head, at),
                None => return,
            },
        };
        self.links.push((i as u32, prev));
    }

    /// Files rule `i` (as a possible dominating rule) under its first test that is not
    /// trivially true, or under its `from` when it has none.
    fn insert(&mut self, rule: &Rule, trivial: u64, i: usize) {
        let d = hash_of(rule.direction);
        let first = rule
            .tests
            .iter()
            .enumerate()
            .filter(|(k, _)| *k >= 64 || trivial & (1 << k) == 0)
            .map(|(_, t)| t)
            .min_by_key(|t| entity_rank(t.entity));
        let Some(t) = first else {
            let len = rule.from.map_or(0, |p| p.len);
            if let Some(p) = rule.from {
                let (fam, w) = family_index(p.addr);
                if let Some(slot) =
                    self.from_lens[dir_index(rule.direction)][fam].get_mut(usize::from(len.min(w)))
                {
                    *slot = true;
                }
            }
            let slot = match rule.from {
                None => fixed_bare(rule.direction),
                Some(_) => Slot::Key(bare_key(rule.direction, rule.from, len)),
            };
            self.push(slot, i);
            return;
        };
        if opaque(rule, t) {
            self.push(Slot::Key(opaque_key(rule, t)), i);
            return;
        }
        let (tag, kc, vc) = class_hashes(t);
        self.push(Slot::Key(mix(&[d, tag, kc, vc])), i);
        self.push(Slot::Key(mix(&[d, tag, kc, self.key_only])), i);
        self.push(fixed_entity(rule.direction, t.entity), i);
    }

    /// Where rules able to dominate `rule` may be filed, most promising first, with how
    /// many of the nearest entries to look at.
    fn lookups(&self, rule: &Rule, out: &mut Vec<(Slot, usize)>) {
        out.clear();
        let dir = rule.direction;
        let d = hash_of(dir);
        out.push((fixed_bare(dir), 16));
        if let Some(p) = rule.from {
            let (fam, w) = family_index(p.addr);
            let lens = &self.from_lens[dir_index(dir)][fam];
            for l in 0..=p.len.min(w) {
                if lens.get(usize::from(l)).copied().unwrap_or(false) {
                    out.push((Slot::Key(bare_key(dir, Some(p), l)), 16));
                }
            }
        }
        for t in &rule.tests {
            if opaque(rule, t) {
                out.push((Slot::Key(opaque_key(rule, t)), 16));
                continue;
            }
            let (tag, kc, vc) = class_hashes(t);
            let key = |parts: &[u64]| Slot::Key(mix(parts));
            out.push((key(&[d, tag, kc, vc]), 16));
            // Rules with a trivial value are also filed under their key alone.
            out.push((key(&[d, tag, kc, self.key_only]), 8));
            match t.entity {
                Entity::Header => out.push((key(&[d, tag, self.star, self.trivial]), 8)),
                Entity::Cookie => out.push((key(&[d, tag, self.null, self.trivial]), 8)),
                _ => {
                    out.push((key(&[d, tag, self.star, vc]), 8));
                    out.push((key(&[d, tag, self.star, self.trivial]), 8));
                }
            }
            out.push((fixed_entity(dir, t.entity), 4));
        }
    }

    /// The entries under `key`, nearest (most recently filed) first.
    fn nearest(&self, slot: Slot, cap: usize) -> impl Iterator<Item = usize> + '_ {
        let mut at = match slot {
            Slot::Key(key) => self.heads.get(&key).copied().unwrap_or(u32::MAX),
            Slot::Fixed(f) => self.fixed.get(f).copied().unwrap_or(u32::MAX),
        };
        std::iter::from_fn(move || {
            let &(rule, next) = self.links.get(at as usize)?;
            at = next;
            Some(rule as usize)
        })
        .take(cap)
    }
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
    use crate::filter::{Key, Legacy};

    fn glob(s: &str) -> Pattern {
        Pattern::glob(s, Case::Sensitive)
    }

    fn rule(action: Action, quick: bool) -> Rule {
        Rule {
            action,
            direction: Direction::Request,
            quick,
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

    fn with(mut r: Rule, entity: Entity, key: &str, value: Option<&str>) -> Rule {
        r.tests.push(EntityTest {
            entity,
            option: None,
            key: Key::Pattern(glob(key)),
            value: value.map_or(ValueTest::Any, |v| ValueTest::Matches(glob(v))),
            write: None,
        });
        r
    }

    fn kinds(rules: &[Rule]) -> Vec<(usize, FindingKind)> {
        analyze(rules)
            .into_iter()
            .map(|f| (f.rule, f.kind))
            .collect()
    }

    #[test]
    fn shadowed_by_quick_rule() {
        let rules = vec![
            with(
                rule(Action::Block, true),
                Entity::Header,
                "Host",
                Some("*.evil"),
            ),
            with(
                rule(Action::Pass, false),
                Entity::Header,
                "host",
                Some("www.evil"),
            ),
            with(
                rule(Action::Pass, false),
                Entity::Header,
                "Host",
                Some("www.good"),
            ),
        ];
        assert_eq!(
            kinds(&rules),
            vec![(1, FindingKind::ShadowedBy { rule: 0 })]
        );
    }

    #[test]
    fn overridden_by_later_rule() {
        let rules = vec![
            with(rule(Action::Block, false), Entity::Path, "/admin/*", None),
            rule(Action::Pass, false),
        ];
        assert_eq!(
            kinds(&rules),
            vec![(0, FindingKind::OverriddenBy { rule: 1 })]
        );
        // Quick rules cannot be overridden.
        let rules = vec![
            with(rule(Action::Block, true), Entity::Path, "/admin/*", None),
            rule(Action::Pass, false),
        ];
        assert!(kinds(&rules).is_empty());
    }

    #[test]
    fn tag_changes_between_block_claims() {
        let mut j = rule(Action::Block, true);
        j.tagged = Some(1);
        let mut m = rule(Action::Match, false);
        m.tag = Some(SetOrClear::Set(1));
        let mut i = rule(Action::Pass, false);
        i.tagged = Some(1);
        let rules = vec![j.clone(), m.clone(), i.clone()];
        assert!(kinds(&rules).is_empty());
        let rules = vec![m, j, i];
        assert_eq!(
            kinds(&rules),
            vec![(2, FindingKind::ShadowedBy { rule: 1 })]
        );
    }

    #[test]
    fn unsatisfiable_reasons() {
        let mut r = rule(Action::Pass, false);
        r.tagged = Some(9);
        assert_eq!(
            kinds(&[r]),
            vec![(
                0,
                FindingKind::Unsatisfiable {
                    reason: Unsatisfiable::TagNeverSet { tag: 9 }
                }
            )]
        );
        let r = with(rule(Action::Pass, false), Entity::Header, "X Y", None);
        assert!(matches!(
            kinds(&[r])[0].1,
            FindingKind::Unsatisfiable {
                reason: Unsatisfiable::ImpossibleHeaderName { test: 0 }
            }
        ));
        let r = with(rule(Action::Pass, false), Entity::Path, "/[z-a]", None);
        assert!(matches!(
            kinds(&[r])[0].1,
            FindingKind::Unsatisfiable {
                reason: Unsatisfiable::GlobMatchesNothing {
                    part: Part::Key,
                    ..
                }
            }
        ));
        let mut r = rule(Action::Pass, false);
        r.tests.push(EntityTest {
            entity: Entity::Header,
            option: None,
            key: Key::Pattern(glob("X")),
            value: ValueTest::Matches(Pattern::Lua { text: "(a)".into() }),
            write: None,
        });
        assert!(matches!(
            kinds(&[r])[0].1,
            FindingKind::Unsatisfiable {
                reason: Unsatisfiable::BadPattern {
                    part: Part::Value,
                    ..
                }
            }
        ));
        // A path not starting with '/' exists in relayd (OPTIONS *, CONNECT h:443).
        let r = with(
            rule(Action::Pass, false),
            Entity::Path,
            "*.example.com:443",
            None,
        );
        assert!(kinds(&[r]).is_empty());
        // Legacy tests are not judged.
        let mut r = with(rule(Action::Block, true), Entity::Header, "X Y", None);
        r.legacy = Some(Legacy::Filter);
        assert!(kinds(&[r]).is_empty());
    }

    #[test]
    fn skip_steps_block_shadow_claims() {
        // Rule 0 (from 10/8) can jump to rule 3 when it fails, bypassing rule 2 which
        // would otherwise shadow rule 3... here rule 2 is quick and equal to rule 3.
        let v4 = |s: &str| -> IpAddr { s.parse().unwrap() };
        let mut r0 = rule(Action::Match, false);
        r0.from = Some(Prefix {
            addr: v4("10.0.0.0"),
            len: 8,
        });
        let mut r1 = rule(Action::Match, false);
        r1.direction = Direction::Response;
        let r2 = with(rule(Action::Block, true), Entity::Path, "/x", None);
        let mut r3 = with(rule(Action::Pass, false), Entity::Path, "/x", None);
        r3.from = Some(Prefix {
            addr: v4("192.168.0.0"),
            len: 16,
        });
        let rules = vec![r0, r1, r2.clone(), r3.clone()];
        assert!(kinds(&rules).is_empty());
        // Without the jump the claim stands.
        let rules = vec![r2, r3];
        assert_eq!(
            kinds(&rules),
            vec![(1, FindingKind::ShadowedBy { rule: 0 })]
        );
    }

    #[test]
    fn table_selection_between_blocks_shadow_claims() {
        use crate::filter::eval::{evaluate, OwnedMessage, SessionState};
        // 0 fails its family check on the IPv6 backend and jumps (skip step) to 2, which
        // is a response rule: the direction skip lands on 3, whose table selection
        // clears the backend address, so 4 (same family as 0) matches.
        let mut r0 = rule(Action::Block, true);
        r0.family = Some(Family::Inet);
        let mut r1 = rule(Action::Match, false);
        r1.direction = Direction::Response;
        r1.family = Some(Family::Inet6);
        let mut r2 = rule(Action::Match, false);
        r2.direction = Direction::Response;
        r2.family = Some(Family::Inet);
        let mut r3 = rule(Action::Match, false);
        r3.table = Some(1);
        let mut r4 = rule(Action::Pass, false);
        r4.family = Some(Family::Inet);
        let rules = vec![r0, r1, r2, r3, r4];
        let mut msg = OwnedMessage::request("GET", "/");
        msg.client = Some("10.0.0.1".parse().unwrap());
        msg.backend = Some("2001:db8::1".parse().unwrap());
        let mut st = SessionState::default();
        let out = evaluate(&rules, &msg, &mut st, &mut Vec::new());
        assert_eq!(out.decided_by, Some(4));
        assert!(kinds(&rules).iter().all(|(r, _)| *r != 4));
    }

    #[test]
    fn prefixes() {
        let p = |s: &str, len| Prefix {
            addr: s.parse().unwrap(),
            len,
        };
        assert!(prefix_within(p("10.1.2.0", 24), p("10.0.0.0", 8)));
        assert!(!prefix_within(p("10.0.0.0", 8), p("10.1.2.0", 24)));
        assert!(!prefix_within(p("11.1.2.0", 24), p("10.0.0.0", 8)));
        assert!(!prefix_within(p("::1", 128), p("0.0.0.0", 0)));
        assert!(prefix_within(p("2001:db8::1", 128), p("2001:db8::", 32)));
    }
}
