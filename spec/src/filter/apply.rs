//! What the options of the rules [`evaluate`](super::evaluate) selected do to the message:
//! relay_http.c `relay_apply_actions` (with `relay_match_actions`, `relay_expand_http` and
//! relayd.c's `kv_add`, `kv_set`, `kv_setkey`, `kv_find`, `kv_log`, `relay_log`).
//!
//! After [`evaluate`](super::evaluate) the runtime calls [`apply`] once per message head,
//! then writes the head out (unless the verdict was block). `apply` is relayd's
//! `relay_apply_actions`, end to end: the options, then the session-log bookkeeping
//! (` <METHOD>` after a request, `;` after a response).
//!
//! # What relayd does, and so what this does
//!
//! * **Order.** The options of the queued `match` rules, in rule order, each rule's in
//!   relayd's test order (header, query, path — `path strip` counts as the path option —,
//!   url, cookie); then the verdict rule's. The verdict rule's options apply whether it
//!   passed or **blocked** (`relay_test` calls `relay_apply_actions` either way; a block
//!   still logs). Only the **first** option of the verdict rule applies: relayd appends
//!   the verdict rule's list with `TAILQ_CONCAT(…, kv_rule_entry)` but walks the actions
//!   with `kv_action_entry`, whose link in a pass/block rule's entries is never set, so
//!   the walk stops after the first. An aborted evaluation (400 on a bad `Host`) applies
//!   nothing and logs nothing ([`Actions::aborted`]).
//! * **Matches are fixed at evaluation.** Each option acts on what its test found in the
//!   message *as it was evaluated*: a header added by an earlier option is not seen by a
//!   later one (two `set` rules for a missing header add two lines), a header removed by
//!   an earlier option stays found (later options on it are skipped, except `log`, which
//!   logs `X: v (removed)`), but a value changed by an earlier `set` is seen by a later
//!   `log`.
//! * **Headers** are relayd's tree: one node per name (the first line, `strcasecmp`
//!   order for glob keys), repeated lines hang under it. `append` always adds a line
//!   (created if missing); `set` replaces the node's value and drops its other lines
//!   (created if missing); `remove` drops only the node — the first line — and later
//!   duplicates survive; `hash` feeds the node's value; `log` logs it. New lines join the
//!   end of their name's group (spelled like the group's first line, as relayd prints
//!   them) or start a new one with the rule's spelling of the key.
//! * **Cookies**: `append`/`set` both add one more `Cookie:` (request) / `Set-Cookie:`
//!   (response) line `name=value;`; `remove`, `hash`, `log` act on the whole first
//!   `Cookie`/`Set-Cookie` line.
//! * **Path** (`http_pathquery`: key = path, value = query): `set` makes the path the
//!   value, `append` appends the rule's *key* text, `remove` makes it `/`, `strip N`
//!   drops N leading components (`server_root_strip`), `hash` feeds the path, `log` logs
//!   `[path: query]` (`[path]` without `?`). **Url**: `hash` feeds the query (relayd
//!   would crash without one; nothing is fed here), `log` logs `[<Host><path>: query]`
//!   (`[<path>…]` without a `Host` line, `[<digest>…]` for `url digest`). **Query**:
//!   `hash` feeds and `log` logs the first pair whose key and value match the test.
//! * **Runtime macros** (`KV_FLAG_MACRO`: the rule's value contains `$`, and is not a
//!   `pattern`): after the option, relayd *sets the match's value* to the expanded rule
//!   value. For `append`/`set` that is the new or set header line; but it happens for
//!   every option, so a `header log "X" value "*$X*"` overwrites X's value before logging
//!   it, and on a path rule it replaces the **query** (`path set "/a" value "/$HOST"`
//!   sends `/$HOST?/<host>` — relayd's own behaviour, kept). Expansion is
//!   `relay_expand_http`: `$HOST` (the current `Host` value, cut to 127 bytes, else the
//!   relay's listen address), `$REMOTE_ADDR`, `$REMOTE_PORT`, `$SERVER_ADDR`,
//!   `$SERVER_PORT`, `$SERVER_NAME`, `$TIMEOUT`, in this order, each replaced only when
//!   the *rule's* value names it, by plain substring replacement (unknown `$X` stays).
//!   A result of 65535 bytes or more, or `$REMOTE_ADDR` without a peer address, fails the
//!   whole apply ([`ApplyError`]): relayd then drops the message (403).
//! * **Legacy (≤ 5.5) nodes** lowered to rules keep their own options:
//!   [`Legacy::AppendJoin`] rewrites every line of the header in place as
//!   `K: <old>, <V>` (or adds `K: V` at the end when there is none), [`Legacy::Change`]
//!   drops every line of the header and adds `K: V` at the end; `K` is spelled as in the
//!   node and their expansion knows no `$HOST` (relay_http.c 1.18). Several nodes on one
//!   header are applied one after the other (relayd 1.18 printed one line per node);
//!   legacy `remove`/`hash`/`log` nodes arrive as plain rules and get the semantics above.
//!
//! # Where this differs from relayd
//!
//! * relayd keeps one `http_matchquery` per message, overwritten by every successful
//!   `query` lookup during evaluation, so with several `query` rules a `query hash`/`log`
//!   may act on another rule's pair; here each option looks up its own rule's pair.
//! * `url hash` on a request without a query feeds nothing (relayd dereferences NULL).
//! * Legacy `remove` nodes drop every line of the header in relayd 1.18; lowered as plain
//!   `remove` rules (no [`Legacy`] marker) they drop the first line only.
//!
//! # The head after `apply`
//!
//! [`Head::headers`] stays in arrival order with added lines at the end. Added lines are
//! spelled like the first line of their name group, and the survivors of a removed first
//! line take its spelling. The writer emits the groups sorted by name (`strcasecmp`),
//! each group's lines in order and under the spelling of its first line — relayd's
//! `RB_FOREACH` over the tree, each node followed by its children.
//!
//! Allocation: none beyond the head's own new lines and values and the log text.

