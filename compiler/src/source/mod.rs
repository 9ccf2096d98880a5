//! Source files: the only module that reads configuration files from disk.
//!
//! Every file (the main file, each `include`, the `-D` command line) gets a [`FileId`];
//! every later stage speaks in [`Span`]s, byte ranges into one file. Paths are resolved
//! as relayd resolves them (relative paths against the working directory), with two
//! additions for a build host: `--root DIR` places absolute paths under DIR, and a
//! relative include that does not exist from the working directory is looked up next to
//! the including file, so a checked-out config tree works from anywhere.

use std::path::{Path, PathBuf};

/// Index of a file in the [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A byte range in one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Self {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }
    /// The smallest span covering both, if they are in the same file.
    pub fn to(self, other: Span) -> Span {
        if self.file != other.file {
            return self;
        }
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// One loaded file.
#[derive(Debug)]
pub struct SourceFile {
    /// The name as the user wrote it (command line or `include` argument); shown in
    /// diagnostics, like relayd's `file->name`.
    pub name: String,
    /// Where it was read from (after `--root` and include lookup).
    pub path: PathBuf,
    pub text: String,
    /// Byte offsets of line starts, for line/column lookups.
    line_starts: Vec<usize>,
}

impl SourceFile {
    fn new(name: String, path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceFile {
            name,
            path,
            text,
            line_starts,
        }
    }

    /// 0-based line index of a byte offset.
    pub fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// 1-based line and 1-based byte column.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let line = self.line_index(offset);
        (line + 1, offset - self.line_starts[line] + 1)
    }

    pub fn line_start(&self, line_index: usize) -> usize {
        self.line_starts
            .get(line_index)
            .copied()
            .unwrap_or(self.text.len())
    }

    pub fn line_starts(&self) -> &[usize] {
        &self.line_starts
    }
}

/// Why a file could not be loaded.
#[derive(Debug)]
pub struct LoadError {
    pub tried: Vec<PathBuf>,
    pub reason: String,
}

/// How paths are resolved.
#[derive(Clone, Debug, Default)]
pub struct PathRules {
    /// `--root DIR`: absolute paths are looked up under this directory.
    pub root: Option<PathBuf>,
}

impl PathRules {
    /// Where an absolute or relative path from the config is looked for on this host.
    pub fn host_path(&self, path: &str) -> PathBuf {
        match &self.root {
            Some(root) if Path::new(path).is_absolute() => root.join(path.trim_start_matches('/')),
            _ => PathBuf::from(path),
        }
    }
}

/// All files of one compilation.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
    pub rules: PathRules,
}

impl SourceMap {
    pub fn new(rules: PathRules) -> Self {
        SourceMap {
            files: Vec::new(),
            rules,
        }
    }

    /// Adds text that did not come from a file (stdin, `-D` arguments, tests).
    pub fn add(&mut self, name: &str, text: String) -> FileId {
        let id = FileId(self.files.len() as u32);
        self.files
            .push(SourceFile::new(name.to_string(), PathBuf::from(name), text));
        id
    }

    /// Reads the main file (or stdin for `-`). Invalid UTF-8 is replaced; the caller is
    /// told so it can warn.
    pub fn load_main(&mut self, name: &str) -> Result<(FileId, bool), LoadError> {
        if name == "-" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes).map_err(|e| {
                LoadError {
                    tried: vec![PathBuf::from("-")],
                    reason: e.to_string(),
                }
            })?;
            return Ok(self.add_bytes("<stdin>", PathBuf::from("-"), bytes));
        }
        let path = self.rules.host_path(name);
        let bytes = read(&path).map_err(|reason| LoadError {
            tried: vec![path.clone()],
            reason,
        })?;
        Ok(self.add_bytes(name, path, bytes))
    }

    /// Reads an included file: `name` as written in `include "name"`, `from` the file
    /// holding the `include`.
    pub fn load_include(&mut self, name: &str, from: FileId) -> Result<(FileId, bool), LoadError> {
        let candidates = self.include_candidates(name, from);
        let mut reason = String::from("not found");
        for path in &candidates {
            match read(path) {
                Ok(bytes) => return Ok(self.add_bytes(name, path.clone(), bytes)),
                Err(e) => reason = e,
            }
        }
        Err(LoadError {
            tried: candidates,
            reason,
        })
    }

    /// The paths an include is looked for at, in order.
    pub fn include_candidates(&self, name: &str, from: FileId) -> Vec<PathBuf> {
        let mut out = vec![self.rules.host_path(name)];
        if Path::new(name).is_relative() {
            if let Some(dir) = self.file(from).path.parent() {
                let beside = dir.join(name);
                if !out.contains(&beside) && dir != Path::new("") {
                    out.push(beside);
                }
            }
        }
        out
    }

    fn add_bytes(&mut self, name: &str, path: PathBuf, bytes: Vec<u8>) -> (FileId, bool) {
        let (text, lossy) = match String::from_utf8(bytes) {
            Ok(text) => (text, false),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
        };
        let id = FileId(self.files.len() as u32);
        self.files
            .push(SourceFile::new(name.to_string(), path, text));
        (id, lossy)
    }

    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }

    pub fn files(&self) -> impl Iterator<Item = (FileId, &SourceFile)> {
        self.files
            .iter()
            .enumerate()
            .map(|(i, f)| (FileId(i as u32), f))
    }

    /// The text a span covers.
    pub fn text(&self, span: Span) -> &str {
        self.file(span.file)
            .text
            .get(span.range())
            .unwrap_or_default()
    }

    /// Canonical path of a file, for include cycle detection.
    pub fn identity(&self, id: FileId) -> PathBuf {
        let path = &self.file(id).path;
        std::fs::canonicalize(path).unwrap_or_else(|_| path.clone())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    if path.is_dir() {
        return Err("is a directory".to_string());
    }
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    })
}
