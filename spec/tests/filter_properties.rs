//! Law: a rule `analyze` calls dead never gives the verdict and, if it is a `match` rule,
//! is never queued — for any message sequence of any session.
//!
//! Rules and messages come from small alphabets (a few header names in several cases,
//! globs and Lua patterns over them, a few paths, hosts, addresses, tags) so that rules
//! overlap, dominate each other and hit relayd's quirks (skip steps, sorted glob lookup,
//! sticky tags, backend addresses cleared by table selection, legacy nodes) often.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use proptest::prelude::*;
use relaydc_spec::filter::url::digest_hex;
use relaydc_spec::filter::{
    analyze, evaluate, Action, Case, DigestAlg, Direction, Entity, EntityTest, Family, Key,
    KeyOption, Legacy, OwnedMessage, Pattern, Prefix, Rule, SessionState, SetOrClear, ValueTest,
};
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn glob(s: &str) -> Pattern {
    Pattern::glob(s.to_string(), Case::Sensitive)
}

fn iglob(s: &str) -> Pattern {
    Pattern::glob(s.to_string(), Case::Insensitive)
}

fn lua(s: &str) -> Pattern {
    Pattern::Lua {
        text: s.to_string(),
    }
}

fn prefix(s: &str, len: u8) -> Prefix {
    Prefix { addr: ip(s), len }
}

// --- rules -----------------------------------------------------------------------------

fn key_strategy(entity: Entity) -> BoxedStrategy<Key> {
    let pats: Vec<Pattern> = match entity {
        Entity::Header => vec![
            glob("Host"),
            glob("x-a"),
            glob("X-A"),
            glob("X-B"),
            glob("X-*"),
            glob("x-?"),
            glob("[xX]-[ab]"),
            glob("*"),
            glob("X A"),
            glob("[z-a]*"),
            lua("^X"),
            lua("(X)"),
            glob("Cookie"),
            glob("User-Agent"),
        ],
        Entity::Cookie => vec![glob("s"), glob("S"), glob("t"), glob("s*"), lua("^s$")],
        Entity::Path => vec![
            glob("/"),
            glob("/a*"),
            glob("/a/*"),
            glob("/A/*"),
            glob("*"),
            glob("/a/b"),
            iglob("/A/B"),
            glob("/[z-a]"),
            lua("^/a"),
            lua("%"),
        ],
        Entity::Query => vec![glob("x"), glob("y"), glob("*"), glob("[xy]"), lua("^x$")],
        Entity::Url => vec![
            glob("example.com/"),
            glob("*"),
            glob("/a*"),
            glob("www.example.com/a/"),
            glob("example.com/a/b"),
            glob("*.example.com/"),
            lua("example"),
        ],
    };
    let mut choices: Vec<BoxedStrategy<Key>> = vec![
        Just(Key::Any).boxed(),
        proptest::sample::select(pats)
            .prop_map(Key::Pattern)
            .boxed(),
    ];
    if entity == Entity::Url {
        let d = digest_hex(DigestAlg::Sha1, b"example.com/a/");
        choices.push(
            Just(Key::Digest {
                alg: DigestAlg::Sha1,
                hex: d,
            })
            .boxed(),
        );
    }
    proptest::strategy::Union::new(choices).boxed()
}

fn value_strategy() -> impl Strategy<Value = ValueTest> {
    prop_oneof![
        3 => Just(ValueTest::Any),
        6 => proptest::sample::select(vec![
            glob("a"),
            glob("A"),
            glob("*"),
            glob("a*"),
            glob("ev*"),
            glob("*.com"),
            glob("[z-a]"),
            glob("x=1*"),
            glob("1"),
            iglob("A"),
            iglob("b"),
            iglob("a*"),
            lua("^a$"),
            lua("(a)"),
            lua(""),
        ])
        .prop_map(ValueTest::Matches),
    ]
}

fn option_strategy() -> impl Strategy<Value = Option<KeyOption>> {
    prop_oneof![
        6 => Just(None),
        1 => Just(Some(KeyOption::Append)),
        1 => Just(Some(KeyOption::Set)),
        1 => Just(Some(KeyOption::Remove)),
        2 => Just(Some(KeyOption::Log)),
        1 => Just(Some(KeyOption::Hash)),
    ]
}

fn test_strategy() -> impl Strategy<Value = EntityTest> {
    proptest::sample::select(vec![
        Entity::Header,
        Entity::Header,
        Entity::Cookie,
        Entity::Path,
        Entity::Path,
        Entity::Query,
        Entity::Url,
    ])
    .prop_flat_map(|entity| {
        (key_strategy(entity), value_strategy(), option_strategy()).prop_map(
            move |(key, value, option)| EntityTest {
                entity,
                option,
                key,
                value,
                write: None,
            },
        )
    })
}