use super::ctype::eq_ignore_case;
use super::eval::{eff_key, find_header, query_pairs, EffKey, Message, Outcome};
use super::glob::fnmatch;
use super::head::Head;
use super::{
    lua, Case, Direction, Entity, EntityTest, Key, KeyOption, Legacy, Pattern, Rule, ValueTest,
};
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

/// `RELAYD_SERVERNAME`: `$SERVER_NAME`, the `Server:` header and footer of error pages.
pub const SERVER_NAME: &str = "OpenBSD relayd";

/// `IBUF_READ_SIZE`: the expansion buffer; a result must be shorter.
const EXPAND_BUF: usize = 65535;

/// `relay_expand_http`'s `ibuf[128]`: `$HOST` is cut to 127 bytes.
const IBUF: usize = 128;

/// What the runtime macros expand to for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MacroContext {
    /// `$REMOTE_ADDR`: the peer that sent the message being filtered (`cre->ss`): the
    /// client for requests, the backend for responses. `None` while relayd holds no
    /// address for it (a table switch cleared the backend's); expanding it then fails.
    pub remote_addr: Option<IpAddr>,
    /// `$REMOTE_PORT`: that peer's port.
    pub remote_port: u16,
    /// `$SERVER_ADDR`, and `$HOST` without a `Host` line: the relay's configured listen
    /// address (`rl_conf.ss`, e.g. `0.0.0.0`).
    pub server_addr: IpAddr,
    /// `$SERVER_PORT`: the relay's configured listen port.
    pub server_port: u16,
    /// `$TIMEOUT`: the relay's session timeout in seconds.
    pub timeout_secs: i64,
}

/// Why relayd's `relay_apply_actions` would fail (its caller then drops the message:
/// `action = RES_DROP`, answered like a block, 403).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApplyError {
    /// A macro expansion reached 65535 bytes (`expand_string`: "string too long").
    ExpansionTooLong,
    /// `$REMOTE_ADDR` with no peer address (`print_host` fails).
    NoRemoteAddress,
    /// An option that adds a header without a key (`kv_add` refuses a NULL key).
    NoKey,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyError::ExpansionTooLong => "macro expansion too long",
            ApplyError::NoRemoteAddress => "no remote address to expand",
            ApplyError::NoKey => "header option without a key",
        })
    }
}

impl std::error::Error for ApplyError {}

/// Where `hash` options feed their bytes: the session's balancing hash
/// ([`crate::balance::Hasher::feed`], relayd's `SipHash24_Update(&con->se_siphashctx, …)`).
pub type HashFeed<'a> = &'a mut dyn FnMut(&[u8]);

/// Which rules' options to apply: the result of [`evaluate`](super::evaluate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Actions<'a> {
    /// The `match` rules that matched, in order (`evaluate`'s `queued`).
    pub queued: &'a [usize],
    /// The pass/block rule that gave the verdict ([`Outcome::decided_by`]).
    pub decided_by: Option<usize>,
    /// Evaluation ended in a 400 (`Outcome::aborted_by`): relayd returns before
    /// `relay_apply_actions`, so nothing is applied or logged.
    pub aborted: bool,
    /// Requests: the table the request selected differs from the session's previous
    /// one (relayd then switches backends and sets `se_haslog`, so the response's `;`
    /// is logged even when nothing else was).
    pub table_switched: bool,
}

impl<'a> Actions<'a> {
    /// The actions of an evaluation; `table_switched` as in [`Actions::table_switched`].
    pub fn of(outcome: &Outcome, queued: &'a [usize], table_switched: bool) -> Self {
        Actions {
            queued,
            decided_by: outcome.decided_by,
            aborted: outcome.aborted_by.is_some(),
            table_switched,
        }
    }
}

/// The session's label text for `log` entries (`con->se_label` after evaluation).
pub fn label_text(label: Option<super::LabelId>, labels: &[String]) -> Option<&str> {
    label
        .and_then(|l| labels.get(l as usize))
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------
// The session log

/// relayd's per-session log buffer (`con->se_log`, `con->se_haslog`): what `log` options
/// and the end-of-message markers append while the session runs; the close line prints
/// [`SessionLog::line`] after the message and a comma.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionLog {
    buf: String,
    has_log: bool,
}

