//! Macros, includes, numbers and keywords: relayd's `yylex` on top of the raw tokens.
//!
//! * `name = value` at the top level (its own line) defines a macro from the next line
//!   on; a later definition replaces an earlier one, except that `-D name=value` on the
//!   command line is persistent and wins over the file.
//! * `$name` at the start of a token is replaced by the macro's value, which is lexed
//!   again (so one macro can give several tokens, a keyword or a number) with `$`
//!   expansion off: there is no nested expansion at use time.
//! * `include "path"` splices the file's tokens right after the path, as relayd's
//!   parser action does (pushfile, then a newline, then the file, then its EOF newline).
//! * A run of digits is a NUMBER only if whitespace, `)`, `,`, `/`, `}`, `=` or EOF
//!   follows; a `-` directly before it makes it negative. Anything else is a word.

use super::raw::{self, CommentEnd, QuoteEnd, Raw};
use super::{Kw, Origin, Tok, Token};
use crate::diag::{Applicability, Code, Diagnostic, Diagnostics};
use crate::source::{FileId, SourceMap, Span};
use logos::Logos;
use std::collections::HashMap;
use std::path::PathBuf;

/// relayd's lexer buffer holds 8096 bytes: quoted strings may hold 8094, words 8095.
const MAX_QUOTED: usize = 8094;
const MAX_WORD: usize = 8095;

/// A defined macro.
#[derive(Clone, Debug)]
pub struct Macro {
    pub name: String,
    pub value: String,
    /// The name in its definition.
    pub name_span: Span,
    /// The value in its definition (inside the quotes for a quoted value).
    pub value_span: Span,
    /// Whether `value_span` maps byte for byte onto `value`.
    pub exact: bool,
    pub persistent: bool,
    pub used: bool,
}

/// The lexer's output.
#[derive(Debug, Default)]
pub struct Lexed {
    pub tokens: Vec<Token>,
    /// Every macro ever defined (including replaced ones), for the unused-macro check.
    pub macros: Vec<Macro>,
    /// Files that failed to load or decode, already reported.
    pub failed_includes: usize,
}

/// Lexes `main` and everything it includes. `defines` are the `-D name=value` arguments.
pub fn lex(
    sources: &mut SourceMap,
    main: FileId,
    defines: &[String],
    diags: &mut Diagnostics,
) -> Lexed {
    let mut ex = Expander {
        sources,
        diags,
        macros: HashMap::new(),
        history: Vec::new(),
        out: Vec::new(),
        depth: 0,
        stack: Vec::new(),
        failed: 0,
    };
    ex.command_line(defines);
    ex.file(main);
    let mut macros = ex.history;
    macros.extend(ex.macros.into_values());
    macros.sort_by_key(|m| (m.name_span, m.name.clone()));
    Lexed {
        tokens: ex.out,
        macros,
        failed_includes: ex.failed,
    }
}

struct Expander<'a> {
    sources: &'a mut SourceMap,
    diags: &'a mut Diagnostics,
    macros: HashMap<String, Macro>,
    /// Definitions that were replaced, kept for the unused check.
    history: Vec<Macro>,
    out: Vec<Token>,
    /// Brace depth, across include boundaries.
    depth: i32,
    /// Canonical paths of the files being read, for cycle detection.
    stack: Vec<PathBuf>,
    failed: usize,
}

/// One raw token of a file: kind (or the unmatched character) and byte range.
type RawTok = (Result<Raw, ()>, std::ops::Range<usize>);

fn raw_tokens(text: &str) -> Vec<RawTok> {
    let mut lex = Raw::lexer(text);
    let mut out = Vec::new();
    while let Some(t) = lex.next() {
        out.push((t, lex.span()));
    }
    out
}

