//! The corpus runner: every `corpus/**/*.conf` is checked with the real CLI entry point.
//!
//! Each file states what it expects, in a header of comment lines at its top (the seed
//! files stay verbatim and keep theirs in `NAME.expect` beside them):
//!
//! ```text
//! # expect: ok | warning | error      (exit 0, 0 with warnings, 1)
//! # codes: RD0301, RD0804             (exactly the set of codes reported)
//! # args: --no-file-checks            (extra arguments, optional; `--run compile`
//!                                      runs `relaydc compile` instead of `check`)
//! ```
//!
//! and marks under offending text: a comment line `#   ^^^ RD0301` asserts that an
//! RD0301 has its primary span on the line above, starting at the first caret's column
//! and as long as the carets (a mark starting right after `#` also matches column 1).
//! The full output (short and human forms) is an insta snapshot beside the file;
//! `INSTA_UPDATE=always` (or `cargo insta review`) updates them.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "a test that cannot read its own fixtures should fail loudly"
)]

use relaydc_testsuite::workspace;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn run(args: &[&str]) -> (i32, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("relaydc")
        .chain(args.iter().copied())
        .map(Into::into)
        .collect();
    let code = relaydc::cli::run(argv, &mut out, &mut err);
    (
        code,
        String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&err),
    )
}

struct Expect {
    outcome: String,
    codes: BTreeSet<String>,
    args: Vec<String>,
}

fn header(text: &str) -> Expect {
    let mut e = Expect {
        outcome: String::new(),
        codes: BTreeSet::new(),
        args: Vec::new(),
    };
    for line in text.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            break;
        };
        let rest = rest.trim();
        if let Some(v) = rest.strip_prefix("expect:") {
            e.outcome = v.trim().to_string();
        } else if let Some(v) = rest.strip_prefix("codes:") {
            e.codes.extend(
                v.split(',')
                    .map(|c| c.trim().to_string())
                    .filter(|c| !c.is_empty()),
            );
        } else if let Some(v) = rest.strip_prefix("args:") {
            e.args.extend(v.split_whitespace().map(str::to_string));
        }
    }
    e
}

/// (line of the mark's target, 1-based column, caret count, code)
fn marks(text: &str) -> Vec<(usize, usize, usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let trimmed = rest.trim_start();
        if !trimmed.starts_with('^') {
            continue;
        }
        let col = line.len() - trimmed.len() + 1;
        let carets = trimmed.chars().take_while(|c| *c == '^').count();
        let code = trimmed[carets..].trim().to_string();
        // The target is the nearest line above that is not itself a mark.
        let mut target = i;
        while target > 0 {
            target -= 1;
            let t = lines[target].trim_start_matches('#').trim_start();
            if !(lines[target].starts_with('#') && t.starts_with('^')) {
                break;
            }
        }
        out.push((target + 1, col, carets, code));
    }
    out
}

