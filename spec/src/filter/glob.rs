//! Glob matching exactly as relayd gets it from OpenBSD's libc `fnmatch(3)`.
//!
//! relayd calls `fnmatch(pattern, string, flags)` (relayd.c `_kv_match`) with `flags`
//! either 0 or `FNM_CASEFOLD`, never `FNM_PATHNAME`, `FNM_PERIOD` or `FNM_NOESCAPE`; so
//! `*` and `?` cross `/`, a leading `.` is ordinary, and `\` escapes the next character.
//! This module is a port of `lib/libc/gen/fnmatch.c` rev 1.23 (2020, the version in the
//! releases relayd's filter grammar runs on) specialised to those flags, byte for byte,
//! including its quirks:
//!
//! * a `[` that does not start a well-formed bracket expression is an ordinary character
//!   (`"[a"` matches the text `[a`);
//! * `]` right after `[` or `[!` is a member, `[!…]` and `[^…]` negate, `[:class:]` works;
//! * range ends are compared as (signed, on amd64) `char`s, so a range reaching past 0x7f
//!   behaves as on OpenBSD/amd64;
//! * with case folding, `[[:upper:]]` is turned into `[[:lower:]]` and tested against the
//!   unfolded character, so it matches lower-case letters only (fnmatch.c `classmatch`);
//! * a trailing lone `\` is an ordinary backslash;
//! * the strings are C strings: everything after a NUL byte is ignored.
//!
//! fnmatch.c before 1.22 (OpenBSD 5.6–6.6) also refused strings of `PATH_MAX` (1024) bytes
//! or more; that limit is gone since 2020 and is not reproduced.
//!
//! Besides matching, the module answers the static questions the compiler asks about a
//! glob (whether it has wildcards, whether it can match anything, whether it matches a
//! given literal), always by running the same matcher, so analysis and runtime agree.

use super::ctype::{
    cstr, is_alnum, is_alpha, is_blank, is_cntrl, is_digit, is_graph, is_lower, is_print, is_punct,
    is_space, is_upper, is_xdigit, to_lower,
};
use super::Case;

/// `fnmatch(pattern, string, case == Insensitive ? FNM_CASEFOLD : 0) == 0`.
///
/// Allocation-free; runs in time proportional to `pattern.len() * string.len()` at worst.
/// Matches with a glob's pre-compiled [`GlobShape`](super::GlobShape): the same answer
/// as [`fnmatch`] (the subject is cut at a NUL as fnmatch's C string is), faster for the
/// shapes that are comparisons.
pub fn matches(pattern: &[u8], shape: super::GlobShape, string: &[u8], case: Case) -> bool {
    use super::GlobShape;
    let s = cstr(string);
    let eq = |a: &[u8], b: &[u8]| match case {
        Case::Sensitive => a == b,
        Case::Insensitive => a.eq_ignore_ascii_case(b),
    };
    match shape {
        GlobShape::Any => true,
        GlobShape::Literal => eq(pattern, s),
        GlobShape::Prefix(n) => {
            let n = n as usize;
            s.len() >= n && pattern.len() >= n && eq(&pattern[..n], &s[..n])
        }
        GlobShape::Suffix(n) => {
            let n = n as usize;
            s.len() >= n
                && pattern.len() > n
                && eq(&pattern[pattern.len() - n..], &s[s.len() - n..])
        }
        GlobShape::General => fnmatch(pattern, string, case),
    }
}

