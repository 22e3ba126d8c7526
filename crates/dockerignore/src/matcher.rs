//! Docker's pattern matcher (moby's `patternmatcher` package).

use std::fmt;

use regex::Regex;

use crate::clean::{clean, dir, element_prefixes};
use crate::compile::{translate, MatchType};
use crate::{glob, goregex};

/// A pattern docker would refuse, or a misuse of the matcher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A pattern that is only `!`: an exception to nothing.
    #[error("illegal exclusion pattern: \"!\"")]
    IllegalExclusion,
    /// Malformed pattern syntax (Go's `filepath.ErrBadPattern`): an unclosed
    /// `[`, a trailing `\`, a class range docker cannot compile, …
    #[error("syntax error in pattern {pattern:?}")]
    BadPattern {
        /// The pattern as cleaned, without its `!`.
        pattern: String,
    },
    /// [`PatternMatcher::matches_using_parent_results`] was handed the result
    /// of a different matcher.
    #[error("wrong number of values in parentMatched: got {got}, want {want}")]
    ParentMatchCount { got: usize, want: usize },
}

/// One cleaned pattern of a [`PatternMatcher`].
#[derive(Debug, Clone)]
pub struct Pattern {
    cleaned: String,
    exclusion: bool,
    /// How many `/`-separated elements the pattern has; only the deprecated
    /// [`PatternMatcher::matches`] looks at it.
    elements: usize,
    kind: MatchType,
    /// The Go regular expression docker compiles, for regexp patterns.
    go_regexp: Option<String>,
    regex: Option<Regex>,
}

impl Pattern {
    fn new(cleaned: String, exclusion: bool) -> Pattern {
        let (mut kind, go_regexp) = translate(&cleaned);
        let mut regex = None;
        if let Some(go) = &go_regexp {
            // Docker compiles lazily and fails each match against a pattern
            // that does not compile; compiling up front and remembering the
            // failure behaves the same, and keeps matching allocation-free.
            match goregex::to_rust(go).ok().and_then(|r| Regex::new(&r).ok()) {
                Some(compiled) => regex = Some(compiled),
                None => kind = MatchType::Invalid,
            }
        }
        Pattern {
            elements: cleaned.split('/').count(),
            cleaned,
            exclusion,
            kind,
            go_regexp,
            regex,
        }
    }

    /// The pattern as docker keeps it: trimmed, cleaned, without its `!`.
    pub fn as_str(&self) -> &str {
        &self.cleaned
    }

    /// Whether this is an exception (`!pattern`), re-including what earlier
    /// patterns excluded.
    pub fn exclusion(&self) -> bool {
        self.exclusion
    }

    /// How paths are compared against this pattern.
    pub fn match_type(&self) -> MatchType {
        self.kind
    }

    /// For [`MatchType::Regexp`] and [`MatchType::Invalid`], the regular
    /// expression docker builds from the pattern, in Go `regexp` syntax
    /// (`[^/]*` for `*`, `(.*/)?` for `**/`, …).
    pub fn regexp(&self) -> Option<&str> {
        self.go_regexp.as_deref()
    }

    /// The `regex` crate expression that gives [`Pattern::regexp`] its Go
    /// meaning, when it compiled.
    pub(crate) fn compiled(&self) -> Option<&Regex> {
        self.regex.as_ref()
    }

    /// Whether `path` itself (not its parents) matches.
    fn matches(&self, path: &str) -> Result<bool, PatternError> {
        let pattern = self.cleaned.as_bytes();
        let path_bytes = path.as_bytes();
        let matched = match self.kind {
            MatchType::Exact => path == self.cleaned,
            // The comparisons are on bytes, as in Go: they slice the pattern
            // at fixed byte offsets, which need not be character boundaries
            // when the pattern starts with a byte order mark.
            MatchType::Prefix => {
                let prefix = pattern
                    .get(..pattern.len().saturating_sub(2))
                    .unwrap_or(&[]);
                path_bytes.starts_with(prefix)
            }
            MatchType::Suffix => {
                let suffix = pattern.get(2..).unwrap_or(&[]);
                path_bytes.ends_with(suffix)
                    || suffix
                        .strip_prefix(b"/")
                        .is_some_and(|rest| rest == path_bytes)
            }
            MatchType::Regexp => self.regex.as_ref().is_some_and(|re| re.is_match(path)),
            MatchType::Invalid => {
                return Err(PatternError::BadPattern {
                    pattern: self.cleaned.clone(),
                })
            }
        };
        Ok(matched)
    }

