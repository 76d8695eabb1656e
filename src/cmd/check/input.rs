//! Where documents come from: files, directories and standard input, decoded to UTF-8 and cut
//! into YAML documents one at a time, each with the line it starts on in the user's file.
//!
//! Nothing here holds more than one document: a 100 MB `kustomize build` piped to `check -` is
//! read a line at a time, and a document is handed on as soon as the next `---` is seen.

use std::{
    io::{self, BufRead, BufReader, Read},
    path::{Path, PathBuf},
};

use encoding_rs_io::DecodeReaderBytesBuilder;
use globset::{Glob, GlobSet, GlobSetBuilder};

/// The largest document `check` reads; a larger one is reported as invalid and skipped, and the
/// documents after it are still read.
pub const MAX_DOCUMENT_BYTES: usize = 128 * 1024 * 1024;

/// One input: a file, or standard input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// How results name this input.
    pub fn name(&self) -> String {
        match self {
            Self::Stdin => "-".to_owned(),
            Self::File(path) => path.display().to_string(),
        }
    }

    /// The input decoded to UTF-8: a UTF-8 or UTF-16 byte order mark is honoured and removed.
    pub fn open(&self) -> io::Result<Box<dyn BufRead>> {
        let raw: Box<dyn Read> = match self {
            Self::Stdin => Box::new(io::stdin().lock()),
            Self::File(path) => Box::new(std::fs::File::open(path)?),
        };
        let decoded = DecodeReaderBytesBuilder::new()
            .bom_sniffing(true)
            .strip_bom(true)
            .build(raw);
        Ok(Box::new(BufReader::with_capacity(64 * 1024, decoded)))
    }
}

/// `--exclude` patterns, matched against a walked path relative to the directory given and
/// against its file name.
#[derive(Debug, Default)]
pub struct Excludes(Option<GlobSet>);

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        if patterns.is_empty() {
            return Ok(Self(None));
        }
        let mut set = GlobSetBuilder::new();
        for pattern in patterns {
            let glob = Glob::new(pattern)
                .map_err(|e| format!("invalid --exclude {pattern:?}: {}", e.kind()))?;
            set.add(glob);
        }
        set.build()
            .map(|set| Self(Some(set)))
            .map_err(|e| format!("invalid --exclude: {}", e.kind()))
    }

    fn excludes(&self, relative: &Path) -> bool {
        let Some(set) = &self.0 else { return false };
        set.is_match(relative) || relative.file_name().is_some_and(|name| set.is_match(name))
    }
}

/// Whether a walked file is one `check` reads.
fn is_manifest(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The inputs named on the command line, directories walked in name order for YAML and JSON
/// files (hidden directories such as `.git` left out). A path that cannot be walked is an
/// `Err` with its name and why.
pub fn sources(paths: &[PathBuf], excludes: &Excludes) -> Vec<Result<Source, (String, String)>> {
    let mut sources = Vec::new();
    for path in paths {
        if path == Path::new("-") {
            sources.push(Ok(Source::Stdin));
            continue;
        }
        if !path.is_dir() {
            sources.push(Ok(Source::File(path.clone())));
            continue;
        }
        let walk = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                let relative = entry.path().strip_prefix(path).unwrap_or(entry.path());
                let hidden = entry.depth() > 0
                    && entry.file_type().is_dir()
                    && entry.file_name().to_string_lossy().starts_with('.');
                !hidden && (entry.depth() == 0 || !excludes.excludes(relative))
            });
        for entry in walk {
            match entry {
                Ok(entry) if entry.file_type().is_file() && is_manifest(entry.path()) => {
                    sources.push(Ok(Source::File(entry.into_path())));
                }
                Ok(_) => {}
                Err(error) => {
                    let name = error.path().unwrap_or(path).display().to_string();
                    let why = error
                        .io_error()
                        .map_or_else(|| error.to_string(), ToString::to_string);
                    sources.push(Err((name, format!("cannot read: {why}"))));
                }
            }
        }
    }
    sources
}

/// One YAML document's text, as cut from its input.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The line of the input the text starts on, counting from 1.
    pub line: usize,
    pub text: String,
    /// The document was larger than [`MAX_DOCUMENT_BYTES`]; `text` holds only its start.
    pub oversized: bool,
    /// The first line that is not UTF-8, if any.
    pub not_utf8: Option<usize>,
}

