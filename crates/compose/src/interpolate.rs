//! Compose-spec variable interpolation (`$VAR`, `${VAR:-default}`, …) with the
//! semantics of compose-go's `template` package.
//!
//! compose-go finds expressions with a regular expression whose operator form
//! `${NAME<op>(.*)}` is greedy up to the *last* `}` of the line, and then cuts
//! that match back at the first balanced closing brace; whatever followed is
//! substituted on its own. Several observable quirks (which text an "Invalid
//! template" error quotes, which brace closes an expression with stray braces
//! in its default) come from that two-step shape, so the scanner below
//! reproduces it rather than using a plain recursive-descent parser.

use std::fmt::Write as _;
use std::ops::Range;

use indexmap::IndexMap;
use serde::Serialize;

/// How deep defaults may nest (`${A:-${B:-${C}}}` is three levels) before we
/// give up. compose-go has no limit (Go stacks grow); we need one so that a
/// hostile template cannot overflow the stack. Real files use a handful.
pub const MAX_NESTING: usize = 100;

/// Error produced by [`substitute`]; `Display` matches compose-go's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InterpolateError {
    /// A `${` that does not start a valid expression. `template` is the text
    /// compose-go reports: the (sub)template in which the bad `${` was found.
    #[error("Invalid template: {}", go_quote(.template))]
    InvalidTemplate { template: String },
    /// `${VAR:?reason}` / `${VAR?reason}` with the variable missing.
    #[error("required variable {variable} is missing a value{}", reason_suffix(.reason))]
    MissingRequired { variable: String, reason: String },
    /// Defaults nested deeper than [`MAX_NESTING`].
    #[error("variable defaults are nested more than {limit} levels deep")]
    NestingTooDeep { limit: usize },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// compose-go's full message for an interpolation error at a document path
/// (dot-separated keys, `[]` for list items), e.g.
/// `error while interpolating services.web.image: required variable …`.
pub fn describe_at(path: &str, err: &InterpolateError) -> String {
    match err {
        InterpolateError::InvalidTemplate { template } => format!(
            "invalid interpolation format for {path}.\nYou may need to escape any $ with another $.\n{template}"
        ),
        other => format!("error while interpolating {path}: {other}"),
    }
}

/// An [`InterpolateError`] located in a document; `Display` is [`describe_at`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError {
    pub path: String,
    pub error: InterpolateError,
}

impl std::fmt::Display for PathError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&describe_at(&self.path, &self.error))
    }
}

impl std::error::Error for PathError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The operator of a `${NAME<op>value}` expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operator {
    /// `:?` — error when unset or empty.
    RequiredNonEmpty,
    /// `?` — error when unset.
    Required,
    /// `:-` — default when unset or empty.
    DefaultIfEmpty,
    /// `-` — default when unset.
    DefaultIfUnset,
    /// `:+` — replacement when set and non-empty.
    ReplaceIfNonEmpty,
    /// `+` — replacement when set.
    ReplaceIfSet,
}

impl Operator {
    pub fn symbol(self) -> &'static str {
        match self {
            Operator::RequiredNonEmpty => ":?",
            Operator::Required => "?",
            Operator::DefaultIfEmpty => ":-",
            Operator::DefaultIfUnset => "-",
            Operator::ReplaceIfNonEmpty => ":+",
            Operator::ReplaceIfSet => "+",
        }
    }

    /// The operator spelled at the start of `text`, with its length.
    fn at_start(text: &[u8]) -> Option<(Operator, usize)> {
        let plain = |b: u8| match b {
            b'?' => Some(Operator::Required),
            b'-' => Some(Operator::DefaultIfUnset),
            b'+' => Some(Operator::ReplaceIfSet),
            _ => None,
        };
        match text {
            [b':', next, ..] => plain(*next).map(|op| (op.with_colon(), 2)),
            [first, ..] => plain(*first).map(|op| (op, 1)),
            [] => None,
        }
    }

    fn with_colon(self) -> Operator {
        match self {
            Operator::Required => Operator::RequiredNonEmpty,
            Operator::DefaultIfUnset => Operator::DefaultIfEmpty,
            Operator::ReplaceIfSet => Operator::ReplaceIfNonEmpty,
            colon => colon,
        }
    }
}

