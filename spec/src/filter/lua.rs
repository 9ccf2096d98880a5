//! Lua-style patterns (patterns(7)), the `pattern` keyword of current relayd.
//!
//! relayd uses httpd's `patterns.c` (derived from Lua 5.3's lstrlib.c) through
//! relayd.c `_kv_match`: `str_find(str, pattern, &sm, 1, &errstr) > 0 && errstr == NULL`.
//! This module ports `str_find` for that call:
//!
//! * the search is unanchored unless the pattern starts with `^`; always case-sensitive
//!   (`_kv_match` ignores the fnmatch flags for patterns);
//! * a pattern without any of `^$*+?.([%-` is searched for as plain text;
//! * `nsm` is 1, so `maxcaptures` is 0: **any capture `(…)` or back-reference `%1` is an
//!   error** ("too many captures", "invalid capture index") and the pattern never matches;
//! * errors never panic: relayd logs `pattern "…": <error>` and treats it as no match.
//!   [`find`] returns the error, [`is_match`] is relayd's boolean;
//! * the limits of patterns.c are kept: `MAXCCALLS` (200 nested matches, then "pattern too
//!   complex") and `MAXREPETITION` (0xfffff failed single matches per search, then "max
//!   repetition items").
//!
//! One deliberate addition: patterns.c does not bound backtracking (`(a*)*`-style
//! blow-ups are still possible within 200 levels), so the search also stops after
//! [`WORK_LIMIT`] steps with [`LuaErrorKind::WorkLimit`]. relayd would keep spinning on
//! such input; the runtime refuses to. No realistic pattern comes near the limit.
//!
//! [`validate`] finds, without a subject, the errors that make a pattern unable to ever
//! match (the compiler reports them); only the two limits are input-dependent.

use super::ctype::{
    cstr, is_alnum, is_alpha, is_cntrl, is_digit, is_graph, is_lower, is_punct, is_space, is_upper,
    is_xdigit, to_lower,
};
use std::fmt;

/// patterns.h `MAXCCALLS`: maximum nesting of the recursive matcher.
pub const MAXCCALLS: u32 = 200;
/// patterns.h `MAXREPETITION`: failed single-character matches allowed per search.
pub const MAXREPETITION: u32 = 0xfffff;
/// Steps (matcher calls and single-character tests) one search may take; our addition.
pub const WORK_LIMIT: u64 = 1 << 22;

/// Why a pattern failed; the texts are patterns.c's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LuaErrorKind {
    EndsWithPercent,
    MissingBracket,
    MissingBalanceArguments,
    MissingFrontierBracket,
    /// `%0`–`%9`: relayd never keeps captures, so every back-reference is invalid.
    InvalidCaptureIndex,
    /// `)` without an open capture.
    InvalidPatternCapture,
    /// `(`: relayd asks for one match slot (the whole match), leaving room for no capture.
    TooManyCaptures,
    /// More than [`MAXCCALLS`] nested matches.
    TooComplex,
    /// More than [`MAXREPETITION`] failed single matches.
    MaxRepetition,
    /// More than [`WORK_LIMIT`] steps (not in relayd, see the module documentation).
    WorkLimit,
}

/// A pattern error, as relayd would log it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LuaError {
    pub kind: LuaErrorKind,
}

impl LuaError {
    /// patterns.c's message for this error.
    pub fn message(&self) -> &'static str {
        match self.kind {
            LuaErrorKind::EndsWithPercent => "malformed pattern (ends with '%')",
            LuaErrorKind::MissingBracket => "malformed pattern (missing ']')",
            LuaErrorKind::MissingBalanceArguments => {
                "malformed pattern (missing arguments to '%b')"
            }
            LuaErrorKind::MissingFrontierBracket => "missing '[' after '%f' in pattern",
            LuaErrorKind::InvalidCaptureIndex => "invalid capture index",
            LuaErrorKind::InvalidPatternCapture => "invalid pattern capture",
            LuaErrorKind::TooManyCaptures => "too many captures",
            LuaErrorKind::TooComplex => "pattern too complex",
            LuaErrorKind::MaxRepetition => "max repetition items",
            LuaErrorKind::WorkLimit => "pattern too complex (work limit)",
        }
    }

    /// Whether the error depends on the subject (the limits) rather than on the pattern.
    pub fn is_limit(&self) -> bool {
        matches!(
            self.kind,
            LuaErrorKind::TooComplex | LuaErrorKind::MaxRepetition | LuaErrorKind::WorkLimit
        )
    }
}

impl fmt::Display for LuaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for LuaError {}

