//! `analyze` on 50 000 rules finishes: the algorithm is not quadratic by design. There is
//! no timing assertion here (a benchmark elsewhere measures it); a quadratic pass would
//! take minutes in a debug build.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use relaydc_spec::filter::url::digest_hex;
use relaydc_spec::filter::{
    analyze, Action, Case, DigestAlg, Direction, Entity, EntityTest, FindingKind, Key, Pattern,
    Prefix, Rule, SetOrClear, ValueTest,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A small deterministic generator (xorshift), so the rule set is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn glob(s: String) -> Pattern {
    Pattern::glob(s, Case::Sensitive)
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

fn base(action: Action, quick: bool) -> Rule {
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

/// The kinds of rules large configurations are made of: block lists of hosts, paths,
/// url digests and client addresses, header rewrites, tagging chains.
pub fn generate(n: usize, seed: u64) -> Vec<Rule> {
    let mut rng = Rng(seed | 1);
    let mut rules = Vec::with_capacity(n);
    for k in 0..n {
        let kind = rng.below(10);
        let quick = rng.below(3) != 0;
        let action = match rng.below(6) {
            0 => Action::Pass,
            1 => Action::Match,
            _ => Action::Block,
        };
        let mut r = base(action, quick);
        let v = rng.below(n as u64 / 4 + 1);
        match kind {
            0 => r.tests.push(test(
                Entity::Header,
                Key::Pattern(glob("Host".into())),
                ValueTest::Matches(glob(format!("host{v}.example.com"))),
            )),
            1 => r.tests.push(test(
                Entity::Header,
                Key::Pattern(glob("Host".into())),
                ValueTest::Matches(glob(format!("*.zone{}.example", v % 500))),
            )),
            2 => r.tests.push(test(
                Entity::Path,
                Key::Pattern(glob(format!("/p{}/*", v % 2000))),
                ValueTest::Any,
            )),
            3 => r.tests.push(test(
                Entity::Path,
                Key::Pattern(glob(format!("/p{}/x{v}", v % 2000))),
                ValueTest::Any,
            )),
            4 => r.tests.push(test(
                Entity::Url,
                Key::Digest {
                    alg: DigestAlg::Sha1,
                    hex: digest_hex(DigestAlg::Sha1, format!("site{v}.example/").as_bytes()),
                },
                ValueTest::Any,
            )),
            5 => {
                r.from = Some(Prefix {
                    addr: IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + (v as u32) * 256)),
                    len: if rng.below(4) == 0 { 16 } else { 32 },
                })
            }
            6 => {
                r.from = Some(Prefix {
                    addr: IpAddr::V6(Ipv6Addr::from(0x2001_0db8u128 << 96 | u128::from(v))),
                    len: 128,
                })
            }
            7 => {
                r.action = Action::Match;
                r.tag = Some(SetOrClear::Set((v % 50) as u32));
                r.tests.push(test(
                    Entity::Cookie,
                    Key::Pattern(glob(format!("c{}", v % 300))),
                    ValueTest::Any,
                ));
            }
            8 => {
                r.tagged = Some((v % 60) as u32);
                r.tests.push(test(
                    Entity::Query,
                    Key::Pattern(glob(format!("q{}", v % 100))),
                    ValueTest::Matches(glob(format!("{}", v % 7))),
                ));
            }
            _ => {
                r.tests.push(test(
                    Entity::Header,
                    Key::Pattern(glob(format!("X-H{}", v % 1000))),
                    ValueTest::Any,
                ));
                if k % 7 == 0 {
                    r.direction = Direction::Response;
                }
            }
        }
        rules.push(r);
    }
    rules
}

#[test]
fn fifty_thousand_rules() {
    let rules = generate(50_000, 0x5eed);
    let start = std::time::Instant::now();
    let findings = analyze(&rules);
    eprintln!(
        "analyze: {} rules, {} findings, {:?}",
        rules.len(),
        findings.len(),
        start.elapsed()
    );
    // Sanity: a set this redundant has dead rules of every kind, and every finding
    // points at a real rule.
    assert!(findings
        .iter()
        .any(|f| matches!(f.kind, FindingKind::ShadowedBy { .. })));
    assert!(findings
        .iter()
        .any(|f| matches!(f.kind, FindingKind::OverriddenBy { .. })));
    assert!(findings
        .iter()
        .any(|f| matches!(f.kind, FindingKind::Unsatisfiable { .. })));
    assert!(findings.iter().all(|f| f.rule < rules.len()));
    assert!(findings.windows(2).all(|w| w[0].rule < w[1].rule));
}