fn legacy_strategy() -> impl Strategy<Value = Rule> {
    let alts = proptest::collection::vec(
        proptest::sample::select(vec![
            iglob("a*"),
            iglob("b"),
            iglob("*.com"),
            iglob("[z-a]"),
        ]),
        1..3,
    );
    (
        any::<bool>(),
        proptest::sample::select(vec!["X-A", "Host", "User-Agent"]),
        alts,
        proptest::option::weighted(0.3, 1u32..3),
    )
        .prop_map(|(expect, key, alts, tagged)| {
            let (legacy, value) = if expect {
                (Legacy::Expect, ValueTest::NoneOf(alts))
            } else {
                (
                    Legacy::Filter,
                    ValueTest::Matches(alts.into_iter().next().unwrap()),
                )
            };
            Rule {
                action: Action::Block,
                direction: Direction::Request,
                quick: true,
                family: None,
                from: None,
                to: None,
                method: None,
                tests: vec![EntityTest {
                    entity: Entity::Header,
                    option: None,
                    key: Key::Pattern(glob(key)),
                    value,
                    write: None,
                }],
                tagged,
                tag: None,
                label: None,
                table: None,
                strip: None,
                legacy: Some(legacy),
            }
        })
}

/// A rule in current syntax. `addr_heavy` lists favour address families, prefixes and
/// table selections over entity tests, to exercise skip steps and cleared addresses.
fn current_rule_strategy(addr_heavy: bool) -> impl Strategy<Value = Rule> {
    let (fam_none, from_none, table_none, max_tests) = if addr_heavy {
        (2, 2, 1, 2)
    } else {
        (8, 7, 5, 3)
    };
    let head = (
        prop_oneof![Just(Action::Pass), Just(Action::Block), Just(Action::Match)],
        prop_oneof![4 => Just(Direction::Request), 1 => Just(Direction::Response)],
        any::<bool>(),
        prop_oneof![
            fam_none => Just(None),
            1 => Just(Some(Family::Inet)),
            1 => Just(Some(Family::Inet6)),
        ],
        prop_oneof![
            from_none => Just(None),
            1 => Just(Some(prefix("10.0.0.0", 8))),
            1 => Just(Some(prefix("10.1.0.0", 16))),
            1 => Just(Some(prefix("10.0.0.0", 16))),
            1 => Just(Some(prefix("192.168.0.0", 16))),
            1 => Just(Some(prefix("2001:db8::", 32))),
            1 => Just(Some(prefix("0.0.0.0", 0))),
        ],
        prop_oneof![
            8 => Just(None),
            1 => Just(Some(prefix("192.0.2.0", 24))),
            1 => Just(Some(prefix("198.51.100.0", 24))),
        ],
        prop_oneof![
            8 => Just(None),
            1 => Just(Some("GET".to_string())),
            1 => Just(Some("POST".to_string())),
        ],
    );
    let tail = (
        proptest::collection::vec(test_strategy(), 0..max_tests),
        proptest::option::weighted(0.3, 1u32..4),
        prop_oneof![
            5 => Just(None),
            2 => (1u32..4).prop_map(|t| Some(SetOrClear::Set(t))),
            1 => Just(Some(SetOrClear::Clear)),
        ],
        prop_oneof![4 => Just(None), 1 => Just(Some(SetOrClear::Set(1)))],
        prop_oneof![table_none => Just(None), 1 => Just(Some(1u32)), 1 => Just(Some(2u32))],
    );
    (head, tail).prop_map(
        |(
            (action, direction, quick, family, from, to, method),
            (tests, tagged, tag, label, table),
        )| Rule {
            action,
            direction,
            quick,
            family,
            from,
            to,
            method,
            tests,
            tagged,
            tag,
            label,
            table,
            strip: None,
            legacy: None,
        },
    )
}

/// One change to a pool rule, so that lists hold near-duplicates that dominate each other.
#[derive(Clone, Debug)]
enum Tweak {
    Same,
    Quick(bool),
    Action(Action),
    From(Option<Prefix>),
    Family(Option<Family>),
    Tagged(Option<u32>),
    Table(Option<u32>),
    DropTest,
    /// Lower it as a legacy node would be: `block quick` with legacy matching.
    Legacy(Legacy),
}