/// A text a pattern is searched in, by index, so that a url candidate made of several
/// pieces can be searched without being copied. The length is that of the C string.
pub trait Subject {
    fn len(&self) -> usize;
    /// Byte `i`, for `i < len()`.
    fn at(&self, i: usize) -> u8;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A plain byte string (cut at its first NUL, as `strlen` would).
struct Bytes<'a>(&'a [u8]);

impl Subject for Bytes<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn at(&self, i: usize) -> u8 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

/// relayd's answer: does the pattern match somewhere in `subject`? Errors are no match.
pub fn is_match(pattern: &[u8], subject: &[u8]) -> bool {
    matches!(find(pattern, subject), Ok(true))
}

/// `str_find` as relayd calls it: `Ok(true)` on a match, `Ok(false)` on none, `Err` when
/// patterns.c would set `errstr` (relayd then logs it and counts no match).
pub fn find(pattern: &[u8], subject: &[u8]) -> Result<bool, LuaError> {
    find_in(pattern, &Bytes(cstr(subject)))
}

/// [`find`] over any [`Subject`].
pub fn find_in<S: Subject + ?Sized>(pattern: &[u8], subject: &S) -> Result<bool, LuaError> {
    let pat = cstr(pattern);
    let ls = subject.len();

    if no_specials(pat) {
        // lmemfind: plain search; the empty pattern is found everywhere.
        let lp = pat.len();
        if lp == 0 {
            return Ok(true);
        }
        if lp > ls {
            return Ok(false);
        }
        for start in 0..=(ls - lp) {
            if pat
                .iter()
                .enumerate()
                .all(|(k, &b)| subject.at(start + k) == b)
            {
                return Ok(true);
            }
        }
        return Ok(false);
    }

    let anchor = pat.first() == Some(&b'^');
    let p0 = usize::from(anchor);
    let mut ms = MatchState {
        src: subject,
        src_len: ls,
        pat,
        p_end: pat.len(),
        matchdepth: MAXCCALLS,
        repetitions: MAXREPETITION,
        steps: 0,
        error: None,
    };
    let mut s1 = 0usize;
    loop {
        if ms.do_match(s1, p0).is_some() {
            return Ok(true);
        }
        if let Some(kind) = ms.error {
            return Err(LuaError { kind });
        }
        // `while (s1++ < ms->src_end && !anchor)`: the end of the subject is tried too.
        if s1 >= ls || anchor {
            break;
        }
        s1 += 1;
    }
    Ok(false)
}

/// The errors a pattern meets whatever the subject: when this returns `Err`, the pattern
/// can never match (every successful match walks the whole pattern). The error is the
/// first one in pattern order, which is the one relayd logs when it gets that far.
pub fn validate(pattern: &[u8]) -> Result<(), LuaError> {
    let pat = cstr(pattern);
    if no_specials(pat) {
        return Ok(());
    }
    let err = |kind| Err(LuaError { kind });
    let p_end = pat.len();
    let mut p = usize::from(pat.first() == Some(&b'^'));
    while p < p_end {
        match at(pat, p) {
            b'(' => return err(LuaErrorKind::TooManyCaptures),
            b')' => return err(LuaErrorKind::InvalidPatternCapture),
            b'$' if p + 1 == p_end => return Ok(()),
            b'%' => match at(pat, p + 1) {
                b'b' => {
                    if p + 2 + 1 >= p_end {
                        return err(LuaErrorKind::MissingBalanceArguments);
                    }
                    p += 4;
                    continue;
                }
                b'f' => {
                    p += 2;
                    if at(pat, p) != b'[' {
                        return err(LuaErrorKind::MissingFrontierBracket);
                    }
                    p = class_end(pat, p_end, p)?;
                    continue;
                }
                b'0'..=b'9' => return err(LuaErrorKind::InvalidCaptureIndex),
                _ => {}
            },
            _ => {}
        }
        let ep = class_end(pat, p_end, p)?;
        p = if matches!(at(pat, ep), b'*' | b'+' | b'?' | b'-') {
            ep + 1
        } else {
            ep
        };
    }
    Ok(())
}

/// patterns.c `SPECIALS`.
fn no_specials(pat: &[u8]) -> bool {
    !pat.iter().any(|b| b"^$*+?.([%-".contains(b))
}

