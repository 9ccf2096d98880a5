//! relayctl's text output, byte for byte (relayctl.c's `printf`s), from the data the
//! control socket answers with.

use super::parse::Action;
use super::proto::{Event, EventKind, HostRow, Session, Stats, Summary, TableRow};
use std::fmt::Write;

/// The header every `show` but `show sessions` prints first.
pub fn header() -> String {
    format!(
        "{:<4}\t{:<8}\t{:<24}\t{:<7}\tStatus\n",
        "Id", "Type", "Name", "Avlblty"
    )
}

fn row(out: &mut String, id: u32, kind: &str, name: &str, avail: &str, status: &str) {
    let _ = writeln!(out, "{id:<4}\t{kind:<8}\t{name:<24}\t{avail:<7}\t{status}");
}

/// `show summary|hosts|relays|redirects|routers`, header included.
pub fn summary(action: Action, s: &Summary) -> String {
    let sum = action == Action::ShowSum;
    let hosts = action == Action::ShowHosts;
    let mut out = header();
    for r in &s.redirects {
        if sum || action == Action::ShowRdrs {
            row(&mut out, r.id, "redirect", &r.name, "", &r.status);
        }
        // pfe sends a disabled redirect's row alone.
        if r.status != "disabled" && action == Action::ShowRdrs {
            stats(&mut out, &r.stats);
        }
        if r.status != "disabled" && (sum || hosts) {
            for t in &r.tables {
                table(&mut out, s, *t, hosts);
            }
        }
    }
    for r in &s.relays {
        if sum || action == Action::ShowRelays {
            row(&mut out, r.id, "relay", &r.name, "", &r.status);
        }
        if action == Action::ShowRelays {
            stats(&mut out, &r.stats);
        }
        if sum || hosts {
            for t in &r.tables {
                table(&mut out, s, *t, hosts);
            }
        }
    }
    for r in &s.routers {
        if sum || action == Action::ShowRouters {
            row(&mut out, r.id, "router", &r.name, "", &r.status);
        }
        if action == Action::ShowRouters {
            let pad = "";
            if r.rtable != 0 {
                let _ = writeln!(out, "\t{pad:>8}\trtable: {}", r.rtable);
            }
            if let Some(l) = r.rtlabel.as_deref().filter(|l| !l.is_empty()) {
                let _ = writeln!(out, "\t{pad:>8}\trtlabel: {l}");
            }
            for route in &r.routes {
                let _ = writeln!(out, "\t{pad:>8}\troute: {route}");
            }
        }
        if r.status != "disabled" && (sum || hosts) {
            for t in &r.tables {
                table(&mut out, s, *t, hosts);
            }
        }
    }
    out
}

/// A table row and, unless the table is disabled, its host rows (pfe's `show`).
fn table(out: &mut String, s: &Summary, id: u32, details: bool) {
    let Some(t) = s.tables.iter().find(|t| t.id == id) else {
        return;
    };
    row(out, t.id, "table", &t.name, "", &t.status);
    if t.disabled {
        return;
    }
    for h in hosts_of(s, t) {
        host(out, h, details);
    }
}

fn hosts_of<'a>(s: &'a Summary, t: &'a TableRow) -> impl Iterator<Item = &'a HostRow> {
    t.hosts
        .iter()
        .filter_map(|id| s.hosts.iter().find(|h| h.id == *id))
}

fn host(out: &mut String, h: &HostRow, details: bool) {
    let name = match h.parent {
        Some(p) => format!("{} parent {p}", h.name),
        None => h.name.clone(),
    };
    let avail = h
        .availability
        .map(|a| format!("{a:.2}%"))
        .unwrap_or_default();
    row(out, h.id, "host", &name, &avail, &h.status);
    if details && h.checks > 0 {
        let _ = write!(
            out,
            "\t{:>8}\ttotal: {}/{} checks",
            "", h.up_checks, h.checks
        );
        if h.retries > 0 {
            let _ = write!(out, ", {} retries", h.retries);
        }
        if let Some(e) = h.error.as_deref().filter(|_| h.state == "down") {
            let _ = write!(out, ", error: {e}");
        }
        out.push('\n');
    }
}

/// relayctl's `print_statistics`: nothing before the first session.
fn stats(out: &mut String, s: &Stats) {
    if s.total == 0 {
        return;
    }
    let pad = "";
    let _ = write!(
        out,
        "\t{pad:>8}\ttotal: {} sessions\n\t{pad:>8}\tlast: {}/{}s {}/h {}/d sessions\n\t{pad:>8}\taverage: {}/{}s {}/h {}/d sessions\n",
        s.total, s.last, s.interval_s, s.last_hour, s.last_day, s.avg, s.interval_s, s.avg_hour, s.avg_day
    );
}

