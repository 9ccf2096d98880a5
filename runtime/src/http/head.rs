//! Reading a message head the way `relay_read_http` reads it: line by line as
//! `evbuffer_readln(EVBUFFER_EOL_CRLF)` returns them (LF or CRLF), rejecting as soon as a
//! complete line is bad, and checking each header when the next line (or the end of the
//! head) arrives, as relayd's deferred `last_header:` block does. Lines relayd takes and
//! other parsers read differently (a bare CR, odd start lines) are refused here as well.

use super::body::{Carry, Checks, Keep, Side};
use super::cstr::{header_name_valid, partial_len, readln, strtonum};
use super::method::{Class, Method};
use super::HttpError;
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::Direction;

/// A byte range of the buffer a head was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The bytes of `buf` this span covers (empty if `buf` is not the parsed buffer).
    pub fn of(self, buf: &[u8]) -> &[u8] {
        buf.get(self.start..self.end).unwrap_or(&[])
    }
}

/// What a parse found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed (nothing wrong so far).
    Incomplete,
    /// The head is complete and in the [`Head`]; it took `head_len` bytes, the empty line
    /// included, and the body or next message starts right after.
    ///
    /// `version` and `code` locate the start line's version and (responses) status code as
    /// sent: relayd forwards both verbatim, and [`Head`] only holds them normalised
    /// (`minor`, `status`), so [`write_head_verbatim`](super::write_head_verbatim) takes
    /// them back.
    Complete {
        head_len: usize,
        version: Span,
        code: Span,
    },
}

/// The start line, as spans of the buffer.
#[derive(Clone, Copy, Debug)]
struct Start {
    method: Option<Method>,
    /// Requests: the target up to the first `?` (`desc->http_path`), what the Host check
    /// compares an absolute-form target's host with.
    target: Span,
    /// Requests: the path the filters see and the backend gets; for an absolute-form
    /// target, the part after its authority (empty: `/`).
    path: Span,
    /// Requests: the authority of an absolute-form target.
    authority: Option<Span>,
    query: Option<Span>,
    version: Span,
    /// `HTTP/1.0` (else `HTTP/1.1`: no other version gets past the start line).
    http10: bool,
    code: Span,
    status: u16,
    reason: Span,
}

fn find(line: &[u8], byte: u8) -> Option<usize> {
    memchr::memchr(byte, line)
}

/// Where a header value starts: after the blanks relayd skips.
fn skip_blanks(value: &[u8]) -> usize {
    value
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .unwrap_or(value.len())
}

/// `relay_http_parse_startline`, request direction: `METHOD SP target SP version`, where
/// relayd takes the version to be everything after the second space and forwards it
/// verbatim, whatever it is.
///
/// relayd's refusals come first, with its statuses; then the ones it lacks, each a request
/// line other parsers read differently: an empty target or one with blanks or controls in
/// it (`GET  /x HTTP/1.1` is an empty target to relayd, `/x` to a parser that splits on runs
/// of blanks; `GET /a /b HTTP/1.1` has the version `/b HTTP/1.1` to relayd), and a version
/// other than `HTTP/1.0` or `HTTP/1.1`, which relayd frames as HTTP/1.1 while the backend may
/// not (RFC 9112 2.3, 3: 400 for a malformed line, 505 for a well-formed other version).
fn request_line(line: &[u8], at: usize) -> Result<Start, HttpError> {
    let sp = find(line, b' ').ok_or(HttpError::MALFORMED)?;
    let method = Method::from_bytes(line.get(..sp).unwrap_or(&[])).ok_or(HttpError::START_LINE)?;
    let rest = line.get(sp + 1..).unwrap_or(&[]);
    let sp2 = find(rest, b' ').ok_or(HttpError::START_LINE)?;
    let target_at = at + sp + 1;
    let target = rest.get(..sp2).unwrap_or(&[]);
    if target.is_empty() || target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(HttpError::MALFORMED);
    }
    let version = rest.get(sp2 + 1..).unwrap_or(&[]);
    let http10 = match version {
        b"HTTP/1.0" => true,
        b"HTTP/1.1" => false,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(HttpError::VERSION);
        }
        _ => return Err(HttpError::MALFORMED),
    };
    let (path_end, query) = match find(target, b'?') {
        Some(q) => (q, Some(Span::new(target_at + q + 1, target_at + sp2))),
        None => (sp2, None),
    };
    let whole = Span::new(target_at, target_at + path_end);
    let (path, authority) = if method == Method::Connect {
        (whole, None)
    } else {
        target_form(target.get(..path_end).unwrap_or(&[]), target_at)?
    };
    Ok(Start {
        method: Some(method),
        target: whole,
        path,
        authority,
        query,
        version: Span::new(target_at + sp2 + 1, at + line.len()),
        http10,
        code: Span::default(),
        status: 0,
        reason: Span::default(),
    })
}

