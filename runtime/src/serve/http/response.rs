//! The response side of one HTTP exchange: the response heads to one request, each read,
//! filtered and forwarded, until the final one (with its body) or the switch to a tunnel.
//!
//! relayd reads the response direction as a stream of messages each answering the next
//! queued request, 1xx included, and opens a tunnel on its own terms (CONNECT at once, any
//! 101 naming websocket); what this does instead is in [`http::reply`].

use super::{forward_body, io_stop, raw, Conn, Session, Stop, FORBIDDEN};
use crate::http::{self, Body, Carry, HeadReader, Method, Parsed, Reply};
use relaydc_spec::filter::apply::{self, Actions, MacroContext};
use relaydc_spec::filter::eval::{evaluate, Verdict};
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::Direction;

/// The request a response answers, as the response side needs it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Asked {
    pub(super) method: Option<Method>,
    /// [`http::websocket`] said so for the request as forwarded: a 101 may accept it.
    pub(super) upgrade: bool,
    /// The request was HTTP/1.0, which cannot take a 1xx (RFC 9110 15.2).
    pub(super) http10: bool,
}

fn abort(err: http::HttpError) -> Stop {
    Stop::Abort { err, label: false }
}

impl Session<'_> {
    /// Reads, filters and forwards the responses to one request: each interim 1xx (dropped
    /// for an HTTP/1.0 client), then the final one with its body, or the switch to a
    /// tunnel. `Ok` when the next request may follow on the same connections. `carry` is
    /// the response direction's [`Carry`]: a 1xx leaves it as it was, the final response
    /// being framed as if it came first.
    pub(super) async fn respond(
        &mut self,
        client: &mut Conn,
        head: &mut Head,
        reader: &mut HeadReader,
        asked: Asked,
        carry: &mut Carry,
    ) -> Result<(), Stop> {
        let limit = self.proto.http.headerlen as usize;
        let (ip, port) = self.listen();
        loop {
            let Some((server, _)) = self.backend.as_mut() else {
                return Err(Stop::Done);
            };
            reader.restart_response(limit, asked.method, *carry);
            let parsed = loop {
                match reader.read(server.data(), head) {
                    Ok(Parsed::Incomplete) => {}
                    Ok(p) => break p,
                    Err(mut e) => {
                        if e.status == 400 {
                            e.status = 502;
                        }
                        return Err(abort(e));
                    }
                }
                match server.fill(self.idle).await {
                    Ok(0) => return Err(Stop::Done),
                    Ok(_) => {}
                    Err(e) => return Err(io_stop(&e)),
                }
            };
            let Parsed::Complete {
                head_len,
                version,
                code,
            } = parsed
            else {
                return Err(Stop::Done);
            };
            self.version.clear();
            self.version.extend_from_slice(version.of(server.data()));
            self.code.clear();
            self.code.extend_from_slice(code.of(server.data()));
            server.consume(head_len);
            if asked.http10 && head.status != 101 && (100..200).contains(&head.status) {
                continue;
            }
            head.direction = Some(Direction::Response);
            let backend_ip = self.backend.as_ref().map(|(_, a)| *a);
            head.client = Some(self.peer.ip());
            head.backend = backend_ip.map(|a| a.ip());
            let outcome = evaluate(&self.proto.rules, head, &mut self.filter, &mut self.queued);
            let ctx = MacroContext {
                remote_addr: backend_ip.map(|a| a.ip()),
                remote_port: backend_ip.map_or(0, |a| a.port()),
                server_addr: ip,
                server_port: port,
                timeout_secs: self.idle.as_secs() as i64,
            };
            let label = apply::label_text(self.filter.label, &self.w.shared.plan.labels);
            let applied = apply::apply(
                &self.proto.rules,
                Actions::of(&outcome, &self.queued, false),
                head,
                &ctx,
                label,
                &mut self.log,
                None,
            );
            if outcome.verdict == Verdict::Block || applied.is_err() {
                return Err(Stop::Abort {
                    err: FORBIDDEN,
                    label: true,
                });
            }
            let reply = http::reply(
                asked.method,
                asked.upgrade,
                head,
                self.proto.http.websockets,
            )
            .map_err(abort)?;
            let framing = match reply {
                Reply::Final => {
                    let f =
                        http::response_body(asked.method, head, *carry, false).map_err(abort)?;
                    *carry = f.next;
                    Some(f)
                }
                Reply::Interim | Reply::Tunnel => None,
            };
            if framing.is_some_and(|f| f.drop_content_length) {
                head.headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(b"Content-Length"));
            }
            let close = framing.is_some_and(|f| http::needs_connection_close(head, &f, false));
            // A backend that says it closes (or an HTTP/1.0 one that does not keep the
            // connection) ends the session after this response, as relayd closes both
            // sides when the server's EOF arrives; waiting for the client's next request
            // would hold its connection open for nothing.
            let backend_closes = framing.is_some() && backend_closes(head);
            if close {
                head.headers
                    .push((b"Connection".to_vec(), b"close".to_vec()));
            }
            let Some((server, _)) = self.backend.as_mut() else {
                return Err(Stop::Done);
            };
            self.out.clear();
            http::write_head_verbatim(head, &self.version, &self.code, &mut self.out);
            let Some(framing) = framing else {
                if let Err(e) = client.stream.send(&self.out).await {
                    return Err(io_stop(&e));
                }
                self.out.clear();
                if reply == Reply::Tunnel {
                    return Err(raw(client, server, self.idle).await);
                }
                continue;
            };
            forward_body(server, client, &mut self.out, framing.body, self.idle).await?;
            if framing.body == Body::UntilClose || close || backend_closes {
                return Err(Stop::Done);
            }
            return Ok(());
        }
    }
}

/// Whether a final response's head says its connection ends after it: a `close` token
/// in `Connection`, or HTTP/1.0 without `keep-alive`.
fn backend_closes(head: &Head) -> bool {
    let has = |token: &[u8]| {
        head.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(b"Connection"))
            .flat_map(|(_, v)| v.split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
    };
    has(b"close") || (head.minor == 0 && !has(b"keep-alive"))
}
