//! `--format human`: codespan-reporting's rendering with source excerpts, labels for
//! macro definitions, help lines and suggested rewrites.

use super::{Applicability, Diagnostic, Severity};
use crate::source::SourceMap;
use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use codespan_reporting::term::termcolor::WriteColor;

pub fn render(
    out: &mut dyn WriteColor,
    sources: &SourceMap,
    diags: &[Diagnostic],
) -> std::io::Result<()> {
    let mut files = SimpleFiles::new();
    let ids: Vec<usize> = sources
        .files()
        .map(|(_, f)| files.add(f.name.clone(), f.text.clone()))
        .collect();
    let config = term::Config::default();
    for d in diags {
        let severity = match d.severity {
            Severity::Error => cs::Severity::Error,
            Severity::Warning => cs::Severity::Warning,
            Severity::Note => cs::Severity::Note,
        };
        let mut labels = vec![cs::Label::primary(
            ids[d.primary.file.0 as usize],
            d.primary.range(),
        )];
        for l in &d.labels {
            labels.push(
                cs::Label::secondary(ids[l.span.file.0 as usize], l.span.range())
                    .with_message(&l.message),
            );
        }
        let mut notes: Vec<String> = d.help.iter().map(|h| format!("help: {h}")).collect();
        for f in &d.fixes {
            let exact = match f.applicability {
                Applicability::MachineApplicable => "",
                Applicability::MaybeIncorrect => " (check that the meaning is what you want)",
            };
            let original = sources.text(f.span);
            if f.replacement.is_empty() {
                notes.push(format!("fix: remove `{original}`{exact}"));
            } else if f.message.starts_with("did you mean") {
                notes.push(format!("fix: {}{exact}", f.message));
            } else {
                notes.push(format!(
                    "fix: {}: `{}`{exact}",
                    f.message,
                    f.replacement.replace('\n', "` and `")
                ));
            }
        }
        if let Some(r) = &d.relayd {
            if *r != d.message {
                notes.push(format!("relayd says: {r}"));
            }
        }
        let diag = cs::Diagnostic::new(severity)
            .with_code(d.code.id())
            .with_message(&d.message)
            .with_labels(labels)
            .with_notes(notes);
        term::emit(out, &config, &files, &diag)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    Ok(())
}
