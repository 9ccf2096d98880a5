//! The url lookup of `url` filter rules (relay_http.c `relay_lookup_url`), and digests.
//!
//! relayd takes the `Host` header, canonicalises it (relayd.c `canonicalize_host`: an
//! IPv4/IPv6 literal is re-printed by `inet_pton`/`inet_ntop`, anything else is
//! lower-cased with leading, repeated and trailing dots removed; more than 255 bytes or an
//! empty result is invalid), and probes candidates in this order, stopping at the first
//! that matches (an old version of Google's Safe Browsing lookup):
//!
//! * host forms: the full host, then up to four suffixes made by dropping leading labels,
//!   longest first, down to the last two labels; the suffixes come from the last five
//!   labels only, so `a.b.c.d.e.f.com` probes `a.b.c.d.e.f.com`, `c.d.e.f.com`,
//!   `d.e.f.com`, `e.f.com`, `f.com` (`b.c.d.e.f.com` is skipped). IP addresses are split
//!   at their dots like names;
//! * for each host form: `host + path + "?" + query` (when the request has a `?`), then
//!   `host + path`, then `host + ` each directory prefix of the path (`/`, `/a/`, `/a/b/`,
//!   `/a/b/c/` — at most four, never the whole path again).
//!
//! The path is relayd's `http_path`: the request target before the `?`, which need not
//! start with `/` (`*`, `host:443`, `http://x/y`), and the prefixes are cut at its `/`s.
//! A `Host` with a port keeps it (`example.com:8080`). Candidates are produced without
//! allocating; [`candidates`] collects them for the compiler and tests.

use super::ctype::{cstr, to_lower};
use super::lua::Subject;
use super::DigestAlg;
use md5::Md5;
use sha1::{Digest, Sha1};

/// relayd.h `RELAY_MAXLOOKUPLEVELS`.
pub const MAX_LOOKUP_LEVELS: usize = 5;
/// OpenBSD `HOST_NAME_MAX`; the canonical host lives in a buffer one byte larger.
pub const HOST_NAME_MAX: usize = 255;

/// A canonical host, on the stack.
#[derive(Clone)]
pub struct CanonicalHost {
    buf: [u8; HOST_NAME_MAX + 1],
    len: usize,
}

impl CanonicalHost {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl std::fmt::Debug for CanonicalHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// relayd.c `canonicalize_host`; `None` where relayd fails (the request then gets
/// 400 "Bad Request" from `relay_test`, see `eval`).
pub fn canonicalize_host(host: &[u8]) -> Option<CanonicalHost> {
    let host = cstr(host);
    let mut out = CanonicalHost {
        buf: [0; HOST_NAME_MAX + 1],
        len: 0,
    };
    if let Some(a) = inet_pton4(host) {
        out.len = ntop4(&a, &mut out.buf, 0);
        return Some(out);
    }
    if let Some(a) = inet_pton6(host) {
        out.len = ntop6(&a, &mut out.buf);
        return Some(out);
    }
    let mut j = 0usize;
    for &b in host {
        // The length check comes before the dot check, as in relayd.
        if j >= HOST_NAME_MAX {
            return None;
        }
        let c = to_lower(b);
        if c == b'.' && (j == 0 || out.buf.get(j - 1) == Some(&b'.')) {
            continue;
        }
        if let Some(slot) = out.buf.get_mut(j) {
            *slot = c;
        }
        j += 1;
    }
    while j > 0 && out.buf.get(j - 1) == Some(&b'.') {
        j -= 1;
    }
    if j == 0 {
        return None;
    }
    out.len = j;
    Some(out)
}

/// One url candidate: `host + path` and, when `query` is set, `"?" + query`.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub host: &'a [u8],
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
}

