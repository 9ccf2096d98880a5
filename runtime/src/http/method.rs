//! relayd's request methods (`http.h` `HTTP_METHODS`) and how each one frames a body.

/// A method relayd knows; any other request line is refused (`relay_httpmethod_byname`
/// finds nothing and `relay_http_parse_startline` fails with a 500).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Trace,
    Connect,
    Propfind,
    Proppatch,
    Mkcol,
    Copy,
    Move,
    Lock,
    Unlock,
    VersionControl,
    Report,
    Checkout,
    Checkin,
    Uncheckout,
    Mkworkspace,
    Update,
    Label,
    Merge,
    BaselineControl,
    Mkactivity,
    Orderpatch,
    Acl,
    Mkredirectref,
    Updateredirectref,
    Search,
    Mkcalendar,
    Patch,
}

const METHODS: [(Method, &str); 33] = [
    (Method::Get, "GET"),
    (Method::Head, "HEAD"),
    (Method::Post, "POST"),
    (Method::Put, "PUT"),
    (Method::Delete, "DELETE"),
    (Method::Options, "OPTIONS"),
    (Method::Trace, "TRACE"),
    (Method::Connect, "CONNECT"),
    (Method::Propfind, "PROPFIND"),
    (Method::Proppatch, "PROPPATCH"),
    (Method::Mkcol, "MKCOL"),
    (Method::Copy, "COPY"),
    (Method::Move, "MOVE"),
    (Method::Lock, "LOCK"),
    (Method::Unlock, "UNLOCK"),
    (Method::VersionControl, "VERSION-CONTROL"),
    (Method::Report, "REPORT"),
    (Method::Checkout, "CHECKOUT"),
    (Method::Checkin, "CHECKIN"),
    (Method::Uncheckout, "UNCHECKOUT"),
    (Method::Mkworkspace, "MKWORKSPACE"),
    (Method::Update, "UPDATE"),
    (Method::Label, "LABEL"),
    (Method::Merge, "MERGE"),
    (Method::BaselineControl, "BASELINE-CONTROL"),
    (Method::Mkactivity, "MKACTIVITY"),
    (Method::Orderpatch, "ORDERPATCH"),
    (Method::Acl, "ACL"),
    (Method::Mkredirectref, "MKREDIRECTREF"),
    (Method::Updateredirectref, "UPDATEREDIRECTREF"),
    (Method::Search, "SEARCH"),
    (Method::Mkcalendar, "MKCALENDAR"),
    (Method::Patch, "PATCH"),
];

/// The branch of `relay_read_http`'s method switch a request takes once its head is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    /// CONNECT: a data stream to relayd (`TOREAD_UNLIMITED`, `relay_read`); here no body,
    /// and a tunnel once a 2xx answers it.
    Stream,
    /// GET, HEAD, COPY, MOVE: never a body; their Content-Length is deleted while parsing.
    NoBody,
    /// The `default:` branch (TRACE): back to header mode, no body.
    Other,
    /// Everything else: Content-Length, else none (relayd: what `toread` held, which may
    /// read until close).
    Body,
}

impl Method {
    /// `relay_httpmethod_byname`: an exact, case-sensitive match (`strcmp`).
    pub fn from_bytes(name: &[u8]) -> Option<Method> {
        METHODS
            .iter()
            .find(|(_, n)| n.as_bytes() == name)
            .map(|(m, _)| *m)
    }

    /// The name relayd writes (`relay_httpmethod_byid`).
    pub fn as_str(self) -> &'static str {
        METHODS
            .iter()
            .find(|(m, _)| *m == self)
            .map_or("", |(_, n)| n)
    }

    pub(crate) fn class(self) -> Class {
        match self {
            Method::Connect => Class::Stream,
            Method::Get | Method::Head | Method::Copy | Method::Move => Class::NoBody,
            Method::Trace => Class::Other,
            _ => Class::Body,
        }
    }
}