#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// patterns.c `classend`: the index after the single-character class at `p`.
fn class_end(pat: &[u8], p_end: usize, p: usize) -> Result<usize, LuaError> {
    let c = at(pat, p);
    let mut p = p + 1;
    match c {
        b'%' => {
            if p == p_end {
                return Err(LuaError {
                    kind: LuaErrorKind::EndsWithPercent,
                });
            }
            Ok(p + 1)
        }
        b'[' => {
            if at(pat, p) == b'^' {
                p += 1;
            }
            // Look for a ']'; the first character of the set is never the end.
            loop {
                if p >= p_end {
                    return Err(LuaError {
                        kind: LuaErrorKind::MissingBracket,
                    });
                }
                let ch = at(pat, p);
                p += 1;
                if ch == b'%' && p < p_end {
                    // Skip escapes (e.g. '%]').
                    p += 1;
                }
                if at(pat, p) == b']' {
                    break;
                }
            }
            Ok(p + 1)
        }
        _ => Ok(p),
    }
}

/// patterns.c `match_class`: `%a`, `%d`, … (upper case negates); other characters
/// stand for themselves.
fn match_class(c: u8, cl: u8) -> bool {
    let res = match to_lower(cl) {
        b'a' => is_alpha(c),
        b'c' => is_cntrl(c),
        b'd' => is_digit(c),
        b'g' => is_graph(c),
        b'l' => is_lower(c),
        b'p' => is_punct(c),
        b's' => is_space(c),
        b'u' => is_upper(c),
        b'w' => is_alnum(c),
        b'x' => is_xdigit(c),
        _ => return cl == c,
    };
    if is_lower(cl) {
        res
    } else {
        !res
    }
}

struct MatchState<'a, S: Subject + ?Sized> {
    src: &'a S,
    src_len: usize,
    pat: &'a [u8],
    p_end: usize,
    matchdepth: u32,
    repetitions: u32,
    steps: u64,
    error: Option<LuaErrorKind>,
}

