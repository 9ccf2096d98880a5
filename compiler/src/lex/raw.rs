//! The raw lexer (logos): relayd's character classes, before macros and keywords.
//!
//! relayd's lexer (parse.y `yylex`) works character by character with push-back; the
//! same decisions are made here as regular expressions plus two hand-written scanners
//! (quoted strings and comments), whose escape rules are too stateful for a regex:
//!
//! * whitespace is space and tab only; `\r` is an ordinary character (a syntax error);
//! * backslash-newline joins lines everywhere outside quotes, also inside comments;
//! * a bare word starts with a letter, digit, `:` or `_` and continues with letters,
//!   digits and punctuation except `( ) { } < > ! = # , /`;
//! * `#` starts a comment wherever a token could start;
//! * `$name` at the start of a token is a macro reference (never inside quotes);
//! * everything else is a one-character token.
//!
//! Numbers are not decided here: whether `80` is a NUMBER depends on the character that
//! follows it, which for a macro's value lies outside the value (see `expand`).

use logos::Logos;

/// How a quoted string ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuoteEnd {
    Closed,
    /// End of file before the closing quote.
    Eof,
}

/// Whether a comment swallowed following lines through a trailing backslash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommentEnd {
    Line,
    Continued,
}

#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t]+")]
pub enum Raw {
    #[regex(r"\\\n")]
    Continuation,
    #[token("\n")]
    Newline,
    #[token("\r")]
    CarriageReturn,
    #[token("#", comment)]
    Comment(CommentEnd),
    #[token("\"", quoted)]
    #[token("'", quoted)]
    Quoted(QuoteEnd),
    #[regex(r"\$[A-Za-z0-9_]*")]
    MacroRef,
    // A word: first character, then allowed characters, backslash-escaped allowed
    // characters (relayd's lgetc drops the backslash) and line continuations.
    #[regex(r#"[A-Za-z0-9:_](?:[A-Za-z0-9"$%&'*+\-.:;?@\[\]^_`|~]|\\[A-Za-z0-9"$%&'*+\-.:;?@\[\]^_`|~\\]|\\\n)*"#)]
    Word,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("<")]
    Lt,
    #[token(">")]
    Gt,
    #[token("=")]
    Eq,
    #[token(",")]
    Comma,
    #[token("/")]
    Slash,
}

/// Scans a quoted string the way relayd does: `\` + quote, space or tab gives that
/// character, `\` + newline and bare newlines vanish, any other `\x` keeps the
/// backslash and reads `x` again. Stops after the closing quote.
fn quoted(lex: &mut logos::Lexer<Raw>) -> QuoteEnd {
    let quote = lex.slice().as_bytes()[0];
    let rest = lex.remainder().as_bytes();
    let mut i = 0;
    while i < rest.len() {
        let c = rest[i];
        i += 1;
        if c == b'\\' {
            match rest.get(i) {
                None => break,
                Some(&n) if n == quote || n == b' ' || n == b'\t' || n == b'\n' => i += 1,
                Some(_) => {}
            }
        } else if c == quote {
            lex.bump(i);
            return QuoteEnd::Closed;
        }
    }
    lex.bump(rest.len());
    QuoteEnd::Eof
}

/// Skips a comment up to (not including) the newline that ends it; a backslash before
/// a newline continues the comment on the next line.
fn comment(lex: &mut logos::Lexer<Raw>) -> CommentEnd {
    let rest = lex.remainder().as_bytes();
    let mut end = CommentEnd::Line;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            b'\n' => break,
            b'\\' if rest.get(i + 1) == Some(&b'\n') => {
                end = CommentEnd::Continued;
                i += 2;
            }
            b'\\' if i + 1 < rest.len() => i += 2,
            _ => i += 1,
        }
    }
    lex.bump(i.min(rest.len()));
    end
}

/// The decoded text of a quoted token (quotes removed, relayd's escapes applied), and
/// the offset of a NUL byte if there is one.
pub fn unquote(slice: &str) -> (String, Option<usize>) {
    let bytes = slice.as_bytes();
    let quote = bytes[0];
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 1;
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        if c == b'\n' {
            continue;
        }
        if c == b'\\' {
            match bytes.get(i) {
                Some(&n) if n == quote || n == b' ' || n == b'\t' => {
                    out.push(n);
                    i += 1;
                    continue;
                }
                Some(&b'\n') => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
        } else if c == quote {
            break;
        } else if c == 0 {
            return (String::new(), Some(i - 1));
        }
        out.push(c);
    }
    (String::from_utf8_lossy(&out).into_owned(), None)
}

/// The text of a bare word after relayd's `lgetc` transformation: backslash-newline
/// vanishes and a backslash before any other character is dropped.
pub fn word_text(slice: &str) -> std::borrow::Cow<'_, str> {
    if !slice.contains('\\') {
        return std::borrow::Cow::Borrowed(slice);
    }
    let mut out = String::with_capacity(slice.len());
    let mut chars = slice.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('\n') | None => {}
                Some(n) => out.push(n),
            }
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// relayd's `allowed_to_end_number`: what may follow the digits of a NUMBER.
pub fn ends_number(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => {
            matches!(
                c,
                ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | ')' | ',' | '/' | '}' | '='
            )
        }
    }
}

/// relayd's `allowed_in_string`: what may continue a bare word.
pub fn continues_word(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || (c.is_ascii_punctuation()
            && !matches!(
                c,
                '(' | ')' | '{' | '}' | '<' | '>' | '!' | '=' | '#' | ',' | '/'
            ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Result<Raw, ()>, &str)> {
        let mut lex = Raw::lexer(src);
        let mut out = Vec::new();
        while let Some(t) = lex.next() {
            out.push((t, lex.slice()));
        }
        out
    }

    #[test]
    fn words_stop_at_slash_and_comment() {
        let k = kinds("10.0.0.1/24 foo#bar");
        assert_eq!(k[0], (Ok(Raw::Word), "10.0.0.1"));
        assert_eq!(k[1], (Ok(Raw::Slash), "/"));
        assert_eq!(k[2], (Ok(Raw::Word), "24"));
        assert_eq!(k[3], (Ok(Raw::Word), "foo"));
        assert_eq!(k[4].0, Ok(Raw::Comment(CommentEnd::Line)));
    }

    #[test]
    fn quotes_follow_relayd() {
        assert_eq!(unquote(r#""a\"b""#).0, "a\"b");
        assert_eq!(unquote(r#""\r\n""#).0, r"\r\n");
        assert_eq!(unquote("\"a\nb\"").0, "ab");
        let k = kinds(r#""a\\" x"#);
        // `\\"` is a backslash, then an escaped quote: the string runs on.
        assert_eq!(k[0].0, Ok(Raw::Quoted(QuoteEnd::Eof)));
    }

    #[test]
    fn comment_continues_over_backslash_newline() {
        let k = kinds("# a \\\nb\nc");
        assert_eq!(k[0].0, Ok(Raw::Comment(CommentEnd::Continued)));
        assert_eq!(k[1].0, Ok(Raw::Newline));
        assert_eq!(k[2], (Ok(Raw::Word), "c"));
    }

    #[test]
    fn stray_characters_are_errors() {
        let k = kinds("!(");
        assert!(k.iter().all(|(t, _)| t.is_err()));
    }
}
