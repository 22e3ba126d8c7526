//! `.env` / `env_file` parsing with the semantics of compose-go's `dotenv`
//! package (itself a fork of godotenv).
//!
//! Accepted per statement: `KEY=value`, `KEY: value`, `export KEY=value`,
//! single-quoted values (literal, only `\'` is special), double-quoted values
//! (backslash escapes, then `${VAR}` expansion), unquoted values (expanded,
//! cut at ` #`, trailing blanks trimmed); quoted values may span lines. A
//! bare `KEY` takes its value from the lookup, and is absent when the lookup
//! has none.
//!
//! Expansion resolves a name from the lookup first and only then from keys
//! already defined earlier in the file: compose-go does it in that order, so
//! a variable set in the shell wins over the file's own definition.
//!
//! One deliberate difference: compose-go turns a bare `KEY` on the last line
//! without a trailing newline into the entry `"" = "KEY"`; here it is an
//! inherited `KEY` like on any other line.

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::interpolate::{self, go_quote, InterpolateError};

/// Why an env file could not be parsed. Parse errors name the line (1-based)
/// but not the file: callers know the path and prefix it.
#[derive(Debug, thiserror::Error)]
pub enum DotenvError {
    #[error("line {line}: unterminated quoted value {text}")]
    UnterminatedQuote { line: usize, text: String },
    #[error("line {line}: key cannot contain a space")]
    KeyWithSpace { line: usize },
    #[error("line {line}: unexpected character {} in variable name {}", go_quote(&.character.to_string()), go_quote(.text))]
    UnexpectedCharacter {
        line: usize,
        character: char,
        /// The rest of the line, from where the key starts.
        text: String,
    },
    /// `export` followed by nothing but blanks.
    #[error("line {line}: zero length string")]
    EmptyStatement { line: usize },
    #[error("line {line}: {source}")]
    Interpolate {
        line: usize,
        #[source]
        source: InterpolateError,
    },
    #[error("line {line}: invalid UTF-8")]
    InvalidUtf8 { line: usize },
    #[error("cannot read {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DotenvError {
    /// The 1-based line the error is about, if it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            DotenvError::UnterminatedQuote { line, .. }
            | DotenvError::KeyWithSpace { line }
            | DotenvError::UnexpectedCharacter { line, .. }
            | DotenvError::EmptyStatement { line }
            | DotenvError::Interpolate { line, .. }
            | DotenvError::InvalidUtf8 { line } => Some(*line),
            DotenvError::Io { .. } => None,
        }
    }
}

/// Parses env-file content. `lookup` supplies variables from outside the
/// file (the shell environment, usually) for expansion and for bare `KEY`
/// lines. Keys keep the order of their first definition; a later definition
/// replaces the value.
pub fn parse(
    content: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    // Windows editors like to add a BOM; it must not become part of a key.
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut parser = Parser { line: 1 };
    let mut out = IndexMap::new();
    let mut rest = content;
    loop {
        rest = parser.statement_start(rest);
        if rest.is_empty() {
            return Ok(out);
        }
        let (key, after_key, inherited) = parser.key(rest)?;
        if key.contains(' ') {
            return Err(DotenvError::KeyWithSpace { line: parser.line });
        }
        if inherited {
            if let Some(value) = lookup(key) {
                out.insert(key.to_owned(), value);
            }
            rest = after_key;
            continue;
        }
        let (value, after_value) = parser.value(after_key, &out, lookup)?;
        out.insert(key.to_owned(), value);
        rest = after_value;
    }
}

/// Reads and parses an env file (see [`parse`]).
pub fn parse_file(
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<IndexMap<String, String>, DotenvError> {
    let bytes = std::fs::read(path).map_err(|source| DotenvError::Io {
        path: path.to_owned(),
        source,
    })?;
    // compose-go passes arbitrary bytes through; we deal in `String`s, and
    // replacing bytes silently would corrupt values, so say where it breaks.
    let content = String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        DotenvError::InvalidUtf8 {
            line: 1 + valid.iter().filter(|&&b| b == b'\n').count(),
        }
    })?;
    parse(&content, lookup)
}

struct Parser {
    line: usize,
}

