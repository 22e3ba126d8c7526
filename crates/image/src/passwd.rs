//! `--chown=user:group` with names: looked up in the image being built.
//!
//! Docker resolves names against the `/etc/passwd` and `/etc/group` of the
//! build stage's filesystem. berth reads those two files straight out of the
//! stage's layers (topmost first, honouring whiteouts) instead of unpacking
//! the whole filesystem.

use crate::layer::Owner;
use berth_oci::{Descriptor, Store};
use std::io::Read;

/// Largest `/etc/passwd` or `/etc/group` read; a bigger one counts as absent.
const MAX_TABLE_BYTES: u64 = 16 << 20;

/// The content of `path` (no leading `/`) in the filesystem the layers make.
pub fn read_from_layers(store: &Store, layers: &[Descriptor], path: &str) -> Option<Vec<u8>> {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let whiteout = if dir.is_empty() {
        format!(".wh.{name}")
    } else {
        format!("{dir}/.wh.{name}")
    };
    let opaque = format!("{dir}/.wh..wh..opq");
    for layer in layers.iter().rev() {
        let blob = store.open_blob(&layer.digest).ok()?;
        let reader = crate::unpack::decompress(Box::new(std::io::BufReader::new(blob))).ok()?;
        let mut archive = tar::Archive::new(reader);
        let mut hidden = false;
        for entry in archive.entries().ok()? {
            let Ok(entry) = entry else { return None };
            let Ok(p) = entry.path() else { continue };
            let p = p
                .to_string_lossy()
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string();
            if p == path && entry.header().entry_type().is_file() {
                // A base image is untrusted: its passwd may be a
                // decompression bomb. Real ones are kilobytes.
                let mut data = Vec::new();
                entry
                    .take(MAX_TABLE_BYTES + 1)
                    .read_to_end(&mut data)
                    .ok()?;
                return (data.len() as u64 <= MAX_TABLE_BYTES).then_some(data);
            }
            if p == whiteout || p == opaque {
                hidden = true;
            }
        }
        if hidden {
            return None;
        }
    }
    None
}

fn lookup(table: &str, name: &str, field: usize) -> Option<u64> {
    table.lines().find_map(|line| {
        let cols: Vec<&str> = line.split(':').collect();
        (cols.first() == Some(&name)).then(|| cols.get(field)?.parse().ok())?
    })
}

/// Resolve `user[:group]`: numbers are taken as they are; a name without a
/// group gives the same number for both, as docker does.
pub fn resolve_owner(
    spec: &str,
    passwd: Option<&str>,
    group: Option<&str>,
) -> Result<Owner, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match user.parse::<u64>() {
        Ok(n) => n,
        Err(_) => passwd.and_then(|p| lookup(p, user, 2)).ok_or_else(|| {
            format!("--chown={spec}: no user {user:?} in the image's /etc/passwd")
        })?,
    };
    let gid = match grp {
        None => uid,
        Some(g) => match g.parse::<u64>() {
            Ok(n) => n,
            Err(_) => group.and_then(|t| lookup(t, g, 2)).ok_or_else(|| {
                format!("--chown={spec}: no group {g:?} in the image's /etc/group")
            })?,
        },
    };
    Ok(Owner { uid, gid })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    #[test]
    fn names_and_numbers() {
        assert_eq!(
            resolve_owner("node", Some(PASSWD), Some(GROUP)).unwrap(),
            Owner {
                uid: 1000,
                gid: 1000
            }
        );
        assert_eq!(
            resolve_owner("node:staff", Some(PASSWD), Some(GROUP)).unwrap(),
            Owner { uid: 1000, gid: 50 }
        );
        assert_eq!(
            resolve_owner("12:34", None, None).unwrap(),
            Owner { uid: 12, gid: 34 }
        );
        assert!(resolve_owner("ghost", Some(PASSWD), Some(GROUP))
            .unwrap_err()
            .contains("no user \"ghost\""));
        assert!(resolve_owner("node:nogroup", Some(PASSWD), Some(GROUP)).is_err());
    }
}
