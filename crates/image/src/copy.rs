//! What `COPY`/`ADD` put where: docker's rules for sources and destinations.
//!
//! - A source may be a glob (`*.js`, `src/**`-less `filepath.Match` syntax per
//!   path component); it must match something.
//! - A directory source copies its contents, not the directory itself.
//! - With several sources, or a destination ending in `/`, the destination
//!   is a directory; otherwise a single file is copied *to* that path.
//! - A relative destination is relative to `WORKDIR`.
//! - Sources cannot leave the context (`../x` is an error).

use crate::context::{Entry, EntryKind};
use crate::unpack::clean_entry_path;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyError {
    #[error("{0}: no source files were specified")]
    NoSources(String),
    #[error("{0}: no such file or directory in the build context")]
    NotFound(String),
    #[error("{0}: path is outside the build context")]
    OutsideContext(String),
    #[error("when using COPY with more than one source file, the destination must be a directory and end with a /")]
    DestNotDir,
}

/// One thing to put into the layer: a context entry at an image path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'e> {
    pub entry: &'e Entry,
    /// Absolute path inside the image, without the leading `/`.
    pub dest: String,
}

/// Match one path component against a `filepath.Match` pattern.
pub fn component_match(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char], budget: &mut u32) -> bool {
        if *budget == 0 {
            return false;
        }
        *budget -= 1;
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|i| go(&p[1..], &n[i..], budget)),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..], budget),
            Some('[') => {
                let Some(c) = n.first() else { return false };
                let Some(end) = p.iter().skip(1).position(|&x| x == ']').map(|i| i + 1) else {
                    return false;
                };
                let class = &p[1..end];
                let (negate, class) = match class.first() {
                    Some('^') | Some('!') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= *c && *c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == *c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[end + 1..], &n[1..], budget)
            }
            Some('\\') if p.len() > 1 => n.first() == Some(&p[1]) && go(&p[2..], &n[1..], budget),
            Some(ch) => n.first() == Some(ch) && go(&p[1..], &n[1..], budget),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Bounded: hostile patterns like `*a*a*a*a…` cannot run away.
    go(&p, &n, &mut 100_000)
}

fn path_match(pattern: &str, rel: &str) -> bool {
    let pp: Vec<&str> = pattern.split('/').collect();
    let rp: Vec<&str> = rel.split('/').collect();
    pp.len() == rp.len() && pp.iter().zip(&rp).all(|(p, r)| component_match(p, r))
}

fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Join an image path: absolute `dest`, or relative to `workdir`.
pub fn image_path(workdir: &str, dest: &str) -> String {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    clean_entry_path(&joined)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Plan a `COPY srcs... dest` over the (sorted) context entries.
pub fn plan<'e>(
    entries: &'e [Entry],
    sources: &[String],
    dest: &str,
    workdir: &str,
) -> Result<Vec<Placement<'e>>, CopyError> {
    if sources.is_empty() {
        return Err(CopyError::NoSources(dest.to_string()));
    }
    let dest_is_dir =
        dest.ends_with('/') || dest == "." || sources.len() > 1 || is_glob_any(sources);
    let dest_root = image_path(workdir, dest);
    let mut out = Vec::new();
    for src in sources {
        let cleaned = clean_entry_path(src).map_err(|_| CopyError::OutsideContext(src.clone()))?;
        let rel = cleaned.to_string_lossy().into_owned();
        // Every top-level match of the source: the entry itself (file or dir).
        let roots: Vec<&Entry> = if rel.is_empty() {
            Vec::new() // the whole context
        } else if is_glob(&rel) {
            entries
                .iter()
                .filter(|e| path_match(&rel, &e.rel))
                .collect()
        } else {
            entries.iter().filter(|e| e.rel == rel).collect()
        };
        if !rel.is_empty() && roots.is_empty() {
            return Err(CopyError::NotFound(src.clone()));
        }
        if rel.is_empty() {
            for e in entries {
                out.push(Placement {
                    entry: e,
                    dest: join(&dest_root, &e.rel),
                });
            }
            continue;
        }
        for root in roots {
            match root.kind {
                EntryKind::Dir => {
                    let prefix = format!("{}/", root.rel);
                    for e in entries.iter().filter(|e| e.rel.starts_with(&prefix)) {
                        out.push(Placement {
                            entry: e,
                            dest: join(&dest_root, &e.rel[prefix.len()..]),
                        });
                    }
                }
                _ => {
                    let name = root.rel.rsplit('/').next().unwrap_or(&root.rel);
                    let dest = if dest_is_dir {
                        join(&dest_root, name)
                    } else {
                        dest_root.clone()
                    };
                    out.push(Placement { entry: root, dest });
                }
            }
        }
    }
    if sources.len() > 1 && !dest.ends_with('/') {
        return Err(CopyError::DestNotDir);
    }
    Ok(out)
}