/// The path of a request target without its query (at `at` in the buffer), and its
/// authority if it is in absolute-form.
///
/// relayd matches `path` rules against whatever the target is, so `GET http://h/x` is
/// tested as the path `http://h/x` (no `"/x*"` rule matches it) and forwarded as-is, and
/// the backend, which must accept absolute-form (RFC 9112 3.2.2), serves `/x`. Here the
/// filters see the path and query of an `http`/`https` absolute-form target as they would
/// for origin-form, and the backend gets it in origin-form (with the authority as `Host`
/// when there is none, RFC 9112 3.2.2). Anything but origin-form, asterisk-form or such an
/// absolute-form is refused (RFC 9112 3.2: 400), as is userinfo in the authority (RFC 9110
/// 4.2.4), both being targets other parsers map to paths of their own.
fn target_form(target: &[u8], at: usize) -> Result<(Span, Option<Span>), HttpError> {
    let whole = Span::new(at, at + target.len());
    if target.first() == Some(&b'/') || target == b"*" {
        return Ok((whole, None));
    }
    let colon = find(target, b':').ok_or(HttpError::MALFORMED)?;
    let scheme = target.get(..colon).unwrap_or(&[]);
    let rest = target.get(colon..).unwrap_or(&[]);
    let http = scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https");
    let Some(after) = rest.strip_prefix(b"://").filter(|_| http) else {
        return Err(HttpError::MALFORMED);
    };
    let host_at = colon + 3;
    let host_len = find(after, b'/').unwrap_or(after.len());
    let host = after.get(..host_len).unwrap_or(&[]);
    if host.is_empty() || find(host, b'@').is_some() {
        return Err(HttpError::MALFORMED);
    }
    let path_at = at + host_at + host_len;
    Ok((
        Span::new(path_at, whole.end),
        Some(Span::new(at + host_at, path_at)),
    ))
}

/// `relay_http_parse_startline`, response direction: `version SP code SP reason`; the code
/// must pass `strtonum(code, 100, 599)`, and a reason phrase (maybe empty) must follow.
///
/// relayd forwards the version and code verbatim once they pass that. Here the line must
/// also start with `HTTP/1.0` or `HTTP/1.1` and the code be three digits (RFC 9112 4), else
/// 502: bytes a bodyless response (HEAD, 204, 304) left behind would otherwise reach the
/// client glued to the next status line (`helloHTTP/1.1 200 OK`), which clients read as a
/// body or as another response than the relay did.
fn status_line(line: &[u8], at: usize) -> Result<Start, HttpError> {
    let sp = find(line, b' ').ok_or(HttpError::MALFORMED)?;
    let rest = line.get(sp + 1..).unwrap_or(&[]);
    let sp2 = find(rest, b' ').ok_or(HttpError::START_LINE)?;
    let code_at = at + sp + 1;
    let code = rest.get(..sp2).unwrap_or(&[]);
    let status = match strtonum(code, 100, 599) {
        Ok(n) => u16::try_from(n).map_err(|_| HttpError::STATUS_RANGE)?,
        Err("invalid") => return Err(HttpError::BAD_STATUS),
        Err(_) => return Err(HttpError::STATUS_RANGE),
    };
    let http10 = match line.get(..sp) {
        Some(b"HTTP/1.0") => true,
        Some(b"HTTP/1.1") => false,
        _ => return Err(HttpError::BAD_GATEWAY),
    };
    if code.len() != 3 || !code.iter().all(u8::is_ascii_digit) {
        return Err(HttpError::BAD_GATEWAY);
    }
    Ok(Start {
        method: None,
        target: Span::default(),
        path: Span::default(),
        authority: None,
        query: None,
        version: Span::new(at, at + sp),
        http10,
        code: Span::new(code_at, code_at + sp2),
        status,
        reason: Span::new(code_at + sp2 + 1, at + line.len()),
    })
}

/// An incremental head reader for one message: feed it the growing buffer that starts at
/// the message (nothing consumed in between); it only looks at bytes it has not judged yet,
/// so a head trickling in byte by byte costs linear time. Restart it (or make a new one)
/// per message; after an error it is spent (relayd has closed the session).
#[derive(Clone, Debug)]
pub struct HeadReader {
    dir: Direction,
    limit: usize,
    req: Option<Method>,
    carry: Carry,
    /// Bytes of complete lines judged so far.
    pos: usize,
    /// `buf[pos..scanned]` holds no LF.
    scanned: usize,
    /// `cre->line`.
    lines: usize,
    /// `cre->headerlen`: the judged lines' lengths without their line ends.
    headerlen: usize,
    start: Option<Start>,
    checks: Option<Checks>,
    /// The last header line, whose checks wait for the next line (`desc->http_lastheader`).
    pending: Option<(Span, Span)>,
    /// Whether `Host` / `Content-Length` are in relayd's header tree (both unique).
    host: bool,
    content_length: bool,
    end: Option<usize>,
    /// Every header line judged so far, as (name, value) spans: the head is built from
    /// them without reading the lines again. Its allocation outlives a restart.
    headers: Vec<(Span, Span)>,
}

