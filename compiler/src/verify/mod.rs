//! Checks over the typed IR. Each module is one pass with its own codes; all of them
//! report into the sink and never stop at the first finding.
//!
//! * `post`      — relayd's post-parse checks (`load_config`): no actions, timeouts
//!   against the interval, parent ids, unused protocols, plus too many hosts in a relay
//!   table (a runtime abort in relayd) and table templates nothing uses;
//! * `listeners` — addresses claimed twice, wildcard overlaps, redirects that capture a
//!   relay's traffic;
//! * `graph`     — the object graph (relays, redirects, routers → protocols → tables →
//!   hosts): fallback tables never reached, objects only disabled blocks use, and the
//!   DOT rendering behind `relaydc graph`;
//! * `filters`   — filter rules that never decide, rules in protocols that never run
//!   them, `mode hash` without a `hash` rule;
//! * `security`  — unverified TLS backends, a client-supplied X-Forwarded-For kept,
//!   blocks without an answer.

pub mod filters;
pub mod graph;
pub mod listeners;
pub mod post;
pub mod security;

use crate::diag::Diagnostics;
use crate::ir::Config;
use crate::source::Span;

/// Runs every pass. `whole_file` is the span diagnostics without a better place point at
/// (relayd prints its post-parse messages without a line).
/// `syntax_broken`: parts of the file did not parse, so "nothing defined" findings
/// would only repeat the syntax errors.
pub fn run(config: &Config, whole_file: Span, syntax_broken: bool, diags: &mut Diagnostics) {
    post::check(config, whole_file, syntax_broken, diags);
    listeners::check(config, diags);
    graph::check(config, diags);
    filters::check(config, diags);
    security::check(config, diags);
}
