//! relayd's log lines, to stderr (`-d`) or syslog.
//!
//! The lines are a contract (`relayd-logs.md`): relayd's regression tests and operators'
//! scripts count them, so each is written exactly once, one message per line, with no
//! prefix or timestamp on stderr. `warn_errno` appends `": " strerror(errno)` as relayd's
//! `log_warn` does.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

enum Sink {
    Stderr,
    Syslog(Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>),
}

struct Log {
    sink: Sink,
    foreground: bool,
}

static LOG: OnceLock<Log> = OnceLock::new();

/// `-v` count, changed at run time by `relayctl log verbose|brief`: an atomic, so the
/// threads that log never wait for the one that switches it.
static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// Sets up logging once: to stderr in the foreground, else to syslog (daemon facility);
/// falls back to stderr if syslog cannot be reached.
pub fn init(foreground: bool, verbosity: u8) {
    let sink = if foreground {
        Sink::Stderr
    } else {
        let formatter = syslog::Formatter3164 {
            facility: syslog::Facility::LOG_DAEMON,
            hostname: None,
            process: "relayd-run".into(),
            pid: std::process::id(),
        };
        match syslog::unix(formatter) {
            Ok(l) => Sink::Syslog(Mutex::new(l)),
            Err(_) => Sink::Stderr,
        }
    };
    VERBOSITY.store(verbosity, Ordering::Relaxed);
    let _ = LOG.set(Log { sink, foreground });
}

#[derive(Clone, Copy)]
enum Level {
    Warn,
    Info,
    Debug,
}

fn emit(level: Level, msg: &str) {
    let Some(log) = LOG.get() else {
        // Not initialised (library use in tests): stderr.
        let _ = writeln!(std::io::stderr().lock(), "{msg}");
        return;
    };
    match &log.sink {
        Sink::Stderr => {
            // One write per line, so lines of different threads never interleave.
            let mut line = String::with_capacity(msg.len() + 1);
            line.push_str(msg);
            line.push('\n');
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
        Sink::Syslog(l) => {
            if let Ok(mut l) = l.lock() {
                let _ = match level {
                    Level::Warn => l.warning(msg),
                    Level::Info => l.info(msg),
                    Level::Debug => l.debug(msg),
                };
            }
        }
    }
}

/// `-d`: relayd then also logs every host state change.
pub fn foreground() -> bool {
    LOG.get().is_some_and(|l| l.foreground)
}

pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// `relayctl log verbose` (2, relayd's level: both `-v` and `-vv` lines) and `relayctl
/// log brief` (0).
pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn info(msg: &str) {
    emit(Level::Info, msg);
}

pub fn warn(msg: &str) {
    emit(Level::Warn, msg);
}

/// relayd's `log_warn`: the message, then `: ` and the error's text.
pub fn warn_errno(msg: &str, err: &str) {
    emit(Level::Warn, &format!("{msg}: {err}"));
}

/// `-v` lines.
pub fn debug(msg: &str) {
    if verbosity() >= 1 {
        emit(Level::Debug, msg);
    }
}

/// `-vv` lines (`relay_launch: running relay NAME`).
pub fn debug2(msg: &str) {
    if verbosity() >= 2 {
        emit(Level::Debug, msg);
    }
}
