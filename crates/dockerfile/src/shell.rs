//! Shell-word processing: quote removal, escapes and `$VAR` / `${VAR…}`
//! expansion with BuildKit's rules (`frontend/dockerfile/shell`).
//!
//! This is deliberately not a shell: there is no command substitution, no
//! arithmetic and no globbing of file names. It is the small POSIX-ish
//! subset Dockerfiles use for `ENV`, `ARG`, `COPY`, `WORKDIR`, … arguments.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;

use thiserror::Error;

use crate::pattern;
use crate::unicode::{go_is_digit, go_is_letter, go_is_space};

/// Nesting bound for `${a:-${b:-…}}` and quotes inside them. BuildKit has
/// none; we need one because each level is a native stack frame, and no
/// real Dockerfile comes near it.
const MAX_DEPTH: usize = 100;

/// Variables visible to an expansion.
pub trait Env {
    /// The value of `name`, or `None` when it is unset (which differs from
    /// set-but-empty for `${VAR-x}`, `${VAR?x}`, …).
    fn get(&self, name: &str) -> Option<String>;
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Env for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// An ordered list where a later entry overrides an earlier one, as with
/// repeated `ENV` instructions.
impl Env for [(String, String)] {
    fn get(&self, name: &str) -> Option<String> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

impl Env for Vec<(String, String)> {
    fn get(&self, name: &str) -> Option<String> {
        Env::get(self.as_slice(), name)
    }
}

impl<T: Env + ?Sized> Env for &T {
    fn get(&self, name: &str) -> Option<String> {
        (**self).get(name)
    }
}

/// No variable is set.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// Why a word could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ShellErrorKind {
    #[error("unexpected end of statement while looking for matching {0}")]
    Unterminated(char),
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    #[error("syntax error: missing '}}'")]
    MissingBrace,
    #[error("syntax error: missing '/' in ${{}}")]
    MissingSlash,
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    #[error("unsupported modifier ({0}) in substitution")]
    UnsupportedModifier(String),
    /// `${VAR?message}` / `${VAR:?message}` on an unset (or empty) variable.
    #[error("{name}: {message}")]
    Required { name: String, message: String },
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern { pattern: String, reason: String },
    #[error("substitutions nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A word that could not be expanded; `word` is the whole input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ShellError {
    pub word: String,
    pub kind: ShellErrorKind,
}

/// The outcome of processing one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Processed {
    /// The word with quotes removed and variables expanded.
    pub result: String,
    /// The same, split into fields the way an unquoted shell word would be.
    pub words: Vec<String>,
    /// Variable names that were looked up and set.
    pub matched: BTreeSet<String>,
    /// Variable names that were looked up and unset (for undefined-variable
    /// warnings).
    pub unmatched: BTreeSet<String>,
}

/// A configurable word processor; [`expand`] and [`expand_words`] cover the
/// common case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` or, after `# escape=``, a backtick.
    pub escape: char,
    /// Keep quote characters in the output (the quoting still groups).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave unset variables as written (`$X`, `${X:-d}`) instead of
    /// expanding them to the empty string.
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Processes `word` against `env`, returning both the joined result and
    /// the field-split words.
    pub fn process<E: Env + ?Sized>(&self, word: &str, env: &E) -> Result<Processed, ShellError> {
        // Go's text/scanner, which BuildKit reads words with, skips a
        // byte-order mark at the start.
        let src = word.strip_prefix('\u{feff}').unwrap_or(word);
        let mut sw = ShellWord {
            lex: self,
            env,
            src: src.chars().collect(),
            pos: 0,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Processed {
                result,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(kind) => Err(ShellError {
                word: word.to_owned(),
                kind,
            }),
        }
    }
}

/// Expands one word: removes quotes and escapes and substitutes variables,
/// keeping inner whitespace (BuildKit's `ProcessWord`).
pub fn expand<E: Env + ?Sized>(word: &str, env: &E, escape: char) -> Result<String, ShellError> {
    Lexer::new(escape).process(word, env).map(|p| p.result)
}