impl Expander<'_> {
    /// Defines the persistent `-D` macros, from a pseudo-file holding the arguments.
    fn command_line(&mut self, defines: &[String]) {
        if defines.is_empty() {
            return;
        }
        let text = defines.join("\n");
        let file = self.sources.add("<command line>", text);
        let mut offset = 0;
        for arg in defines {
            let whole = Span::new(file, offset, offset + arg.len());
            match arg.rfind('=') {
                Some(eq) => {
                    let m = Macro {
                        name: arg[..eq].to_string(),
                        value: arg[eq + 1..].to_string(),
                        name_span: Span::new(file, offset, offset + eq),
                        value_span: Span::new(file, offset + eq + 1, offset + arg.len()),
                        exact: true,
                        persistent: true,
                        used: false,
                    };
                    if let Some(old) = self.macros.insert(m.name.clone(), m) {
                        self.history.push(old);
                    }
                }
                None => self.diags.push(
                    Diagnostic::new(
                        Code::BadDefine,
                        whole,
                        format!("could not parse macro definition {arg}"),
                    )
                    .relayd_message(format!("could not parse macro definition {arg}"))
                    .help("write `-D name=value`"),
                ),
            }
            offset += arg.len() + 1;
        }
    }

    fn push(&mut self, tok: Tok, span: Span, quoted: bool, origin: Option<Origin>) {
        match tok {
            Tok::LBrace => self.depth += 1,
            Tok::RBrace => self.depth -= 1,
            _ => {}
        }
        self.out.push(Token {
            tok,
            span,
            quoted,
            origin,
        });
    }

    fn file(&mut self, file: FileId) {
        let identity = self.sources.identity(file);
        self.stack.push(identity);
        let text = self.sources.file(file).text.clone();
        let raws = raw_tokens(&text);
        let mut cr_reported = false;
        let mut line_start = self.out.len();
        let mut i = 0;
        while i < raws.len() {
            let (kind, range) = raws[i].clone();
            let span = Span::new(file, range.start, range.end);
            let slice = &text[range.clone()];
            let at_line_start = self.out.len() == line_start;
            match kind {
                Ok(Raw::Continuation) => {}
                Ok(Raw::CarriageReturn) => {
                    if !cr_reported {
                        cr_reported = true;
                        self.diags.push(
                            Diagnostic::new(
                                Code::CarriageReturn,
                                span,
                                "the file has carriage returns (CRLF line ends)",
                            )
                            .relayd_message("syntax error")
                            .help("relayd reads `\\r` as a character of its own: convert the file to Unix line ends (`sed -i 's/\\r$//' FILE`)"),
                        );
                    }
                }
                Ok(Raw::Comment(end)) => {
                    if end == CommentEnd::Continued {
                        self.diags.push(
                            Diagnostic::new(
                                Code::CommentContinues,
                                span,
                                "this comment ends in a backslash and swallows the next line",
                            )
                            .help("relayd joins lines before it removes comments; remove the trailing `\\`"),
                        );
                    }
                }
                Ok(Raw::Newline) => {
                    self.push(Tok::Newline, span, false, None);
                    self.maybe_define(line_start);
                    line_start = self.out.len();
                }
                Ok(Raw::Quoted(end)) => {
                    if end == QuoteEnd::Eof {
                        self.diags.push(
                            Diagnostic::relayd(
                                Code::UnterminatedString,
                                Span::new(file, range.start, range.start + 1),
                                "reached end of file while parsing quoted string",
                            )
                            .help("close the string with the same quote it starts with"),
                        );
                        self.push(Tok::Poison, span, true, None);
                    } else if let Some(skip) = self.quoted(slice, span) {
                        i = skip_line(&raws, i + skip);
                        continue;
                    }
                }
                Ok(Raw::MacroRef) => {
                    let name = &slice[1..];
                    match self.macros.get_mut(name) {
                        None => {
                            self.undefined_macro(name, span);
                            self.push(Tok::Poison, span, false, None);
                            i = skip_line(&raws, i + 1);
                            continue;
                        }
                        Some(m) => {
                            m.used = true;
                            let m = m.clone();
                            let next = text[range.end..].chars().next();
                            if self.expand(&m, span, next) {
                                i = skip_line(&raws, i + 1);
                                continue;
                            }
                            // A value ending in a word continues with adjacent source text.
                            if let Some((Ok(Raw::Word | Raw::MacroRef), r)) = raws.get(i + 1) {
                                if r.start == range.end {
                                    self.merge_word(
                                        &text[r.clone()],
                                        Span::new(file, r.start, r.end),
                                    );
                                    i += 2;
                                    continue;
                                }
                            }
                        }
                    }
                }
                Ok(Raw::Word) => {
                    let word = raw::word_text(slice);
                    if word.len() > MAX_WORD {
                        self.too_long(span);
                        i = skip_line(&raws, i + 1);
                        continue;
                    }
                    let next = text[range.end..].chars().next();
                    // hoststated's `service` starts a block, or follows `forward to`.
                    let after_forward_to = matches!(
                        self.out.as_slice(),
                        [.., a, b] if a.tok == Tok::Kw(Kw::Forward) && b.tok == Tok::Kw(Kw::To)
                    );
                    let tok = classify(
                        &word,
                        next,
                        (at_line_start && self.depth == 0) || after_forward_to,
                    );
                    self.number_or(tok, span, None);
                }
                Ok(Raw::LBrace) => self.push(Tok::LBrace, span, false, None),
                Ok(Raw::RBrace) => self.push(Tok::RBrace, span, false, None),
                Ok(Raw::Lt) => self.push(Tok::Lt, span, false, None),
                Ok(Raw::Gt) => self.push(Tok::Gt, span, false, None),
                Ok(Raw::Eq) => self.push(Tok::Eq, span, false, None),
                Ok(Raw::Comma) => self.push(Tok::Comma, span, false, None),
                Ok(Raw::Slash) => self.push(Tok::Slash, span, false, None),
                Err(()) => {
                    let c = slice.chars().next().unwrap_or('\0');
                    // `-` directly before a NUMBER makes it negative.
                    if c == '-' {
                        if let Some((Ok(Raw::Word), r)) = raws.get(i + 1) {
                            let digits = &text[r.clone()];
                            let next = text[r.end..].chars().next();
                            if r.start == range.end
                                && digits.bytes().all(|b| b.is_ascii_digit())
                                && raw::ends_number(next)
                            {
                                let whole = Span::new(file, range.start, r.end);
                                self.number_or((Tok::Str(format!("-{digits}")), true), whole, None);
                                i += 2;
                                continue;
                            }
                        }
                    }
                    self.push(Tok::Other(c), span, false, None);
                }
            }
            // The include splice happens right after the path, before the newline.
            self.maybe_include(file);
            i += 1;
        }
        let end = text.len();
        self.push(Tok::Newline, Span::new(file, end, end), false, None);
        self.maybe_define(line_start);
        self.stack.pop();
    }

    /// Pushes a quoted string; returns how many raw tokens to skip to the line end
    /// after an error (NUL byte, too long).
    fn quoted(&mut self, slice: &str, span: Span) -> Option<usize> {
        let (value, nul) = raw::unquote(slice);
        if let Some(offset) = nul {
            let at = Span::new(
                span.file,
                span.start as usize + offset,
                span.start as usize + offset + 1,
            );
            self.diags.push(
                Diagnostic::relayd(Code::NulByte, at, "syntax error")
                    .help("a NUL byte cannot appear in relayd.conf; remove it"),
            );
            self.push(Tok::Poison, span, true, None);
            return Some(1);
        }
        if value.len() > MAX_QUOTED {
            self.too_long(span);
            return Some(1);
        }
        self.push(Tok::Str(value), span, true, None);
        None
    }

    fn too_long(&mut self, span: Span) {
        self.diags.push(
            Diagnostic::relayd(Code::StringTooLong, span, "string too long")
                .help("relayd's lexer holds at most 8094 bytes in one token"),
        );
        self.push(Tok::Poison, span, false, None);
    }

    fn undefined_macro(&mut self, name: &str, span: Span) {
        let mut d = Diagnostic::relayd(
            Code::UndefinedMacro,
            span,
            format!("macro '{name}' not defined"),
        );
        // Defined later in the file? (relayd needs definitions before use.)
        let later = self.find_later_definition(name, span);
        if let Some(def) = later {
            d = d
                .label(def, "defined here, after its first use")
                .help("move the definition above its first use");
        } else if let Some(best) = closest(name, self.macros.keys().map(String::as_str)) {
            let m = &self.macros[best];
            d = d
                .label(m.name_span, format!("`{best}` is defined here"))
                .fix(
                    span,
                    format!("${best}"),
                    format!("did you mean `${best}`?"),
                    Applicability::MaybeIncorrect,
                );
        }
        self.diags.push(d);
    }

    /// Looks for `name =` later in the same file, textually.
    fn find_later_definition(&self, name: &str, use_site: Span) -> Option<Span> {
        let text = &self.sources.file(use_site.file).text;
        let from = use_site.end as usize;
        let mut offset = from;
        for line in text[from..].split_inclusive('\n') {
            let trimmed = line.trim_start_matches([' ', '\t']);
            let lead = line.len() - trimmed.len();
            if let Some(rest) = trimmed.strip_prefix(name) {
                if rest.trim_start_matches([' ', '\t']).starts_with('=') {
                    let start = offset + lead;
                    return Some(Span::new(use_site.file, start, start + name.len()));
                }
            }
            offset += line.len();
        }
        None
    }

    /// Expands `m` at `use_site`; `next` is the source character after the reference.
    /// Returns true when a comment inside the value swallowed the rest of the line.
    fn expand(&mut self, m: &Macro, use_site: Span, next: Option<char>) -> bool {
        let raws = raw_tokens(&m.value);
        let def_of = |r: &std::ops::Range<usize>| {
            if m.exact {
                Span::new(
                    m.value_span.file,
                    m.value_span.start as usize + r.start,
                    m.value_span.start as usize + r.end,
                )
            } else {
                m.value_span
            }
        };
        let origin = |r: &std::ops::Range<usize>| {
            Some(Origin {
                name: m.name.clone(),
                def: def_of(r),
            })
        };
        let mut i = 0;
        while i < raws.len() {
            let (kind, r) = raws[i].clone();
            let slice = &m.value[r.clone()];
            let after = if r.end == m.value.len() {
                next
            } else {
                m.value[r.end..].chars().next()
            };
            match kind {
                Ok(Raw::Continuation) => {}
                Ok(Raw::Comment(_)) => return true,
                Ok(Raw::Newline) => self.push(Tok::Newline, use_site, false, origin(&r)),
                Ok(Raw::CarriageReturn) => {}
                Ok(Raw::Quoted(QuoteEnd::Closed)) => {
                    let (value, nul) = raw::unquote(slice);
                    let tok = if nul.is_some() {
                        Tok::Poison
                    } else {
                        Tok::Str(value)
                    };
                    self.push(tok, use_site, true, origin(&r));
                }
                Ok(Raw::Quoted(QuoteEnd::Eof)) => {
                    self.diags.push(
                        Diagnostic::relayd(
                            Code::UnterminatedString,
                            use_site,
                            "reached end of file while parsing quoted string",
                        )
                        .label(
                            def_of(&r),
                            format!("the value of `{}` opens a quote it never closes", m.name),
                        ),
                    );
                    self.push(Tok::Poison, use_site, true, origin(&r));
                }
                Ok(Raw::MacroRef) => {
                    let d = Diagnostic::relayd(Code::NestedMacro, use_site, "syntax error");
                    let mut d = d.label(
                        def_of(&r),
                        format!("`{}` is not expanded again inside `{}`", slice, m.name),
                    );
                    d.message = format!(
                        "macro `{}` expands to `{}`, which relayd does not expand again",
                        m.name, slice
                    );
                    self.diags.push(d.help(format!(
                        "define it unquoted so it expands at definition time: `{} = {}`",
                        m.name, slice
                    )));
                    self.push(Tok::Poison, use_site, false, origin(&r));
                }
                Ok(Raw::Word) => {
                    let word = raw::word_text(slice);
                    let tok = classify(&word, after, false);
                    self.number_or(tok, use_site, origin(&r));
                }
                Ok(Raw::LBrace) => self.push(Tok::LBrace, use_site, false, origin(&r)),
                Ok(Raw::RBrace) => self.push(Tok::RBrace, use_site, false, origin(&r)),
                Ok(Raw::Lt) => self.push(Tok::Lt, use_site, false, origin(&r)),
                Ok(Raw::Gt) => self.push(Tok::Gt, use_site, false, origin(&r)),
                Ok(Raw::Eq) => self.push(Tok::Eq, use_site, false, origin(&r)),
                Ok(Raw::Comma) => self.push(Tok::Comma, use_site, false, origin(&r)),
                Ok(Raw::Slash) => self.push(Tok::Slash, use_site, false, origin(&r)),
                Err(()) => {
                    let c = slice.chars().next().unwrap_or('\0');
                    if c == '-' {
                        if let Some((Ok(Raw::Word), r2)) = raws.get(i + 1) {
                            let digits = &m.value[r2.clone()];
                            let after2 = if r2.end == m.value.len() {
                                next
                            } else {
                                m.value[r2.end..].chars().next()
                            };
                            if r2.start == r.end
                                && digits.bytes().all(|b| b.is_ascii_digit())
                                && raw::ends_number(after2)
                            {
                                self.number_or(
                                    (Tok::Str(format!("-{digits}")), true),
                                    use_site,
                                    origin(&(r.start..r2.end)),
                                );
                                i += 2;
                                continue;
                            }
                        }
                    }
                    self.push(Tok::Other(c), use_site, false, origin(&r));
                }
            }
            i += 1;
        }
        false
    }

    /// Appends adjacent source text to the word a macro expansion ended with.
    fn merge_word(&mut self, text: &str, span: Span) {
        if let Some(last) = self.out.last_mut() {
            let prefix = match &last.tok {
                Tok::Str(s) if !last.quoted => Some(s.clone()),
                Tok::Num(n) => Some(n.to_string()),
                Tok::Kw(k) => Some(k.text().to_string()),
                _ => None,
            };
            if let Some(prefix) = prefix {
                let joined = format!("{prefix}{}", raw::word_text(text));
                last.tok = match Kw::lookup(&joined) {
                    Some(k) => Tok::Kw(k),
                    None => Tok::Str(joined),
                };
                last.span = last.span.to(span);
                return;
            }
        }
        let tok = classify(&raw::word_text(text), None, false);
        self.number_or(tok, span, None);
    }

    /// Pushes a classified word; words that are all digits become numbers here, so an
    /// overflow is reported where it happens.
    fn number_or(&mut self, (tok, number): (Tok, bool), span: Span, origin: Option<Origin>) {
        if let (Tok::Str(text), true) = (&tok, number) {
            {
                match text.parse::<i64>() {
                    Ok(n) => self.push(Tok::Num(n), span, false, origin),
                    Err(_) => {
                        let why = if text.starts_with('-') {
                            "too small"
                        } else {
                            "too large"
                        };
                        self.diags.push(
                            Diagnostic::relayd(
                                Code::InvalidNumber,
                                span,
                                format!("\"{text}\" invalid number: {why}"),
                            )
                            .help("numbers are 64-bit signed integers"),
                        );
                        self.push(Tok::Poison, span, false, origin);
                    }
                }
                return;
            }
        }
        self.push(tok, span, false, origin);
    }

    /// At a line end: `NAME = VALUE` at the top level defines a macro.
    fn maybe_define(&mut self, line_start: usize) {
        let line = &self.out[line_start..];
        let [name, eq, value, nl] = line else { return };
        if eq.tok != Tok::Eq || nl.tok != Tok::Newline || self.depth != 0 {
            return;
        }
        let (Tok::Str(n), Tok::Str(v)) = (&name.tok, &value.tok) else {
            return;
        };
        if name.origin.is_some() {
            return;
        }
        if n.chars().any(|c| c.is_ascii_whitespace()) {
            self.diags.push(
                Diagnostic::relayd(
                    Code::MacroNameWhitespace,
                    name.span,
                    "macro name cannot contain whitespace",
                )
                .help("macro names are letters, digits and `_`"),
            );
            return;
        }
        let (value_span, exact) = match &value.origin {
            Some(o) => (o.def, false),
            None if value.quoted => (
                Span::new(
                    value.span.file,
                    value.span.start as usize + 1,
                    (value.span.end as usize)
                        .saturating_sub(1)
                        .max(value.span.start as usize + 1),
                ),
                (value.span.end - value.span.start) as usize == v.len() + 2,
            ),
            None => (value.span, true),
        };
        let m = Macro {
            name: n.clone(),
            value: v.clone(),
            name_span: name.span,
            value_span,
            exact: exact && value.origin.is_none(),
            persistent: false,
            used: false,
        };
        if !n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            self.diags.push(
                Diagnostic::new(
                    Code::UnreachableMacroName,
                    name.span,
                    format!("macro `{n}` can never be used: `$` references stop at characters other than letters, digits and `_`"),
                )
                .help("rename it with letters, digits and `_` only"),
            );
        }
        if let Some(old) = self.macros.get(n) {
            if old.persistent {
                self.diags.push(
                    Diagnostic::new(
                        Code::MacroOverridden,
                        name.span,
                        format!(
                            "this definition of `{n}` is ignored: `-D` set it on the command line"
                        ),
                    )
                    .label(old.name_span, "set here"),
                );
                // The file's definition counts as used: it is overridden, not forgotten.
                let mut m = m;
                m.used = true;
                self.history.push(m);
                return;
            }
        }
        if let Some(old) = self.macros.insert(n.clone(), m) {
            self.history.push(old);
        }
    }

    /// Right after `include "path"`: splice the file in.
    fn maybe_include(&mut self, from: FileId) {
        let n = self.out.len();
        if n < 2 {
            return;
        }
        let (Tok::Kw(Kw::Include), Tok::Str(path)) = (&self.out[n - 2].tok, &self.out[n - 1].tok)
        else {
            return;
        };
        let path = path.clone();
        let at = self.out[n - 1].span;
        let candidates = self.sources.include_candidates(&path, from);
        let cycle = candidates.iter().any(|c| {
            let canon = std::fs::canonicalize(c).unwrap_or_else(|_| c.clone());
            self.stack.contains(&canon)
        });
        if cycle {
            self.diags.push(
                Diagnostic::new(
                    Code::IncludeCycle,
                    at,
                    format!("`{path}` includes itself (through this include)"),
                )
                .relayd_message(format!("failed to include file {path}"))
                .help("relayd would read the files over and over until it runs out of file descriptors; remove the include"),
            );
            self.failed += 1;
            self.push(Tok::Poison, at, false, None);
            return;
        }
        match self.sources.load_include(&path, from) {
            Ok((file, lossy)) => {
                if lossy {
                    self.not_utf8(file);
                }
                // relayd's include action does `lungetc('\n')` into the new file.
                self.push(
                    Tok::Newline,
                    Span::new(at.file, at.end as usize, at.end as usize),
                    false,
                    None,
                );
                self.file(file);
            }
            Err(e) => {
                let tried: Vec<String> = e.tried.iter().map(|p| p.display().to_string()).collect();
                self.diags.push(
                    Diagnostic::relayd(
                        Code::IncludeFailed,
                        at,
                        format!("failed to include file {path}"),
                    )
                    .help(format!("{}: {}", tried.join(", "), e.reason)),
                );
                self.failed += 1;
                self.push(Tok::Poison, at, false, None);
            }
        }
    }

    fn not_utf8(&mut self, file: FileId) {
        report_not_utf8(self.sources, file, self.diags);
    }
}

