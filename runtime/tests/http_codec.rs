//! The HTTP/1.x codec against relayd's relay_http.c (1.104): every rejection with its close
//! message and status, split and pipelined input, body framing, header order on output, and
//! the chunked re-framing, plus properties over arbitrary bytes.

#![allow(
    clippy::panic,
    reason = "a test that meets an unexpected parse should fail loudly"
)]

use proptest::prelude::*;
use relayd_run::http::{
    needs_connection_close, parse_request_head, parse_response_head, reply, request_body,
    response_body, websocket, write_head, write_head_verbatim, Body, Carry, ChunkError,
    ChunkedDecoder, Framing, HeadReader, HttpError, Method, Parsed, Reply, CHUNK_LINE_MAX,
};
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::Direction;

const LIMIT: usize = 8192;

fn req(s: &[u8]) -> Result<(Parsed, Head), HttpError> {
    let mut head = Head::default();
    parse_request_head(s, LIMIT, &mut head).map(|p| (p, head))
}

fn req_err(s: &str) -> HttpError {
    match req(s.as_bytes()) {
        Err(e) => e,
        Ok(p) => panic!("{s:?} parsed: {p:?}"),
    }
}

fn res_with(s: &[u8], m: Option<Method>, carry: Carry) -> Result<(Parsed, Head), HttpError> {
    let mut head = Head::default();
    parse_response_head(s, LIMIT, m, carry, &mut head).map(|p| (p, head))
}

fn res_err(s: &str) -> HttpError {
    match res_with(s.as_bytes(), Some(Method::Get), Carry::Header) {
        Err(e) => e,
        Ok(p) => panic!("{s:?} parsed: {p:?}"),
    }
}

fn complete(s: &str) -> (usize, Head) {
    match req(s.as_bytes()) {
        Ok((Parsed::Complete { head_len, .. }, head)) => (head_len, head),
        other => panic!("{s:?}: {other:?}"),
    }
}

fn complete_res(s: &str, m: Option<Method>) -> Head {
    match res_with(s.as_bytes(), m, Carry::Header) {
        Ok((Parsed::Complete { .. }, head)) => head,
        other => panic!("{s:?}: {other:?}"),
    }
}