fn is_glob_any(sources: &[String]) -> bool {
    sources.iter().any(|s| is_glob(s))
}

fn join(root: &str, rel: &str) -> String {
    match (root.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (_, true) => root.to_string(),
        _ => format!("{root}/{rel}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn entries(list: &[(&str, bool)]) -> Vec<Entry> {
        list.iter()
            .map(|(rel, dir)| Entry {
                rel: rel.to_string(),
                path: PathBuf::from(rel),
                kind: if *dir {
                    EntryKind::Dir
                } else {
                    EntryKind::File
                },
                mode: 0o644,
                size: 1,
            })
            .collect()
    }

    fn dests(p: &[Placement]) -> Vec<String> {
        p.iter().map(|p| p.dest.clone()).collect()
    }

    #[test]
    fn whole_context_into_a_dir() {
        let e = entries(&[("index.js", false), ("lib", true), ("lib/a.js", false)]);
        let p = plan(&e, &[".".into()], "/app", "/").unwrap();
        assert_eq!(dests(&p), ["app/index.js", "app/lib", "app/lib/a.js"]);
    }

    #[test]
    fn file_to_file_and_into_dir() {
        let e = entries(&[("a.txt", false), ("b.txt", false)]);
        assert_eq!(
            dests(&plan(&e, &["a.txt".into()], "/x/renamed", "/").unwrap()),
            ["x/renamed"]
        );
        assert_eq!(
            dests(&plan(&e, &["a.txt".into()], "sub/", "/work").unwrap()),
            ["work/sub/a.txt"]
        );
        assert_eq!(
            dests(&plan(&e, &["*.txt".into()], "/d/", "/").unwrap()),
            ["d/a.txt", "d/b.txt"]
        );
        assert_eq!(
            plan(&e, &["a.txt".into(), "b.txt".into()], "/d", "/"),
            Err(CopyError::DestNotDir)
        );
    }

    #[test]
    fn directory_contents_not_the_directory() {
        let e = entries(&[
            ("src", true),
            ("src/m.rs", false),
            ("src/deep", true),
            ("src/deep/x", false),
        ]);
        assert_eq!(
            dests(&plan(&e, &["src".into()], "/code", "/").unwrap()),
            ["code/m.rs", "code/deep", "code/deep/x"]
        );
    }

    #[test]
    fn errors() {
        let e = entries(&[("a", false)]);
        assert_eq!(
            plan(&e, &["missing".into()], "/", "/"),
            Err(CopyError::NotFound("missing".into()))
        );
        assert_eq!(
            plan(&e, &["../etc/passwd".into()], "/", "/"),
            Err(CopyError::OutsideContext("../etc/passwd".into()))
        );
    }

    #[test]
    fn globs() {
        assert!(component_match("*.js", "index.js"));
        assert!(!component_match("*.js", "index.ts"));
        assert!(component_match("f?o", "foo"));
        assert!(component_match("[a-c]x", "bx"));
        assert!(!component_match("[^a-c]x", "bx"));
        assert!(!component_match(&"*a".repeat(30), &"a".repeat(29)));
    }
}