fn tweak_strategy() -> impl Strategy<Value = Tweak> {
    prop_oneof![
        3 => Just(Tweak::Same),
        2 => any::<bool>().prop_map(Tweak::Quick),
        2 => prop_oneof![Just(Action::Pass), Just(Action::Block), Just(Action::Match)]
            .prop_map(Tweak::Action),
        1 => proptest::option::of(proptest::sample::select(vec![
            prefix("10.0.0.0", 8),
            prefix("10.0.0.0", 16),
            prefix("10.1.0.0", 16),
            prefix("0.0.0.0", 0),
        ]))
        .prop_map(Tweak::From),
        1 => proptest::option::of(prop_oneof![Just(Family::Inet), Just(Family::Inet6)])
            .prop_map(Tweak::Family),
        1 => proptest::option::of(1u32..3).prop_map(Tweak::Tagged),
        1 => proptest::option::of(1u32..3).prop_map(Tweak::Table),
        1 => Just(Tweak::DropTest),
        1 => prop_oneof![Just(Legacy::Filter), Just(Legacy::Expect)].prop_map(Tweak::Legacy),
    ]
}

fn apply_tweak(mut r: Rule, t: Tweak) -> Rule {
    match t {
        Tweak::Same => {}
        Tweak::Quick(q) => r.quick = q,
        Tweak::Action(a) => r.action = a,
        Tweak::From(p) => r.from = p,
        Tweak::Family(f) => r.family = f,
        Tweak::Tagged(t) => r.tagged = t,
        Tweak::Table(t) => r.table = t,
        Tweak::DropTest => {
            r.tests.pop();
        }
        Tweak::Legacy(l) => {
            r.legacy = Some(l);
            r.action = Action::Block;
            r.quick = true;
            if l == Legacy::Expect {
                for t in &mut r.tests {
                    if let ValueTest::Matches(p) = &t.value {
                        t.value = ValueTest::NoneOf(vec![p.clone()]);
                    }
                }
            }
        }
    }
    r
}

fn rules_strategy() -> impl Strategy<Value = Vec<Rule>> {
    let near_duplicates = (
        proptest::collection::vec(current_rule_strategy(false), 1..4),
        proptest::collection::vec((any::<proptest::sample::Index>(), tweak_strategy()), 2..10),
    )
        .prop_map(|(pool, picks)| {
            picks
                .into_iter()
                .map(|(ix, t)| apply_tweak(ix.get(&pool).clone(), t))
                .collect::<Vec<_>>()
        });
    prop_oneof![
        3 => proptest::collection::vec(
            prop_oneof![8 => current_rule_strategy(false), 1 => legacy_strategy()],
            1..14,
        ),
        1 => proptest::collection::vec(current_rule_strategy(true), 1..10),
        3 => near_duplicates,
    ]
}

// --- messages --------------------------------------------------------------------------

fn request_strategy() -> impl Strategy<Value = OwnedMessage> {
    let headers = proptest::collection::vec(
        (
            proptest::sample::select(vec!["X-A", "x-a", "X-B", "User-Agent", "Cookie", "Accept"]),
            proptest::sample::select(vec!["a", "A", "b", "evil.com", "", "s=a; t=b", "S=\"A\""]),
        ),
        0..5,
    );
    let host = proptest::option::weighted(
        0.8,
        proptest::sample::select(vec![
            "www.example.com",
            "example.com",
            "EXAMPLE.com.",
            "a.b.www.example.com",
            "...",
            "",
            "1.2.3.4",
        ]),
    );
    (
        proptest::sample::select(vec!["GET", "POST"]),
        proptest::sample::select(vec![
            "/",
            "/a",
            "/a/b",
            "/a/b?x=1",
            "/A/b.png?X=1&y=a",
            "/a/?y",
            "*",
            "",
            "/a?",
        ]),
        headers,
        host,
        addr_strategy(),
    )
        .prop_map(
            |(method, target, headers, host, (client, backend, local))| {
                let mut m = OwnedMessage::request(method, target);
                for (n, v) in headers {
                    m.headers.push((n.to_string(), v.to_string()));
                }
                if let Some(h) = host {
                    m.headers.push(("Host".to_string(), h.to_string()));
                }
                m.client = client;
                m.backend = backend;
                m.local = local;
                m
            },
        )
}

fn addr_strategy() -> impl Strategy<Value = (Option<IpAddr>, Option<IpAddr>, Option<IpAddr>)> {
    (
        proptest::sample::select(vec![
            "10.0.0.1",
            "10.1.2.3",
            "10.2.0.1",
            "192.168.0.1",
            "172.16.0.1",
            "2001:db8::5",
            "::1",
        ]),
        proptest::option::of(proptest::sample::select(vec![
            "10.9.9.9",
            "192.168.5.5",
            "2001:db8::9",
        ])),
        proptest::option::weighted(
            0.8,
            proptest::sample::select(vec!["192.0.2.1", "198.51.100.7"]),
        ),
    )
        .prop_map(|(c, b, l)| (Some(ip(c)), b.map(ip), l.map(ip)))
}