pub fn fnmatch(pattern: &[u8], string: &[u8], case: Case) -> bool {
    let pat = cstr(pattern);
    let s = cstr(string);
    let nocase = case == Case::Insensitive;
    let end = s.len(); // `strendseg`: without FNM_PATHNAME the segment is the whole string

    let mut p = 0usize;
    let mut si = 0usize;
    // `if (*pattern == '*') goto firstsegment;` otherwise `while (*pattern && *string)`.
    if at(pat, 0) != b'*' && (at(pat, 0) == 0 || at(s, 0) == 0) {
        return at(s, 0) == 0 && at(pat, 0) == 0;
    }

    let mut strstartseg = 0usize;
    let mut mismatch = 0usize;
    let mut matchlen = 0usize;
    while at(pat, p) != 0 {
        if si > end || (si == end && at(pat, p) != b'*') {
            break;
        }
        // Reduce groups of '*' and '?' to n '?' matches followed by one '*' test.
        let mut wild = false;
        while at(pat, p) == b'*' || at(pat, p) == b'?' {
            if at(pat, p) == b'*' {
                wild = true;
            } else if si < end {
                si += 1;
            } else {
                return false;
            }
            p += 1;
        }

        if wild {
            strstartseg = si;
            mismatch = p;
            // Count the fixed characters up to the next '*' (or the end of the pattern).
            let mut m = p;
            matchlen = 0;
            loop {
                if at(pat, m) == 0 {
                    // The pattern's tail must match the string's tail exactly.
                    if si + matchlen > end {
                        return false;
                    }
                    si = end - matchlen;
                    wild = false;
                    break;
                }
                if at(pat, m) == b'*' {
                    if si + matchlen > end {
                        return false;
                    }
                    break;
                }
                if at(pat, m) == b'\\' && at(pat, m + 1) != 0 {
                    m += 2;
                } else if at(pat, m) == b'[' {
                    // fnmatch.c counts one "[range]" with a dummy match against " ".
                    let mut d = 0usize;
                    fnmatch_ch(pat, &mut m, b" ", &mut d, nocase);
                } else {
                    m += 1;
                }
                matchlen += 1;
            }
        }

        // Incrementally match the string against the pattern.
        while at(pat, p) != 0 && si < end {
            if at(pat, p) == b'*' {
                break;
            }
            if fnmatch_ch(pat, &mut p, s, &mut si, nocase) {
                continue;
            }
            if wild {
                // Retry the segment one character further on.
                strstartseg += 1;
                si = strstartseg;
                if si + matchlen > end {
                    return false;
                }
                p = mismatch;
                continue;
            }
            return false;
        }
    }
    // Without FNM_PATHNAME/FNM_LEADING_DIR the outer loop of fnmatch.c runs once: both
    // pattern and string must be used up.
    at(s, si) == 0 && at(pat, p) == 0
}

