//! `relaydc explain CODE`: prints a code's explanation from the catalog.

use relaydc_spec::codes::CATALOG;
use relaydc_spec::Code;
use std::io::Write;

pub fn run(code: Option<&str>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    match code {
        None => {
            for c in CATALOG {
                let _ = writeln!(
                    out,
                    "{}  {:<8} {:<26} {}",
                    c.id,
                    c.severity.to_string(),
                    c.name,
                    c.title
                );
            }
            0
        }
        Some(text) => match Code::parse(text)
            .or_else(|| CATALOG.iter().find(|c| c.name == text).map(|c| c.code))
        {
            Some(c) => {
                let _ = write!(out, "{}", c.info().explanation);
                0
            }
            None => {
                let _ = writeln!(
                    err,
                    "relaydc: no diagnostic code `{text}` (see `relaydc explain` for the list)"
                );
                2
            }
        },
    }
}
