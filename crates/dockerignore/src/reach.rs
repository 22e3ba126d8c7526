//! Whether a regexp pattern could match anything below a directory.
//!
//! Skipping an excluded directory is only safe when no exception can
//! re-include something inside it. For regexp exceptions that question is
//! answered exactly on a DFA: walk it over `dir/`, then ask whether a match
//! is still reachable. A cheaper textual guess (the pattern's literal prefix)
//! would be wrong for Go-regexp quirks such as `[^a]` matching `/`.
//!
//! Building a DFA can blow up for some patterns, so it is size-limited; when
//! it fails the answer is "maybe", which only costs walking the directory.

use std::collections::{HashMap, HashSet};

use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::nfa::thompson;
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

/// Generous for real patterns, small enough to keep a hostile one cheap.
const SIZE_LIMIT: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct Reach {
    dfa: dense::DFA<Vec<u32>>,
    start: StateID,
    /// States from which at least one more byte can lead to a match.
    live: HashSet<StateID>,
}

impl Reach {
    /// Analyses `regex` (`regex` crate syntax); `None` when that is too
    /// expensive.
    pub(crate) fn build(regex: &str) -> Option<Reach> {
        let dfa = dense::Builder::new()
            .configure(
                dense::Config::new()
                    .start_kind(StartKind::Anchored)
                    // Every match, not just the leftmost-first one, so that
                    // no path to a match is pruned from the automaton.
                    .match_kind(MatchKind::All)
                    .dfa_size_limit(Some(SIZE_LIMIT))
                    .determinize_size_limit(Some(SIZE_LIMIT)),
            )
            .thompson(thompson::Config::new().nfa_size_limit(Some(SIZE_LIMIT)))
            .build(regex)
            .ok()?;
        let start = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .ok()?;
        let bytes: Vec<u8> = dfa
            .byte_classes()
            .representatives(..)
            .filter_map(|unit| unit.as_u8())
            .collect();

        // Discover every reachable state, remembering who leads where, and
        // seed liveness with the states one byte away from a match.
        let mut states = vec![start];
        let mut index = HashMap::from([(start, 0usize)]);
        let mut predecessors: Vec<Vec<usize>> = vec![Vec::new()];
        let mut live = vec![false];
        let mut pending = Vec::new();
        let mut next = 0;
        while let Some(&from) = states.get(next) {
            for &byte in &bytes {
                let to = dfa.next_state(from, byte);
                if dfa.is_dead_state(to) {
                    continue;
                }
                let reaches_match = dfa.is_quit_state(to)
                    || dfa.is_match_state(to)
                    || dfa.is_match_state(dfa.next_eoi_state(to));
                if reaches_match {
                    if let Some(flag) = live.get_mut(next).filter(|flag| !**flag) {
                        *flag = true;
                        pending.push(next);
                    }
                }
                if dfa.is_quit_state(to) {
                    continue;
                }
                let to_index = *index.entry(to).or_insert_with(|| {
                    states.push(to);
                    predecessors.push(Vec::new());
                    live.push(false);
                    states.len() - 1
                });
                if let Some(list) = predecessors.get_mut(to_index) {
                    list.push(next);
                }
            }
            next += 1;
        }
        while let Some(state) = pending.pop() {
            for &before in predecessors.get(state).map_or(&[][..], Vec::as_slice) {
                if let Some(flag) = live.get_mut(before) {
                    if !*flag {
                        *flag = true;
                        pending.push(before);
                    }
                }
            }
        }
        let live = states
            .iter()
            .zip(live)
            .filter_map(|(&state, is_live)| is_live.then_some(state))
            .collect();
        Some(Reach { dfa, start, live })
    }

    /// Whether the regex matches some `dir/…` with at least one byte after
    /// the slash.
    pub(crate) fn below(&self, dir: &str) -> bool {
        let mut state = self.start;
        for &byte in dir.as_bytes().iter().chain(b"/") {
            state = self.dfa.next_state(state, byte);
            // A match state here means a prefix of `dir/` already matched,
            // which (without an end anchor) every longer path does too.
            if self.dfa.is_match_state(state) || self.dfa.is_quit_state(state) {
                return true;
            }
            if self.dfa.is_dead_state(state) {
                return false;
            }
        }
        self.live.contains(&state)
    }
}

#[cfg(test)]
mod tests {
    use super::Reach;

    fn below(regex: &str, dir: &str) -> bool {
        Reach::build(regex)
            .unwrap_or_else(|| panic!("{regex:?} should build"))
            .below(dir)
    }

    #[test]
    fn anchored_regexes() {
        // `*.md`: only top-level names.
        assert!(!below(r"\A[^/]*\.md\z", "docs"));
        // `docs/*.md`
        assert!(below(r"\Adocs/[^/]*\.md\z", "docs"));
        assert!(!below(r"\Adocs/[^/]*\.md\z", "src"));
        assert!(!below(r"\Adocs/[^/]*\.md\z", "docs/sub"));
        // `**/*.md`
        assert!(below(r"\A(?:.*/)?[^/]*\.md\z", "anything/at/all"));
        // `a[^x]b` matches `a/b` in docker.
        assert!(below(r"\Aa[^x]b\z", "a"));
        // `dir` itself is not below `dir`.
        assert!(!below(r"\Adi[r]\z", "dir"));
    }

    #[test]
    fn unanchored_end() {
        // A `\Q` pattern swallows docker's `$`: prefixes match.
        assert!(below(r"\Aab", "ab"));
        assert!(below(r"\Aa", "ab"));
        assert!(!below(r"\Ab", "ab"));
    }
}
