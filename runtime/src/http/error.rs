//! Why relayd aborts an HTTP session: the message and status of its `relay_abort_http` call.

use std::fmt;

/// A rejected message head: what relayd passes to `relay_abort_http(con, status, msg, 0)`.
///
/// The session's close line carries [`close_message`](HttpError::close_message): the bare
/// `msg` without `return error` (a `log_info` close), `"msg (NNN Reason)"` with it (then
/// relayd also sends its error page with that status and closes with `err=1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// The close message exactly as relayd logs it.
    pub msg: &'static str,
    /// The status of the `return error` page.
    pub status: u16,
}

/// OpenBSD's `strerror(EINVAL)`: `strtonum` says "invalid" for a bad status code.
const EINVAL: &str = "Invalid argument";
/// OpenBSD's `strerror(ERANGE)`: `strtonum` says "too small"/"too large" for a status
/// outside 100–599.
const ERANGE: &str = "Result too large";

impl HttpError {
    const fn new(msg: &'static str, status: u16) -> HttpError {
        HttpError { msg, status }
    }

    /// Bad start line (no space), NUL byte, obs-fold line in a request, header line without
    /// `:`, bad header name, Content-Length on TRACE/CONNECT, Transfer-Encoding other than
    /// `chunked`. Also, where relayd lets them pass: a bare CR in a line, an empty target or
    /// one with blanks or controls, a target in no form of RFC 9112 3.2, a malformed version,
    /// Transfer-Encoding on HTTP/1.0, TRACE or CONNECT.
    pub const MALFORMED: HttpError = HttpError::new("malformed", 400);
    /// A well-formed version other than `HTTP/1.0` and `HTTP/1.1` (relayd forwards any):
    /// the reason phrase as the message, as relayd's own `Bad Gateway` and `Forbidden` do.
    pub const VERSION: HttpError = HttpError::new("HTTP Version Not Supported", 505);
    /// A second `Host` or `Content-Length` header (`kv_add` with `unique` fails).
    pub const MALFORMED_HEADER: HttpError = HttpError::new("malformed header", 400);
    /// The host of an absolute-URI request target is not the `Host` header.
    pub const MALFORMED_HOST: HttpError = HttpError::new("malformed host", 400);
    /// The header lines (without their line ends) exceed the protocol's `headerlen`; the
    /// same message for responses.
    pub const TOO_LARGE: HttpError = HttpError::new("request headers too large", 413);
    /// The head is only an empty line.
    pub const NO_METHOD: HttpError = HttpError::new("no method", 406);
    /// Responses: obs-fold line, or a 1xx/204 with a non-zero Content-Length. Also, where
    /// relayd lets them pass: a bare CR in a line, a status line not starting with
    /// `HTTP/1.0` or `HTTP/1.1` and a three-digit code, Transfer-Encoding on HTTP/1.0.
    pub const BAD_GATEWAY: HttpError = HttpError::new("Bad Gateway", 502);
    /// Content-Length starting with `+`/`-`, or not a decimal number (`strtonum` errstr);
    /// also anything but digits, which `strtonum` would skip (`\v`, `\f`) and relayd take.
    pub const INVALID: HttpError = HttpError::new("invalid", 500);
    /// Content-Length below zero once leading blanks are skipped (`strtonum` errstr); no
    /// value gets there any more, digits only being taken.
    pub const TOO_SMALL: HttpError = HttpError::new("too small", 500);
    /// Content-Length above `LLONG_MAX` (`strtonum` errstr).
    pub const TOO_BIG: HttpError = HttpError::new("too large", 500);
    /// Status code not a number: `relay_http_parse_startline` fails with
    /// `strerror(errno)` after `strtonum` set EINVAL.
    pub const BAD_STATUS: HttpError = HttpError::new(EINVAL, 500);
    /// Status code outside 100–599: `strerror(ERANGE)`.
    pub const STATUS_RANGE: HttpError = HttpError::new(ERANGE, 500);
    /// Unknown method, request line without a version, status line without a reason
    /// phrase: `relay_http_parse_startline` fails with `strerror(errno)` while nothing set
    /// errno; we log OpenBSD's text for errno 0.
    pub const START_LINE: HttpError = HttpError::new("Undefined error: 0", 500);
    /// Request with `Upgrade: websocket` while the protocol has no `http websockets`.
    pub const WEBSOCKET_FORBIDDEN: HttpError = HttpError::new("Websocket Forbidden", 403);
    /// `Upgrade: websocket` without `Connection: upgrade`.
    pub const BAD_WEBSOCKET_REQUEST: HttpError = HttpError::new("Bad Websocket Request", 400);
    /// `Upgrade: websocket` on another method than GET.
    pub const WEBSOCKET_METHOD: HttpError = HttpError::new("Websocket Method Not Allowed", 405);
    /// A 101 response that is not an accepted websocket upgrade, or answers a request that
    /// did not ask for one.
    pub const BAD_WEBSOCKET_GATEWAY: HttpError = HttpError::new("Bad Websocket Gateway", 502);

    /// The reason phrase of `status` in relayd's page (`relay_httperror_byid`, else
    /// "Unknown Error").
    pub fn reason(&self) -> &'static str {
        reason(self.status).unwrap_or("Unknown Error")
    }

    /// The close line's message: `msg`, or `"msg (NNN Reason)"` with `return error`.
    pub fn close_message(&self, return_error: bool) -> String {
        if return_error {
            self.to_string()
        } else {
            self.msg.to_string()
        }
    }
}

impl fmt::Display for HttpError {
    /// relayd's `"%s (%03d %s)"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:03} {})", self.msg, self.status, self.reason())
    }
}

impl std::error::Error for HttpError {}

/// relayd's `HTTP_ERRORS` table (`http.h`).
pub fn reason(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        306 => "Switch Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        418 => "I'm a teapot",
        420 => "Enhance Your Calm",
        422 => "Unprocessable Entity",
        423 => "Locked",
        424 => "Failed Dependency",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => return None,
    })
}
