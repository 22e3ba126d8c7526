//! Go regular expressions, as docker writes them, in `regex` crate syntax.
//!
//! Docker matches patterns with Go's `regexp` package, and the text it hands
//! that package carries pieces of the user's pattern verbatim (see
//! [`crate::compile`]). The `regex` crate shares RE2's design and linear-time
//! guarantee, which is why it is used rather than a hand-written matcher: no
//! input can make matching backtrack. Its *syntax* differs from Go's in
//! places a pattern can reach, though: in Go `[` inside a class is an
//! ordinary character and `\d`, `\s`, `\w`, `\b` are ASCII-only, while the
//! `regex` crate nests classes and is Unicode-aware. So the Go text is parsed
//! here with Go's rules and written back out unambiguously: every literal as
//! `\x{…}`, every class rebuilt item by item, every group non-capturing.
//!
//! Only what docker's translation can produce is accepted. It escapes
//! `+ | { }` and never emits `(?` or `\p{`, so those are reported as
//! unsupported instead of being given a meaning that could never be
//! exercised.

use std::fmt::Write as _;

/// Why a Go regular expression does not compile (in Go, or here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    MissingBracket,
    MissingParen,
    UnexpectedParen,
    TrailingBackslash,
    BadEscape,
    BadCharRange,
    MissingRepeatArgument,
    NestedRepeat,
    Unsupported,
}

/// What the previous token left on Go's parse stack, which decides whether a
/// repetition operator may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Nothing to repeat: the start, or just after `(`.
    Nothing,
    Atom,
    /// A repetition operator; Go rejects another one right after (`a**`).
    Repeat,
}

/// `go`, a Go `regexp` expression, rewritten with the same meaning for the
/// `regex` crate.
pub(crate) fn to_rust(go: &str) -> Result<String, Invalid> {
    let mut t = Translator {
        rest: go,
        out: String::with_capacity(go.len() * 4),
        pending: String::new(),
        groups: Vec::new(),
        last: Last::Nothing,
    };
    t.run()?;
    Ok(t.out)
}

struct Translator<'a> {
    rest: &'a str,
    /// Finished output, except for the most recent atom.
    out: String,
    /// The most recent atom, kept apart so that a repetition can wrap it.
    pending: String,
    /// Where each open group starts in `out`.
    groups: Vec<usize>,
    last: Last,
}

