//! How a message's body is framed, decided as `relay_read_http` decides it: the per-header
//! checks of its `last_header:` block, then the method switch once the head is complete.

use super::cstr::{strtonum, url_host, value_has};
use super::method::{Class, Method};
use super::HttpError;
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::Direction;

/// What follows a head on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// Nothing: the next bytes are the next head.
    None,
    /// Exactly this many bytes, forwarded verbatim (`relay_read_httpcontent`).
    Length(u64),
    /// A chunked body, re-framed line by line ([`ChunkedDecoder`](super::ChunkedDecoder)).
    Chunked,
    /// Everything until the connection closes (`TOREAD_UNLIMITED`): a response without
    /// Content-Length while `toread` was still `TOREAD_HTTP_HEADER`. Never a request (see
    /// [`request_body`]).
    UntilClose,
}

/// relayd's `cre->toread` as the previous message of the same direction left it: it is not
/// reset between messages, and a message without Content-Length inherits it.
///
/// A response without Content-Length reads until close when it is [`Carry::Header`] but has
/// no body at all when it is [`Carry::Zero`] (after a headers-only response on the same
/// connection). relayd does the same with a request of a body method (POST, …), which we
/// do not: see [`request_body`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Carry {
    /// `TOREAD_HTTP_HEADER`: a fresh connection, or after a Content-Length or chunked body.
    #[default]
    Header,
    /// `0`: after a message that set `toread = 0`.
    Zero,
}

const TOREAD_HEADER: i64 = -2;

impl Carry {
    fn toread(self) -> i64 {
        match self {
            Carry::Header => TOREAD_HEADER,
            Carry::Zero => 0,
        }
    }
}

/// The framing decision for one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    pub body: Body,
    /// Remove every `Content-Length` header before writing the head (after the filters
    /// ran): relayd deletes the one it parsed when the message is also chunked (RFC 9112
    /// 6.1), and the Content-Length of GET/HEAD/COPY/MOVE (the parser already dropped
    /// those from the [`Head`], so filters never see them).
    pub drop_content_length: bool,
    /// `toread` once this message's body is through: the next message's [`Carry`].
    pub next: Carry,
}

/// Which message the header checks run for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Request(Method),
    /// A response with its status and the method of the request it answers (`None` when
    /// the response is unbalanced).
    Response {
        status: u16,
        req: Option<Method>,
    },
}

/// What the `last_header:` block does to one header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    Yes,
    /// `kv_delete`: the Content-Length of GET, HEAD, COPY and MOVE.
    Strip,
}

/// The state relayd builds from the headers: `cre->toread`, `desc->http_chunked` and
/// whether `desc->http_cl` was set; and the message's version, which relayd ignores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checks {
    side: Side,
    toread: i64,
    chunked: bool,
    cl_parsed: bool,
    http10: bool,
}

impl Checks {
    pub(crate) fn new(side: Side, carry: Carry) -> Checks {
        Checks {
            side,
            toread: carry.toread(),
            chunked: false,
            cl_parsed: false,
            http10: false,
        }
    }

    /// The message is HTTP/1.0.
    pub(crate) fn http10(mut self, http10: bool) -> Checks {
        self.http10 = http10;
        self
    }

