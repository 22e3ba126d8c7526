//! Parser directives: `# syntax=…`, `# escape=…`, `# check=…` comment
//! lines at the very top of the file. The first line that is not one (a
//! blank line, an instruction, any other comment) ends them for good.

use std::collections::BTreeSet;

use crate::error::ErrorKind;
use crate::unicode::go_is_space;

const KNOWN: [&str; 3] = ["syntax", "escape", "check"];

#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    seen: BTreeSet<String>,
}

/// Go's `\s` in the directive pattern: no vertical tab.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{c}' | '\r' | ' ')
}

impl DirectiveParser {
    /// Looks at one line (newline removed); returns the directive's lower-
    /// cased name and value if it is one.
    pub(crate) fn parse_line(&mut self, line: &str) -> Result<Option<(String, String)>, ErrorKind> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !KNOWN.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if !self.seen.insert(name.clone()) {
            return Err(ErrorKind::DuplicateDirective(name));
        }
        Ok(Some((name, value.to_owned())))
    }
}

/// Matches `#\s*NAME\s*=\s*VALUE\s*` the way BuildKit's regular expression
/// `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` does after the `#`.
fn directive(line: &str) -> Option<(&str, &str)> {
    let body = line.strip_prefix('#')?.trim_start_matches(go_is_space);
    let name_len = body
        .char_indices()
        .take_while(|&(i, c)| {
            if i == 0 {
                c.is_ascii_alphabetic()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    if name_len == 0 {
        return None;
    }
    let (name, rest) = body.split_at(name_len);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = rest.trim_matches(is_re_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // An all-blank value still matches: the regex backtracks so that the
    // lazy value takes the last blank character.
    let last = rest.chars().last()?;
    Some((name, &rest[rest.len() - last.len_utf8()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises() {
        assert_eq!(directive("# escape=`"), Some(("escape", "`")));
        assert_eq!(directive("#escape = \\ "), Some(("escape", "\\")));
        assert_eq!(
            directive("# syntax = docker/dockerfile:1 "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(directive("# escape="), None);
        assert_eq!(directive("# escape= "), Some(("escape", " ")));
        assert_eq!(directive("# 1x=y"), None);
        assert_eq!(directive("escape=`"), None);
    }

    #[test]
    fn first_non_directive_ends_them() {
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# syntax=x").unwrap().is_some());
        assert!(p.parse_line("# hello").unwrap().is_none());
        assert!(p.parse_line("# escape=`").unwrap().is_none());
        let mut p = DirectiveParser::default();
        p.parse_line("# escape=`").unwrap();
        assert_eq!(
            p.parse_line("# ESCAPE=\\"),
            Err(ErrorKind::DuplicateDirective("escape".into()))
        );
    }
}
