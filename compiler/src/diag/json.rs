//! `--format json`: the stable schema documented in `spec/diagnostics.md`.

use super::{Diagnostic, Severity};
use crate::source::{SourceMap, Span};
use serde_json::{json, Value};

/// Per input file: its name, release and why.
pub struct FileInfo {
    pub name: String,
    pub release: String,
    pub reason: String,
}

pub fn location(sources: &SourceMap, span: Span) -> Value {
    let file = sources.file(span.file);
    let (line, column) = file.line_col(span.start as usize);
    let (end_line, end_column) = file.line_col(span.end as usize);
    json!({
        "file": file.name,
        "line": line,
        "column": column,
        "end_line": end_line,
        "end_column": end_column,
        "byte_start": span.start,
        "byte_end": span.end,
    })
}

pub fn document(sources: &SourceMap, files: &[FileInfo], diags: &[Diagnostic]) -> Value {
    let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
    json!({
        "version": 1,
        "tool": { "name": "relaydc", "version": env!("CARGO_PKG_VERSION") },
        "files": files.iter().map(|f| json!({ "name": f.name, "release": f.release, "release_reason": f.reason })).collect::<Vec<_>>(),
        "summary": { "errors": count(Severity::Error), "warnings": count(Severity::Warning), "notes": count(Severity::Note) },
        "diagnostics": diags.iter().map(|d| json!({
            "code": d.code.id(),
            "name": d.code.info().name,
            "severity": d.severity,
            "message": d.message,
            "relayd_message": d.relayd,
            "location": location(sources, d.primary),
            "labels": d.labels.iter().map(|l| json!({ "message": l.message, "location": location(sources, l.span) })).collect::<Vec<_>>(),
            "help": d.help,
            "fixes": d.fixes.iter().map(|f| json!({
                "message": f.message,
                "applicability": f.applicability,
                "replacement": f.replacement,
                "location": location(sources, f.span),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
