//! The exec-form check: is an argument a JSON array of strings?
//!
//! Written against Go's `encoding/json` rather than with a JSON crate
//! because the three outcomes must match BuildKit's exactly: valid arrays of
//! strings are exec form; valid JSON with a non-string element is an error;
//! anything else (including a number too large for a float64, which Go
//! reports as a decode error) silently falls back to shell form. Go also
//! turns bad `\u` surrogates into U+FFFD rather than rejecting them.

/// What a `[`-prefixed argument turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonArray {
    Strings(Vec<String>),
    /// Valid JSON array holding something other than a string.
    NotStrings,
    /// Not JSON (or not a decodable array): use the shell form.
    Invalid,
}

/// Go's `encoding/json` nesting limit; past it the input is invalid.
const MAX_NESTING: usize = 10_000;

pub(crate) fn parse_string_array(text: &str) -> JsonArray {
    let mut p = Parser {
        s: text.as_bytes(),
        pos: 0,
        overflow: false,
    };
    match p.top() {
        None => JsonArray::Invalid,
        Some(_) if p.overflow => JsonArray::Invalid,
        Some(items) => match items.into_iter().collect::<Option<Vec<String>>>() {
            Some(strings) => JsonArray::Strings(strings),
            None => JsonArray::NotStrings,
        },
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Array,
    Object,
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
    /// A number out of float64 range was seen (Go: decode error).
    overflow: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// The top-level array: each element is `Some(string)` or `None` for a
    /// non-string. `None` overall means invalid JSON.
    fn top(&mut self) -> Option<Vec<Option<String>>> {
        self.ws();
        if !self.eat(b'[') {
            return None;
        }
        let mut items = Vec::new();
        self.ws();
        if !self.eat(b']') {
            loop {
                self.ws();
                if self.peek() == Some(b'"') {
                    items.push(Some(self.string()?));
                } else {
                    self.nested_value()?;
                    items.push(None);
                }
                self.ws();
                if self.eat(b',') {
                    continue;
                }
                if self.eat(b']') {
                    break;
                }
                return None;
            }
        }
        self.ws();
        if self.pos != self.s.len() {
            return None;
        }
        Some(items)
    }

    /// Validates one value of any kind without recursion.
    fn nested_value(&mut self) -> Option<()> {
        let mut stack: Vec<Open> = Vec::new();
        loop {
            // Expecting a value here.
            self.ws();
            match self.peek()? {
                b'[' | b'{' => {
                    let kind = if self.peek() == Some(b'[') {
                        Open::Array
                    } else {
                        Open::Object
                    };
                    self.pos += 1;
                    // +1: the top-level array counts as a level in Go.
                    if stack.len() + 1 >= MAX_NESTING {
                        return None;
                    }
                    stack.push(kind);
                    self.ws();
                    let close = if kind == Open::Array { b']' } else { b'}' };
                    if self.eat(close) {
                        stack.pop();
                    } else {
                        if kind == Open::Object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                b'"' => {
                    self.string()?;
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                _ => self.number()?,
            }
            // After a value: close containers or move to the next element.
            loop {
                let Some(&kind) = stack.last() else {
                    return Some(());
                };
                self.ws();
                if self.eat(b',') {
                    if kind == Open::Object {
                        self.key()?;
                    }
                    break;
                }
                let close = if kind == Open::Array { b']' } else { b'}' };
                if self.eat(close) {
                    stack.pop();
                    continue;
                }
                return None;
            }
        }
    }

    /// An object key and its colon.
    fn key(&mut self) -> Option<()> {
        self.ws();
        if self.peek() != Some(b'"') {
            return None;
        }
        self.string()?;
        self.ws();
        self.eat(b':').then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        if self.s.get(self.pos..end)? == word {
            self.pos = end;
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<()> {
        let start = self.pos;
        self.eat(b'-');
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.eat(b'.') && self.digits() == 0 {
            return None;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let lexeme = std::str::from_utf8(self.s.get(start..self.pos)?).ok()?;
        if lexeme.parse::<f64>().map_or(true, f64::is_infinite) {
            self.overflow = true;
        }
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let end = self.pos.checked_add(4)?;
        let digits = std::str::from_utf8(self.s.get(self.pos..end)?).ok()?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        self.pos = end;
        u32::from_str_radix(digits, 16).ok()
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b'"') {
            return None;
        }
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(out).ok(),
                b'\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        _ => return None,
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                0..=0x1f => return None,
                _ => out.push(b),
            }
        }
    }

    /// After `\u`: a code point, joining a surrogate pair when one follows;
    /// a lone surrogate becomes U+FFFD as in Go.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        if !(0xD800..0xE000).contains(&first) {
            return char::from_u32(first);
        }
        if (0xD800..0xDC00).contains(&first) && self.s.get(self.pos..self.pos + 2) == Some(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            match self.hex4() {
                Some(second) if (0xDC00..0xE000).contains(&second) => {
                    let c = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
                    return char::from_u32(c);
                }
                // Not a pair: the second escape is decoded on its own.
                _ => self.pos = save,
            }
        }
        Some(char::REPLACEMENT_CHARACTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> JsonArray {
        JsonArray::Strings(v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn outcomes() {
        assert_eq!(parse_string_array("[]"), strings(&[]));
        assert_eq!(parse_string_array(r#"[ "a" , "b" ]"#), strings(&["a", "b"]));
        assert_eq!(
            parse_string_array(r#"["\u00e9\ud83d\ude00\ud800"]"#),
            strings(&["é😀\u{fffd}"])
        );
        assert_eq!(parse_string_array(r#"["a", ["b"]]"#), JsonArray::NotStrings);
        assert_eq!(
            parse_string_array(r#"["a", {"k": [1, null, true]}]"#),
            JsonArray::NotStrings
        );
        assert_eq!(parse_string_array(r#"["a", 1e400]"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"['a']"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a""#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a"] x"#), JsonArray::Invalid);
        assert_eq!(parse_string_array(r#"["a", 01]"#), JsonArray::Invalid);
        assert_eq!(parse_string_array("[\"a\tb\"]"), JsonArray::Invalid);
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let deep = format!("[{}{}]", "[".repeat(20_000), "]".repeat(20_000));
        assert_eq!(parse_string_array(&deep), JsonArray::Invalid);
        let ok = format!("[{}{}]", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_string_array(&ok), JsonArray::NotStrings);
    }
}