/// `plan written (720 bytes)` → `plan written (N bytes)`: a plan's size depends on how
/// the compiling host resolves names (an IPv4 or IPv6 first address), not on relaydc.
fn normalise_plan_size(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("plan written (") {
        let (head, tail) = rest.split_at(i + "plan written (".len());
        out.push_str(head);
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["seed", "valid", "invalid", "legacy"] {
        let Ok(entries) = std::fs::read_dir(workspace().join("corpus").join(dir)) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "conf") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn corpus() {
    std::env::set_current_dir(workspace()).expect("workspace root");
    relaydc_testsuite::fix_key_modes();
    let files = corpus_files();
    assert!(files.len() >= 6, "the corpus is missing");
    let mut failures = Vec::new();
    for path in &files {
        let rel = path
            .strip_prefix(workspace())
            .unwrap_or(path)
            .to_string_lossy()
            .replace("/../", "/");
        let rel = rel.trim_start_matches("../").to_string();
        let text = std::fs::read_to_string(path).expect("read corpus file");
        let expect_file = path.with_extension("expect");
        let expect = if expect_file.exists() {
            header(&std::fs::read_to_string(&expect_file).expect("read expect"))
        } else {
            header(&text)
        };
        if expect.outcome.is_empty() {
            failures.push(format!("{rel}: no `# expect:` header"));
            continue;
        }
        // `# args: --run compile` runs `relaydc compile` (for deploy-host facts, which
        // `check` never looks at) into a scratch file instead of `relaydc check`.
        let compile = expect.args.iter().any(|a| a == "compile");
        let scratch = std::env::temp_dir()
            .join(format!("relaydc-corpus-{}.bin", std::process::id()))
            .to_string_lossy()
            .to_string();
        let command = |format: &'static str| -> Vec<String> {
            let mut a: Vec<String> = if compile {
                vec!["compile".into(), "-o".into(), scratch.clone()]
            } else {
                vec!["check".into()]
            };
            if !format.is_empty() {
                a.extend(["--format".to_string(), format.to_string()]);
            } else {
                a.extend(["--color".to_string(), "never".to_string()]);
            }
            a.extend(
                expect
                    .args
                    .iter()
                    .filter(|x| *x != "--run" && *x != "compile")
                    .cloned(),
            );
            a.push(rel.clone());
            a
        };
        let short_args = command("short");
        let args: Vec<&str> = short_args.iter().map(String::as_str).collect();
        let (code, short) = run(&args);
        let want_code = if expect.outcome == "error" { 1 } else { 0 };
        if code != want_code {
            failures.push(format!("{rel}: exit {code}, expected {want_code}\n{short}"));
        }
        let got: BTreeSet<String> = short
            .lines()
            .filter_map(|l| l.split_once("[RD").map(|(_, r)| format!("RD{}", &r[..4])))
            .collect();
        if got != expect.codes {
            failures.push(format!(
                "{rel}: codes {got:?}, expected {:?}\n{short}",
                expect.codes
            ));
        }
        let has_warnings = short.contains(": warning[");
        if expect.outcome == "ok" && has_warnings {
            failures.push(format!("{rel}: expected no warnings\n{short}"));
        }
        if expect.outcome == "warning" && !has_warnings {
            failures.push(format!("{rel}: expected warnings\n{short}"));
        }
        // Inline marks, checked against the JSON form (exact spans).
        let json_args = command("json");
        let jargs: Vec<&str> = json_args.iter().map(String::as_str).collect();
        let (_, json) = run(&jargs);
        let doc: serde_json::Value =
            serde_json::from_str(json.trim_end_matches(|c| c != '}')).unwrap_or_default();
        let diags = doc["diagnostics"].as_array().cloned().unwrap_or_default();
        for (line, col, len, code) in marks(&text) {
            let hit = diags.iter().any(|d| {
                let loc = &d["location"];
                d["code"] == code.as_str()
                    && loc["file"] == rel.as_str()
                    && loc["line"] == line
                    && (loc["column"] == col || (col == 2 && loc["column"] == 1))
                    && (loc["end_line"] != line
                        || loc["end_column"].as_u64().unwrap_or(0)
                            - loc["column"].as_u64().unwrap_or(0)
                            == len as u64)
            });
            if !hit {
                failures.push(format!(
                    "{rel}:{line}:{col}: no {code} spanning {len} columns here\n{short}"
                ));
            }
        }
        let human_args = command("");
        let (_, human) = run(&human_args.iter().map(String::as_str).collect::<Vec<_>>());
        let snapshot = normalise_plan_size(
            &format!("exit: {code}\n--- short\n{short}--- human\n{human}")
                .replace(&scratch, "PLAN"),
        );
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("x")
            .to_string();
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(path.parent().expect("corpus dir"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_input_file(path);
        settings.set_omit_expression(true);
        settings.bind(|| insta::assert_snapshot!(stem, snapshot));
    }
    assert!(
        failures.is_empty(),
        "{} corpus failures:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
