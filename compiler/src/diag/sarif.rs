//! `--format sarif`: SARIF 2.1.0 (one run; one rule per code used), for code scanning.

use super::{Diagnostic, Severity};
use crate::source::{SourceMap, Span};
use serde_json::{json, Value};

fn region(sources: &SourceMap, span: Span) -> Value {
    let file = sources.file(span.file);
    let (line, column) = file.line_col(span.start as usize);
    let (end_line, end_column) = file.line_col(span.end.max(span.start) as usize);
    json!({
        "startLine": line,
        "startColumn": column,
        "endLine": end_line,
        "endColumn": end_column.max(if end_line == line { column } else { 1 }),
        "byteOffset": span.start,
        "byteLength": span.end.saturating_sub(span.start),
    })
}

fn artifact(sources: &SourceMap, span: Span) -> Value {
    json!({ "uri": sources.file(span.file).name.trim_start_matches("./") })
}

fn physical(sources: &SourceMap, span: Span) -> Value {
    json!({ "artifactLocation": artifact(sources, span), "region": region(sources, span) })
}

pub fn document(sources: &SourceMap, diags: &[Diagnostic]) -> Value {
    let mut codes: Vec<_> = diags.iter().map(|d| d.code).collect();
    codes.sort();
    codes.dedup();
    let rules: Vec<Value> = codes
        .iter()
        .map(|c| {
            let info = c.info();
            json!({
                "id": info.id,
                "name": info.name,
                "shortDescription": { "text": info.title },
                "fullDescription": { "text": info.title },
                "help": { "text": info.explanation, "markdown": info.explanation },
                "defaultConfiguration": { "level": level(info.severity) },
            })
        })
        .collect();
    let results: Vec<Value> = diags
        .iter()
        .map(|d| {
            let mut message = d.message.clone();
            for h in &d.help {
                message.push_str("\nhelp: ");
                message.push_str(h);
            }
            let mut r = json!({
                "ruleId": d.code.id(),
                "ruleIndex": codes.iter().position(|c| *c == d.code).unwrap_or(0),
                "level": level(d.severity),
                "message": { "text": message },
                "locations": [ { "physicalLocation": physical(sources, d.primary) } ],
            });
            if !d.labels.is_empty() {
                r["relatedLocations"] = Value::Array(
                    d.labels
                        .iter()
                        .enumerate()
                        .map(|(i, l)| json!({ "id": i, "physicalLocation": physical(sources, l.span), "message": { "text": l.message } }))
                        .collect(),
                );
            }
            if !d.fixes.is_empty() {
                r["fixes"] = Value::Array(
                    d.fixes
                        .iter()
                        .map(|f| json!({
                            "description": { "text": f.message },
                            "artifactChanges": [ {
                                "artifactLocation": artifact(sources, f.span),
                                "replacements": [ {
                                    "deletedRegion": region(sources, f.span),
                                    "insertedContent": { "text": f.replacement },
                                } ],
                            } ],
                        }))
                        .collect(),
                );
            }
            r
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [ {
            "tool": { "driver": {
                "name": "relaydc",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://man.openbsd.org/relayd.conf.5",
                "rules": rules,
            } },
            "results": results,
        } ],
    })
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}
