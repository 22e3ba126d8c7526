//! Dockerfiles with Docker's (BuildKit's) rules: the parser, its AST dump,
//! typed instructions grouped into build stages, and shell-word expansion.
//!
//! ```
//! let df = berth_dockerfile::parse("ARG V=1\nFROM alpine:${V} AS base\nRUN echo hi\n").unwrap();
//! assert_eq!(df.stages[0].name.as_deref(), Some("base"));
//! assert_eq!(df.ast.dump(), "(arg \"V=1\")\n(from \"alpine:${V}\" \"AS\" \"base\")\n(run \"echo hi\")");
//! ```
//!
//! Parsing keeps values unexpanded; the builder expands them with
//! [`expand`]/[`expand_words`] as it walks the stages.

mod args;
pub mod ast;
mod directives;
pub mod error;
mod flags;
pub mod heredoc;
pub mod instruction;
mod json;
pub mod mount;
pub mod parser;
mod pattern;
pub mod shell;
mod unicode;
mod units;

pub use ast::{Ast, Directive, Heredoc, Node, Value, Warning};
pub use error::{ErrorKind, ParseError};
pub use instruction::{
    from_ast, parse_instruction, Command, Dockerfile, Healthcheck, Instruction, ShellOrExec,
    SourceContent, Stage,
};
pub use mount::{parse_mount, Mount, MountError, MountType, Sharing};
pub use parser::parse_ast;
pub use shell::{expand, expand_words, Env, Lexer, NoEnv, Processed, ShellError, ShellErrorKind};
pub use unicode::go_quote;

/// Parses and types a Dockerfile.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    from_ast(parse_ast(text)?)
}
