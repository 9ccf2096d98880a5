//! Lexing: source text to the token stream the parser reads.
//!
//! `raw` cuts a file into relayd's character classes (logos); `expand` then does what
//! relayd's `yylex` does on top: macro definitions and `$name` expansion, `include`
//! splicing, NUMBER versus word, keywords versus strings. The parser never sees a
//! macro or an include boundary, only [`Token`]s, each with the span the user sees
//! and, for tokens that came out of a macro, the span inside the macro's definition.

pub mod expand;
pub mod keywords;
pub mod raw;

use crate::source::Span;
pub use keywords::Kw;

/// What the parser matches on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Kw(Kw),
    /// A bare word that is not a keyword, or any quoted string.
    Str(String),
    Num(i64),
    LBrace,
    RBrace,
    Lt,
    Gt,
    Eq,
    Comma,
    Slash,
    Newline,
    /// Any other character: always a syntax error.
    Other(char),
    /// Stands where the lexer already reported an error (relayd's `findeol`); the
    /// parser recovers at it without a second diagnostic.
    Poison,
}

/// Where a token produced by a macro expansion was defined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub name: String,
    /// The part of the macro's value this token came from.
    pub def: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub tok: Tok,
    /// Where the user sees it: the token itself, or the `$name` it was expanded from.
    pub span: Span,
    pub quoted: bool,
    pub origin: Option<Origin>,
}

impl Tok {
    /// How a token is named in messages.
    pub fn describe(&self) -> String {
        match self {
            Tok::Kw(k) => format!("keyword `{}`", k.text()),
            Tok::Str(s) => format!("`{s}`"),
            Tok::Num(n) => format!("number `{n}`"),
            Tok::LBrace => "`{`".into(),
            Tok::RBrace => "`}`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Slash => "`/`".into(),
            Tok::Newline => "end of line".into(),
            Tok::Other(c) if c.is_control() => format!("character {:?}", c),
            Tok::Other(c) => format!("`{c}`"),
            Tok::Poison => "error".into(),
        }
    }
}
