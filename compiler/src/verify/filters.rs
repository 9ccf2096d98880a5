//! Filter rules: where they never run, and which of them never decide.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::*;
use relaydc_spec::filter::analysis::{self, FindingKind, Part, Unsatisfiable};
use relaydc_spec::filter::{Direction, KeyOption, Rule};

pub fn check(c: &Config, diags: &mut Diagnostics) {
    for p in &c.protocols {
        if p.kind != ProtocolKind::Http && !p.rules.is_empty() && !p.legacy_nodes {
            diags.push(
                Diagnostic::new(
                    Code::RulesNotEvaluated,
                    p.rule_info[0].span,
                    format!("filter rules in {} protocol {} are never evaluated", p.kind.text(), p.name),
                )
                .label(p.span, format!("`{}` is a {} protocol", p.name, p.kind.text()))
                .help(format!("relayd runs filter rules only for http protocols; declare it `http protocol \"{}\"` or remove the rules", p.name)),
            );
        }
    }
    for p in c.protocols.iter().filter(|p| p.kind == ProtocolKind::Http) {
        dead_rules(c, p, diags);
    }
    hash_without_key(c, diags);
}

/// Rules that never decide, found by `spec::filter::analysis` (which reasons about the
/// same `eval` the runtime runs).
fn dead_rules(c: &Config, p: &Protocol, diags: &mut Diagnostics) {
    let word = |r: &Rule| match r.action {
        relaydc_spec::filter::Action::Pass => "pass",
        relaydc_spec::filter::Action::Block => "block",
        relaydc_spec::filter::Action::Match => "match",
    };
    for f in analysis::analyze(&p.rules) {
        let (dead, ir) = (&p.rules[f.rule], &p.rule_info[f.rule]);
        let d = match f.kind {
            FindingKind::ShadowedBy { rule } => Diagnostic::new(
                Code::ShadowedRule,
                ir.span,
                format!(
                    "this {} rule never applies: an earlier `quick` rule always decides first",
                    word(dead)
                ),
            )
            .label(
                p.rule_info[rule].span,
                "this rule matches every request it matches, and stops evaluation",
            )
            .help(
                "remove the rule, or move it above the `quick` rule if it should take precedence",
            ),
            FindingKind::OverriddenBy { rule } => Diagnostic::new(
                Code::OverriddenRule,
                ir.span,
                format!(
                    "this {} rule never decides: a later rule always replaces its verdict",
                    word(dead)
                ),
            )
            .label(
                p.rule_info[rule].span,
                "this later rule matches every request it matches; the last match wins",
            )
            .help("remove the rule, or make it `quick` if it should win"),
            FindingKind::Unsatisfiable { reason } => unsatisfiable(c, ir, &reason),
        };
        diags.push(d);
    }
}

fn unsatisfiable(c: &Config, ir: &RuleInfo, reason: &Unsatisfiable) -> Diagnostic {
    let test_span = |t: usize| ir.test_spans.get(t).copied().unwrap_or(ir.span);
    match reason {
        Unsatisfiable::TagNeverSet { tag } => Diagnostic::new(
            Code::UnsatisfiableRule,
            ir.tagged_span.unwrap_or(ir.span),
            format!(
                "no rule sets tag \"{}\", so this rule never matches",
                c.tags.get(*tag as usize).map_or("?", String::as_str)
            ),
        )
        .help("tag requests in an earlier `match` rule (`tag \"NAME\"`), or fix the tag's spelling"),
        Unsatisfiable::MethodOnResponse => Diagnostic::new(
            Code::UnsatisfiableRule,
            ir.span,
            "a response has no method, so this rule never matches",
        )
        .help("test the method in a request rule"),
        Unsatisfiable::GlobMatchesNothing { test, part } => Diagnostic::new(
            Code::GlobMatchesNothing,
            test_span(*test),
            format!("the {} pattern matches nothing, so this rule never matches", part_word(*part)),
        )
        .help("check the pattern: an empty or reversed `[…]` range matches no character"),
        Unsatisfiable::ImpossibleHeaderName { test } => Diagnostic::new(
            Code::GlobMatchesNothing,
            test_span(*test),
            "no header can have this name, so this rule never matches",
        )
        .help("header names are tokens: letters, digits and !#$%&'*+-.^_`|~, without spaces or colons"),
        Unsatisfiable::BadPattern { test, part, error } => Diagnostic::new(
            Code::GlobMatchesNothing,
            test_span(*test),
            format!("the {} pattern is invalid ({error}), so this rule never matches", part_word(*part)),
        )
        .help("see patterns(7): `%` escapes a magic character, classes are `%a %d %s %w …`"),
    }
}

fn part_word(p: Part) -> &'static str {
    match p {
        Part::Key => "key",
        Part::Value => "value",
    }
}

/// `mode hash` hashes only what `hash` rules feed it, then the relay's own address:
/// without such a rule every client gets the same host.
fn hash_without_key(c: &Config, diags: &mut Diagnostics) {
    let feeds: Vec<bool> = c
        .protocols
        .iter()
        .map(|p| {
            p.kind == ProtocolKind::Http
                && p.rules.iter().any(|rule| {
                    rule.direction == Direction::Request
                        && rule.tests.iter().any(|t| t.option == Some(KeyOption::Hash))
                })
        })
        .collect();
    for r in &c.relays {
        let feeds_hash = r.protocol.is_some_and(|(p, _)| feeds[p.index()]);
        if feeds_hash {
            continue;
        }
        for f in &r.forwards {
            if let Target::Table {
                table,
                mode: Mode::Hash,
                ..
            } = f.target
            {
                diags.push(
                    Diagnostic::new(
                        Code::HashWithoutKey,
                        f.span,
                        format!(
                            "relay {}: `mode hash` without any `hash` rule sends every client to the same host of {}",
                            r.name, c.tables[table.index()].name
                        ),
                    )
                    .help("add a rule that feeds the hash, e.g. `match request header hash \"Host\"` in an http protocol, or use `mode source-hash` to balance by client address"),
                );
            }
        }
    }
}
