//! Instruction flags (`COPY --from=build`, `RUN --mount=…`): splitting them
//! off the argument text, and checking them against what each instruction
//! accepts.

use std::collections::BTreeMap;

use crate::error::ErrorKind;
use crate::unicode::{go_is_space, go_to_lower};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Splits leading `--flag` words off `line`, returning the rest and the
/// flags with quotes and escapes removed. A bare `--` ends the flags.
///
/// BuildKit walks bytes here and so mangles non-ASCII flag values (each
/// byte becomes a Latin-1 rune); we walk characters and keep them intact.
pub(crate) fn extract_builder_flags(line: &str, escape: char) -> (&str, Vec<String>) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let Some(&(offset, ch)) = chars.get(i) else {
            // End of input inside a word (or an unterminated quote).
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            return ("", words);
        };
        let next = chars.get(i + 1).map(|&(_, c)| c);
        match phase {
            Phase::Spaces => {
                if go_is_space(ch) {
                    i += 1;
                    continue;
                }
                if ch != '-' || next != Some('-') {
                    return (&line[offset..], words);
                }
                phase = Phase::Word;
                // Reprocess this character as part of the word.
            }
            Phase::Word => {
                i += 1;
                if go_is_space(ch) {
                    if word == "--" {
                        return (&line[offset..], words);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                    phase = Phase::Spaces;
                } else if ch == '\'' || ch == '"' {
                    blank_ok = true;
                    phase = Phase::Quote(ch);
                } else if ch == escape {
                    // A trailing escape is dropped; otherwise the next
                    // character is taken literally.
                    if let Some(n) = next {
                        word.push(n);
                        i += 1;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                i += 1;
                if ch == q {
                    phase = Phase::Word;
                } else if ch == escape {
                    match next {
                        Some(n) => {
                            word.push(n);
                            i += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
    }
}

/// The kinds of flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    String,
    /// May be repeated; every value is kept.
    Strings,
}

/// Flags after checking: only those that were given are present.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<String>>,
    bools: BTreeMap<&'static str, bool>,
}

impl Flags {
    pub(crate) fn string(&self, name: &str) -> Option<String> {
        self.values.get(name).and_then(|v| v.last().cloned())
    }

    pub(crate) fn strings(&self, name: &str) -> Vec<String> {
        self.values.get(name).cloned().unwrap_or_default()
    }

    pub(crate) fn bool(&self, name: &str) -> Option<bool> {
        self.bools.get(name).copied()
    }
}

/// Checks `args` (as extracted by [`extract_builder_flags`]) against the
/// flags an instruction accepts, with BuildKit's rules and messages.
pub(crate) fn parse_flags(
    args: &[String],
    spec: &[(&'static str, Kind)],
) -> Result<Flags, ErrorKind> {
    let mut flags = Flags::default();
    for arg in args {
        if arg == "--" {
            break;
        }
        if !arg.starts_with("--") {
            return Err(ErrorKind::FlagSyntax(arg.clone()));
        }
        let (flag_name, value) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg.as_str(), None),
        };
        let name = flag_name.get(2..).unwrap_or_default();
        let Some(&(key, kind)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(ErrorKind::UnknownFlag(flag_name.to_owned()));
        };
        let used = flags.values.contains_key(key) || flags.bools.contains_key(key);
        if used && kind != Kind::Strings {
            return Err(ErrorKind::DuplicateFlag(flag_name.to_owned()));
        }
        match kind {
            Kind::Bool => {
                if value == Some("") {
                    return Err(ErrorKind::MissingFlagValue(flag_name.to_owned()));
                }
                let b = match go_to_lower(value.unwrap_or_default()).as_str() {
                    "true" | "" => true,
                    "false" => false,
                    _ => {
                        return Err(ErrorKind::FlagNotBool {
                            flag: flag_name.to_owned(),
                            value: value.unwrap_or_default().to_owned(),
                        })
                    }
                };
                flags.bools.insert(key, b);
            }
            Kind::String | Kind::Strings => {
                let Some(v) = value else {
                    return Err(ErrorKind::MissingFlagValue(flag_name.to_owned()));
                };
                flags.values.entry(key).or_default().push(v.to_owned());
            }
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(line: &str) -> (&str, Vec<String>) {
        extract_builder_flags(line, '\\')
    }

    #[test]
    fn splitting() {
        assert_eq!(extract("foo /tmp/"), ("foo /tmp/", vec![]));
        assert_eq!(
            extract("--user=me --doit=true foo"),
            ("foo", vec!["--user=me".into(), "--doit=true".into()])
        );
        assert_eq!(extract("--doit=true -- foo /tmp/").0.trim(), "foo /tmp/");
        assert_eq!(extract("--doit -- [ ]").1, vec!["--doit".to_owned()]);
        assert_eq!(extract("--a=\"x y\" b"), ("b", vec!["--a=x y".into()]));
        assert_eq!(extract("--a=é b"), ("b", vec!["--a=é".into()]));
        assert_eq!(extract("--only"), ("", vec!["--only".into()]));
        assert_eq!(extract("-- "), (" ", vec![]));
    }

    #[test]
    fn checking() {
        let spec = [
            ("link", Kind::Bool),
            ("from", Kind::String),
            ("exclude", Kind::Strings),
        ];
        let args = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let f = parse_flags(
            &args(&["--link", "--from=a", "--exclude=x", "--exclude=y"]),
            &spec,
        )
        .unwrap();
        assert_eq!(f.bool("link"), Some(true));
        assert_eq!(f.string("from").as_deref(), Some("a"));
        assert_eq!(f.strings("exclude"), ["x", "y"]);
        let err = |v: &[&str]| parse_flags(&args(v), &spec).unwrap_err().to_string();
        assert_eq!(err(&["--nope"]), "unknown flag: --nope");
        assert_eq!(
            err(&["--from=a", "--from=b"]),
            "duplicate flag specified: --from"
        );
        assert_eq!(err(&["--from"]), "missing a value on flag: --from");
        assert_eq!(err(&["--link="]), "missing a value on flag: --link");
        assert_eq!(
            err(&["--link=maybe"]),
            "expecting boolean value for flag --link, not: maybe"
        );
        assert_eq!(err(&["-x"]), "arg should start with -- : -x");
    }
}