/// The operator compose-go applies to the text inside `${…}`: the one whose
/// spelling occurs first (so `VAR-a:?b` is a default, not a requirement).
/// `None` when the text holds no operator at all.
pub fn operator_for(expression: &str) -> Option<Operator> {
    let bytes = expression.as_bytes();
    (0..bytes.len()).find_map(|i| {
        bytes
            .get(i..)
            .and_then(Operator::at_start)
            .map(|(op, _)| op)
    })
}

/// One variable found by [`extract_variables`]; serializes with the field
/// names of compose-go's `template.Variable` as the conformance data spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub name: String,
    /// Text after `-`/`:-`, unsubstituted; empty when there is none.
    #[serde(rename = "default")]
    pub default_value: String,
    /// Text after `+`/`:+`, unsubstituted; empty when there is none.
    #[serde(rename = "presence")]
    pub presence_value: String,
    /// Whether the expression used `?` or `:?`.
    pub required: bool,
}

/// Substitutes every variable expression in `template`.
///
/// `lookup` returns `None` for an unset variable, which is different from a
/// variable set to the empty string.
pub fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolateError> {
    substitute_tracking_unset(template, lookup, &mut |_| {})
}

/// Like [`substitute`], and calls `on_unset` with the name of every unset
/// variable that was replaced by a blank string: where compose prints
/// `The "X" variable is not set. Defaulting to a blank string.`. Defaults that
/// are not taken are not evaluated, so they report nothing.
pub fn substitute_tracking_unset(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    on_unset: &mut dyn FnMut(&str),
) -> Result<String, InterpolateError> {
    let mut ctx = Context { lookup, on_unset };
    ctx.substitute(template, 0)
}

struct Context<'l, 'u> {
    lookup: &'l dyn Fn(&str) -> Option<String>,
    on_unset: &'u mut dyn FnMut(&str),
}

