//! `--format short`: `FILE:LINE:COL: SEVERITY[CODE]: MESSAGE`, one line per finding, with
//! relayd's own message text for the checks relayd makes.

use super::{position, Diagnostic};
use crate::source::SourceMap;
use std::io::Write;

pub fn render(
    out: &mut dyn Write,
    sources: &SourceMap,
    diags: &[Diagnostic],
) -> std::io::Result<()> {
    for d in diags {
        let (file, line, col) = position(sources, d.primary);
        writeln!(
            out,
            "{file}:{line}:{col}: {}[{}]: {}",
            d.severity,
            d.code,
            d.short_message()
        )?;
    }
    Ok(())
}
