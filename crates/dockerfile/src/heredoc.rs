//! Here-documents: finding `<<EOF`-style words on an instruction line.
//! Bodies are read by the parser, which owns the lines.

use crate::ast::Heredoc;
use crate::error::ErrorKind;
use crate::shell::{Lexer, NoEnv};

/// Whether `word` is a heredoc marker, `[N]<<[-][blanks]NAME` with no `<`
/// in NAME; if so, its name (quotes removed), chomping, and whether the
/// body is expanded (not when any part of NAME is quoted).
pub fn parse_heredoc(word: &str) -> Result<Option<Heredoc>, ErrorKind> {
    let digits_len = word.bytes().take_while(u8::is_ascii_digit).count();
    let (digits, rest) = word.split_at(digits_len);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    // Go's `\s`: ASCII space, tab, newline, form feed, carriage return.
    let rest = rest.trim_start_matches(['\t', '\n', '\u{c}', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    // Overflow saturates, as Go's ParseUint reports the maximum.
    let fd = if digits.is_empty() {
        0
    } else {
        digits.parse::<u64>().unwrap_or(u64::MAX)
    };

    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex
        .process(rest, &NoEnv)
        .map_err(|e| ErrorKind::Heredoc(Box::new(e)))?
        .words;
    let [name] = words.as_slice() else {
        return Ok(None);
    };
    lex.raw_quotes = true;
    let raw = lex
        .process(rest, &NoEnv)
        .map_err(|e| ErrorKind::Heredoc(Box::new(e)))?
        .words;
    let [raw_name] = raw.as_slice() else {
        return Err(ErrorKind::InconsistentHeredoc(rest.to_owned()));
    };
    let quotes = |s: &str| s.chars().filter(|c| *c == '\'' || *c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        file_descriptor: fd,
        expand: quotes(name) == quotes(raw_name),
        chomp,
        content: String::new(),
    }))
}

/// Every heredoc marker on an instruction line, in order.
pub(crate) fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ErrorKind> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    // A line that does not lex has no heredocs (BuildKit ignores the error).
    let words = lex
        .process(line, &NoEnv)
        .map(|p| p.words)
        .unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Strips leading tabs from every line, for `<<-` heredocs.
pub fn chomp_heredoc_content(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|line| line.trim_start_matches('\t'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let h = parse_heredoc("<<EOF").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.file_descriptor),
            ("EOF", true, false, 0)
        );
        let h = parse_heredoc("3<<-'EOF'").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.file_descriptor),
            ("EOF", false, true, 3)
        );
        let h = parse_heredoc("<<E\"O\"F").unwrap().unwrap();
        assert_eq!((h.name.as_str(), h.expand), ("EOF", false));
        assert_eq!(parse_heredoc("<<").unwrap(), None);
        assert_eq!(parse_heredoc("<<a<b").unwrap(), None);
        assert_eq!(parse_heredoc("x<<EOF").unwrap(), None);
    }

    #[test]
    fn several_on_a_line() {
        let docs = heredocs_from_line("RUN 3<<A cat /dev/fd/3 - <<\"B\" && x << C").unwrap();
        let names: Vec<_> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
    }

    #[test]
    fn chomping() {
        assert_eq!(chomp_heredoc_content("\t\ta\n\tb\n c\n"), "a\nb\n c\n");
    }
}
