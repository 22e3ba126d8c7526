//! npm-style version ranges, as the Node.js security working group writes
//! them (`4.x || 5.x`, `^4.2.3 || ^5.1.1`, `>=0.12.0 <0.12.9`, `<=8.9.3`).
//!
//! Written here rather than taken from crates.io: the Rust `semver` crate
//! implements Cargo's requirement syntax (comma-separated, no `||`, no
//! hyphen ranges), which reads npm ranges differently. The rules follow
//! node-semver: `||` separates alternatives, whitespace joins comparators,
//! partial versions and x-ranges widen to the whole range they name, `^`
//! and `~` desugar to a pair of bounds, `A - B` is inclusive, and a
//! pre-release only matches a set that names a pre-release of the same
//! `major.minor.patch`.

use crate::version::{PreIdent, Version};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version range {range:?}: {reason}")]
pub struct RangeError {
    pub range: String,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparator {
    op: Op,
    version: Version,
}

impl Comparator {
    fn matches(&self, v: &Version) -> bool {
        match self.op {
            Op::Lt => v < &self.version,
            Op::Le => v <= &self.version,
            Op::Gt => v > &self.version,
            Op::Ge => v >= &self.version,
            Op::Eq => v == &self.version,
        }
    }
}

/// One alternative: every comparator must hold. `None` matches nothing
/// (`>*`, `<0.0.0-0`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Set(Option<Vec<Comparator>>);

impl Set {
    fn matches(&self, v: &Version) -> bool {
        let Some(cmps) = &self.0 else { return false };
        if !cmps.iter().all(|c| c.matches(v)) {
            return false;
        }
        if v.is_prerelease() {
            return cmps
                .iter()
                .any(|c| c.version.is_prerelease() && c.version.same_triple(v));
        }
        true
    }
}

/// A parsed range. `Display` gives back the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    text: String,
    sets: Vec<Set>,
}

/// A partial version: `1`, `1.2`, `1.2.x`, `*`; `None` parts are wildcards.
#[derive(Debug, Clone)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
    pre: Vec<PreIdent>,
}

impl Partial {
    fn floor(&self) -> Version {
        Version {
            major: self.major.unwrap_or(0),
            minor: self.minor.unwrap_or(0),
            patch: self.patch.unwrap_or(0),
            pre: self.pre.clone(),
        }
    }
}

/// The smallest version above every release of `major.minor.patch`'s
/// prefix: `1.3.0-0` style bounds, so pre-releases of the next version stay out.
fn bump(major: u64, minor: u64, patch: u64) -> Version {
    Version {
        major,
        minor,
        patch,
        pre: vec![PreIdent::Num(0)],
    }
}

fn cmp(op: Op, version: Version) -> Comparator {
    Comparator { op, version }
}

impl Range {
    /// Does `v` fall in the range?
    pub fn matches(&self, v: &Version) -> bool {
        self.sets.iter().any(|s| s.matches(v))
    }