impl SessionLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Empties it for the next session, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.has_log = false;
    }

    /// relayd.c `kv_log`: ` [<label>, <key>: <value>]` for requests, ` {…}` for
    /// responses; `<label>, ` only with a label, `: <value>` only with a value, and
    /// `(unknown)` for a missing key. Marks the session as logged.
    pub fn push_kv(
        &mut self,
        dir: Direction,
        label: Option<&str>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
    ) {
        let key_parts: [&[u8]; 1] = [key.unwrap_or(b"")];
        self.kv_log(
            dir,
            label,
            key.map(|_| &key_parts[..]),
            value.map(|v| (v, "")),
        );
    }

    fn kv_log(
        &mut self,
        dir: Direction,
        label: Option<&str>,
        key: Option<&[&[u8]]>,
        value: Option<(&[u8], &str)>,
    ) {
        let (open, close) = match dir {
            Direction::Request => ("[", "]"),
            Direction::Response => ("{", "}"),
        };
        self.buf.push(' ');
        self.buf.push_str(open);
        if let Some(l) = label {
            self.buf.push_str(l);
            self.buf.push_str(", ");
        }
        match key {
            Some(parts) => {
                for p in parts {
                    push_bytes(&mut self.buf, p);
                }
            }
            None => self.buf.push_str("(unknown)"),
        }
        if let Some((v, suffix)) = value {
            self.buf.push_str(": ");
            push_bytes(&mut self.buf, v);
            self.buf.push_str(suffix);
        }
        self.buf.push_str(close);
        self.has_log = true;
    }

    /// After a request head's filter pass: ` <METHOD>` (always; [`apply`] does it).
    pub fn push_request_end(&mut self, method: &str) {
        self.buf.push(' ');
        self.buf.push_str(method);
    }

    /// After a response head's filter pass: `;`, only if something was logged in this
    /// session (`relay_log`; [`apply`] does it).
    pub fn push_response_end(&mut self) {
        if self.has_log {
            self.buf.push(';');
        }
    }

    /// `se_haslog = 1` without an entry (relayd's table switch).
    pub fn mark_logged(&mut self) {
        self.has_log = true;
    }

    /// Whether anything was logged (`se_haslog`).
    pub fn has_log(&self) -> bool {
        self.has_log
    }

    /// The whole buffer.
    pub fn as_str(&self) -> &str {
        &self.buf
    }

    /// What the close line prints: the buffer up to its first line end
    /// (`evbuffer_readln(…, EVBUFFER_EOL_CRLF)` after relayd appended `\r\n`). Empty
    /// when nothing was appended; relayd then prints no comma either.
    pub fn line(&self) -> &str {
        match self.buf.find('\n') {
            Some(n) => {
                let head = self.buf.get(..n).unwrap_or("");
                head.strip_suffix('\r').unwrap_or(head)
            }
            None => &self.buf,
        }
    }
}

/// Appends header bytes to the log text (invalid UTF-8 shown as U+FFFD).
fn push_bytes(out: &mut String, b: &[u8]) {
    match String::from_utf8_lossy(b) {
        Cow::Borrowed(s) => out.push_str(s),
        Cow::Owned(s) => out.push_str(&s),
    }
}

// ---------------------------------------------------------------------------------------
// apply

/// relay_http.c `relay_apply_actions`: applies the options of `actions` to `head` in
/// relayd's order, feeds `hash` values to `hasher` (the session's balancing hash), logs
/// to `log` with the session's `label` (its text after evaluation, see [`label_text`]),
/// then appends ` <METHOD>` (requests) or `;` (responses, if anything was logged).
///
/// On `Err` relayd drops the message (403 "Forbidden"); the head may be half-rewritten
/// and the method is not logged, as in relayd.
pub fn apply(
    rules: &[Rule],
    actions: Actions<'_>,
    head: &mut Head,
    ctx: &MacroContext,
    label: Option<&str>,
    log: &mut SessionLog,
    hasher: Option<HashFeed<'_>>,
) -> Result<(), ApplyError> {
    if actions.aborted {
        return Ok(());
    }
    let dir = Message::direction(&*head);
    let mut run = Run {
        regions: Regions {
            live: head.headers.len(),
            new_end: head.headers.len(),
        },
        head,
        ctx,
        label,
        log: &mut *log,
        hasher,
        dir,
    };
    let result = run.all(rules, &actions);
    run.finish();
    result?;
    if dir == Direction::Request && actions.table_switched {
        log.mark_logged();
    }
    match dir {
        Direction::Request => {
            // relay_httpmethod_byid: the method's canonical name, which is the name as
            // sent (methods are matched case-sensitively).
            let method = String::from_utf8_lossy(&head.method);
            log.push_request_end(&method);
        }
        Direction::Response => log.push_response_end(),
    }
    Ok(())
}

