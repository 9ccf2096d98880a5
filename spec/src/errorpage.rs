//! relayd's `return error` page: relay_http.c `relay_abort_http` (1.90; the same text
//! since relayd switched to the HTML5 page with `Content-Length`), the reason phrases of
//! http.h `HTTP_ERRORS` (`relay_httperror_byid`) and `relay_http_time`.
//!
//! When a session of an `http` protocol with `return error` is aborted, relayd writes
//! [`ErrorPage::render`] to the client and closes, logging [`close_message`]. Without
//! `return error` (or for a non-HTTP protocol) it only closes, logging the bare message.
//!
//! Exactly as relayd builds it:
//!
//! ```text
//! HTTP/1.0 <code> <reason>\r\n
//! Date: <RFC 1123 date, GMT>\r\n
//! Server: OpenBSD relayd\r\n
//! Connection: close\r\n
//! Content-Type: text/html\r\n
//! Content-Length: <body bytes>\r\n
//! \r\n
//! <!DOCTYPE html>
//! <html>
//! <head>
//! <title><code> <reason></title>
//! <style type="text/css"><!--
//! <style>
//! --></style>
//! </head>
//! <body>
//! <h1><reason></h1>
//! <div id='m'><message></div>
//! <div id='l'><label></div>
//! <hr><address>OpenBSD relayd at <listen address> port <listen port></address>
//! </body>
//! </html>
//! ```
//!
//! The message div stays but is **empty for 500** ("Do not send details of the Internal
//! Server Error"); the label div is empty without a label. Nothing is escaped: the label
//! is HTML by design, and the message and style are inserted as they are.
//!
//! Older relayd (≤ 5.5, relay_http.c 1.18) sent a different page (`HTML 4.01` doctype,
//! a local `asctime` date, no `Content-Length`, style `body { background-color: #a00000;
//! color: white; }`); it is not produced here.

use crate::filter::apply::SERVER_NAME;
use std::net::IpAddr;

/// relayd's built-in style sheet, used when the protocol has no `return error style`.
pub const DEFAULT_STYLE: &str = "body { background-color: #a00000; color: white; font-family: \
     'Comic Sans MS', 'Chalkboard SE', 'Comic Neue', sans-serif; }\n\
     hr { border: 0; border-bottom: 1px dashed; }\n";

/// http.h `HTTP_ERRORS` (IANA names plus 306 and 420), as `relay_httperror_byid` finds
/// them.
const HTTP_ERRORS: &[(u16, &str)] = &[
    (100, "Continue"),
    (101, "Switching Protocols"),
    (102, "Processing"),
    (200, "OK"),
    (201, "Created"),
    (202, "Accepted"),
    (203, "Non-Authoritative Information"),
    (204, "No Content"),
    (205, "Reset Content"),
    (206, "Partial Content"),
    (207, "Multi-Status"),
    (208, "Already Reported"),
    (226, "IM Used"),
    (300, "Multiple Choices"),
    (301, "Moved Permanently"),
    (302, "Found"),
    (303, "See Other"),
    (304, "Not Modified"),
    (305, "Use Proxy"),
    (306, "Switch Proxy"),
    (307, "Temporary Redirect"),
    (308, "Permanent Redirect"),
    (400, "Bad Request"),
    (401, "Unauthorized"),
    (402, "Payment Required"),
    (403, "Forbidden"),
    (404, "Not Found"),
    (405, "Method Not Allowed"),
    (406, "Not Acceptable"),
    (407, "Proxy Authentication Required"),
    (408, "Request Timeout"),
    (409, "Conflict"),
    (410, "Gone"),
    (411, "Length Required"),
    (412, "Precondition Failed"),
    (413, "Payload Too Large"),
    (414, "URI Too Long"),
    (415, "Unsupported Media Type"),
    (416, "Range Not Satisfiable"),
    (417, "Expectation Failed"),
    (418, "I'm a teapot"),
    (420, "Enhance Your Calm"),
    (422, "Unprocessable Entity"),
    (423, "Locked"),
    (424, "Failed Dependency"),
    (426, "Upgrade Required"),
    (428, "Precondition Required"),
    (429, "Too Many Requests"),
    (431, "Request Header Fields Too Large"),
    (451, "Unavailable For Legal Reasons"),
    (500, "Internal Server Error"),
    (501, "Not Implemented"),
    (502, "Bad Gateway"),
    (503, "Service Unavailable"),
    (504, "Gateway Timeout"),
    (505, "HTTP Version Not Supported"),
    (506, "Variant Also Negotiates"),
    (507, "Insufficient Storage"),
    (508, "Loop Detected"),
    (510, "Not Extended"),
    (511, "Network Authentication Required"),
];