    /// Whether `path` or one of its parent directories matches.
    pub(crate) fn matches_self_or_parent(&self, path: &str) -> Result<bool, PatternError> {
        if self.matches(path)? {
            return Ok(true);
        }
        let parent = dir(path);
        if parent == "." {
            return Ok(false);
        }
        // Errors were reported for `path` already, so they cannot happen here.
        let hit = element_prefixes(&parent).any(|prefix| self.matches(prefix).unwrap_or(false));
        Ok(hit)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.cleaned)
    }
}

/// What [`PatternMatcher::matches_using_parent_results`] learnt about a
/// directory, handed back when matching its entries.
///
/// The default value means "nothing known", and makes the matcher check the
/// path's parents itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// An ordered list of patterns, later ones overriding earlier ones, and `!`
/// exceptions re-including what earlier patterns excluded.
///
/// Paths are relative and `/`-separated. A path matches when the last
/// pattern that matches it, or matches one of its parent directories, is not
/// an exception.
#[derive(Debug, Clone, Default)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Cleans and checks `patterns` the way docker does.
    ///
    /// Each pattern is trimmed (empty ones are dropped), cleaned like Go's
    /// `filepath.Clean`, and split from its leading `!`; note that cleaning
    /// happens *before* the `!` comes off, so `!./a` keeps its `./` (patterns
    /// from [`read`](crate::read) are already clean). A lone `!` and
    /// malformed syntax are errors.
    ///
    /// A pattern that passes docker's syntax check but does not compile to a
    /// regular expression (`[z-a]`) is accepted here and fails only when a
    /// match has to consult it, which is when docker fails too.
    pub fn new<I, S>(patterns: I) -> Result<PatternMatcher, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut matcher = PatternMatcher::default();
        for pattern in patterns {
            let trimmed = pattern.as_ref().trim();
            if trimmed.is_empty() {
                continue;
            }
            let cleaned = clean(trimmed);
            let (exclusion, body) = match cleaned.strip_prefix('!') {
                Some("") => return Err(PatternError::IllegalExclusion),
                Some(body) => (true, body),
                None => (false, cleaned.as_str()),
            };
            if !glob::is_valid(body) {
                return Err(PatternError::BadPattern {
                    pattern: body.to_owned(),
                });
            }
            matcher.exclusions |= exclusion;
            matcher
                .patterns
                .push(Pattern::new(body.to_owned(), exclusion));
        }
        Ok(matcher)
    }

    /// Whether any pattern is an exception.
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// The patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Whether `file` matches, judging parents only by the prefix with as
    /// many elements as each pattern.
    #[deprecated = "docker's buggy first matcher, kept for conformance; use matches_or_parent_matches"]
    pub fn matches(&self, file: &str) -> Result<bool, PatternError> {
        let parent = dir(file);
        let parent_elements: Vec<&str> = parent.split('/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exclusion != matched {
                continue;
            }
            let mut hit = pattern.matches(file)?;
            if !hit && parent != "." && pattern.elements <= parent_elements.len() {
                let prefix = parent_elements
                    .get(..pattern.elements)
                    .unwrap_or_default()
                    .join("/");
                hit = pattern.matches(&prefix).unwrap_or(false);
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Whether `file` is matched: the last pattern matching `file` or one of
    /// its parent directories decides, and an exception un-matches.
    ///
    /// This is what docker's build-context walk asks of every path.
    pub fn matches_or_parent_matches(&self, file: &str) -> Result<bool, PatternError> {
        let mut matched = false;
        for pattern in &self.patterns {
            // A pattern that cannot change the answer is not consulted, as in
            // docker (so a broken one further on may go unnoticed).
            if pattern.exclusion != matched {
                continue;
            }
            if pattern.matches_self_or_parent(file)? {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Like [`matches_or_parent_matches`](Self::matches_or_parent_matches),
    /// for a caller walking a tree: `parent` is what this returned for
    /// `file`'s directory (or the default, to check the parents here), and
    /// the returned [`MatchInfo`] is what to pass for `file`'s own entries.
    pub fn matches_using_parent_results(
        &self,
        file: &str,
        parent: &MatchInfo,
    ) -> Result<(bool, MatchInfo), PatternError> {
        let known = &parent.parent_matched;
        if !known.is_empty() && known.len() != self.patterns.len() {
            return Err(PatternError::ParentMatchCount {
                got: known.len(),
                want: self.patterns.len(),
            });
        }
        let mut matched = false;
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        for (index, pattern) in self.patterns.iter().enumerate() {
            let mut hit = known.get(index).copied().unwrap_or(false);
            if !hit {
                if pattern.exclusion != matched {
                    continue;
                }
                hit = if known.is_empty() {
                    pattern.matches_self_or_parent(file)?
                } else {
                    pattern.matches(file)?
                };
            }
            if let Some(slot) = info.parent_matched.get_mut(index) {
                *slot = hit;
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok((matched, info))
    }
}

/// Docker's one-shot `Matches(file, patterns)`: cleans `file`, never matches
/// the context root `.`, and uses the deprecated
/// [`PatternMatcher::matches`].
#[deprecated = "docker's buggy first matcher, kept for conformance; use matches_or_parent_matches"]
pub fn matches<I, S>(file: &str, patterns: I) -> Result<bool, PatternError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let matcher = PatternMatcher::new(patterns)?;
    let file = clean(file);
    if file == "." {
        return Ok(false);
    }
    #[allow(deprecated)]
    matcher.matches(&file)
}

/// Docker's one-shot `MatchesOrParentMatches(file, patterns)`: cleans `file`
/// and never matches the context root `.`.
pub fn matches_or_parent_matches<I, S>(file: &str, patterns: I) -> Result<bool, PatternError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let matcher = PatternMatcher::new(patterns)?;
    let file = clean(file);
    if file == "." {
        return Ok(false);
    }
    matcher.matches_or_parent_matches(&file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(patterns: &[&str]) -> PatternMatcher {
        PatternMatcher::new(patterns).unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_matches_checks_one_parent_only() {
        // `**/c` has two elements, so only `a/b` is tried as a parent.
        let m = matcher(&["**/c"]);
        assert_eq!(m.matches("a/b/c/d"), Ok(false));
        assert_eq!(m.matches_or_parent_matches("a/b/c/d"), Ok(true));
    }

    #[test]
    fn broken_patterns_fail_only_when_consulted() {
        let m = matcher(&["**", "[z-a]"]);
        assert_eq!(m.patterns()[1].match_type(), MatchType::Invalid);
        assert_eq!(m.matches_or_parent_matches("x"), Ok(true));
        let m = matcher(&["[z-a]", "**"]);
        assert!(m.matches_or_parent_matches("x").is_err());
        assert!(m.matches_or_parent_matches("x").is_err(), "and again");
    }

    #[test]
    fn only_caret_negates_a_class() {
        // Go's glob and regexp both read `[!a]` as the class of `!` and `a`.
        let m = matcher(&["[!a]b"]);
        assert_eq!(m.matches_or_parent_matches("!b"), Ok(true));
        assert_eq!(m.matches_or_parent_matches("ab"), Ok(true));
        assert_eq!(m.matches_or_parent_matches("xb"), Ok(false));
        let m = matcher(&["[^a]b"]);
        assert_eq!(m.matches_or_parent_matches("xb"), Ok(true));
        assert_eq!(m.matches_or_parent_matches("ab"), Ok(false));
    }

    #[test]
    fn cleaning_happens_before_the_bang_comes_off() {
        let m = matcher(&[" !./a/ ", "b//c/"]);
        assert_eq!(m.patterns()[0].as_str(), "./a");
        assert!(m.patterns()[0].exclusion());
        assert_eq!(m.patterns()[1].to_string(), "b/c");
        assert!(m.exclusions());
    }

    #[test]
    fn parent_results_must_come_from_the_same_matcher() {
        let two = matcher(&["a", "b"]);
        let (_, info) = two
            .matches_using_parent_results("a", &MatchInfo::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let one = matcher(&["a"]);
        assert_eq!(
            one.matches_using_parent_results("a/x", &info),
            Err(PatternError::ParentMatchCount { got: 2, want: 1 })
        );
        assert_eq!(
            two.matches_using_parent_results("a/x", &info).map(|r| r.0),
            Ok(true)
        );
    }
}
