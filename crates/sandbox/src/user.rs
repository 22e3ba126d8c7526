//! Resolving a `user:` string (`name`, `uid`, `name:group`, `uid:gid`, …)
//! against the container's own `/etc/passwd` and `/etc/group`, as docker
//! (runc's `GetExecUser`) does.
//!
//! - empty means root;
//! - a name must exist in `/etc/passwd`; a number need not (its gid is then
//!   0 and its home `/`);
//! - an explicit group must exist in `/etc/group` when it is a name;
//! - supplementary groups are the groups of `/etc/group` that list the
//!   user's name as a member.
//!
//! The files are opened inside the rootfs with `RESOLVE_IN_ROOT`, so an image
//! whose `/etc/passwd` is a symlink to `/etc/shadow` reads its own
//! `/etc/shadow`, never the host's.

use crate::sys;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// From `/etc/passwd`, or `/` when the user has no entry.
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid user {0:?}: uids and gids must be in range 0-2147483647")]
    OutOfRange(String),
    #[error("reading {file} in the container: {source}")]
    Read {
        file: &'static str,
        #[source]
        source: io::Error,
    },
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Ids above this are refused, as runc does (they would be negative as `int`).
const MAX_ID: u32 = i32::MAX as u32;

fn parse_id(s: &str, whole: &str) -> Result<Option<u32>, UserError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match s.parse::<u64>() {
        Ok(n) if n <= MAX_ID as u64 => Ok(Some(n as u32)),
        _ => Err(UserError::OutOfRange(whole.to_string())),
    }
}

/// Resolve `spec` (`user[:group]`) inside the rootfs at `rootfs`.
pub fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, UserError> {
    let root = File::open(rootfs).map_err(|source| UserError::Read { file: "/", source })?;
    let passwd = read_in_root(&root, "etc/passwd")
        .map(|t| parse_passwd(&t))
        .map_err(|source| UserError::Read {
            file: "/etc/passwd",
            source,
        })?;
    let groups = read_in_root(&root, "etc/group")
        .map(|t| parse_group(&t))
        .map_err(|source| UserError::Read {
            file: "/etc/group",
            source,
        })?;
    resolve_with(spec, &passwd, &groups)
}

/// The gids of `groups` (names or numbers, as `group_add`), names looked up
/// in the rootfs's `/etc/group`.
pub fn group_ids(rootfs: &Path, groups: &[String]) -> Result<Vec<u32>, UserError> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let root = File::open(rootfs).map_err(|source| UserError::Read { file: "/", source })?;
    let table = read_in_root(&root, "etc/group")
        .map(|t| parse_group(&t))
        .map_err(|source| UserError::Read {
            file: "/etc/group",
            source,
        })?;
    group_ids_with(groups, &table)
}

fn group_ids_with(groups: &[String], table: &[Group]) -> Result<Vec<u32>, UserError> {
    groups
        .iter()
        .map(|g| match parse_id(g, g)? {
            Some(gid) => Ok(gid),
            None => table
                .iter()
                .find(|e| e.name == *g)
                .map(|e| e.gid)
                .ok_or_else(|| UserError::NoSuchGroup(g.clone())),
        })
        .collect()
}

fn resolve_with(
    spec: &str,
    passwd: &[Passwd],
    groups: &[Group],
) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric_uid = parse_id(user_part, spec)?;
    let entry = if user_part.is_empty() {
        passwd.iter().find(|p| p.uid == 0)
    } else if let Some(uid) = numeric_uid {
        passwd.iter().find(|p| p.uid == uid)
    } else {
        Some(
            passwd
                .iter()
                .find(|p| p.name == user_part)
                .ok_or_else(|| UserError::NoSuchUser(user_part.to_string()))?,
        )
    };
    // An empty user is root; a number stands even without a passwd entry.
    let uid = numeric_uid.or(entry.map(|e| e.uid)).unwrap_or(0);
    let mut gid = entry.map_or(0, |e| e.gid);
    if let Some(g) = group_part.filter(|g| !g.is_empty()) {
        gid = match parse_id(g, spec)? {
            Some(gid) => gid,
            None => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or_else(|| UserError::NoSuchGroup(g.to_string()))?
                    .gid
            }
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(e) = entry {
        for g in groups {
            if g.members.contains(&e.name) && !additional_gids.contains(&g.gid) {
                additional_gids.push(g.gid);
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry
            .map(|e| e.home.clone())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "/".to_string()),
    })
}

/// A missing file reads as empty: many minimal images have no `/etc/group`.
fn read_in_root(root: &File, path: &str) -> io::Result<String> {
    match sys::open_in_root(root, Path::new(path), libc::O_RDONLY) {
        Ok(f) => {
            // Bounded: the image is untrusted and this runs in our process.
            let mut text = String::new();
            let mut bytes = Vec::new();
            f.take(16 << 20).read_to_end(&mut bytes)?;
            text.push_str(&String::from_utf8_lossy(&bytes));
            Ok(text)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e),
    }
}

fn fields(line: &str) -> Option<Vec<&str>> {
    let line = line.trim_end_matches('\r');
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    Some(line.split(':').collect())
}

fn parse_passwd(text: &str) -> Vec<Passwd> {
    text.lines()
        .filter_map(fields)
        .filter_map(|f| {
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or(String::new(), |h| h.to_string()),
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(fields)
        .filter_map(|f| {
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|m| !m.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1001:App:/home/app:/bin/sh\nbroken line\n";
    const GROUP: &str = "root:x:0:\napp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:other\n";

    fn r(spec: &str) -> Result<ResolvedUser, UserError> {
        resolve_with(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn names_numbers_and_groups() {
        let root = r("").unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        let app = r("app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1001));
        assert_eq!(app.additional_gids, vec![50]);
        assert_eq!(app.home, "/home/app");
        // A number in passwd takes its entry; one that is not gets gid 0.
        assert_eq!(r("1000").unwrap().gid, 1001);
        let anon = r("4242").unwrap();
        assert_eq!((anon.uid, anon.gid, anon.home.as_str()), (4242, 0, "/"));
        assert_eq!(r("app:staff").unwrap().gid, 50);
        assert_eq!(r("4242:77").unwrap().gid, 77);
        assert_eq!(r("app:").unwrap().gid, 1001);
    }

    #[test]
    fn added_groups_by_name_or_number() {
        let table = parse_group(GROUP);
        let ids = group_ids_with(&["staff".into(), "4242".into()], &table).unwrap();
        assert_eq!(ids, [50, 4242]);
        assert!(matches!(
            group_ids_with(&["nogroup".into()], &table),
            Err(UserError::NoSuchGroup(_))
        ));
    }

    #[test]
    fn unknown_names_and_huge_ids_are_errors() {
        assert!(matches!(r("nobody"), Err(UserError::NoSuchUser(_))));
        assert!(matches!(r("app:nogroup"), Err(UserError::NoSuchGroup(_))));
        assert!(matches!(r("4294967295"), Err(UserError::OutOfRange(_))));
        assert!(matches!(r("0:99999999999"), Err(UserError::OutOfRange(_))));
    }

    #[test]
    fn files_are_read_inside_the_rootfs() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(outer.path().join("secret"), "evil:x:7:7::/evil:/bin/sh\n").unwrap();
        // An absolute symlink resolves inside the rootfs, where it is missing.
        std::os::unix::fs::symlink(outer.path().join("secret"), root.join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve(&root, "evil"),
            Err(UserError::NoSuchUser(_))
        ));
        std::os::unix::fs::symlink("../../secret", root.join("etc/group")).unwrap();
        assert_eq!(resolve(&root, "5:0").unwrap().gid, 0);
    }
}
