//! The C library behaviour relayd's HTTP code leans on, byte for byte: libevent's
//! `evbuffer_readln(EVBUFFER_EOL_CRLF)`, OpenBSD's `strtoll`/`strtonum`, and the small
//! string helpers of `relayd.c` (`parse_url`, `kv_find_value`).

/// `evbuffer_readln(…, EVBUFFER_EOL_CRLF)` on `buf`: the first line without its end (a LF,
/// optionally preceded by one CR) and the bytes it takes, or `None` before the LF arrives.
/// A CR anywhere else stays in the line.
pub(crate) fn readln(buf: &[u8], from: usize) -> Option<(&[u8], usize)> {
    let lf = from + memchr::memchr(b'\n', buf.get(from..)?)?;
    let line = buf.get(..lf)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    Some((line, lf + 1))
}

/// How long the line will be at least once its LF arrives (a trailing CR may be its end).
pub(crate) fn partial_len(buf: &[u8]) -> usize {
    buf.len() - usize::from(buf.last() == Some(&b'\r'))
}

/// `s` as C sees it: up to the first NUL.
pub(crate) fn cstr(s: &[u8]) -> &[u8] {
    match s.iter().position(|&b| b == 0) {
        Some(i) => s.get(..i).unwrap_or(s),
        None => s,
    }
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// OpenBSD's `strtoll(s, &ep, base)` (base 10 or 16): the value, the offset of `ep`
/// (0 when nothing was converted) and whether it overflowed (ERANGE, value clamped).
pub(crate) fn strtoll(s: &[u8], base: u32) -> (i64, usize, bool) {
    let s = cstr(s);
    let mut i = 0;
    while s.get(i).is_some_and(|&b| is_c_space(b)) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&c @ (b'-' | b'+')) = s.get(i) {
        neg = c == b'-';
        i += 1;
    }
    if base == 16
        && s.get(i) == Some(&b'0')
        && matches!(s.get(i + 1), Some(b'x' | b'X'))
        && s.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    {
        i += 2;
    }
    let start = i;
    let mut acc: i64 = 0;
    let mut range = false;
    while let Some(d) = s.get(i).and_then(|&c| char::from(c).to_digit(base)) {
        if !range {
            let next = acc.checked_mul(i64::from(base)).and_then(|a| {
                if neg {
                    a.checked_sub(i64::from(d))
                } else {
                    a.checked_add(i64::from(d))
                }
            });
            match next {
                Some(v) => acc = v,
                None => {
                    range = true;
                    acc = if neg { i64::MIN } else { i64::MAX };
                }
            }
        }
        i += 1;
    }
    if i == start {
        return (0, 0, false);
    }
    (acc, i, range)
}

/// OpenBSD's `strtonum(s, min, max, &errstr)`: the value or the errstr.
pub(crate) fn strtonum(s: &[u8], min: i64, max: i64) -> Result<i64, &'static str> {
    let (ll, ep, range) = strtoll(s, 10);
    if ep == 0 || ep != cstr(s).len() {
        Err("invalid")
    } else if (ll == i64::MIN && range) || ll < min {
        Err("too small")
    } else if (ll == i64::MAX && range) || ll > max {
        Err("too large")
    } else {
        Ok(ll)
    }
}

/// `relay_http_header_name_valid`: only RFC 9110 token characters (an empty name passes).
pub(crate) fn header_name_valid(name: &[u8]) -> bool {
    name.iter().all(|&b| TOKEN[usize::from(b)])
}

/// RFC 9110 tchar, by byte.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric();
        b += 1;
    }
    let extra = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] = true;
        i += 1;
    }
    t
};

/// `parse_url(url, …)`: the host of an absolute-URI target, if `url` is one.
pub(crate) fn url_host(url: &[u8]) -> Option<&[u8]> {
    let p = url.windows(2).position(|w| w == b":/")?;
    if url.iter().position(|&b| b == b':' || b == b'/') != Some(p) {
        return None;
    }
    let rest = url.get(p..)?;
    let skip = rest
        .iter()
        .position(|&b| b != b':' && b != b'/')
        .unwrap_or(rest.len());
    let host = rest.get(skip..)?;
    if host.is_empty() {
        return None;
    }
    let end = host.iter().position(|&b| b == b'/').unwrap_or(host.len());
    host.get(..end)
}

/// `strncasecmp(a, b, n) == 0` with C's end-of-string semantics.
fn strncasecmp_eq(a: &[u8], b: &[u8], n: usize) -> bool {
    for i in 0..n {
        let ca = a.get(i).copied().unwrap_or(0);
        let cb = b.get(i).copied().unwrap_or(0);
        if !ca.eq_ignore_ascii_case(&cb) {
            return false;
        }
        if ca == 0 {
            return true;
        }
    }
    true
}

/// One round of `kv_find_value`'s loop: skip blanks, compare the word's length.
fn word_matches(seg: &[u8], value: &[u8]) -> bool {
    let seg = cstr(seg);
    let start = seg
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(seg.len());
    let word = seg.get(start..).unwrap_or(&[]);
    let len = word
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(word.len());
    strncasecmp_eq(word, value, len)
}

/// `kv_find_value(tree, key, value, ",")` on a header value: relayd compares each
/// comma-separated word (the whole value first) by the word's own length, so a prefix or an
/// empty word also matches.
pub(crate) fn value_has(header_value: &[u8], value: &[u8]) -> bool {
    word_matches(header_value, value)
        || cstr(header_value)
            .split(|&b| b == b',')
            .any(|seg| word_matches(seg, value))
}