/// relayd's `print_time`: `HH:MM:SS`, hours not wrapped.
pub fn duration(secs: u64) -> String {
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `show sessions`.
pub fn sessions(list: &[Session]) -> String {
    let mut out = String::new();
    for s in list {
        let _ = writeln!(
            out,
            "session {}:{} {}:{} -> {}:{}\t{}",
            s.proc,
            s.id,
            s.client,
            s.client_port,
            s.backend.as_deref().unwrap_or(""),
            s.backend_port,
            if s.done { "DONE" } else { "RUNNING" }
        );
        let _ = writeln!(
            out,
            "\tage {}, idle {}, relay {}, pid {}",
            duration(s.age_s),
            duration(s.idle_s),
            s.relay,
            s.pid
        );
    }
    out
}

/// One `monitor` event, stamped with `now` (seconds since the epoch) as relayctl stamps
/// what it receives.
pub fn event(e: &Event, now: u64) -> String {
    let (kind, len) = e.what.imsg();
    let mut out = format!(
        "{}: imsg type {kind} len {len} peerid 0 pid {}\n\ttimestamp: {now}, {}",
        e.what.name(),
        e.pid,
        ctime(now)
    );
    let _ = writeln!(out, "\tid: {}", e.id);
    if e.what == EventKind::HostStatus {
        let _ = writeln!(out, "\tstate: {}", e.state.as_deref().unwrap_or("unknown"));
    } else if let Some(name) = e.name.as_deref().filter(|n| !n.is_empty()) {
        let _ = writeln!(out, "\tname: {name}");
    }
    out
}

/// ctime(3) of `secs`, in UTC (`Thu Nov 26 09:25:56 2026\n`).
pub fn ctime(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days);
    format!(
        "{} {}{:3} {:02}:{:02}:{:02} {y}\n",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31): the proleptic Gregorian
/// calendar by eras of 400 years.
fn civil(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_libc() {
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970\n");
        assert_eq!(ctime(951_782_400), "Tue Feb 29 00:00:00 2000\n");
        assert_eq!(ctime(1_795_685_156), "Thu Nov 26 09:25:56 2026\n");
    }

    #[test]
    fn durations_as_print_time() {
        assert_eq!(duration(0), "00:00:00");
        assert_eq!(duration(3_723), "01:02:03");
        assert_eq!(duration(360_000), "100:00:00");
    }

    #[test]
    fn header_is_relayctls() {
        assert_eq!(
            header(),
            "Id  \tType    \tName                    \tAvlblty\tStatus\n"
        );
    }

    #[test]
    fn redirects_and_routers_as_relayctl_prints_them() {
        use super::super::proto::{RedirectRow, RouterRow};
        let host = |id, name: &str, status: &str| HostRow {
            id,
            name: name.into(),
            table: 1,
            parent: None,
            state: status.into(),
            disabled: false,
            status: status.into(),
            checks: 2,
            up_checks: 2,
            availability: Some(100.0),
            retries: 0,
            error: None,
        };
        let s = Summary {
            redirects: vec![RedirectRow {
                id: 1,
                name: "www".into(),
                status: "active".into(),
                tables: vec![1],
                stats: Stats {
                    total: 3,
                    interval_s: 60,
                    ..Stats::default()
                },
            }],
            routers: vec![RouterRow {
                id: 1,
                name: "uplinks".into(),
                status: "active".into(),
                tables: vec![1],
                rtable: 100,
                rtlabel: None,
                routes: vec!["10.99.0.0/16".into()],
            }],
            tables: vec![TableRow {
                id: 1,
                name: "web:80".into(),
                status: "active (1 hosts)".into(),
                disabled: false,
                up: 1,
                checked: true,
                hosts: vec![1],
            }],
            hosts: vec![host(1, "10.0.0.1", "up")],
            ..Summary::default()
        };
        let t = "web:80                  ";
        let h = "10.0.0.1                ";
        assert_eq!(
            summary(Action::ShowRdrs, &s),
            format!(
                "{}1   \tredirect\twww                     \t       \tactive\n\
                 \t        \ttotal: 3 sessions\n\
                 \t        \tlast: 0/60s 0/h 0/d sessions\n\
                 \t        \taverage: 0/60s 0/h 0/d sessions\n",
                header()
            )
        );
        assert_eq!(
            summary(Action::ShowRouters, &s),
            format!(
                "{}1   \trouter  \tuplinks                 \t       \tactive\n\
                 \t        \trtable: 100\n\
                 \t        \troute: 10.99.0.0/16\n",
                header()
            )
        );
        let sum = summary(Action::ShowSum, &s);
        assert_eq!(
            sum.lines().filter(|l| l.contains(t)).count(),
            2,
            "the table under the redirect and under the router: {sum}"
        );
        assert!(sum.contains(&format!("1   \thost    \t{h}\t100.00%\tup\n")));
        assert!(!sum.contains("total:"));
    }
}