impl Candidate<'_> {
    fn pieces(&self) -> [&[u8]; 4] {
        match self.query {
            Some(q) => [self.host, self.path, b"?", q],
            None => [self.host, self.path, b"", b""],
        }
    }

    /// Length of the candidate text.
    pub fn len(&self) -> usize {
        self.pieces().iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The candidate's bytes in order.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + '_ {
        self.pieces().into_iter().flatten().copied()
    }

    /// `strcasecmp(key, candidate) == 0`, the plain `url` key test.
    pub fn eq_ignore_case(&self, key: &[u8]) -> bool {
        self.len() == key.len()
            && self
                .bytes()
                .zip(key.iter())
                .all(|(a, &b)| to_lower(a) == to_lower(b))
    }

    /// The candidate's digest in lower-case hex (40 bytes for SHA-1, 32 for MD5), as
    /// relayd.c `digeststr` prints it; returned in a stack buffer with its length.
    pub fn digest_hex(&self, alg: DigestAlg) -> ([u8; 40], usize) {
        let mut out = [0u8; 40];
        match alg {
            DigestAlg::Sha1 => {
                let mut h = Sha1::new();
                for p in self.pieces() {
                    h.update(p);
                }
                let d = h.finalize();
                let n = hex_into(d.as_slice(), &mut out);
                (out, n)
            }
            DigestAlg::Md5 => {
                let mut h = Md5::new();
                for p in self.pieces() {
                    h.update(p);
                }
                let d = h.finalize();
                let n = hex_into(d.as_slice(), &mut out);
                (out, n)
            }
        }
    }

    /// The candidate as one allocated string (for logs, the compiler and tests).
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes().collect()
    }
}

impl Subject for Candidate<'_> {
    fn len(&self) -> usize {
        Candidate::len(self)
    }
    fn at(&self, i: usize) -> u8 {
        let mut i = i;
        for p in self.pieces() {
            if let Some(&b) = p.get(i) {
                return b;
            }
            i -= p.len();
        }
        0
    }
}

/// Lower-case hex of `data` into `out`; returns the number of bytes written.
fn hex_into(data: &[u8], out: &mut [u8]) -> usize {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0;
    for &b in data {
        for nib in [b >> 4, b & 0x0f] {
            if let Some(slot) = out.get_mut(n) {
                *slot = HEX.get(usize::from(nib)).copied().unwrap_or(b'0');
                n += 1;
            }
        }
    }
    n
}

/// The lower-case hex digest of `data` (relayd's `digeststr`).
pub fn digest_hex(alg: DigestAlg, data: &[u8]) -> String {
    let c = Candidate {
        host: data,
        path: b"",
        query: None,
    };
    let (buf, n) = c.digest_hex(alg);
    String::from_utf8_lossy(buf.get(..n).unwrap_or(&[])).into_owned()
}

