//! Health checks: every global `interval`, each enabled table (by its skip count) checks
//! each of its hosts that has no parent, all at once, each within the table's timeout;
//! results drive host states through `spec::health` and are published to the workers
//! (`Shared::host_up`), which never wait for a check.
//!
//! Built here: `tcp`, `http … code|digest` and `send … expect` (plain TCP). `icmp`, `tls`,
//! `https` and `script` checks come with the TLS issue; their hosts stay unknown, and the
//! start says so once per table.

use crate::log;
use crate::serve::Shared;
use relaydc_spec::filter::glob::fnmatch;
use relaydc_spec::filter::Case;
use relaydc_spec::health::{checked_on_tick, Health, HostState};
use relaydc_spec::plan::{Address, Check, HttpExpect, Plan};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Whether this version runs a check kind.
pub fn runs(check: &Check) -> bool {
    match check {
        Check::Tcp => true,
        Check::Http { tls, .. } => !tls,
        Check::SendExpect { tls, .. } => !tls,
        _ => false,
    }
}

/// A check's result: up or down, and relayd's error text (§4.10).
struct Outcome {
    up: bool,
    text: &'static str,
    code: Option<u16>,
}

/// Runs the checks until the returned future is dropped.
pub async fn run(shared: Arc<Shared>, log_changes: bool) {
    let plan = &shared.plan;
    let mut health: Vec<Health> = vec![Health::default(); plan.hosts.len()];
    let interval = Duration::from_secs(u64::from(plan.globals.interval_s.max(1)));
    // Children by parent (relayd host ids are index + 1), computed once.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); plan.hosts.len()];
    for (i, h) in plan.hosts.iter().enumerate() {
        if let Some(p) = h.parent.and_then(|p| p.checked_sub(1)) {
            if let Some(c) = children.get_mut(p as usize) {
                c.push(i);
            }
        }
    }
    let mut tick: u64 = 0;
    loop {
        let started = Instant::now();
        let mut checks = tokio::task::JoinSet::new();
        for t in plan.tables.iter().filter(|t| !t.disabled && runs(&t.check)) {
            if !checked_on_tick(t.skip, tick) {
                continue;
            }
            for &h in &t.hosts {
                let host = &plan.hosts[h as usize];
                if host.parent.is_some() {
                    continue;
                }
                let Address::Ip(ip) = host.address else {
                    continue;
                };
                let addr = SocketAddr::new(ip, t.port);
                let timeout = Duration::from_millis(u64::from(t.timeout_ms.max(1)));
                let check = t.check.clone();
                checks.spawn(async move {
                    let t0 = Instant::now();
                    // The table timeout is the whole check's budget.
                    let o = match tokio::time::timeout(timeout, one(&check, addr)).await {
                        Ok(o) => o,
                        Err(_) => timed_out(&check),
                    };
                    (h as usize, o, t0.elapsed())
                });
            }
        }
        while let Some(r) = checks.join_next().await {
            let Ok((h, o, took)) = r else { continue };
            record(&shared, &mut health, h, &o, took, log_changes);
            // Children copy the parent's raw result.
            for &c in children.get(h).map_or(&[][..], Vec::as_slice) {
                record(&shared, &mut health, c, &o, took, log_changes);
            }
        }
        tick += 1;
        let next = started + interval;
        tokio::time::sleep_until(tokio::time::Instant::from_std(next)).await;
    }
}

fn record(
    shared: &Shared,
    health: &mut [Health],
    h: usize,
    o: &Outcome,
    took: Duration,
    log_changes: bool,
) {
    let plan: &Plan = &shared.plan;
    let host = &plan.hosts[h];
    let Some(hh) = health.get_mut(h) else { return };
    let old = hh.record(o.up, host.retry);
    let new = hh.state;
    shared.host_up[h].store(new == HostState::Up, Ordering::Relaxed);
    let changed = old != new;
    let logs = if changed {
        log_changes || plan.globals.log.state_changes
    } else {
        plan.globals.log.host_checks
    };
    if logs {
        let table = &plan.tables[host.table as usize];
        log::info(&format!(
            "host {}, check {} ({}ms,{}{}), state {} -> {}, availability {:.2}%",
            host.name,
            kind(&table.check),
            took.as_millis(),
            o.text,
            o.code.map(|c| format!(",{c}")).unwrap_or_default(),
            old.word(),
            new.word(),
            hh.availability()
        ));
    }
}

