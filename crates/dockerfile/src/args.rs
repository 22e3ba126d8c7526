//! Per-instruction argument splitting (BuildKit's `line_parsers.go`): each
//! instruction has its own idea of what its arguments are, and the AST
//! dump shows exactly that.

use crate::ast::Value;
use crate::error::ErrorKind;
use crate::json::{parse_string_array, JsonArray};
use crate::unicode::go_is_space;

/// Go's `reWhitespace`: ASCII blanks but not newline.
pub(crate) fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits at the first run of blanks: `("a", Some("b c"))` for `"a  b c"`.
pub(crate) fn split_first_blank(s: &str) -> (&str, Option<&str>) {
    match s.find(is_blank) {
        Some(i) => {
            let rest = &s[i..];
            (&s[..i], Some(rest.trim_start_matches(is_blank)))
        }
        None => (s, None),
    }
}

fn words(items: impl IntoIterator<Item = String>) -> Vec<Value> {
    items.into_iter().map(Value::Word).collect()
}

/// `EXPOSE`/`FROM`, and the non-JSON form of `COPY`/`ADD`/`VOLUME`.
/// `rest` is already trimmed, so no empty fields arise.
pub(crate) fn whitespace_delimited(rest: &str) -> Vec<Value> {
    if rest.is_empty() {
        return Vec::new();
    }
    words(
        rest.split(is_blank)
            .filter(|w| !w.is_empty())
            .map(str::to_owned),
    )
}

/// `USER`, `WORKDIR`, `MAINTAINER`, `STOPSIGNAL`: the rest, whole.
pub(crate) fn whole(rest: &str) -> Vec<Value> {
    if rest.is_empty() {
        Vec::new()
    } else {
        vec![Value::Word(rest.to_owned())]
    }
}

/// Shell-like words with quotes and escapes kept in the text; they only
/// group. Used by `ARG`, `ENV` and `LABEL`.
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut out = Vec::new();
    let mut word = String::new();
    let mut blank_ok = false;
    let mut phase = Phase::Spaces;
    let mut i = 0;
    while let Some(&ch) = chars.get(i) {
        i += 1;
        match phase {
            Phase::Spaces if go_is_space(ch) => continue,
            Phase::Spaces | Phase::Word => {
                if go_is_space(ch) {
                    if blank_ok || !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    blank_ok = false;
                    phase = Phase::Spaces;
                    continue;
                }
                phase = Phase::Word;
                if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                }
                if ch == escape {
                    // Outside quotes the escape and what it escapes are both
                    // kept, even a quote; a trailing escape is dropped.
                    let Some(&next) = chars.get(i) else { continue };
                    word.push(ch);
                    word.push(next);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                }
                // Single quotes escape nothing.
                if ch == escape && q != '\'' {
                    let Some(&next) = chars.get(i) else {
                        phase = Phase::Word;
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Spaces && (blank_ok || !word.is_empty()) {
        out.push(word);
    }
    out
}

/// `ENV`/`LABEL`: `key value` (old form, one pair) or `k=v k2=v2`, as
/// (key, value, separator) triples where the separator is `""` for the old
/// form and `"="` for the new.
pub(crate) fn name_val(
    rest: &str,
    key: &'static str,
    escape: char,
) -> Result<Vec<Value>, ErrorKind> {
    let ws = parse_words(rest, escape);
    let Some(first) = ws.first() else {
        return Ok(Vec::new());
    };
    if !first.contains('=') {
        let (name, value) = split_first_blank(rest);
        let value = value.ok_or(ErrorKind::MustHaveTwoArguments(key))?;
        return Ok(words([name.to_owned(), value.to_owned(), String::new()]));
    }
    let mut out = Vec::with_capacity(ws.len() * 3);
    for w in ws {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ErrorKind::MissingEquals(w));
        };
        out.extend(words([k.to_owned(), v.to_owned(), "=".to_owned()]));
    }
    Ok(out)
}

/// `ARG`: each word as written.
pub(crate) fn name_or_name_val(rest: &str, escape: char) -> Vec<Value> {
    words(parse_words(rest, escape))
}

/// The JSON-array check shared by the exec-form instructions: `Ok(Some)`
/// for exec form, `Ok(None)` for "not JSON, use the other form".
fn json(rest: &str) -> Result<Option<Vec<Value>>, ErrorKind> {
    let trimmed = rest.trim_start_matches(go_is_space);
    if !trimmed.starts_with('[') {
        return Ok(None);
    }
    match parse_string_array(trimmed) {
        JsonArray::Strings(items) => Ok(Some(words(items))),
        JsonArray::NotStrings => Err(ErrorKind::NotStringArray),
        JsonArray::Invalid => Ok(None),
    }
}

/// `RUN`/`CMD`/`ENTRYPOINT`/`SHELL`: a JSON array, else the whole rest as
/// one shell-form string. Returns the values and whether it was JSON.
pub(crate) fn maybe_json(rest: &str) -> Result<(Vec<Value>, bool), ErrorKind> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match json(rest)? {
        Some(v) => (v, true),
        None => (whole(rest), false),
    })
}

/// `COPY`/`ADD`/`VOLUME`: a JSON array, else whitespace-separated words.
pub(crate) fn maybe_json_to_list(rest: &str) -> Result<(Vec<Value>, bool), ErrorKind> {
    Ok(match json(rest)? {
        Some(v) => (v, true),
        None => (whitespace_delimited(rest), false),
    })
}

/// `HEALTHCHECK`: a type word (`CMD`, `NONE`, …) then a `CMD`-like rest.
pub(crate) fn health_config(rest: &str) -> Result<(Vec<Value>, bool), ErrorKind> {
    let sep = rest.find(go_is_space).unwrap_or(rest.len());
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let (typ, after) = rest.split_at(sep);
    let (mut cmd, json) = maybe_json(after.trim_start_matches(go_is_space))?;
    let mut out = vec![Value::Word(typ.to_owned())];
    out.append(&mut cmd);
    Ok((out, json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_like_buildkit() {
        let cases: &[(&str, &[&str])] = &[
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
            ("a=\"\"", &["a=\"\""]),
            ("x\\", &["x"]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_words(input, '\\'), *expected, "{input}");
        }
    }

    #[test]
    fn json_outcomes() {
        assert_eq!(
            maybe_json("[\"a\"]").unwrap(),
            (vec![Value::Word("a".into())], true)
        );
        assert_eq!(
            maybe_json("['a']").unwrap(),
            (vec![Value::Word("['a']".into())], false)
        );
        assert_eq!(
            maybe_json("[ \"echo\", [ \"nested json\" ] ]"),
            Err(ErrorKind::NotStringArray)
        );
    }
}
