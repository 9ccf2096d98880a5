//! Load balancing for relays: which table a session uses and which host of it, exactly
//! as relayd's relay process decides (reference §4.5).
//!
//! This is the one definition of balancing. The runtime calls [`choose_table`] and
//! [`pick`] on live sessions; the compiler can call them to explain where a client would
//! go; property tests check their laws. Everything here is pure: no I/O, no allocation,
//! no randomness of its own (the caller passes a random number in, [`PickInputs::random`])
//! and no clock. Mutable state is explicit: the round-robin index ([`TableState`]) and the
//! session's hash context ([`Hasher`]).
//!
//! # Sources
//!
//! Read from OpenBSD relayd (`usr.sbin/relayd`): `relay.c` `relay_from_table` (table
//! choice, every mode, the hash retry loop and the final walk), `relay_hash_addr` (the
//! address and port bytes), `relay_accept` (the hash context is initialised per session),
//! `relay_launch` (hosts indexed 0..n−1 in table order, at most `RELAY_MAXHOSTS`, the
//! round-robin index starts at 0), `relay_dispatch_pfe` (`IMSG_TABLE_DISABLE` /
//! `IMSG_HOST_DISABLE`); `relay_http.c` `relay_apply_actions` (what `hash` filter actions
//! feed); `parse.y` (`hashkey`, the `tablespec` forward rule: the relay's key); `config.c`
//! `config_settable` (relay processes get every table, disabled or not); `relayd.h`
//! (`RELAY_MAXHOSTS` 32, `RELAY_MAX_HASH_RETRIES` 5); libc `siphash.c` (`SipHash_Init`
//! loads the key little-endian, `SipHash_End` returns the value little-endian).
//!
//! # The hash input, byte for byte
//!
//! One SipHash-2-4 context per session ([`Hasher`]), keyed with the relay's key. Fed, in
//! this order:
//!
//! 1. every `hash` filter action, when it is applied (`relay_apply_actions`,
//!    `KEY_OPTION_HASH`): the bytes of the matched value — for `path hash` the (possibly
//!    rewritten) path (`kv_key`), for `header`, `query`, `cookie` and `url` hash the value
//!    (`kv_value`) — without a terminating NUL, no separator between values;
//! 2. when a backend is chosen ([`pick`]), by mode (`relay_from_table`):
//!    * `source-hash`: the client address (`relay_hash_addr(ctx, &se_in.ss, -1)`);
//!    * `loadbalance`: the client address, then the relay's listen address and port;
//!    * `hash`: the relay's listen address and port only
//!      (`relay_hash_addr(ctx, &rl_conf.ss, rl_conf.port)`), so `mode hash` without a
//!      `hash` rule sends every client to the same host;
//!
//!    where an address is the 4 bytes of `in_addr` or the 16 bytes of `in6_addr` (network
//!    order, no family, no port, no scope id, not the whole sockaddr) and a port is the 2
//!    bytes of `in_port_t` in network order (big-endian). The listen address is the one
//!    configured (`listen on`, `rl_conf.ss`), not the address the connection arrived at.
//!
//! `h = SipHash24_End(ctx)` as a `u64`; then the context is re-initialised with the key,
//! so it starts empty for the session's next choice.
//!
//! Differences from the reference (the source wins):
//! * the reference says "values fed by `hash` filter actions **for this request**"; in
//!   `relay_apply_actions` / `relay_from_table` the context lives for the whole session
//!   and is reset only when a hash-mode choice ends it. `hash` actions of responses and of
//!   keep-alive requests that did not reconnect therefore count towards the next choice.
//!   The runtime reproduces this by keeping one [`Hasher`] per session and feeding it on
//!   every `hash` action, in both directions.
//! * "SipHash-2-4 keyed with the relay key" needs a byte layout; see [`sip_key`].
//! * the key is the relay's, not the table's: `parse.y` (forward to a table) copies the
//!   key of the relay's **first** hash-family forward into `rl_conf.hashkey` and ignores
//!   later ones; every listen address (relay copies made by `relay_inherit`) shares it.
//!   A key that relayd draws at random (no `key` given) is drawn once, in the parent, so
//!   every relay process uses the same one: relayd-run must draw one per plan load and
//!   share it between workers, or workers disagree about where a client goes.

use crate::plan::Mode;
use siphasher::sip::SipHasher24;
use std::hash::Hasher as _;
use std::net::IpAddr;