/// Calls `f` on every candidate in relayd's order until it returns `true`; returns whether
/// it did. `path` is the request target before `?`, `query` what follows it (if a `?` was
/// there at all, possibly empty).
pub fn for_each_candidate(
    host: &CanonicalHost,
    path: &[u8],
    query: Option<&[u8]>,
    mut f: impl FnMut(&Candidate<'_>) -> bool,
) -> bool {
    let ph = host.as_bytes();
    let path = cstr(path);
    let query = query.map(cstr);
    for start in host_forms(ph).into_iter().flatten() {
        let h = ph.get(start..).unwrap_or(&[]);
        // 1. complete path with query
        if let Some(q) = query {
            if f(&Candidate {
                host: h,
                path,
                query: Some(q),
            }) {
                return true;
            }
        }
        // 2. complete path without query
        if f(&Candidate {
            host: h,
            path,
            query: None,
        }) {
            return true;
        }
        // 3. directory prefixes: after each '/', unless it ends the path; at most four.
        let mut j = 0usize;
        let mut slash = path.iter().position(|&b| b == b'/');
        while let Some(sl) = slash {
            let next = sl + 1;
            if j > MAX_LOOKUP_LEVELS - 2 || next >= path.len() {
                break;
            }
            if f(&Candidate {
                host: h,
                path: path.get(..next).unwrap_or(path),
                query: None,
            }) {
                return true;
            }
            slash = path
                .get(next..)
                .and_then(|rest| rest.iter().position(|&b| b == b'/'))
                .map(|k| next + k);
            j += 1;
        }
    }
    false
}

/// Start offsets of the host forms in probing order (longest first).
fn host_forms(ph: &[u8]) -> [Option<usize>; MAX_LOOKUP_LEVELS] {
    // relay_lookup_url: walk backwards counting dots; the second dot from the end starts
    // the two-label suffix, and so on, for at most MAX_LOOKUP_LEVELS - 1 suffixes.
    let mut hi: [Option<usize>; MAX_LOOKUP_LEVELS] = [None; MAX_LOOKUP_LEVELS];
    let mut dots: isize = -1;
    let mut i = ph.len();
    while i > 1 {
        i -= 1;
        if ph.get(i) == Some(&b'.') {
            dots += 1;
            if dots > 0 {
                if let Some(slot) = hi.get_mut((dots - 1) as usize) {
                    *slot = Some(i + 1);
                }
            }
        }
        if dots > (MAX_LOOKUP_LEVELS as isize - 2) {
            break;
        }
    }
    let dots = dots.max(0) as usize;
    if let Some(slot) = hi.get_mut(dots) {
        *slot = Some(0);
    }
    // Probe from the highest level (the full host) down.
    hi.reverse();
    hi
}

/// The candidates for a `Host` value and request target, in order; `None` when relayd
/// cannot canonicalise the host.
pub fn candidates(host: &[u8], path: &[u8], query: Option<&[u8]>) -> Option<Vec<Vec<u8>>> {
    let h = canonicalize_host(host)?;
    let mut out = Vec::new();
    for_each_candidate(&h, path, query, |c| {
        out.push(c.to_vec());
        false
    });
    Some(out)
}

/// libc `inet_pton(AF_INET)` (OpenBSD inet_pton.c 1.10): exactly four dotted decimal
/// octets, leading zeros allowed, no hex or short forms.
fn inet_pton4(src: &[u8]) -> Option<[u8; 4]> {
    let mut tmp = [0u8; 4];
    let mut tp = 0usize;
    let mut saw_digit = false;
    let mut octets = 0;
    for &ch in src {
        if ch.is_ascii_digit() {
            let cur = tmp.get(tp).copied().unwrap_or(0);
            let new = u32::from(cur) * 10 + u32::from(ch - b'0');
            if new > 255 {
                return None;
            }
            if !saw_digit {
                octets += 1;
                if octets > 4 {
                    return None;
                }
                saw_digit = true;
            }
            if let Some(slot) = tmp.get_mut(tp) {
                *slot = new as u8;
            }
        } else if ch == b'.' && saw_digit {
            if octets == 4 {
                return None;
            }
            tp += 1;
            if let Some(slot) = tmp.get_mut(tp) {
                *slot = 0;
            }
            saw_digit = false;
        } else {
            return None;
        }
    }
    if octets < 4 {
        return None;
    }
    Some(tmp)
}

/// libc `inet_pton(AF_INET6)` (OpenBSD inet_pton.c 1.10).
fn inet_pton6(src: &[u8]) -> Option<[u8; 16]> {
    let mut tmp = [0u8; 16];
    let endp = 16usize;
    let mut tp = 0usize;
    let mut colonp: Option<usize> = None;
    let mut i = 0usize;
    // Leading :: requires some special handling.
    if src.first() == Some(&b':') {
        if src.get(1) != Some(&b':') {
            return None;
        }
        i = 1;
    }
    let mut curtok = i;
    let mut saw_xdigit = false;
    let mut count_xdigit = 0;
    let mut val: u32 = 0;
    while let Some(&ch) = src.get(i) {
        i += 1;
        if let Some(d) = (ch as char).to_digit(16) {
            if count_xdigit >= 4 {
                return None;
            }
            val = (val << 4) | d;
            if val > 0xffff {
                return None;
            }
            saw_xdigit = true;
            count_xdigit += 1;
            continue;
        }
        if ch == b':' {
            curtok = i;
            if !saw_xdigit {
                if colonp.is_some() {
                    return None;
                }
                colonp = Some(tp);
                continue;
            } else if i >= src.len() {
                return None;
            }
            if tp + 2 > endp {
                return None;
            }
            put16(&mut tmp, tp, val);
            tp += 2;
            saw_xdigit = false;
            count_xdigit = 0;
            val = 0;
            continue;
        }
        if ch == b'.' && tp + 4 <= endp {
            if let Some(v4) = inet_pton4(src.get(curtok..).unwrap_or(&[])) {
                for (k, b) in v4.iter().enumerate() {
                    if let Some(slot) = tmp.get_mut(tp + k) {
                        *slot = *b;
                    }
                }
                tp += 4;
                saw_xdigit = false;
                break;
            }
        }
        return None;
    }
    if saw_xdigit {
        if tp + 2 > endp {
            return None;
        }
        put16(&mut tmp, tp, val);
        tp += 2;
    }
    if let Some(cp) = colonp {
        if tp == endp {
            return None;
        }
        // Shift the part after "::" to the end.
        let n = tp - cp;
        for k in 1..=n {
            let v = tmp.get(cp + n - k).copied().unwrap_or(0);
            if let Some(slot) = tmp.get_mut(endp - k) {
                *slot = v;
            }
            if let Some(slot) = tmp.get_mut(cp + n - k) {
                *slot = 0;
            }
        }
        tp = endp;
    }
    if tp != endp {
        return None;
    }
    Some(tmp)
}

fn put16(buf: &mut [u8; 16], at: usize, val: u32) {
    if let Some(slot) = buf.get_mut(at) {
        *slot = (val >> 8) as u8;
    }
    if let Some(slot) = buf.get_mut(at + 1) {
        *slot = val as u8;
    }
}

/// A tiny cursor writing into the host buffer.
struct Out<'a> {
    buf: &'a mut [u8],
    n: usize,
}