    /// The versions the range's lower bounds name (`^4.2.3 || >=5.1.1` →
    /// 4.2.3, 5.1.1): for a "patched" range these are the releases that
    /// carried a fix.
    pub fn lower_bounds(&self) -> Vec<Version> {
        let mut out: Vec<Version> = self
            .sets
            .iter()
            .filter_map(|s| s.0.as_ref())
            .flat_map(|cmps| {
                cmps.iter()
                    .filter(|c| matches!(c.op, Op::Ge | Op::Eq) && !c.version.is_prerelease())
                    .map(|c| c.version.clone())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn parse_set(text: &str, whole: &str) -> Result<Set, RangeError> {
        let err = |reason: String| RangeError {
            range: whole.to_string(),
            reason,
        };
        // Operators may stand apart from their version (`>= 1.2.3`): glue them on.
        let mut tokens: Vec<String> = Vec::new();
        let mut pending = String::new();
        for tok in text.split_whitespace() {
            if tok
                .chars()
                .all(|c| matches!(c, '<' | '>' | '=' | '^' | '~'))
            {
                pending.push_str(tok);
            } else {
                tokens.push(format!("{pending}{tok}"));
                pending.clear();
            }
        }
        if !pending.is_empty() {
            return Err(err(format!("operator {pending:?} without a version")));
        }
        // `A - B`
        if tokens.len() == 3 && tokens[1] == "-" {
            let lo = parse_partial(&tokens[0]).map_err(&err)?;
            let hi = parse_partial(&tokens[2]).map_err(&err)?;
            let mut cmps = vec![cmp(Op::Ge, lo.floor())];
            match (hi.major, hi.minor, hi.patch) {
                (None, _, _) => {}
                (Some(m), None, _) => cmps.push(cmp(Op::Lt, bump(m + 1, 0, 0))),
                (Some(m), Some(n), None) => cmps.push(cmp(Op::Lt, bump(m, n + 1, 0))),
                (Some(_), Some(_), Some(_)) => cmps.push(cmp(Op::Le, hi.floor())),
            }
            return Ok(Set(Some(cmps)));
        }
        if tokens.iter().any(|t| t == "-") {
            return Err(err("a hyphen range needs one version on each side".into()));
        }
        let mut cmps = Vec::new();
        for tok in &tokens {
            match desugar(tok).map_err(&err)? {
                Some(mut c) => cmps.append(&mut c),
                None => return Ok(Set(None)),
            }
        }
        Ok(Set(Some(cmps)))
    }
}

/// One comparator token to bounds; `None` when it can match nothing.
fn desugar(tok: &str) -> Result<Option<Vec<Comparator>>, String> {
    let (op, rest) = if let Some(r) = tok.strip_prefix(">=") {
        (">=", r)
    } else if let Some(r) = tok.strip_prefix("<=") {
        ("<=", r)
    } else if let Some(r) = tok.strip_prefix('>') {
        (">", r)
    } else if let Some(r) = tok.strip_prefix('<') {
        ("<", r)
    } else if let Some(r) = tok.strip_prefix('^') {
        ("^", r)
    } else if let Some(r) = tok.strip_prefix("~>") {
        ("~", r)
    } else if let Some(r) = tok.strip_prefix('~') {
        ("~", r)
    } else if let Some(r) = tok.strip_prefix('=') {
        ("=", r)
    } else {
        ("=", tok)
    };
    let p = parse_partial(rest)?;
    let full = p.patch.is_some();
    let f = p.floor();
    let any = Vec::new();
    Ok(Some(match (op, p.major, p.minor) {
        ("=", None, _) => any,
        ("=", Some(m), None) => vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(m + 1, 0, 0))],
        ("=", Some(m), Some(n)) if !full => vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(m, n + 1, 0))],
        ("=", _, _) => vec![cmp(Op::Eq, f)],
        (">=", None, _) | ("<=", None, _) => any,
        (">", None, _) | ("<", None, _) => return Ok(None),
        (">=", _, _) => vec![cmp(Op::Ge, f)],
        (">", Some(m), None) => vec![cmp(Op::Ge, bump(m + 1, 0, 0))],
        (">", Some(m), Some(n)) if !full => vec![cmp(Op::Ge, bump(m, n + 1, 0))],
        (">", _, _) => vec![cmp(Op::Gt, f)],
        ("<", _, _) if !full => vec![cmp(Op::Lt, bump(f.major, f.minor, 0))],
        ("<", _, _) => vec![cmp(Op::Lt, f)],
        ("<=", Some(m), None) => vec![cmp(Op::Lt, bump(m + 1, 0, 0))],
        ("<=", Some(m), Some(n)) if !full => vec![cmp(Op::Lt, bump(m, n + 1, 0))],
        ("<=", _, _) => vec![cmp(Op::Le, f)],
        ("~", None, _) => any,
        ("~", Some(m), None) => vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(m + 1, 0, 0))],
        ("~", Some(m), Some(n)) => vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(m, n + 1, 0))],
        ("^", None, _) => any,
        ("^", Some(m), _) if m > 0 => vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(m + 1, 0, 0))],
        ("^", Some(0), None) => vec![cmp(Op::Lt, bump(1, 0, 0))],
        ("^", Some(0), Some(n)) if n > 0 || p.patch.is_none() => {
            vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(0, n + 1, 0))]
        }
        ("^", Some(0), Some(0)) => {
            let pa = p.patch.unwrap_or(0);
            vec![cmp(Op::Ge, f), cmp(Op::Lt, bump(0, 0, pa + 1))]
        }
        _ => return Err(format!("cannot read {tok:?}")),
    }))
}

fn is_wild(s: &str) -> bool {
    matches!(s, "x" | "X" | "*")
}

