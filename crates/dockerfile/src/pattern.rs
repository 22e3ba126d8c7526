//! Shell patterns for `${VAR#pat}`, `${VAR%pat}` and `${VAR/pat/rep}`:
//! `*` is any run, `?` any one character, `\` quotes `*`, `?`, `\` (and
//! `}` / `/`, which it must protect from the `${}` reader). No bracket
//! expressions, as in BuildKit.
//!
//! BuildKit compiles these to Go regular expressions, whose `.` does not
//! match a newline; `*` and `?` here do not either, so multi-line values
//! behave the same.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Any,
    Star,
}

/// Compiles a pattern; the error is the reason text BuildKit reports.
fn compile(pattern: &str) -> Result<Vec<Tok>, String> {
    let mut toks = Vec::new();
    let mut it = pattern.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '*' => toks.push(Tok::Star),
            '?' => toks.push(Tok::Any),
            '\\' => {
                // `\}` and `\/` lose the backslash; the character is then
                // read as an ordinary literal on the next turn.
                if matches!(it.peek(), Some('}' | '/')) {
                    continue;
                }
                match it.next() {
                    Some(e @ ('*' | '?' | '\\')) => toks.push(Tok::Lit(e)),
                    Some(e) => return Err(format!("invalid escape '\\{e}'")),
                    None => {
                        return Err(format!(
                            "invalid escape '\\{}'",
                            char::REPLACEMENT_CHARACTER
                        ))
                    }
                }
            }
            c => toks.push(Tok::Lit(c)),
        }
    }
    Ok(toks)
}

/// Pattern positions reachable without consuming input (a star may match
/// nothing).
fn close(toks: &[Tok], states: &mut [bool]) {
    for i in 0..toks.len() {
        if states[i] && toks[i] == Tok::Star {
            states[i + 1] = true;
        }
    }
}

/// Every `end` such that `toks` matches `chars[start..end]` exactly, in
/// increasing order: a simulation of the pattern's automaton, linear in the
/// input for a fixed pattern.
fn match_ends(toks: &[Tok], chars: &[char], start: usize) -> Vec<usize> {
    let m = toks.len();
    let mut states = vec![false; m + 1];
    states[0] = true;
    close(toks, &mut states);
    let mut ends = Vec::new();
    if states[m] {
        ends.push(start);
    }
    for (offset, &c) in chars.iter().enumerate().skip(start) {
        let mut next = vec![false; m + 1];
        let mut any = false;
        for i in 0..m {
            if !states[i] {
                continue;
            }
            match toks[i] {
                Tok::Lit(l) if l == c => next[i + 1] = true,
                Tok::Any if c != '\n' => next[i + 1] = true,
                Tok::Star if c != '\n' => next[i] = true,
                _ => continue,
            }
            any = true;
        }
        if !any {
            break;
        }
        close(toks, &mut next);
        states = next;
        if states[m] {
            ends.push(offset + 1);
        }
    }
    ends
}

fn full_match(toks: &[Tok], chars: &[char], start: usize) -> bool {
    match_ends(toks, chars, start).last() == Some(&chars.len())
}

/// `${VAR#pat}` (shortest) / `${VAR##pat}` (longest).
pub(crate) fn trim_prefix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let toks = compile(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    let ends = match_ends(&toks, &chars, 0);
    let end = if longest { ends.last() } else { ends.first() };
    Ok(match end {
        Some(&e) => chars.get(e..).unwrap_or_default().iter().collect(),
        None => value.to_owned(),
    })
}

/// `${VAR%pat}` (shortest) / `${VAR%%pat}` (longest).
pub(crate) fn trim_suffix(pattern: &str, value: &str, longest: bool) -> Result<String, String> {
    let toks = compile(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    let start = if longest {
        (0..=n).find(|&s| full_match(&toks, &chars, s))
    } else {
        (0..=n).rev().find(|&s| full_match(&toks, &chars, s))
    };
    Ok(match start {
        Some(s) => chars.get(..s).unwrap_or_default().iter().collect(),
        None => value.to_owned(),
    })
}

/// Leftmost, then longest, match at or after `from`.
fn find(toks: &[Tok], chars: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=chars.len()).find_map(|s| match_ends(toks, chars, s).last().map(|&e| (s, e)))
}