/// The most hosts a relay's table can have (`RELAY_MAXHOSTS`); relayd refuses to start
/// with more (`relay_launch`: "too many hosts in table").
pub const MAX_HOSTS: usize = 32;

/// The most hash candidates tried before walking forward (`RELAY_MAX_HASH_RETRIES`).
pub const MAX_HASH_TRIES: usize = 5;

/// relayd's in-memory `SIPHASH_KEY` for a plan key.
///
/// The plan stores a key as written: the 16 bytes of `0x` + 32 hex digits in text order,
/// or the 16 bytes of the MD5 digest of any other string (`relaydc` freeze, `hash_key`).
/// relayd keeps it as `u_int32_t data[4]`: `sscanf("0x%8x%8x%8x%8x")` makes each group
/// of 8 hex digits one host-order word, and for MD5 `HTONL` is applied to each of the
/// four words after `MD5Final` (parse.y `hashkey`). `SipHash_Init` then loads `k0`/`k1`
/// little-endian from that memory. On the little-endian machines relayd runs on (amd64,
/// arm64, i386) the memory is therefore each 4-byte group of the written key reversed;
/// this returns that, the standard SipHash key bytes (`k0` = bytes 0..8 little-endian).
/// A random key stays random under this permutation.
pub fn sip_key(plan_key: &[u8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, i) in out.chunks_exact_mut(4).zip(plan_key.chunks_exact(4)) {
        for (d, s) in o.iter_mut().zip(i.iter().rev()) {
            *d = *s;
        }
    }
    out
}

/// A session's SipHash-2-4 context (relayd's `se_siphashctx`): fed incrementally,
/// without allocating, by `hash` filter actions and by [`pick`].
///
/// `Copy` and small; create one per session with the relay's key. For relays whose
/// tables use no hash mode the key does not matter (relayd never ends such a context).
#[derive(Clone, Copy)]
pub struct Hasher {
    /// The freshly keyed state (`SipHash24_Init`), restored by [`Hasher::reset`].
    init: SipHasher24,
    state: SipHasher24,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        f.debug_struct("Hasher").finish_non_exhaustive()
    }
}

impl Hasher {
    /// A context keyed with a plan key (`Target::Table::key`, or the key relayd-run drew
    /// for the relay), laid out as relayd lays it out ([`sip_key`]).
    pub fn new(plan_key: &[u8; 16]) -> Self {
        Self::from_sip_key(&sip_key(plan_key))
    }

    /// A context keyed with standard SipHash key bytes (`k0` = bytes 0..8 little-endian,
    /// `k1` = bytes 8..16), as the SipHash paper's test vectors use.
    pub fn from_sip_key(key: &[u8; 16]) -> Self {
        let init = SipHasher24::new_with_key(key);
        Self { init, state: init }
    }

    /// Feeds raw bytes (`SipHash24_Update`): what a `hash` filter action adds.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.state.write(bytes);
    }

    /// Feeds an address as `relay_hash_addr(ctx, ss, -1)` does: the 4 bytes of
    /// `in_addr` or the 16 bytes of `in6_addr`, nothing else.
    ///
    /// The address is fed in the family it has; relayd on OpenBSD never sees
    /// IPv4-mapped IPv6 addresses, so a runtime with dual-stack sockets should pass
    /// `IpAddr::to_canonical()` of what it accepted.
    pub fn feed_addr(&mut self, addr: IpAddr) {
        match addr {
            IpAddr::V4(a) => self.feed(&a.octets()),
            IpAddr::V6(a) => self.feed(&a.octets()),
        }
    }

    /// Feeds an address and a port as `relay_hash_addr(ctx, &rl_conf.ss, rl_conf.port)`
    /// does: the address bytes ([`Hasher::feed_addr`]), then the port's two bytes in
    /// network order (relayd keeps ports as `htons` values and feeds the `in_port_t`'s
    /// memory).
    pub fn feed_listen(&mut self, addr: IpAddr, port: u16) {
        self.feed_addr(addr);
        self.feed(&port.to_be_bytes());
    }

    /// Feeds what `relay_from_table` adds for `mode` (nothing for the modes that do not
    /// hash): source-hash → client; loadbalance → client, listen address and port;
    /// hash → listen address and port.
    pub fn feed_for_mode(&mut self, mode: &Mode, client: IpAddr, listen: IpAddr, port: u16) {
        match mode {
            Mode::SourceHash => self.feed_addr(client),
            Mode::Loadbalance => {
                self.feed_addr(client);
                self.feed_listen(listen, port);
            }
            Mode::Hash => self.feed_listen(listen, port),
            Mode::Roundrobin | Mode::Random | Mode::LeastStates => {}
        }
    }

    /// The hash of everything fed since the last reset (`SipHash24_End`), without
    /// changing the context.
    pub fn finish(&self) -> u64 {
        self.state.finish()
    }

    /// Forgets everything fed (`SipHash24_Init` with the same key).
    pub fn reset(&mut self) {
        self.state = self.init;
    }

    /// [`Hasher::finish`] then [`Hasher::reset`], as `relay_from_table` does.
    pub fn end(&mut self) -> u64 {
        let h = self.finish();
        self.reset();
        h
    }
}