/// The regions of `head.headers` while options run: `[0, live)` the lines of the
/// evaluated message still in place, `[live, new_end)` lines added by options,
/// `[new_end, len)` lines `remove`d (relayd's `KV_FLAG_INVALID`: still in the tree, not
/// written). Removed lines are always the first line of their name.
#[derive(Clone, Copy, Debug)]
struct Regions {
    live: usize,
    new_end: usize,
}

struct Run<'h, 'c, 'l, 'f> {
    head: &'h mut Head,
    regions: Regions,
    ctx: &'c MacroContext,
    label: Option<&'c str>,
    log: &'l mut SessionLog,
    hasher: Option<HashFeed<'f>>,
    dir: Direction,
}

/// One option of a rule.
#[derive(Clone, Copy)]
enum Act<'r> {
    Test(&'r EntityTest),
    Strip(u32),
}

/// relayd's order of tests (and so of a rule's options) in `relay_test`.
const ENTITY_ORDER: [Entity; 5] = [
    Entity::Header,
    Entity::Query,
    Entity::Path,
    Entity::Url,
    Entity::Cookie,
];

/// The options `relay_test` queued for `rule` (`relay_match` is called only where a test
/// ran to its end with an option set), in order.
fn rule_acts(rule: &Rule, dir: Direction) -> impl Iterator<Item = Act<'_>> + '_ {
    ENTITY_ORDER.into_iter().flat_map(move |entity| {
        let test = rule
            .tests
            .iter()
            .find(|t| t.entity == entity && queues_action(t, dir))
            .map(Act::Test);
        let strip = match (entity, rule.strip, dir) {
            (Entity::Path, Some(n), Direction::Request) => Some(Act::Strip(n)),
            _ => None,
        };
        test.into_iter().chain(strip)
    })
}

fn queues_action(t: &EntityTest, dir: Direction) -> bool {
    let Some(option) = t.option else {
        return false;
    };
    let has_key = !matches!(eff_key(t), EffKey::Null);
    match t.entity {
        Entity::Header => true,
        Entity::Cookie => matches!(option, KeyOption::Append | KeyOption::Set) || has_key,
        Entity::Path | Entity::Query | Entity::Url => dir == Direction::Request && has_key,
    }
}

/// `KV_FLAG_MACRO`: the text a rule's value expands, when it names a `$`.
fn macro_text(t: &EntityTest) -> Option<&[u8]> {
    let text: &[u8] = match t.option {
        Some(KeyOption::Append | KeyOption::Set) => t.write.as_deref().unwrap_or("*").as_bytes(),
        _ => match &t.value {
            ValueTest::Matches(Pattern::Glob { text, .. }) => text.as_bytes(),
            // A `pattern` value is never a macro; no value is relayd's "*".
            _ => return None,
        },
    };
    text.contains(&b'$').then_some(text)
}

/// The text of a key as written (`kv_key`).
fn key_text(key: &Key) -> Option<&[u8]> {
    match key {
        Key::Any => None,
        Key::Pattern(Pattern::Glob { text, .. } | Pattern::Lua { text }) => Some(text.as_bytes()),
        Key::Digest { hex, .. } => Some(hex.as_bytes()),
    }
}

/// The value an `append`/`set` writes (`kv_value`; relayd's parser defaults it to `*`).
fn write_text(t: &EntityTest) -> &[u8] {
    t.write.as_deref().unwrap_or("*").as_bytes()
}

impl Run<'_, '_, '_, '_> {
    fn all(&mut self, rules: &[Rule], actions: &Actions<'_>) -> Result<(), ApplyError> {
        for rule in actions.queued.iter().filter_map(|&r| rules.get(r)) {
            for act in rule_acts(rule, self.dir) {
                self.act(rule, act)?;
            }
        }
        if let Some(rule) = actions.decided_by.and_then(|r| rules.get(r)) {
            if let Some(act) = rule_acts(rule, self.dir).next() {
                self.act(rule, act)?;
            }
        }
        Ok(())
    }

    fn act(&mut self, rule: &Rule, act: Act<'_>) -> Result<(), ApplyError> {
        let t = match act {
            Act::Strip(n) => {
                let from = root_strip(&self.head.path, n);
                self.head.path.drain(..from);
                return Ok(());
            }
            Act::Test(t) => t,
        };
        match (rule.legacy, t.entity) {
            (Some(Legacy::AppendJoin), Entity::Header) => return self.legacy_append(t),
            (Some(Legacy::Change), Entity::Header) => return self.legacy_change(t),
            _ => {}
        }
        match t.entity {
            Entity::Header => self.header(t),
            Entity::Cookie => self.cookie(t),
            Entity::Path => self.path(t),
            Entity::Url => self.url(t),
            Entity::Query => self.query(t),
        }
    }

    // --- headers -----------------------------------------------------------------------

