//! `.dockerignore` files and docker's path patterns, with docker's exact
//! semantics (moby's `patternmatcher` and `ignorefile` packages).
//!
//! - [`read`] turns a `.dockerignore` into patterns.
//! - [`PatternMatcher`] is docker's matcher: `*`, `?`, `[…]` classes with
//!   ranges and `^` negation, `\` escapes, `**` for any number of
//!   directories, `!` exceptions where the last matching pattern wins, and a
//!   path excluded when it or any parent directory is.
//! - [`DockerIgnore`] wraps it for a build-context walk: exclusion, and when
//!   an excluded directory may be skipped whole.
//!
//! Docker compiles most patterns to Go regular expressions by a textual
//! translation whose corner cases are part of its behaviour; this crate
//! produces the same Go expression and gives it Go's meaning in the `regex`
//! crate (see [`Pattern::regexp`]). Matching is linear-time whatever the
//! pattern. Only `/`-separated (Unix) paths are supported.

mod clean;
mod compile;
mod dockerignore;
mod glob;
mod goregex;
mod ignorefile;
mod matcher;
mod reach;

pub use clean::clean;
pub use compile::MatchType;
pub use dockerignore::{keeps_anyway, keeps_anyway_for, DockerIgnore, LoadError, DOCKERIGNORE};
pub use ignorefile::read;
#[allow(deprecated)]
pub use matcher::matches;
pub use matcher::{matches_or_parent_matches, MatchInfo, Pattern, PatternError, PatternMatcher};