impl Parser {
    /// Skips blank space and comment lines, counting newlines.
    fn statement_start<'a>(&mut self, mut src: &'a str) -> &'a str {
        loop {
            let trimmed = src.trim_start();
            self.count_newlines(&src[..src.len() - trimmed.len()]);
            if !trimmed.starts_with('#') {
                return trimmed;
            }
            match trimmed.find('\n') {
                Some(newline) => src = &trimmed[newline..],
                None => return "",
            }
        }
    }

    fn count_newlines(&mut self, text: &str) {
        self.line += text.bytes().filter(|&b| b == b'\n').count();
    }

    /// Splits off the key. Returns the key, what follows its terminator, and
    /// whether the statement is a bare `KEY` (inherited from the lookup).
    fn key<'a>(&mut self, src: &'a str) -> Result<(&'a str, &'a str, bool), DotenvError> {
        let src = strip_export(src);
        if src.is_empty() {
            return Err(DotenvError::EmptyStatement { line: self.line });
        }
        let mut end = None;
        for (i, c) in src.char_indices() {
            match c {
                c if is_blank(c) => {}
                '=' | ':' | '\n' => {
                    end = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphabetic() || c.is_numeric() => {}
                c => {
                    return Err(DotenvError::UnexpectedCharacter {
                        line: self.line,
                        character: c,
                        text: src.split('\n').next().unwrap_or_default().to_owned(),
                    })
                }
            }
        }
        let (key, after, inherited) = match end {
            Some((i, c)) => (&src[..i], &src[i + c.len_utf8()..], c == '\n'),
            None => (src, "", true),
        };
        let key = key.trim_end();
        // A key with a space is an error reported on its own line, so only
        // move on when there is none. (compose-go tests before trimming and
        // so miscounts after `KEY ` lines.)
        if inherited && !key.contains(' ') {
            self.line += 1;
        }
        Ok((key, after.trim_start_matches(is_blank), inherited))
    }

    /// Reads the value at the start of `src`; returns it and what follows.
    fn value<'a>(
        &mut self,
        src: &'a str,
        defined: &IndexMap<String, String>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(String, &'a str), DotenvError> {
        let start_line = self.line;
        let expand = |value: &str| {
            let resolve = |name: &str| lookup(name).or_else(|| defined.get(name).cloned());
            interpolate::substitute(value, &resolve).map_err(|source| DotenvError::Interpolate {
                line: start_line,
                source,
            })
        };
        let quote = match src.chars().next() {
            Some(q @ ('"' | '\'')) => q,
            _ => {
                let (line, rest) = src.split_once('\n').unwrap_or((src, ""));
                self.line += 1;
                let value = line.split(" #").next().unwrap_or_default().trim_end();
                return Ok((expand(value)?, rest));
            }
        };

        // Up to the closing quote, a backslash only protects the next
        // character from ending the value: it is kept, except before the
        // quote itself. Escape sequences are decoded afterwards.
        let mut raw = String::new();
        let mut escaped = false;
        for (i, c) in src.char_indices().skip(1) {
            if c == '\n' {
                self.line += 1;
            }
            if c == quote && !escaped {
                let value = if quote == '"' {
                    expand(&decode_escapes(&raw))?
                } else {
                    raw
                };
                return Ok((value, &src[i + 1..]));
            }
            if c == '\\' && !escaped {
                escaped = true;
                continue;
            }
            if escaped && c != quote {
                raw.push('\\');
            }
            escaped = false;
            raw.push(c);
        }
        Err(DotenvError::UnterminatedQuote {
            line: self.line,
            text: src.split('\n').next().unwrap_or_default().to_owned(),
        })
    }
}

/// `export` followed by whitespace (Go's `\s`: tab, newline, form feed,
/// carriage return, space) is dropped with the blanks after it, so that
/// `exportFOO=1` and `export.FOO=1` stay keys of their own.
fn strip_export(src: &str) -> &str {
    match src.strip_prefix("export") {
        Some(after) if after.starts_with(['\t', '\n', '\x0c', '\r', ' ']) => {
            after.trim_start_matches(is_blank)
        }
        _ => src,
    }
}

/// Space that does not end a line.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

