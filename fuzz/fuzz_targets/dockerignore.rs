#![no_main]

//! `.dockerignore` reading and matching must never panic, whatever the
//! patterns and path, and skipping a directory must never hide a file that
//! is not excluded.
//!
//! Input: patterns (a `.dockerignore` text), then a NUL, then a path; without
//! a NUL the last line is the path.

use berth_dockerignore::{clean, keeps_anyway, read, DockerIgnore, MatchInfo, PatternMatcher};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, path) = match text.split_once('\0') {
        Some(split) => split,
        None => text.rsplit_once('\n').unwrap_or((text, "")),
    };

    // Raw lines straight to the matcher exercise its own trimming and
    // cleaning; `read` output is what a real build uses. Each matcher
    // compiles every pattern, the bulk of the cost, so none is built twice.
    let lines: Vec<&str> = patterns.lines().collect();
    if let Ok(matcher) = PatternMatcher::new(&lines) {
        exercise(&matcher, path);
    }
    let read_patterns = read(patterns);
    let _ = keeps_anyway(path);
    // The one-shot helpers are thin wrappers; one pattern is enough.
    let first = read_patterns.first().map(String::as_str).unwrap_or("");
    #[allow(deprecated)]
    let _ = berth_dockerignore::matches(path, [first]);
    let _ = berth_dockerignore::matches_or_parent_matches(path, [first]);

    match DockerIgnore::from_patterns(&read_patterns) {
        Ok(rules) => {
            exercise(rules.matcher(), path);
            let excluded = rules.is_excluded(path, false);
            let _ = rules.can_skip_dir(path);
            // Skipping the parent directory is only allowed when everything
            // in it is excluded.
            let cleaned = clean(path);
            let cleaned = cleaned.trim_start_matches('/');
            if let Some((parent, _)) = cleaned.rsplit_once('/') {
                if rules.can_skip_dir(parent) {
                    assert!(
                        excluded,
                        "{read_patterns:?}: skipped {parent:?} but {path:?} is not excluded"
                    );
                }
            }
        }
        // A pattern that passes the syntax check but does not compile only
        // fails when consulted.
        Err(_) => {
            if let Ok(matcher) = PatternMatcher::new(&read_patterns) {
                exercise(&matcher, path);
            }
        }
    }
});

fn exercise(matcher: &PatternMatcher, path: &str) {
    for pattern in matcher.patterns() {
        let _ = (pattern.as_str(), pattern.regexp(), pattern.match_type());
    }
    let direct = matcher.matches_or_parent_matches(path);
    #[allow(deprecated)]
    let _ = matcher.matches(path);
    let _ = matcher.matches_using_parent_results(path, &MatchInfo::default());
    if let Ok((_, info)) = matcher.matches_using_parent_results(path, &MatchInfo::default()) {
        let _ = matcher.matches_using_parent_results(path, &info);
    }
    // Matching is deterministic: a second call answers the same.
    assert_eq!(direct, matcher.matches_or_parent_matches(path));
}