    fn header(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        let found = self.find_evaluated(&t.key);
        if let Some(m) = found {
            if self.is_removed(m) {
                return self.log_removed(t, m);
            }
        }
        let option = t.option.unwrap_or(KeyOption::Log);
        let mut target = found;
        match (option, found) {
            (KeyOption::Set, Some(m)) => self.kv_set(m, write_text(t).to_vec()),
            (KeyOption::Append | KeyOption::Set, _) => {
                let name = key_text(&t.key).ok_or(ApplyError::NoKey)?;
                target = Some(self.add_line(name, write_text(t).to_vec()));
            }
            (KeyOption::Remove, Some(m)) => {
                self.remove_line(m);
                return Ok(());
            }
            (KeyOption::Hash, Some(m)) => self.hash_header(m),
            _ => {}
        }
        let Some(m) = target else {
            return Ok(());
        };
        if let Some(text) = macro_text(t) {
            let v = self.expand(text, false)?;
            self.kv_set(m, v);
        }
        if option == KeyOption::Log {
            self.log_line(m, "");
        }
        Ok(())
    }

    fn cookie(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        let name: &[u8] = match self.dir {
            Direction::Request => b"Cookie",
            Direction::Response => b"Set-Cookie",
        };
        let option = t.option.unwrap_or(KeyOption::Log);
        if let KeyOption::Append | KeyOption::Set = option {
            // kv_inherit + kv_set(kp, "%s=%s;") + kv_setkey(kp, "Cookie"), then kv_add.
            // Without a key relayd's parser sets no value either (printf's "(null)");
            // a key without `value` has the parser's "*".
            let (key, value): (&[u8], &[u8]) = match key_text(&t.key) {
                Some(k) => (k, write_text(t)),
                None => (b"(null)", b"(null)"),
            };
            let mut line = Vec::with_capacity(key.len() + value.len() + 2);
            line.extend_from_slice(key);
            line.push(b'=');
            line.extend_from_slice(value);
            line.push(b';');
            let m = self.add_line(name, line);
            if macro_text(t).is_some() {
                let v = match self.head.headers.get(m) {
                    Some((_, cur)) => self.expand(cur, false)?,
                    None => return Ok(()),
                };
                self.kv_set(m, v);
            }
            return Ok(());
        }
        let Some(m) = self.find_evaluated_exact(name) else {
            return Ok(());
        };
        if self.is_removed(m) {
            return self.log_removed(t, m);
        }
        match option {
            KeyOption::Remove => {
                self.remove_line(m);
                return Ok(());
            }
            KeyOption::Hash => self.hash_header(m),
            _ => {}
        }
        if let Some(text) = macro_text(t) {
            let v = self.expand(text, false)?;
            self.kv_set(m, v);
        }
        if option == KeyOption::Log {
            self.log_line(m, "");
        }
        Ok(())
    }

    /// `goto matchdel`: the match was removed by an earlier option; only `log` runs.
    fn log_removed(&mut self, t: &EntityTest, m: usize) -> Result<(), ApplyError> {
        if t.option == Some(KeyOption::Log) {
            self.log_line(m, " (removed)");
        }
        Ok(())
    }

    fn log_line(&mut self, m: usize, suffix: &str) {
        if let Some((name, value)) = self.head.headers.get(m) {
            self.log.kv_log(
                self.dir,
                self.label,
                Some(&[name.as_slice()][..]),
                Some((value.as_slice(), suffix)),
            );
        }
    }

    fn hash_header(&mut self, m: usize) {
        if let (Some(h), Some((_, v))) = (self.hasher.as_deref_mut(), self.head.headers.get(m)) {
            h(v);
        }
    }

    /// What the rule's header test found at evaluation: the first line of the name,
    /// among the evaluated lines (removed ones included, added ones not).
    fn find_evaluated(&self, key: &Key) -> Option<usize> {
        let view = Evaluated {
            head: self.head,
            regions: self.regions,
        };
        find_header(&view, key).map(|i| view.real(i))
    }

    fn find_evaluated_exact(&self, name: &[u8]) -> Option<usize> {
        let h = &self.head.headers;
        (self.regions.new_end..h.len())
            .chain(0..self.regions.live)
            .find(|&i| h.get(i).is_some_and(|(n, _)| eq_ignore_case(n, name)))
    }

    /// `kv_find` in the tree as it is now: removed first lines, evaluated lines, then
    /// added ones — the first hit is the node of that name.
    fn find_current(&self, name: &[u8]) -> Option<usize> {
        let h = &self.head.headers;
        (self.regions.new_end..h.len())
            .chain(0..self.regions.new_end)
            .find(|&i| h.get(i).is_some_and(|(n, _)| eq_ignore_case(n, name)))
    }

    fn is_removed(&self, m: usize) -> bool {
        m >= self.regions.new_end
    }

    /// `kv_add(tree, name, value, 0)`: a new line at the end of its name's group, spelled
    /// like the group's node, or a new node. Returns its index.
    fn add_line(&mut self, name: &[u8], value: Vec<u8>) -> usize {
        let name = match self.find_current(name) {
            Some(i) => self
                .head
                .headers
                .get(i)
                .map_or_else(|| name.to_vec(), |(n, _)| n.clone()),
            None => name.to_vec(),
        };
        let at = self.regions.new_end;
        self.head.headers.push((name, value));
        if let Some(tail) = self.head.headers.get_mut(at..) {
            tail.rotate_right(1);
        }
        self.regions.new_end += 1;
        at
    }

