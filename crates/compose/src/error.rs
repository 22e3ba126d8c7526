//! One error type for everything that can be wrong with a compose project.
//!
//! Every error says where: the file, and the line and column when the value
//! came from YAML, and the key path (`services.app.ports[0]`) when the problem
//! is with one value. The first line of the message is complete on its own;
//! YAML syntax errors add the offending line with a caret below it.

use std::fmt;
use std::path::{Path, PathBuf};

/// Characters of a long source line shown on either side of an error's column.
const SNIPPET_CONTEXT: usize = 80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    /// 1-based; 0 when only the file is known.
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub location: Option<Location>,
    /// Dotted key path inside the document, e.g. `services.app.ports[0]`.
    pub key_path: Option<String>,
    pub message: String,
    /// Source excerpt shown under the message (YAML syntax errors).
    pub snippet: Option<String>,
}

impl std::error::Error for LoadError {}

impl LoadError {
    pub fn new(message: impl Into<String>) -> LoadError {
        LoadError {
            location: None,
            key_path: None,
            message: message.into(),
            snippet: None,
        }
    }

    pub fn in_file(mut self, file: &Path) -> LoadError {
        if self.location.is_none() {
            self.location = Some(Location {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
            });
        }
        self
    }

    pub fn at(mut self, file: &Path, line: usize, column: usize) -> LoadError {
        self.location = Some(Location {
            file: file.to_path_buf(),
            line,
            column,
        });
        self
    }

    pub fn key(mut self, key_path: impl Into<String>) -> LoadError {
        self.key_path = Some(key_path.into());
        self
    }

    /// Attach the source line `line` of `source` with a caret at `column`.
    pub fn with_snippet(mut self, source: &str, line: usize, column: usize) -> LoadError {
        if let Some(text) = source.lines().nth(line.saturating_sub(1)) {
            // A hostile file may be one line of megabytes: show a window of it.
            let skip = column.saturating_sub(1).saturating_sub(SNIPPET_CONTEXT);
            let text: String = text.chars().skip(skip).take(2 * SNIPPET_CONTEXT).collect();
            let column = column - skip;
            let gutter = line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad: String = text
                .chars()
                .take(column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            self.snippet = Some(format!("{gutter} | {text}\n{pad} | {caret_pad}^"));
        }
        self
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(loc) = &self.location {
            write!(f, "{}", loc.file.display())?;
            if loc.line > 0 {
                write!(f, ":{}:{}", loc.line, loc.column)?;
            }
            write!(f, ": ")?;
        }
        if let Some(path) = &self.key_path {
            if !path.is_empty() {
                write!(f, "{path}: ")?;
            }
        }
        write!(f, "{}", self.message)?;
        if let Some(snippet) = &self.snippet {
            write!(f, "\n{snippet}")?;
        }
        Ok(())
    }
}

/// Renders a key path the way people write it: `services.app.ports[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPath(Vec<Segment>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(String),
    Index(usize),
}

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath(Vec::new())
    }

    pub fn key(&self, key: &str) -> KeyPath {
        let mut next = self.clone();
        next.0.push(Segment::Key(key.to_string()));
        next
    }

    pub fn index(&self, index: usize) -> KeyPath {
        let mut next = self.clone();
        next.0.push(Segment::Index(index));
        next
    }

    /// The segments as plain strings (indexes as numbers), for walking a tree.
    pub fn segments(&self) -> impl Iterator<Item = Result<&str, usize>> {
        self.0.iter().map(|s| match s {
            Segment::Key(k) => Ok(k.as_str()),
            Segment::Index(i) => Err(*i),
        })
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}