    /// `relay_read_http`'s `last_header:` block for one complete header; `target` is the
    /// request path (`desc->http_path`, the URL of an absolute-URI target).
    pub(crate) fn header(
        &mut self,
        name: &[u8],
        value: &[u8],
        target: &[u8],
    ) -> Result<Keep, HttpError> {
        let mut keep = Keep::Yes;
        if name.eq_ignore_ascii_case(b"Content-Length") {
            match self.side {
                Side::Request(m) => match m.class() {
                    Class::Stream | Class::Other => return Err(HttpError::MALFORMED),
                    Class::NoBody => keep = Keep::Strip,
                    Class::Body => self.content_length(value)?,
                },
                // A HEAD response's Content-Length is neither parsed nor checked.
                Side::Response {
                    req: Some(Method::Head),
                    ..
                } => {}
                Side::Response { .. } => self.content_length(value)?,
            }
            // RFC 7230 3.3.3, but servers send `Content-Length: 0`: only non-zero aborts.
            if let Side::Response { status, .. } = self.side {
                if ((100..200).contains(&status) || status == 204) && self.toread != 0 {
                    return Err(HttpError::BAD_GATEWAY);
                }
            }
        }
        if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
            if !value.eq_ignore_ascii_case(b"chunked") {
                return Err(HttpError::MALFORMED);
            }
            self.transfer_encoding()?;
            self.chunked = true;
        }
        if name.eq_ignore_ascii_case(b"Host") && matches!(self.side, Side::Request(_)) {
            // A response's `http_path` is its status code, never a URL.
            if let Some(host) = url_host(target) {
                if !host.eq_ignore_ascii_case(value) {
                    return Err(HttpError::MALFORMED_HOST);
                }
            }
        }
        Ok(keep)
    }

    /// Where relayd takes `Transfer-Encoding: chunked` and we do not. On HTTP/1.0 (relayd
    /// forwards it with the version as sent) an HTTP/1.0 recipient reads no chunked framing
    /// and takes the chunks for the next message: RFC 9112 6.1 makes that framing faulty.
    /// On TRACE and CONNECT, which have no content (RFC 9110 9.3.6, 9.3.8) and on which
    /// relayd already refuses Content-Length, a recipient may read no body either.
    fn transfer_encoding(&self) -> Result<(), HttpError> {
        match self.side {
            Side::Request(m)
                if self.http10 || matches!(m.class(), Class::Stream | Class::Other) =>
            {
                Err(HttpError::MALFORMED)
            }
            Side::Response { .. } if self.http10 => Err(HttpError::BAD_GATEWAY),
            _ => Ok(()),
        }
    }

    /// The `default:` case: `+`/`-` are refused before `strtonum`, whose errstr is the
    /// message.
    ///
    /// `strtonum` also skips the blanks the field parser left (`\v`, `\f`), so relayd
    /// reads `Content-Length: \v5` as 5 and forwards the value as sent, which parsers that
    /// take only 1*DIGIT (RFC 9110 8.6) read as no length or refuse: we take digits only.
    fn content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        if matches!(value.first(), Some(b'+' | b'-')) {
            return Err(HttpError::INVALID);
        }
        if !value.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::INVALID);
        }
        match strtonum(value, 0, i64::MAX) {
            Ok(n) => {
                self.toread = n;
                self.cl_parsed = true;
                Ok(())
            }
            Err("too small") => Err(HttpError::TOO_SMALL),
            Err("too large") => Err(HttpError::TOO_BIG),
            Err(_) => Err(HttpError::INVALID),
        }
    }

    /// The end of `relay_read_http` once the head is complete (after the filters): the
    /// headers-only rule for responses, the method switch, then chunked.
    pub(crate) fn framing(&self, upgrade: bool) -> Framing {
        let headers_only = match self.side {
            Side::Request(_) => false,
            Side::Response { status, req } => {
                !upgrade
                    && (req == Some(Method::Head)
                        || (100..200).contains(&status)
                        || status == 204
                        || status == 304)
            }
        };
        let drop_content_length = self.chunked && self.cl_parsed;
        if self.chunked && !headers_only {
            return Framing {
                body: Body::Chunked,
                drop_content_length,
                next: Carry::Header,
            };
        }
        let (body, next) = match self.side {
            Side::Request(m) => match m.class() {
                // relayd streams everything after a CONNECT head to the backend at once; an
                // origin server that refuses the tunnel then reads those bytes as requests
                // no filter saw. The head has no content (RFC 9110 9.3.6): the tunnel opens
                // when a 2xx answers it ([`reply`]).
                Class::Stream => (Body::None, Carry::Header),
                Class::NoBody => (Body::None, Carry::Zero),
                Class::Other => (Body::None, Carry::Header),
                Class::Body if self.cl_parsed => by_toread(self.toread),
                // relayd reads such a request, first on its connection, until close and
                // forwards the rest of the connection as its body; to the backend it has
                // no body (RFC 9112 6.3) and what follows is requests no filter saw. It has
                // none here either: the next bytes are the next request, read as such.
                Class::Body => (Body::None, Carry::Zero),
            },
            Side::Response { .. } if headers_only => (Body::None, Carry::Zero),
            Side::Response { .. } => by_toread(self.toread),
        };
        Framing {
            body,
            drop_content_length,
            next,
        }
    }
}

/// The body methods' and responses' branch: `toread > 0` reads content, `< 0` reads until
/// close, `0` means no body.
fn by_toread(toread: i64) -> (Body, Carry) {
    match toread {
        0 => (Body::None, Carry::Zero),
        n if n > 0 => (Body::Length(n.unsigned_abs()), Carry::Header),
        _ => (Body::UntilClose, Carry::Header),
    }
}

/// How relayd frames the body of a request head (call it on the head as parsed, before
/// the filters change it: relayd decides `toread` while reading the head).
///
/// GET/HEAD/COPY/MOVE never have a body; neither have CONNECT and TRACE; other methods use
/// Content-Length (the last one; a second one was already refused as `malformed header`),
/// else none (relayd: what `carry` says, see [`Carry`]; a request's framing no longer
/// depends on it). `Transfer-Encoding: chunked` wins over everything, also over
/// Content-Length (which is then dropped), except on HTTP/1.0, TRACE and CONNECT, where it
/// is refused.
pub fn request_body(head: &Head, carry: Carry) -> Result<Framing, HttpError> {
    let method = Method::from_bytes(&head.method).ok_or(HttpError::START_LINE)?;
    let mut checks = Checks::new(Side::Request(method), carry).http10(head.minor == 0);
    let mut strip = false;
    for (name, value) in &head.headers {
        strip |= checks.header(name, value, &head.path)? == Keep::Strip;
    }
    let mut framing = checks.framing(false);
    framing.drop_content_length |= strip;
    Ok(framing)
}