/// Expands and then splits into fields on unquoted whitespace, where
/// whitespace coming from a variable's value splits too (BuildKit's
/// `ProcessWords`).
pub fn expand_words<E: Env + ?Sized>(
    word: &str,
    env: &E,
    escape: char,
) -> Result<Vec<String>, ShellError> {
    Lexer::new(escape).process(word, env).map(|p| p.words)
}

/// Field-splitting state: characters from quotes and escapes never split.
#[derive(Default)]
struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if go_is_space(ch) {
            // A space only ends a word that has content; quoted empty strings
            // (`""`) mark a word started but do not make it non-empty.
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct ShellWord<'a, E: ?Sized> {
    lex: &'a Lexer,
    env: &'a E,
    src: Vec<char>,
    pos: usize,
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

type Step<T> = Result<T, ShellErrorKind>;

impl<E: Env + ?Sized> ShellWord<'_, E> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        let value = self.env.get(name);
        if value.is_some() {
            self.matched.insert(name.to_owned());
        } else {
            self.unmatched.insert(name.to_owned());
        }
        value
    }

    /// Processes until `stop` (consumed) or the end of input. Pattern
    /// operands (`#`, `%`, `/`) are read with raw escapes so the pattern
    /// compiler can still tell `\*` from `*`.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Step<(String, Vec<String>)> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let out = self.stop_on(stop);
        self.raw_escapes = saved;
        out
    }

    fn stop_on(&mut self, stop: Option<char>) -> Step<(String, Vec<String>)> {
        let mut result = String::new();
        // Each level has its own field buffer. (BuildKit shares one between
        // nesting levels, which drops text before a `${VAR:-…}` from the
        // split words; we do not reproduce that.)
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' => {
                    let text = self.process_possible_heredoc();
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                '\'' | '"' if !self.lex.skip_process_quotes => {
                    let text = if ch == '\'' {
                        self.process_single_quote()?
                    } else {
                        self.process_double_quote()?
                    };
                    result.push_str(&text);
                    words.add_raw_string(&text);
                }
                _ => {
                    self.next();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // A trailing escape is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        match stop {
            Some(c) => Err(ShellErrorKind::Unterminated(c)),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Step<String> {
        // Everything up to the next ' is literal; ' cannot be escaped.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => return Err(ShellErrorKind::UnterminatedSingleQuote),
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Step<String> {
        // As sh: the escape only quotes `"`, `$` and itself; elsewhere it is
        // kept literally.
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => return Err(ShellErrorKind::UnterminatedDoubleQuote),
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // Loops back to report the missing quote.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Step<String> {
        if self.depth >= MAX_DEPTH {
            return Err(ShellErrorKind::TooDeep);
        }
        self.depth += 1;
        let out = self.dollar();
        self.depth -= 1;
        out
    }

    fn dollar(&mut self) -> Step<String> {
        self.next(); // the '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the '{'
        match self.peek() {
            None => return Err(ShellErrorKind::MissingBrace),
            Some('{' | '}' | ':') => return Err(ShellErrorKind::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut modifier = String::from(first.unwrap_or(char::REPLACEMENT_CHARACTER));
        match first {
            Some('}') => Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let null_is_unset = first == Some(':');
                let op = if null_is_unset {
                    let op = self.next();
                    modifier.push(op.unwrap_or(char::REPLACEMENT_CHARACTER));
                    op
                } else {
                    first
                };
                let pattern_op = matches!(op, Some('#' | '%'));
                if null_is_unset && pattern_op {
                    return Err(ShellErrorKind::UnsupportedModifier(modifier));
                }
                let word = self.operand('}', pattern_op, ShellErrorKind::MissingBrace)?;
                let value = self.lookup(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match op {
                    Some('-') => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if empty { String::new() } else { word }),
                    Some('?') => match value {
                        None => Err(required(name, word, "is not allowed to be unset")),
                        Some(v) if null_is_unset && v.is_empty() => {
                            Err(required(name, word, "is not allowed to be empty"))
                        }
                        Some(v) => Ok(v),
                    },
                    Some(c @ ('#' | '%')) => {
                        // `##`/`%%` take the longest match, `#`/`%` the shortest.
                        let (longest, pat) = match word.strip_prefix(c) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let value = value.unwrap_or_default();
                        let trimmed = if c == '#' {
                            pattern::trim_prefix(pat, &value, longest)
                        } else {
                            pattern::trim_suffix(pat, &value, longest)
                        };
                        trimmed.map_err(|reason| ShellErrorKind::InvalidPattern {
                            pattern: pat.to_owned(),
                            reason,
                        })
                    }
                    _ => Err(ShellErrorKind::UnsupportedModifier(modifier)),
                }
            }
            Some('/') => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let pat = self.operand('/', true, ShellErrorKind::MissingSlash)?;
                let replacement = self.operand('}', true, ShellErrorKind::MissingBrace)?;
                let value = self.lookup(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pat}/{replacement}}}"));
                }
                pattern::replace(&pat, &value.unwrap_or_default(), &replacement, all).map_err(
                    |reason| ShellErrorKind::InvalidPattern {
                        pattern: pat.clone(),
                        reason,
                    },
                )
            }
            _ => Err(ShellErrorKind::UnsupportedModifier(modifier)),
        }
    }

    /// Reads a modifier operand up to `stop`; running off the end reports
    /// `at_end` rather than the generic unterminated error.
    fn operand(&mut self, stop: char, raw: bool, at_end: ShellErrorKind) -> Step<String> {
        match self.process_stop_on(Some(stop), raw) {
            Ok((word, _)) => Ok(word),
            Err(_) if self.peek().is_none() => Err(at_end),
            Err(e) => Err(e),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits
    /// (positional); or one special parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && go_is_digit(ch) {
                while let Some(d) = self.peek().filter(|c| go_is_digit(*c)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !go_is_letter(ch) && !go_is_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    /// `<<` keeps the whitespace that may follow it attached, so that
    /// `<< EOF` stays one field for heredoc detection.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            self.next();
            out.push(c);
        }
        out
    }
}