    /// `kv_set(match, value)`: the new value, and the node's other lines dropped (only an
    /// evaluated first line has any: an added line is set right after being added).
    fn kv_set(&mut self, m: usize, value: Vec<u8>) {
        let Some(line) = self.head.headers.get_mut(m) else {
            return;
        };
        line.1 = value;
        if m >= self.regions.live {
            return;
        }
        let name = std::mem::take(&mut line.0);
        let Regions { live, new_end } = self.regions;
        let (mut idx, mut from_live, mut from_new) = (0usize, 0usize, 0usize);
        self.head.headers.retain(|(n, _)| {
            let i = idx;
            idx += 1;
            if i == m || i >= new_end || !eq_ignore_case(n, &name) {
                return true;
            }
            if i < live {
                from_live += 1;
            } else {
                from_new += 1;
            }
            false
        });
        self.regions.live -= from_live;
        self.regions.new_end -= from_live + from_new;
        // The node is the first line of its name: nothing before it was dropped.
        if let Some(line) = self.head.headers.get_mut(m) {
            line.0 = name;
        }
    }

    /// `remove`: `KV_FLAG_INVALID` on the node; it moves to the removed region.
    fn remove_line(&mut self, m: usize) {
        if m >= self.regions.live {
            return;
        }
        if let Some(tail) = self.head.headers.get_mut(m..) {
            tail.rotate_left(1);
        }
        self.regions.live -= 1;
        self.regions.new_end -= 1;
    }

    /// Drops the removed lines; their surviving duplicates take their spelling (relayd
    /// prints a node's children under the node's key).
    fn finish(&mut self) {
        let new_end = self.regions.new_end;
        let headers = &mut self.head.headers;
        if new_end < headers.len() {
            let (kept, removed) = headers.split_at_mut(new_end);
            for (rname, _) in removed.iter() {
                for (n, _) in kept.iter_mut() {
                    if eq_ignore_case(n, rname) && n != rname {
                        n.clear();
                        n.extend_from_slice(rname);
                    }
                }
            }
            headers.truncate(new_end);
        }
        self.regions.live = self.regions.live.min(new_end);
    }

    // --- path, url, query --------------------------------------------------------------

    fn path(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        let option = t.option.unwrap_or(KeyOption::Log);
        match option {
            KeyOption::Set => self.head.path = write_text(t).to_vec(),
            KeyOption::Append => {
                if let Some(k) = key_text(&t.key) {
                    self.head.path.extend_from_slice(k);
                }
            }
            KeyOption::Remove => {
                self.head.path.clear();
                self.head.path.push(b'/');
            }
            KeyOption::Hash => {
                if let Some(h) = self.hasher.as_deref_mut() {
                    h(&self.head.path);
                }
            }
            KeyOption::Log => {}
        }
        self.expand_into_query(t)?;
        if option == KeyOption::Log {
            self.log.kv_log(
                self.dir,
                self.label,
                Some(&[self.head.path.as_slice()][..]),
                self.head.query.as_deref().map(|q| (q, "")),
            );
        }
        Ok(())
    }

    fn url(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        let option = t.option.unwrap_or(KeyOption::Log);
        if option == KeyOption::Hash {
            // relayd feeds the query (`kv_value` of `http_pathquery`); without one it
            // would call strlen(NULL).
            if let (Some(h), Some(q)) = (self.hasher.as_deref_mut(), self.head.query.as_deref()) {
                h(q);
            }
        }
        self.expand_into_query(t)?;
        if option == KeyOption::Log {
            let query = self.head.query.as_deref().map(|q| (q, ""));
            let path = self.head.path.as_slice();
            if let Key::Digest { hex, .. } = &t.key {
                self.log
                    .kv_log(self.dir, self.label, Some(&[hex.as_bytes()][..]), query);
            } else if let Some((_, host)) = self
                .find_current(b"Host")
                .and_then(|h| self.head.headers.get(h))
            {
                self.log.kv_log(
                    self.dir,
                    self.label,
                    Some(&[host.as_slice(), path][..]),
                    query,
                );
            } else {
                self.log
                    .kv_log(self.dir, self.label, Some(&[path][..]), query);
            }
        }
        Ok(())
    }

    /// A macro on a path or url rule sets `http_pathquery`'s value: the query.
    fn expand_into_query(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        if let Some(text) = macro_text(t) {
            self.head.query = Some(self.expand(text, false)?);
        }
        Ok(())
    }