/// Reports a main file that is not UTF-8 (includes are reported by the expander).
pub fn report_not_utf8(sources: &SourceMap, file: FileId, diags: &mut Diagnostics) {
    let text = &sources.file(file).text;
    let at = text.find('\u{fffd}').unwrap_or(0);
    let len = '\u{fffd}'.len_utf8().min(text.len() - at);
    diags.push(
        Diagnostic::new(
            Code::NotUtf8,
            Span::new(file, at, at + len),
            "the file is not valid UTF-8; invalid bytes are shown as `\u{fffd}`",
        )
        .help("relayd reads bytes, so this is harmless inside comments and quoted strings"),
    );
}

/// Index just past the raw tokens up to (not including) the next newline.
fn skip_line(raws: &[RawTok], mut i: usize) -> usize {
    while i < raws.len() && raws[i].0 != Ok(Raw::Newline) {
        i += 1;
    }
    i
}

fn is_number(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Word, keyword or (still as text) number. `service` is a keyword only where
/// hoststated's `service` block could start: first on a top-level line.
fn classify(word: &str, next: Option<char>, statement_start: bool) -> (Tok, bool) {
    if is_number(word) && raw::ends_number(next) {
        return (Tok::Str(word.to_string()), true);
    }
    let tok = match Kw::lookup(word) {
        Some(Kw::Service) if !statement_start => Tok::Str(word.to_string()),
        Some(k) => Tok::Kw(k),
        None => Tok::Str(word.to_string()),
    };
    (tok, false)
}

/// The candidate closest to `name` by edit distance, if close enough to suggest.
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= (name.len().max(c.len()) / 3).max(1))
        .min()
        .map(|(_, c)| c)
}