/// How relayd frames the body of a response head: `req` is the method of the request it
/// answers (`None` if unbalanced), `upgrade` what [`websocket`] said for this response.
///
/// Responses to HEAD and 1xx/204/304 responses end at their head (an accepted websocket
/// 101 streams instead); others use Content-Length, else chunked, else `carry`.
pub fn response_body(
    req: Option<Method>,
    head: &Head,
    carry: Carry,
    upgrade: bool,
) -> Result<Framing, HttpError> {
    let status = head.status;
    if !(100..=599).contains(&status) {
        return Err(HttpError::STATUS_RANGE);
    }
    let mut checks = Checks::new(Side::Response { status, req }, carry).http10(head.minor == 0);
    for (name, value) in &head.headers {
        checks.header(name, value, &[])?;
    }
    Ok(checks.framing(upgrade))
}

/// The first header named `name` (relayd's tree lookup finds the first one added).
fn first<'a>(head: &'a Head, name: &[u8]) -> Option<&'a [u8]> {
    head.get(name)
}

/// relayd's "HTTP 101 Switching Protocols" block, run on the head the filters left.
///
/// Requests with `Upgrade: websocket` are refused unless `websockets` is on, they say
/// `Connection: upgrade` and they are GETs; those are `Ok(true)`, asking for an upgrade a
/// 101 may accept ([`reply`]); other requests are `Ok(false)`. A 101 response is `Ok(true)`
/// when it is an accepted websocket upgrade: then both directions become raw streams (the
/// request side at once, `cre->dst->toread = TOREAD_UNLIMITED`) and no `Connection: close`
/// is added; any other 101 is refused.
pub fn websocket(head: &Head, websockets: bool) -> Result<bool, HttpError> {
    let upgrade = first(head, b"Connection").is_some_and(|v| value_has(v, b"upgrade"));
    let upgrade_ws = first(head, b"Upgrade").is_some_and(|v| value_has(v, b"websocket"));
    match head.direction.unwrap_or(Direction::Request) {
        Direction::Request if upgrade_ws => {
            if !websockets {
                Err(HttpError::WEBSOCKET_FORBIDDEN)
            } else if !upgrade {
                Err(HttpError::BAD_WEBSOCKET_REQUEST)
            } else if head.method != b"GET" {
                Err(HttpError::WEBSOCKET_METHOD)
            } else {
                Ok(true)
            }
        }
        Direction::Response if head.status == 101 => {
            if upgrade_ws && upgrade && websockets {
                Ok(true)
            } else {
                Err(HttpError::BAD_WEBSOCKET_GATEWAY)
            }
        }
        _ => Ok(false),
    }
}

/// What a response head is to the request it answers, once its filters ran ([`reply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A 1xx other than 101: forwarded, and the final response is still to come.
    Interim,
    /// The final response, framed by [`response_body`].
    Final,
    /// The connections stop speaking HTTP: an accepted websocket 101, or a 2xx to CONNECT.
    Tunnel,
}

/// Where the exchange goes after this response head: `req` is the method of the request
/// it answers, `asked` what [`websocket`] said for that request (as forwarded), `head` the
/// response as its filters left it.
///
/// relayd takes each response head, 1xx included, for the answer to the next queued
/// request, so after a `100 Continue` or `103 Early Hints` the final response is held until
/// the client sends another request, which then gets it; here a 1xx other than 101 is
/// forwarded and the final response read for the same request (RFC 9110 15.2). relayd opens
/// a websocket tunnel on any 101 naming websocket while `websockets` is on, also one the
/// request never asked for (RFC 9110 15.2.2 forbids it, the backend did not switch, and
/// the next request would reach it unfiltered); here that 101 is refused like relayd's
/// other bad 101s (`Bad Websocket Gateway`, 502). CONNECT opens the tunnel only on a 2xx
/// (RFC 9110 9.3.6); relayd streamed from the start.
pub fn reply(
    req: Option<Method>,
    asked: bool,
    head: &Head,
    websockets: bool,
) -> Result<Reply, HttpError> {
    match head.status {
        101 => {
            let upgrade = first(head, b"Connection").is_some_and(|v| value_has(v, b"upgrade"));
            let upgrade_ws = first(head, b"Upgrade").is_some_and(|v| value_has(v, b"websocket"));
            if upgrade && upgrade_ws && websockets && asked {
                Ok(Reply::Tunnel)
            } else {
                Err(HttpError::BAD_WEBSOCKET_GATEWAY)
            }
        }
        100..=199 => Ok(Reply::Interim),
        200..=299 if req == Some(Method::Connect) => Ok(Reply::Tunnel),
        _ => Ok(Reply::Final),
    }
}

/// Whether relayd adds `Connection: close` (as one more header line) before writing the
/// head: the message is read until close, it is no websocket upgrade, and no `Connection`
/// header matches `close` the way `kv_find_value` matches (word prefixes, empty words).
pub fn needs_connection_close(head: &Head, framing: &Framing, upgrade: bool) -> bool {
    framing.body == Body::UntilClose
        && !upgrade
        && !first(head, b"Connection").is_some_and(|v| value_has(v, b"close"))
}