    fn query(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        // relay_lookup_query's `http_matchquery`: the first pair matching key and value.
        let key = eff_key(t);
        let Some(query) = self.head.query.as_deref() else {
            return Ok(());
        };
        let Some((k, v)) =
            query_pairs(query).find(|(k, v)| key_matches(key, k) && value_matches(&t.value, v))
        else {
            return Ok(());
        };
        let option = t.option.unwrap_or(KeyOption::Log);
        if option == KeyOption::Hash {
            if let Some(h) = self.hasher.as_deref_mut() {
                h(v);
            }
        }
        // A macro sets `http_matchquery`'s value, which only a `log` sees.
        let expanded = match macro_text(t) {
            Some(text) => Some(self.expand(text, false)?),
            None => None,
        };
        if option == KeyOption::Log {
            let value = expanded.as_deref().unwrap_or(v);
            self.log
                .kv_log(self.dir, self.label, Some(&[k][..]), Some((value, "")));
        }
        Ok(())
    }

    // --- legacy nodes ------------------------------------------------------------------

    /// relay_http.c 1.18 `NODE_ACTION_APPEND`: `K: <old>, <V>` for every line of K.
    fn legacy_append(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        let key = key_text(&t.key).ok_or(ApplyError::NoKey)?;
        let v = self.legacy_value(t)?;
        let mut any = false;
        for (n, val) in self.head.headers.iter_mut().take(self.regions.live) {
            if eq_ignore_case(n, key) {
                any = true;
                n.clear();
                n.extend_from_slice(key);
                val.extend_from_slice(b", ");
                val.extend_from_slice(&v);
            }
        }
        if !any {
            self.push_legacy(key, v);
        }
        Ok(())
    }

    /// `NODE_ACTION_CHANGE`: every line of K dropped, `K: V` added at the end.
    fn legacy_change(&mut self, t: &EntityTest) -> Result<(), ApplyError> {
        let key = key_text(&t.key).ok_or(ApplyError::NoKey)?;
        let v = self.legacy_value(t)?;
        let live = self.regions.live;
        let mut idx = 0usize;
        let mut dropped = 0usize;
        self.head.headers.retain(|(n, _)| {
            let i = idx;
            idx += 1;
            let drop = i < live && eq_ignore_case(n, key);
            dropped += usize::from(drop);
            !drop
        });
        self.regions.live -= dropped;
        self.regions.new_end -= dropped;
        self.push_legacy(key, v);
        Ok(())
    }

    fn legacy_value(&self, t: &EntityTest) -> Result<Vec<u8>, ApplyError> {
        let text = write_text(t);
        if text.contains(&b'$') {
            self.expand(text, true)
        } else {
            Ok(text.to_vec())
        }
    }

    /// A line emitted after the header block (`relay_resolve`), spelled as in the node.
    fn push_legacy(&mut self, key: &[u8], value: Vec<u8>) {
        let at = self.regions.new_end;
        self.head.headers.push((key.to_vec(), value));
        if let Some(tail) = self.head.headers.get_mut(at..) {
            tail.rotate_right(1);
        }
        self.regions.new_end += 1;
    }

    // --- macros ------------------------------------------------------------------------

    /// relay_http.c `relay_expand_http` (`legacy`: the 1.18 version, without `$HOST`).
    fn expand(&self, val: &[u8], legacy: bool) -> Result<Vec<u8>, ApplyError> {
        if val.len() >= EXPAND_BUF {
            return Err(ApplyError::ExpansionTooLong);
        }
        let mut buf = val.to_vec();
        let has = |m: &[u8]| find(val, m).is_some();
        let mut ibuf = Small::new();
        if !legacy && has(b"$HOST") {
            match self
                .find_current(b"Host")
                .and_then(|h| self.head.headers.get(h))
            {
                Some((_, host)) => ibuf.push(host.get(..IBUF - 1).unwrap_or(host)),
                None => ibuf.addr(self.ctx.server_addr),
            }
            buf = replace_checked(&buf, b"$HOST", ibuf.as_bytes())?;
        }
        if has(b"$REMOTE_ADDR") {
            let addr = self.ctx.remote_addr.ok_or(ApplyError::NoRemoteAddress)?;
            ibuf.clear();
            ibuf.addr(addr);
            buf = replace_checked(&buf, b"$REMOTE_ADDR", ibuf.as_bytes())?;
        }
        if has(b"$REMOTE_PORT") {
            ibuf.clear();
            ibuf.num(i64::from(self.ctx.remote_port));
            buf = replace_checked(&buf, b"$REMOTE_PORT", ibuf.as_bytes())?;
        }
        if has(b"$SERVER_ADDR") {
            ibuf.clear();
            ibuf.addr(self.ctx.server_addr);
            buf = replace_checked(&buf, b"$SERVER_ADDR", ibuf.as_bytes())?;
        }
        if has(b"$SERVER_PORT") {
            ibuf.clear();
            ibuf.num(i64::from(self.ctx.server_port));
            buf = replace_checked(&buf, b"$SERVER_PORT", ibuf.as_bytes())?;
        }
        if has(b"$SERVER_NAME") {
            buf = replace_checked(&buf, b"$SERVER_NAME", SERVER_NAME.as_bytes())?;
        }
        if has(b"$TIMEOUT") {
            ibuf.clear();
            ibuf.num(self.ctx.timeout_secs);
            buf = replace_checked(&buf, b"$TIMEOUT", ibuf.as_bytes())?;
        }
        Ok(buf)
    }
}