impl Translator<'_> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.rest.chars().next()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    fn flush(&mut self) {
        self.out.push_str(&self.pending);
        self.pending.clear();
    }

    fn atom(&mut self, text: &str) {
        self.flush();
        self.pending.push_str(text);
        self.last = Last::Atom;
    }

    fn literal(&mut self, c: char) {
        self.flush();
        push_char(&mut self.pending, c);
        self.last = Last::Atom;
    }

    fn run(&mut self) -> Result<(), Invalid> {
        while let Some(c) = self.bump() {
            match c {
                '(' => {
                    if self.peek() == Some('?') {
                        return Err(Invalid::Unsupported);
                    }
                    self.flush();
                    self.groups.push(self.out.len());
                    self.out.push_str("(?:");
                    self.last = Last::Nothing;
                }
                ')' => {
                    let start = self.groups.pop().ok_or(Invalid::UnexpectedParen)?;
                    self.flush();
                    let mut group = self.out.split_off(start);
                    group.push(')');
                    self.pending = group;
                    self.last = Last::Atom;
                }
                '*' | '?' => self.repeat(c)?,
                '+' | '|' | '{' => return Err(Invalid::Unsupported),
                // Go compiles with OneLine, so ^ and $ are the text's ends.
                '^' => self.atom(r"(?:\A)"),
                '$' => self.atom(r"(?:\z)"),
                '.' => self.atom(r"[^\x{A}]"),
                '[' => {
                    let class = self.class()?;
                    self.atom(&class);
                }
                '\\' => self.escape()?,
                c => self.literal(c),
            }
        }
        if !self.groups.is_empty() {
            return Err(Invalid::MissingParen);
        }
        self.flush();
        Ok(())
    }

    fn repeat(&mut self, op: char) -> Result<(), Invalid> {
        match self.last {
            Last::Nothing => return Err(Invalid::MissingRepeatArgument),
            Last::Repeat => return Err(Invalid::NestedRepeat),
            Last::Atom => {}
        }
        let lazy = self.peek() == Some('?');
        if lazy {
            self.bump();
        }
        // Wrapping keeps the operator on exactly the Go operand, whatever
        // that operand's text looks like (it may itself end in a repetition,
        // see `\Q\E` below).
        self.pending = format!("(?:{}){op}{}", self.pending, if lazy { "?" } else { "" });
        self.last = Last::Repeat;
        Ok(())
    }

    /// A `\` sequence outside a class.
    fn escape(&mut self) -> Result<(), Invalid> {
        let Some(c) = self.peek() else {
            return Err(Invalid::TrailingBackslash);
        };
        match c {
            'A' => {
                self.bump();
                self.atom(r"(?:\A)");
            }
            'z' => {
                self.bump();
                self.atom(r"(?:\z)");
            }
            // Go's word boundaries only know ASCII word characters.
            'b' => {
                self.bump();
                self.atom(r"(?:(?-u:\b))");
            }
            'B' => {
                self.bump();
                self.atom(r"(?:(?-u:\B))");
            }
            'C' => return Err(Invalid::BadEscape),
            'Q' => {
                self.bump();
                let (quoted, rest) = self.rest.split_once(r"\E").unwrap_or((self.rest, ""));
                self.rest = rest;
                for c in quoted.chars() {
                    self.literal(c);
                }
                // Go forgets the previous operator after any token, even one
                // that adds nothing, so `a*\Q\E*` is accepted there.
                if quoted.is_empty() && self.last == Last::Repeat {
                    self.last = Last::Atom;
                }
            }
            'p' | 'P' => {
                let class = self.unicode_class()?;
                self.atom(&class);
            }
            'd' | 'D' | 's' | 'S' | 'w' | 'W' => {
                self.bump();
                self.atom(&perl_class(c));
            }
            _ => {
                let c = self.escaped_char()?;
                self.literal(c);
            }
        }
        Ok(())
    }

    /// The character of an ordinary escape, after its `\`.
    fn escaped_char(&mut self) -> Result<char, Invalid> {
        let c = self.bump().ok_or(Invalid::TrailingBackslash)?;
        if c.is_ascii() && !c.is_ascii_alphanumeric() {
            return Ok(c);
        }
        let code = match c {
            '1'..='7' if !self.peek().is_some_and(|d| ('0'..='7').contains(&d)) => {
                // A lone digit would be a backreference, which RE2 lacks.
                return Err(Invalid::BadEscape);
            }
            '0'..='7' => {
                let mut code = c as u32 - '0' as u32;
                for _ in 0..2 {
                    match self.peek() {
                        Some(d @ '0'..='7') => {
                            self.bump();
                            code = code * 8 + (d as u32 - '0' as u32);
                        }
                        _ => break,
                    }
                }
                code
            }
            'x' => self.hex_escape()?,
            'a' => 0x07,
            'f' => 0x0C,
            'n' => 0x0A,
            'r' => 0x0D,
            't' => 0x09,
            'v' => 0x0B,
            _ => return Err(Invalid::BadEscape),
        };
        char::from_u32(code).ok_or(Invalid::BadEscape)
    }

    /// `\x` followed by two hex digits or by `{digits}`.
    fn hex_escape(&mut self) -> Result<u32, Invalid> {
        let first = self.bump().ok_or(Invalid::BadEscape)?;
        if first == '{' {
            let mut code: u32 = 0;
            let mut digits = 0usize;
            loop {
                let c = self.bump().ok_or(Invalid::BadEscape)?;
                if c == '}' {
                    break;
                }
                let v = c.to_digit(16).ok_or(Invalid::BadEscape)?;
                code = code * 16 + v;
                if code > char::MAX as u32 {
                    return Err(Invalid::BadEscape);
                }
                digits += 1;
            }
            return if digits == 0 {
                Err(Invalid::BadEscape)
            } else {
                Ok(code)
            };
        }
        let second = self.bump().ok_or(Invalid::BadEscape)?;
        match (first.to_digit(16), second.to_digit(16)) {
            (Some(hi), Some(lo)) => Ok(hi * 16 + lo),
            _ => Err(Invalid::BadEscape),
        }
    }

    /// `\pX` or `\PX`, at the `p`/`P`.
    fn unicode_class(&mut self) -> Result<String, Invalid> {
        let negated = self.bump() == Some('P');
        let name = self.bump().ok_or(Invalid::BadCharRange)?;
        if name == '{' {
            // Docker escapes `{`, so only one-letter names reach Go.
            return Err(Invalid::Unsupported);
        }
        // Recent Go looks names up case-insensitively; the only one-letter
        // tables are the general categories below.
        let class = match name.to_ascii_uppercase() {
            c @ ('L' | 'M' | 'N' | 'P' | 'S' | 'Z') => {
                format!("\\{}{c}", if negated { 'P' } else { 'p' })
            }
            // Go's `C` omits unassigned code points (`Cn`), unlike the
            // `regex` crate's; surrogates (`Cs`) cannot occur in a `str`.
            'C' => format!(
                "[{}\\p{{Cc}}\\p{{Cf}}\\p{{Co}}]",
                if negated { "^" } else { "" }
            ),
            _ => return Err(Invalid::BadCharRange),
        };
        Ok(class)
    }

    /// A class, after its `[`, rebuilt as a `regex` crate class.
    fn class(&mut self) -> Result<String, Invalid> {
        let mut class = String::from("[");
        if self.peek() == Some('^') {
            self.bump();
            class.push('^');
        }
        let mut first = true;
        loop {
            match self.peek() {
                None => return Err(Invalid::MissingBracket),
                // `]` first is an ordinary member, as in Go.
                Some(']') if !first => {
                    self.bump();
                    break;
                }
                _ => {}
            }
            first = false;
            if self.rest.starts_with("[:") {
                // Go treats `[:` as a named class only when a `:]` follows
                // somewhere; otherwise the `[` is an ordinary member.
                if let Some(end) = self.rest[2..].find(":]") {
                    let name = &self.rest[..end + 4];
                    if !is_posix_class(name) {
                        return Err(Invalid::BadCharRange);
                    }
                    class.push_str(name);
                    self.rest = &self.rest[end + 4..];
                    continue;
                }
            }
            if self.rest.starts_with("\\p") || self.rest.starts_with("\\P") {
                self.bump();
                let unicode = self.unicode_class()?;
                class.push_str(&unicode);
                continue;
            }
            let perl = self.rest.strip_prefix('\\').and_then(|r| r.chars().next());
            if let Some(c @ ('d' | 'D' | 's' | 'S' | 'w' | 'W')) = perl {
                self.bump();
                self.bump();
                class.push_str(&perl_class(c));
                continue;
            }
            let lo = self.class_char()?;
            let mut hi = lo;
            // `[a-]` is `a` and `-`: a dash right before `]` is a member.
            let mut ahead = self.rest.chars();
            if ahead.next() == Some('-') && ahead.next().is_some_and(|c| c != ']') {
                self.bump();
                hi = self.class_char()?;
                if hi < lo {
                    return Err(Invalid::BadCharRange);
                }
            }
            push_char(&mut class, lo);
            if hi != lo {
                class.push('-');
                push_char(&mut class, hi);
            }
        }
        class.push(']');
        Ok(class)
    }

    fn class_char(&mut self) -> Result<char, Invalid> {
        match self.bump() {
            None => Err(Invalid::MissingBracket),
            Some('\\') => self.escaped_char(),
            Some(c) => Ok(c),
        }
    }
}

