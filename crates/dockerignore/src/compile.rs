//! How docker turns one cleaned pattern into a way of matching paths.
//!
//! Docker sorts patterns into four kinds: plain strings compared exactly,
//! `prefix/**` and `**suffix` compared as byte prefixes and suffixes, and the
//! rest translated to a Go regular expression. The translation is textual and
//! has quirks that real `.dockerignore` files can trip over (class contents
//! and `\` escapes are handed to the regex engine nearly verbatim, so `\d`
//! means a digit and `[*]` is not the class of `*`); this module produces the
//! same Go regular expression text, and [`crate::goregex`] gives it Go's
//! meaning in the `regex` crate.

/// How a pattern is matched against a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// The path must equal the pattern.
    Exact,
    /// The pattern is `prefix**`: the path must start with `prefix`.
    Prefix,
    /// The pattern is `**suffix`: the path must end with `suffix`, or equal it
    /// without its leading `/`.
    Suffix,
    /// The path must match the pattern's regular expression.
    Regexp,
    /// The pattern passed docker's syntax check but its regular expression
    /// does not compile (e.g. `[z-a]`); matching it is an error, as in docker.
    ///
    /// Also the fate of an expression too large for the `regex` crate's
    /// default size limit, which Go's engine would still take: in practice
    /// only hundreds of `\pL`-like classes in one pattern.
    Invalid,
}

/// Characters that mean something to a Go regexp but nothing to a glob, so
/// they are escaped on the way through.
fn is_regex_only_meta(c: char) -> bool {
    matches!(c, '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$')
}

/// The kind of `cleaned` and, for [`MatchType::Regexp`], the anchored Go
/// regular expression docker compiles for it.
pub(crate) fn translate(cleaned: &str) -> (MatchType, Option<String>) {
    let mut regex = String::with_capacity(cleaned.len() * 2 + 2);
    regex.push('^');
    let mut kind = MatchType::Exact;
    let mut chars = cleaned.chars().peekable();
    // Docker walks the pattern with Go's text/scanner, which silently skips
    // a byte order mark at the very start. The exact/prefix/suffix forms
    // still compare against the pattern with the mark in it.
    if chars.peek() == Some(&'\u{FEFF}') {
        chars.next();
    }
    let mut first = true;
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                // `**/` is the same as `**`.
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if kind == MatchType::Exact {
                        kind = MatchType::Prefix;
                    } else {
                        regex.push_str(".*");
                        kind = MatchType::Regexp;
                    }
                } else {
                    // Any number of whole directories, including none.
                    regex.push_str("(.*/)?");
                    kind = MatchType::Regexp;
                }
                if first {
                    kind = MatchType::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = MatchType::Regexp;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = MatchType::Regexp;
            }
            c if is_regex_only_meta(c) => {
                regex.push('\\');
                regex.push(c);
            }
            '\\' => match chars.next() {
                Some(escaped) => {
                    regex.push('\\');
                    regex.push(escaped);
                    kind = MatchType::Regexp;
                }
                // Unreachable after the syntax check, which rejects a
                // trailing backslash; kept total rather than trusted.
                None => regex.push('\\'),
            },
            '[' | ']' => {
                regex.push(c);
                kind = MatchType::Regexp;
            }
            c => regex.push(c),
        }
        first = false;
    }
    if kind == MatchType::Regexp {
        regex.push('$');
        (kind, Some(regex))
    } else {
        (kind, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(translate("a/b"), (MatchType::Exact, None));
        assert_eq!(translate("a/**"), (MatchType::Prefix, None));
        assert_eq!(translate("**/a"), (MatchType::Suffix, None));
        assert_eq!(translate("**"), (MatchType::Suffix, None));
        assert_eq!(
            translate("a\\\\"),
            (MatchType::Regexp, Some("^a\\\\$".to_owned()))
        );
        assert_eq!(
            translate("\u{FEFF}a*"),
            (MatchType::Regexp, Some("^a[^/]*$".to_owned()))
        );
        assert_eq!(
            translate("***"),
            (MatchType::Regexp, Some("^(.*/)?[^/]*$".to_owned()))
        );
    }
}