impl Context<'_, '_> {
    fn substitute(&mut self, template: &str, depth: usize) -> Result<String, InterpolateError> {
        if depth > MAX_NESTING {
            return Err(InterpolateError::NestingTooDeep { limit: MAX_NESTING });
        }
        let mut out = String::with_capacity(template.len());
        // compose-go substitutes the text after a cut-back expression as a
        // template of its own, so an invalid `${` there quotes only that text.
        let mut own_template: Option<Range<usize>> = None;
        for (start, piece) in Scanner::new(template) {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Dollar => out.push('$'),
                Piece::Var { name } => out.push_str(&self.value_or_blank(name)),
                Piece::Expr {
                    name,
                    op,
                    body,
                    rest,
                } => {
                    out.push_str(&self.apply(name, op, body, depth)?);
                    if rest.is_some() {
                        own_template = rest;
                    }
                }
                Piece::Invalid => {
                    let quoted = match &own_template {
                        Some(range) if start < range.end => template.get(range.clone()),
                        _ => None,
                    };
                    return Err(InterpolateError::InvalidTemplate {
                        template: quoted.unwrap_or(template).to_owned(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn value_or_blank(&mut self, name: &str) -> String {
        match (self.lookup)(name) {
            Some(value) => value,
            None => {
                (self.on_unset)(name);
                String::new()
            }
        }
    }

    fn apply(
        &mut self,
        name: &str,
        op: Operator,
        body: &str,
        depth: usize,
    ) -> Result<String, InterpolateError> {
        let value = (self.lookup)(name);
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        match op {
            Operator::DefaultIfEmpty | Operator::DefaultIfUnset => {
                let use_value = match op {
                    Operator::DefaultIfEmpty => non_empty,
                    _ => value.is_some(),
                };
                match value {
                    Some(v) if use_value => Ok(v),
                    _ => self.substitute(body, depth + 1),
                }
            }
            Operator::ReplaceIfNonEmpty | Operator::ReplaceIfSet => {
                let replace = match op {
                    Operator::ReplaceIfNonEmpty => non_empty,
                    _ => value.is_some(),
                };
                if replace {
                    self.substitute(body, depth + 1)
                } else {
                    // Unset, or set to "" with `:+`: either way the value is "".
                    Ok(String::new())
                }
            }
            Operator::RequiredNonEmpty | Operator::Required => {
                let satisfied = match op {
                    Operator::RequiredNonEmpty => non_empty,
                    _ => value.is_some(),
                };
                match value {
                    Some(v) if satisfied => Ok(v),
                    _ => Err(InterpolateError::MissingRequired {
                        variable: name.to_owned(),
                        reason: self.substitute(body, depth + 1)?,
                    }),
                }
            }
        }
    }
}

/// Every variable referenced by `template`, as compose-go's `ExtractVariables`
/// sees it for one string: defaults and replacements are scanned too (but
/// not the message of `?`/`:?`). When a name occurs more than once, the entry
/// compose-go would keep wins. Invalid `${` are skipped (compose-go records
/// them under an empty name, which nothing can use).
pub fn extract_variables(template: &str) -> IndexMap<String, Variable> {
    let mut found = Vec::new();
    collect_variables(template, 0, &mut found);
    let mut map = IndexMap::with_capacity(found.len());
    for variable in found {
        map.insert(variable.name.clone(), variable);
    }
    map
}

fn collect_variables(template: &str, depth: usize, out: &mut Vec<Variable>) {
    if depth > MAX_NESTING {
        return;
    }
    // compose-go lists the variables after a cut-back expression before the
    // expression's own (it recurses into that text first), which decides
    // which duplicate survives; hold an expression's own entries back until
    // the scan leaves that text. Nested regions all end at the same place.
    let mut held: Vec<(usize, Vec<Variable>)> = Vec::new();
    for (start, piece) in Scanner::new(template) {
        while held.last().is_some_and(|(end, _)| start >= *end) {
            if let Some((_, vars)) = held.pop() {
                out.extend(vars);
            }
        }
        match piece {
            Piece::Text(_) | Piece::Dollar | Piece::Invalid => {}
            Piece::Var { name } => out.push(Variable {
                name: name.to_owned(),
                ..Variable::default()
            }),
            Piece::Expr {
                name,
                op,
                body,
                rest,
            } => {
                let mut own = vec![Variable {
                    name: name.to_owned(),
                    ..Variable::default()
                }];
                let variable = &mut own[0];
                match op {
                    Operator::RequiredNonEmpty | Operator::Required => variable.required = true,
                    Operator::DefaultIfEmpty | Operator::DefaultIfUnset => {
                        variable.default_value = body.to_owned()
                    }
                    Operator::ReplaceIfNonEmpty | Operator::ReplaceIfSet => {
                        variable.presence_value = body.to_owned()
                    }
                }
                if !matches!(op, Operator::RequiredNonEmpty | Operator::Required) {
                    collect_variables(body, depth + 1, &mut own);
                }
                match rest {
                    Some(range) => held.push((range.end, own)),
                    None => out.extend(own),
                }
            }
        }
    }
    while let Some((_, vars)) = held.pop() {
        out.extend(vars);
    }
}

/// A piece of a template, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'a> {
    /// Literal text, copied as is (including a `$` that starts nothing).
    Text(&'a str),
    /// `$$`, which stands for one `$`.
    Dollar,
    /// `$NAME` or `${NAME}`.
    Var { name: &'a str },
    /// `${NAME<op>body}`. `rest` is set when compose-go's greedy match went
    /// past the closing brace: the byte range of the text it substitutes as
    /// a template of its own (it is scanned normally after this piece).
    Expr {
        name: &'a str,
        op: Operator,
        body: &'a str,
        rest: Option<Range<usize>>,
    },
    /// A `${` that starts no valid expression.
    Invalid,
}

struct Scanner<'a> {
    text: &'a str,
    pos: usize,
    /// Last `}` of the line being scanned, cached because every operator
    /// expression on a line needs it: (line end, position of that `}`).
    line: Option<(usize, Option<usize>)>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            pos: 0,
            line: None,
        }
    }

    /// Position of the last `}` at or after `from` on `from`'s line.
    fn last_brace_on_line(&mut self, from: usize) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let cached = match self.line {
            Some((end, last)) if from <= end => last,
            _ => {
                let end = memchr(b'\n', bytes, from).unwrap_or(bytes.len());
                let line_start = bytes[..from]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                let last = bytes[line_start..end]
                    .iter()
                    .rposition(|&b| b == b'}')
                    .map(|i| line_start + i);
                self.line = Some((end, last));
                last
            }
        };
        cached.filter(|&brace| brace >= from)
    }

    /// The piece starting with the `$` at `at`, and where scanning resumes.
    fn dollar(&mut self, at: usize) -> Option<(Piece<'a>, usize)> {
        let bytes = self.text.as_bytes();
        match bytes.get(at + 1)? {
            b'$' => Some((Piece::Dollar, at + 2)),
            b if is_name_start(*b) => {
                let end = name_end(bytes, at + 1);
                Some((
                    Piece::Var {
                        name: &self.text[at + 1..end],
                    },
                    end,
                ))
            }
            b'{' => Some(self.braced(at)),
            _ => None,
        }
    }

    fn braced(&mut self, at: usize) -> (Piece<'a>, usize) {
        let bytes = self.text.as_bytes();
        let invalid = (Piece::Invalid, at + 2);
        let name_start = at + 2;
        if !bytes.get(name_start).copied().is_some_and(is_name_start) {
            return invalid;
        }
        let after_name = name_end(bytes, name_start);
        let name = &self.text[name_start..after_name];
        if bytes.get(after_name) == Some(&b'}') {
            return (Piece::Var { name }, after_name + 1);
        }
        let Some((op, op_len)) = bytes.get(after_name..).and_then(Operator::at_start) else {
            return invalid;
        };
        let body_start = after_name + op_len;
        let Some(greedy_end) = self.last_brace_on_line(body_start) else {
            return invalid;
        };
        let (body_end, rest) = match first_closing_brace(&bytes[at..=greedy_end]) {
            Some(offset) => {
                let close = at + offset;
                let rest = (close < greedy_end).then_some(close + 1..greedy_end + 1);
                (close, rest)
            }
            None => (greedy_end, None),
        };
        (
            Piece::Expr {
                name,
                op,
                body: &self.text[body_start..body_end],
                rest,
            },
            body_end + 1,
        )
    }
}

impl<'a> Iterator for Scanner<'a> {
    type Item = (usize, Piece<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let start = self.pos;
        let bytes = self.text.as_bytes();
        if start >= bytes.len() {
            return None;
        }
        let Some(dollar) = memchr(b'$', bytes, start) else {
            self.pos = bytes.len();
            return Some((start, Piece::Text(&self.text[start..])));
        };
        if dollar > start {
            self.pos = dollar;
            return Some((start, Piece::Text(&self.text[start..dollar])));
        }
        match self.dollar(dollar) {
            Some((piece, next)) => {
                self.pos = next;
                Some((start, piece))
            }
            None => {
                self.pos = dollar + 1;
                Some((start, Piece::Text("$")))
            }
        }
    }
}

/// compose-go's `getFirstBraceClosingIndex`, quirk included: the byte after
/// each `{` is skipped, so in `${A:-{}}` the first `}` does not count.
/// Braces are ASCII, so skipping one byte never lands a `}` mid-character.
fn first_closing_brace(bytes: &[u8]) -> Option<usize> {
    let mut open = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'}' => {
                open = open.wrapping_sub(1);
                if open == 0 {
                    return Some(i);
                }
            }
            b'{' => {
                open = open.wrapping_add(1);
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

fn is_name_start(b: u8) -> bool {
    b == b'_' || b.is_ascii_alphabetic()
}

fn name_end(bytes: &[u8], from: usize) -> usize {
    bytes
        .get(from..)
        .and_then(|tail| {
            tail.iter()
                .position(|&b| !(b == b'_' || b.is_ascii_alphanumeric()))
        })
        .map_or(bytes.len(), |i| from + i)
}

fn memchr(needle: u8, haystack: &[u8], from: usize) -> Option<usize> {
    haystack
        .get(from..)?
        .iter()
        .position(|&b| b == needle)
        .map(|i| from + i)
}

/// A string as Go's `%#v`/`%q` prints it (`strconv.Quote`), since compose-go's
/// messages quote that way. Go decides what is printable from Unicode
/// categories that Rust's std does not expose; this covers controls, spaces
/// other than U+0020, the common format characters and private use, which is
/// what matters in practice.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if !go_is_print(c) => {
                let code = c as u32;
                if code < 0x10000 {
                    let _ = write!(out, "\\u{code:04x}");
                } else {
                    let _ = write!(out, "\\U{code:08x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c as u32,
        0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x890..=0x891 | 0x8E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xD800..=0xDFFF | 0xE000..=0xF8FF | 0xFEFF | 0xFFF9..=0xFFFB | 0xFFFE..=0xFFFF
        | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0001 | 0xE0020..=0xE007F | 0xF0000..)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sub(template: &str, pairs: &[(&str, &str)]) -> Result<String, InterpolateError> {
        let vars = env(pairs);
        substitute(template, &|k| vars.get(k).cloned())
    }

    #[test]
    fn nested_defaults_are_evaluated_lazily_and_in_order() {
        assert_eq!(sub("${A:-${B:-x}}", &[]).unwrap(), "x");
        assert_eq!(sub("${A:-${B:-x}}", &[("B", "b")]).unwrap(), "b");
        assert_eq!(sub("${A:-${B:-x}}", &[("A", "a")]).unwrap(), "a");
        assert_eq!(sub("${A:-${B}-${C:-c}}!", &[("B", "b")]).unwrap(), "b-c!");
        // The bad `${` sits in a default that is never used.
        assert_eq!(sub("${A:-${}}", &[("A", "a")]).unwrap(), "a");
    }

    #[test]
    fn text_after_an_expression_on_the_same_line_is_substituted() {
        assert_eq!(
            sub("${A:-x} and ${B:-y} then $C}", &[("C", "c")]).unwrap(),
            "x and y then c}"
        );
        assert_eq!(sub("${A:-x}}", &[]).unwrap(), "x}");
    }

    #[test]
    fn dollar_dollar_escapes() {
        assert_eq!(sub("$$", &[]).unwrap(), "$");
        assert_eq!(sub("$$$$A", &[("A", "a")]).unwrap(), "$$A");
        assert_eq!(sub("$$$A", &[("A", "a")]).unwrap(), "$a");
        assert_eq!(sub("${A:-$$B}", &[]).unwrap(), "$B");
        assert_eq!(sub("$1 $- $", &[]).unwrap(), "$1 $- $");
    }

    #[test]
    fn invalid_template_quotes_the_template_it_was_found_in() {
        let err = sub("a ${ b", &[]).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid template: "a ${ b""#);
        // In a default, compose-go reports the default text.
        let err = sub("${A:-${}", &[]).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid template: "${""#);
        // After a cut-back expression, only the trailing text.
        let err = sub("x ${A:-1} ${ }", &[]).unwrap_err();
        assert_eq!(err.to_string(), r#"Invalid template: " ${ }""#);
        // An operator expression must close on its own line.
        assert!(sub("${A:-x\n}", &[]).is_err());
        assert_eq!(
            sub("${\t\"é\u{0}", &[]).unwrap_err().to_string(),
            "Invalid template: \"${\\t\\\"é\\x00\""
        );
    }

    #[test]
    fn unset_variables_are_reported_once_each_use() {
        let vars = env(&[("A", "")]);
        let mut unset = Vec::new();
        let out = substitute_tracking_unset(
            "$A ${B} ${C:-${D}} ${E:+$F}",
            &|k| vars.get(k).cloned(),
            &mut |name| unset.push(name.to_owned()),
        )
        .unwrap();
        assert_eq!(out, "   ");
        assert_eq!(unset, ["B", "D"]);
    }

    #[test]
    fn nesting_limit_errors_instead_of_overflowing() {
        let deep = format!(
            "{}x{}",
            "${A:-".repeat(MAX_NESTING + 5),
            "}".repeat(MAX_NESTING + 5)
        );
        assert_eq!(
            sub(&deep, &[]),
            Err(InterpolateError::NestingTooDeep { limit: MAX_NESTING })
        );
        let ok = format!(
            "{}x{}",
            "${A:-".repeat(MAX_NESTING),
            "}".repeat(MAX_NESTING)
        );
        assert_eq!(sub(&ok, &[]).unwrap(), "x");
    }

    #[test]
    fn long_lines_of_expressions_do_not_recurse() {
        let line = "${A:-x}".repeat(100_000);
        assert_eq!(sub(&line, &[]).unwrap(), "x".repeat(100_000));
    }

    #[test]
    fn extract_keeps_what_compose_go_keeps_for_duplicates() {
        let vars = extract_variables("${A:-x}${A:-y}");
        assert_eq!(vars["A"].default_value, "x");
        let vars = extract_variables("$A ${B?msg $C} ${D:+$E}");
        let mut names: Vec<_> = vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["A", "B", "D", "E"]);
        assert!(vars["B"].required);
        assert_eq!(vars["D"].presence_value, "$E");
    }

    #[test]
    fn describe_at_formats_like_compose_go() {
        let err = sub("${X?boom}", &[]).unwrap_err();
        assert_eq!(
            describe_at("services.web.image", &err),
            "error while interpolating services.web.image: required variable X is missing a value: boom"
        );
        let err = sub("${", &[]).unwrap_err();
        let located = PathError {
            path: "a.b".into(),
            error: err,
        };
        assert_eq!(
            located.to_string(),
            "invalid interpolation format for a.b.\nYou may need to escape any $ with another $.\n${"
        );
    }
}