impl HeadReader {
    /// A request head; `limit` is the protocol's `headerlen`.
    pub fn request(limit: usize) -> HeadReader {
        HeadReader::new(Direction::Request, limit, None, Carry::Header)
    }

    /// A response head answering a request with method `req` (`None`: relayd has no request
    /// queued, an unbalanced response); `carry` is this direction's [`Carry`].
    pub fn response(limit: usize, req: Option<Method>, carry: Carry) -> HeadReader {
        HeadReader::new(Direction::Response, limit, req, carry)
    }

    fn new(dir: Direction, limit: usize, req: Option<Method>, carry: Carry) -> HeadReader {
        HeadReader {
            dir,
            limit,
            req,
            carry,
            pos: 0,
            scanned: 0,
            lines: 0,
            headerlen: 0,
            start: None,
            checks: None,
            pending: None,
            host: false,
            content_length: false,
            end: None,
            headers: Vec::new(),
        }
    }

    /// Ready for the next request head, keeping the allocation.
    pub fn restart_request(&mut self, limit: usize) {
        self.restart(Direction::Request, limit, None, Carry::Header);
    }

    /// Ready for the next response head (see [`HeadReader::response`]), keeping the
    /// allocation.
    pub fn restart_response(&mut self, limit: usize, req: Option<Method>, carry: Carry) {
        self.restart(Direction::Response, limit, req, carry);
    }

    fn restart(&mut self, dir: Direction, limit: usize, req: Option<Method>, carry: Carry) {
        let mut headers = std::mem::take(&mut self.headers);
        headers.clear();
        *self = HeadReader {
            headers,
            ..HeadReader::new(dir, limit, req, carry)
        };
    }

    /// Judges the new bytes of `buf`; once the head is complete, fills `head` (cleared
    /// first; its contents are unspecified after `Incomplete` or an error).
    pub fn read(&mut self, buf: &[u8], head: &mut Head) -> Result<Parsed, HttpError> {
        if buf.len() < self.scanned.max(self.pos) {
            // Not the buffer we saw before: start over.
            self.restart(self.dir, self.limit, self.req, self.carry);
        }
        let end = match self.end {
            Some(end) => end,
            None => match self.scan(buf)? {
                Some(end) => end,
                None => return Ok(Parsed::Incomplete),
            },
        };
        self.end = Some(end);
        let start = self.start.ok_or(HttpError::NO_METHOD)?;
        self.fill(buf, end, &start, head);
        Ok(Parsed::Complete {
            head_len: end,
            version: start.version,
            code: start.code,
        })
    }