fn response_strategy() -> impl Strategy<Value = OwnedMessage> {
    (
        proptest::collection::vec(
            (
                proptest::sample::select(vec!["X-A", "Set-Cookie", "X-B"]),
                proptest::sample::select(vec!["a", "A", "s=a", "b"]),
            ),
            0..3,
        ),
        addr_strategy(),
    )
        .prop_map(|(headers, (client, backend, local))| {
            let mut m = OwnedMessage::response();
            for (n, v) in headers {
                m.headers.push((n.to_string(), v.to_string()));
            }
            m.client = client;
            m.backend = backend;
            m.local = local;
            m
        })
}

fn session_strategy() -> impl Strategy<Value = Vec<OwnedMessage>> {
    proptest::collection::vec(
        prop_oneof![3 => request_strategy(), 1 => response_strategy()],
        1..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8000))]

    #[test]
    fn dead_rules_never_decide_nor_apply(
        rules in rules_strategy(),
        sessions in proptest::collection::vec(session_strategy(), 1..6),
    ) {
        let findings = analyze(&rules);
        let mut dead = vec![false; rules.len()];
        for f in &findings {
            dead[f.rule] = true;
        }
        let mut queued = Vec::new();
        for session in &sessions {
            let mut state = SessionState::default();
            for msg in session {
                let out = evaluate(&rules, msg, &mut state, &mut queued);
                if let Some(d) = out.decided_by {
                    prop_assert!(
                        !dead[d],
                        "rule {} decided although {:?}\nrules: {:#?}\nmessage: {:#?}",
                        d, findings.iter().find(|f| f.rule == d), rules, msg
                    );
                }
                for &q in &queued {
                    prop_assert!(
                        !dead[q],
                        "rule {} queued although {:?}\nrules: {:#?}\nmessage: {:#?}",
                        q, findings.iter().find(|f| f.rule == q), rules, msg
                    );
                }
                // Responses never look urls up, so they never abort.
                if msg.direction == Direction::Response {
                    prop_assert!(out.aborted_by.is_none());
                }
            }
        }
    }
}

/// The generators do produce dominated and unsatisfiable rules (the law above is not
/// vacuous): a fixed-seed run over the same strategies finds all three kinds.
#[test]
fn generators_exercise_every_finding_kind() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, TestRng, TestRunner};
    use relaydc_spec::filter::FindingKind;

    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let (mut shadowed, mut overridden, mut unsat) = (0, 0, 0);
    for _ in 0..500 {
        let rules = rules_strategy().new_tree(&mut runner).unwrap().current();
        for f in analyze(&rules) {
            match f.kind {
                FindingKind::ShadowedBy { .. } => shadowed += 1,
                FindingKind::OverriddenBy { .. } => overridden += 1,
                FindingKind::Unsatisfiable { .. } => unsat += 1,
            }
        }
    }
    assert!(shadowed > 10, "shadowed {shadowed}");
    assert!(overridden > 10, "overridden {overridden}");
    assert!(unsat > 10, "unsatisfiable {unsat}");
}

mod glob_shapes {
    //! The pre-compiled glob shapes answer exactly as fnmatch does.
    use proptest::prelude::*;
    use relaydc_spec::filter::glob::{fnmatch, matches};
    use relaydc_spec::filter::{Case, GlobShape, Pattern};

    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b'a'),
                Just(b'B'),
                Just(b'/'),
                Just(b'*'),
                Just(b'?'),
                Just(b'['),
                Just(b']'),
                Just(b'\\'),
                Just(b'.'),
                Just(0u8),
                Just(0xe9u8),
            ],
            0..7,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        #[test]
        fn shape_matches_like_fnmatch(pat in text(), s in text(), fold in any::<bool>()) {
            let case = if fold { Case::Insensitive } else { Case::Sensitive };
            let shape = GlobShape::of(&pat);
            prop_assert_eq!(matches(&pat, shape, &s, case), fnmatch(&pat, &s, case),
                "pattern {:?} ({:?}) on {:?}", pat, shape, s);
        }
    }

    #[test]
    fn common_shapes_are_recognised() {
        let shape = |t: &str| match Pattern::glob(t, Case::Sensitive) {
            Pattern::Glob { shape, .. } => shape,
            Pattern::Lua { .. } => GlobShape::General,
        };
        assert_eq!(shape("*"), GlobShape::Any);
        assert_eq!(shape("www.example.com"), GlobShape::Literal);
        assert_eq!(shape("/admin/*"), GlobShape::Prefix(7));
        assert_eq!(shape("*.example.com"), GlobShape::Suffix(12));
        assert_eq!(shape("/a/*/b"), GlobShape::General);
        assert_eq!(shape("[a-z]*"), GlobShape::General);
    }
}