/// `${VAR/pat/rep}` (first match) / `${VAR//pat/rep}` (every match).
///
/// Replacing every match goes through Go's `Regexp.ReplaceAllString`, which
/// expands `$0`/`${0}` in the replacement to the match and other `$name`
/// references to nothing; BuildKit inherits that and so do we. Single
/// replacement is literal.
pub(crate) fn replace(
    pattern: &str,
    value: &str,
    replacement: &str,
    all: bool,
) -> Result<String, String> {
    let toks = compile(pattern)?;
    let chars: Vec<char> = value.chars().collect();
    let slice =
        |a: usize, b: usize| -> String { chars.get(a..b).unwrap_or_default().iter().collect() };
    if !all {
        return Ok(match find(&toks, &chars, 0) {
            Some((a, b)) => format!("{}{}{}", slice(0, a), replacement, slice(b, chars.len())),
            None => value.to_owned(),
        });
    }
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= chars.len() {
        let Some((a, b)) = find(&toks, &chars, search) else {
            break;
        };
        out.push_str(&slice(last_end, a));
        // An empty match right after a match is not replaced, or patterns
        // that match both ways would be replaced twice.
        if b > last_end || a == 0 {
            expand_template(&mut out, replacement, &slice(a, b));
        }
        last_end = b;
        search = if b > search { b } else { search + 1 };
    }
    out.push_str(&slice(last_end, chars.len()));
    Ok(out)
}

/// Go's `Regexp.Expand` for a pattern without groups: `$$` is `$`, `$0` and
/// `${0}` are the match, any other well-formed reference is empty, and a
/// malformed one is literal.
fn expand_template(out: &mut String, template: &str, matched: &str) {
    let mut rest = template;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        if let Some(r) = rest.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        match reference(rest) {
            Some((name, after)) => {
                if name == "0" {
                    out.push_str(matched);
                }
                rest = after;
            }
            None => out.push('$'),
        }
    }
    out.push_str(rest);
}

/// A `name` or `{name}` reference at the start of `s`, and what follows it.
fn reference(s: &str) -> Option<(&str, &str)> {
    let (braced, body) = match s.strip_prefix('{') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let len: usize = body
        .chars()
        .take_while(|&c| {
            crate::unicode::go_is_letter(c) || crate::unicode::go_is_digit(c) || c == '_'
        })
        .map(char::len_utf8)
        .sum();
    if len == 0 {
        return None;
    }
    let (name, after) = body.split_at(len);
    if braced {
        after.strip_prefix('}').map(|a| (name, a))
    } else {
        Some((name, after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_and_longest() {
        assert_eq!(trim_prefix("*/", "a/b/c", false).unwrap(), "b/c");
        assert_eq!(trim_prefix("*/", "a/b/c", true).unwrap(), "c");
        assert_eq!(trim_suffix("/*", "a/b/c", false).unwrap(), "a/b");
        assert_eq!(trim_suffix("/*", "a/b/c", true).unwrap(), "a");
        assert_eq!(trim_suffix("x", "abc", true).unwrap(), "abc");
    }

    #[test]
    fn stars_stop_at_newlines() {
        assert_eq!(trim_prefix("*", "ab\ncd", true).unwrap(), "\ncd");
    }

    #[test]
    fn invalid_escapes() {
        for p in ["\\", "\\x", "\\\\\\"] {
            assert!(compile(p).is_err(), "{p}");
        }
    }

    #[test]
    fn replace_all_expands_go_templates() {
        assert_eq!(replace("b", "abcb", "[$0]", true).unwrap(), "a[b]c[b]");
        assert_eq!(replace("b", "abcb", "[$1$x$$]", true).unwrap(), "a[$]c[$]");
        assert_eq!(replace("b", "abcb", "[$0]", false).unwrap(), "a[$0]cb");
        assert_eq!(replace("", "ab", "-", true).unwrap(), "-a-b-");
        assert_eq!(replace("*", "ab", "-", true).unwrap(), "-");
    }
}
