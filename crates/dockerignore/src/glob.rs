//! The syntax check docker runs on every pattern before accepting it.
//!
//! Docker validates a pattern by calling Go's `filepath.Match(pattern, ".")`
//! and keeping only its error. Since Go 1.16 that call checks the whole
//! pattern whatever the name, so the check is purely syntactic:
//!
//! ```text
//! pattern    = { term }
//! term       = '*' | '?' | '\' char | '[' [ '^' ] range { range } ']' | char
//! range      = rchar [ '-' rchar ]
//! rchar      = '\' char | char other than '-' and ']'
//! ```
//!
//! with two quirks kept here: a class must not end right after one of its
//! characters (`[a` is malformed even before the missing `]` is noticed), and
//! only `^` negates a class; `[!a]` is the class of `!` and `a`, as in Go.
//! Range order is not checked (`[z-a]` passes), and a range's ends are not
//! otherwise special; docker only notices such problems later, when the
//! pattern is compiled to a regular expression.

use std::iter::Peekable;
use std::str::Chars;

/// Whether Go's `filepath.Match` would accept `pattern`.
pub(crate) fn is_valid(pattern: &str) -> bool {
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        let well_formed = match c {
            '\\' => chars.next().is_some(),
            '[' => class(&mut chars),
            _ => true,
        };
        if !well_formed {
            return false;
        }
    }
    true
}

/// Consumes a class after its `[`, reporting whether it was well formed.
fn class(chars: &mut Peekable<Chars<'_>>) -> bool {
    if chars.peek() == Some(&'^') {
        chars.next();
    }
    let mut ranges = 0usize;
    loop {
        if ranges > 0 && chars.peek() == Some(&']') {
            chars.next();
            return true;
        }
        if !range_char(chars) {
            return false;
        }
        if chars.peek() == Some(&'-') {
            chars.next();
            if !range_char(chars) {
                return false;
            }
        }
        ranges += 1;
    }
}

/// One possibly escaped character of a class, which must not be the last
/// character of the pattern.
fn range_char(chars: &mut Peekable<Chars<'_>>) -> bool {
    match chars.next() {
        None | Some('-') | Some(']') => false,
        Some('\\') => chars.next().is_some() && chars.peek().is_some(),
        Some(_) => chars.peek().is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid;

    #[test]
    fn accepts_what_go_accepts() {
        for pattern in [
            "",
            "*",
            "a?b",
            "[a]",
            "[^a]",
            "[!a]",
            "[a-z]",
            "[z-a]",
            "[\\]a]",
            "[\\-]",
            "[x\\-]",
            "[\\-x]",
            "a\\*b",
            "[Local-Only]",
            "[a*]",
            "[[]",
            "[a-ζ]*",
            "\\é",
        ] {
            assert!(is_valid(pattern), "{pattern:?} should be valid");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for pattern in [
            "[", "[^", "[^bc", "a[", "[]a]", "[-]", "[x-]", "[-x]", "[a-b-c]", "\\", "a\\", "[a",
            "[a\\", "[\\a", "[]", "[^]", "[a-",
        ] {
            assert!(!is_valid(pattern), "{pattern:?} should be invalid");
        }
    }
}