fn parse_partial(s: &str) -> Result<Partial, String> {
    let t = s.strip_prefix('v').unwrap_or(s);
    let t = t.strip_prefix('=').unwrap_or(t);
    let t = t.split_once('+').map_or(t, |(v, _)| v);
    if t.is_empty() {
        return Ok(Partial {
            major: None,
            minor: None,
            patch: None,
            pre: Vec::new(),
        });
    }
    let (core, pre) = match t.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (t, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() > 3 {
        return Err(format!("{s:?} has more than three parts"));
    }
    let mut nums: [Option<u64>; 3] = [None; 3];
    let mut wild = false;
    for (i, part) in parts.iter().enumerate() {
        if is_wild(part) {
            wild = true;
        } else if wild {
            return Err(format!("{s:?}: a number after a wildcard"));
        } else {
            nums[i] = Some(
                part.parse::<u64>()
                    .ok()
                    .filter(|_| part.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("{s:?} is not a version"))?,
            );
        }
    }
    let pre = match pre {
        Some(p) if nums[2].is_some() => {
            format!("0.0.0-{p}")
                .parse::<Version>()
                .map_err(|_| format!("{s:?} has an invalid pre-release"))?
                .pre
        }
        Some(_) => return Err(format!("{s:?}: a pre-release needs a full version")),
        None => Vec::new(),
    };
    Ok(Partial {
        major: nums[0],
        minor: nums[1],
        patch: nums[2],
        pre,
    })
}

impl FromStr for Range {
    type Err = RangeError;

    fn from_str(s: &str) -> Result<Range, RangeError> {
        let sets = s
            .split("||")
            .map(|alt| Range::parse_set(alt.trim(), s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Range {
            text: s.trim().to_string(),
            sets,
        })
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Range {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn check(range: &str, yes: &[&str], no: &[&str]) {
        let rg = r(range);
        for v in yes {
            assert!(rg.matches(&v.parse().unwrap()), "{range} should match {v}");
        }
        for v in no {
            assert!(
                !rg.matches(&v.parse().unwrap()),
                "{range} should not match {v}"
            );
        }
    }

    #[test]
    fn x_ranges_and_partials() {
        check(
            "4.x",
            &["4.0.0", "4.2.2", "4.9.1"],
            &["3.9.9", "5.0.0", "5.0.0-rc.1", "4.3.0-rc.1"],
        );
        check(
            "0.12.x",
            &["0.12.0", "0.12.18"],
            &["0.10.48", "0.13.0", "1.0.0"],
        );
        check("4", &["4.0.0", "4.99.0"], &["5.0.0"]);
        check("4.2", &["4.2.0", "4.2.6"], &["4.3.0", "4.1.9"]);
        check("*", &["0.0.1", "22.0.0"], &["22.0.0-rc.1"]);
        check("", &["1.0.0"], &[]);
        check("5.x || 4.x", &["4.2.2", "5.1.0"], &["6.0.0", "0.12.9"]);
    }

    #[test]
    fn caret_and_tilde() {
        check("^4.2.3", &["4.2.3", "4.9.1"], &["4.2.2", "5.0.0"]);
        check("^0.12.9", &["0.12.9", "0.12.18"], &["0.12.8", "0.13.0"]);
        check("^0.0.3", &["0.0.3"], &["0.0.4", "0.0.2"]);
        check("^0.x", &["0.0.1", "0.12.0"], &["1.0.0"]);
        check("^1.x", &["1.0.0", "1.9.0"], &["2.0.0"]);
        check("~4.2.3", &["4.2.3", "4.2.9"], &["4.3.0", "4.2.2"]);
        check("~4", &["4.0.0", "4.5.0"], &["5.0.0"]);
        check("~0.12", &["0.12.0", "0.12.9"], &["0.13.0"]);
        check(
            "^5.1.1 || ^4.2.3",
            &["4.2.3", "4.8.0", "5.1.1", "5.12.0"],
            &["4.2.2", "5.1.0", "6.0.0", "0.12.9"],
        );
    }

    #[test]
    fn comparators() {
        check(
            ">=0.12.0 <0.12.9",
            &["0.12.0", "0.12.8"],
            &["0.12.9", "0.10.40", "4.0.0"],
        );
        check("<4.2.3", &["4.2.2", "0.10.0"], &["4.2.3", "5.0.0"]);
        check("<=8.9.3", &["8.9.3"], &["8.9.4"]);
        check(">= 4.2.3", &["4.2.3"], &["4.2.2"]);
        check(">4", &["5.0.0"], &["4.99.99"]);
        check(">4.2", &["4.3.0"], &["4.2.99"]);
        check("<4.2", &["4.1.99"], &["4.2.0"]);
        check("<=4.2", &["4.2.99"], &["4.3.0"]);
        check(">4.2.2", &["4.2.3"], &["4.2.2"]);
        check("=4.2.2", &["4.2.2"], &["4.2.3"]);
        check("v4.2.2", &["4.2.2"], &["4.2.3"]);
        check(">*", &[], &["0.0.0", "4.0.0"]);
        check(
            " ^10.24.0 || ^12.21.0",
            &["10.24.0", "12.22.0"],
            &["10.23.9"],
        );
    }

    #[test]
    fn hyphen_ranges() {
        check("4.2.0 - 4.2.5", &["4.2.0", "4.2.5"], &["4.2.6", "4.1.9"]);
        check("4.2 - 4.3", &["4.2.0", "4.3.9"], &["4.4.0"]);
        check("4 - 5", &["4.0.0", "5.9.0"], &["6.0.0"]);
    }

    #[test]
    fn prereleases_only_when_named() {
        check(
            ">=7.0.0-rc.1 <7.0.0",
            &["7.0.0-rc.1", "7.0.0-rc.2"],
            &["7.0.0", "6.9.0-rc.1"],
        );
        check(">=6.0.0", &["7.0.0"], &["7.0.0-rc.1"]);
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["4.x.2", "abc", ">=", "1.2.3.4", "1 - ", "^x.2", "1.2-rc"] {
            assert!(bad.parse::<Range>().is_err(), "{bad}");
        }
    }

    #[test]
    fn lower_bounds_name_fix_releases() {
        let got: Vec<String> = r("^5.1.1 || ^4.2.3 || >=0.12.9 <0.13.0")
            .lower_bounds()
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(got, ["0.12.9", "4.2.3", "5.1.1"]);
    }
}
