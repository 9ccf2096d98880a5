//! Parsing: tokens to the syntax tree, with error recovery.
//!
//! The grammar (`grammar.lalrpop`) is LR(1) over the tokens of `lex`. Its locations are
//! token indices; [`span`] turns an index range into a source span. Syntax errors are
//! reported with the tokens that would have been accepted, named as a user writes them.

pub mod ast;

#[allow(
    clippy::all,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unused
)]
mod grammar {
    include!(concat!(env!("OUT_DIR"), "/parse/grammar.rs"));
}

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::lex::{Tok, Token};
use crate::source::Span;
use lalrpop_util::{ErrorRecovery, ParseError};

/// The span of tokens `l..r` (token indices).
pub fn span(toks: &[Token], l: usize, r: usize) -> Span {
    match (toks.get(l), r.checked_sub(1).and_then(|i| toks.get(i))) {
        (Some(a), Some(b)) if r > l => a.span.to(b.span),
        (Some(a), _) => Span {
            end: a.span.start,
            ..a.span
        },
        (None, _) => toks
            .last()
            .map(|t| Span {
                start: t.span.end,
                ..t.span
            })
            .unwrap_or(Span::new(crate::source::FileId(0), 0, 0)),
    }
}

/// Parses the token stream; syntax errors go to `diags`, the tree keeps what parsed.
pub fn parse(toks: &[Token], diags: &mut Diagnostics) -> ast::File {
    let mut errors: Vec<ErrorRecovery<usize, Tok, std::convert::Infallible>> = Vec::new();
    let input = toks
        .iter()
        .enumerate()
        .map(|(i, t)| Ok::<_, std::convert::Infallible>((i, t.tok.clone(), i + 1)));
    let result = grammar::FileParser::new().parse(toks, &mut errors, input);
    for e in errors {
        report(toks, e.error, diags);
    }
    match result {
        Ok(file) => file,
        Err(e) => {
            report(toks, e, diags);
            ast::File::default()
        }
    }
}

fn report(
    toks: &[Token],
    error: ParseError<usize, Tok, std::convert::Infallible>,
    diags: &mut Diagnostics,
) {
    match error {
        ParseError::UnrecognizedToken {
            token: (l, tok, _),
            expected,
        } => {
            if tok == Tok::Poison {
                return; // the lexer has said why
            }
            let at = toks[l].span;
            let mut d = Diagnostic::relayd(Code::SyntaxError, at, "syntax error");
            d.message = format!("syntax error: unexpected {}", tok.describe());
            if let Some(o) = &toks[l].origin {
                d = d.label(o.def, format!("from the value of macro `{}`", o.name));
            }
            diags.push(d.help(expected_help(&expected)));
        }
        ParseError::UnrecognizedEof { location, expected } => {
            let at = span(toks, location, location);
            let d = Diagnostic::relayd(Code::SyntaxError, at, "syntax error");
            let mut d = d;
            d.message = "syntax error: unexpected end of file".into();
            diags.push(d.help(expected_help(&expected)));
        }
        ParseError::InvalidToken { location } => {
            let at = span(toks, location, location + 1);
            diags.push(Diagnostic::relayd(Code::SyntaxError, at, "syntax error"));
        }
        ParseError::ExtraToken { token: (l, tok, _) } => {
            let mut d = Diagnostic::relayd(Code::SyntaxError, toks[l].span, "syntax error");
            d.message = format!("syntax error: unexpected {}", tok.describe());
            diags.push(d);
        }
        ParseError::User { error } => match error {},
    }
}

/// "expected one of …", with lalrpop's terminal names turned into what a user types.
fn expected_help(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| match e.as_str() {
            "\"\\n\"" => "end of line".to_string(),
            "STRING" => "a word or quoted string".to_string(),
            "NUMBER" => "a number".to_string(),
            other => format!("`{}`", other.trim_matches('"')),
        })
        .collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 => "nothing more was expected here".to_string(),
        1 => format!("expected {}", names[0]),
        n if n > 12 => format!(
            "expected one of {}, … ({} choices)",
            names[..12].join(", "),
            n
        ),
        _ => format!("expected one of {}", names.join(", ")),
    }
}
