//! HTTP/1.x message framing as relayd's `relay_http.c` does it (1.104, the N era of
//! `relayd-language.md`), stricter where relayd lets a message be read two ways (see the
//! end): pure functions over byte buffers, no I/O.
//!
//! A relay session uses it per direction and per message:
//! 1. [`parse_request_head`] / [`parse_response_head`] (or a [`HeadReader`] to resume on a
//!    growing buffer) until [`Parsed::Complete`]; an [`HttpError`] is relayd's
//!    `relay_abort_http` (close message, and status for `return error`).
//! 2. [`request_body`] / [`response_body`] on the head as parsed: the [`Body`] framing and
//!    the [`Carry`] the next message of the direction starts from.
//! 3. The filters run on the [`Head`](relaydc_spec::filter::head::Head); then
//!    [`websocket`], for a response [`reply`] (interim, final, or a tunnel),
//!    `drop_content_length`, [`needs_connection_close`] (push `Connection: close`), and
//!    [`write_head`] / [`write_head_verbatim`].
//! 4. The body: `Length(n)` bytes verbatim, [`ChunkedDecoder`] for chunked, raw until close.
//!
//! Facts of relayd's source this follows (function names from relay_http.c unless noted):
//! * `relay_read_http` reads lines with `evbuffer_readln(EVBUFFER_EOL_CRLF)` (LF or CRLF;
//!   a lone CR stays in the line), counts `headerlen` as the sum of line lengths without
//!   their ends (413 `request headers too large` above the protocol's limit, in both
//!   directions), refuses NUL bytes and, on a line without a space, the start line (400
//!   `malformed`); an empty first line is 406 `no method`.
//! * `relay_http_parse_startline`: unknown method (exact case), no second space in a
//!   request line, no reason phrase after a status code: 500 with `strerror(errno)`; the
//!   status code goes through `strtonum(…, 100, 599)` (500, `strerror` of EINVAL/ERANGE).
//!   The request version is everything after the second space and is forwarded verbatim.
//! * obs-fold lines are refused: 400 `malformed`, 502 `Bad Gateway` in responses.
//! * header lines need a `:`, and a name of RFC 9110 token characters
//!   (`relay_http_header_name_valid`; an empty name passes); the value loses leading
//!   `" \t\r\n"`. A second `Host` or `Content-Length` is `malformed header` (`kv_add` with
//!   `unique`).
//! * each header is checked when the next line or the end arrives (`last_header:`):
//!   Content-Length on TRACE/CONNECT is `malformed`, on GET/HEAD/COPY/MOVE it is deleted,
//!   ignored in a response to HEAD, else `+`/`-` give 500 `invalid` and `strtonum(…, 0,
//!   LLONG_MAX)` its errstr; a 1xx/204 response with non-zero `toread` is 502; a
//!   Transfer-Encoding other than `chunked` (case-insensitive, whole value) is `malformed`;
//!   an absolute-URI target whose host (`parse_url`) is not the Host value
//!   (case-insensitive) is `malformed host`.
//! * `toread` is not reset between messages of a direction ([`Carry`]).
//! * `relay_writeheader_http` walks the header tree: names sorted by `strcasecmp`,
//!   duplicates (`kv_children`) after their first, spelt like it.
//! * `relay_read_httpchunks`: see [`chunked`](ChunkedDecoder).
//!
//! Where relayd is lenient in a way that lets the relay and the backend (or the client)
//! read a message differently, which is request smuggling or response splitting, we refuse
//! the message as relayd refuses malformed ones (requests: its error page and close, 400
//! `malformed` unless noted; responses: 502 `Bad Gateway`; bodies: a close), never
//! forwarding it. Each is documented where it is checked:
//! * a bare CR in a head line (RFC 9112 2.2; `head.rs`);
//! * request lines: an empty target, blanks or controls in it, a target in no form of RFC
//!   9112 3.2 or with userinfo, a version other than `HTTP/1.0`/`HTTP/1.1` (505 `HTTP
//!   Version Not Supported` when well-formed); status lines not `HTTP/1.0`/`HTTP/1.1`,
//!   SP, three digits (`head.rs`);
//! * an absolute-form target is filtered by its path and query and forwarded in
//!   origin-form, with its authority as `Host` when there is none (relayd filters and
//!   forwards the whole URI; `head.rs`);
//! * `Content-Length` other than digits after the field's blanks (500 `invalid`);
//!   `Transfer-Encoding` on HTTP/1.0 (RFC 9112 6.1), TRACE or CONNECT (`body.rs`);
//! * a request of a body method without Content-Length or chunked has no body (RFC 9112
//!   6.3; relayd reads it until close); CONNECT has none and tunnels only once a 2xx
//!   answers it (relayd streams at once) (`body.rs`);
//! * 1xx responses are interim, the final response still answers the same request, and a
//!   101 tunnels only for a websocket upgrade the request asked for ([`reply`]);
//! * chunk sizes start with a hex digit, trailer lines are field lines (`chunked.rs`).

mod body;
mod chunked;
mod cstr;
mod error;
mod head;
mod method;
mod write;

pub use body::{
    needs_connection_close, reply, request_body, response_body, websocket, Body, Carry, Framing,
    Reply,
};
pub use chunked::{ChunkError, ChunkedDecoder, Fed, Step, CHUNK_LINE_MAX};
pub use error::{reason, HttpError};
pub use head::{parse_request_head, parse_response_head, HeadReader, Parsed, Span};
pub use method::Method;
pub use write::{write_head, write_head_verbatim};