impl Chunk {
    /// The first line holding something other than blanks and comments.
    pub fn content_line(&self) -> usize {
        let skipped = self
            .text
            .lines()
            .take_while(|line| {
                let line = line.trim_start();
                line.is_empty() || line.starts_with('#') || line.starts_with('%')
            })
            .count();
        self.line + skipped
    }

    /// Whether the document holds nothing but blanks and comments.
    pub fn is_blank(&self) -> bool {
        !self.oversized
            && self.not_utf8.is_none()
            && self.text.lines().all(|line| {
                let line = line.trim_start();
                line.is_empty() || line.starts_with('#')
            })
    }
}

/// Cuts a UTF-8 stream into YAML documents at `---` and `...` lines. A document marker at the
/// start of a line always ends the document before it, even inside a block scalar (YAML 1.2,
/// 9.1.4), so cutting on lines is exact and never needs the parser.
pub struct Chunks<R> {
    reader: R,
    line: usize,
    buffer: Vec<u8>,
    current: Chunk,
    done: bool,
}

impl<R: BufRead> Chunks<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: 0,
            buffer: Vec::new(),
            current: Chunk {
                line: 1,
                ..Chunk::default()
            },
            done: false,
        }
    }

    fn take(&mut self, next_line: usize) -> Chunk {
        std::mem::replace(
            &mut self.current,
            Chunk {
                line: next_line,
                ..Chunk::default()
            },
        )
    }

    fn push(&mut self, text: &str) {
        if self.current.oversized {
            return;
        }
        if self.current.text.len() + text.len() > MAX_DOCUMENT_BYTES {
            self.current.oversized = true;
            self.current.text = String::new();
            return;
        }
        self.current.text.push_str(text);
    }
}

/// A line that starts a document (`---`) or ends one (`...`), and what follows the marker.
fn marker(line: &str) -> Option<(bool, &str)> {
    for (mark, starts) in [("---", true), ("...", false)] {
        if let Some(rest) = line.strip_prefix(mark)
            && (rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        {
            return Some((starts, rest));
        }
    }
    None
}

impl<R: BufRead> Iterator for Chunks<R> {
    type Item = io::Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buffer.clear();
            match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => {
                    self.done = true;
                    let last = self.take(self.line + 1);
                    return (!last.text.is_empty() || last.oversized || last.not_utf8.is_some())
                        .then_some(Ok(last));
                }
                Ok(_) => {}
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            }
            self.line += 1;
            let buffer = std::mem::take(&mut self.buffer);
            let text = match std::str::from_utf8(&buffer) {
                Ok(text) => text,
                Err(_) => {
                    self.current.not_utf8.get_or_insert(self.line);
                    ""
                }
            };
            let found = match marker(text) {
                Some((true, rest)) => {
                    // `--- {flow: doc}` keeps its content; blanks stand in for the marker so
                    // columns stay right.
                    let finished = self.take(self.line);
                    self.push("   ");
                    self.push(if rest.is_empty() { "\n" } else { rest });
                    Some(finished)
                }
                Some((false, _)) => Some(self.take(self.line + 1)),
                None => {
                    self.push(text);
                    None
                }
            };
            self.buffer = buffer;
            if let Some(chunk) = found
                && (!chunk.text.is_empty() || chunk.oversized || chunk.not_utf8.is_some())
            {
                return Some(Ok(chunk));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str) -> Vec<(usize, String)> {
        Chunks::new(text.as_bytes())
            .map(|c| c.unwrap())
            .map(|c| (c.content_line(), c.text.trim().to_owned()))
            .collect()
    }

    #[test]
    fn cuts_at_document_markers_and_keeps_each_start_line() {
        let text = "a: 1\n---\n# comment\nb: 2\n--- {c: 3}\n...\n---\nd: |\n  x\n";
        assert_eq!(
            chunks(text),
            [
                (1, "a: 1".to_owned()),
                (4, "# comment\nb: 2".to_owned()),
                (5, "{c: 3}".to_owned()),
                (8, "d: |\n  x".to_owned()),
            ]
        );
    }

    #[test]
    fn a_marker_needs_a_blank_or_the_line_end_after_it() {
        assert_eq!(chunks("a: ---x\n----\n").len(), 1);
    }

    #[test]
    fn decodes_utf16_with_a_byte_order_mark() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "kind: Pod\n".encode_utf16() {
            bytes.extend(unit.to_le_bytes());
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("utf16.yaml");
        std::fs::write(&path, bytes).unwrap();
        let mut text = String::new();
        Source::File(path)
            .open()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "kind: Pod\n");
    }
}