/// The reason phrase relayd uses for `code` (`relay_httperror_byid`). The codes relayd
/// aborts with: 400 "Bad Request", 403 "Forbidden", 405 "Method Not Allowed", 406 "Not
/// Acceptable", 413 "Payload Too Large", 500 "Internal Server Error", 502 "Bad Gateway",
/// 504 "Gateway Timeout".
pub fn reason(code: u16) -> Option<&'static str> {
    HTTP_ERRORS
        .binary_search_by_key(&code, |&(c, _)| c)
        .ok()
        .and_then(|i| HTTP_ERRORS.get(i))
        .map(|&(_, r)| r)
}

/// [`reason`], or relayd's "Unknown Error" for a code outside the table.
pub fn reason_or_unknown(code: u16) -> &'static str {
    reason(code).unwrap_or("Unknown Error")
}

/// What the close line says after an abort with `return error`: `"%s (%03d %s)"`, e.g.
/// `Forbidden (403 Forbidden)`.
pub fn close_message(msg: &str, code: u16) -> String {
    format!("{msg} ({code:03} {})", reason_or_unknown(code))
}

/// `relay_http_time`: `strftime("%a, %d %h %Y %T %Z")` of `gmtime(unix_secs)`, e.g.
/// `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn http_date(unix_secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    // 1970-01-01 was a Thursday.
    let wd = (days + 4).rem_euclid(7) as usize;
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS.get(wd).copied().unwrap_or("Sun"),
        d,
        MONTHS
            .get(m.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("Jan"),
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month 1–12, day 1–31), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// One `return error` page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ErrorPage<'a> {
    /// The status code (`%03d`).
    pub code: u16,
    /// The abort message (`"Forbidden"`, `"malformed"`, …); not shown for 500.
    pub message: &'a str,
    /// The label text (the session's label for rule blocks, none for protocol errors);
    /// HTML allowed.
    pub label: Option<&'a str>,
    /// The protocol's `return error style`; `None` for [`DEFAULT_STYLE`].
    pub style: Option<&'a str>,
    /// The relay's configured listen address and port (`rl_conf.ss`, `rl_conf.port`).
    pub listen_addr: IpAddr,
    pub listen_port: u16,
}

impl ErrorPage<'_> {
    /// The HTML document.
    pub fn body(&self) -> String {
        let reason = reason_or_unknown(self.code);
        let text = if self.code == 500 { "" } else { self.message };
        format!(
            "<!DOCTYPE html>\n\
             <html>\n\
             <head>\n\
             <title>{code:03} {reason}</title>\n\
             <style type=\"text/css\"><!--\n{style}\n--></style>\n\
             </head>\n\
             <body>\n\
             <h1>{reason}</h1>\n\
             <div id='m'>{text}</div>\n\
             <div id='l'>{label}</div>\n\
             <hr><address>{server} at {addr} port {port}</address>\n\
             </body>\n\
             </html>\n",
            code = self.code,
            style = self.style.unwrap_or(DEFAULT_STYLE),
            label = self.label.unwrap_or(""),
            server = SERVER_NAME,
            addr = self.listen_addr,
            port = self.listen_port,
        )
    }

    /// The whole response, head and body, for a page sent at `now_unix` (seconds since
    /// the epoch; relayd's `time(NULL)`).
    pub fn render(&self, now_unix: i64) -> Vec<u8> {
        let body = self.body();
        format!(
            "HTTP/1.0 {code:03} {reason}\r\n\
             Date: {date}\r\n\
             Server: {server}\r\n\
             Connection: close\r\n\
             Content-Type: text/html\r\n\
             Content-Length: {len}\r\n\
             \r\n\
             {body}",
            code = self.code,
            reason = reason_or_unknown(self.code),
            date = http_date(now_unix),
            server = SERVER_NAME,
            len = body.len(),
        )
        .into_bytes()
    }
}