/// Whether relayd treats a key as a glob: it has one of `*?[` (relayd.c `rule_add`,
/// `strpbrk(kv->kv_key, "*?[")` → `KV_FLAG_GLOBBING`). Keys without them are compared
/// literally, ignoring case (`RB_FIND` on the header tree).
pub fn has_wildcards(text: &str) -> bool {
    text.bytes().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// The text a glob matches if it has no special characters at all (`*?[\`), i.e. the
/// glob is a literal string; `None` otherwise.
pub fn literal(pattern: &[u8]) -> Option<&[u8]> {
    let pat = cstr(pattern);
    if pat.iter().any(|b| matches!(b, b'*' | b'?' | b'[' | b'\\')) {
        None
    } else {
        Some(pat)
    }
}

/// Whether the glob matches every string: one or more `*` and nothing else.
pub fn matches_everything(pattern: &[u8]) -> bool {
    let pat = cstr(pattern);
    !pat.is_empty() && pat.iter().all(|&b| b == b'*')
}

/// Whether some string matches the glob. `false` means the glob is dead: some
/// single-character position (e.g. the empty range `[z-a]`) accepts no byte.
pub fn can_match(pattern: &[u8], case: Case) -> bool {
    can_match_where(pattern, case, |_| true)
}

/// Whether some string made only of bytes for which `allowed` holds matches the glob.
///
/// The glob is cut into the units fnmatch consumes (`*`, `?`, one literal, escaped or
/// bracketed character) with fnmatch's own `fnmatch_ch`; the glob can match such a string
/// iff every non-`*` unit accepts at least one allowed byte.
pub fn can_match_where(pattern: &[u8], case: Case, allowed: impl Fn(u8) -> bool) -> bool {
    let pat = cstr(pattern);
    let nocase = case == Case::Insensitive;
    let mut p = 0usize;
    while p < pat.len() {
        match at(pat, p) {
            b'*' => p += 1,
            b'?' => {
                if !(1..=255u8).any(&allowed) {
                    return false;
                }
                p += 1;
            }
            b'[' => {
                // Brackets: try every byte (how far the unit reaches does not depend on
                // the character tested).
                let mut next = p;
                let mut found = false;
                for b in 1..=255u8 {
                    let mut pp = p;
                    let mut si = 0usize;
                    let one = [b];
                    if fnmatch_ch(pat, &mut pp, &one, &mut si, nocase) && allowed(b) {
                        found = true;
                    }
                    next = pp;
                }
                if !found {
                    return false;
                }
                if next <= p {
                    // Cannot happen for a non-NUL test character; stay conservative.
                    return true;
                }
                p = next;
            }
            c => {
                // A literal, possibly escaped (a trailing `\` is a literal backslash).
                let (lit, width) = if c == b'\\' && at(pat, p + 1) != 0 {
                    (at(pat, p + 1), 2)
                } else {
                    (c, 1)
                };
                let ok = allowed(lit)
                    || (nocase && (1..=255u8).any(|b| b != lit && fold_eq(b, lit) && allowed(b)));
                if !ok {
                    return false;
                }
                p += width;
            }
        }
    }
    true
}

/// Whether glob `g` (matched with `g_case`) matches every string that the literal `lit`
/// stands for: `lit` itself when `lit_case` is `Sensitive`, every ASCII case variant of it
/// when `Insensitive`. Used for subsumption ("rule i's literal value is matched by rule
/// j's glob"); answers `false` when unsure.
pub fn glob_matches_literal(g: &[u8], g_case: Case, lit: &[u8], lit_case: Case) -> bool {
    match lit_case {
        Case::Sensitive => fnmatch(g, lit, g_case),
        Case::Insensitive => {
            if !lit.iter().any(|&b| is_alpha(b)) {
                // Only one string has this spelling.
                return fnmatch(g, lit, g_case);
            }
            // Folded matching without brackets compares `tolower` of both sides, so it
            // gives the same answer for every case variant. Brackets do not (ranges such
            // as `[Z-a]` and the `[:upper:]` quirk), so they are left unanswered.
            g_case == Case::Insensitive && !cstr(g).contains(&b'[') && fnmatch(g, lit, g_case)
        }
    }
}

/// Byte `i` of a C string, or NUL past its end.
#[inline]
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

/// `char` comparison as on OpenBSD/amd64, where `char` is signed.
#[inline]
fn schar(c: u8) -> i8 {
    c as i8
}

enum Range {
    Match,
    NoMatch,
    Error,
}

/// fnmatch.c `classmatch`: a `[:name:]` at `*p`; advances `*p` past it unless `Error`.
fn classmatch(pat: &[u8], p: &mut usize, test: u8, foldcase: bool) -> Range {
    if at(pat, *p) != b'[' || at(pat, *p + 1) != b':' {
        return Range::Error;
    }
    let name_start = *p + 2;
    let rest = pat.get(name_start..).unwrap_or(&[]);
    let Some(colon_off) = rest.iter().position(|&b| b == b':') else {
        return Range::Error;
    };
    let colon = name_start + colon_off;
    if at(pat, colon + 1) != b']' {
        return Range::Error;
    }
    let mut name = pat.get(name_start..colon).unwrap_or(&[]);
    // `if (foldcase && strncmp(pattern, "upper:]", 7) == 0) pattern = "lower:]";`
    if foldcase && rest.starts_with(b"upper:]") {
        name = b"lower";
    }
    let class: Option<fn(u8) -> bool> = match name {
        b"alnum" => Some(is_alnum),
        b"alpha" => Some(is_alpha),
        b"blank" => Some(is_blank),
        b"cntrl" => Some(is_cntrl),
        b"digit" => Some(is_digit),
        b"graph" => Some(is_graph),
        b"lower" => Some(is_lower),
        b"print" => Some(is_print),
        b"punct" => Some(is_punct),
        b"space" => Some(is_space),
        b"upper" => Some(is_upper),
        b"xdigit" => Some(is_xdigit),
        _ => None,
    };
    match class {
        // An unknown class name is ordinary text.
        None => Range::Error,
        Some(f) => {
            *p = colon + 2;
            if f(test) {
                Range::Match
            } else {
                Range::NoMatch
            }
        }
    }
}

/// Folded comparison as fnmatch.c writes it.
#[inline]
fn fold_eq(a: u8, b: u8) -> bool {
    (is_upper(a) || is_upper(b)) && to_lower(a) == to_lower(b)
}

/// fnmatch.c `fnmatch_ch` without FNM_PATHNAME and with escapes: match one pattern unit
/// at `*p` against the character at `*si`, advancing both. `true` means a match.
fn fnmatch_ch(pat: &[u8], p: &mut usize, s: &[u8], si: &mut usize, nocase: bool) -> bool {
    let mismatch = *p;
    let mut matched = false;

    if at(pat, *p) == b'[' {
        *p += 1;
        let negate = at(pat, *p) == b'!' || at(pat, *p) == b'^';
        if negate {
            *p += 1;
        }
        // ']' is an ordinary character at the start of the set (`goto leadingclosebrace`).
        let mut leading = at(pat, *p) == b']';
        loop {
            if !leading {
                if at(pat, *p) == 0 {
                    break;
                }
                if at(pat, *p) == b']' {
                    *p += 1;
                    *si += 1;
                    return matched != negate;
                }
                if at(pat, *p) == b'\\' {
                    *p += 1;
                    // Patterns must terminate with ']', not EOS.
                    if at(pat, *p) == 0 {
                        break;
                    }
                }
                match classmatch(pat, p, at(s, *si), nocase) {
                    Range::Match => {
                        matched = true;
                        continue;
                    }
                    Range::NoMatch => continue,
                    Range::Error => {}
                }
                if at(pat, *p) == 0 {
                    break;
                }
            }
            leading = false;

            // A well-formed range "x-y" ("x-]" is not a range unless escaped).
            if at(pat, *p + 1) == b'-' && at(pat, *p + 2) != b']' {
                let startch = at(pat, *p);
                *p += if at(pat, *p + 2) == b'\\' { 3 } else { 2 };
                if at(pat, *p) == 0 {
                    break;
                }
                let c = at(s, *si);
                let endch = at(pat, *p);
                let in_range = schar(c) >= schar(startch) && schar(c) <= schar(endch);
                let in_folded_range = nocase
                    && (is_upper(c) || is_upper(startch) || is_upper(endch))
                    && to_lower(c) >= to_lower(startch)
                    && to_lower(c) <= to_lower(endch);
                if in_range || in_folded_range {
                    matched = true;
                }
                *p += 1;
                continue;
            }

            let c = at(s, *si);
            let pc = at(pat, *p);
            if c == pc || (nocase && fold_eq(c, pc)) {
                matched = true;
            }
            *p += 1;
        }
        // Not a balanced [expr]: rewind and test '[' as a literal.
        *p = mismatch;
        matched = false;
    } else if at(pat, *p) == b'?' {
        if at(s, *si) == 0 {
            return false;
        }
        *p += 1;
        *si += 1;
        return true;
    } else if at(pat, *p) == b'\\' && at(pat, *p + 1) != 0 {
        *p += 1;
    }

    let c = at(s, *si);
    let pc = at(pat, *p);
    if c == pc || (nocase && fold_eq(c, pc)) {
        matched = true;
    }
    // Refuse to advance over NULs.
    if c == 0 || pc == 0 {
        return matched;
    }
    *p += 1;
    *si += 1;
    matched
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
    use proptest::prelude::*;

    fn m(p: &str, s: &str) -> bool {
        fnmatch(p.as_bytes(), s.as_bytes(), Case::Sensitive)
    }
    fn mi(p: &str, s: &str) -> bool {
        fnmatch(p.as_bytes(), s.as_bytes(), Case::Insensitive)
    }

    #[test]
    fn basics() {
        assert!(m("", ""));
        assert!(!m("", "a"));
        assert!(!m("a", ""));
        assert!(m("*", ""));
        assert!(m("*", "anything/at/all"));
        assert!(m("**", "x"));
        assert!(m("?", "a"));
        assert!(!m("?", ""));
        assert!(!m("?", "ab"));
        assert!(m("a*b", "ab"));
        assert!(m("a*b", "axxb"));
        assert!(!m("a*b", "axxbc"));
        assert!(m("a*b*c", "abbbcbc"));
        assert!(m("*.example.com", "www.example.com"));
        assert!(!m("*.example.com", "example.com"));
        assert!(m("*?", "a"));
        assert!(!m("*??", "a"));
        assert!(m("a?c*", "abcdef"));
    }

    #[test]
    fn star_crosses_slash_and_leading_dot() {
        // relayd never passes FNM_PATHNAME or FNM_PERIOD.
        assert!(m("/images/*", "/images/a/b/c.png"));
        assert!(m("*", ".hidden"));
        assert!(m("/a?b", "/a/b"));
        assert!(m("[/]", "/"));
    }

    #[test]
    fn brackets() {
        assert!(m("[a-z]", "q"));
        assert!(!m("[a-z]", "Q"));
        assert!(mi("[a-z]", "Q"));
        assert!(m("[!a-z]", "Q"));
        assert!(!m("[!a-z]", "q"));
        assert!(m("[^a-z]", "1"));
        assert!(m("[]]", "]"));
        assert!(m("[!]]", "a"));
        assert!(!m("[!]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[[:digit:]]x", "7x"));
        assert!(!m("[[:digit:]]", "a"));
        assert!(m("[[:alpha:][:digit:]]", "7"));
        // Unbalanced: '[' is literal.
        assert!(m("[a", "[a"));
        assert!(!m("[a", "a"));
        assert!(m("a[", "a["));
        // Unknown class name: treated as text inside the set.
        assert!(m("[[:foo:]]", "f]"));
        // Empty range matches nothing.
        assert!(!m("[z-a]", "m"));
        // Escaped range end: 'Z' to ']'.
        assert!(m("[Z-\\]]", "]"));
        assert!(m("[Z-\\]]", "["));
        // 'a' to ']' is an empty range.
        assert!(!m("[a-\\]]", "]"));
    }

    #[test]
    fn escapes() {
        assert!(m("\\*", "*"));
        assert!(!m("\\*", "a"));
        assert!(m("a\\?c", "a?c"));
        assert!(!m("a\\?c", "abc"));
        assert!(m("\\a", "a"));
        // A trailing backslash is an ordinary backslash.
        assert!(m("a\\", "a\\"));
        assert!(m("*\\*", "abc*"));
        assert!(!m("*\\*", "abc"));
    }

    #[test]
    fn case_folding() {
        assert!(!m("Hello", "hello"));
        assert!(mi("Hello", "hELLO"));
        assert!(mi("*SESSION*", "my_session_id"));
        assert!(mi("[A-Z]", "a"));
        // The [:upper:] quirk: with FNM_CASEFOLD it tests islower on the raw character.
        assert!(mi("[[:upper:]]", "a"));
        assert!(!mi("[[:upper:]]", "A"));
        assert!(m("[[:upper:]]", "A"));
        // Only ASCII folds.
        assert!(!mi("\u{c4}", "\u{e4}"));
    }

    #[test]
    fn nul_ends_c_strings() {
        assert!(m("ab", "ab\0cd"));
        assert!(m("ab\0zz", "ab"));
    }

    #[test]
    fn signed_char_ranges() {
        // 0x80..0xff are negative chars on amd64: "[a-\xff]" is an empty range.
        assert!(!fnmatch(b"[a-\xff]", b"b", Case::Sensitive));
        assert!(fnmatch(b"[\x80-\xff]", b"\x90", Case::Sensitive));
    }

    #[test]
    fn static_questions() {
        assert!(has_wildcards("X-*"));
        assert!(has_wildcards("[ab]"));
        assert!(!has_wildcards("Host"));
        assert!(!has_wildcards("a\\b"));
        assert_eq!(literal(b"abc"), Some(&b"abc"[..]));
        assert_eq!(literal(b"a\\*"), None);
        assert!(matches_everything(b"***"));
        assert!(!matches_everything(b""));
        assert!(!matches_everything(b"*a"));
        assert!(can_match(b"", Case::Sensitive));
        assert!(can_match(b"a[b-c]*", Case::Sensitive));
        assert!(!can_match(b"a[z-a]*", Case::Sensitive));
        assert!(!can_match(b"*[!\x01-\x7f\x80-\xff]", Case::Sensitive));
        assert!(can_match(b"[a", Case::Sensitive));
        // Header names: only token characters.
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        assert!(can_match_where(b"X-*", Case::Insensitive, token));
        assert!(!can_match_where(b"X *", Case::Insensitive, token));
        assert!(!can_match_where(b"*:*", Case::Insensitive, token));
        assert!(glob_matches_literal(
            b"*.com",
            Case::Sensitive,
            b"a.com",
            Case::Sensitive
        ));
        assert!(glob_matches_literal(
            b"X-*",
            Case::Insensitive,
            b"x-foo",
            Case::Insensitive
        ));
        assert!(!glob_matches_literal(
            b"X-*",
            Case::Sensitive,
            b"x-foo",
            Case::Insensitive
        ));
        assert!(!glob_matches_literal(
            b"[X]-*",
            Case::Insensitive,
            b"x-foo",
            Case::Insensitive
        ));
        assert!(glob_matches_literal(
            b"1*",
            Case::Sensitive,
            b"123",
            Case::Insensitive
        ));
    }

    /// A plain recursive glob matcher for patterns made of literals, `?` and `*`.
    fn naive(p: &[u8], s: &[u8], fold: bool) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|k| naive(rest, &s[k..], fold)),
            Some((b'?', rest)) => !s.is_empty() && naive(rest, &s[1..], fold),
            Some((&c, rest)) => match s.split_first() {
                Some((&d, srest)) => {
                    (c == d || (fold && c.eq_ignore_ascii_case(&d))) && naive(rest, srest, fold)
                }
                None => false,
            },
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn agrees_with_naive_matcher(
            p in "[ab*?/.A]{0,8}",
            s in "[abAB/.]{0,10}",
            fold in any::<bool>(),
        ) {
            let case = if fold { Case::Insensitive } else { Case::Sensitive };
            prop_assert_eq!(
                fnmatch(p.as_bytes(), s.as_bytes(), case),
                naive(p.as_bytes(), s.as_bytes(), fold)
            );
        }

        #[test]
        fn can_match_is_exact(p in "[ab*?\\[\\]!z-]{0,7}", s in "[abz\\-\\[\\]!]{0,6}") {
            // If the matcher accepts any string, can_match must say so.
            if fnmatch(p.as_bytes(), s.as_bytes(), Case::Sensitive) {
                prop_assert!(can_match(p.as_bytes(), Case::Sensitive));
            }
        }
    }
}
