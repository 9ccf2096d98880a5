//! Writing a head for forwarding as `relay_writerequest_http` / `relay_writeresponse_http`
//! and `relay_writeheader_http` write it.

use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::Direction;
use std::cmp::Ordering;

/// Serialises `head` as relayd forwards it, with the version written as `HTTP/1.<minor>`
/// and the status code in decimal.
///
/// The start line is `METHOD SP path[?query] SP version` (the `?` whenever there is a
/// query, even an empty one) or `version SP code SP reason`. The headers follow in relayd's
/// header-tree order: sorted by name as `strcasecmp` orders them, headers of the same name
/// together in arrival order and all spelt like the first of them (`kv_parent->kv_key`),
/// each as `name: value`, then the empty line.
pub fn write_head(head: &Head, out: &mut Vec<u8>) {
    let mut version = *b"HTTP/1.0";
    let mut minor = Vec::new();
    push_decimal(&mut minor, u64::from(head.minor));
    if let [digit] = minor.as_slice() {
        version[7] = *digit;
        write(head, &version, None, out);
    } else {
        let mut v = b"HTTP/1.".to_vec();
        v.extend_from_slice(&minor);
        write(head, &v, None, out);
    }
}

/// Like [`write_head`], with the version and (responses) the status code exactly as they
/// were sent: relayd forwards both verbatim (see [`Parsed::Complete`](super::Parsed)).
pub fn write_head_verbatim(head: &Head, version: &[u8], code: &[u8], out: &mut Vec<u8>) {
    write(head, version, Some(code), out);
}

fn write(head: &Head, version: &[u8], code: Option<&[u8]>, out: &mut Vec<u8>) {
    match head.direction.unwrap_or(Direction::Request) {
        Direction::Request => {
            out.extend_from_slice(&head.method);
            out.push(b' ');
            out.extend_from_slice(&head.path);
            if let Some(query) = &head.query {
                out.push(b'?');
                out.extend_from_slice(query);
            }
            out.push(b' ');
            out.extend_from_slice(version);
        }
        Direction::Response => {
            out.extend_from_slice(version);
            out.push(b' ');
            match code {
                Some(code) => out.extend_from_slice(code),
                None => push_decimal(out, u64::from(head.status)),
            }
            out.push(b' ');
            out.extend_from_slice(&head.reason);
        }
    }
    out.extend_from_slice(b"\r\n");
    // The order on the stack for the usual head; a long one gets a vector.
    let count = head.headers.len();
    let mut small = [0usize; 64];
    let mut big = Vec::new();
    let order: &mut [usize] = match small.get_mut(..count) {
        Some(o) => o,
        None => {
            big.resize(count, 0);
            &mut big
        }
    };
    for (i, o) in order.iter_mut().enumerate() {
        *o = i;
    }
    // Stable: equal names keep their arrival order, like the children of a kv node.
    order.sort_by(|&a, &b| strcasecmp(name(head, a), name(head, b)));
    let mut spelling: &[u8] = &[];
    for (n, &i) in order.iter().enumerate() {
        let (key, value) = match head.headers.get(i) {
            Some((k, v)) => (k.as_slice(), v.as_slice()),
            None => continue,
        };
        if n == 0 || !key.eq_ignore_ascii_case(spelling) {
            spelling = key;
        }
        out.extend_from_slice(spelling);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

fn name(head: &Head, i: usize) -> &[u8] {
    head.headers.get(i).map_or(&[], |(n, _)| n.as_slice())
}

/// OpenBSD's `strcasecmp` order: bytes compared after ASCII lower-casing, unsigned, a
/// prefix first.
fn strcasecmp(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (x.to_ascii_lowercase(), y.to_ascii_lowercase());
        if x != y {
            return x.cmp(&y);
        }
    }
    a.len().cmp(&b.len())
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or(&[]));
}
