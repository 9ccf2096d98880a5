//! The request-smuggling battery (issue 9, item 1): malformed and ambiguous HTTP/1 messages
//! sent through relayd-run's HTTP relays to a recording backend of ours, which keeps every
//! byte it receives per connection and answers what it can parse strictly (RFC 9112).
//!
//! Three relays, one `relayd-run -d` process each, all with the same protocol:
//! `return error`, `match request path log "*"` (so the session close line lists every
//! request the relay let through its filters), a `header set` naming the client (so each
//! backend connection is traced to its vector) and `block request quick path "/blocked*"`.
//! The relays: (a) plain HTTP, (b) `http websockets`, (c) HTTPS (`listen … tls`; the column
//! reads "n/a" with the reason when relayd-run cannot serve it).
//!
//! Most vectors hide `GET /blocked` in the first request's body or framing. Each vector
//! runs over its own client connection from its own loopback address (127.2x.y.z), which is
//! how its close line and its backend connections are found. For every vector and relay
//! the test records:
//! * **rejected**: the backend received no complete request head (the client got the
//!   relay's error page or a close);
//! * **normalised**: the backend received only messages a strict RFC 9112 parser takes
//!   without complaint (for the malformed-response vectors: the client did);
//! * **forwarded** as-is: the malformation reached the backend (client): the strict parse
//!   finds a violation, or the vector's own detector fires.
//!
//! The backend answers like a strict server: each request it parses gets a response naming
//! it (`X-Answer`), a violation gets 400 and a close, a request with `Connection: close`
//! is the last it reads, and a 101 to a request that asked for the upgrade (or a 2xx to
//! CONNECT) turns the rest of the connection into a tunnel it does not parse.
//!
//! The test fails if a vector not marked lenient is forwarded as-is (lenient vectors name
//! the reference behaviour that forwards them and why that is no desync), if a request to
//! `/blocked` reaches the backend (strictly parsed, or, after a violation, any line that
//! reads like a request line for it, since a lenient backend may take it for one), if the
//! backend parsed a request the relay's close line does not list, or if the client missed
//! a response it must get. Vectors that show a known relayd-run bug carry its description
//! (`bug`): the report groups the failures by bug, and says when a marked vector passes.
//!
//! The table (classes × relays) is printed; `testsuite/bench/smuggling` runs this in release
//! mode and keeps the table. `SMUGGLING_VERBOSE=1` prints every vector's outcome.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{compile, free_port, temp_dir, Relay};

// ---------------------------------------------------------------------------------------
// Bounds
// ---------------------------------------------------------------------------------------

/// Client connections running at once.
const PARALLEL: usize = 24;
/// The client stops reading once nothing came for this long (then half-closes).
const CLIENT_IDLE: Duration = Duration::from_millis(400);
/// The longest a client reads, per phase.
const CLIENT_CAP: Duration = Duration::from_secs(5);
/// The backend closes a connection nothing arrived on for this long (a server's read
/// timeout): a relay waiting for a response to a message the backend thinks incomplete
/// then sees the close.
const BACKEND_IDLE: Duration = Duration::from_millis(1500);
/// The longest a backend connection lives.
const BACKEND_CAP: Duration = Duration::from_secs(20);
/// How long to wait for a vector's close line once its client is done.
const CLOSE_LINE_WAIT: Duration = Duration::from_secs(8);
/// The relay's `session timeout`: the last resort for a session both ends wait on.
const SESSION_TIMEOUT_S: u32 = 4;

// ---------------------------------------------------------------------------------------
// Vectors
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Class {
    Framing,
    TeObfuscation,
    HeaderSyntax,
    Chunked,
    RequestLine,
    Upgrade,
    Response,
}

impl Class {
    const ALL: [Class; 7] = [
        Class::Framing,
        Class::TeObfuscation,
        Class::HeaderSyntax,
        Class::Chunked,
        Class::RequestLine,
        Class::Upgrade,
        Class::Response,
    ];

    fn name(self) -> &'static str {
        match self {
            Class::Framing => "framing conflicts",
            Class::TeObfuscation => "TE obfuscations",
            Class::HeaderSyntax => "header syntax",
            Class::Chunked => "chunked bodies",
            Class::RequestLine => "request lines",
            Class::Upgrade => "upgrades",
            Class::Response => "malformed responses",
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    Send(Vec<u8>),
    /// Read until something arrives (or the time is up) before the next step.
    Await(Duration),
}

/// How the backend answers a vector's requests (all others: [`Answer::Normal`]).
#[derive(Clone, Debug)]
enum Answer {
    /// 200 with `X-Answer: METHOD TARGET` and a 2-byte body (none for HEAD), 101 to a
    /// websocket upgrade, 405 to CONNECT (an origin server).
    Normal,
    /// Request `n` gets these bytes once it is complete.
    Nth(usize, Vec<u8>),
    /// Request 0 gets these bytes as soon as its head is complete, before its body.
    Early(Vec<u8>),
    /// `100 Continue` as soon as request 0's head is complete, the normal answer once
    /// the request is complete.
    Continue,
}

type Detector = fn(&[u8]) -> bool;

#[derive(Clone)]
struct Vector {
    class: Class,
    name: String,
    steps: Vec<Step>,
    answer: Answer,
    /// `None`: ambiguous, forwarding it as-is fails the test. `Some(why)`: relayd's
    /// reference behaviour forwards it and that is no desync, with the reference.
    lenient: Option<&'static str>,
    /// A malformation the strict parser cannot see by itself (the bytes are valid HTTP):
    /// true when it reached the backend (request vectors) or the client (responses).
    as_is: Option<Detector>,
    /// What the client must receive, and why.
    client_must: Option<(&'static str, Detector)>,
    /// A relayd-run bug this vector shows: it fails until the bug is fixed.
    bug: Option<&'static str>,
}

fn v(class: Class, name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Vector {
    Vector {
        class,
        name: name.into(),
        steps: vec![Step::Send(bytes.into())],
        answer: Answer::Normal,
        lenient: None,
        as_is: None,
        client_must: None,
        bug: None,
    }
}

impl Vector {
    fn lenient(mut self, why: &'static str) -> Vector {
        self.lenient = Some(why);
        self
    }

    fn answer(mut self, a: Answer) -> Vector {
        self.answer = a;
        self
    }

    fn steps(mut self, steps: Vec<Step>) -> Vector {
        self.steps = steps;
        self
    }

    fn detect(mut self, d: Detector) -> Vector {
        self.as_is = Some(d);
        self
    }

    fn must(mut self, what: &'static str, d: Detector) -> Vector {
        self.client_must = Some((what, d));
        self
    }

    #[allow(
        dead_code,
        reason = "no relayd-run bug is known to the battery now; the mark waits for the next"
    )]
    fn bug(mut self, what: &'static str) -> Vector {
        self.bug = Some(what);
        self
    }

