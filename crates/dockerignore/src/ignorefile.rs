//! Reading a `.dockerignore` file into patterns (moby's `ignorefile.ReadAll`).

use crate::clean::clean;

const BOM: char = '\u{FEFF}';

/// The patterns of a `.dockerignore` file, in order, ready for
/// [`PatternMatcher::new`](crate::PatternMatcher::new).
///
/// Line by line, as docker reads it:
/// - a UTF-8 byte order mark is dropped from the first line only;
/// - a line whose *first* character is `#` is a comment (`  # x` is not: the
///   check happens before trimming, so that line is the pattern `# x`);
/// - surrounding whitespace is trimmed and empty lines are skipped;
/// - a leading `!` (an exception) is kept, with whitespace after it trimmed;
/// - the rest is cleaned like Go's `filepath.Clean` and one leading `/` is
///   dropped, so `/a/./b/` and `a/b` are the same pattern. A lone `!` stays
///   `!`, which [`PatternMatcher::new`](crate::PatternMatcher::new) rejects,
///   as docker does.
///
/// Lines end at `\n`, with one trailing `\r` removed. Docker additionally
/// fails on a single line longer than 64 KiB (its line scanner's limit);
/// such a line is simply read here.
pub fn read(content: &str) -> Vec<String> {
    let mut patterns = Vec::new();
    for (index, raw) in content.split('\n').enumerate() {
        let mut line = raw.strip_suffix('\r').unwrap_or(raw);
        if index == 0 {
            line = line.strip_prefix(BOM).unwrap_or(line);
        }
        if line.starts_with('#') {
            continue;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (invert, rest) = match line.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, line),
        };
        let mut pattern = if rest.is_empty() {
            String::new()
        } else {
            let cleaned = clean(rest);
            match cleaned.strip_prefix('/') {
                // `/` itself stays: stripping it would leave an empty pattern.
                Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
                _ => cleaned,
            }
        };
        if invert {
            pattern.insert(0, '!');
        }
        patterns.push(pattern);
    }
    patterns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comment_check_happens_before_trimming() {
        assert_eq!(read("# c\n  # not a comment\n"), ["# not a comment"]);
    }

    #[test]
    fn bom_only_on_first_line() {
        assert_eq!(read("\u{FEFF}a\n\u{FEFF}b"), ["a", "\u{FEFF}b"]);
        assert_eq!(read("\u{FEFF}# comment\nx"), ["x"]);
    }

    #[test]
    fn crlf_and_root() {
        assert_eq!(read("a\r\n/\r\n!/\r\n//x//\r\n"), ["a", "/", "!/", "x"]);
    }
}