/// `c` as an escape that means exactly `c` anywhere in a `regex` pattern.
fn push_char(out: &mut String, c: char) {
    // Writing to a String cannot fail.
    let _ = write!(out, "\\x{{{:X}}}", c as u32);
}

/// Go's ASCII-only Perl classes, as bracketed classes that also nest.
fn perl_class(letter: char) -> String {
    let ranges: &[(u8, u8)] = match letter.to_ascii_lowercase() {
        'd' => &[(b'0', b'9')],
        's' => &[(b'\t', b'\n'), (0x0C, b'\r'), (b' ', b' ')],
        _ => &[(b'0', b'9'), (b'A', b'Z'), (b'_', b'_'), (b'a', b'z')],
    };
    let mut class = String::from("[");
    if letter.is_ascii_uppercase() {
        class.push('^');
    }
    for &(lo, hi) in ranges {
        push_char(&mut class, char::from(lo));
        if hi != lo {
            class.push('-');
            push_char(&mut class, char::from(hi));
        }
    }
    class.push(']');
    class
}

/// Go's POSIX classes; the `regex` crate knows the same names with the same
/// ASCII meanings, so they are passed through.
fn is_posix_class(name: &str) -> bool {
    let Some(inner) = name.strip_prefix("[:").and_then(|n| n.strip_suffix(":]")) else {
        return false;
    };
    let inner = inner.strip_prefix('^').unwrap_or(inner);
    matches!(
        inner,
        "alnum"
            | "alpha"
            | "ascii"
            | "blank"
            | "cntrl"
            | "digit"
            | "graph"
            | "lower"
            | "print"
            | "punct"
            | "space"
            | "upper"
            | "word"
            | "xdigit"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    fn re(go: &str) -> Regex {
        let rust = to_rust(go).unwrap_or_else(|e| panic!("{go:?} rejected: {e:?}"));
        Regex::new(&rust).unwrap_or_else(|e| panic!("{go:?} -> {rust:?}: {e}"))
    }

    #[test]
    fn go_class_quirks() {
        // `[` inside a class is a member; the class ends at the first `]`.
        let star = re("^[[^/]*]$");
        assert!(star.is_match("]"));
        assert!(star.is_match("[^/]"));
        assert!(!star.is_match("a]"));
        assert!(re("^[[:alpha:]]$").is_match("q"));
        assert!(!re("^[[:alpha:]]$").is_match("1"));
        assert!(re("^[[:a]$").is_match(":"));
        assert_eq!(to_rust("[[:bogus:]]"), Err(Invalid::BadCharRange));
        assert!(re("^[]a]$").is_match("]"));
        assert!(re("^[a-]$").is_match("-"));
        assert!(re("^[&&~~-]$").is_match("&"));
        assert_eq!(to_rust("[~--]"), Err(Invalid::BadCharRange));
        assert_eq!(to_rust("[z-a]"), Err(Invalid::BadCharRange));
        assert_eq!(to_rust("[Local-Only]"), Err(Invalid::BadCharRange));
        assert_eq!(to_rust("[a"), Err(Invalid::MissingBracket));
    }

    #[test]
    fn go_escapes() {
        assert!(re(r"^a\d$").is_match("a1"));
        assert!(!re(r"^a\d$").is_match("a٣"), "Go's \\d is ASCII only");
        assert!(re(r"^\x41\101\.$").is_match("AA."));
        assert!(re(r"^[\d\-]$").is_match("-"));
        assert!(re(r"^\pL$").is_match("ж"));
        assert!(re(r"^\pl$").is_match("ж"));
        assert!(re(r"^a\b$").is_match("a"));
        assert!(!re(r"^é\b$").is_match("é"), "Go's \\b is ASCII only");
        assert_eq!(to_rust(r"\p^L"), Err(Invalid::BadCharRange));
        assert_eq!(to_rust(r"\é"), Err(Invalid::BadEscape));
        assert_eq!(to_rust(r"\1"), Err(Invalid::BadEscape));
        assert_eq!(to_rust(r"\8"), Err(Invalid::BadEscape));
        assert_eq!(to_rust(r"\C"), Err(Invalid::BadEscape));
        assert_eq!(to_rust(r"[\b]"), Err(Invalid::BadEscape));
        assert_eq!(to_rust(r"\p\{"), Err(Invalid::BadCharRange));
        assert_eq!(to_rust(r"\"), Err(Invalid::TrailingBackslash));
    }

    #[test]
    fn quoting_swallows_the_end_anchor() {
        let quoted = re(r"^\Qa[^/]*$");
        assert!(quoted.is_match("a[^/]*$"));
        assert!(quoted.is_match("a[^/]*$ and more"));
        assert!(!quoted.is_match("ab"));
        assert!(re(r"^\Qa\E[^/]*$").is_match("abc"));
    }

    #[test]
    fn repetition_rules() {
        assert_eq!(to_rust("*"), Err(Invalid::MissingRepeatArgument));
        assert_eq!(to_rust("(*)"), Err(Invalid::MissingRepeatArgument));
        assert_eq!(to_rust("a**"), Err(Invalid::NestedRepeat));
        assert!(re("^a*?$").is_match("aa"));
        assert!(re(r"^a*\Q\E*$").is_match("aaa"));
        assert!(re("^^*a$").is_match("a"));
        assert!(re("^(.*/)?b$").is_match("x/y/b"));
        assert!(
            !re("^(.*/)?b$").is_match("x\n/b"),
            "Go's . stops at newlines"
        );
        assert_eq!(to_rust("(a"), Err(Invalid::MissingParen));
        assert_eq!(to_rust("a)"), Err(Invalid::UnexpectedParen));
    }
}
