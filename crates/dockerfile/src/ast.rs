//! The untyped syntax tree, shaped like BuildKit's `parser.Node` so that
//! [`Ast::dump`] reproduces its `Dump()` byte for byte.

use crate::unicode::{go_quote, go_to_lower, trim_space};

/// A parsed Dockerfile before instructions are given types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ast {
    /// One node per instruction, in order.
    pub children: Vec<Node>,
    /// The escape character in force (`\` or a backtick).
    pub escape: char,
    /// Parser directives from the top of the file (`syntax`, `escape`,
    /// `check`), names lower-cased.
    pub directives: Vec<Directive>,
    pub warnings: Vec<Warning>,
}

/// A `# name=value` parser directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A non-fatal finding, such as an empty continuation line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    pub line: usize,
}

/// One instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The keyword as written (`RUN`, `run`, …).
    pub keyword: String,
    /// `--name=value` flags, as written but with quotes removed.
    pub flags: Vec<String>,
    /// The arguments after per-instruction splitting; quotes are kept
    /// (they are removed later, by expansion).
    pub args: Vec<Value>,
    /// The arguments were a JSON array (exec form).
    pub json: bool,
    pub heredocs: Vec<Heredoc>,
    /// The whole logical line, continuations joined.
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction.
    pub comments: Vec<String>,
}

/// An argument: a string, or for `ONBUILD` the instruction it wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Word(String),
    Instruction(Box<Node>),
}

/// A here-document attached to `RUN`, `COPY` or `ADD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter with quotes removed; also the name `COPY` gives it.
    pub name: String,
    /// The `N` of `N<<EOF`; 0 when absent.
    pub file_descriptor: u64,
    /// No part of the delimiter was quoted, so variables in the body are
    /// expanded.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from body lines (see
    /// [`chomp_heredoc_content`](crate::heredoc::chomp_heredoc_content)).
    pub chomp: bool,
    /// The body, each line with its newline; not chomped.
    pub content: String,
}

impl Ast {
    /// BuildKit's `Node.Dump()` of the root: one `(instruction …)` per line,
    /// without a final newline.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for child in &self.children {
            s.push('(');
            s.push_str(&child.dump());
            s.push_str(")\n");
        }
        trim_space(&s).to_owned()
    }
}

impl Node {
    /// `run "a" "b"`, `copy ["--from=x"] "a" "b"`, `onbuild (run "x")`.
    ///
    /// Nesting is bounded by the parser's ONBUILD depth limit.
    pub fn dump(&self) -> String {
        let mut s = go_to_lower(&self.keyword);
        if !self.flags.is_empty() {
            let flags: Vec<String> = self.flags.iter().map(|f| go_quote(f)).collect();
            s.push_str(" [");
            s.push_str(&flags.join(" "));
            s.push(']');
        }
        for arg in &self.args {
            s.push(' ');
            match arg {
                Value::Word(w) => s.push_str(&go_quote(w)),
                Value::Instruction(inner) => {
                    s.push('(');
                    s.push_str(&inner.dump());
                    s.push(')');
                }
            }
        }
        trim_space(&s).to_owned()
    }

    /// The arguments flattened to strings, an `ONBUILD`'s wrapped keyword
    /// and its arguments included (BuildKit's `nodeArgs`).
    pub fn arg_strings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for arg in &self.args {
            match arg {
                Value::Word(w) => out.push(w.clone()),
                Value::Instruction(inner) => {
                    out.push(inner.keyword.clone());
                    out.extend(inner.arg_strings());
                }
            }
        }
        out
    }
}
