//! Editing one value of a compose file in place: the exact bytes of one
//! scalar change, everything else (comments, order, quoting, indentation)
//! stays as written. The YAML tree of berth-compose says where the scalar
//! is; the text there must read as the value the tree holds, or the edit
//! is refused rather than guessed.

use crate::version::Version;
use berth_compose::yaml::{self, Node};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("{}: {message}", path.display())]
    Yaml { path: PathBuf, message: String },
    #[error("service {service:?} has no {key} in {files}")]
    NotFound {
        service: String,
        key: String,
        files: String,
    },
    #[error("{}:{line}: {reason}; edit it by hand", path.display())]
    CannotEdit {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

/// Where a service's value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// Index into the files given to [`locate`].
    pub file: usize,
    pub line: usize,
    pub column: usize,
    pub value: String,
}

fn services_of(doc: &Node) -> Option<&Node> {
    match doc.get("services") {
        Some(s) => Some(s),
        // Legacy v1: services at the top level.
        None if doc.get("version").is_none() => Some(doc),
        None => None,
    }
}

/// The last of `files` (path, text) that sets `key` on `service`: the file
/// whose value wins when they are merged.
pub fn locate(
    files: &[(PathBuf, String)],
    service: &str,
    key: &str,
) -> Result<Located, RewriteError> {
    for (i, (path, text)) in files.iter().enumerate().rev() {
        let docs = yaml::parse(text).map_err(|e| RewriteError::Yaml {
            path: path.clone(),
            message: format!("{}:{}: {}", e.mark.line, e.mark.column, e.message),
        })?;
        let Some(node) = docs
            .first()
            .and_then(services_of)
            .and_then(|s| s.get(service))
            .and_then(|s| s.get(key))
        else {
            continue;
        };
        let Some(value) = node.as_str() else {
            return Err(RewriteError::CannotEdit {
                path: path.clone(),
                line: node.mark.line,
                reason: format!("{key} is not a string"),
            });
        };
        return Ok(Located {
            file: i,
            line: node.mark.line,
            column: node.mark.column,
            value: value.to_string(),
        });
    }
    Err(RewriteError::NotFound {
        service: service.into(),
        key: key.into(),
        files: files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `text` with the scalar at `at` changed from `at.value` to `new`, its
/// quoting kept.
pub fn replace(text: &str, path: &Path, at: &Located, new: &str) -> Result<String, RewriteError> {
    let refuse = |reason: &str| RewriteError::CannotEdit {
        path: path.to_path_buf(),
        line: at.line,
        reason: reason.to_string(),
    };
    let line_start = if at.line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(at.line - 2)
            .map(|(i, _)| i + 1)
            .ok_or_else(|| refuse("the position is past the end of the file"))?
    };
    let line_text = &text[line_start..];
    // Columns count characters.
    let col = line_text
        .char_indices()
        .nth(at.column.saturating_sub(1))
        .map(|(i, _)| i)
        .ok_or_else(|| refuse("the position is past the end of the line"))?;
    let mut start = line_start + col;
    let rest = &text[start..];
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'');
    if let Some(q) = quote {
        if at.value.contains(q) || at.value.contains('\\') || new.contains(q) || new.contains('\\')
        {
            return Err(refuse("the quoted value has escapes"));
        }
        start += 1;
    } else if new.starts_with(['"', '\'', '&', '*', '!', '#', '{', '['])
        || new.contains(": ")
        || new.contains(" #")
    {
        return Err(refuse("the new value would need quoting"));
    }
    if !text[start..].starts_with(&at.value) {
        return Err(refuse(&format!(
            "the text there does not read {:?} (interpolated, folded or an alias?)",
            at.value
        )));
    }
    let end = start + at.value.len();
    if let Some(q) = quote {
        if !text[end..].starts_with(q) {
            return Err(refuse("the quoted value spans more than its text"));
        }
    }
    Ok(format!("{}{}{}", &text[..start], new, &text[end..]))
}

/// A unified diff of two texts whose lines differ one for one.
pub fn diff(path: &Path, old: &str, new: &str) -> String {
    let mut out = format!("--- {}\n+++ {}\n", path.display(), path.display());
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
        if x != y {
            out.push_str(&format!("@@ -{n} +{n} @@\n-{x}\n+{y}\n", n = i + 1));
        }
    }
    out
}

/// Where the version sits in a recognised runtime image reference
/// (`node:4.2.2-alpine`, `quay.io/oddnetworks/alpine-nodejs:4.2.2`): the
/// byte range of the version inside the reference, and the version.
pub fn image_version(image: &str) -> Option<(std::ops::Range<usize>, Version)> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    let colon = slash + without_digest[slash..].find(':')?;
    let repo_last = &without_digest[slash..colon];
    let registry_ok = match repo_last {
        "node" => {
            let prefix = &without_digest[..slash];
            matches!(
                prefix,
                "" | "library/"
                    | "docker.io/library/"
                    | "index.docker.io/library/"
                    | "registry-1.docker.io/library/"
            )
        }
        "alpine-nodejs" | "alpine-node" => true,
        _ => false,
    };
    if !registry_ok {
        return None;
    }
    let tag = &without_digest[colon + 1..];
    let skip = usize::from(tag.starts_with('v'));
    let ver_text = tag[skip..].split('-').next().unwrap_or("");
    let version: Version = ver_text.parse().ok()?;
    let start = colon + 1 + skip;
    Some((start..start + ver_text.len(), version))
}

