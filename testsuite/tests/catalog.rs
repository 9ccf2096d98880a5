//! The catalog, its explanations, `spec/diagnostics.md` and the corpus agree.
//!
//! * `spec/diagnostics.md` is exactly what the catalog collects
//!   (`UPDATE_EXPECT=1` rewrites it);
//! * every code is triggered by a file in `corpus/invalid/` (its `# codes:` header),
//!   and every code a corpus file names exists;
//! * `relaydc explain` prints each code's explanation.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test that cannot read its own fixtures should fail loudly"
)]

use relaydc_spec::codes::{collected_markdown, CATALOG};
use relaydc_testsuite::workspace;
use std::collections::BTreeSet;

#[test]
fn diagnostics_md_is_current() {
    let path = workspace().join("spec/diagnostics.md");
    let want = collected_markdown();
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &want).expect("write spec/diagnostics.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(have == want, "spec/diagnostics.md is out of date: run `UPDATE_EXPECT=1 cargo test -p relaydc-testsuite --test catalog`");
}

fn header_codes(text: &str) -> BTreeSet<String> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').trim().strip_prefix("codes:"))
        .flat_map(|v| v.split(',').map(|c| c.trim().to_string()))
        .filter(|c| !c.is_empty())
        .collect()
}

fn codes_in(dir: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for e in std::fs::read_dir(workspace().join("corpus").join(dir))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if matches!(
            p.extension().and_then(|x| x.to_str()),
            Some("conf" | "expect")
        ) {
            all.extend(header_codes(
                &std::fs::read_to_string(&p).unwrap_or_default(),
            ));
        }
    }
    all
}

#[test]
fn every_code_has_an_invalid_corpus_case() {
    let invalid = codes_in("invalid");
    let missing: Vec<&str> = CATALOG
        .iter()
        .map(|c| c.id)
        .filter(|id| !invalid.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a corpus/invalid case: {missing:?}"
    );
}

#[test]
fn corpus_names_only_real_codes() {
    let known: BTreeSet<&str> = CATALOG.iter().map(|c| c.id).collect();
    for dir in ["seed", "valid", "invalid", "legacy"] {
        for code in codes_in(dir) {
            assert!(
                known.contains(code.as_str()),
                "corpus/{dir} names unknown code {code}"
            );
        }
    }
}

#[test]
fn explain_prints_every_code() {
    for c in CATALOG {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = relaydc::cli::run(
            vec!["relaydc".into(), "explain".into(), c.id.into()],
            &mut out,
            &mut err,
        );
        assert_eq!(code, 0);
        assert_eq!(String::from_utf8_lossy(&out), c.explanation);
    }
    let mut out = Vec::new();
    let mut err = Vec::new();
    assert_eq!(
        relaydc::cli::run(
            vec!["relaydc".into(), "explain".into(), "RD9999".into()],
            &mut out,
            &mut err
        ),
        2
    );
}
