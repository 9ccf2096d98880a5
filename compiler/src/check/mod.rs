//! Checks over the syntax tree. Each module is one family of checks; all of them
//! report into the sink and never stop at the first finding.
//!
//! * `values`  — numbers, ports, addresses, names, check specs: one value at a time;
//! * `context` — options in the wrong place and rule option combinations;
//! * `legacy`  — forms of other releases, judged by the file's release (`era`);
//! * `files`   — files relayd opens while parsing (keypairs, CA files, rule files), and
//!   the TLS material in them (parsed, matched and dated against `Ctx::now`);
//! * `tls`     — TLS policy (versions, ciphers, curves) as relayd-run will apply it;
//! * `platform` — relayd features that have no meaning on Linux.

mod context;
pub(crate) mod files;
mod legacy;
mod platform;
mod tls;
mod values;

pub use files::{parse_now, system_now};

use crate::diag::{Diagnostic, Diagnostics, Severity};
use crate::era::Judgement;
use crate::lex::expand::Macro;
use crate::lex::{Origin, Token};
use crate::parse::ast::File;
use crate::source::{SourceMap, Span};
use relaydc_spec::Release;
use std::collections::HashMap;

/// How to treat files that only the deploy host has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileChecks {
    /// Missing files are errors, as for relayd.
    Strict,
    /// Missing files are warnings (`--no-file-checks`).
    Lenient,
}

/// What every check may look at.
pub struct Ctx<'a> {
    pub sources: &'a SourceMap,
    pub release: Release,
    pub macros: &'a [Macro],
    pub file_checks: FileChecks,
    /// "Now" for certificate validity, in seconds since the Unix epoch (`--now`).
    pub now: i64,
    origins: HashMap<Span, &'a Origin>,
    diags: &'a mut Diagnostics,
}

impl<'a> Ctx<'a> {
    /// Reports `d`, adding the macro definition behind its primary span if any.
    pub fn report(&mut self, mut d: Diagnostic) {
        if let Some(o) = self.origins.get(&d.primary) {
            if !d.labels.iter().any(|l| l.span == o.def) {
                d = d.label(o.def, format!("`{}` is defined here", o.name));
            }
        }
        self.diags.push(d);
    }

    /// Severity for a deploy-host file finding.
    pub fn file_severity(&self) -> Severity {
        match self.file_checks {
            FileChecks::Strict => Severity::Error,
            FileChecks::Lenient => Severity::Warning,
        }
    }

    pub fn text(&self, span: Span) -> &str {
        self.sources.text(span)
    }
}

/// Runs every check.
#[allow(
    clippy::too_many_arguments,
    reason = "the stages' outputs and the two check options, passed straight through"
)]
pub fn run(
    file: &File,
    judgement: &Judgement,
    tokens: &[Token],
    macros: &[Macro],
    sources: &SourceMap,
    file_checks: FileChecks,
    now: i64,
    diags: &mut Diagnostics,
) {
    let origins = tokens
        .iter()
        .filter_map(|t| t.origin.as_ref().map(|o| (t.span, o)))
        .collect();
    let mut ctx = Ctx {
        sources,
        release: judgement.release,
        macros,
        file_checks,
        now,
        origins,
        diags,
    };
    values::check(file, &mut ctx);
    context::check(file, &mut ctx);
    legacy::check(file, judgement, &mut ctx);
    files::check(file, &mut ctx);
    tls::check(file, &mut ctx);
    platform::check(file, &mut ctx);
    unused_macros(&mut ctx);
}

fn unused_macros(ctx: &mut Ctx) {
    let unused: Vec<&Macro> = ctx
        .macros
        .iter()
        .filter(|m| !m.used && !m.persistent)
        .collect();
    for m in unused {
        if !m
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            continue; // already reported as unreachable
        }
        let d = Diagnostic::new(
            crate::diag::Code::UnusedMacro,
            m.name_span,
            format!("macro `{}` is never used", m.name),
        )
        .relayd_message(format!("macro '{}' not used", m.name))
        .help("remove it, or use it as `$".to_string() + &m.name + "`");
        ctx.diags.push(d);
    }
}