fn kind(c: &Check) -> &'static str {
    match c {
        Check::Icmp => "icmp",
        Check::Tcp => "tcp",
        Check::Http {
            expect: HttpExpect::Code(_),
            ..
        } => "http code",
        Check::Http {
            expect: HttpExpect::Digest(_),
            ..
        } => "http digest",
        Check::SendExpect { .. } => "send expect",
        Check::Script(_) => "script",
        Check::Tls => "tls",
        Check::None => "none",
    }
}

fn timed_out(c: &Check) -> Outcome {
    let text = match c {
        Check::Tcp => "tcp connect timeout",
        _ => "tcp read timeout",
    };
    Outcome {
        up: false,
        text,
        code: None,
    }
}

async fn one(check: &Check, addr: SocketAddr) -> Outcome {
    let mut s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(_) => {
            return Outcome {
                up: false,
                text: "tcp connect failed",
                code: None,
            }
        }
    };
    match check {
        Check::Tcp => Outcome {
            up: true,
            text: "tcp connect ok",
            code: None,
        },
        Check::Http {
            path, host, expect, ..
        } => {
            let method = match expect {
                HttpExpect::Code(_) => "HEAD",
                HttpExpect::Digest(_) => "GET",
            };
            // relayd: HTTP/1.0 without a host, HTTP/1.1 with `Host` and `Connection: close`.
            let req = match host {
                Some(h) => format!("{method} {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\nUser-Agent: OpenBSD relayd\r\n\r\n"),
                None => format!("{method} {path} HTTP/1.0\r\nUser-Agent: OpenBSD relayd\r\n\r\n"),
            };
            if s.write_all(req.as_bytes()).await.is_err() {
                return Outcome {
                    up: false,
                    text: "tcp write failed",
                    code: None,
                };
            }
            let mut buf = Vec::new();
            let _ = read_to_end_bounded(&mut s, &mut buf).await;
            http_result(expect, &buf)
        }
        Check::SendExpect {
            send,
            expect,
            binary,
            ..
        } => {
            if let Some(data) = send {
                if s.write_all(data).await.is_err() {
                    return Outcome {
                        up: false,
                        text: "tcp write failed",
                        code: None,
                    };
                }
            }
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                // Every read re-tests the whole buffer.
                let ok = if *binary {
                    buf.starts_with(expect)
                } else {
                    fnmatch(expect, &buf, Case::Sensitive)
                };
                if ok {
                    return Outcome {
                        up: true,
                        text: "send/expect ok",
                        code: None,
                    };
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        return Outcome {
                            up: false,
                            text: "send/expect failed",
                            code: None,
                        }
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                if buf.len() > 1 << 20 {
                    return Outcome {
                        up: false,
                        text: "send/expect failed",
                        code: None,
                    };
                }
            }
        }
        _ => Outcome {
            up: false,
            text: "aborted",
            code: None,
        },
    }
}

async fn read_to_end_bounded(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 || buf.len() > 1 << 20 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn http_result(expect: &HttpExpect, buf: &[u8]) -> Outcome {
    match expect {
        HttpExpect::Code(want) => {
            let line = buf.split(|b| *b == b'\n').next().unwrap_or(&[]);
            let rest = line
                .strip_prefix(b"HTTP/1.0 ")
                .or_else(|| line.strip_prefix(b"HTTP/1.1 "));
            let code = rest
                .and_then(|r| r.get(..3))
                .and_then(|c| std::str::from_utf8(c).ok())
                .and_then(|c| c.parse::<u16>().ok());
            match code {
                None => Outcome {
                    up: false,
                    text: "http code malformed",
                    code: None,
                },
                Some(c) if c == *want => Outcome {
                    up: true,
                    text: "http code ok",
                    code: Some(c),
                },
                Some(c) => Outcome {
                    up: false,
                    text: "http code mismatch",
                    code: Some(c),
                },
            }
        }
        HttpExpect::Digest(want) => {
            let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Outcome {
                    up: false,
                    text: "http digest malformed",
                    code: None,
                };
            };
            let body = &buf[at + 4..];
            let alg = if want.len() == 32 {
                relaydc_spec::filter::DigestAlg::Md5
            } else {
                relaydc_spec::filter::DigestAlg::Sha1
            };
            let got = relaydc_spec::filter::url::digest_hex(alg, body);
            if got == *want {
                Outcome {
                    up: true,
                    text: "http digest ok",
                    code: None,
                }
            } else {
                Outcome {
                    up: false,
                    text: "http digest mismatch",
                    code: None,
                }
            }
        }
    }
}