fn h(headers: &Head) -> Vec<(String, String)> {
    headers
        .headers
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Parsing valid heads

#[test]
fn request_fields() {
    let s =
        "POST /a/b?x=1?y HTTP/1.0\r\nHost: \t foo.bar \r\nX-A:b\r\nx-a:  c\r\n: empty\r\n\r\nBODY";
    let (len, head) = complete(s);
    assert_eq!(len, s.len() - 4);
    assert_eq!(head.direction, Some(Direction::Request));
    assert_eq!(head.method, b"POST");
    assert_eq!(head.path, b"/a/b");
    assert_eq!(head.query.as_deref(), Some(&b"x=1?y"[..]));
    assert_eq!(head.minor, 0);
    // Leading blanks go, trailing ones stay; an empty name is a valid token string.
    assert_eq!(
        h(&head),
        pairs(&[
            ("Host", "foo.bar "),
            ("X-A", "b"),
            ("x-a", "c"),
            ("", "empty")
        ])
    );
}

#[test]
fn bare_lf_lines_and_lone_cr() {
    let (len, head) = complete("GET / HTTP/1.1\nA: b c\n\n");
    assert_eq!(len, 23);
    assert_eq!(h(&head), pairs(&[("A", "b c")]));
    // relayd keeps a CR that does not end its line; it is refused here, wherever it is.
    for s in [
        "GET / HTTP/1.1\nA: b\rc\n\n",
        "GET / HTTP/1.1\r\nA: b\r\r\n\r\n",
        "GET / HTTP/1.1\rHost: a\r\n\r\n",
        "GET /a\rb HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nA: b\r\nTransfer-Encoding:\rchunked\r\n\r\n",
    ] {
        is(req_err(s), "malformed", 400);
    }
    is(
        res_err("HTTP/1.1 200 OK\r\nX: a\rSet-Cookie: b\r\n\r\n"),
        "Bad Gateway",
        502,
    );
    is(res_err("HTTP/1.1 200 OK\rX: a\r\n\r\n"), "Bad Gateway", 502);
    // The version is forwarded verbatim, and only these two get that far.
    for (v, minor) in [("HTTP/1.0", 0), ("HTTP/1.1", 1)] {
        let s = format!("GET / {v}\r\n\r\n");
        let (parsed, head) = req(s.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let Parsed::Complete { version, .. } = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(version.of(s.as_bytes()), v.as_bytes());
        assert_eq!(head.minor, minor);
        let mut out = Vec::new();
        write_head_verbatim(&head, version.of(s.as_bytes()), &[], &mut out);
        assert_eq!(out, s.as_bytes());
    }
}

#[test]
fn request_versions_and_targets() {
    // relayd takes everything after the second space for the version.
    for v in [
        "HTTP/1.1 junk",
        "HTTP/1.1x",
        "HTTP/1",
        "HTTP/1.10",
        "http/1.1",
        "HTTP/1.1 ",
        "",
        "FOO",
    ] {
        is(req_err(&format!("GET / {v}\r\n\r\n")), "malformed", 400);
    }
    for v in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let e = req_err(&format!("GET / {v}\r\n\r\n"));
        is(e, "HTTP Version Not Supported", 505);
        assert_eq!(
            e.to_string(),
            "HTTP Version Not Supported (505 HTTP Version Not Supported)"
        );
    }
    // An empty target (relayd: the version is `/x HTTP/1.1`), a second one, blanks and
    // controls in it, and targets in no form of RFC 9112 3.2.
    for s in [
        "GET  /x HTTP/1.1\r\n\r\n",
        "GET /a /x HTTP/1.1\r\n\r\n",
        "GET /a\x0b/x HTTP/1.1\r\n\r\n",
        "GET /a\x7f HTTP/1.1\r\n\r\n",
        "GET /a\tb HTTP/1.1\r\n\r\n",
        "GET x HTTP/1.1\r\n\r\n",
        "GET x/y HTTP/1.1\r\n\r\n",
        "GET ftp://h/x HTTP/1.1\r\n\r\n",
        "GET http:/h/x HTTP/1.1\r\n\r\n",
        "GET http:// HTTP/1.1\r\n\r\n",
        "GET http://?q HTTP/1.1\r\n\r\n",
        "GET http://u@h/x HTTP/1.1\r\nHost: u@h\r\n\r\n",
    ] {
        is(req_err(s), "malformed", 400);
    }
    // obs-text is no control.
    let (_, head) = complete("GET /\u{e9} HTTP/1.1\r\n\r\n");
    assert_eq!(head.path, "/\u{e9}".as_bytes());
    let (_, head) = complete("OPTIONS * HTTP/1.1\r\n\r\n");
    assert_eq!(head.path, b"*");
    // CONNECT keeps its authority-form target.
    let (_, head) = complete("CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n");
    assert_eq!(head.path, b"h:443");
}

#[test]
fn absolute_form_is_filtered_and_forwarded_as_origin_form() {
    // The filters see path and query as for origin-form; the backend gets origin-form.
    let (_, head) = complete("GET http://h:80/a/b?x=1 HTTP/1.1\r\nHost: h:80\r\n\r\n");
    assert_eq!(head.path, b"/a/b");
    assert_eq!(head.query.as_deref(), Some(&b"x=1"[..]));
    assert_eq!(h(&head), pairs(&[("Host", "h:80")]));
    let mut out = Vec::new();
    write_head(&head, &mut out);
    assert_eq!(out, b"GET /a/b?x=1 HTTP/1.1\r\nHost: h:80\r\n\r\n");
    // Without Host, the authority becomes it; an empty path is `/`; schemes in any case.
    let (_, head) = complete("POST HTTPS://h?q HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        (head.path.as_slice(), head.query.as_deref()),
        (&b"/"[..], Some(&b"q"[..]))
    );
    assert_eq!(h(&head), pairs(&[("Content-Length", "0"), ("Host", "h")]));
    let (_, head) = complete("GET http://h HTTP/1.1\r\nhost: H\r\n\r\n");
    assert_eq!(
        (head.path.as_slice(), h(&head)),
        (&b"/"[..], pairs(&[("host", "H")]))
    );
    // The Host check stays relayd's.
    is(
        req_err("GET http://h/x HTTP/1.1\r\nHost: g\r\n\r\n"),
        "malformed host",
        400,
    );
}

#[test]
fn get_head_copy_move_lose_content_length() {
    for m in ["GET", "HEAD", "COPY", "MOVE"] {
        let (_, head) = complete(&format!(
            "{m} / HTTP/1.1\r\nContent-Length: 5\r\nA: 1\r\ncontent-length: 7\r\n\r\n"
        ));
        // Deleted when checked, so a second one is no duplicate, and goes too.
        assert_eq!(h(&head), pairs(&[("A", "1")]), "{m}");
    }
    let (_, head) = complete("PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h(&head), pairs(&[("Content-Length", "5")]));
}

#[test]
fn response_fields() {
    let s = b"HTTP/1.1 200 All fine  \r\nServer: x\r\n\r\n";
    let (parsed, head) =
        res_with(s, Some(Method::Get), Carry::Header).unwrap_or_else(|e| panic!("{e}"));
    let Parsed::Complete {
        head_len,
        version,
        code,
    } = parsed
    else {
        panic!("{parsed:?}")
    };
    assert_eq!(head_len, s.len());
    assert_eq!(head.direction, Some(Direction::Response));
    assert_eq!(head.status, 200);
    assert_eq!(head.reason, b"All fine  ");
    assert_eq!(version.of(s), b"HTTP/1.1");
    assert_eq!(code.of(s), b"200");
    // An empty reason phrase is fine, a missing one is not.
    let head = complete_res("HTTP/1.0 404 \r\n\r\n", None);
    assert_eq!((head.status, head.minor, head.reason.len()), (404, 0, 0));
}

// ---------------------------------------------------------------------------------------
// Rejections: message and status as relay_abort_http gets them

#[track_caller]
fn is(e: HttpError, msg: &str, status: u16) {
    assert_eq!((e.msg, e.status), (msg, status), "{e}");
}

#[test]
fn start_line_rejections() {
    is(req_err("GET\r\n\r\n"), "malformed", 400);
    is(req_err("GET\r\n"), "malformed", 400);
    // Unknown method (exact case) and a missing version: strerror(errno), errno unset.
    is(req_err("FOO / HTTP/1.1\r\n"), "Undefined error: 0", 500);
    is(req_err("get / HTTP/1.1\r\n"), "Undefined error: 0", 500);
    is(req_err("GET /\r\n"), "Undefined error: 0", 500);
    // An empty first line: no method at all.
    is(req_err("\r\nGET / HTTP/1.1\r\n\r\n"), "no method", 406);
    is(res_err("\n"), "no method", 406);
    // Status lines.
    is(res_err("HTTP/1.1\r\n"), "malformed", 400);
    is(res_err("HTTP/1.1 200\r\n"), "Undefined error: 0", 500);
    is(res_err("HTTP/1.1 600 X\r\n"), "Result too large", 500);
    is(res_err("HTTP/1.1 99 X\r\n"), "Result too large", 500);
    is(res_err("HTTP/1.1 abc X\r\n"), "Invalid argument", 500);
    is(res_err("HTTP/1.1  200 X\r\n"), "Invalid argument", 500);
    // Where strtonum and relayd let them pass: the status line must be `HTTP/1.0` or
    // `HTTP/1.1`, SP, three digits (bytes a bodyless response left behind glue to it).
    for line in [
        "HTTP/1.1 +200 OK",
        "HTTP/1.1 0200 OK",
        "HTTP/1.1 \x0b200 OK",
        "HTTP/2 200 OK",
        "HTTP/1.2 200 OK",
        "http/1.1 200 OK",
        "helloHTTP/1.1 200 OK",
    ] {
        is(res_err(&format!("{line}\r\n\r\n")), "Bad Gateway", 502);
    }
}

#[test]
fn header_line_rejections() {
    let get = "GET / HTTP/1.1\r\n";
    is(req_err(&format!("{get}Bad Name: x\r\n")), "malformed", 400);
    is(req_err(&format!("{get}X(y): z\r\n")), "malformed", 400);
    is(req_err(&format!("{get}Host : z\r\n")), "malformed", 400);
    is(
        req_err(&format!("{get}no colon here\r\n")),
        "malformed",
        400,
    );
    is(req_err(&format!("{get}A: b\0c\r\n")), "malformed", 400);
    is(req_err("GET /\0 HTTP/1.1\r\n"), "malformed", 400);
    // Leading blank on the first header, and obs-fold anywhere.
    is(req_err(&format!("{get} A: b\r\n")), "malformed", 400);
    is(req_err(&format!("{get}A: b\r\n\tc\r\n")), "malformed", 400);
    is(req_err(&format!("{get}A: b\r\n c\r\n")), "malformed", 400);
    is(
        res_err("HTTP/1.1 200 OK\r\nA: b\r\n c\r\n"),
        "Bad Gateway",
        502,
    );
    is(res_err("HTTP/1.1 200 OK\r\n\tA: b\r\n"), "Bad Gateway", 502);
    is(res_err("HTTP/1.1 200 OK\r\nA b\r\n"), "malformed", 400);
}

#[test]
fn duplicate_and_host_rejections() {
    let get = "GET / HTTP/1.1\r\n";
    is(
        req_err(&format!("{get}Host: a\r\nX: 1\r\nhost: a\r\n")),
        "malformed header",
        400,
    );
    is(
        req_err("POST / HTTP/1.1\r\nContent-Length: 1\r\nCONTENT-LENGTH: 1\r\n"),
        "malformed header",
        400,
    );
    is(
        res_err("HTTP/1.1 200 OK\r\nHost: a\r\nHost: a\r\n"),
        "malformed header",
        400,
    );
    is(
        req_err("GET http://foo.bar/x HTTP/1.1\r\nHost: foo.baz\r\n\r\n"),
        "malformed host",
        400,
    );
    is(
        req_err("GET http://foo:8080/ HTTP/1.1\r\nHost: foo\r\n\r\n"),
        "malformed host",
        400,
    );
    // Case-insensitive, port included, the query is not part of the host.
    complete("GET http://FOO.bar:8080?q=1 HTTP/1.1\r\nHost: foo.BAR:8080\r\n\r\n");
    // Not a URL for parse_url: no check.
    complete("GET /a:/b HTTP/1.1\r\nHost: x\r\n\r\n");
}

#[test]
fn content_length_and_transfer_encoding_rejections() {
    let post = "POST / HTTP/1.1\r\n";
    for v in ["+5", "-1", "-0", "abc", "5 ", "", "0x10", "1.5"] {
        is(
            req_err(&format!("{post}Content-Length: {v}\r\n\r\n")),
            "invalid",
            500,
        );
    }
    is(
        req_err(&format!(
            "{post}Content-Length: 9223372036854775808\r\n\r\n"
        )),
        "too large",
        500,
    );
    // strtonum skips what " \t\r\n" did not (a vertical tab, a form feed, then a sign),
    // which relayd takes: digits only here.
    for v in ["\x0b-5", "\x0b+5", "\x0b5", "\x0c5", "5\x0b", "\x0c0"] {
        is(
            req_err(&format!("{post}Content-Length: {v}\r\n\r\n")),
            "invalid",
            500,
        );
    }
    is(
        res_err("HTTP/1.1 200 OK\r\nContent-Length: \x0b5\r\n\r\n"),
        "invalid",
        500,
    );
    // Leading blanks are the field's, not the value's.
    let (_, head) = complete(&format!("{post}Content-Length: \t 05\r\n\r\n"));
    assert_eq!(h(&head), pairs(&[("Content-Length", "05")]));
    complete(&format!(
        "{post}Content-Length: 9223372036854775807\r\n\r\n"
    ));
    for m in ["TRACE", "CONNECT"] {
        is(
            req_err(&format!("{m} / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")),
            "malformed",
            400,
        );
    }
    for v in ["gzip", "chunked, gzip", "chunked ", "identity"] {
        is(
            req_err(&format!("{post}Transfer-Encoding: {v}\r\n\r\n")),
            "malformed",
            400,
        );
    }
    is(
        res_err("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
        "malformed",
        400,
    );
    complete(&format!("{post}transfer-encoding: ChUnKeD\r\n\r\n"));
    // Chunked where a recipient may read no body: HTTP/1.0 (RFC 9112 6.1), TRACE, CONNECT.
    for s in [
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "TRACE / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "CONNECT h:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        is(req_err(s), "malformed", 400);
    }
    is(
        res_err("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
        "Bad Gateway",
        502,
    );
    // The same checks on a head the filters hold.
    let (_, mut head) = complete(&format!("{post}Transfer-Encoding: chunked\r\n\r\n"));
    head.minor = 0;
    assert_eq!(
        request_body(&head, Carry::Header),
        Err(HttpError::MALFORMED)
    );
}

#[test]
fn informational_and_no_content_responses() {
    for status in [100, 102, 204] {
        let s = format!("HTTP/1.1 {status} X\r\nContent-Length: 3\r\n\r\n");
        is(res_err(&s), "Bad Gateway", 502);
        complete_res(
            &format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n"),
            None,
        );
    }
    // A HEAD response's Content-Length is not parsed: toread keeps what the last message
    // left, so even `0` aborts on a fresh connection but not after a zero-length message.
    let s = b"HTTP/1.1 204 X\r\nContent-Length: 0\r\n\r\n";
    is(
        res_with(s, Some(Method::Head), Carry::Header)
            .err()
            .unwrap_or(HttpError::NO_METHOD),
        "Bad Gateway",
        502,
    );
    assert!(res_with(s, Some(Method::Head), Carry::Zero).is_ok());
    // ... nor checked: any value passes in a response to HEAD.
    complete_res(
        "HTTP/1.1 200 OK\r\nContent-Length: +x\r\n\r\n",
        Some(Method::Head),
    );
}

#[test]
fn headers_too_large() {
    // 14 + 2 + 4 = 20 bytes of lines without their ends.
    let s = b"GET / HTTP/1.1\r\nA:\r\nB: c\r\n\r\n";
    let mut head = Head::default();
    assert!(parse_request_head(s, 20, &mut head).is_ok());
    let e = parse_request_head(s, 19, &mut head).err();
    assert_eq!(e, Some(HttpError::TOO_LARGE));
    let e = e.unwrap_or(HttpError::NO_METHOD);
    is(e, "request headers too large", 413);
    assert_eq!(
        e.close_message(true),
        "request headers too large (413 Payload Too Large)"
    );
    assert_eq!(e.close_message(false), "request headers too large");
    // Known before the line ends: its length can only grow (a trailing CR may be its end).
    let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
    long.extend(std::iter::repeat_n(b'a', 20));
    // 14 for the request line, 23 so far for the unfinished one.
    assert_eq!(
        parse_request_head(&long, 37, &mut head),
        Ok(Parsed::Incomplete)
    );
    assert_eq!(
        parse_request_head(&long, 36, &mut head),
        Err(HttpError::TOO_LARGE)
    );
    long.push(b'\r');
    assert_eq!(
        parse_request_head(&long, 37, &mut head),
        Ok(Parsed::Incomplete)
    );
    long.push(b'b');
    assert_eq!(
        parse_request_head(&long, 37, &mut head),
        Err(HttpError::TOO_LARGE)
    );
    // Responses use the same message.
    let mut head = Head::default();
    let e = parse_response_head(b"HTTP/1.1 200 OK\r\n", 10, None, Carry::Header, &mut head);
    assert_eq!(e, Err(HttpError::TOO_LARGE));
}

#[test]
fn error_display_and_reasons() {
    assert_eq!(
        HttpError::MALFORMED.to_string(),
        "malformed (400 Bad Request)"
    );
    assert_eq!(
        HttpError::MALFORMED_HOST.to_string(),
        "malformed host (400 Bad Request)"
    );
    assert_eq!(
        HttpError::INVALID.to_string(),
        "invalid (500 Internal Server Error)"
    );
    assert_eq!(
        HttpError::BAD_GATEWAY.to_string(),
        "Bad Gateway (502 Bad Gateway)"
    );
    assert_eq!(
        HttpError::NO_METHOD.to_string(),
        "no method (406 Not Acceptable)"
    );
    assert_eq!(
        HttpError::WEBSOCKET_METHOD.to_string(),
        "Websocket Method Not Allowed (405 Method Not Allowed)"
    );
}

#[test]
fn checks_wait_for_the_next_line() {
    // relayd checks a header when the next line (or the empty line) arrives ...
    let s = "POST / HTTP/1.1\r\nContent-Length: +1\r\n";
    assert!(matches!(req(s.as_bytes()), Ok((Parsed::Incomplete, _))));
    assert!(matches!(
        req(format!("{s}X").as_bytes()),
        Ok((Parsed::Incomplete, _))
    ));
    // ... after that line's own length and NUL checks, before its colon check.
    is(req_err(&format!("{s}X\0\r\n")), "malformed", 400);
    is(req_err(&format!("{s}no colon\r\n")), "invalid", 500);
    is(req_err(&format!("{s}\r\n")), "invalid", 500);
}

// ---------------------------------------------------------------------------------------
// Split input, resumption, pipelining

const HEADS: [&str; 4] = [
    "GET /index.html?a=b HTTP/1.1\r\nHost: foo.bar\r\nUser-Agent: t\r\nAccept: */*\r\n\r\n",
    "POST /up HTTP/1.0\nContent-Length: 3\nX: \t y\n\n",
    "PUT http://h/x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    "OPTIONS * HTTP/1.1\r\n\r\n",
];

#[test]
fn every_split_point() {
    for s in HEADS {
        let b = s.as_bytes();
        let whole = req(b);
        assert!(matches!(whole, Ok((Parsed::Complete { .. }, _))), "{s:?}");
        for k in 0..b.len() {
            assert!(
                matches!(req(&b[..k]), Ok((Parsed::Incomplete, _))),
                "{s:?} at {k}"
            );
        }
        // Resuming on the growing buffer gives the same head.
        let mut reader = HeadReader::request(LIMIT);
        let mut head = Head::default();
        for k in 0..b.len() {
            assert_eq!(reader.read(&b[..k], &mut head), Ok(Parsed::Incomplete));
        }
        let last = reader.read(b, &mut head);
        assert_eq!(whole, last.map(|p| (p, head)));
    }
}

#[test]
fn pipelined_heads() {
    let first = HEADS[0];
    let second = "HEAD /2 HTTP/1.1\r\nHost: foo.bar\r\n\r\n";
    let buf = format!("{first}{second}GET");
    let (len, head) = complete(&buf);
    assert_eq!(len, first.len());
    assert_eq!(head.path, b"/index.html");
    let (len2, head2) = complete(&buf[len..]);
    assert_eq!(len2, second.len());
    assert_eq!(head2.method, b"HEAD");
    assert!(matches!(
        req(&buf.as_bytes()[len + len2..]),
        Ok((Parsed::Incomplete, _))
    ));
}

// ---------------------------------------------------------------------------------------
// Body framing

fn framing(s: &str, carry: Carry) -> Framing {
    let (_, head) = complete(s);
    request_body(&head, carry).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn res_framing(s: &str, m: Option<Method>, carry: Carry, ws: bool) -> Framing {
    let head = complete_res(s, m);
    response_body(m, &head, carry, ws).unwrap_or_else(|e| panic!("{s:?}: {e}"))
}

fn f(body: Body, drop_content_length: bool, next: Carry) -> Framing {
    Framing {
        body,
        drop_content_length,
        next,
    }
}

#[test]
fn request_framing() {
    use Body::*;
    use Carry::{Header, Zero};
    let r = |s: &str| format!("{s}\r\n\r\n");
    let g = framing(&r("GET / HTTP/1.1\r\nContent-Length: 10"), Header);
    assert_eq!(g, f(None, false, Zero));
    let p = framing(&r("POST / HTTP/1.1\r\nContent-Length: 10"), Header);
    assert_eq!(p, f(Length(10), false, Header));
    let p0 = framing(&r("POST / HTTP/1.1\r\nContent-Length: 0"), Header);
    assert_eq!(p0, f(None, false, Zero));
    // Without Content-Length or chunked there is no body, whatever came before (relayd:
    // until close on a fresh connection).
    for carry in [Header, Zero] {
        for m in ["POST", "PUT", "DELETE", "OPTIONS", "MKCALENDAR"] {
            assert_eq!(
                framing(&r(&format!("{m} / HTTP/1.1")), carry),
                f(None, false, Zero),
                "{m}"
            );
        }
    }
    // Chunked wins, also on GET, and the Content-Length it parsed goes.
    let c = framing(
        &r("PATCH / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked"),
        Header,
    );
    assert_eq!(c, f(Chunked, true, Header));
    let gc = framing(&r("GET / HTTP/1.1\r\nTransfer-Encoding: chunked"), Zero);
    assert_eq!(gc, f(Chunked, false, Header));
    // CONNECT has no body: the tunnel waits for a 2xx (relayd streams at once).
    assert_eq!(
        framing(&r("CONNECT h:443 HTTP/1.1"), Zero),
        f(None, false, Header)
    );
    assert_eq!(
        framing(&r("TRACE / HTTP/1.1"), Zero),
        f(None, false, Header)
    );
}

#[test]
fn response_framing() {
    use Body::*;
    use Carry::{Header, Zero};
    let get = Some(Method::Get);
    let cl = "HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n";
    assert_eq!(
        res_framing(cl, get, Header, false),
        f(Length(7), false, Header)
    );
    let none = "HTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(
        res_framing(none, get, Header, false),
        f(UntilClose, false, Header)
    );
    assert_eq!(res_framing(none, get, Zero, false), f(None, false, Zero));
    // Headers only: HEAD, 1xx, 204, 304, even if chunked.
    let te = "HTTP/1.1 304 NM\r\nTransfer-Encoding: chunked\r\nContent-Length: 9\r\n\r\n";
    assert_eq!(res_framing(te, get, Header, false), f(None, true, Zero));
    assert_eq!(
        res_framing(cl, Some(Method::Head), Header, false),
        f(None, false, Zero)
    );
    let cont = "HTTP/1.1 100 Continue\r\n\r\n";
    assert_eq!(
        res_framing(cont, Option::None, Header, false),
        f(None, false, Zero)
    );
    let te200 = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        res_framing(te200, Option::None, Zero, false),
        f(Chunked, false, Header)
    );
    // An accepted websocket upgrade streams and gets no Connection: close.
    let ws = "HTTP/1.1 101 SP\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let head = complete_res(ws, get);
    assert_eq!(websocket(&head, true), Ok(true));
    assert_eq!(
        websocket(&head, false),
        Err(HttpError::BAD_WEBSOCKET_GATEWAY)
    );
    let fr = res_framing(ws, get, Header, true);
    assert_eq!(fr, f(UntilClose, false, Header));
    assert!(!needs_connection_close(&head, &fr, true));
    // A status relayd would not have parsed.
    let mut bad = head.clone();
    bad.status = 600;
    assert_eq!(
        response_body(get, &bad, Header, false),
        Err(HttpError::STATUS_RANGE)
    );
}

#[test]
fn websocket_requests() {
    let mk = |m: &str, extra: &str| complete(&format!("{m} / HTTP/1.1\r\n{extra}\r\n")).1;
    let ok = mk(
        "GET",
        "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n",
    );
    // Asks for the upgrade a 101 may then accept.
    assert_eq!(websocket(&ok, true), Ok(true));
    assert_eq!(websocket(&ok, false), Err(HttpError::WEBSOCKET_FORBIDDEN));
    let no_conn = mk("GET", "Upgrade: websocket\r\n");
    assert_eq!(
        websocket(&no_conn, true),
        Err(HttpError::BAD_WEBSOCKET_REQUEST)
    );
    let post = mk("POST", "Upgrade: websocket\r\nConnection: upgrade\r\n");
    assert_eq!(websocket(&post, true), Err(HttpError::WEBSOCKET_METHOD));
    assert_eq!(websocket(&mk("GET", ""), false), Ok(false));
}

#[test]
fn replies_interim_final_and_tunnels() {
    let get = Some(Method::Get);
    let connect = Some(Method::Connect);
    let r = |s: &str| complete_res(s, get);
    let ws = r("HTTP/1.1 101 SP\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    // A websocket 101 opens the tunnel only for a request that asked for it.
    assert_eq!(reply(get, true, &ws, true), Ok(Reply::Tunnel));
    for (asked, on) in [(false, true), (true, false), (false, false)] {
        assert_eq!(
            reply(get, asked, &ws, on),
            Err(HttpError::BAD_WEBSOCKET_GATEWAY),
            "asked {asked}, websockets {on}"
        );
    }
    let h2c = r("HTTP/1.1 101 SP\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
    assert_eq!(
        reply(get, true, &h2c, true),
        Err(HttpError::BAD_WEBSOCKET_GATEWAY)
    );
    // Other 1xx are interim, whatever the request.
    for s in [100, 102, 103, 199] {
        let head = r(&format!("HTTP/1.1 {s} X\r\n\r\n"));
        assert_eq!(reply(get, false, &head, true), Ok(Reply::Interim), "{s}");
        assert_eq!(
            reply(connect, false, &head, true),
            Ok(Reply::Interim),
            "{s}"
        );
    }
    // CONNECT tunnels on a 2xx only; a refusal is an ordinary final response.
    let ok = r("HTTP/1.1 200 Connection Established\r\n\r\n");
    assert_eq!(reply(connect, false, &ok, false), Ok(Reply::Tunnel));
    assert_eq!(reply(get, false, &ok, false), Ok(Reply::Final));
    let no = r("HTTP/1.1 405 No\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(reply(connect, false, &no, false), Ok(Reply::Final));
    assert_eq!(reply(None, false, &no, false), Ok(Reply::Final));
}

#[test]
fn connection_close_insertion() {
    let until = f(Body::UntilClose, false, Carry::Header);
    let mk = |conn: &str| complete(&format!("POST / HTTP/1.1\r\n{conn}\r\n")).1;
    assert!(needs_connection_close(&mk(""), &until, false));
    assert!(needs_connection_close(
        &mk("Connection: keep-alive\r\n"),
        &until,
        false
    ));
    assert!(!needs_connection_close(
        &mk("Connection: keep-alive, Close\r\n"),
        &until,
        false
    ));
    // kv_find_value compares each word by its own length: prefixes and empty words match.
    assert!(!needs_connection_close(
        &mk("Connection: clo\r\n"),
        &until,
        false
    ));
    assert!(!needs_connection_close(
        &mk("Connection: upgrade,\r\n"),
        &until,
        false
    ));
    // Only the first Connection header counts.
    let two = mk("Connection: keep-alive\r\nConnection: close\r\n");
    assert!(needs_connection_close(&two, &until, false));
    let len = f(Body::Length(1), false, Carry::Header);
    assert!(!needs_connection_close(&mk(""), &len, false));
}

// ---------------------------------------------------------------------------------------
// Writing heads

#[test]
fn write_sorted_headers() {
    let (_, mut head) = complete(
        "GET /p?q HTTP/1.1\r\nHost: h\r\nx-b: 1\r\nAccept: a\r\nX-B: 2\r\nX_a: u\r\nx-a: 3\r\nContent-Length: 9\r\n\r\n",
    );
    head.headers
        .push((b"Connection".to_vec(), b"close".to_vec()));
    let mut out = Vec::new();
    write_head(&head, &mut out);
    let want = "GET /p?q HTTP/1.1\r\nAccept: a\r\nConnection: close\r\nHost: h\r\nx-a: 3\r\nx-b: 1\r\nx-b: 2\r\nX_a: u\r\n\r\n";
    assert_eq!(String::from_utf8_lossy(&out), want);
    // An empty query keeps its `?`; the minor version is what was parsed.
    let (_, head) = complete("OPTIONS /o? HTTP/1.0\r\n\r\n");
    out.clear();
    write_head(&head, &mut out);
    assert_eq!(out, b"OPTIONS /o? HTTP/1.0\r\n\r\n");
}

#[test]
fn write_response() {
    let s = b"HTTP/1.0 200 Fine\r\nB: 1\r\nA: 2\r\n\r\n";
    let (parsed, head) = res_with(s, None, Carry::Header).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    write_head(&head, &mut out);
    assert_eq!(out, b"HTTP/1.0 200 Fine\r\nA: 2\r\nB: 1\r\n\r\n");
    let Parsed::Complete { version, code, .. } = parsed else {
        panic!("{parsed:?}")
    };
    out.clear();
    write_head_verbatim(&head, version.of(s), code.of(s), &mut out);
    assert_eq!(out, b"HTTP/1.0 200 Fine\r\nA: 2\r\nB: 1\r\n\r\n");
}

// ---------------------------------------------------------------------------------------
// Chunked bodies

/// Feeds `input` in pieces cut at `cuts`, keeping unconsumed bytes as a relay does.
fn feed_pieces(input: &[u8], cuts: &[usize]) -> (Result<(), ChunkError>, Vec<u8>, Option<usize>) {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut used = 0;
    let mut last = 0;
    let mut bounds: Vec<usize> = cuts.iter().copied().filter(|&c| c <= input.len()).collect();
    bounds.sort_unstable();
    bounds.push(input.len());
    for b in bounds {
        pending.extend_from_slice(&input[last..b.max(last)]);
        last = b.max(last);
        match dec.feed(&pending, &mut out) {
            Err(e) => return (Err(e), out, None),
            Ok(fed) => {
                pending.drain(..fed.consumed);
                used += fed.consumed;
                if fed.done {
                    assert!(dec.is_done());
                    return (Ok(()), out, Some(used));
                }
            }
        }
    }
    (Ok(()), out, None)
}

fn decode(input: &[u8]) -> (Result<(), ChunkError>, Vec<u8>, Option<usize>) {
    feed_pieces(input, &[])
}

#[test]
fn chunked_valid_bodies_at_every_split() {
    let cases: [(&[u8], &[u8]); 5] = [
        (
            b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
            b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n",
        ),
        // LF-only lines, empty lines before a size, garbage where the data's CRLF belongs.
        (b"\r\n\n3\nabcXYZ\r\n0\n\n", b"3\r\nabc\r\n0\r\n\r\n"),
        // Trailers pass, re-framed with CRLF.
        (b"Ff0\r\n", b"Ff0\r\n"),
        (
            b"1\r\nx\r\n0\r\nA: b\nC: d\r\n\r\n",
            b"1\r\nx\r\n0\r\nA: b\r\nC: d\r\n\r\n",
        ),
        // Leading zeros are no overflow.
        (
            b"0a\r\n0123456789\r\n00000000000000000\r\n\r\n",
            b"0a\r\n0123456789\r\n00000000000000000\r\n\r\n",
        ),
    ];
    for (input, want) in cases {
        let whole = decode(input);
        assert_eq!(whole.0, Ok(()), "{input:?}");
        if input.starts_with(b"Ff0") {
            assert_eq!((whole.1.as_slice(), whole.2), (want, None));
            continue;
        }
        assert_eq!(whole.1, want, "{:?}", String::from_utf8_lossy(input));
        assert_eq!(whole.2, Some(input.len()));
        for k in 0..=input.len() {
            assert_eq!(feed_pieces(input, &[k]), whole, "{input:?} split at {k}");
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(feed_pieces(input, &every), whole, "{input:?} byte by byte");
    }
}

#[test]
fn chunked_done_leaves_the_next_message() {
    let input = b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    let (r, out, used) = decode(input);
    assert_eq!(r, Ok(()));
    assert_eq!(out, b"2\r\nhi\r\n0\r\n\r\n");
    assert_eq!(used, Some(12));
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let fed = dec.feed(input, &mut out);
    assert_eq!(fed.map(|f| (f.consumed, f.done)), Ok((12, true)));
    assert_eq!(dec.step(b"more"), Ok(None));
}

#[test]
fn chunked_invalid_sizes() {
    for bad in [
        "0x4",
        "0X4",
        "+3",
        "-0",
        "foo",
        "dead beef",
        "1;ext=1",
        "1 ",
        "",
        "g",
        "-",
        " -1",
        "8000000000000000",
        "FFFFFFFFFFFFFFFFF",
        "1\r",
        // strtoll skips blanks, and a sign or `0x` after them; relayd takes those.
        " 5",
        "\t5",
        "\x0b5",
        "\x0c5",
        " +5",
        " 0x5",
        " -0",
        "\r5",
    ] {
        if bad.is_empty() {
            continue; // an empty line is skipped, not invalid
        }
        let input = format!("{bad}\r\n");
        let (r, out, _) = decode(input.as_bytes());
        assert_eq!(r, Err(ChunkError::InvalidSize), "{bad:?}");
        assert!(out.is_empty(), "{bad:?} wrote {out:?}");
        assert_eq!(ChunkError::InvalidSize.to_string(), "invalid chunk size");
    }
    // After a valid chunk: the first chunk is forwarded, then the close.
    let (r, out, _) = decode(b"4\r\n123\n\nXXX\n3\r\n");
    assert_eq!(r, Err(ChunkError::InvalidSize));
    assert_eq!(out, b"4\r\n123\n\r\n");
    // Sizes that pass strtoll's own rules.
    for ok in ["7fffffffffffffff", "Ff0", "000000000000000000005"] {
        let (r, out, _) = decode(format!("{ok}\r\n").as_bytes());
        assert_eq!(r, Ok(()), "{ok:?}");
        assert_eq!(out, format!("{ok}\r\n").as_bytes());
    }
    // A NUL ends the line for strtoll and for the `%s` that re-emits it.
    let (r, out, _) = decode(b"5\0junk\r\n");
    assert_eq!((r, out), (Ok(()), b"5\r\n".to_vec()));
}

#[test]
fn chunked_trailers_are_field_lines() {
    for bad in [
        &b"GET /x HTTP/1.1"[..],
        b"foo",
        b": x",
        b"X : y",
        b"X\tY: z",
        b" X: y",
        b"\tX: y",
        b"X: a\rb",
        b"X: a\r",
        b"X: a\0b",
        b"X\0: y",
        b"X(Y): z",
    ] {
        let input = [b"1\r\nx\r\n0\r\nA: b\r\n", bad, b"\r\n\r\n"].concat();
        let (r, out, _) = decode(&input);
        assert_eq!(
            r,
            Err(ChunkError::Trailer),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        // Nothing of the bad line is written (the good one before it is).
        assert_eq!(out, b"1\r\nx\r\n0\r\nA: b\r\n");
        for k in 0..=input.len() {
            assert_eq!(feed_pieces(&input, &[k]).0, Err(ChunkError::Trailer));
        }
    }
    assert_eq!(ChunkError::Trailer.to_string(), "malformed trailer");
    // What passes: token names, any value, a LF-only end.
    let input = b"0\r\nX-A:\r\nb!#$%&'*+-.^_`|~: v \xe9\x01\nC: d\r\n\r\n";
    let (r, out, used) = decode(input);
    assert_eq!((r, used), (Ok(()), Some(input.len())));
    assert_eq!(
        out,
        b"0\r\nX-A:\r\nb!#$%&'*+-.^_`|~: v \xe9\x01\r\nC: d\r\n\r\n"
    );
    // All trailer lines share the line limit: 8 bytes used, 2 left.
    let mut dec = ChunkedDecoder::with_line_limit(10);
    let mut out = Vec::new();
    assert_eq!(
        dec.feed(b"0\r\nA: 1\r\nB: 2\r\nC:", &mut out),
        Ok(relayd_run::http::Fed {
            consumed: 15,
            done: false
        })
    );
    assert_eq!(dec.feed(b"C: ", &mut out), Err(ChunkError::LineTooLong));
    let mut dec = ChunkedDecoder::with_line_limit(10);
    assert_eq!(
        dec.feed(b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n", &mut out),
        Err(ChunkError::LineTooLong)
    );
}

#[test]
fn chunked_line_limit() {
    let mut long = b"1;".to_vec();
    long.extend(std::iter::repeat_n(b'x', 65536));
    let (r, out, _) = decode(&long);
    assert_eq!(r, Err(ChunkError::LineTooLong));
    assert!(out.is_empty());
    assert_eq!(ChunkError::LineTooLong.to_string(), "chunk size too long");
    // The same whether or not the LF came, and however the bytes arrived.
    long.extend_from_slice(b"\r\n");
    assert_eq!(decode(&long).0, Err(ChunkError::LineTooLong));
    assert_eq!(
        feed_pieces(&long, &[3, 1000, 40000]).0,
        Err(ChunkError::LineTooLong)
    );
    let mut at_limit = vec![b'0'; CHUNK_LINE_MAX];
    at_limit.extend_from_slice(b"\r\n");
    assert_eq!(decode(&at_limit).0, Ok(()));
    let mut dec = ChunkedDecoder::with_line_limit(4);
    assert_eq!(dec.step(b"00001"), Err(ChunkError::LineTooLong));
    let mut dec = ChunkedDecoder::with_line_limit(4);
    assert_eq!(dec.step(b"0001\r"), Ok(None));
}

// ---------------------------------------------------------------------------------------
// Properties

fn all_results(buf: &[u8]) -> [Result<(Parsed, Head), HttpError>; 3] {
    [
        req(buf),
        res_with(buf, Some(Method::Head), Carry::Header),
        res_with(buf, None, Carry::Zero),
    ]
}

fn noise() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..6)
}

/// Mostly a plausible start line, then header-like lines, blank lines and noise.
fn http_ish() -> impl Strategy<Value = Vec<u8>> {
    let start = prop_oneof![
        3 => Just(b"GET / HTTP/1.1\r\n".to_vec()),
        2 => Just(b"POST http://a/x?y HTTP/1.0\r\n".to_vec()),
        1 => Just(b"CONNECT h:1 HTTP/1.1\n".to_vec()),
        3 => Just(b"HTTP/1.1 200 OK\r\n".to_vec()),
        1 => Just(b"HTTP/1.0 204 \r\n".to_vec()),
        2 => noise(),
    ];
    let piece = prop_oneof![
        3 => Just(b"\r\n".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        2 => Just(b"Host: a\r\n".to_vec()),
        2 => Just(b"Content-Length: 12\r\n".to_vec()),
        1 => Just(b"Content-Length: 0\r\n".to_vec()),
        1 => Just(b"Content-Length: +1\r\n".to_vec()),
        2 => Just(b"Transfer-Encoding: chunked\r\n".to_vec()),
        1 => Just(b"Connection: close\r\n".to_vec()),
        2 => Just(b"X-A: b\r\n".to_vec()),
        1 => Just(b" folded\r\n".to_vec()),
        1 => Just(b" ".to_vec()),
        1 => Just(b":".to_vec()),
        1 => Just(b"\0".to_vec()),
        2 => noise(),
    ];
    (start, proptest::collection::vec(piece, 0..12))
        .prop_map(|(s, v)| [vec![s], v].concat().concat())
}

/// Chunk-size lines, data, line ends, trailers and noise.
fn chunk_ish() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        3 => (0u64..0x30).prop_map(|n| format!("{n:x}\r\n").into_bytes()),
        1 => Just(b"0\r\n".to_vec()),
        3 => proptest::collection::vec(any::<u8>(), 0..20),
        3 => Just(b"\r\n".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"T: v\r\n".to_vec()),
        1 => Just(b"0x4\r\n".to_vec()),
        1 => Just(b"1;e\r\n".to_vec()),
        1 => Just(b"\0".to_vec()),
        1 => Just(b" 5\r\n".to_vec()),
        1 => Just(b": x\r\n".to_vec()),
        1 => Just(b"X: a\rb\r\n".to_vec()),
        1 => Just(b" folded\r\n".to_vec()),
    ];
    proptest::collection::vec(piece, 0..16).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Nothing panics, and a complete head never claims bytes it was not given nor depends
    /// on what follows it.
    #[test]
    fn parsers_are_total_and_stay_in_buf(buf in http_ish(), tail in proptest::collection::vec(any::<u8>(), 0..16)) {
        for (i, r) in all_results(&buf).into_iter().enumerate() {
            if let Ok((Parsed::Complete { head_len, version, code }, head)) = &r {
                prop_assert!(*head_len <= buf.len());
                prop_assert!(version.end <= *head_len && code.end <= *head_len);
                let mut longer = buf.clone();
                longer.extend_from_slice(&tail);
                prop_assert_eq!(&all_results(&longer)[i], &r);
                let mut out = Vec::new();
                write_head(head, &mut out);
                let _ = request_body(head, Carry::Header);
                let _ = response_body(None, head, Carry::Zero, false);
                let _ = websocket(head, true);
            }
        }
    }

    /// A request head that parses holds nothing other parsers read differently: a known
    /// version, a target in one of RFC 9112's forms, no CR or NUL anywhere, no framing a
    /// recipient may skip.
    #[test]
    fn complete_request_heads_are_unambiguous(buf in http_ish()) {
        if let Ok((Parsed::Complete { head_len, version, .. }, head)) = req(&buf) {
            let v = version.of(&buf);
            prop_assert!(v == b"HTTP/1.0" || v == b"HTTP/1.1", "{:?}", v);
            prop_assert_eq!(head.minor, u8::from(v == b"HTTP/1.1"));
            let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(0);
            let start = buf.get(..line_end).unwrap_or(&[]);
            prop_assert!(start.iter().filter(|&&b| b == b' ').count() == 2);
            prop_assert!(head.path.first() == Some(&b'/') || head.path == b"*"
                || head.method == b"CONNECT", "{:?}", head.path);
            let text = buf.get(..head_len).unwrap_or(&[]);
            prop_assert!(!text.contains(&0));
            for (i, &b) in text.iter().enumerate() {
                if b == b'\r' {
                    prop_assert_eq!(text.get(i + 1), Some(&b'\n'), "bare CR at {}", i);
                }
            }
            for (n, v) in &head.headers {
                prop_assert!(!n.contains(&b'\r') && !v.contains(&b'\r'));
                prop_assert!(!n.contains(&0) && !v.contains(&0));
            }
            if let Ok(f) = request_body(&head, Carry::Header) {
                prop_assert!(f.body != Body::UntilClose);
                if f.body == Body::Chunked {
                    prop_assert_eq!(head.minor, 1);
                }
            }
        }
    }

    /// A prefix of a buffer is either still incomplete or already gives the whole buffer's
    /// answer, and reading it resumably in any pieces gives the same as reading it at once.
    #[test]
    fn prefixes_and_pieces_agree(buf in http_ish(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let whole = req(&buf);
        for k in 0..buf.len() {
            let part = req(&buf[..k]);
            let ok = matches!(part, Ok((Parsed::Incomplete, _))) || part == whole;
            prop_assert!(ok, "prefix {} gave {:?}, whole {:?}", k, part, whole);
        }
        let mut ends: Vec<usize> = cuts.iter().map(|c| c.index(buf.len() + 1)).collect();
        ends.sort_unstable();
        ends.push(buf.len());
        let mut reader = HeadReader::request(LIMIT);
        let mut head = Head::default();
        let mut last = Ok(Parsed::Incomplete);
        for e in ends {
            last = reader.read(&buf[..e], &mut head);
            if !matches!(last, Ok(Parsed::Incomplete)) {
                break;
            }
        }
        prop_assert_eq!(last.map(|p| (p, head)), whole);
    }

    /// The chunked decoder never panics, never consumes more than it was given, and its
    /// output does not depend on how the input was cut.
    #[test]
    fn chunked_is_total_and_split_invariant(input in chunk_ish(), cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6)) {
        let whole = decode(&input);
        if let Some(used) = whole.2 {
            prop_assert!(used <= input.len());
        }
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        prop_assert_eq!(feed_pieces(&input, &cuts), whole);
    }

    /// Valid chunked bodies pass with their data intact, whatever the cuts.
    #[test]
    fn chunked_valid_bodies(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 0..6),
                            trailers in proptest::collection::vec("[A-Za-z]{1,8}: [ -~]{0,10}", 0..3),
                            upper in any::<bool>(),
                            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let mut input = Vec::new();
        for c in &chunks {
            let size = if upper { format!("{:X}", c.len()) } else { format!("{:x}", c.len()) };
            input.extend_from_slice(size.as_bytes());
            input.extend_from_slice(b"\r\n");
            input.extend_from_slice(c);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"0\r\n");
        for t in &trailers {
            input.extend_from_slice(t.as_bytes());
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"\r\n");
        let cuts: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
        let (r, out, used) = feed_pieces(&input, &cuts);
        prop_assert_eq!(r, Ok(()));
        prop_assert_eq!(used, Some(input.len()));
        prop_assert_eq!(out, input);
    }
}
