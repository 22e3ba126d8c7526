//! Text to [`Ast`]: physical lines to logical instructions (continuations,
//! comments, directives, heredoc bodies), then per-instruction argument
//! splitting. Follows BuildKit's `parser.Parse` rule for rule.

use crate::args;
use crate::ast::{Ast, Directive, Node, Value, Warning};
use crate::directives::DirectiveParser;
use crate::error::{ErrorKind, ParseError};
use crate::flags::extract_builder_flags;
use crate::heredoc::heredocs_from_line;
use crate::unicode::{go_is_space, go_to_lower, go_to_upper, trim_space};

/// BuildKit reads lines with Go's `bufio.Scanner`, whose default buffer
/// makes a line of this many bytes or more an error.
pub(crate) const MAX_LINE: usize = 65536;

/// `ONBUILD ONBUILD …` nests in the tree; BuildKit rejects chains later,
/// when typing instructions, but the tree must stay shallow for our
/// recursive dump and drop.
const MAX_ONBUILD_DEPTH: usize = 16;

/// Parses a Dockerfile into its syntax tree.
pub fn parse_ast(text: &str) -> Result<Ast, ParseError> {
    Parser::new(text).run()
}

struct Parser<'a> {
    lines: Vec<&'a str>,
    /// Index of the next physical line; also the number of lines consumed,
    /// so after reading a line it is that line's 1-based number.
    next: usize,
    escape: char,
    directive_parser: DirectiveParser,
    directives: Vec<Directive>,
    warnings: Vec<Warning>,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser {
            lines: text.split_inclusive('\n').collect(),
            next: 0,
            escape: '\\',
            directive_parser: DirectiveParser::default(),
            directives: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// The next physical line, newline included.
    fn read(&mut self) -> Result<Option<&'a str>, ParseError> {
        let Some(&line) = self.lines.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        if line.trim_end_matches('\n').len() >= MAX_LINE {
            return Err(ParseError::at(self.next, ErrorKind::LineTooLong));
        }
        Ok(Some(line))
    }

    fn run(mut self) -> Result<Ast, ParseError> {
        let mut children = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        while let Some(mut raw) = self.read()? {
            if self.next == 1 {
                raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
            }
            if is_comment(raw) {
                // BuildKit drops the first byte, not the `#`, so an indented
                // comment keeps its `#`; only doc comments see this.
                let mut chars = raw.chars();
                chars.next();
                let text = trim_space(chars.as_str());
                if text.is_empty() {
                    comments.clear();
                } else {
                    comments.push(text.to_owned());
                }
            }
            let line = trim_newline(raw).trim_start_matches(go_is_space);
            if self
                .directive(line)
                .map_err(|kind| ParseError::at(self.next, kind))?
            {
                comments.pop();
            }
            let line = if is_comment(line) { "" } else { line };

            let start = self.next;
            let (first, mut end_of_line) = trim_continuation(line, self.escape);
            if end_of_line && first.is_empty() {
                continue;
            }
            let mut logical = first.to_owned();
            let mut empty_continuation = false;
            while !end_of_line {
                let Some(raw) = self.read()? else { break };
                if is_comment(raw) {
                    continue;
                }
                let line = trim_newline(raw);
                if line.trim_start_matches(go_is_space).is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (part, eol) = trim_continuation(line, self.escape);
                end_of_line = eol;
                logical.push_str(part);
            }
            if empty_continuation {
                self.warnings.push(Warning {
                    message: format!("Empty continuation line found in: {logical}"),
                    line: self.next,
                });
            }

            let located = |end: usize, kind: ErrorKind| ParseError {
                line: Some(start),
                end_line: Some(end),
                instruction: Some(go_to_upper(split_command_word(&logical))),
                kind,
            };
            let mut node = node_from_line(&logical, self.escape, std::mem::take(&mut comments), 0)
                .map_err(|k| located(self.next, k))?;
            if can_contain_heredoc(&node) && logical.contains("<<") {
                let docs = heredocs_from_line(&logical).map_err(|k| located(self.next, k))?;
                for mut doc in docs {
                    let mut terminated = false;
                    while let Some(raw) = self.read()? {
                        let mut candidate = trim_newline(raw);
                        if doc.chomp {
                            candidate = candidate.trim_start_matches('\t');
                        }
                        if candidate == doc.name {
                            terminated = true;
                            break;
                        }
                        doc.content.push_str(raw);
                    }
                    if !terminated {
                        return Err(located(self.next, ErrorKind::UnterminatedHeredoc));
                    }
                    node.heredocs.push(doc);
                }
            }
            node.start_line = start;
            node.end_line = self.next;
            children.push(node);
        }
        if children.is_empty() {
            return Err(ParseError::file(ErrorKind::NoInstructions));
        }
        Ok(Ast {
            children,
            escape: self.escape,
            directives: self.directives,
            warnings: self.warnings,
        })
    }

    /// Feeds a line to the directive parser; true if it was a directive.
    fn directive(&mut self, line: &str) -> Result<bool, ErrorKind> {
        let Some((name, value)) = self.directive_parser.parse_line(line)? else {
            return Ok(false);
        };
        if name == "escape" {
            self.escape = match value.as_str() {
                "`" => '`',
                "\\" => '\\',
                _ => return Err(ErrorKind::InvalidEscapeToken(value)),
            };
        }
        self.directives.push(Directive {
            name,
            value,
            line: self.next,
        });
        Ok(true)
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start_matches(go_is_space).starts_with('#')
}

