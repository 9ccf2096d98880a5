//! The `relaydc` command line: argument parsing, running the stages, rendering.
//!
//! Exit codes: 0 no errors, 1 errors found, 2 usage or I/O problems.

mod compile;
mod explain;
mod inspect;

use crate::check::{self, FileChecks};
use crate::diag::{self, Diagnostics, Severity};
use crate::era;
use crate::lex;
use crate::lower;
use crate::parse;
use crate::source::{PathRules, SourceMap};
use crate::verify;
use clap::{Parser, Subcommand, ValueEnum};
use codespan_reporting::term::termcolor::{Ansi, NoColor};
use relaydc_spec::Release;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "relaydc",
    version,
    about = "Check and compile OpenBSD relayd configurations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check relayd.conf files and report every problem found.
    Check(CheckArgs),
    /// Compile a relayd.conf into a plan for relayd-run (nothing is written when the
    /// configuration has errors).
    Compile(compile::CompileArgs),
    /// Print a plan's header and contents, as relayd-run will run them.
    Inspect(inspect::InspectArgs),
    /// Print the object graph (relays, redirects, routers, protocols, tables, hosts) as
    /// DOT, e.g. `relaydc graph relayd.conf | dot -Tsvg > graph.svg`.
    Graph(CheckArgs),
    /// Print the explanation of a diagnostic code (e.g. `relaydc explain RD0302`).
    Explain {
        /// The code, e.g. RD0302; without it, list all codes.
        code: Option<String>,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Define a macro that the file cannot override (`-D name=value`, split at the last `=`).
    #[arg(short = 'D', value_name = "NAME=VALUE")]
    pub define: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// `--deny warnings` makes warnings errors (exit 1).
    #[arg(long, value_name = "WHAT", value_parser = ["warnings"])]
    pub deny: Vec<String>,
    /// Judge the files by this relayd release (`5.5`, `6.6`, `current`, `legacy`, …)
    /// instead of inferring it.
    #[arg(long, value_name = "RELEASE")]
    pub era: Option<String>,
    /// Report files only the deploy host has (keypairs, CA files, rule files) as
    /// warnings instead of errors. Includes are still read.
    #[arg(long)]
    pub no_file_checks: bool,
    /// Look up absolute paths (includes, keypairs, CA files) under this directory.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Judge certificate validity at this time (RFC 3339 UTC, `2026-11-26T00:00:00Z`)
    /// instead of the real clock.
    #[arg(long, value_name = "TIME", value_parser = check::parse_now)]
    pub now: Option<i64>,
    /// Colour for the human format.
    #[arg(long, value_enum, default_value_t = ColorMode::Auto)]
    pub color: ColorMode,
    /// Files to check; `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Human,
    Short,
    Json,
    Sarif,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColorMode {
    Auto,
    Always,
    Never,
}

/// The result of checking files: everything needed to render it.
pub struct Analysis {
    pub sources: SourceMap,
    pub diagnostics: Vec<diag::Diagnostic>,
    pub files: Vec<diag::json::FileInfo>,
    /// Files that could not be read at all (exit 2).
    pub unreadable: Vec<String>,
    /// The lowered configuration of each file that could be read.
    pub configs: Vec<crate::ir::Config>,
    /// For each config: its main file and the release it was judged by.
    pub mains: Vec<(crate::source::FileId, Release)>,
}

/// Runs the front end on `args.files`.
pub fn analyze(args: &CheckArgs, forced: Option<Release>) -> Analysis {
    let mut sources = SourceMap::new(PathRules {
        root: args.root.clone(),
    });
    let mut diags = Diagnostics::default();
    let mut files = Vec::new();
    let mut unreadable = Vec::new();
    let mut configs = Vec::new();
    let mut mains = Vec::new();
    let now = args.now.unwrap_or_else(check::system_now);
    let file_checks = if args.no_file_checks {
        FileChecks::Lenient
    } else {
        FileChecks::Strict
    };
    for name in &args.files {
        let (main, lossy) = match sources.load_main(name) {
            Ok(x) => x,
            Err(e) => {
                unreadable.push(format!("{name}: {}", e.reason));
                continue;
            }
        };
        if lossy {
            lex::expand::report_not_utf8(&sources, main, &mut diags);
        }
        let lexed = lex::expand::lex(&mut sources, main, &args.define, &mut diags);
        let ast = parse::parse(&lexed.tokens, &mut diags);
        let judgement = era::judge(&ast, forced);
        check::run(
            &ast,
            &judgement,
            &lexed.tokens,
            &lexed.macros,
            &sources,
            file_checks,
            now,
            &mut diags,
        );
        // Each stage's input is freed as soon as the next stage has what it needs, so a
        // large file's later stages reuse that memory instead of faulting in more.
        drop(lexed);
        let config = lower::lower(&ast, judgement.release, &sources.rules, &mut diags);
        drop(ast);
        // After lexing or syntax errors, "nothing is defined" would only echo them.
        let syntax_broken = diags
            .iter()
            .any(|d| d.severity == Severity::Error && matches!(&d.code.id()[..4], "RD01" | "RD02"));
        verify::run(
            &config,
            crate::source::Span::new(main, 0, 0),
            syntax_broken,
            &mut diags,
        );
        configs.push(config);
        mains.push((main, judgement.release));
        files.push(diag::json::FileInfo {
            name: sources.file(main).name.clone(),
            release: judgement.release.to_string(),
            reason: judgement.reason(),
        });
    }
    if args.deny.iter().any(|d| d == "warnings") {
        diags.deny_warnings();
    }
    Analysis {
        sources,
        diagnostics: diags.sorted(),
        files,
        unreadable,
        configs,
        mains,
    }
}

/// Entry point shared by the binary and the tests.
pub fn run(args: Vec<std::ffi::OsString>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = if e.use_stderr() {
                write!(err, "{e}")
            } else {
                write!(out, "{e}")
            };
            return code;
        }
    };
    match cli.command {
        Command::Explain { code } => explain::run(code.as_deref(), out, err),
        Command::Check(args) => check_command(&args, out, err),
        Command::Graph(args) => graph_command(&args, out, err),
        Command::Compile(args) => compile::run(&args, out, err),
        Command::Inspect(args) => inspect::run(&args, out, err),
    }
}