    /// The `for (;;)` loop of `relay_read_http` over the lines not judged yet.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, HttpError> {
        loop {
            let at = self.pos;
            let rest = buf.get(at..).unwrap_or(&[]);
            let from = self.scanned.max(at) - at;
            let Some((line, used)) = readln(rest, from) else {
                self.scanned = buf.len();
                // The line will count at least this much once its LF arrives; relayd's
                // 413 check on it is the first thing that would happen then.
                let partial = partial_len(rest);
                if partial > 0 && self.headerlen.saturating_add(partial) > self.limit {
                    return Err(HttpError::TOO_LARGE);
                }
                return Ok(None);
            };
            self.pos = at + used;
            self.scanned = self.pos;
            if line.is_empty() {
                if self.lines == 0 {
                    return Err(HttpError::NO_METHOD);
                }
                self.last_header(buf)?;
                return Ok(Some(self.pos));
            }
            self.headerlen = self.headerlen.saturating_add(line.len());
            if self.headerlen > self.limit {
                return Err(HttpError::TOO_LARGE);
            }
            if memchr::memchr(0, line).is_some() {
                return Err(HttpError::MALFORMED);
            }
            // relayd's evbuffer_readln keeps a CR that does not end a line, and forwards it;
            // a recipient that ends lines at a bare CR reads other fields than the relay did
            // (`X: a\rTransfer-Encoding: chunked`). RFC 9112 2.2 lets us refuse it.
            if memchr::memchr(b'\r', line).is_some() {
                return Err(match self.dir {
                    Direction::Request => HttpError::MALFORMED,
                    Direction::Response => HttpError::BAD_GATEWAY,
                });
            }
            self.lines += 1;
            if self.lines == 1 {
                let (start, side) = match self.dir {
                    Direction::Request => {
                        let start = request_line(line, at)?;
                        let method = start.method.ok_or(HttpError::START_LINE)?;
                        (start, Side::Request(method))
                    }
                    Direction::Response => {
                        let start = status_line(line, at)?;
                        let side = Side::Response {
                            status: start.status,
                            req: self.req,
                        };
                        (start, side)
                    }
                };
                self.start = Some(start);
                self.checks = Some(Checks::new(side, self.carry).http10(start.http10));
                continue;
            }
            // RFC 9112 5.2: obs-fold is refused, also on the first header line.
            if matches!(line.first(), Some(b' ' | b'\t')) {
                return Err(match self.dir {
                    Direction::Request => HttpError::MALFORMED,
                    Direction::Response => HttpError::BAD_GATEWAY,
                });
            }
            self.last_header(buf)?;
            let colon = find(line, b':').ok_or(HttpError::MALFORMED)?;
            let name = line.get(..colon).unwrap_or(&[]);
            let value = line.get(colon + 1..).unwrap_or(&[]);
            let blanks = skip_blanks(value);
            if !header_name_valid(name) {
                return Err(HttpError::MALFORMED);
            }
            let is_host = name.eq_ignore_ascii_case(b"Host");
            let is_cl = name.eq_ignore_ascii_case(b"Content-Length");
            if (is_host && self.host) || (is_cl && self.content_length) {
                return Err(HttpError::MALFORMED_HEADER);
            }
            self.host |= is_host;
            self.content_length |= is_cl;
            let header = (
                Span::new(at, at + colon),
                Span::new(at + colon + 1 + blanks, at + line.len()),
            );
            self.headers.push(header);
            self.pending = Some(header);
        }
    }

    /// The deferred `last_header:` block for the pending header.
    fn last_header(&mut self, buf: &[u8]) -> Result<(), HttpError> {
        let (Some((name, value)), Some(checks)) = (self.pending.take(), self.checks.as_mut())
        else {
            return Ok(());
        };
        let target = self.start.map_or(Span::default(), |s| s.target);
        if checks.header(name.of(buf), value.of(buf), target.of(buf))? == Keep::Strip {
            // kv_delete: the Content-Length leaves the tree, another may follow.
            self.content_length = false;
        }
        Ok(())
    }

    /// Builds the [`Head`] from the judged lines.
    fn fill(&self, buf: &[u8], end: usize, start: &Start, head: &mut Head) {
        head.clear();
        head.direction = Some(self.dir);
        head.minor = u8::from(!start.http10);
        let strip_cl = match start.method {
            Some(m) => {
                head.method.extend_from_slice(m.as_str().as_bytes());
                let path = start.path.of(buf);
                head.path
                    .extend_from_slice(if path.is_empty() { b"/" } else { path });
                head.query = start.query.map(|q| q.of(buf).to_vec());
                m.class() == Class::NoBody
            }
            None => {
                head.status = start.status;
                head.reason.extend_from_slice(start.reason.of(buf));
                false
            }
        };
        let _ = end;
        for &(name, value) in &self.headers {
            let name = name.of(buf);
            if strip_cl && name.eq_ignore_ascii_case(b"Content-Length") {
                continue;
            }
            head.push_header(name, value.of(buf));
        }
        if let Some(authority) = start.authority {
            if !self.host {
                head.push_header(b"Host", authority.of(buf));
            }
        }
    }
}

/// Parses a request head from the start of `buf` (see [`HeadReader`] to resume instead of
/// re-reading a growing buffer). `limit` is the protocol's `headerlen`: relayd counts the
/// lines' lengths without their line ends and refuses more with 413.
///
/// The Content-Length of GET, HEAD, COPY and MOVE is not in the [`Head`]: relayd deletes it
/// while reading, so neither the filters nor the backend see it.
pub fn parse_request_head(buf: &[u8], limit: usize, head: &mut Head) -> Result<Parsed, HttpError> {
    HeadReader::request(limit).read(buf, head)
}

/// Parses a response head answering a request with method `req` (`None` when relayd has
/// no request queued; note relayd dequeues one per response head, interim 1xx included),
/// `carry` being the response direction's [`Carry`].
///
/// relayd keeps the dequeued method in a local of `relay_read_http`, so a response head
/// split over several reads loses it after the first; we take the head as read at once.
pub fn parse_response_head(
    buf: &[u8],
    limit: usize,
    req: Option<Method>,
    carry: Carry,
    head: &mut Head,
) -> Result<Parsed, HttpError> {
    HeadReader::response(limit, req, carry).read(buf, head)
}
