//! Semantic versions as Node.js publishes them (`v4.2.2`, `4.2.2`,
//! `7.0.0-rc.1`), ordered by semver precedence.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version {0:?} (expected MAJOR.MINOR.PATCH)")]
pub struct VersionError(pub String);

/// One dot-separated identifier of a pre-release (`rc`, `1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PreIdent {
    Num(u64),
    Alpha(String),
}

impl PartialOrd for PreIdent {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PreIdent {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PreIdent::Num(a), PreIdent::Num(b)) => a.cmp(b),
            (PreIdent::Num(_), PreIdent::Alpha(_)) => Ordering::Less,
            (PreIdent::Alpha(_), PreIdent::Num(_)) => Ordering::Greater,
            (PreIdent::Alpha(a), PreIdent::Alpha(b)) => a.cmp(b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Empty for a release.
    pub pre: Vec<PreIdent>,
}

impl Version {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Version {
        Version {
            major,
            minor,
            patch,
            pre: Vec::new(),
        }
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }

    /// The release line a version belongs to, as Node.js maintains them:
    /// one line per major since 4, one per minor in the 0.x days.
    pub fn line(&self) -> Line {
        if self.major == 0 {
            Line {
                major: 0,
                minor: Some(self.minor),
            }
        } else {
            Line {
                major: self.major,
                minor: None,
            }
        }
    }

    pub fn same_triple(&self, other: &Version) -> bool {
        (self.major, self.minor, self.patch) == (other.major, other.minor, other.patch)
    }
}

/// A release line: `4.x`, `0.12.x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Line {
    pub major: u64,
    pub minor: Option<u64>,
}

impl Line {
    pub fn contains(&self, v: &Version) -> bool {
        v.line() == *self
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.minor {
            Some(m) => write!(f, "{}.{m}.x", self.major),
            None => write!(f, "{}.x", self.major),
        }
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                // A pre-release comes before its release.
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

fn number(part: &str, whole: &str) -> Result<u64, VersionError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) || part.len() > 15 {
        return Err(VersionError(whole.to_string()));
    }
    part.parse().map_err(|_| VersionError(whole.to_string()))
}

impl FromStr for Version {
    type Err = VersionError;

    /// `4.2.2`, `v4.2.2`, `7.0.0-rc.1`; build metadata (`+...`) is dropped.
    fn from_str(s: &str) -> Result<Version, VersionError> {
        let t = s.trim();
        let t = t.strip_prefix('v').unwrap_or(t);
        let t = t.split_once('+').map_or(t, |(v, _)| v);
        let (core, pre) = match t.split_once('-') {
            Some((c, p)) => (c, Some(p)),
            None => (t, None),
        };
        let mut parts = core.split('.');
        let (Some(a), Some(b), Some(c), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(VersionError(s.to_string()));
        };
        let pre = match pre {
            None => Vec::new(),
            Some(p) => p
                .split('.')
                .map(|id| {
                    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    {
                        Err(VersionError(s.to_string()))
                    } else if id.bytes().all(|b| b.is_ascii_digit()) {
                        Ok(PreIdent::Num(
                            id.parse().map_err(|_| VersionError(s.to_string()))?,
                        ))
                    } else {
                        Ok(PreIdent::Alpha(id.to_string()))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(Version {
            major: number(a, s)?,
            minor: number(b, s)?,
            patch: number(c, s)?,
            pre,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                PreIdent::Num(n) => write!(f, "{n}")?,
                PreIdent::Alpha(a) => f.write_str(a)?,
            }
        }
        Ok(())
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn parses_node_forms() {
        assert_eq!(v("v4.2.2"), Version::new(4, 2, 2));
        assert_eq!(v("0.12.9"), Version::new(0, 12, 9));
        assert_eq!(v("7.0.0-rc.1").to_string(), "7.0.0-rc.1");
        assert_eq!(v("1.2.3+build.5"), Version::new(1, 2, 3));
        for bad in [
            "", "4", "4.2", "4.2.x", "a.b.c", "4.2.2.1", "4.2.2-", "-1.2.3", "4..2",
        ] {
            assert!(bad.parse::<Version>().is_err(), "{bad}");
        }
    }

    #[test]
    fn orders_by_precedence() {
        let mut list = [
            v("4.10.0"),
            v("4.2.3"),
            v("4.2.3-rc.1"),
            v("0.12.9"),
            v("4.2.3-rc.10"),
            v("4.2.3-beta"),
        ];
        list.sort();
        let text: Vec<String> = list.iter().map(|x| x.to_string()).collect();
        assert_eq!(
            text,
            [
                "0.12.9",
                "4.2.3-beta",
                "4.2.3-rc.1",
                "4.2.3-rc.10",
                "4.2.3",
                "4.10.0"
            ]
        );
    }

    #[test]
    fn lines() {
        assert_eq!(v("4.2.2").line().to_string(), "4.x");
        assert_eq!(v("0.12.7").line().to_string(), "0.12.x");
        assert!(v("0.12.7").line().contains(&v("0.12.9")));
        assert!(!v("0.12.7").line().contains(&v("0.10.9")));
    }
}