fn check_command(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let forced = match &args.era {
        None => None,
        Some(e) => match Release::parse(e) {
            Some(r) => Some(r),
            None => {
                let _ = writeln!(err, "relaydc: unknown release `{e}` for --era (use 4.1 … 7.9, hoststated, legacy, filter, current)");
                return 2;
            }
        },
    };
    let analysis = analyze(args, forced);
    report(args, &analysis, out, err)
}

fn report(args: &CheckArgs, analysis: &Analysis, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    for u in &analysis.unreadable {
        let _ = writeln!(err, "relaydc: cannot read {u}");
    }
    let rendered = render(args, analysis, out);
    if rendered.is_err() {
        return 2;
    }
    if !analysis.unreadable.is_empty() {
        2
    } else if analysis
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Error)
    {
        1
    } else {
        0
    }
}

fn graph_command(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let analysis = analyze(args, None);
    for u in &analysis.unreadable {
        let _ = writeln!(err, "relaydc: cannot read {u}");
    }
    if !analysis.unreadable.is_empty() {
        return 2;
    }
    let errors = analysis
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    if errors > 0 {
        let _ = diag::short::render(err, &analysis.sources, &analysis.diagnostics);
        let _ = writeln!(
            err,
            "relaydc: {errors} error(s); the graph shows what could be resolved"
        );
    }
    for c in &analysis.configs {
        if write!(out, "{}", verify::graph::dot(c)).is_err() {
            return 2;
        }
    }
    i32::from(errors > 0)
}

/// Prints the diagnostics in the chosen format.
pub(crate) fn render(
    args: &CheckArgs,
    analysis: &Analysis,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match args.format {
        Format::Short => diag::short::render(out, &analysis.sources, &analysis.diagnostics),
        Format::Json => {
            let doc =
                diag::json::document(&analysis.sources, &analysis.files, &analysis.diagnostics);
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        Format::Sarif => {
            let doc = diag::sarif::document(&analysis.sources, &analysis.diagnostics);
            writeln!(
                out,
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        Format::Human => human(args, analysis, out),
    }
}

pub(crate) fn human(
    args: &CheckArgs,
    analysis: &Analysis,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let color = match args.color {
        ColorMode::Always => true,
        ColorMode::Never => false,
        ColorMode::Auto => {
            std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal()
        }
    };
    let mut buf = Vec::new();
    if color {
        diag::human::render(
            &mut Ansi::new(&mut buf),
            &analysis.sources,
            &analysis.diagnostics,
        )?;
    } else {
        diag::human::render(
            &mut NoColor::new(&mut buf),
            &analysis.sources,
            &analysis.diagnostics,
        )?;
    }
    out.write_all(&buf)?;
    let count = |s: Severity| {
        analysis
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    for f in &analysis.files {
        writeln!(out, "{}: judged as {}", f.name, f.reason)?;
    }
    if errors == 0 {
        writeln!(
            out,
            "configuration OK ({warnings} warning{})",
            if warnings == 1 { "" } else { "s" }
        )
    } else {
        writeln!(
            out,
            "{errors} error{}, {warnings} warning{}",
            if errors == 1 { "" } else { "s" },
            if warnings == 1 { "" } else { "s" }
        )
    }
}