/// The reference with its version replaced (`node:4.2.2-alpine` → `node:4.2.3-alpine`).
pub fn image_with_version(image: &str, new: &Version) -> Option<String> {
    let (range, _) = image_version(image)?;
    Some(format!(
        "{}{}{}",
        &image[..range.start],
        new,
        &image[range.end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: &str = "# the seed, v1 format\ncode:\n  build: .   # code only\napp:\n  # node runtime\n  image: quay.io/oddnetworks/alpine-nodejs:4.2.2  # pinned\n  volumes_from:\n    - code\n  ports:\n    - \"8080:3000\"\n";

    fn edit(
        text: &str,
        service: &str,
        key: &str,
        new: impl Fn(&str) -> String,
    ) -> Result<String, RewriteError> {
        let files = vec![(PathBuf::from("c.yml"), text.to_string())];
        let at = locate(&files, service, key)?;
        replace(text, Path::new("c.yml"), &at, &new(&at.value))
    }

    #[test]
    fn image_tag_in_a_v1_file_changes_alone() {
        let got = edit(SEED, "app", "image", |old| {
            image_with_version(old, &"4.2.3".parse().unwrap()).unwrap()
        })
        .unwrap();
        assert_eq!(
            got,
            SEED.replace(
                "alpine-nodejs:4.2.2  # pinned",
                "alpine-nodejs:4.2.3  # pinned"
            )
        );
        assert_eq!(
            diff(Path::new("c.yml"), SEED, &got),
            "--- c.yml\n+++ c.yml\n@@ -6 +6 @@\n-  image: quay.io/oddnetworks/alpine-nodejs:4.2.2  # pinned\n+  image: quay.io/oddnetworks/alpine-nodejs:4.2.3  # pinned\n"
        );
    }

    #[test]
    fn x_runtime_keeps_quotes_and_picks_the_defining_file() {
        let text = "services:\n  app:\n    x-runtime: \"node@4.2.2\"   # keep\n    command: ['node', 'i.js']\n  other:\n    x-runtime: 'node@4.2.2'\n";
        let got = edit(text, "app", "x-runtime", |_| "node@4.2.3".into()).unwrap();
        assert_eq!(got, text.replacen("\"node@4.2.2\"", "\"node@4.2.3\"", 1));
        let got = edit(text, "other", "x-runtime", |_| "node@4.9.1".into()).unwrap();
        assert_eq!(got, text.replace("'node@4.2.2'", "'node@4.9.1'"));
        let files = vec![
            (
                PathBuf::from("a.yml"),
                "services:\n  app:\n    x-runtime: node@4.2.2\n".to_string(),
            ),
            (
                PathBuf::from("b.yml"),
                "services:\n  app:\n    environment: {A: b}\n".to_string(),
            ),
            (
                PathBuf::from("c.yml"),
                "services:\n  web:\n    x-runtime: node@20\n".to_string(),
            ),
        ];
        let at = locate(&files, "app", "x-runtime").unwrap();
        assert_eq!(
            (at.file, at.line, at.column, at.value.as_str()),
            (0, 3, 16, "node@4.2.2")
        );
        assert!(matches!(
            locate(&files, "db", "x-runtime"),
            Err(RewriteError::NotFound { .. })
        ));
    }

    #[test]
    fn refuses_what_it_cannot_edit_exactly() {
        let text = "services:\n  app:\n    x-runtime: ${RT:-node@4.2.2}\n";
        // The tree holds the text before interpolation: the default is what changes.
        assert_eq!(
            edit(text, "app", "x-runtime", |_| "${RT:-node@4.2.3}".into()).unwrap(),
            "services:\n  app:\n    x-runtime: ${RT:-node@4.2.3}\n"
        );
        let folded = "services:\n  app:\n    x-runtime: >-\n      node@4.2.2\n";
        assert_eq!(
            edit(folded, "app", "x-runtime", |_| "node@4.2.3".into()).unwrap(),
            folded.replace("4.2.2", "4.2.3")
        );
        let split = "services:\n  app:\n    x-runtime: node@4.2.2\n      -beta\n";
        assert!(matches!(
            edit(split, "app", "x-runtime", |_| "node@4.2.3".into()),
            Err(RewriteError::CannotEdit { .. })
        ));
        let plain = "services:\n  app:\n    x-runtime: node@4.2.2\n";
        assert!(edit(plain, "app", "x-runtime", |_| "#x".into()).is_err());
    }

    #[test]
    fn recognises_runtime_images() {
        let v = |s: &str| image_version(s).map(|(_, v)| v.to_string());
        assert_eq!(v("node:4.2.2"), Some("4.2.2".into()));
        assert_eq!(v("node:4.2.2-alpine"), Some("4.2.2".into()));
        assert_eq!(
            v("docker.io/library/node:20.1.0-bookworm-slim"),
            Some("20.1.0".into())
        );
        assert_eq!(
            v("quay.io/oddnetworks/alpine-nodejs:4.2.2"),
            Some("4.2.2".into())
        );
        assert_eq!(v("mhart/alpine-node:v6.2.0"), Some("6.2.0".into()));
        assert_eq!(v("node:20"), None);
        assert_eq!(v("node"), None);
        assert_eq!(v("someone/node:4.2.2"), None);
        assert_eq!(v("localhost:5000/app:4.2.2"), None);
        assert_eq!(
            image_with_version("node:4.2.2-alpine", &"4.2.3".parse().unwrap()).as_deref(),
            Some("node:4.2.3-alpine")
        );
        assert_eq!(
            image_with_version("mhart/alpine-node:v6.2.0", &"6.2.1".parse().unwrap()).as_deref(),
            Some("mhart/alpine-node:v6.2.1")
        );
    }
}