impl<S: Subject + ?Sized> MatchState<'_, S> {
    fn fail(&mut self, kind: LuaErrorKind) {
        if self.error.is_none() {
            self.error = Some(kind);
        }
    }

    fn step(&mut self) -> bool {
        self.steps += 1;
        if self.steps > WORK_LIMIT {
            self.fail(LuaErrorKind::WorkLimit);
            return false;
        }
        true
    }

    #[inline]
    fn p(&self, i: usize) -> u8 {
        at(self.pat, i)
    }

    /// The subject byte at `i`, NUL at and past the end (as C reads `*src_end`).
    #[inline]
    fn s(&self, i: usize) -> u8 {
        if i < self.src_len {
            self.src.at(i)
        } else {
            0
        }
    }

    fn class_end(&mut self, p: usize) -> Option<usize> {
        match class_end(self.pat, self.p_end, p) {
            Ok(ep) => Some(ep),
            Err(e) => {
                self.fail(e.kind);
                None
            }
        }
    }

    /// patterns.c `matchbracketclass`: `p` at '[', `ec` at the closing ']'.
    fn bracket_class(&self, c: u8, p: usize, ec: usize) -> bool {
        let mut p = p;
        let mut sig = true;
        if self.p(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                break;
            }
            if self.p(p) == b'%' {
                p += 1;
                if match_class(c, self.p(p)) {
                    return sig;
                }
            } else if self.p(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.p(p - 2) <= c && c <= self.p(p) {
                    return sig;
                }
            } else if self.p(p) == c {
                return sig;
            }
        }
        !sig
    }

    /// patterns.c `singlematch`.
    fn single(&mut self, s: usize, p: usize, ep: usize) -> bool {
        if !self.step() {
            return false;
        }
        if s >= self.src_len {
            return false;
        }
        let c = self.s(s);
        match self.p(p) {
            b'.' => true,
            b'%' => match_class(c, self.p(p + 1)),
            b'[' => self.bracket_class(c, p, ep.saturating_sub(1)),
            pc => pc == c,
        }
    }

    /// patterns.c `matchbalance` (`%bxy`), `p` at `x`.
    fn balance(&mut self, s: usize, p: usize) -> Option<usize> {
        if p + 1 >= self.p_end {
            self.fail(LuaErrorKind::MissingBalanceArguments);
            return None;
        }
        if self.s(s) != self.p(p) {
            return None;
        }
        let b = self.p(p);
        let e = self.p(p + 1);
        let mut cont = 1u32;
        let mut i = s;
        loop {
            i += 1;
            if i >= self.src_len {
                return None;
            }
            let c = self.s(i);
            if c == e {
                cont -= 1;
                if cont == 0 {
                    return Some(i + 1);
                }
            } else if c == b {
                cont += 1;
            }
        }
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Option<usize> {
        let mut i = 0usize;
        while self.single(s + i, p, ep) {
            i += 1;
        }
        if self.error.is_some() {
            return None;
        }
        loop {
            if let Some(r) = self.do_match(s + i, ep + 1) {
                return Some(r);
            }
            if self.error.is_some() || i == 0 {
                return None;
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, s: usize, p: usize, ep: usize) -> Option<usize> {
        let mut s = s;
        loop {
            if let Some(r) = self.do_match(s, ep + 1) {
                return Some(r);
            }
            if self.error.is_some() {
                return None;
            }
            if self.single(s, p, ep) {
                s += 1;
            } else {
                return None;
            }
        }
    }

    /// patterns.c `match`: the end of the match of `pat[p..]` at `s`, if any. Once an
    /// error is recorded everything unwinds: relayd's result is "no match" either way.
    fn do_match(&mut self, s: usize, p: usize) -> Option<usize> {
        if self.error.is_some() {
            return None;
        }
        if self.matchdepth == 0 {
            self.fail(LuaErrorKind::TooComplex);
            return None;
        }
        if !self.step() {
            return None;
        }
        self.matchdepth -= 1;
        let res = self.match_body(s, p);
        self.matchdepth += 1;
        res
    }

    fn match_body(&mut self, mut s: usize, mut p: usize) -> Option<usize> {
        loop {
            if p == self.p_end {
                return Some(s);
            }
            match self.p(p) {
                // relayd's single match slot leaves no room for a capture.
                b'(' => {
                    self.fail(LuaErrorKind::TooManyCaptures);
                    return None;
                }
                b')' => {
                    self.fail(LuaErrorKind::InvalidPatternCapture);
                    return None;
                }
                b'$' if p + 1 == self.p_end => {
                    return if s == self.src_len { Some(s) } else { None };
                }
                b'%' => match self.p(p + 1) {
                    b'b' => match self.balance(s, p + 2) {
                        Some(ns) => {
                            s = ns;
                            p += 4;
                            continue;
                        }
                        None => return None,
                    },
                    b'f' => {
                        p += 2;
                        if self.p(p) != b'[' {
                            self.fail(LuaErrorKind::MissingFrontierBracket);
                            return None;
                        }
                        let ep = self.class_end(p)?;
                        let previous = if s == 0 { 0 } else { self.s(s - 1) };
                        let current = self.s(s);
                        let ec = ep.saturating_sub(1);
                        if !self.bracket_class(previous, p, ec)
                            && self.bracket_class(current, p, ec)
                        {
                            p = ep;
                            continue;
                        }
                        return None;
                    }
                    b'0'..=b'9' => {
                        self.fail(LuaErrorKind::InvalidCaptureIndex);
                        return None;
                    }
                    _ => {}
                },
                _ => {}
            }

            // A single-character class with an optional suffix.
            let ep = self.class_end(p)?;
            if !self.single(s, p, ep) {
                if self.error.is_some() {
                    return None;
                }
                if self.repetitions == 0 {
                    self.fail(LuaErrorKind::MaxRepetition);
                    return None;
                }
                self.repetitions -= 1;
                if matches!(self.p(ep), b'*' | b'?' | b'-') {
                    // Accept empty.
                    p = ep + 1;
                    continue;
                }
                return None;
            }
            match self.p(ep) {
                b'?' => {
                    if let Some(r) = self.do_match(s + 1, ep + 1) {
                        return Some(r);
                    }
                    if self.error.is_some() {
                        return None;
                    }
                    p = ep + 1;
                }
                b'+' => return self.max_expand(s + 1, p, ep),
                b'*' => return self.max_expand(s, p, ep),
                b'-' => return self.min_expand(s, p, ep),
                _ => {
                    s += 1;
                    p = ep;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        is_match(p.as_bytes(), s.as_bytes())
    }
    fn e(p: &str) -> LuaErrorKind {
        validate(p.as_bytes())
            .expect_err("pattern should be invalid")
            .kind
    }

    #[test]
    fn plain_and_anchors() {
        assert!(m("foo", "xfooy"));
        assert!(!m("foo", "fo"));
        assert!(m("", "anything"));
        assert!(m("", ""));
        assert!(m("^foo", "foobar"));
        assert!(!m("^foo", "xfoo"));
        assert!(m("bar$", "foobar"));
        assert!(!m("bar$", "barfoo"));
        assert!(m("^$", ""));
        assert!(!m("^$", "x"));
        assert!(m("^", "x"));
        // '$' not at the end and '^' not at the start are ordinary characters.
        assert!(m("a$b", "xa$by"));
        assert!(m("a^b", "a^b"));
        // ')' and ']' are not special: a plain search.
        assert!(m("a)b", "xa)b"));
    }

    #[test]
    fn classes_and_repetition() {
        assert!(m("^%d+$", "12345"));
        assert!(!m("^%d+$", "123a5"));
        assert!(!m("^%d+$", ""));
        assert!(m("%d+", "abc123"));
        assert!(m("^[%a_][%w_]*$", "_foo1"));
        assert!(!m("^[%a_][%w_]*$", "1foo"));
        assert!(m("^%u%l+$", "Hello"));
        assert!(!m("^%u%l+$", "hello"));
        assert!(m("^%D+$", "abc"));
        assert!(m("^[^/]+$", "abc"));
        assert!(!m("^[^/]+$", "a/c"));
        assert!(m("^a-b$", "aaab"));
        assert!(m("^a?b$", "b"));
        assert!(m("^a?b$", "ab"));
        assert!(!m("^a?b$", "aab"));
        assert!(m("^.*%.png$", "/img/x.png"));
        assert!(!m("^.*%.png$", "/img/xpng"));
        assert!(m("[%]]", "]"));
        assert!(m("^[a-c]+$", "abcabc"));
        // Case-sensitive always.
        assert!(!m("^abc$", "ABC"));
    }

    #[test]
    fn balance_and_frontier() {
        assert!(m("%b()", "f(a(b)c)"));
        assert!(m("^%b()$", "(a(b)c)"));
        assert!(!m("^%b()$", "(a(b c)"));
        assert!(m("%f[%w]%w+", "  word"));
        assert!(m("%f[%a]the%f[%A]", "in the end"));
        assert!(!m("%f[%a]the%f[%A]", "other"));
    }

    #[test]
    fn captures_are_errors_in_relayd() {
        assert_eq!(e("(foo)"), LuaErrorKind::TooManyCaptures);
        assert_eq!(e("a()"), LuaErrorKind::TooManyCaptures);
        assert_eq!(e("%1"), LuaErrorKind::InvalidCaptureIndex);
        assert_eq!(e("a.)"), LuaErrorKind::InvalidPatternCapture);
        assert!(!m("(foo)", "foo"));
        assert_eq!(
            find(b"x(foo)", b"xfoo").unwrap_err().kind,
            LuaErrorKind::TooManyCaptures
        );
        // Not reached: no error, just no match.
        assert_eq!(find(b"x(foo)", b"yyy"), Ok(false));
    }

    #[test]
    fn malformed_patterns() {
        assert_eq!(e("abc%"), LuaErrorKind::EndsWithPercent);
        assert_eq!(e("[abc"), LuaErrorKind::MissingBracket);
        assert_eq!(e("[]"), LuaErrorKind::MissingBracket);
        assert_eq!(e("x[%"), LuaErrorKind::MissingBracket);
        assert_eq!(e("%b"), LuaErrorKind::MissingBalanceArguments);
        assert_eq!(e("%bx"), LuaErrorKind::MissingBalanceArguments);
        assert_eq!(e("%fa"), LuaErrorKind::MissingFrontierBracket);
        assert!(validate(b"%bxy").is_ok());
        assert!(validate(b"[]]").is_ok());
        assert!(validate(b"^%d+$").is_ok());
        assert!(validate(b"abc").is_ok());
        // find reports the error when it reaches it, never panics.
        assert_eq!(
            find(b"abc%", b"abc").unwrap_err().kind,
            LuaErrorKind::EndsWithPercent
        );
        assert_eq!(find(b"abc%", b"xyz"), Ok(false));
        assert!(!m("[abc", "a"));
    }

    #[test]
    fn limits() {
        // 201 nested optional items exceed MAXCCALLS.
        let deep = "a?".repeat(201);
        let err = find(deep.as_bytes(), "a".repeat(201).as_bytes()).unwrap_err();
        assert_eq!(err.kind, LuaErrorKind::TooComplex);
        assert!(err.is_limit());
        // Exponential backtracking is cut off, not run forever.
        let p = "^".to_string() + &"a*".repeat(30) + "b$";
        let s = "a".repeat(40);
        let r = find(p.as_bytes(), s.as_bytes());
        assert!(matches!(
            r,
            Err(LuaError {
                kind: LuaErrorKind::WorkLimit | LuaErrorKind::MaxRepetition
            })
        ));
        // Many failed single matches on a long subject.
        let long = "x".repeat(1 << 21);
        let r = find(b"%dq", long.as_bytes());
        assert_eq!(r.unwrap_err().kind, LuaErrorKind::MaxRepetition);
    }

    #[test]
    fn nul_ends_c_strings() {
        assert!(m("^ab$", "ab\0cd"));
    }
}
