//! Go's `path/filepath` `Clean` and `Dir` for `/`-separated paths.
//!
//! Docker normalises both patterns and paths with these before comparing
//! them, so reproducing them exactly matters: `"a//b/../c/"` has to become
//! `"a/c"` here just as it does in docker, or a pattern that docker honours
//! would silently stop matching.

/// The shortest path equivalent to `path` by purely lexical processing
/// (Go's `filepath.Clean` on a Unix host).
pub fn clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !rooted {
                    // A relative path may climb above its start; a rooted one
                    // cannot climb above `/`, so the `..` is dropped there.
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

/// Everything but the last element of `path`, cleaned (Go's `filepath.Dir`).
pub(crate) fn dir(path: &str) -> String {
    match path.rfind('/') {
        Some(slash) => clean(&path[..=slash]),
        None => ".".to_owned(),
    }
}

/// The prefixes of `path` that end just before each `/`, then `path` itself:
/// the same strings Go gets from joining the first 1, 2, … elements of
/// `strings.Split(path, "/")`, without allocating each one.
pub(crate) fn element_prefixes(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(at, _)| &path[..at])
        .chain(std::iter::once(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go() {
        let cases = [
            ("", "."),
            (".", "."),
            ("/", "/"),
            ("//", "/"),
            ("a/b/", "a/b"),
            ("a//b", "a/b"),
            ("./a", "a"),
            ("a/./b", "a/b"),
            ("a/../b", "b"),
            ("a/..", "."),
            ("../a", "../a"),
            ("../../a/../b", "../../b"),
            ("/../a", "/a"),
            ("/a/b/../../..", "/"),
            ("!./foo", "!./foo"),
            ("a/b/c/../../d", "a/d"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "clean({input:?})");
        }
    }

    #[test]
    fn dir_matches_go() {
        let cases = [
            ("file", "."),
            ("dir/file", "dir"),
            ("dir/file/", "dir/file"),
            ("/", "/"),
            ("/any/path/there", "/any/path"),
            ("a//b", "a"),
        ];
        for (input, want) in cases {
            assert_eq!(dir(input), want, "dir({input:?})");
        }
    }

    #[test]
    fn element_prefixes_join_like_go() {
        let got: Vec<&str> = element_prefixes("/any/path").collect();
        assert_eq!(got, ["", "/any", "/any/path"]);
        let got: Vec<&str> = element_prefixes("a").collect();
        assert_eq!(got, ["a"]);
    }
}