/// Removes a line-continuation escape (the last non-blank character, not
/// itself escaped) and reports whether the logical line ends here.
fn trim_continuation(line: &str, escape: char) -> (&str, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    if let Some(before) = trimmed.strip_suffix(escape) {
        match before.chars().last() {
            None => return ("", false),
            Some(c) if c != escape => return (before, false),
            Some(_) => {}
        }
    }
    (line, true)
}

/// The instruction keyword of a logical line.
fn split_command_word(line: &str) -> &str {
    args::split_first_blank(trim_space(line)).0
}

/// One logical line to a node; `depth` counts enclosing `ONBUILD`s.
fn node_from_line(
    line: &str,
    escape: char,
    comments: Vec<String>,
    depth: usize,
) -> Result<Node, ErrorKind> {
    let (keyword, rest) = args::split_first_blank(trim_space(line));
    let (rest, flags) = match rest {
        Some(r) => extract_builder_flags(r, escape),
        None => ("", Vec::new()),
    };
    let rest = trim_space(rest);
    let (args, json) = match go_to_lower(keyword).as_str() {
        "add" | "copy" | "volume" => args::maybe_json_to_list(rest)?,
        "cmd" | "entrypoint" | "run" | "shell" => args::maybe_json(rest)?,
        "arg" => (args::name_or_name_val(rest, escape), false),
        "env" => (args::name_val(rest, "ENV", escape)?, false),
        "label" => (args::name_val(rest, "LABEL", escape)?, false),
        "expose" | "from" => (args::whitespace_delimited(rest), false),
        "healthcheck" => args::health_config(rest)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => (args::whole(rest), false),
        "onbuild" if rest.is_empty() => (Vec::new(), false),
        "onbuild" => {
            if depth >= MAX_ONBUILD_DEPTH {
                return Err(ErrorKind::OnbuildTooDeep(MAX_ONBUILD_DEPTH));
            }
            let inner = node_from_line(rest, escape, Vec::new(), depth + 1)?;
            (vec![Value::Instruction(Box::new(inner))], false)
        }
        // Unknown instructions parse (their arguments are dropped) and are
        // rejected when typed, as in BuildKit.
        _ => (vec![Value::Word(String::new())], false),
    };
    Ok(Node {
        keyword: keyword.to_owned(),
        flags,
        args,
        json,
        heredocs: Vec::new(),
        original: line.to_owned(),
        start_line: 0,
        end_line: 0,
        comments,
    })
}

/// Heredocs attach to shell-form `RUN`, `COPY` and `ADD`, also under
/// `ONBUILD`.
fn can_contain_heredoc(node: &Node) -> bool {
    let mut n = node;
    if go_to_lower(&n.keyword) == "onbuild" {
        if let Some(Value::Instruction(inner)) = n.args.first() {
            n = inner;
        }
    }
    matches!(go_to_lower(&n.keyword).as_str(), "run" | "copy" | "add") && !n.json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_marker() {
        assert_eq!(trim_continuation("a \\", '\\'), ("a ", false));
        assert_eq!(trim_continuation("a\\ \t", '\\'), ("a", false));
        assert_eq!(trim_continuation("\\", '\\'), ("", false));
        assert_eq!(trim_continuation("a\\\\", '\\'), ("a\\\\", true));
        assert_eq!(trim_continuation("a `", '`'), ("a ", false));
        assert_eq!(trim_continuation("a \\", '`'), ("a \\", true));
    }

    #[test]
    fn long_lines_are_rejected() {
        let text = format!("FROM a\nLABEL a={}\n", "x".repeat(MAX_LINE));
        let err = parse_ast(&text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: dockerfile line greater than max allowed size of 65535"
        );
    }

    #[test]
    fn onbuild_depth_is_bounded() {
        let text = format!("FROM a\n{}RUN x\n", "ONBUILD ".repeat(10_000));
        assert!(parse_ast(&text).is_err());
        let ok = parse_ast("FROM a\nONBUILD ONBUILD RUN x\n").unwrap();
        assert_eq!(ok.dump(), "(from \"a\")\n(onbuild (onbuild (run \"x\")))");
    }
}
