//! Diagnostics: what every stage reports, and how they are rendered.
//!
//! Stages never print and never fail on a bad config: they push [`Diagnostic`]s into a
//! [`Diagnostics`] sink and go on. The renderers (`human`, `short`, `json`, `sarif`) turn
//! the collected, sorted list into output at the edge (the CLI).

pub mod human;
pub mod json;
pub mod sarif;
pub mod short;

use crate::source::{SourceMap, Span};
pub use relaydc_spec::{Code, Severity};
use serde::Serialize;

/// A secondary location with a message (for example a macro's definition).
#[derive(Clone, Debug, Serialize)]
pub struct Label {
    #[serde(skip)]
    pub span: Span,
    pub message: String,
}

/// Whether a suggested edit can be applied without a human looking at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Applicability {
    /// The edit keeps the meaning exactly.
    MachineApplicable,
    /// The edit is what the user most likely wants, but changes meaning in corner cases.
    MaybeIncorrect,
}

/// A suggested edit: replace `span` by `replacement`.
#[derive(Clone, Debug, Serialize)]
pub struct Fix {
    #[serde(skip)]
    pub span: Span,
    pub replacement: String,
    pub message: String,
    pub applicability: Applicability,
}

/// One finding.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    /// The message in the user's terms (lower case, no final period, one line).
    pub message: String,
    /// relayd's own message for this check, printed by `--format short` so scripts
    /// written against `relayd -n` keep matching.
    pub relayd: Option<String>,
    pub primary: Span,
    pub labels: Vec<Label>,
    /// Further sentences ("help: …").
    pub help: Vec<String>,
    pub fixes: Vec<Fix>,
}

impl Diagnostic {
    pub fn new(code: Code, primary: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            severity: code.default_severity(),
            message: message.into(),
            relayd: None,
            primary,
            labels: Vec::new(),
            help: Vec::new(),
            fixes: Vec::new(),
        }
    }

    /// A check relayd makes too: its message is both ours and relayd's.
    pub fn relayd(code: Code, primary: Span, message: impl Into<String>) -> Self {
        let message = message.into();
        let mut d = Diagnostic::new(code, primary, message.clone());
        d.relayd = Some(message);
        d
    }

    pub fn severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }
    pub fn relayd_message(mut self, message: impl Into<String>) -> Self {
        self.relayd = Some(message.into());
        self
    }
    pub fn label(mut self, span: Span, message: impl Into<String>) -> Self {
        self.labels.push(Label {
            span,
            message: message.into(),
        });
        self
    }
    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.help.push(text.into());
        self
    }
    pub fn fix(
        mut self,
        span: Span,
        replacement: impl Into<String>,
        message: impl Into<String>,
        applicability: Applicability,
    ) -> Self {
        self.fixes.push(Fix {
            span,
            replacement: replacement.into(),
            message: message.into(),
            applicability,
        });
        self
    }

    /// The message `--format short` prints.
    pub fn short_message(&self) -> &str {
        self.relayd.as_deref().unwrap_or(&self.message)
    }
}

/// The sink every stage reports into.
#[derive(Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        self.list.push(d);
    }
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.list.extend(ds);
    }
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn count(&self, severity: Severity) -> usize {
        self.list.iter().filter(|d| d.severity == severity).count()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.list.iter()
    }
    pub fn len(&self) -> usize {
        self.list.len()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    /// Turns every warning into an error (`--deny warnings`).
    pub fn deny_warnings(&mut self) {
        for d in &mut self.list {
            if d.severity == Severity::Warning {
                d.severity = Severity::Error;
            }
        }
    }
    /// Sorted by file (in load order), then position, then severity; duplicates
    /// (same code, same place, same message) removed.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.list.sort_by(|a, b| {
            (a.primary.file, a.primary.start, a.severity, a.code).cmp(&(
                b.primary.file,
                b.primary.start,
                b.severity,
                b.code,
            ))
        });
        self.list
            .dedup_by(|a, b| a.code == b.code && a.primary == b.primary && a.message == b.message);
        self.list
    }
}

/// 1-based line and column of a span's start, and the file name shown.
pub fn position(sources: &SourceMap, span: Span) -> (&str, usize, usize) {
    let file = sources.file(span.file);
    let (line, col) = file.line_col(span.start as usize);
    (&file.name, line, col)
}