/// Whether a host of a table counts as up for balancing: relay_from_table's
/// `!table->conf.check || host->up == HOST_UP`.
///
/// A table without a check balances over all its hosts, even hosts disabled with
/// `relayctl host disable` (which only sets the host's state to unknown).
pub fn counts_as_up(table_has_check: bool, host_is_up: bool) -> bool {
    !table_has_check || host_is_up
}

/// Per-table balancing state of one relay worker: relayd's `rlt_index`.
///
/// relayd keeps one per (relay, forwarded table) in each relay process, and a relay with
/// several `listen on` lines is several relays (`relay_inherit` copies the table list), so
/// relayd-run keeps one per (listener, forward) per worker thread. It starts at 0 with
/// every plan (`relay_launch`). Only round-robin uses it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableState {
    /// The host round-robin tries first next time (reset to 0 when out of range).
    pub index: u32,
}

impl TableState {
    /// The state of a freshly loaded plan.
    pub const fn new() -> Self {
        Self { index: 0 }
    }
}

/// What a choice may need besides the hosts' states; fill in all of it, each mode reads
/// what it needs.
#[derive(Debug)]
pub struct PickInputs<'a> {
    /// The session's hash context, already fed by the `hash` filter actions applied since
    /// its last reset. Hash modes feed their bytes, end it and reset it; round-robin and
    /// random leave it untouched (as relayd does).
    pub hasher: &'a mut Hasher,
    /// The client's address (`se_in.ss`; no port).
    pub client: IpAddr,
    /// The relay's configured listen address (`rl_conf.ss`): the `Listener` the session
    /// was accepted on, not `getsockname()`.
    pub listen: IpAddr,
    /// The listen port.
    pub listen_port: u16,
    /// A uniformly distributed random number, drawn by the caller for this choice; only
    /// `random` mode reads it. relayd uses `arc4random_uniform(n)`; here the start is
    /// `random % n`, whose bias (at most n / 2^64) is far below measurability.
    pub random: u64,
}

/// The host relayd would choose in a table, or `None` when no host counts as up.
///
/// `up[i]` says whether host `i` (table order, as `relay_launch` numbers them) counts as
/// up ([`counts_as_up`]). `state` is the worker's [`TableState`] for this table of this
/// relay. Per mode (`relay_from_table`):
///
/// * `roundrobin`: start at `state.index` (0 if out of range), walk forward to the first
///   host up, wrapping; then `state.index = chosen + 1`.
/// * `random`: start at `random % n`, walk forward as above.
/// * `hash`, `loadbalance`, `source-hash`: feed the mode's bytes ([`Hasher::feed_for_mode`]),
///   `h = end()`; then up to `min(n, 5)` times: `idx = h % n`, done if host `idx` is up,
///   else `h >>= 1`; if none was up, walk forward from the last `idx`, wrapping.
/// * `least-states` is a redirection mode; relayd refuses it for relays at parse time
///   (and `relay_from_table` would `fatalx("unsupported mode")`). Here it behaves as
///   round-robin, relayd's default mode, so a plan that slipped through still balances.
///
/// Returns `None`, touching neither `state` nor the hasher, when no host is up, when the
/// table is empty, or when it has more than [`MAX_HOSTS`] hosts (relayd does not start
/// with such a table). relayd itself never calls this with no host up: [`choose_table`]
/// refuses such a table first ("no active hosts").
pub fn pick(
    mode: &Mode,
    up: &[bool],
    state: &mut TableState,
    inputs: PickInputs<'_>,
) -> Option<usize> {
    let n = up.len();
    if n == 0 || n > MAX_HOSTS || !up.contains(&true) {
        return None;
    }
    match mode {
        Mode::Roundrobin | Mode::LeastStates => {
            let start = usize::try_from(state.index)
                .ok()
                .filter(|&i| i < n)
                .unwrap_or(0);
            let chosen = walk_forward(up, start)?;
            // `chosen + 1 <= MAX_HOSTS`, always a u32.
            state.index = u32::try_from(chosen + 1).unwrap_or(0);
            Some(chosen)
        }
        Mode::Random => walk_forward(up, reduce(inputs.random, n)),
        Mode::Hash | Mode::Loadbalance | Mode::SourceHash => {
            let h = inputs.hasher;
            h.feed_for_mode(mode, inputs.client, inputs.listen, inputs.listen_port);
            hash_index(h.end(), up)
        }
    }
}