    /// Everything the client sends, in order.
    fn sent(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for s in &self.steps {
            if let Step::Send(b) = s {
                out.extend_from_slice(b);
            }
        }
        out
    }
}

/// The request every vector tries to sneak past `block request quick path "/blocked*"`.
const SMUG: &str = "GET /blocked HTTP/1.1\r\nHost: a\r\n\r\n";
const LAST: &str = "0\r\n\r\n";

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// `POST /ok` with `Host: a`, these field lines (each ending in CRLF) and this body.
fn post(fields: &str, body: &str) -> Vec<u8> {
    format!("POST /ok HTTP/1.1\r\nHost: a\r\n{fields}\r\n{body}").into_bytes()
}

fn post_b(fields: &[u8], body: &[u8]) -> Vec<u8> {
    cat(&[b"POST /ok HTTP/1.1\r\nHost: a\r\n", fields, b"\r\n", body])
}

/// The CL.TE shape around one Transfer-Encoding field line (`te`, without its CRLF): the
/// chunked body ends at once and the smuggled request follows, all covered by the
/// Content-Length. A relay that frames by Content-Length forwards the smuggled request as
/// body; a backend that honours the Transfer-Encoding takes it for the next request.
fn cl_te(te: &[u8]) -> Vec<u8> {
    let body = format!("{LAST}{SMUG}");
    let cl = format!("Content-Length: {}\r\n", body.len());
    post_b(&cat(&[cl.as_bytes(), te, b"\r\n"]), body.as_bytes())
}

/// The TE.CL shape: the smuggled request is the one chunk's data, and the Content-Length
/// covers only the chunk-size line, so a parser that frames by Content-Length takes the
/// smuggled request for the next one.
fn te_cl(te: &[u8]) -> Vec<u8> {
    let body = format!("{}{LAST}", chunk(SMUG));
    let cl = format!(
        "Content-Length: {}\r\n",
        format!("{:x}\r\n", SMUG.len()).len()
    );
    post_b(&cat(&[cl.as_bytes(), te, b"\r\n"]), body.as_bytes())
}

/// A chunked POST whose first chunk-size line is `size` (meaning 5 to a lenient reader),
/// then `hello`, the last chunk and the smuggled request.
fn chunk_size(size: &[u8]) -> Vec<u8> {
    post_b(
        b"Transfer-Encoding: chunked\r\n",
        &cat(&[size, b"\r\nhello\r\n", LAST.as_bytes(), SMUG.as_bytes()]),
    )
}

/// A chunked POST with this whole body (after the head).
fn chunked_body(body: &[u8]) -> Vec<u8> {
    post_b(b"Transfer-Encoding: chunked\r\n", body)
}

/// A POST whose body is `hello` followed by the smuggled request, with these
/// Content-Length field lines.
fn cl_body(fields: &str) -> Vec<u8> {
    post(fields, &format!("hello{SMUG}"))
}

/// A GET with these extra field lines, and the smuggled request pipelined after it.
fn get_then_smug(fields: &[u8]) -> Vec<u8> {
    cat(&[
        b"GET /ok HTTP/1.1\r\nHost: a\r\n",
        fields,
        b"\r\n",
        SMUG.as_bytes(),
    ])
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

// References for lenient vectors (relayd-language.md and the runtime's http/ modules).
const REF_CHUNKED_WINS: &str = "relayd-language.md 4.7: chunked wins over Content-Length, \
     which is removed; a GET/HEAD body is framed by Transfer-Encoding (RFC 9112 6.3 frames \
     by it whatever the method)";
const REF_TE_CASE: &str = "relayd compares Transfer-Encoding with `chunked` \
     case-insensitively (http/body.rs), as RFC 9112 7 does";
const REF_EMPTY_NAME: &str = "relay_http_header_name_valid lets an empty name pass \
     (http/cstr.rs): forwarded as `: value`, which an RFC parser refuses or ignores; no \
     parser frames by it";
const REF_UNKNOWN_FIELD: &str = "relayd forwards fields it does not know; \
     `Transfer_Encoding` is a field distinct from Transfer-Encoding (RFC 9110 5.1)";
const REF_TWO_TE: &str = "relayd accepts each Transfer-Encoding line equal to `chunked` \
     (http/body.rs); `chunked, chunked` is framed by the outer chunked coding by every parser \
     that does not refuse it";
const REF_TRAILER_FIELDS: &str = "relayd passes trailers (relayd-language.md 4.7); framing \
     and routing fields in a trailer cannot reframe a body already framed, and RFC 9110 \
     6.5.1 forbids using them";
const REF_LEADING_ZEROS: &str = "relayd reads chunk sizes with strtoll, leading zeros \
     included (http/chunked.rs); 1*HEXDIG allows any number of them (RFC 9112 7.1)";
const REF_NO_HOST: &str = "relayd does not require Host (relayd-language.md 4.7); framing \
     is unaffected";
const REF_UPGRADE_H2C: &str = "relayd forwards Upgrade headers other than websocket; a \
     101 answer that is not an accepted websocket upgrade is refused with 502 \
     (relayd-language.md 4.7), so no h2c tunnel opens";
const REF_BODYLESS_HEAD: &str = "relayd forwards a 204/304 head as it came and frames it \
     without a body whatever its Transfer-Encoding says (relayd-language.md 4.7, RFC 9112 \
     6.3); the stray chunked bytes are then read as the next response and refused with 502";
const REF_OBS_TEXT: &str = "obs-text in a field value is allowed by RFC 9110 5.5";

fn vectors() -> Vec<Vector> {
    let mut vs = Vec::new();
    framing(&mut vs);
    te_obfuscations(&mut vs);
    header_syntax(&mut vs);
    chunked(&mut vs);
    request_lines(&mut vs);
    upgrades(&mut vs);
    responses(&mut vs);
    vs
}

fn framing(vs: &mut Vec<Vector>) {
    use Class::Framing as F;
    let te = "Transfer-Encoding: chunked\r\n";
    let all = format!("{LAST}{SMUG}");
    let cl_all = format!("Content-Length: {}\r\n", all.len());
    let one = format!("{}{LAST}", chunk(SMUG));
    let cl_size = format!(
        "Content-Length: {}\r\n",
        format!("{:x}\r\n", SMUG.len()).len()
    );
    vs.push(v(
        F,
        "CL.TE, CL first",
        post(&format!("{cl_all}{te}"), &all),
    ));
    vs.push(v(
        F,
        "CL.TE, TE first",
        post(&format!("{te}{cl_all}"), &all),
    ));
    vs.push(v(
        F,
        "TE.CL, CL first",
        post(&format!("{cl_size}{te}"), &one),
    ));
    vs.push(v(
        F,
        "TE.CL, TE first",
        post(&format!("{te}{cl_size}"), &one),
    ));
    vs.push(v(
        F,
        "CL 0 + TE, CL first",
        post(&format!("Content-Length: 0\r\n{te}"), &one),
    ));
    vs.push(v(
        F,
        "CL 0 + TE, TE first",
        post(&format!("{te}Content-Length: 0\r\n"), &one),
    ));
    vs.push(v(
        F,
        "CL invalid + TE",
        post(&format!("Content-Length: x\r\n{te}"), &one),
    ));
    vs.push(v(
        F,
        "TE + CL + CL",
        post(&format!("{te}{cl_size}{cl_size}"), &one),
    ));
    let n = 5 + SMUG.len();
    vs.push(v(
        F,
        "duplicate CL, equal",
        cl_body("Content-Length: 5\r\nContent-Length: 5\r\n"),
    ));
    vs.push(v(
        F,
        "duplicate CL, different (short first)",
        cl_body(&format!("Content-Length: 5\r\nContent-Length: {n}\r\n")),
    ));
    vs.push(v(
        F,
        "duplicate CL, different (long first)",
        cl_body(&format!("Content-Length: {n}\r\nContent-Length: 5\r\n")),
    ));
    vs.push(v(
        F,
        "duplicate CL, empty first",
        cl_body("Content-Length: \r\nContent-Length: 5\r\n"),
    ));
    vs.push(v(
        F,
        "duplicate CL, empty second",
        cl_body("Content-Length: 5\r\nContent-Length: \r\n"),
    ));
    vs.push(v(F, "CL empty", cl_body("Content-Length: \r\n")));
    vs.push(v(
        F,
        "duplicate CL, other case",
        cl_body("Content-Length: 5\r\ncontent-length: 5\r\n"),
    ));
    for list in ["5, 5", "5,5", &format!("5, {n}"), "5,", ",5", "5 5"] {
        vs.push(v(
            F,
            format!("CL list `{list}`"),
            cl_body(&format!("Content-Length: {list}\r\n")),
        ));
    }
    for value in [
        "+5",
        "-1",
        "-0",
        "0x10",
        "0X5",
        "5 ",
        "5\t",
        "5.0",
        "1e1",
        "99999999999999999999",
    ] {
        vs.push(v(
            F,
            format!("CL `{}`", value.escape_debug()),
            cl_body(&format!("Content-Length: {value}\r\n")),
        ));
    }
    for value in [&b"\x0b5"[..], b"\x0c5"] {
        vs.push(v(
            F,
            format!("CL `{}`", esc(value)),
            post_b(
                &cat(&[b"Content-Length: ", value, b"\r\n"]),
                format!("hello{SMUG}").as_bytes(),
            ),
        ));
    }
    // Leading blanks are skipped by relayd before the value (http/head.rs) and the value
    // is re-written without them.
    vs.push(v(F, "CL padded `  5`", cl_body("Content-Length:   5\r\n")));
    vs.push(v(F, "CL padded `\\t5`", cl_body("Content-Length:\t5\r\n")));
    vs.push(
        v(F, "CL `05`", cl_body("Content-Length: 05\r\n"))
            .lenient("strtonum reads `05` as 5; RFC 9110 8.6 1*DIGIT allows it"),
    );
    vs.push(v(
        F,
        "TE on HTTP/1.0",
        format!("POST /ok HTTP/1.0\r\nHost: a\r\n{te}\r\n{one}").into_bytes(),
    ));
    vs.push(v(
        F,
        "TE + CL on HTTP/1.0",
        format!("POST /ok HTTP/1.0\r\nHost: a\r\n{cl_size}{te}\r\n{one}").into_bytes(),
    ));
    let cl_smug = format!("Content-Length: {}\r\n", SMUG.len());
    vs.push(v(
        F,
        "GET with a CL body",
        format!("GET /ok HTTP/1.1\r\nHost: a\r\n{cl_smug}\r\n{SMUG}").into_bytes(),
    ));
    vs.push(v(
        F,
        "HEAD with a CL body",
        format!("HEAD /ok HTTP/1.1\r\nHost: a\r\n{cl_smug}\r\n{SMUG}").into_bytes(),
    ));
    vs.push(v(
        F,
        "COPY with a CL body",
        format!("COPY /ok HTTP/1.1\r\nHost: a\r\n{cl_smug}\r\n{SMUG}").into_bytes(),
    ));
    vs.push(
        v(
            F,
            "GET with a chunked body",
            format!("GET /ok HTTP/1.1\r\nHost: a\r\n{te}\r\n{one}").into_bytes(),
        )
        .lenient(REF_CHUNKED_WINS),
    );
    vs.push(
        v(
            F,
            "HEAD with a chunked body",
            format!("HEAD /ok HTTP/1.1\r\nHost: a\r\n{te}\r\n{one}").into_bytes(),
        )
        .lenient(REF_CHUNKED_WINS),
    );
    vs.push(
        v(
            F,
            "GET with CL and TE",
            format!("GET /ok HTTP/1.1\r\nHost: a\r\n{cl_all}{te}\r\n{all}").into_bytes(),
        )
        .lenient(REF_CHUNKED_WINS),
    );
    vs.push(v(
        F,
        "TRACE with a CL body",
        format!("TRACE /ok HTTP/1.1\r\nHost: a\r\n{cl_smug}\r\n{SMUG}").into_bytes(),
    ));
    vs.push(v(
        F,
        "CONNECT with a CL body",
        format!("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n{cl_smug}\r\n{SMUG}").into_bytes(),
    ));
    vs.push(v(
        F,
        "TRACE with a chunked body",
        format!("TRACE /ok HTTP/1.1\r\nHost: a\r\n{te}\r\n{one}").into_bytes(),
    ));
    vs.push(v(
        F,
        "CONNECT with a chunked body",
        format!("CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n{te}\r\n{one}").into_bytes(),
    ));
    vs.push(v(
        F,
        "DELETE with a CL body",
        format!("DELETE /ok HTTP/1.1\r\nHost: a\r\n{cl_smug}\r\n{SMUG}").into_bytes(),
    ));
    vs.push(v(
        F,
        "POST without CL or TE, first on its connection",
        post("", SMUG),
    ));
    for method in ["DELETE", "OPTIONS", "PUT"] {
        vs.push(v(
            F,
            format!("{method} without CL or TE, first on its connection"),
            format!("{method} /ok HTTP/1.1\r\nHost: a\r\n\r\n{SMUG}").into_bytes(),
        ));
    }
    vs.push(v(
        F,
        "POST without CL or TE after a GET",
        cat(&[b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n", &post("", SMUG)]),
    ));
    vs.push(v(
        F,
        "CL shorter than the body",
        post("Content-Length: 2\r\n", &format!("hello{SMUG}")),
    ));
    vs.push(v(
        F,
        "CL 0 then the smuggled request",
        post("Content-Length: 0\r\n", SMUG),
    ));
}

fn te_obfuscations(vs: &mut Vec<Vector>) {
    use Class::TeObfuscation as T;
    let values: &[&[u8]] = &[
        b",chunked",
        b"chunked,",
        b"chunked, x",
        b"x, chunked",
        b"chunked, chunked",
        b"identity, chunked",
        b"gzip, chunked",
        b"chunked;q=1",
        b"\"chunked\"",
        b"chunk",
        b"chunkedx",
        b"identity",
        b"",
        b"\x0bchunked",
        b"chunked\x0b",
        b"\xffchunked",
        b"chunked\xff",
        b"\xa0chunked",
        b"chunked\xa0",
        b"\xc2\xa0chunked",
        b"\x85chunked",
        b"chunked\x85",
        b"\x0cchunked",
        b"chunked\x0c",
        b"chunked ",
        b"chunked\t",
    ];
    for value in values {
        let line = cat(&[b"Transfer-Encoding: ", value]);
        vs.push(v(T, format!("TE `{}` (CL.TE)", esc(value)), cl_te(&line)));
    }
    for value in [
        &b"\x0bchunked"[..],
        b"\xffchunked",
        b"chunked, x",
        b"chunked ",
    ] {
        let line = cat(&[b"Transfer-Encoding: ", value]);
        vs.push(v(T, format!("TE `{}` (TE.CL)", esc(value)), te_cl(&line)));
    }
    // Leading blanks (relayd skips " \t\r\n" before a value, http/head.rs): the value is
    // `chunked` and re-written without them.
    vs.push(v(
        T,
        "TE `\\tchunked`",
        cl_te(b"Transfer-Encoding:\tchunked"),
    ));
    vs.push(v(
        T,
        "TE `  chunked`",
        cl_te(b"Transfer-Encoding:   chunked"),
    ));
    vs.push(v(
        T,
        "TE `\\rchunked`",
        cl_te(b"Transfer-Encoding:\rchunked"),
    ));
    vs.push(v(
        T,
        "TE `chunked\\r`",
        cl_te(b"Transfer-Encoding: chunked\r"),
    ));
    vs.push(v(
        T,
        "TE without a space",
        cl_te(b"Transfer-Encoding:chunked"),
    ));
    for value in ["Chunked", "CHUNKED", "cHuNkEd"] {
        vs.push(
            v(
                T,
                format!("TE `{value}`"),
                cl_te(format!("Transfer-Encoding: {value}").as_bytes()),
            )
            .lenient(REF_TE_CASE),
        );
    }
    vs.push(v(
        T,
        "TE name lower case",
        cl_te(b"transfer-encoding: chunked"),
    ));
    vs.push(v(
        T,
        "TE name upper case",
        cl_te(b"TRANSFER-ENCODING: chunked"),
    ));
    vs.push(
        v(
            T,
            "two TE lines, chunked twice",
            cl_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
        )
        .lenient(REF_TWO_TE),
    );
    vs.push(v(
        T,
        "two TE lines, chunked + identity",
        cl_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity"),
    ));
    vs.push(v(
        T,
        "two TE lines, identity + chunked",
        cl_te(b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked"),
    ));
    vs.push(v(
        T,
        "two TE lines, chunked + empty",
        cl_te(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: "),
    ));
    vs.push(
        v(T, "Transfer_Encoding", cl_te(b"Transfer_Encoding: chunked"))
            .lenient(REF_UNKNOWN_FIELD)
            .detect(|b| contains(b, b"Transfer_Encoding")),
    );
    vs.push(v(
        T,
        "TE, space before colon",
        cl_te(b"Transfer-Encoding : chunked"),
    ));
    vs.push(v(
        T,
        "TE, tab before colon",
        cl_te(b"Transfer-Encoding\t: chunked"),
    ));
    vs.push(v(
        T,
        "TE with leading whitespace, first field",
        format!(
            "POST /ok HTTP/1.1\r\n Transfer-Encoding: chunked\r\nHost: a\r\nContent-Length: 4\r\n\r\n{}{LAST}",
            chunk(SMUG)
        )
        .into_bytes(),
    ));
    vs.push(v(
        T,
        "TE obs-fold value",
        cl_te(b"Transfer-Encoding:\r\n chunked"),
    ));
    vs.push(v(
        T,
        "TE obs-fold continuation",
        cl_te(b"Transfer-Encoding: identity\r\n chunked"),
    ));
    vs.push(v(
        T,
        "TE folded onto a field",
        cl_te(b"X: y\r\n Transfer-Encoding: chunked"),
    ));
    vs.push(v(
        T,
        "TE value with NUL",
        cl_te(b"Transfer-Encoding: chunked\0"),
    ));
    vs.push(v(
        T,
        "TE name with NUL",
        cl_te(b"Transfer-Encoding\0: chunked"),
    ));
}

fn header_syntax(vs: &mut Vec<Vector>) {
    use Class::HeaderSyntax as H;
    let n = SMUG.len();
    vs.push(v(
        H,
        "space before colon, CL",
        post(&format!("Content-Length : {n}\r\n"), SMUG),
    ));
    vs.push(v(
        H,
        "tab before colon, CL",
        post(&format!("Content-Length\t: {n}\r\n"), SMUG),
    ));
    vs.push(v(
        H,
        "space before colon, Host",
        get_then_smug(b"Host : b\r\n"),
    ));
    vs.push(v(
        H,
        "space before colon, other field",
        get_then_smug(b"X-Foo : b\r\n"),
    ));
    vs.push(v(
        H,
        "leading whitespace, first field",
        cat(&[b"GET /ok HTTP/1.1\r\n Host: a\r\n\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(
        H,
        "leading tab, later field",
        get_then_smug(b"\tX: y\r\n"),
    ));
    vs.push(v(H, "obs-fold", get_then_smug(b"X: a\r\n b\r\n")));
    vs.push(v(H, "no colon", get_then_smug(b"Foo bar\r\n")));
    vs.push(v(
        H,
        "no colon, CL",
        post(&format!("Content-Length {n}\r\n"), SMUG),
    ));
    vs.push(v(
        H,
        "request line as a field line",
        get_then_smug(b"GET /blocked HTTP/1.1\r\n"),
    ));
    vs.push(
        v(H, "empty name", get_then_smug(b": x\r\n"))
            .lenient(REF_EMPTY_NAME)
            .detect(|b| contains(b, b"\r\n: x\r\n")),
    );
    vs.push(
        v(
            H,
            "empty name hiding CL",
            cat(&[
                b"GET /ok HTTP/1.1\r\nHost: a\r\n:Content-Length: 33\r\n\r\n",
                SMUG.as_bytes(),
            ]),
        )
        .lenient(REF_EMPTY_NAME)
        .detect(|b| contains(b, b"\r\n: Content-Length")),
    );
    let names: &[&[u8]] = &[
        b"X@Y",
        b"X Y",
        b"X\x7fY",
        b"X\xffY",
        b"X\"Y",
        b"X(Y)",
        b"X/Y",
        b"X[]",
        b"X=Y",
        b"X{Y}",
        b"Content-Length\x0b",
        b"\x0bContent-Length",
        b"X\x01Y",
    ];
    for name in names {
        vs.push(v(
            H,
            format!("non-token name `{}`", esc(name)),
            post_b(
                &cat(&[name, format!(": {n}\r\n").as_bytes()]),
                SMUG.as_bytes(),
            ),
        ));
    }
    vs.push(v(H, "NUL in a value", get_then_smug(b"X: a\0b\r\n")));
    vs.push(v(H, "NUL in a name", get_then_smug(b"X\0Y: 1\r\n")));
    vs.push(v(
        H,
        "NUL in the request line",
        cat(&[b"GET /ok\0 HTTP/1.1\r\nHost: a\r\n\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(H, "bare CR in a value", get_then_smug(b"X: a\rb\r\n")));
    vs.push(v(
        H,
        "bare CR hiding TE",
        te_cl(b"X: a\rTransfer-Encoding: chunked"),
    ));
    vs.push(v(
        H,
        "bare CR hiding CL",
        get_then_smug(format!("X: a\rContent-Length: {n}\r\n").as_bytes()),
    ));
    vs.push(v(H, "bare CR before CRLF", get_then_smug(b"X: a\r\r\n")));
    vs.push(v(
        H,
        "bare CR ending the request line",
        cat(&[b"GET /ok HTTP/1.1\rHost: a\r\n\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(
        H,
        "bare CR inside the request target",
        b"GET /ok\r/blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        H,
        "bare LF line ends",
        b"GET /ok HTTP/1.1\nHost: a\n\nGET /blocked HTTP/1.1\nHost: a\n\n".to_vec(),
    ));
    vs.push(v(
        H,
        "bare LF ends, CL.TE",
        format!(
            "POST /ok HTTP/1.1\nHost: a\nContent-Length: {}\nTransfer-Encoding: chunked\n\n{LAST}{SMUG}",
            LAST.len() + SMUG.len()
        )
        .into_bytes(),
    ));
    vs.push(v(
        H,
        "bare LF inside a value, hiding TE",
        te_cl(b"X: a\nTransfer-Encoding: chunked"),
    ));
    vs.push(v(
        H,
        "bare LF ending the head",
        cat(&[b"GET /ok HTTP/1.1\r\nHost: a\r\n\n", SMUG.as_bytes()]),
    ));
    vs.push(v(H, "obs-text value", get_then_smug(b"X: \xe9t\xe9\r\n")).lenient(REF_OBS_TEXT));
}

fn chunked(vs: &mut Vec<Vector>) {
    use Class::Chunked as C;
    for size in [
        &b"0x5"[..],
        b"0X5",
        b"+5",
        b"-5",
        b"-0",
        b"0_5",
        b"5_",
        b"5 ",
        b"5\t",
        b"",
        b"g",
        b"5g",
        b"5;ext",
        b"5;a=b",
        b"5 ;a=b",
        b"5;\rx",
        b"5\r",
        b"5\x0b",
        b"10000000000000005",
        b"FFFFFFFFFFFFFFFF",
        b"\xff5",
    ] {
        vs.push(v(C, format!("size `{}`", esc(size)), chunk_size(size)));
    }
    for size in [&b" 5"[..], b"\t5", b"  0x5", b" +5", b"\x0b5"] {
        vs.push(v(C, format!("size `{}`", esc(size)), chunk_size(size)));
    }
    vs.push(v(
        C,
        "size ` -0` (a last chunk to relayd)",
        chunked_body(format!(" -0\r\n{SMUG}0\r\n\r\n").as_bytes()),
    ));
    vs.push(
        v(
            C,
            "size with 20 digits (leading zeros)",
            chunk_size(b"00000000000000000005"),
        )
        .lenient(REF_LEADING_ZEROS),
    );
    vs.push(v(
        C,
        "size 7FFFFFFFFFFFFFFF",
        chunk_size(b"7FFFFFFFFFFFFFFF"),
    ));
    vs.push(v(C, "size with NUL", chunk_size(b"5\0")));
    vs.push(v(
        C,
        "empty line before the size",
        chunked_body(format!("\r\n5\r\nhello\r\n{LAST}{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "data not followed by CRLF",
        chunked_body(format!("5\r\nhelloXX\r\n{LAST}{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "data followed by the smuggled request",
        chunked_body(format!("5\r\nhello{SMUG}{LAST}").as_bytes()),
    ));
    vs.push(v(
        C,
        "data longer than its size",
        chunked_body(format!("3\r\nhello\r\n{LAST}{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "data shorter than its size",
        chunked_body(format!("8\r\nhello\r\n{LAST}{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "data ended by a bare CR",
        chunked_body(format!("5\r\nhello\r0\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "bare LF line ends in the body",
        chunked_body(format!("5\nhello\n0\n\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "the smuggled request as chunk data",
        chunked_body(format!("{}{LAST}", chunk(SMUG)).as_bytes()),
    ));
    vs.push(v(
        C,
        "bytes after the last chunk",
        chunked_body(format!("{LAST}XYZ").as_bytes()),
    ));
    vs.push(v(
        C,
        "request after the last chunk",
        chunked_body(format!("{LAST}{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "empty line, then a request after the last chunk",
        chunked_body(format!("{LAST}\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "last chunk, then nothing",
        chunked_body(LAST.get(..3).unwrap_or(LAST).as_bytes()),
    ));
    for (name, trailer) in [
        (
            "trailer Content-Length",
            format!("Content-Length: {}", SMUG.len()),
        ),
        (
            "trailer Transfer-Encoding",
            "Transfer-Encoding: chunked".into(),
        ),
        ("trailer Host", "Host: evil".into()),
    ] {
        vs.push(
            v(
                C,
                name,
                chunked_body(format!("0\r\n{trailer}\r\n\r\n{SMUG}").as_bytes()),
            )
            .lenient(REF_TRAILER_FIELDS),
        );
    }
    vs.push(v(
        C,
        "trailer, an ordinary field",
        chunked_body(format!("0\r\nX-Trailer: t\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer is the smuggled request",
        chunked_body(format!("0\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer obs-fold",
        chunked_body(format!("0\r\nX: a\r\n b\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer, space before colon",
        chunked_body(format!("0\r\nContent-Length : 5\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer with bare CR",
        chunked_body(format!("0\r\nX: a\rb\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer without colon",
        chunked_body(format!("0\r\nfoo\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer with an empty name",
        chunked_body(format!("0\r\n: x\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer with NUL",
        chunked_body(format!("0\r\nX: a\0b\r\n\r\n{SMUG}").as_bytes()),
    ));
    vs.push(v(
        C,
        "trailer after a valid one",
        chunked_body(format!("0\r\nX: a\r\n{SMUG}").as_bytes()),
    ));
}

fn request_lines(vs: &mut Vec<Vector>) {
    use Class::RequestLine as R;
    for version in [
        &b"HTTP/1.1x"[..],
        b"HTTP/2.0",
        b"HTTP/1",
        b"HTTP/1.10",
        b"http/1.1",
        b"HTTP/1.1 x",
        b"FOO",
    ] {
        vs.push(v(
            R,
            format!("version `{}`", esc(version)),
            cat(&[
                b"GET /ok ",
                version,
                b"\r\nHost: a\r\n\r\n",
                SMUG.as_bytes(),
            ]),
        ));
    }
    for version in [&b"HTTP/1.1x"[..], b"HTTP/2.0", b"HTTP/0.9"] {
        vs.push(v(
            R,
            format!("version `{}` with a chunked body", esc(version)),
            cat(&[
                b"POST /ok ",
                version,
                b"\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
                format!("{}{LAST}", chunk(SMUG)).as_bytes(),
            ]),
        ));
    }
    // A higher minor version is read as HTTP/1.1 (RFC 9112 2.3): the same framing.
    vs.push(v(
        R,
        "version `HTTP/1.2` with a chunked body",
        format!(
            "POST /ok HTTP/1.2\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{}{LAST}",
            chunk(SMUG)
        )
        .into_bytes(),
    ));
    vs.push(v(
        R,
        "HTTP/0.9 request",
        cat(&[b"GET /ok\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(
        R,
        "HTTP/0.9 blocked request",
        b"GET /blocked\r\n\r\n".to_vec(),
    ));
    for method in [&b"G@T"[..], b"get", b"GET\x0b", b"\xffGET", b"GE(T"] {
        vs.push(v(
            R,
            format!("method `{}`", esc(method)),
            cat(&[method, b" /ok HTTP/1.1\r\nHost: a\r\n\r\n", SMUG.as_bytes()]),
        ));
    }
    vs.push(v(
        R,
        "tab separators",
        cat(&[b"GET\t/blocked\tHTTP/1.1\r\nHost: a\r\n\r\n"]),
    ));
    vs.push(v(
        R,
        "leading space",
        cat(&[b" GET /ok HTTP/1.1\r\nHost: a\r\n\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(
        R,
        "leading CRLF",
        cat(&[b"\r\nGET /ok HTTP/1.1\r\nHost: a\r\n\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(
        R,
        "double space before the target",
        b"GET  /blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "double space before the version",
        cat(&[b"GET /ok  HTTP/1.1\r\nHost: a\r\n\r\n", SMUG.as_bytes()]),
    ));
    vs.push(v(
        R,
        "two targets",
        b"GET /ok /blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "blocked with a query",
        b"GET /blocked?x=1 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "absolute URI to the blocked path, same Host",
        b"GET http://a/blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "absolute URI to the blocked path, no Host",
        b"GET http://a/blocked HTTP/1.1\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "absolute https URI to the blocked path",
        b"GET https://a/blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "absolute URI with a port",
        b"GET http://a:80/blocked HTTP/1.1\r\nHost: a:80\r\n\r\n".to_vec(),
    ));
    // Absolute-form reaches the backend in origin-form, with the authority as Host.
    let absolute: Detector = |b| contains(b, b" http://") || contains(b, b" https://");
    vs.push(
        v(
            R,
            "absolute URI to an allowed path, with a query",
            cat(&[
                b"GET http://a/ok?x=1 HTTP/1.1\r\nHost: a\r\n\r\n",
                SMUG.as_bytes(),
            ]),
        )
        .detect(absolute),
    );
    vs.push(
        v(
            R,
            "absolute URI to an allowed path, no Host",
            cat(&[b"GET HTTP://a/ok HTTP/1.1\r\n\r\n", SMUG.as_bytes()]),
        )
        .detect(absolute),
    );
    vs.push(
        v(
            R,
            "absolute URI with an empty path",
            cat(&[
                b"GET https://a?x HTTP/1.1\r\nHost: a\r\n\r\n",
                SMUG.as_bytes(),
            ]),
        )
        .detect(absolute),
    );
    vs.push(v(
        R,
        "absolute URI with userinfo",
        b"GET http://x@a/blocked HTTP/1.1\r\nHost: x@a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "absolute URI of another scheme",
        b"GET ftp://a/blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "target without a leading slash",
        b"GET blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "control byte in the target",
        b"GET /ok\x0b/blocked HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    ));
    vs.push(v(
        R,
        "absolute URI vs another Host",
        cat(&[
            b"GET http://a/ok HTTP/1.1\r\nHost: b\r\n\r\n",
            SMUG.as_bytes(),
        ]),
    ));
    vs.push(v(
        R,
        "absolute URI vs Host, port differs",
        cat(&[
            b"GET http://a:81/ok HTTP/1.1\r\nHost: a\r\n\r\n",
            SMUG.as_bytes(),
        ]),
    ));
    vs.push(v(
        R,
        "two Hosts",
        cat(&[
            b"GET /ok HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            SMUG.as_bytes(),
        ]),
    ));
    vs.push(v(
        R,
        "two Hosts, other case",
        cat(&[
            b"GET /ok HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            SMUG.as_bytes(),
        ]),
    ));
    vs.push(
        v(
            R,
            "no Host",
            cat(&[b"GET /ok HTTP/1.1\r\n\r\n", SMUG.as_bytes()]),
        )
        .lenient(REF_NO_HOST),
    );
    vs.push(v(
        R,
        "OPTIONS *",
        cat(&[b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", SMUG.as_bytes()]),
    ));
}

fn ws_upgrade(method: &str, connection: &str, upgrade: &str) -> Vec<u8> {
    format!(
        "{method} /chat HTTP/1.1\r\nHost: a\r\nConnection: {connection}\r\nUpgrade: {upgrade}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Send `first`, wait for an answer (bounded), then send the smuggled request.
fn then_smug(first: Vec<u8>) -> Vec<Step> {
    vec![
        Step::Send(first),
        Step::Await(Duration::from_millis(800)),
        Step::Send(SMUG.as_bytes().to_vec()),
    ]
}

fn upgrades(vs: &mut Vec<Vector>) {
    use Class::Upgrade as U;
    let h2c = b"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
                Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
        .to_vec();
    let is_h2c: Detector = |b| contains_ci(b, b"Upgrade: h2c");
    vs.push(
        v(
            U,
            "Upgrade: h2c, backend ignores it",
            cat(&[&h2c, SMUG.as_bytes()]),
        )
        .lenient(REF_UPGRADE_H2C)
        .detect(is_h2c),
    );
    let switch_h2c =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    vs.push(
        v(U, "Upgrade: h2c, backend switches", Vec::new())
            .steps(then_smug(h2c.clone()))
            .answer(Answer::Nth(0, switch_h2c.clone()))
            .lenient(REF_UPGRADE_H2C)
            .detect(is_h2c),
    );
    vs.push(
        v(
            U,
            "Upgrade: h2c on a POST, backend switches",
            Vec::new(),
        )
        .steps(then_smug(
            b"POST /ok HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n\
              Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nContent-Length: 5\r\n\r\nhello"
                .to_vec(),
        ))
        .answer(Answer::Nth(0, switch_h2c))
        .lenient(REF_UPGRADE_H2C)
        .detect(is_h2c),
    );
    // Websocket upgrades: refused without `http websockets` (403); with it, a 101 from the
    // backend opens a tunnel in which the smuggled bytes are websocket data to it.
    vs.push(
        v(U, "websocket upgrade, backend switches", Vec::new()).steps(then_smug(ws_upgrade(
            "GET",
            "Upgrade",
            "websocket",
        ))),
    );
    vs.push(
        v(U, "websocket upgrade, mixed case", Vec::new()).steps(then_smug(ws_upgrade(
            "GET",
            "keep-alive, Upgrade",
            "WebSocket",
        ))),
    );
    vs.push(
        v(U, "websocket upgrade, backend refuses (200)", Vec::new())
            .steps(then_smug(ws_upgrade("GET", "Upgrade", "websocket")))
            .answer(Answer::Nth(
                0,
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: no upgrade\r\n\r\nok".to_vec(),
            )),
    );
    vs.push(
        v(U, "websocket upgrade, backend refuses (426)", Vec::new())
            .steps(then_smug(ws_upgrade("GET", "Upgrade", "websocket")))
            .answer(Answer::Nth(
                0,
                b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n".to_vec(),
            )),
    );
    vs.push(
        v(U, "websocket upgrade, 101 without Upgrade", Vec::new())
            .steps(then_smug(ws_upgrade("GET", "Upgrade", "websocket")))
            .answer(Answer::Nth(
                0,
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec(),
            )),
    );
    vs.push(
        v(
            U,
            "websocket upgrade without Connection: upgrade",
            Vec::new(),
        )
        .steps(then_smug(ws_upgrade("GET", "keep-alive", "websocket"))),
    );
    vs.push(
        v(U, "websocket upgrade on a POST", Vec::new()).steps(then_smug(ws_upgrade(
            "POST",
            "Upgrade",
            "websocket",
        ))),
    );
    let unasked_ws = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                       Connection: Upgrade\r\n\r\n"
        .to_vec();
    vs.push(
        v(U, "101 websocket the client never asked for", Vec::new())
            .steps(then_smug(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()))
            .answer(Answer::Nth(0, unasked_ws)),
    );
    vs.push(
        v(U, "bare 101 the client never asked for", Vec::new())
            .steps(then_smug(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()))
            .answer(Answer::Nth(
                0,
                b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec(),
            )),
    );
    vs.push(
        v(U, "101 h2c the client never asked for", Vec::new())
            .steps(then_smug(b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()))
            .answer(Answer::Nth(
                0,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
                    .to_vec(),
            )),
    );
    vs.push(v(U, "CONNECT, then a request", Vec::new()).steps(then_smug(
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".to_vec(),
    )));
    vs.push(
        v(U, "CONNECT, backend accepts (200)", Vec::new())
            .steps(then_smug(
                b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".to_vec(),
            ))
            .answer(Answer::Nth(
                0,
                b"HTTP/1.1 200 Connection Established\r\n\r\n".to_vec(),
            ))
            .must("the 200 that opens the tunnel", |b| {
                contains(b, b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    && !contains(b, b"Connection: close")
            }),
    );
    let expect = |body: &str| -> Vec<Step> {
        vec![
            Step::Send(
                format!(
                    "POST /ok HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes(),
            ),
            Step::Await(Duration::from_millis(800)),
            Step::Send(format!("{body}{SMUG}").into_bytes()),
        ]
    };
    vs.push(
        v(U, "Expect: 100-continue, early final response", Vec::new())
            .steps(expect("hello"))
            .answer(Answer::Early(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: early\r\n\r\nok".to_vec(),
            )),
    );
    vs.push(
        v(U, "Expect: 100-continue, early 417 and close", Vec::new())
            .steps(expect("hello"))
            .answer(Answer::Early(
                b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            )),
    );
    vs.push(
        v(U, "Expect: 100-continue, body hides a request", Vec::new())
            .steps(expect(SMUG))
            .answer(Answer::Early(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: early\r\n\r\nok".to_vec(),
            )),
    );
    vs.push(
        v(
            U,
            "Expect: 100-continue, 100 then the final response",
            Vec::new(),
        )
        .steps(expect("hello"))
        .answer(Answer::Continue)
        .must("the final response after 100 Continue", |b| {
            contains(b, b"X-Answer: POST /ok")
        }),
    );
}

/// Two pipelined GETs; the backend answers the first with `first`.
fn bad_response(name: &str, first: &[u8]) -> Vector {
    v(
        Class::Response,
        name,
        b"GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /ok2 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    )
    .answer(Answer::Nth(0, first.to_vec()))
}

/// A HEAD then a GET; the backend answers the HEAD with `first`.
fn bad_head_response(name: &str, first: &[u8]) -> Vector {
    v(
        Class::Response,
        name,
        b"HEAD /ok HTTP/1.1\r\nHost: a\r\n\r\nGET /ok2 HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
    )
    .answer(Answer::Nth(0, first.to_vec()))
}

fn responses(vs: &mut Vec<Vector>) {
    vs.push(bad_response(
        "CL + TE",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    vs.push(bad_response(
        "TE + CL",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    vs.push(bad_response(
        "CL + TE gzip",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    ));
    vs.push(bad_response(
        "two different CLs",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 2\r\n\r\nhello",
    ));
    vs.push(bad_response(
        "obs-fold",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: a\r\n b\r\n\r\nok",
    ));
    vs.push(bad_response(
        "bare CR in a field",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: a\rSet-Cookie: evil=1\r\n\r\nok",
    ));
    vs.push(bad_response(
        "1xx with a CL body",
        b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\nhello",
    ));
    vs.push(
        bad_response(
            "1xx, then the final response",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: final\r\n\r\nok",
        )
        .must(
            "the final response after 103 Early Hints, then the second request's",
            |b| contains(b, b"X-Answer: final") && contains(b, b"X-Answer: GET /ok2"),
        ),
    );
    vs.push(
        bad_response(
            "two 1xx, then the final response",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: final\r\n\r\nok",
        )
        .must(
            "the final response after two 1xx, then the second request's",
            |b| contains(b, b"X-Answer: final") && contains(b, b"X-Answer: GET /ok2"),
        ),
    );
    vs.push(
        v(
            Class::Response,
            "1xx to an HTTP/1.0 request",
            b"GET /ok HTTP/1.0\r\nHost: a\r\n\r\n".to_vec(),
        )
        .answer(Answer::Nth(
            0,
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: final\r\n\r\nok"
                .to_vec(),
        ))
        .must("the final response without the 1xx (RFC 9110 15.2)", |b| {
            contains(b, b"X-Answer: final") && !contains(b, b"103")
        }),
    );
    vs.push(bad_response(
        "1xx with a stray body",
        b"HTTP/1.1 100 Continue\r\n\r\nhello world\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    ));
    vs.push(bad_response(
        "204 with a CL body",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
    ));
    vs.push(bad_response(
        "204 with a stray body",
        b"HTTP/1.1 204 No Content\r\n\r\nhello world\r\n",
    ));
    vs.push(
        bad_response(
            "204 with a chunked body",
            b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .lenient(REF_BODYLESS_HEAD),
    );
    vs.push(bad_response(
        "304 with a CL body",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\nhello",
    ));
    vs.push(
        bad_response(
            "304 with a chunked body",
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        )
        .lenient(REF_BODYLESS_HEAD),
    );
    vs.push(bad_head_response(
        "HEAD answered with a CL body",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    ));
    vs.push(bad_head_response(
        "HEAD answered with a chunked body",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
    vs.push(bad_response(
        "CL `+2`",
        b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
    ));
    vs.push(bad_response(
        "status 999",
        b"HTTP/1.1 999 Nine\r\nContent-Length: 2\r\n\r\nok",
    ));
    for (name, line) in [
        ("status `+200`", &b"HTTP/1.1 +200 OK"[..]),
        ("status `0200`", b"HTTP/1.1 0200 OK"),
        ("version `HTTP/2`", b"HTTP/2 200 OK"),
        ("version `HTTP/1.1x`", b"HTTP/1.1x 200 OK"),
        ("bare CR in the status line", b"HTTP/1.1 200 OK\rX: y"),
    ] {
        vs.push(bad_response(
            name,
            &cat(&[line, b"\r\nContent-Length: 2\r\n\r\nok"]),
        ));
    }
    vs.push(bad_response(
        "TE on an HTTP/1.0 response",
        b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    ));
}

/// Bytes as text for names and reports: printable ASCII as is, the rest escaped.
fn esc(b: &[u8]) -> String {
    let mut s = String::new();
    for &c in b {
        match c {
            b'\r' => s.push_str("\\r"),
            b'\n' => s.push_str("\\n"),
            b'\t' => s.push_str("\\t"),
            b'\\' => s.push_str("\\\\"),
            0x20..=0x7e => s.push(char::from(c)),
            _ => {
                let _ = write!(s, "\\x{c:02x}");
            }
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// A strict HTTP/1.1 parser (RFC 9112), the backend's and the analysis'.
// ---------------------------------------------------------------------------------------

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

enum Line<'a> {
    Ok(&'a [u8], usize),
    Incomplete,
    Bad(&'static str),
}

/// The CRLF-terminated line at `pos`: a bare LF, a bare CR or a NUL makes it bad.
fn line_at(buf: &[u8], pos: usize) -> Line<'_> {
    let rest = buf.get(pos..).unwrap_or(&[]);
    for (i, &b) in rest.iter().enumerate() {
        match b {
            b'\n' => return Line::Bad("bare LF"),
            0 => return Line::Bad("NUL byte"),
            b'\r' => {
                return match rest.get(i + 1) {
                    Some(b'\n') => Line::Ok(&rest[..i], pos + i + 2),
                    Some(_) => Line::Bad("bare CR"),
                    None => Line::Incomplete,
                }
            }
            _ => {}
        }
    }
    Line::Incomplete
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

type Field = (Vec<u8>, Vec<u8>);

/// A field line: `Ok(None)` for an empty name (noted, not fatal).
fn field(l: &[u8], notes: &mut Vec<String>) -> Result<Option<Field>, String> {
    if matches!(l.first(), Some(b' ' | b'\t')) {
        return Err("obs-fold (a line starting with whitespace)".into());
    }
    let Some(colon) = l.iter().position(|&b| b == b':') else {
        return Err(format!("field line without a colon: `{}`", esc(l)));
    };
    let (name, value) = (&l[..colon], trim_ows(&l[colon + 1..]));
    if name.is_empty() {
        notes.push(format!("empty field name: `{}`", esc(l)));
        return Ok(None);
    }
    if !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!("field name `{}` is not a token", esc(name)));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        notes.push(format!("control byte in a field value: `{}`", esc(l)));
    }
    Ok(Some((name.to_vec(), value.to_vec())))
}

/// One request as the strict parser read it.
#[derive(Clone, Debug)]
struct SReq {
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<Field>,
    /// Where its body or the next message ends; `None` while incomplete.
    end: Option<usize>,
}

impl SReq {
    fn values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    fn has_token(&self, name: &[u8], token: &[u8]) -> bool {
        self.values(name).any(|v| {
            v.split(|&b| b == b',')
                .any(|t| trim_ows(t).eq_ignore_ascii_case(token))
        })
    }

    fn asks_upgrade(&self) -> bool {
        self.values(b"Upgrade").next().is_some() && self.has_token(b"Connection", b"upgrade")
    }

    fn key(&self) -> (String, String) {
        (
            String::from_utf8_lossy(&self.method).into_owned(),
            String::from_utf8_lossy(&self.target).into_owned(),
        )
    }
}

#[derive(Debug, Default)]
struct SParse {
    reqs: Vec<SReq>,
    /// Violations after which the framing is still clear.
    notes: Vec<String>,
    /// A violation that leaves the framing unknown: where (scan for hidden requests from
    /// there) and what.
    fatal: Option<(usize, String)>,
}

/// Parses the requests in `buf`; after request `tunnel_after` the bytes are a tunnel.
fn parse_requests(buf: &[u8], tunnel_after: Option<usize>) -> SParse {
    let mut out = SParse::default();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let fail = |mut out: SParse, at: usize, why: String| {
            out.fatal = Some((at, why));
            out
        };
        let (line, next) = match line_at(buf, pos) {
            Line::Ok(l, n) => (l, n),
            Line::Incomplete => return out,
            Line::Bad(w) => return fail(out, start, format!("request line: {w}")),
        };
        pos = next;
        let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let [method, target, version] = parts.as_slice() else {
            return fail(
                out,
                start,
                format!(
                    "request line is not METHOD SP target SP version: `{}`",
                    esc(line)
                ),
            );
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return fail(
                out,
                start,
                format!("method `{}` is not a token", esc(method)),
            );
        }
        if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            return fail(out, start, format!("request target `{}`", esc(target)));
        }
        // HTTP-version = "HTTP/" DIGIT "." DIGIT; a higher minor version of 1 is read as
        // 1.1 (RFC 9112 2.3), anything else is not HTTP/1.1 framing.
        let http10 = *version == b"HTTP/1.0";
        if !matches!(version, [b'H', b'T', b'T', b'P', b'/', b'1', b'.', d] if d.is_ascii_digit()) {
            return fail(out, start, format!("version `{}`", esc(version)));
        }
        let mut headers = Vec::new();
        loop {
            match line_at(buf, pos) {
                Line::Incomplete => return out,
                Line::Bad(w) => return fail(out, start, format!("field line: {w}")),
                Line::Ok(l, n) => {
                    pos = n;
                    if l.is_empty() {
                        break;
                    }
                    match field(l, &mut out.notes) {
                        Err(w) => return fail(out, start, w),
                        Ok(Some(f)) => headers.push(f),
                        Ok(None) => {}
                    }
                }
            }
        }
        let mut req = SReq {
            method: method.to_vec(),
            target: target.to_vec(),
            headers,
            end: None,
        };
        let hosts = req.values(b"Host").count();
        if !http10 && hosts != 1 {
            out.notes.push(format!("{hosts} Host fields"));
        }
        let cls: Vec<Vec<u8>> = req.values(b"Content-Length").map(<[u8]>::to_vec).collect();
        let codings: Vec<Vec<u8>> = req
            .values(b"Transfer-Encoding")
            .flat_map(|v| v.split(|&b| b == b','))
            .map(|c| trim_ows(c).to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect();
        let te = req.values(b"Transfer-Encoding").next().is_some();
        let body_start = pos;
        if te {
            if http10 {
                return fail(
                    out,
                    start,
                    "Transfer-Encoding in an HTTP/1.0 request".into(),
                );
            }
            if !cls.is_empty() {
                return fail(out, start, "Content-Length with Transfer-Encoding".into());
            }
            if codings.last().map(Vec::as_slice) != Some(b"chunked") {
                return fail(out, start, "final transfer coding is not chunked".into());
            }
            if codings
                .iter()
                .filter(|c| c.as_slice() == b"chunked")
                .count()
                > 1
            {
                out.notes.push("chunked applied twice".into());
            }
            match chunked_end(buf, pos, &mut out.notes) {
                Ok(Some(e)) => {
                    pos = e;
                    req.end = Some(e);
                }
                Ok(None) => {
                    out.reqs.push(req);
                    return out;
                }
                Err(w) => {
                    out.reqs.push(req);
                    return fail(out, body_start, w);
                }
            }
        } else if !cls.is_empty() {
            if cls.len() > 1 {
                return fail(out, start, "several Content-Length fields".into());
            }
            let c = &cls[0];
            if c.is_empty() || c.len() > 18 || !c.iter().all(u8::is_ascii_digit) {
                return fail(out, start, format!("Content-Length `{}`", esc(c)));
            }
            let n: usize = String::from_utf8_lossy(c).parse().unwrap_or(usize::MAX);
            if buf.len() - pos < n {
                out.reqs.push(req);
                return out;
            }
            pos += n;
            req.end = Some(pos);
        } else {
            req.end = Some(pos);
        }
        let close = req.has_token(b"Connection", b"close");
        out.reqs.push(req);
        if tunnel_after == Some(out.reqs.len() - 1) {
            return out;
        }
        if close && pos < buf.len() {
            return fail(
                out,
                pos,
                "bytes after a request with Connection: close".into(),
            );
        }
    }
    out
}

/// The end of a chunked body starting at `pos`: `Ok(None)` while incomplete.
fn chunked_end(
    buf: &[u8],
    mut pos: usize,
    notes: &mut Vec<String>,
) -> Result<Option<usize>, String> {
    loop {
        let (l, next) = match line_at(buf, pos) {
            Line::Ok(l, n) => (l, n),
            Line::Incomplete => return Ok(None),
            Line::Bad(w) => return Err(format!("chunk-size line: {w}")),
        };
        let (size, ext) = match l.iter().position(|&b| b == b';') {
            Some(i) => (&l[..i], Some(&l[i + 1..])),
            None => (l, None),
        };
        if size.is_empty() || !size.iter().all(u8::is_ascii_hexdigit) {
            return Err(format!("chunk size `{}`", esc(l)));
        }
        let sig = size
            .iter()
            .position(|&b| b != b'0')
            .map_or(&[][..], |i| &size[i..]);
        if sig.len() > 16 {
            return Err(format!("chunk size `{}` above 64 bits", esc(size)));
        }
        let n = u64::from_str_radix(&String::from_utf8_lossy(size), 16).unwrap_or(u64::MAX);
        if let Some(ext) = ext {
            for e in ext.split(|&b| b == b';') {
                let (name, value) = match e.iter().position(|&b| b == b'=') {
                    Some(i) => (&e[..i], Some(&e[i + 1..])),
                    None => (e, None),
                };
                let token = |t: &[u8]| !t.is_empty() && t.iter().all(|&b| is_tchar(b));
                if !token(name) || value.is_some_and(|v| !token(v)) {
                    return Err(format!("chunk extension `{}`", esc(l)));
                }
            }
        }
        pos = next;
        if n == 0 {
            loop {
                match line_at(buf, pos) {
                    Line::Incomplete => return Ok(None),
                    Line::Bad(w) => return Err(format!("trailer: {w}")),
                    Line::Ok(l, n) => {
                        pos = n;
                        if l.is_empty() {
                            return Ok(Some(pos));
                        }
                        match field(l, notes) {
                            Err(w) => return Err(format!("trailer: {w}")),
                            Ok(Some((name, _))) => {
                                for f in [&b"Content-Length"[..], b"Transfer-Encoding", b"Host"] {
                                    if name.eq_ignore_ascii_case(f) {
                                        notes.push(format!("{} in a trailer", esc(&name)));
                                    }
                                }
                            }
                            Ok(None) => {}
                        }
                    }
                }
            }
        }
        let Some(end) = usize::try_from(n).ok().and_then(|n| pos.checked_add(n)) else {
            return Ok(None);
        };
        match buf.get(end..end + 2) {
            Some(b"\r\n") => pos = end + 2,
            Some(_) => return Err("chunk data not followed by CRLF".into()),
            None => {
                if buf.get(end).is_some_and(|&b| b != b'\r') {
                    return Err("chunk data not followed by CRLF".into());
                }
                return Ok(None);
            }
        }
    }
}

/// The path of a request target (origin or absolute form), without its query.
fn path_of(target: &[u8]) -> &[u8] {
    let t = match target.iter().position(|&b| b == b'?') {
        Some(q) => &target[..q],
        None => target,
    };
    if t.starts_with(b"/") {
        return t;
    }
    match t.windows(3).position(|w| w == b"://") {
        Some(i) => {
            let rest = &t[i + 3..];
            match rest.iter().position(|&b| b == b'/') {
                Some(j) => &rest[j..],
                None => b"/",
            }
        }
        None => t,
    }
}

fn blocked(target: &[u8]) -> bool {
    path_of(target).starts_with(b"/blocked")
}

/// After a fatal violation a backend's reading is anyone's guess: every line that reads
/// like a request line for the blocked path counts as one that may reach it.
fn lenient_blocked(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .filter_map(|line| {
            let toks: Vec<&[u8]> = line
                .split(|&b| b.is_ascii_whitespace() || b == 0x0b || b == 0x0c)
                .filter(|t| !t.is_empty())
                .collect();
            let (method, rest) = toks.split_first()?;
            let methodish = method.iter().all(|&b| b.is_ascii_uppercase() || b == b'-');
            (methodish && rest.iter().any(|t| blocked(t))).then(|| esc(line))
        })
        .collect()
}

/// One response as a strict client reads it.
#[derive(Debug)]
struct SResp {
    relay_page: bool,
}

#[derive(Debug, Default)]
struct RParse {
    resps: Vec<SResp>,
    notes: Vec<String>,
    fatal: Option<String>,
}

/// Parses the responses a client received for requests with these methods.
fn parse_responses(buf: &[u8], methods: &[Vec<u8>]) -> RParse {
    let mut out = RParse::default();
    let mut pos = 0;
    let mut m = 0;
    while pos < buf.len() {
        let fail = |mut out: RParse, why: String| {
            out.fatal = Some(why);
            out
        };
        let (line, next) = match line_at(buf, pos) {
            Line::Ok(l, n) => (l, n),
            Line::Incomplete => return fail(out, "truncated status line".into()),
            Line::Bad(w) => return fail(out, format!("status line: {w}")),
        };
        pos = next;
        let mut parts = line.splitn(3, |&b| b == b' ');
        let (version, code) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
        if (version != b"HTTP/1.1" && version != b"HTTP/1.0")
            || code.len() != 3
            || !code.iter().all(u8::is_ascii_digit)
            || parts.next().is_none()
        {
            return fail(out, format!("status line `{}`", esc(line)));
        }
        let status: u16 = String::from_utf8_lossy(code).parse().unwrap_or(0);
        let mut headers: Vec<Field> = Vec::new();
        loop {
            match line_at(buf, pos) {
                Line::Incomplete => return fail(out, "truncated head".into()),
                Line::Bad(w) => return fail(out, format!("field line: {w}")),
                Line::Ok(l, n) => {
                    pos = n;
                    if l.is_empty() {
                        break;
                    }
                    match field(l, &mut out.notes) {
                        Err(w) => return fail(out, w),
                        Ok(Some(f)) => headers.push(f),
                        Ok(None) => {}
                    }
                }
            }
        }
        let get = |name: &[u8]| -> Vec<&[u8]> {
            headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_slice())
                .collect()
        };
        let relay_page = get(b"Server").contains(&&b"OpenBSD relayd"[..]);
        let (cls, tes) = (get(b"Content-Length"), get(b"Transfer-Encoding"));
        out.resps.push(SResp { relay_page });
        if (100..200).contains(&status) && status != 101 {
            if !cls.is_empty() || !tes.is_empty() {
                out.notes.push(format!("framing fields on a {status}"));
            }
            continue;
        }
        let method = methods.get(m).cloned().unwrap_or_default();
        m += 1;
        if status == 101 {
            return out;
        }
        if method == b"HEAD" || status == 204 || status == 304 {
            if status == 204 && (!cls.is_empty() || !tes.is_empty()) {
                out.notes.push("framing fields on a 204".into());
            }
            if status == 304 && !tes.is_empty() {
                out.notes.push("Transfer-Encoding on a 304".into());
            }
            continue;
        }
        if !tes.is_empty() {
            if !cls.is_empty() {
                return fail(out, "Content-Length with Transfer-Encoding".into());
            }
            if version == b"HTTP/1.0" {
                return fail(out, "Transfer-Encoding in an HTTP/1.0 response".into());
            }
            if tes.len() != 1 || !tes[0].eq_ignore_ascii_case(b"chunked") {
                return fail(out, "Transfer-Encoding other than chunked".into());
            }
            match chunked_end(buf, pos, &mut out.notes) {
                Ok(Some(e)) => pos = e,
                Ok(None) => return fail(out, "truncated chunked body".into()),
                Err(w) => return fail(out, w),
            }
        } else if !cls.is_empty() {
            if cls.len() > 1 {
                return fail(out, "several Content-Length fields".into());
            }
            let n: usize = String::from_utf8_lossy(cls[0])
                .parse()
                .unwrap_or(usize::MAX);
            if !cls[0].iter().all(u8::is_ascii_digit) || buf.len() - pos < n {
                return fail(out, format!("Content-Length `{}`", esc(cls[0])));
            }
            pos += n;
        } else {
            // Until the connection closes.
            return out;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// The recording backend
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct BConn {
    bytes: Vec<u8>,
    /// The request after which the backend switched protocols (101, or 2xx to CONNECT).
    tunnel_after: Option<usize>,
    done: bool,
}

#[derive(Clone)]
struct Backend {
    port: u16,
    conns: Arc<Mutex<Vec<Arc<Mutex<BConn>>>>>,
    answers: Arc<Mutex<HashMap<String, Answer>>>,
}

/// The client address the relay's `header set` wrote into the first request head.
fn vector_client(bytes: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\r\nX-Vector-Client: ";
    let at = bytes.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &bytes[at..];
    let end = rest.iter().position(|&b| b == b'\r')?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

fn normal_answer(r: &SReq) -> Vec<u8> {
    let who: String = format!("{} {}", esc(&r.method), esc(&r.target));
    if r.method == b"CONNECT" {
        return format!(
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nX-Answer: {who}\r\n\r\n"
        )
        .into_bytes();
    }
    if r.asks_upgrade() && r.has_token(b"Upgrade", b"websocket") {
        return format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Answer: {who}\r\n\r\n"
        )
        .into_bytes();
    }
    let body = if r.method == b"HEAD" { "" } else { "ok" };
    format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: {who}\r\n\r\n{body}").into_bytes()
}

impl Answer {
    fn at_head(&self, i: usize) -> Option<Vec<u8>> {
        match self {
            Answer::Early(b) if i == 0 => Some(b.clone()),
            Answer::Continue if i == 0 => Some(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec()),
            _ => None,
        }
    }

    fn at_end(&self, i: usize, r: &SReq) -> Option<Vec<u8>> {
        match self {
            Answer::Early(_) if i == 0 => None,
            Answer::Nth(n, b) if *n == i => Some(b.clone()),
            _ => Some(normal_answer(r)),
        }
    }
}

/// Whether answering `r` with `resp` switched this connection away from HTTP.
fn switches(r: &SReq, resp: &[u8]) -> bool {
    (resp.starts_with(b"HTTP/1.1 101") && r.asks_upgrade())
        || (r.method == b"CONNECT" && resp.starts_with(b"HTTP/1.1 2"))
}

fn start_backend() -> Backend {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let b = Backend {
        port: l.local_addr().unwrap().port(),
        conns: Arc::default(),
        answers: Arc::default(),
    };
    let b2 = b.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let conn = Arc::new(Mutex::new(BConn::default()));
            b2.conns.lock().unwrap().push(Arc::clone(&conn));
            let answers = Arc::clone(&b2.answers);
            std::thread::spawn(move || serve_backend(s, &conn, &answers));
        }
    });
    b
}

fn serve_backend(mut s: TcpStream, conn: &Mutex<BConn>, answers: &Mutex<HashMap<String, Answer>>) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(50)));
    let t0 = Instant::now();
    let mut last = Instant::now();
    let (mut heads, mut answered) = (0, 0);
    let mut stopped = false;
    let mut buf = [0u8; 16384];
    while t0.elapsed() < BACKEND_CAP {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                conn.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                last = Instant::now();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if last.elapsed() > BACKEND_IDLE {
                    break;
                }
                continue;
            }
            Err(_) => break,
        }
        if stopped {
            continue;
        }
        let bytes = conn.lock().unwrap().bytes.clone();
        let answer = vector_client(&bytes)
            .and_then(|c| answers.lock().unwrap().get(&c).cloned())
            .unwrap_or(Answer::Normal);
        let p = parse_requests(&bytes, None);
        for (i, r) in p.reqs.iter().enumerate() {
            if i >= heads {
                heads = i + 1;
                if let Some(b) = answer.at_head(i) {
                    let _ = s.write_all(&b);
                }
            }
            if r.end.is_some() && i >= answered {
                answered = i + 1;
                if let Some(resp) = answer.at_end(i, r) {
                    let _ = s.write_all(&resp);
                    if switches(r, &resp) {
                        conn.lock().unwrap().tunnel_after = Some(i);
                        stopped = true;
                        break;
                    }
                    if r.has_token(b"Connection", b"close")
                        || contains_ci(&resp, b"\r\nConnection: close\r\n")
                    {
                        // A server closes after answering such a request.
                        let _ = s.shutdown(Shutdown::Write);
                        stopped = true;
                        break;
                    }
                }
            }
        }
        if !stopped && p.fatal.is_some() {
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            let _ = s.shutdown(Shutdown::Write);
            stopped = true;
        }
    }
    conn.lock().unwrap().done = true;
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

enum Client {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

enum Got {
    Data,
    Eof,
    Idle,
}

impl Client {
    fn connect(
        port: u16,
        src: Ipv4Addr,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<Client> {
        let sock = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        sock.bind(&SocketAddr::from((src, 0)).into())?;
        sock.connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], port)).into(),
            Duration::from_secs(3),
        )?;
        let tcp: TcpStream = sock.into();
        tcp.set_nodelay(true)?;
        let Some(cfg) = tls else {
            tcp.set_read_timeout(Some(Duration::from_millis(50)))?;
            return Ok(Client::Plain(tcp));
        };
        tcp.set_read_timeout(Some(Duration::from_secs(3)))?;
        let name = rustls::pki_types::ServerName::try_from("localhost")
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut conn = rustls::ClientConnection::new(Arc::clone(cfg), name)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut tcp = tcp;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        tcp.set_read_timeout(Some(Duration::from_millis(50)))?;
        Ok(Client::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
    }

    fn send(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Client::Plain(s) => s.write_all(b),
            Client::Tls(s) => {
                s.write_all(b)?;
                s.flush()
            }
        }
    }

    fn recv(&mut self, out: &mut Vec<u8>) -> Got {
        let mut buf = [0u8; 16384];
        let r = match self {
            Client::Plain(s) => s.read(&mut buf),
            Client::Tls(s) => s.read(&mut buf),
        };
        match r {
            Ok(0) => Got::Eof,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                Got::Data
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Got::Idle,
            Err(_) => Got::Eof,
        }
    }

    fn shutdown_write(&mut self) {
        match self {
            Client::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
            }
            Client::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Write);
            }
        }
    }
}

/// Reads until EOF (`true`), `idle` without data (since the call or the last data), or
/// `cap`.
fn drain(c: &mut Client, got: &mut Vec<u8>, idle: Duration, cap: Duration) -> bool {
    let t0 = Instant::now();
    let mut last = Instant::now();
    while t0.elapsed() < cap {
        match c.recv(got) {
            Got::Eof => return true,
            Got::Data => last = Instant::now(),
            Got::Idle => {
                if last.elapsed() >= idle {
                    return false;
                }
            }
        }
    }
    false
}

/// A certificate verifier that takes anything: the relay's certificate is made here.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Arc::new(cfg)
}

// ---------------------------------------------------------------------------------------
// Relays
// ---------------------------------------------------------------------------------------

const PROTOCOL_RULES: &str = "\treturn error\n\
     \tmatch request path log \"*\"\n\
     \tmatch request header set \"X-Vector-Client\" value \"$REMOTE_ADDR\"\n\
     \tblock request quick path \"/blocked*\"\n";

/// One relay kind under test: its relayd-run process and backend, or why it cannot run.
struct Kind {
    label: &'static str,
    relay_name: &'static str,
    net: u8,
    port: u16,
    backend: Backend,
    relay: Option<Relay>,
    tls: Option<Arc<rustls::ClientConfig>>,
    na: Option<String>,
}

impl Kind {
    fn ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(127, self.net, (i / 200) as u8, (i % 200) as u8 + 10)
    }
}

/// Writes the relay's configuration; `tls`: the keypair's files.
fn relay_conf(
    dir: &Path,
    name: &str,
    port: u16,
    backend: u16,
    extra: &str,
    tls: bool,
) -> std::path::PathBuf {
    let conf = dir.join(format!("{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            "log connection\nprefork 1\n\
             http protocol \"{name}\" {{\n{PROTOCOL_RULES}{extra}}}\n\
             relay \"{name}\" {{\n\tlisten on 127.0.0.1 port {port}{}\n\tprotocol \"{name}\"\n\
             \tforward to 127.0.0.1 port {backend}\n\tsession timeout {SESSION_TIMEOUT_S}\n}}\n",
            if tls { " tls" } else { "" }
        ),
    )
    .unwrap();
    conf
}

/// Waits (bounded) for the relay to accept; `Err` with its log when it exits or never does.
fn await_relay(relay: &mut Relay, port: u16) -> Result<(), String> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = relay.child.try_wait() {
            return Err(format!(
                "relayd-run exited ({status}): {}",
                relay.log().trim()
            ));
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("relayd-run never accepted: {}", relay.log().trim()))
}

fn plain_kind(dir: &Path, label: &'static str, name: &'static str, net: u8, extra: &str) -> Kind {
    let backend = start_backend();
    let port = free_port();
    let conf = relay_conf(dir, name, port, backend.port, extra, false);
    let plan = dir.join(format!("{name}.bin"));
    compile(&conf, &[], &plan);
    let mut relay = Relay::start(&plan, &[]);
    if let Err(e) = await_relay(&mut relay, port) {
        panic!("the {label} relay did not start: {e}");
    }
    Kind {
        label,
        relay_name: name,
        net,
        port,
        backend,
        relay: Some(relay),
        tls: None,
        na: None,
    }
}

/// `der` as a PEM block (RFC 7468).
fn pem_block(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for c in der.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= c.len() {
                b64.push(char::from(B64[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The HTTPS relay, or the reason it cannot run here ("n/a" in the table).
fn https_kind(dir: &Path, net: u8) -> Kind {
    let name = "smuggle-https";
    let backend = start_backend();
    let port = free_port();
    let mut kind = Kind {
        label: "https",
        relay_name: name,
        net,
        port,
        backend: backend.clone(),
        relay: None,
        tls: None,
        na: None,
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
    let (crt, pem) = (dir.join("relay.crt"), dir.join("relay.key"));
    std::fs::write(&crt, pem_block("CERTIFICATE", cert.der())).unwrap();
    std::fs::write(&pem, pem_block("PRIVATE KEY", &key.serialize_der())).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pem, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let extra = format!(
        "\ttls keypair \"{name}\" cert \"{}\"\n\ttls keypair \"{name}\" key \"{}\"\n",
        crt.display(),
        pem.display()
    );
    let conf = relay_conf(dir, name, port, backend.port, &extra, true);
    let plan = dir.join(format!("{name}.bin"));
    let argv: Vec<std::ffi::OsString> = vec![
        "relaydc".into(),
        "compile".into(),
        conf.clone().into(),
        "-o".into(),
        plan.clone().into(),
    ];
    let (mut o, mut e) = (Vec::new(), Vec::new());
    if relaydc::cli::run(argv, &mut o, &mut e) != 0 {
        kind.na = Some(format!(
            "relaydc compile refused the TLS relay: {}",
            String::from_utf8_lossy(&e).trim()
        ));
        return kind;
    }
    let mut relay = Relay::start(&plan, &[]);
    if let Err(e) = await_relay(&mut relay, port) {
        kind.na = Some(format!("relayd-run does not serve the TLS listener: {e}"));
        return kind;
    }
    kind.relay = Some(relay);
    kind.tls = Some(tls_client_config());
    kind
}

/// A normal request through the relay: 200 from the backend and a logged close line.
fn probe(kind: &Kind) -> Result<(), String> {
    let ip = Ipv4Addr::new(127, kind.net, 250, 1);
    let mut c = Client::connect(kind.port, ip, kind.tls.as_ref()).map_err(|e| e.to_string())?;
    c.send(b"GET /probe HTTP/1.1\r\nHost: a\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    drain(&mut c, &mut got, CLIENT_IDLE, CLIENT_CAP);
    c.shutdown_write();
    drain(&mut c, &mut got, CLIENT_CAP, CLIENT_CAP);
    if !got.starts_with(b"HTTP/1.1 200 OK\r\n") || !contains(&got, b"X-Answer: GET /probe") {
        return Err(format!("probe answered `{}`", esc(&got)));
    }
    let relay = kind.relay.as_ref().ok_or("no relay")?;
    let line = wait_close_line(relay, kind.relay_name, &ip.to_string())
        .ok_or_else(|| format!("no close line for the probe: {}", relay.log()))?;
    if !line.contains("[/probe] GET") {
        return Err(format!("the probe's close line does not list it: {line}"));
    }
    Ok(())
}

fn find_close_line(log: &str, relay: &str, ip: &str) -> Option<String> {
    let start = format!("relay {relay}, session ");
    let from = format!(", {ip} -> ");
    log.lines()
        .find(|l| l.starts_with(&start) && l.contains(&from))
        .map(str::to_string)
}

fn wait_close_line(relay: &Relay, name: &str, ip: &str) -> Option<String> {
    let t0 = Instant::now();
    loop {
        if let Some(l) = find_close_line(&relay.log(), name, ip) {
            return Some(l);
        }
        if t0.elapsed() > CLOSE_LINE_WAIT {
            return None;
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// relayd's methods (http.h), which end each request's part of the session log.
const METHODS: [&str; 33] = [
    "GET",
    "HEAD",
    "POST",
    "PUT",
    "DELETE",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "PROPPATCH",
    "MKCOL",
    "COPY",
    "MOVE",
    "LOCK",
    "UNLOCK",
    "VERSION-CONTROL",
    "REPORT",
    "CHECKOUT",
    "CHECKIN",
    "UNCHECKOUT",
    "MKWORKSPACE",
    "UPDATE",
    "LABEL",
    "MERGE",
    "BASELINE-CONTROL",
    "MKACTIVITY",
    "ORDERPATCH",
    "ACL",
    "MKREDIRECTREF",
    "UPDATEREDIRECTREF",
    "SEARCH",
    "MKCALENDAR",
    "PATCH",
];

/// The requests a close line's session log lists: `[path] METHOD` or
/// `[path: query] METHOD`, as (method, target as the relay writes it).
fn logged_requests(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = line[from..].find("] ") {
        let close = from + i;
        from = close + 2;
        let rest = &line[from..];
        let Some(method) = METHODS
            .iter()
            .copied()
            .filter(|m| rest.starts_with(m))
            .max_by_key(|m| m.len())
        else {
            continue;
        };
        if !rest[method.len()..].is_empty() && !rest[method.len()..].starts_with([' ', ';', ':']) {
            continue;
        }
        let Some(open) = line[..close].rfind(" [") else {
            continue;
        };
        let entry = &line[open + 2..close];
        let target = match entry.split_once(": ") {
            Some((p, q)) => format!("{p}?{q}"),
            None => entry.to_string(),
        };
        out.push((method.to_string(), target));
    }
    out
}

// ---------------------------------------------------------------------------------------
// Running and judging
// ---------------------------------------------------------------------------------------

struct Run {
    got: Vec<u8>,
    closed: bool,
    close_line: Option<String>,
    error: Option<String>,
}

fn run_vector(kind: &Kind, v: &Vector, ip: Ipv4Addr) -> Run {
    let mut run = Run {
        got: Vec::new(),
        closed: false,
        close_line: None,
        error: None,
    };
    let mut c = match Client::connect(kind.port, ip, kind.tls.as_ref()) {
        Ok(c) => c,
        Err(e) => {
            run.error = Some(format!("connect: {e}"));
            return run;
        }
    };
    for step in &v.steps {
        match step {
            Step::Send(b) => {
                if c.send(b).is_err() {
                    break;
                }
            }
            Step::Await(d) => {
                let t0 = Instant::now();
                let n = run.got.len();
                while t0.elapsed() < *d && run.got.len() == n {
                    if let Got::Eof = c.recv(&mut run.got) {
                        run.closed = true;
                        break;
                    }
                }
                if run.closed {
                    break;
                }
            }
        }
    }
    if !run.closed {
        run.closed = drain(&mut c, &mut run.got, CLIENT_IDLE, CLIENT_CAP);
    }
    if !run.closed {
        c.shutdown_write();
        drain(&mut c, &mut run.got, CLIENT_CAP, CLIENT_CAP);
    }
    drop(c);
    if let Some(relay) = &kind.relay {
        run.close_line = wait_close_line(relay, kind.relay_name, &ip.to_string());
    }
    run
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Rejected,
    Normalised,
    Forwarded,
}

struct Verdict {
    outcome: Outcome,
    ambiguous_forwarded: bool,
    blocked: Vec<String>,
    unlogged: Vec<String>,
    must_failed: Option<&'static str>,
    /// What the backend received (escaped) and why it was judged so.
    detail: String,
}

fn judge(v: &Vector, run: &Run, conns: &[(Vec<u8>, Option<usize>)]) -> Verdict {
    let mut notes = Vec::new();
    let mut fatal = Vec::new();
    let mut blocked_hits = Vec::new();
    let mut reqs = Vec::new();
    let mut heads = 0;
    for (bytes, tunnel) in conns {
        let p = parse_requests(bytes, *tunnel);
        heads += p.reqs.len();
        notes.extend(p.notes);
        for r in &p.reqs {
            if blocked(&r.target) {
                blocked_hits.push(format!("request {} {}", esc(&r.method), esc(&r.target)));
            }
        }
        reqs.extend(p.reqs);
        if let Some((at, why)) = p.fatal {
            fatal.push(why);
            for l in lenient_blocked(&bytes[at..]) {
                blocked_hits.push(format!("after a violation: `{l}`"));
            }
        }
    }
    let backend_bytes: Vec<u8> = conns.iter().flat_map(|(b, _)| b.clone()).collect();
    let mut outcome = if v.class == Class::Response {
        let methods: Vec<Vec<u8>> = parse_requests(&v.sent(), None)
            .reqs
            .iter()
            .map(|r| r.method.clone())
            .collect();
        let rp = parse_responses(&run.got, &methods);
        let forwarded =
            rp.fatal.is_some() || !rp.notes.is_empty() || v.as_is.is_some_and(|d| d(&run.got));
        if let Some(f) = &rp.fatal {
            fatal.push(format!("client: {f}"));
        }
        notes.extend(rp.notes.iter().map(|n| format!("client: {n}")));
        if forwarded {
            Outcome::Forwarded
        } else if rp.resps.is_empty() || rp.resps.iter().any(|r| r.relay_page) {
            Outcome::Rejected
        } else {
            Outcome::Normalised
        }
    } else if !fatal.is_empty() || !notes.is_empty() || v.as_is.is_some_and(|d| d(&backend_bytes)) {
        Outcome::Forwarded
    } else if heads == 0 {
        Outcome::Rejected
    } else {
        Outcome::Normalised
    };
    // A relay that answered nothing and kept the connection is no rejection.
    if outcome == Outcome::Rejected && run.got.is_empty() && !run.closed {
        notes.push("the client got neither an answer nor a close".into());
        outcome = Outcome::Forwarded;
    }
    let logged = run
        .close_line
        .as_deref()
        .map(logged_requests)
        .unwrap_or_default();
    let mut left = logged.clone();
    let mut unlogged = Vec::new();
    for r in &reqs {
        let k = r.key();
        match left.iter().position(|l| *l == k) {
            Some(i) => {
                left.remove(i);
            }
            None => unlogged.push(format!("{} {}", k.0, k.1)),
        }
    }
    let must_failed = v
        .client_must
        .and_then(|(what, d)| (!d(&run.got)).then_some(what));
    let mut detail = String::new();
    if let Some(e) = &run.error {
        let _ = write!(detail, "client error: {e}; ");
    }
    for f in &fatal {
        let _ = write!(detail, "violation: {f}; ");
    }
    for n in &notes {
        let _ = write!(detail, "note: {n}; ");
    }
    let _ = write!(
        detail,
        "backend got ({} conn): `{}`; client got: `{}`; close line: {}",
        conns.len(),
        esc(&backend_bytes),
        esc(&run.got),
        run.close_line.as_deref().unwrap_or("(none)")
    );
    Verdict {
        outcome,
        ambiguous_forwarded: outcome == Outcome::Forwarded && v.lenient.is_none(),
        blocked: blocked_hits,
        unlogged,
        must_failed,
        detail,
    }
}

#[derive(Default, Clone, Copy)]
struct Counts {
    vectors: usize,
    rejected: usize,
    normalised: usize,
    forwarded: usize,
    ambiguous: usize,
    blocked: usize,
    unlogged: usize,
    must: usize,
}

impl Counts {
    fn add(&mut self, v: &Verdict) {
        self.vectors += 1;
        match v.outcome {
            Outcome::Rejected => self.rejected += 1,
            Outcome::Normalised => self.normalised += 1,
            Outcome::Forwarded => self.forwarded += 1,
        }
        self.ambiguous += usize::from(v.ambiguous_forwarded);
        self.blocked += usize::from(!v.blocked.is_empty());
        self.unlogged += usize::from(!v.unlogged.is_empty());
        self.must += usize::from(v.must_failed.is_some());
    }
}

fn table(
    vectors: &[Vector],
    kinds: &[Kind],
    verdicts: &[Vec<Option<Verdict>>],
    secs: f64,
) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# relayd-run smuggling battery: {} vectors x {} relays ({:.1} s)",
        vectors.len(),
        kinds.len(),
        secs
    );
    let _ = writeln!(
        t,
        "# rej = rejected (the backend got no request), norm = normalised (it got only \
         strictly valid requests), fwd = forwarded as-is"
    );
    let _ = write!(t, "{:<22}{:>5}", "class", "vec");
    for k in kinds {
        let _ = write!(t, " | {:^19}", k.label);
    }
    let _ = writeln!(t);
    let _ = write!(t, "{:<22}{:>5}", "", "");
    for _ in kinds {
        let _ = write!(t, " | {:>5} {:>6} {:>5}", "rej", "norm", "fwd");
    }
    let _ = writeln!(t);
    let mut totals = vec![Counts::default(); kinds.len()];
    for class in Class::ALL {
        let n = vectors.iter().filter(|v| v.class == class).count();
        let _ = write!(t, "{:<22}{:>5}", class.name(), n);
        for (k, kind) in kinds.iter().enumerate() {
            let mut c = Counts::default();
            for (i, v) in vectors.iter().enumerate() {
                if v.class == class {
                    if let Some(verdict) = &verdicts[k][i] {
                        c.add(verdict);
                        totals[k].add(verdict);
                    }
                }
            }
            if kind.na.is_some() {
                let _ = write!(t, " | {:^19}", "n/a");
            } else {
                let _ = write!(
                    t,
                    " | {:>5} {:>6} {:>5}",
                    c.rejected, c.normalised, c.forwarded
                );
            }
        }
        let _ = writeln!(t);
    }
    let _ = write!(t, "{:<22}{:>5}", "total", vectors.len());
    for (k, kind) in kinds.iter().enumerate() {
        let c = totals[k];
        if kind.na.is_some() {
            let _ = write!(t, " | {:^19}", "n/a");
        } else {
            let _ = write!(
                t,
                " | {:>5} {:>6} {:>5}",
                c.rejected, c.normalised, c.forwarded
            );
        }
    }
    let _ = writeln!(t);
    let _ = writeln!(t, "# must be zero:");
    for (label, f) in [
        (
            "ambiguous forwarded as-is",
            (|c: &Counts| c.ambiguous) as fn(&Counts) -> usize,
        ),
        ("blocked path reached the backend", |c: &Counts| c.blocked),
        ("backend requests the relay did not log", |c: &Counts| {
            c.unlogged
        }),
        ("client missed a response it must get", |c: &Counts| c.must),
    ] {
        let _ = write!(t, "{label:<41}");
        for (k, kind) in kinds.iter().enumerate() {
            if kind.na.is_some() {
                let _ = write!(t, " | {:^19}", "n/a");
            } else {
                let _ = write!(t, " | {:^19}", f(&totals[k]));
            }
        }
        let _ = writeln!(t);
    }
    for kind in kinds {
        if let Some(why) = &kind.na {
            let _ = writeln!(t, "# {}: n/a: {why}", kind.label);
        }
    }
    t
}

#[test]
fn smuggling_battery() {
    let t0 = Instant::now();
    let dir = temp_dir("smuggling");
    let mut kinds = vec![
        plain_kind(&dir, "plain", "smuggle-plain", 20, ""),
        plain_kind(&dir, "websockets", "smuggle-ws", 21, "\thttp websockets\n"),
        https_kind(&dir, 22),
    ];
    for kind in &mut kinds {
        if kind.na.is_some() {
            continue;
        }
        if let Err(e) = probe(kind) {
            if kind.tls.is_some() {
                kind.na = Some(format!("a normal HTTPS request failed: {e}"));
            } else {
                panic!(
                    "the {} relay does not relay a normal request: {e}",
                    kind.label
                );
            }
        }
    }
    let vectors = vectors();
    assert!(vectors.len() >= 150, "{} vectors", vectors.len());
    let mut names = std::collections::HashSet::new();
    for v in &vectors {
        assert!(
            names.insert((v.class, &v.name)),
            "two {} vectors named {}",
            v.class.name(),
            v.name
        );
    }
    for kind in &kinds {
        let mut answers = kind.backend.answers.lock().unwrap();
        for (i, v) in vectors.iter().enumerate() {
            answers.insert(kind.ip(i).to_string(), v.answer.clone());
        }
    }
    // Every (relay, vector) pair, `PARALLEL` at a time.
    let jobs: Vec<(usize, usize)> = (0..kinds.len())
        .filter(|&k| kinds[k].na.is_none())
        .flat_map(|k| (0..vectors.len()).map(move |i| (k, i)))
        .collect();
    let next = AtomicUsize::new(0);
    let runs: Vec<Mutex<Option<Run>>> = (0..jobs.len()).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(k, i)) = jobs.get(j) else {
                    break;
                };
                let run = run_vector(&kinds[k], &vectors[i], kinds[k].ip(i));
                *runs[j].lock().unwrap() = Some(run);
            });
        }
    });
    // Every backend connection ends (the relay closed it, or the backend's idle bound).
    let settle = Instant::now();
    while settle.elapsed() < BACKEND_CAP {
        let open = kinds.iter().any(|k| {
            k.backend
                .conns
                .lock()
                .unwrap()
                .iter()
                .any(|c| !c.lock().unwrap().done)
        });
        if !open {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut verdicts: Vec<Vec<Option<Verdict>>> = kinds
        .iter()
        .map(|_| vectors.iter().map(|_| None).collect())
        .collect();
    let mut failures = Vec::new();
    let mut unclaimed = Vec::new();
    let verbose = std::env::var_os("SMUGGLING_VERBOSE").is_some();
    for (j, &(k, i)) in jobs.iter().enumerate() {
        let kind = &kinds[k];
        let v = &vectors[i];
        let ip = kind.ip(i).to_string();
        let conns: Vec<(Vec<u8>, Option<usize>)> = kind
            .backend
            .conns
            .lock()
            .unwrap()
            .iter()
            .filter_map(|c| {
                let c = c.lock().unwrap();
                (vector_client(&c.bytes).as_deref() == Some(ip.as_str()))
                    .then(|| (c.bytes.clone(), c.tunnel_after))
            })
            .collect();
        let run = runs[j].lock().unwrap().take().expect("every job ran");
        let verdict = judge(v, &run, &conns);
        let mut why = Vec::new();
        if verdict.ambiguous_forwarded {
            why.push("ambiguous, forwarded as-is".to_string());
        }
        if !verdict.blocked.is_empty() {
            why.push(format!(
                "blocked path reached the backend: {}",
                verdict.blocked.join(", ")
            ));
        }
        if !verdict.unlogged.is_empty() {
            why.push(format!(
                "backend requests the relay did not log: {}",
                verdict.unlogged.join(", ")
            ));
        }
        if let Some(m) = verdict.must_failed {
            why.push(format!("the client did not get {m}"));
        }
        if verbose {
            println!(
                "[{:<10}] #{i:03} {:<20} {:<52} {:?}{}",
                kind.label,
                v.class.name(),
                v.name,
                verdict.outcome,
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" FAIL: {}", why.join("; "))
                }
            );
        }
        if !why.is_empty() {
            failures.push(Failure {
                vector: i,
                relay: kind.label,
                why: why.join("; "),
                detail: verdict.detail.clone(),
            });
        }
        verdicts[k][i] = Some(verdict);
    }
    // Backend connections no vector claims (no X-Vector-Client): they must hold nothing.
    for kind in &kinds {
        for c in kind.backend.conns.lock().unwrap().iter() {
            let c = c.lock().unwrap();
            if vector_client(&c.bytes).is_none() && !c.bytes.is_empty() {
                unclaimed.push(format!(
                    "[{}] a backend connection no vector claims: `{}`",
                    kind.label,
                    esc(&c.bytes)
                ));
            }
        }
    }
    let t: String = table(&vectors, &kinds, &verdicts, t0.elapsed().as_secs_f64())
        .lines()
        .map(|l| format!("{}\n", l.trim_end()))
        .collect();
    let r = report(&vectors, &kinds, &verdicts, &failures, &unclaimed);
    println!("\n{t}\n{r}");
    if let Some(path) = std::env::var_os("SMUGGLING_TABLE") {
        let _ = std::fs::write(path, format!("{t}\n{r}"));
    }
    for kind in kinds {
        if let Some(relay) = kind.relay {
            let (code, log) = relay.terminate();
            assert!(!log.contains("lost child"), "{log}");
            assert_eq!(code, 0, "relayd-run exited with {code}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let unexpected = failures
        .iter()
        .filter(|f| vectors[f.vector].bug.is_none())
        .count();
    assert!(
        failures.is_empty() && unclaimed.is_empty(),
        "{} vector runs fail ({unexpected} without a known bug), {} unclaimed backend \
         connections; the report above says which and why",
        failures.len(),
        unclaimed.len()
    );
}

/// One (vector, relay) that failed.
struct Failure {
    vector: usize,
    relay: &'static str,
    why: String,
    detail: String,
}

/// The failures, grouped by known bug (one example each with what the backend and the
/// client received), then the unexpected ones in full, then stale bug marks.
fn report(
    vectors: &[Vector],
    kinds: &[Kind],
    verdicts: &[Vec<Option<Verdict>>],
    failures: &[Failure],
    unclaimed: &[String],
) -> String {
    let mut r = String::new();
    if failures.is_empty() && unclaimed.is_empty() {
        let _ = writeln!(r, "# no failures");
    }
    let mut bugs: Vec<&'static str> = Vec::new();
    for f in failures {
        if let Some(b) = vectors[f.vector].bug {
            if !bugs.contains(&b) {
                bugs.push(b);
            }
        }
    }
    let failing = |pred: &dyn Fn(&Failure) -> bool| -> Vec<&Failure> {
        failures.iter().filter(|f| pred(f)).collect()
    };
    let vector_lines = |fs: &[&Failure]| -> String {
        let mut out = String::new();
        let mut seen: Vec<(usize, &str)> = Vec::new();
        for f in fs {
            if seen.contains(&(f.vector, f.why.as_str())) {
                continue;
            }
            seen.push((f.vector, f.why.as_str()));
            let relays: Vec<&str> = fs
                .iter()
                .filter(|g| g.vector == f.vector && g.why == f.why)
                .map(|g| g.relay)
                .collect();
            let v = &vectors[f.vector];
            let _ = writeln!(
                out,
                "   #{:03} {} / {} [{}]: {}",
                f.vector,
                v.class.name(),
                v.name,
                relays.join(", "),
                f.why
            );
        }
        out
    };
    if !bugs.is_empty() {
        let _ = writeln!(
            r,
            "# known relayd-run bugs (the test fails until each is fixed): {}",
            bugs.len()
        );
    }
    for (n, bug) in bugs.iter().enumerate() {
        let fs = failing(&|f| vectors[f.vector].bug == Some(*bug));
        let _ = writeln!(r, "## bug {}: {bug}", n + 1);
        r.push_str(&vector_lines(&fs));
        if let Some(f) = fs.first() {
            let _ = writeln!(r, "   e.g. [{}] #{:03}: {}", f.relay, f.vector, f.detail);
        }
    }
    let unexpected = failing(&|f| vectors[f.vector].bug.is_none());
    if !unexpected.is_empty() || !unclaimed.is_empty() {
        let _ = writeln!(
            r,
            "# unexpected failures: {}",
            unexpected.len() + unclaimed.len()
        );
        for f in unexpected {
            let v = &vectors[f.vector];
            let _ = writeln!(
                r,
                "   [{}] #{:03} {} / {}: {}\n      {}",
                f.relay,
                f.vector,
                v.class.name(),
                v.name,
                f.why,
                f.detail
            );
        }
        for u in unclaimed {
            let _ = writeln!(r, "   {u}");
        }
    }
    // Bug marks on vectors that pass on every relay that ran: the bug is fixed.
    for (i, v) in vectors.iter().enumerate() {
        let ran = kinds
            .iter()
            .enumerate()
            .filter(|(k, _)| verdicts[*k][i].is_some())
            .count();
        if v.bug.is_some() && ran > 0 && !failures.iter().any(|f| f.vector == i) {
            let _ = writeln!(
                r,
                "# #{i:03} {} / {} is marked as a known bug but passes: remove the mark",
                v.class.name(),
                v.name
            );
        }
    }
    r
}
