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
    /// Everything until the connection closes (`TOREAD_UNLIMITED`: CONNECT, or no
    /// Content-Length while `toread` was still `TOREAD_HTTP_HEADER`).
    UntilClose,
}

/// relayd's `cre->toread` as the previous message of the same direction left it: it is not
/// reset between messages, and a message without Content-Length inherits it.
///
/// A body method (POST, …) or response without Content-Length reads until close when it is
/// [`Carry::Header`] but has no body at all when it is [`Carry::Zero`] (after a GET, a
/// `Content-Length: 0` or a headers-only response on the same connection).
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
/// whether `desc->http_cl` was set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Checks {
    side: Side,
    toread: i64,
    chunked: bool,
    cl_parsed: bool,
}

impl Checks {
    pub(crate) fn new(side: Side, carry: Carry) -> Checks {
        Checks {
            side,
            toread: carry.toread(),
            chunked: false,
            cl_parsed: false,
        }
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

    /// The `default:` case: `+`/`-` are refused before `strtonum`, whose errstr is the
    /// message.
    fn content_length(&mut self, value: &[u8]) -> Result<(), HttpError> {
        if matches!(value.first(), Some(b'+' | b'-')) {
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
                Class::Stream => (Body::UntilClose, Carry::Header),
                Class::NoBody => (Body::None, Carry::Zero),
                Class::Other => (Body::None, Carry::Header),
                Class::Body => by_toread(self.toread),
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
/// GET/HEAD/COPY/MOVE never have a body; CONNECT streams until close; TRACE has none;
/// other methods use Content-Length (the last one; a second one was already refused as
/// `malformed header`), else what `carry` says. `Transfer-Encoding: chunked` wins over
/// everything, also over Content-Length (which is then dropped).
pub fn request_body(head: &Head, carry: Carry) -> Result<Framing, HttpError> {
    let method = Method::from_bytes(&head.method).ok_or(HttpError::START_LINE)?;
    let mut checks = Checks::new(Side::Request(method), carry);
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
    let mut checks = Checks::new(Side::Response { status, req }, carry);
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
/// `Connection: upgrade` and they are GETs; `Ok(false)` otherwise (a request never switches
/// by itself). A 101 response is `Ok(true)` when it is an accepted websocket upgrade: then
/// both directions become raw streams (the request side at once, `cre->dst->toread =
/// TOREAD_UNLIMITED`) and no `Connection: close` is added; any other 101 is refused.
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
                Ok(false)
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

/// Whether relayd adds `Connection: close` (as one more header line) before writing the
/// head: the message is read until close, it is no websocket upgrade, and no `Connection`
/// header matches `close` the way `kv_find_value` matches (word prefixes, empty words).
pub fn needs_connection_close(head: &Head, framing: &Framing, upgrade: bool) -> bool {
    framing.body == Body::UntilClose
        && !upgrade
        && !first(head, b"Connection").is_some_and(|v| value_has(v, b"close"))
}