/// The host a hash `h` selects (the hash-mode part of [`pick`], for explaining a
/// choice): up to `min(n, 5)` candidates `h % n`, halving `h` after each one that is
/// down, then a forward walk from the last candidate. `None` when no host is up or the
/// table is empty or too large.
pub fn hash_index(h: u64, up: &[bool]) -> Option<usize> {
    let n = up.len();
    if n == 0 || n > MAX_HOSTS || !up.contains(&true) {
        return None;
    }
    let mut p = h;
    let mut idx = 0;
    for _ in 0..n.min(MAX_HASH_TRIES) {
        idx = reduce(p, n);
        if up.get(idx).copied().unwrap_or(false) {
            return Some(idx);
        }
        p >>= 1;
    }
    walk_forward(up, idx)
}

/// `x mod n` as an index (`n` ≥ 1 and ≤ [`MAX_HOSTS`], so the result fits).
fn reduce(x: u64, n: usize) -> usize {
    let n64 = u64::try_from(n).unwrap_or(u64::MAX);
    usize::try_from(x % n64.max(1)).unwrap_or(0)
}

/// The first host up at `start` or after it, wrapping once around the table
/// (relay_from_table's `TAILQ_NEXT` walk and then the `TAILQ_FOREACH` from the head).
fn walk_forward(up: &[bool], start: usize) -> Option<usize> {
    let n = up.len();
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| up.get(i).copied().unwrap_or(false))
}

/// What table selection needs to know about one of a relay's tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStatus {
    /// The table has a health check (`Check` other than `None`).
    pub has_check: bool,
    /// At least one of its hosts is up (relayd's `table->up > 0`).
    pub any_up: bool,
    /// The table is disabled (`disable` in the config, or `relayctl table disable`).
    pub disabled: bool,
}

impl TableStatus {
    /// Whether a relay may use the table: relay_from_table's
    /// `!(table->conf.check && !table->up)`.
    ///
    /// relay_from_table never looks at the disable flag: disabling a table zeroes its up
    /// count and makes its hosts unknown (`relay_dispatch_pfe`, `IMSG_TABLE_DISABLE`), and
    /// no check runs for it, so a disabled table **with** a check is never usable, while a
    /// disabled table **without** a check still is (relay processes receive every table,
    /// `config_settable`). The reference does not say; the source wins.
    pub fn usable(&self) -> bool {
        !self.has_check || (self.any_up && !self.disabled)
    }
}

/// The table a relay uses for a session, as an index into `tables` (the relay's forward
/// tables in config order), or `None`: relayd closes the session ("no active hosts").
///
/// A table selected by a filter rule (`forward to <t>`, bound to this relay's instance of
/// it) is used alone: if it is not usable the answer is `None`, the other tables are not
/// tried. Otherwise the first usable table (relay_from_table's `TAILQ_FOREACH` over
/// `rl_tables`; every relay table carries `F_USED`, so that test never excludes one).
/// A rule-selected index outside `tables` yields `None`. `tables` may be lazy: only
/// the statuses the choice needs are looked at, and nothing is collected.
pub fn choose_table<T: std::borrow::Borrow<TableStatus>>(
    tables: impl IntoIterator<Item = T>,
    selected_by_rule: Option<usize>,
) -> Option<usize> {
    let mut tables = tables.into_iter();
    match selected_by_rule {
        Some(i) => tables.nth(i).filter(|t| t.borrow().usable()).map(|_| i),
        None => tables.position(|t| t.borrow().usable()),
    }
}
