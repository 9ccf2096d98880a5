//! `relayctl [-s socket] [--json] command [argument ...]`: relayd's relayctl for
//! relayd-run, with relayctl's commands, keyword matching, messages, output and exit
//! status (1 after `command failed`). `--json` prints the same data as JSON instead
//! (`monitor`: one object per line).

use relayd_run::control::parse::{self, Action};
use relayd_run::control::proto::{self, Command, Reply, Request, Response, Summary};
use relayd_run::control::{format, DEFAULT_SOCKET};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    std::process::exit(run(&args));
}

fn usage() -> i32 {
    eprintln!("usage: relayctl [-s socket] [--json] command [argument ...]");
    1
}

fn run(args: &[String]) -> i32 {
    let mut socket = PathBuf::from(DEFAULT_SOCKET);
    let mut json = false;
    let mut i = 0;
    // Options come first, as relayctl's getopt takes them.
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "--" => {
                i += 1;
                break;
            }
            "--json" => json = true,
            "-s" => {
                i += 1;
                match args.get(i) {
                    Some(p) => socket = PathBuf::from(p),
                    None => {
                        eprintln!("relayctl: option requires an argument -- s");
                        return usage();
                    }
                }
            }
            s if s.starts_with("-s") => socket = PathBuf::from(&s[2..]),
            s if s.starts_with('-') && s.len() > 1 => {
                eprintln!("relayctl: unknown option -- {}", &s[1..]);
                return usage();
            }
            _ => break,
        }
        i += 1;
    }
    let parsed = match parse::parse(&args[i.min(args.len())..]) {
        Ok(p) => p,
        Err(msg) => {
            eprint!("{msg}");
            return 1;
        }
    };
    let Some(mut command) = parsed.command() else {
        return usage();
    };
    // The server resolves paths from its own directory: send an absolute one.
    if let Command::Reload { path: Some(p) } = &mut command {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs.to_string_lossy().into_owned();
        }
    }
    let stream = match connect(&socket, parsed.action == Action::Monitor) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("relayctl: connect: {}: {}", socket.display(), os_text(&e));
            return 1;
        }
    };
    match exchange(stream, command, parsed.action, json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("relayctl: {e}");
            1
        }
    }
}

/// relayctl keeps retrying `monitor` until relayd is there.
fn connect(socket: &PathBuf, patient: bool) -> std::io::Result<UnixStream> {
    loop {
        match UnixStream::connect(socket) {
            Ok(s) => return Ok(s),
            Err(e)
                if patient
                    && matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) =>
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

fn exchange(
    mut stream: UnixStream,
    command: Command,
    action: Action,
    json: bool,
) -> Result<i32, String> {
    let request = Request {
        v: proto::VERSION,
        command,
    };
    let line = proto::to_line(&request).map_err(|e| e.to_string())?;
    stream
        .write_all(&line)
        .map_err(|e| format!("write error: {}", os_text(&e)))?;
    let mut reader = BufReader::new(stream);
    let mut out = std::io::stdout().lock();
    loop {
        let Some(response) = read_response(&mut reader)? else {
            // relayctl's words when the daemon goes away mid-answer.
            return Err("pipe closed".into());
        };
        if response.v != proto::VERSION {
            return Err(format!(
                "relayd-run answered in control protocol version {}, this relayctl speaks {}",
                response.v,
                proto::VERSION
            ));
        }
        let (text, code, done) = render(response.reply, action, json)?;
        out.write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("write error: {}", os_text(&e)))?;
        if done {
            return Ok(code);
        }
    }
}

fn read_response(reader: &mut impl BufRead) -> Result<Option<Response>, String> {
    let mut line = Vec::new();
    let n = reader
        .take(proto::MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read error: {}", os_text(&e)))?;
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| format!("malformed answer from relayd-run: {e}"))
}

/// One reply as printed: the text, the exit code, and whether it was the last.
fn render(reply: Reply, action: Action, json: bool) -> Result<(String, i32, bool), String> {
    let pretty = |v: &serde_json::Value| {
        serde_json::to_string_pretty(v)
            .map(|s| s + "\n")
            .map_err(|e| e.to_string())
    };
    Ok(match reply {
        Reply::Summary(s) => {
            let text = if json {
                pretty(&summary_json(action, &s))?
            } else {
                format::summary(action, &s)
            };
            (text, 0, true)
        }
        Reply::Sessions { sessions } => {
            let text = if json {
                pretty(&serde_json::json!({ "sessions": sessions }))?
            } else {
                format::sessions(&sessions)
            };
            (text, 0, true)
        }
        Reply::Succeeded => {
            let text = if json {
                pretty(&serde_json::json!({ "result": "succeeded" }))?
            } else {
                match action {
                    Action::LogVerbose | Action::LogBrief => "logging request sent.\n".into(),
                    // relayd's relayctl prints nothing for a reload, as it does not wait
                    // for one; this one waits, so it says how it went either way.
                    _ => "command succeeded\n".into(),
                }
            };
            (text, 0, true)
        }
        Reply::Failed { reason } => {
            let text = if json {
                pretty(&serde_json::json!({ "result": "failed", "reason": reason }))?
            } else {
                if let Some(r) = &reason {
                    eprintln!("relayctl: {r}");
                }
                "command failed\n".into()
            };
            (text, 1, true)
        }
        Reply::Event(e) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let text = if json {
                let mut v = serde_json::to_value(&e).map_err(|e| e.to_string())?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("event".into(), e.what.name().into());
                    o.insert("timestamp".into(), now.into());
                }
                serde_json::to_string(&v).map_err(|e| e.to_string())? + "\n"
            } else {
                format::event(&e, now)
            };
            (text, 0, false)
        }
    })
}

/// What `--json` prints for each `show`: the part of the summary the text shows (all of
/// a table's hosts, also those the text leaves out under a disabled table).
fn summary_json(action: Action, s: &Summary) -> serde_json::Value {
    match action {
        Action::ShowHosts => serde_json::json!({ "tables": s.tables, "hosts": s.hosts }),
        Action::ShowRelays => serde_json::json!({ "relays": s.relays }),
        Action::ShowRdrs => serde_json::json!({ "redirects": s.redirects }),
        Action::ShowRouters => serde_json::json!({ "routers": s.routers }),
        _ => serde_json::to_value(s).unwrap_or(serde_json::Value::Null),
    }
}

/// strerror(3)'s text, as err(3) prints it.
fn os_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
