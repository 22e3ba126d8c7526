//! A build context's `.dockerignore`, ready for the context walk.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::clean::clean;
use crate::compile::MatchType;
use crate::ignorefile::read;
use crate::matcher::{Pattern, PatternError, PatternMatcher};
use crate::reach::Reach;

/// The file name docker reads ignore patterns from, at the context root.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// Why a `.dockerignore` could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Pattern {
        path: PathBuf,
        #[source]
        source: PatternError,
    },
}

/// The exclusion rules of one build context.
///
/// Paths are relative to the context root and `/`-separated; they are
/// cleaned first, so `./a//b/` is `a/b`. The context root itself is never
/// excluded.
#[derive(Debug, Clone, Default)]
pub struct DockerIgnore {
    matcher: PatternMatcher,
    /// Per pattern, built on first need: how far a regexp exception reaches.
    reach: Vec<OnceLock<Option<Reach>>>,
}

impl DockerIgnore {
    /// Rules that exclude nothing (a context without `.dockerignore`).
    pub fn none() -> DockerIgnore {
        DockerIgnore::default()
    }

    /// Rules from patterns as [`read`](crate::read) returns them.
    ///
    /// Unlike [`PatternMatcher::new`], every pattern must also compile:
    /// docker would only fail once the walk consults a broken pattern, which
    /// for any real context is the first entry, so failing up front differs
    /// only for patterns that can never matter (e.g. after a `**`).
    pub fn from_patterns<I, S>(patterns: I) -> Result<DockerIgnore, PatternError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let matcher = PatternMatcher::new(patterns)?;
        if let Some(bad) = matcher
            .patterns()
            .iter()
            .find(|p| p.match_type() == MatchType::Invalid)
        {
            return Err(PatternError::BadPattern {
                pattern: bad.as_str().to_owned(),
            });
        }
        let reach = matcher.patterns().iter().map(|_| OnceLock::new()).collect();
        Ok(DockerIgnore { matcher, reach })
    }

    /// Rules from the text of a `.dockerignore` file.
    pub fn parse(content: &str) -> Result<DockerIgnore, PatternError> {
        DockerIgnore::from_patterns(read(content))
    }

    /// Rules from `context_dir/.dockerignore`, or none when there is no such
    /// file. Bytes that are not UTF-8 are read as U+FFFD.
    pub fn from_context_dir(context_dir: &Path) -> Result<DockerIgnore, LoadError> {
        let path = context_dir.join(DOCKERIGNORE);
        DockerIgnore::from_file(&path)?.map_or_else(|| Ok(DockerIgnore::none()), Ok)
    }

    /// Rules for building with `dockerfile` (a path that can be opened as
    /// given): BuildKit prefers an ignore file next to the Dockerfile named
    /// after it (`app.Dockerfile.dockerignore`) to the context's own.
    pub fn for_dockerfile(
        context_dir: &Path,
        dockerfile: &Path,
    ) -> Result<DockerIgnore, LoadError> {
        let mut name = OsString::from(dockerfile.as_os_str());
        name.push(".dockerignore");
        match DockerIgnore::from_file(Path::new(&name))? {
            Some(rules) => Ok(rules),
            None => DockerIgnore::from_context_dir(context_dir),
        }
    }

    /// `None` when `path` does not exist.
    fn from_file(path: &Path) -> Result<Option<DockerIgnore>, LoadError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LoadError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        DockerIgnore::parse(&String::from_utf8_lossy(&bytes))
            .map(Some)
            .map_err(|source| LoadError::Pattern {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The underlying matcher, for callers that want docker's own API.
    pub fn matcher(&self) -> &PatternMatcher {
        &self.matcher
    }

    /// Whether the entry at `rel_path` is left out of the build context.
    ///
    /// `is_dir` is accepted for the walker's convenience but does not change
    /// the answer: docker patterns cannot target only directories (a
    /// trailing `/` is cleaned away). An excluded directory may still have
    /// entries that are not excluded; see [`can_skip_dir`](Self::can_skip_dir).
    pub fn is_excluded(&self, rel_path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        let path = normalize(rel_path);
        if path == "." {
            return false;
        }
        // Every pattern compiled (checked at construction), so matching
        // cannot fail.
        self.matcher
            .matches_or_parent_matches(&path)
            .unwrap_or(false)
    }

    /// Whether the walk may skip the directory `rel_dir` without looking
    /// inside: true only when it is excluded and no exception pattern after
    /// the pattern that excludes it could match anything beneath it.
    ///
    /// Docker makes the same decision more coarsely (any exception whose
    /// text starts with `rel_dir/` forces the walk in); this answers exactly
    /// for exact, prefix and (through a DFA) regexp exceptions, and stays
    /// conservative for `**suffix` ones, which can match anywhere.
    ///
    /// [`keeps_anyway`](crate::keeps_anyway) files are not considered.
    pub fn can_skip_dir(&self, rel_dir: &str) -> bool {
        let dir = normalize(rel_dir);
        if dir == "." {
            return false;
        }
        let patterns = self.matcher.patterns();
        // The last pattern matching the directory (or a parent) decides
        // whether it is excluded, and also matches everything beneath it:
        // only an exception after it can change the answer below.
        let mut decisive = None;
        for (index, pattern) in patterns.iter().enumerate() {
            match pattern.matches_self_or_parent(&dir) {
                Ok(true) => decisive = Some(index),
                Ok(false) => {}
                Err(_) => return false,
            }
        }
        let Some(decisive) = decisive else {
            return false;
        };
        if patterns.get(decisive).is_none_or(|p| p.exclusion()) {
            return false;
        }
        patterns
            .iter()
            .enumerate()
            .skip(decisive + 1)
            .filter(|(_, p)| p.exclusion())
            .all(|(index, p)| !self.could_match_below(index, p, &dir))
    }

    fn could_match_below(&self, index: usize, pattern: &Pattern, dir: &str) -> bool {
        let text = pattern.as_str();
        match pattern.match_type() {
            MatchType::Exact => text
                .strip_prefix(dir)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|rest| !rest.is_empty()),
            MatchType::Prefix => {
                let bytes = text.as_bytes();
                let prefix = bytes.get(..bytes.len().saturating_sub(2)).unwrap_or(&[]);
                let dir_slash = format!("{dir}/");
                prefix.starts_with(dir_slash.as_bytes()) || dir_slash.as_bytes().starts_with(prefix)
            }
            MatchType::Suffix | MatchType::Invalid => true,
            MatchType::Regexp => {
                let Some(slot) = self.reach.get(index) else {
                    return true;
                };
                let reach = slot.get_or_init(|| {
                    pattern
                        .compiled()
                        .and_then(|regex| Reach::build(regex.as_str()))
                });
                reach.as_ref().is_none_or(|reach| reach.below(dir))
            }
        }
    }
}

/// Docker's paths are clean and relative; accept the common variations.
fn normalize(rel: &str) -> String {
    let cleaned = clean(rel);
    let relative = cleaned.trim_start_matches('/');
    if relative.is_empty() {
        ".".to_owned()
    } else {
        relative.to_owned()
    }
}

/// Whether docker sends `rel_path` to the builder even when `.dockerignore`
/// excludes it: the ignore file itself and a Dockerfile named `Dockerfile`
/// at the context root. For another Dockerfile path use
/// [`keeps_anyway_for`].
///
/// Docker does this by appending exceptions for both files (only when they
/// would be excluded), so the builder can read them; whether they also reach
/// the final image's context is the builder's decision.
pub fn keeps_anyway(rel_path: &str) -> bool {
    keeps_anyway_for(rel_path, "Dockerfile")
}

/// [`keeps_anyway`] for a build whose Dockerfile is at `dockerfile`
/// (relative to the context root).
pub fn keeps_anyway_for(rel_path: &str, dockerfile: &str) -> bool {
    let path = normalize(rel_path);
    path == DOCKERIGNORE || path == normalize(dockerfile)
}
