//! The catalog, its explanations, `spec/diagnostics.md` and the corpus agree.
//!
//! * `spec/diagnostics.md` is exactly what the catalog collects
//!   (`UPDATE_EXPECT=1` rewrites it);
//! * every code is triggered by a file in `corpus/invalid/` (its `# codes:` header),
//!   has a close-but-clean file in `corpus/valid/` named after it, and every code a
//!   corpus file names exists;
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

/// Every code also has a close-but-clean case: a `corpus/valid/` file named after it
/// (`RD0302-unknown-service-fixed.conf`) that must not trigger it.
#[test]
fn every_code_has_a_close_but_clean_corpus_case() {
    let names: Vec<String> = std::fs::read_dir(workspace().join("corpus/valid"))
        .expect("corpus/valid")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".conf"))
        .collect();
    let missing: Vec<&str> = CATALOG
        .iter()
        .map(|c| c.id)
        .filter(|id| !names.iter().any(|n| n.starts_with(id)))
        .collect();
    assert!(
        missing.is_empty(),
        "codes without a close-but-clean corpus/valid case: {missing:?}"
    );
    // And such a file never reports its own code.
    for n in &names {
        let Some(id) = n.get(..6).filter(|p| p.starts_with("RD")) else {
            continue;
        };
        let text = std::fs::read_to_string(workspace().join("corpus/valid").join(n)).unwrap();
        assert!(
            !header_codes(&text).contains(id),
            "corpus/valid/{n} expects its own code {id}"
        );
    }
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