impl Out<'_> {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.n) {
            *slot = b;
            self.n += 1;
        }
    }
    fn dec(&mut self, v: u8) {
        if v >= 100 {
            self.push(b'0' + v / 100);
        }
        if v >= 10 {
            self.push(b'0' + (v / 10) % 10);
        }
        self.push(b'0' + v % 10);
    }
    fn hex(&mut self, v: u16) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut started = false;
        for shift in [12u16, 8, 4, 0] {
            let nib = ((v >> shift) & 0xf) as usize;
            if nib != 0 || started || shift == 0 {
                self.push(HEX.get(nib).copied().unwrap_or(b'0'));
                started = true;
            }
        }
    }
}

/// libc `inet_ntop(AF_INET)`: `%u.%u.%u.%u`, written at `off`; returns the end offset.
fn ntop4(a: &[u8; 4], buf: &mut [u8], off: usize) -> usize {
    let mut o = Out { buf, n: off };
    for (k, &b) in a.iter().enumerate() {
        if k > 0 {
            o.push(b'.');
        }
        o.dec(b);
    }
    o.n
}

/// libc `inet_ntop(AF_INET6)` (OpenBSD inet_ntop.c 1.13): the longest run (first on ties)
/// of at least two zero words becomes `::`; `::a.b.c.d` and `::ffff:a.b.c.d` keep the
/// IPv4 dotted form.
fn ntop6(a: &[u8; 16], buf: &mut [u8]) -> usize {
    let mut words = [0u16; 8];
    for (k, w) in words.iter_mut().enumerate() {
        let hi = a.get(2 * k).copied().unwrap_or(0);
        let lo = a.get(2 * k + 1).copied().unwrap_or(0);
        *w = u16::from(hi) << 8 | u16::from(lo);
    }
    let (mut best_base, mut best_len) = (None::<usize>, 0usize);
    let (mut cur_base, mut cur_len) = (None::<usize>, 0usize);
    for (k, &w) in words.iter().enumerate() {
        if w == 0 {
            if cur_base.is_none() {
                cur_base = Some(k);
                cur_len = 1;
            } else {
                cur_len += 1;
            }
        } else if cur_base.is_some() {
            if best_base.is_none() || cur_len > best_len {
                best_base = cur_base;
                best_len = cur_len;
            }
            cur_base = None;
        }
    }
    if cur_base.is_some() && (best_base.is_none() || cur_len > best_len) {
        best_base = cur_base;
        best_len = cur_len;
    }
    if best_base.is_some() && best_len < 2 {
        best_base = None;
    }

    let mut o = Out { buf, n: 0 };
    let mut k = 0usize;
    while k < 8 {
        if let Some(b) = best_base {
            if k >= b && k < b + best_len {
                if k == b {
                    o.push(b':');
                }
                k += 1;
                continue;
            }
        }
        if k != 0 {
            o.push(b':');
        }
        if k == 6
            && best_base == Some(0)
            && (best_len == 6 || (best_len == 5 && words.get(5) == Some(&0xffff)))
        {
            let v4 = [
                a.get(12).copied().unwrap_or(0),
                a.get(13).copied().unwrap_or(0),
                a.get(14).copied().unwrap_or(0),
                a.get(15).copied().unwrap_or(0),
            ];
            let n = o.n;
            return ntop4(&v4, o.buf, n);
        }
        o.hex(words.get(k).copied().unwrap_or(0));
        k += 1;
    }
    if let Some(b) = best_base {
        if b + best_len == 8 {
            o.push(b':');
        }
    }
    o.n
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

    fn canon(h: &str) -> Option<String> {
        canonicalize_host(h.as_bytes()).map(|c| String::from_utf8(c.as_bytes().to_vec()).unwrap())
    }

    fn cands(host: &str, target: &str) -> Vec<String> {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q.as_bytes())),
            None => (target, None),
        };
        candidates(host.as_bytes(), path.as_bytes(), query)
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn canonical_hosts() {
        assert_eq!(canon("WWW.Example.COM").as_deref(), Some("www.example.com"));
        assert_eq!(canon("..a..b...").as_deref(), Some("a.b"));
        assert_eq!(
            canon("example.com:8080").as_deref(),
            Some("example.com:8080")
        );
        assert_eq!(canon("010.001.000.1").as_deref(), Some("10.1.0.1"));
        assert_eq!(canon("::FFFF:1.2.3.4").as_deref(), Some("::ffff:1.2.3.4"));
        assert_eq!(canon("::102:304").as_deref(), Some("::1.2.3.4"));
        assert_eq!(
            canon("2001:DB8:0:0:1:0:0:1").as_deref(),
            Some("2001:db8::1:0:0:1")
        );
        assert_eq!(canon("1:0:0:0:0:0:0:0").as_deref(), Some("1::"));
        assert_eq!(canon("::1").as_deref(), Some("::1"));
        assert_eq!(canon("1:2:3:4:5:6:7::").as_deref(), Some("1:2:3:4:5:6:7:0"));
        // Not addresses: treated as names.
        assert_eq!(canon("1.2.3").as_deref(), Some("1.2.3"));
        assert_eq!(canon("[::1]:80").as_deref(), Some("[::1]:80"));
        assert_eq!(canon("00001::").as_deref(), Some("00001::"));
        assert_eq!(canon(""), None);
        assert_eq!(canon("..."), None);
        assert_eq!(canon(&"a".repeat(255)).map(|s| s.len()), Some(255));
        assert_eq!(canon(&"a".repeat(256)), None);
    }

    #[test]
    fn candidate_order() {
        assert_eq!(
            cands("a.b.c.d.e.f.g", "/1/2.html?param=1"),
            vec![
                "a.b.c.d.e.f.g/1/2.html?param=1",
                "a.b.c.d.e.f.g/1/2.html",
                "a.b.c.d.e.f.g/",
                "a.b.c.d.e.f.g/1/",
                "c.d.e.f.g/1/2.html?param=1",
                "c.d.e.f.g/1/2.html",
                "c.d.e.f.g/",
                "c.d.e.f.g/1/",
                "d.e.f.g/1/2.html?param=1",
                "d.e.f.g/1/2.html",
                "d.e.f.g/",
                "d.e.f.g/1/",
                "e.f.g/1/2.html?param=1",
                "e.f.g/1/2.html",
                "e.f.g/",
                "e.f.g/1/",
                "f.g/1/2.html?param=1",
                "f.g/1/2.html",
                "f.g/",
                "f.g/1/",
            ]
        );
        assert_eq!(cands("Example.COM", "/"), vec!["example.com/"]);
        assert_eq!(
            cands("localhost", "/a/b/"),
            vec!["localhost/a/b/", "localhost/", "localhost/a/"]
        );
        assert_eq!(
            cands("www.example.com", "/a/b/c/d/e/f"),
            vec![
                "www.example.com/a/b/c/d/e/f",
                "www.example.com/",
                "www.example.com/a/",
                "www.example.com/a/b/",
                "www.example.com/a/b/c/",
                "example.com/a/b/c/d/e/f",
                "example.com/",
                "example.com/a/",
                "example.com/a/b/",
                "example.com/a/b/c/",
            ]
        );
        // An empty query still adds the "?" candidate.
        assert_eq!(cands("h", "/x?"), vec!["h/x?", "h/x", "h/"]);
        // IP addresses are split at dots too.
        assert_eq!(
            cands("192.168.1.1", "/"),
            vec!["192.168.1.1/", "168.1.1/", "1.1/"]
        );
        // A target without '/' has no directory prefixes.
        assert_eq!(cands("h.example", "*"), vec!["h.example*"]);
    }

    #[test]
    fn digests() {
        assert_eq!(
            digest_hex(DigestAlg::Sha1, b"abc"),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            digest_hex(DigestAlg::Md5, b"abc"),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        let c = Candidate {
            host: b"ab",
            path: b"c",
            query: None,
        };
        let (buf, n) = c.digest_hex(DigestAlg::Sha1);
        assert_eq!(&buf[..n], b"a9993e364706816aba3e25717850c26c9cd0d89d");
        assert!(c.eq_ignore_case(b"ABC"));
        let q = Candidate {
            host: b"h",
            path: b"/p",
            query: Some(b"x=1"),
        };
        assert_eq!(q.to_vec(), b"h/p?x=1");
        assert_eq!(Subject::at(&q, 3), b'?');
        assert_eq!(Subject::len(&q), 7);
    }
}