fn required(name: String, word: String, default: &str) -> ShellErrorKind {
    let message = if word.is_empty() {
        default.to_owned()
    } else {
        word
    };
    ShellErrorKind::Required { name, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ok(word: &str, pairs: &[(&str, &str)]) -> String {
        expand(word, &env(pairs), '\\').unwrap_or_else(|e| panic!("{word}: {e}"))
    }

    fn fails(word: &str, pairs: &[(&str, &str)]) -> bool {
        expand(word, &env(pairs), '\\').is_err()
    }

    #[test]
    fn defaults_and_alternatives() {
        let e = [("FOO", "xxx"), ("BAR", "")];
        assert_eq!(ok("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &e), "xxx  ccc");
        assert_eq!(ok("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &e), "xxx bbb ccc");
        assert_eq!(ok("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &e), "aaa bbb ");
        assert_eq!(ok("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &e), "aaa  ");
        assert_eq!(ok("${FOO?aaa}", &e), "xxx");
        assert_eq!(ok("${BAR?bbb}", &e), "");
        assert!(fails("${BAZ?ccc}", &e));
        assert!(fails("${BAR:?bbb}", &e));
        assert!(fails("${FOO=aaa}", &e));
        assert!(fails("${FOO=}", &[]));
    }

    #[test]
    fn required_message_is_expanded() {
        let err = expand(
            "${VAR:?message here$ARG}",
            &env(&[("VAR", ""), ("ARG", "x")]),
            '\\',
        )
        .unwrap_err();
        assert!(err.to_string().contains("VAR: message herex"), "{err}");
    }

    #[test]
    fn prefix_and_suffix_removal() {
        assert_eq!(
            ok(
                "${FOO#()[]{\\}^$.\\*\\?|\\\\}",
                &[("FOO", "()[]{}^$.*?|\\x")]
            ),
            "x"
        );
        assert_eq!(ok("${FOO%%\\**}", &[("FOO", "xx**")]), "xx");
        assert_eq!(ok("${FOO#*x*y}", &[("FOO", "xxyy")]), "y");
        assert_eq!(ok("${FOO#*}", &[("FOO", "xxyy")]), "xxyy");
        assert_eq!(ok("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")]), "xyy");
        assert_eq!(ok("${FOO##*x}", &[("FOO", "xxyy")]), "yy");
        assert_eq!(ok("${FOO#?\\?}", &[("FOO", "???y")]), "?y");
        assert_eq!(
            ok("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")]),
            ".xxyy."
        );
        assert_eq!(ok("${FOO%%\\**\\*}", &[("FOO", "a***yy*")]), "a");
        assert_eq!(ok("${FOO%}", &[("FOO", "xxyy")]), "xxyy");
        assert_eq!(
            ok("${P%/*}-${P##*/}", &[("P", "linux/arm64")]),
            "linux-arm64"
        );
        for bad in [
            "${FOO:#}",
            "${FOO:##}",
            "${FOO:%}",
            "${FOO:%%}",
            "${FOO#\\x}",
        ] {
            assert!(fails(bad, &[("FOO", "v")]), "{bad}");
        }
    }

    #[test]
    fn replacement() {
        let e = [("FOO", "/foo*/*/*.txt"), ("NEEDLE", "\\*/")];
        assert_eq!(
            ok("${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}", &e),
            "/foo.*/*.txt - /foo..*.txt"
        );
        let e = [("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")];
        assert_eq!(
            ok("${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}", &e),
            "/tmp/bar.txt - /bar.txt"
        );
        let e = [
            ("FOO", "/a/foo/b/c.txt"),
            ("NEEDLE", "/?/"),
            ("REPLACEMENT", "/"),
        ];
        assert_eq!(
            ok(
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &e
            ),
            "/foo/b/c.txt - /foo/c.txt"
        );
        assert_eq!(
            ok("${FOO//\\//\\/}", &[("FOO", "/tmp/foo.txt")]),
            "\\/tmp\\/foo.txt"
        );
        assert_eq!(
            ok("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")]),
            "wwxxyy"
        );
        assert!(fails("${FOO//ww}", &[("FOO", "xxyy")]));
        assert!(fails("${FOO//}", &[("FOO", "xxyy")]));
        assert_eq!(ok("${FOO///}", &[("FOO", "xxyy")]), "xxyy");
        assert_eq!(ok("${FOO///}", &[]), "");
    }

    #[test]
    fn matches_are_reported() {
        let p = Lexer::new('\\')
            .process("${FOO:-a} $BAR", &env(&[("FOO", "1")]))
            .unwrap();
        assert_eq!(p.matched.into_iter().collect::<Vec<_>>(), ["FOO"]);
        assert_eq!(p.unmatched.into_iter().collect::<Vec<_>>(), ["BAR"]);
    }

    #[test]
    fn skip_unset_keeps_text() {
        let mut lex = Lexer::new('\\');
        lex.skip_unset_env = true;
        let p = lex
            .process("$A ${B} ${C:-x} ${D/a/b} $E", &env(&[("E", "e")]))
            .unwrap();
        assert_eq!(p.result, "$A ${B} ${C:-x} ${D/a/b} e");
    }

    #[test]
    fn backtick_escape() {
        assert_eq!(expand("a`$b`\\c", &NoEnv, '`').unwrap(), "a$b\\c");
        assert_eq!(expand("\"`\"\"", &NoEnv, '`').unwrap(), "\"");
    }

    #[test]
    fn words_keep_text_before_nested_default() {
        let w = expand_words("./${DIR:-x}/f /dst", &NoEnv, '\\').unwrap();
        assert_eq!(w, ["./x/f", "/dst"]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let word = "${a:-".repeat(10_000);
        assert!(expand(&word, &NoEnv, '\\').is_err());
        let word = format!("{}x{}", "${a:-\"".repeat(5_000), "\"}".repeat(5_000));
        assert!(expand(&word, &NoEnv, '\\').is_err());
    }
}