/// The evaluated message as relayd's tree saw it when the tests ran: removed first
/// lines first (each is the node of its name), then the lines still in place. Added
/// lines are not part of it.
struct Evaluated<'h> {
    head: &'h Head,
    regions: Regions,
}

impl Evaluated<'_> {
    fn removed(&self) -> usize {
        self.head.headers.len() - self.regions.new_end
    }

    fn real(&self, i: usize) -> usize {
        let n = self.removed();
        if i < n {
            self.regions.new_end + i
        } else {
            i - n
        }
    }
}

impl Message for Evaluated<'_> {
    fn direction(&self) -> Direction {
        Message::direction(self.head)
    }
    fn method(&self) -> Option<&[u8]> {
        Message::method(self.head)
    }
    fn path(&self) -> Option<&[u8]> {
        Message::path(self.head)
    }
    fn query(&self) -> Option<&[u8]> {
        Message::query(self.head)
    }
    fn header_count(&self) -> usize {
        self.removed() + self.regions.live
    }
    fn header(&self, i: usize) -> (&[u8], &[u8]) {
        match self.head.headers.get(self.real(i)) {
            Some((n, v)) => (n.as_slice(), v.as_slice()),
            None => (&[], &[]),
        }
    }
    fn client(&self) -> Option<IpAddr> {
        self.head.client
    }
    fn backend(&self) -> Option<IpAddr> {
        self.head.backend
    }
    fn local(&self) -> Option<IpAddr> {
        self.head.local
    }
}

/// `server_root_strip`: how many leading bytes of `path` stripping `n` components drops.
/// Each step moves to the next `/` after the current position; without one it stays.
fn root_strip(path: &[u8], n: u32) -> usize {
    let mut at = 0usize;
    for _ in 0..n {
        if at >= path.len() {
            break;
        }
        match path
            .get(at + 1..)
            .and_then(|rest| rest.iter().position(|&b| b == b'/'))
        {
            Some(p) => at += 1 + p,
            // relayd loops on without moving; nothing changes any more.
            None => break,
        }
    }
    at
}

/// `kv_match_key` on a query key (`fnmatch(kv_key, key, 0)`).
fn key_matches(k: EffKey<'_>, s: &[u8]) -> bool {
    match k {
        EffKey::Null => true,
        EffKey::Star => fnmatch(b"*", s, Case::Sensitive),
        EffKey::Pattern(p) => pattern_matches(p, s),
        EffKey::Digest(_, hex) => fnmatch(hex.as_bytes(), s, Case::Sensitive),
    }
}

fn value_matches(v: &ValueTest, s: &[u8]) -> bool {
    match v {
        ValueTest::Matches(p) => pattern_matches(p, s),
        ValueTest::Any | ValueTest::NoneOf(_) => true,
    }
}

fn pattern_matches(p: &Pattern, s: &[u8]) -> bool {
    match p {
        Pattern::Glob { text, case, shape } => {
            super::glob::matches(text.as_bytes(), *shape, s, *case)
        }
        Pattern::Lua { text } => lua::is_match(text.as_bytes(), s),
    }
}

/// `strstr`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `expand_string`: every occurrence of `pat`, left to right, replaced; the result must
/// stay shorter than the buffer.
fn replace_checked(buf: &[u8], pat: &[u8], repl: &[u8]) -> Result<Vec<u8>, ApplyError> {
    let mut out = Vec::with_capacity(buf.len() + repl.len());
    let mut rest = buf;
    while let Some(i) = find(rest, pat) {
        out.extend_from_slice(rest.get(..i).unwrap_or(&[]));
        out.extend_from_slice(repl);
        rest = rest.get(i + pat.len()..).unwrap_or(&[]);
    }
    out.extend_from_slice(rest);
    if out.len() >= EXPAND_BUF {
        return Err(ApplyError::ExpansionTooLong);
    }
    Ok(out)
}

/// `ibuf[128]`: a small stack buffer for addresses and numbers.
struct Small {
    buf: [u8; IBUF],
    len: usize,
}

impl Small {
    fn new() -> Self {
        Small {
            buf: [0; IBUF],
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, b: &[u8]) {
        let room = IBUF - 1 - self.len.min(IBUF - 1);
        let b = b.get(..room.min(b.len())).unwrap_or(&[]);
        if let Some(dst) = self.buf.get_mut(self.len..self.len + b.len()) {
            dst.copy_from_slice(b);
            self.len += b.len();
        }
    }

    /// `print_host` (`getnameinfo(NI_NUMERICHOST)`).
    fn addr(&mut self, a: IpAddr) {
        use std::fmt::Write as _;
        let _ = write!(self, "{a}");
    }

    fn num(&mut self, n: i64) {
        use std::fmt::Write as _;
        let _ = write!(self, "{n}");
    }

    fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl fmt::Write for Small {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push(s.as_bytes());
        Ok(())
    }
}
