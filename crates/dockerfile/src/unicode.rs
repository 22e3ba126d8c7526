//! Go's `unicode` predicates, which the Dockerfile rules are written in
//! terms of. Rust's `is_alphabetic`/`is_numeric` are broader (they include
//! marks and letter/other numbers), so the categories are checked directly.

use unicode_general_category::{get_general_category, GeneralCategory as G};

/// `unicode.IsSpace`: the Unicode White_Space property, as Rust's.
pub(crate) fn go_is_space(c: char) -> bool {
    c.is_whitespace()
}

/// `unicode.IsLetter`: category L.
pub(crate) fn go_is_letter(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphabetic();
    }
    matches!(
        get_general_category(c),
        G::UppercaseLetter
            | G::LowercaseLetter
            | G::TitlecaseLetter
            | G::ModifierLetter
            | G::OtherLetter
    )
}

/// `unicode.IsDigit`: category Nd.
pub(crate) fn go_is_digit(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_digit();
    }
    get_general_category(c) == G::DecimalNumber
}

/// `strconv.IsPrint`: categories L, M, N, P, S and the ASCII space.
pub(crate) fn go_is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !matches!(
        get_general_category(c),
        G::SpaceSeparator
            | G::LineSeparator
            | G::ParagraphSeparator
            | G::Control
            | G::Format
            | G::Surrogate
            | G::PrivateUse
            | G::Unassigned
    )
}

/// `strings.TrimSpace`.
pub(crate) fn trim_space(s: &str) -> &str {
    s.trim_matches(go_is_space)
}

/// `strings.ToLower`, rune by rune: Go maps each rune to exactly one rune,
/// where Rust may expand (`İ` → `i̇`); the first rune of Rust's mapping is
/// Go's for every such case.
pub(crate) fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

/// `strings.ToUpper`, rune by rune. Where Rust's full mapping expands
/// (`ß` → `SS`) Go's simple mapping has, nearly always, no uppercase at all.
pub(crate) fn go_to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut up = c.to_uppercase();
            match (up.next(), up.next()) {
                (Some(u), None) => u,
                _ => c,
            }
        })
        .collect()
}

/// `strconv.Quote`, used by the AST dump and some error messages.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\t\n\u{0}\u{7f}"), r#""\t\n\x00\x7f""#);
        assert_eq!(go_quote("♥ 한"), "\"♥ 한\"");
        assert_eq!(
            go_quote("\u{a0}\u{200b}\u{e000}\u{10ffff}"),
            r#""\u00a0\u200b\ue000\U0010ffff""#
        );
    }

    #[test]
    fn case_mapping_is_rune_for_rune() {
        assert_eq!(go_to_lower("RUN İ"), "run i");
        assert_eq!(go_to_upper("ß"), "ß");
    }
}
