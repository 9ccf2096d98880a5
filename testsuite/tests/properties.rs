//! Property tests of the front end (laws listed in testsuite/README.md).

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test that cannot read its own fixtures should fail loudly"
)]

use proptest::prelude::*;
use relaydc::diag::Diagnostics;
use relaydc::lex::{expand, Tok};
use relaydc::source::{PathRules, SourceMap};

fn lex(text: &str, defines: &[String]) -> Vec<Tok> {
    let mut sources = SourceMap::new(PathRules::default());
    let id = sources.add("t.conf", text.to_string());
    let mut diags = Diagnostics::default();
    expand::lex(&mut sources, id, defines, &mut diags)
        .tokens
        .into_iter()
        .map(|t| t.tok)
        .collect()
}

/// The last token that is not a newline: the expansion on the file's last line.
fn last_word(toks: &[Tok]) -> Option<&Tok> {
    toks.iter().rev().find(|t| **t != Tok::Newline)
}

fn front_end(text: &str) {
    let mut sources = SourceMap::new(PathRules::default());
    let id = sources.add("t.conf", text.to_string());
    let mut diags = Diagnostics::default();
    let lexed = expand::lex(&mut sources, id, &[], &mut diags);
    let ast = relaydc::parse::parse(&lexed.tokens, &mut diags);
    let _ = relaydc::era::judge(&ast, None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// lex ∘ parse is total: no input panics.
    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        front_end(&String::from_utf8_lossy(&bytes));
    }

    /// Same, on inputs made of relayd.conf's own words (reaches deeper into the grammar).
    #[test]
    fn never_panics_on_words(words in proptest::collection::vec(prop::sample::select(vec![
        "relay", "x", "{", "}", "listen", "on", "127.0.0.1", "port", "80", "forward", "to", "<", ">",
        "t", "table", "\n", "protocol", "http", "match", "request", "header", "\"H\"", "value", "$m",
        "m=\"1\"", "include", "#", "\\\n", "tls", "ssl", "check", "mode", "hash", "-", "9999999999999999999999",
        "pass", "block", "quick", "from", "/", "24", "label", "append", "change", "filter", "expect",
    ]), 0..60)) {
        front_end(&words.join(" "));
    }

    /// A macro reference inside quotes is never expanded.
    #[test]
    fn no_expansion_inside_quotes(name in "[a-z][a-z0-9_]{0,8}", value in "[a-z0-9.]{1,10}") {
        prop_assume!(relaydc::lex::Kw::lookup(&name).is_none());
        let toks = lex(&format!("{name}=\"{value}\"\nx \"${name}\"\n"), &[]);
        let quoted = Tok::Str(format!("${}", name));
        prop_assert!(toks.contains(&quoted));
    }

    /// `-D name=value` beats any definition in the file, before or after.
    #[test]
    fn define_beats_file(name in "[a-z][a-z0-9_]{0,8}", a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
        prop_assume!(relaydc::lex::Kw::lookup(&name).is_none() && relaydc::lex::Kw::lookup(&a).is_none() && relaydc::lex::Kw::lookup(&b).is_none());
        let toks = lex(&format!("{name}=\"{b}\"\nx ${name}\n"), &[format!("{name}={a}")]);
        // The use expands to the command line's value; `b` appears only in its definition.
        prop_assert_eq!(last_word(&toks), Some(&Tok::Str(a.clone())));
    }

    /// Without `-D`, the last definition before a use wins.
    #[test]
    fn last_definition_wins(name in "[a-z][a-z0-9_]{0,8}", a in "[a-z]{1,8}", b in "[a-z]{1,8}") {
        prop_assume!(relaydc::lex::Kw::lookup(&name).is_none() && relaydc::lex::Kw::lookup(&b).is_none());
        let toks = lex(&format!("{name}=\"{a}\"\n{name}=\"{b}\"\nx ${name}\n"), &[]);
        prop_assert_eq!(last_word(&toks), Some(&Tok::Str(b.clone())));
    }
}