/// Decodes the escapes compose-go supports in double-quoted values: `\a \b
/// \f \n \r \t \v \\ \"`, octal `\0NNN`, and `\$` (which becomes `$$`, the
/// interpolation escape, so it survives expansion as a literal `$`). Anything
/// else, `\x41` and `\u00e9` included, stays as written.
fn decode_escapes(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        let after = &rest[backslash + 1..];
        let mut chars = after.chars();
        let decoded = match chars.next() {
            Some('a') => Some("\u{7}"),
            Some('b') => Some("\u{8}"),
            Some('f') => Some("\u{c}"),
            Some('n') => Some("\n"),
            Some('r') => Some("\r"),
            Some('t') => Some("\t"),
            Some('v') => Some("\u{b}"),
            Some('\\') => Some("\\"),
            Some('"') => Some("\""),
            Some('$') => Some("$$"),
            _ => None,
        };
        if let Some(decoded) = decoded {
            out.push_str(decoded);
            rest = &after[1..];
            continue;
        }
        if let Some(octal) = after.strip_prefix('0') {
            let digits = octal.bytes().take(3).take_while(u8::is_ascii_digit).count();
            // Go reads `\0NNN` as the octal escape `\NNN`: exactly three
            // octal digits with a value below 256; otherwise it stays as is.
            match octal_byte(&octal[..digits]) {
                Some(c) => out.push(c),
                None => {
                    out.push_str("\\0");
                    out.push_str(&octal[..digits]);
                }
            }
            rest = &octal[digits..];
            continue;
        }
        out.push('\\');
        rest = after;
    }
    out.push_str(rest);
    out
}

fn octal_byte(digits: &str) -> Option<char> {
    if digits.len() != 3 {
        return None;
    }
    let value = u32::from_str_radix(digits, 8).ok()?;
    if value > 0xff {
        return None;
    }
    char::from_u32(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(content: &str) -> IndexMap<String, String> {
        parse(content, &none).unwrap()
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("A=1\n\n# comment\nB='x\ny\n", &none).unwrap_err();
        assert_eq!(err.to_string(), "line 6: unterminated quoted value 'x");
        assert_eq!(err.line(), Some(6));

        let err = parse("A=1\nB=\"two\nlines\"\nBAD KEY=1\n", &none).unwrap_err();
        assert_eq!(err.to_string(), "line 4: key cannot contain a space");

        let err = parse("A=1\n  lol$wut=2\n", &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"line 2: unexpected character "$" in variable name "lol$wut=2""#
        );

        let err = parse("A=1\nB=${C:?needed}\n", &none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: required variable C is missing a value: needed"
        );

        let err = parse("A=1\nexport  ", &none).unwrap_err();
        assert_eq!(err.to_string(), "line 2: zero length string");
    }

    #[test]
    fn crlf_line_endings() {
        let vars = parse_ok("A=1\r\nB = two words \r\nC=\"q\"\r\n# c\r\nD='x'\r\n");
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "q");
        assert_eq!(vars["D"], "x");
        let env = |k: &str| (k == "INHERIT").then(|| "yes".to_owned());
        let vars = parse("INHERIT\r\nA=1\r\n", &env).unwrap();
        assert_eq!(vars["INHERIT"], "yes");
        assert_eq!(vars["A"], "1");
    }

    #[test]
    fn lookup_wins_over_earlier_keys_when_expanding() {
        let env = |k: &str| (k == "A").then(|| "shell".to_owned());
        let vars = parse("A=file\nB=$A\nC=${MISSING:-$A}\n", &env).unwrap();
        assert_eq!(vars["A"], "file");
        assert_eq!(vars["B"], "shell");
        assert_eq!(vars["C"], "shell");
    }

    #[test]
    fn bare_key_inherits_even_without_final_newline() {
        let env = |k: &str| (k == "X").then(|| "1".to_owned());
        let vars = parse("X", &env).unwrap();
        assert_eq!(vars.get("X").map(String::as_str), Some("1"));
        assert!(parse("Y", &env).unwrap().is_empty());
    }

    #[test]
    fn escapes_in_double_quotes() {
        assert_eq!(
            parse_ok(r#"A="\$HOME \0101\0 \01 \0777 \q""#)["A"],
            r"$HOME A\0 \01 \0777 \q"
        );
        assert_eq!(parse_ok("A=\"\\0377\"")["A"], "\u{ff}");
        assert_eq!(parse_ok(r#"A='it\'s'"#)["A"], "it's");
    }

    #[test]
    fn keys_keep_first_position_and_last_value() {
        let vars = parse_ok("A=1\nB=2\nA=3\n");
        let pairs: Vec<_> = vars.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(pairs, ["A=3", "B=2"]);
    }

    #[test]
    fn io_error_names_the_path() {
        let err = parse_file(Path::new("/nonexistent/berth/.env"), &none).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot read /nonexistent/berth/.env: "));
        assert_eq!(err.line(), None);
    }
}
