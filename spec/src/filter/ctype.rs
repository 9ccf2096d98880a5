//! `<ctype.h>` in the C locale, byte by byte, as relayd's matchers see it.
//!
//! Rust's `u8::is_ascii_*` differ from C in small places (`is_ascii_whitespace` lacks
//! `\v`), so the matchers that must behave exactly like OpenBSD's libc use these instead.

pub(crate) fn is_upper(c: u8) -> bool {
    c.is_ascii_uppercase()
}

pub(crate) fn is_lower(c: u8) -> bool {
    c.is_ascii_lowercase()
}

pub(crate) fn is_alpha(c: u8) -> bool {
    c.is_ascii_alphabetic()
}

pub(crate) fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

pub(crate) fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

pub(crate) fn is_xdigit(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// `isspace`: space, `\t`, `\n`, `\v`, `\f`, `\r`.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

pub(crate) fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

/// `iscntrl`: 0x00–0x1f and 0x7f.
pub(crate) fn is_cntrl(c: u8) -> bool {
    c < 0x20 || c == 0x7f
}

/// `isgraph`: printable and not space.
pub(crate) fn is_graph(c: u8) -> bool {
    (0x21..=0x7e).contains(&c)
}

pub(crate) fn is_print(c: u8) -> bool {
    (0x20..=0x7e).contains(&c)
}

pub(crate) fn is_punct(c: u8) -> bool {
    is_graph(c) && !is_alnum(c)
}

/// `tolower` in the C locale: only `A`–`Z` change.
pub(crate) fn to_lower(c: u8) -> u8 {
    c.to_ascii_lowercase()
}

/// The part of `s` a C function sees: everything before the first NUL.
pub(crate) fn cstr(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(n) => s.get(..n).unwrap_or(s),
        None => s,
    }
}

/// `strcasecmp(a, b) == 0` in the C locale.
pub(crate) fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// The order of `strcasecmp`: byte-wise on lower-cased bytes, a prefix sorts first.
pub(crate) fn cmp_ignore_case(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let la = a.iter().map(|&c| to_lower(c));
    let lb = b.iter().map(|&c| to_lower(c));
    la.cmp(lb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_locale_classes() {
        assert!(is_space(0x0b));
        assert!(!0x0bu8.is_ascii_whitespace());
        assert!(is_punct(b'_') && !is_punct(b'a') && !is_punct(b' '));
        assert!(!is_upper(0xc4));
        assert_eq!(to_lower(0xc4), 0xc4);
        assert_eq!(cstr(b"ab\0cd"), b"ab");
        assert_eq!(cmp_ignore_case(b"Host", b"host"), std::cmp::Ordering::Equal);
        assert_eq!(cmp_ignore_case(b"Ho", b"host"), std::cmp::Ordering::Less);
        // '_' (0x5f) sorts after 'Z' but before 'a' in raw bytes; strcasecmp lowers first.
        assert_eq!(cmp_ignore_case(b"A_", b"Aa"), std::cmp::Ordering::Less);
        assert_eq!(cmp_ignore_case(b"Z", b"_"), std::cmp::Ordering::Greater);
    }
}
