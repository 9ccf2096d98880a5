//! An HTTP message head as the relay holds it between parsing and forwarding: what the
//! filter rules test ([`Message`]) and what their options rewrite (`apply`).
//!
//! The runtime parses a request or response head into a [`Head`] (reusing it from one
//! message of a keep-alive session to the next), evaluates the rules, applies the
//! options, and writes the head out again. Bytes, not strings: header values may hold
//! any octet relayd accepts.

use super::eval::Message;
use super::Direction;
use std::net::IpAddr;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub direction: Option<Direction>,
    /// Requests: the method as sent.
    pub method: Vec<u8>,
    /// Requests: the target up to the first `?` (relayd's `http_path`).
    pub path: Vec<u8>,
    /// Requests: what follows the first `?`, if there is one.
    pub query: Option<Vec<u8>>,
    /// `HTTP/1.x`: the minor version (0 or 1).
    pub minor: u8,
    /// Responses: the status code and reason phrase.
    pub status: u16,
    pub reason: Vec<u8>,
    /// Header lines in arrival order: name as sent, value without leading blanks.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub client: Option<IpAddr>,
    pub backend: Option<IpAddr>,
    pub local: Option<IpAddr>,
    /// Header buffers of earlier messages, emptied and kept for [`Head::push_header`],
    /// so a keep-alive session stops allocating once its heads have been seen.
    pub spare: Spare,
}

/// Buffers kept for reuse; invisible to comparisons and debug output.
#[derive(Clone, Default)]
pub struct Spare(Vec<(Vec<u8>, Vec<u8>)>);

impl PartialEq for Spare {
    fn eq(&self, _: &Spare) -> bool {
        true
    }
}

impl Eq for Spare {}

impl std::fmt::Debug for Spare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("..")
    }
}

impl Head {
    /// Empties it for the next message, keeping the allocations.
    pub fn clear(&mut self) {
        self.direction = None;
        self.method.clear();
        self.path.clear();
        self.query = None;
        self.minor = 1;
        self.status = 0;
        self.reason.clear();
        // At most a few hundred: a head is bounded by `headerlen`.
        for (mut n, mut v) in self.headers.drain(..) {
            if self.spare.0.len() < 256 {
                n.clear();
                v.clear();
                self.spare.0.push((n, v));
            }
        }
    }

    /// Appends a header, in buffers of an earlier message when there are some.
    pub fn push_header(&mut self, name: &[u8], value: &[u8]) {
        let (mut n, mut v) = self.spare.0.pop().unwrap_or_default();
        n.extend_from_slice(name);
        v.extend_from_slice(value);
        self.headers.push((n, v));
    }

    /// The first header named `name` (ASCII case-insensitive).
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

impl Message for Head {
    fn direction(&self) -> Direction {
        self.direction.unwrap_or(Direction::Request)
    }
    fn method(&self) -> Option<&[u8]> {
        (self.direction() == Direction::Request).then_some(self.method.as_slice())
    }
    fn path(&self) -> Option<&[u8]> {
        (self.direction() == Direction::Request).then_some(self.path.as_slice())
    }
    fn query(&self) -> Option<&[u8]> {
        self.query.as_deref()
    }
    fn header_count(&self) -> usize {
        self.headers.len()
    }
    fn header(&self, i: usize) -> (&[u8], &[u8]) {
        match self.headers.get(i) {
            Some((n, v)) => (n.as_slice(), v.as_slice()),
            None => (&[], &[]),
        }
    }
    fn client(&self) -> Option<IpAddr> {
        self.client
    }
    fn backend(&self) -> Option<IpAddr> {
        self.backend
    }
    fn local(&self) -> Option<IpAddr> {
        self.local
    }
}
