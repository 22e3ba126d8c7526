//! `DockerIgnore` on real build-context directories.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use berth_dockerignore::{keeps_anyway, keeps_anyway_for, DockerIgnore, LoadError, PatternError};

fn context(files: &[&str], dockerignore: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for file in files {
        let path = dir.path().join(file);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&path, file.as_bytes()).expect("write");
    }
    if let Some(content) = dockerignore {
        fs::write(dir.path().join(".dockerignore"), content).expect("write .dockerignore");
    }
    dir
}

/// The files a build-context walk sends, walking the way berth's builder
/// does: skipping a directory only when `can_skip_dir` allows it. Also
/// checks that a skipped directory really had nothing to send.
fn walk(root: &Path, rules: &DockerIgnore) -> BTreeSet<String> {
    let mut sent = BTreeSet::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel_dir.is_empty() {
                name
            } else {
                format!("{rel_dir}/{name}")
            };
            let is_dir = entry.file_type().expect("file type").is_dir();
            let excluded = rules.is_excluded(&rel, is_dir);
            if is_dir {
                if excluded && rules.can_skip_dir(&rel) {
                    let hidden = every_file(&entry.path(), &rel);
                    for file in hidden {
                        assert!(
                            rules.is_excluded(&file, false),
                            "skipped {rel} but {file} is not excluded"
                        );
                    }
                    continue;
                }
                stack.push((entry.path(), rel));
            } else if !excluded {
                sent.insert(rel);
            }
        }
    }
    sent
}

fn every_file(dir: &Path, rel_dir: &str) -> Vec<String> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read_dir") {
        let entry = entry.expect("entry");
        let rel = format!("{rel_dir}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().expect("file type").is_dir() {
            out.extend(every_file(&entry.path(), &rel));
        } else {
            out.push(rel);
        }
    }
    out
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

const APP: &[&str] = &[
    "Dockerfile",
    "package.json",
    "src/index.js",
    "src/lib/util.js",
    "node_modules/left-pad/index.js",
    "node_modules/left-pad/README.md",
    "node_modules/.bin/tool",
    ".git/HEAD",
    ".git/objects/ab/cdef",
    "docs/guide.md",
    "docs/img/logo.png",
];

#[test]
fn seed_app_excludes_node_modules_and_git() {
    let dir = context(APP, Some("node_modules\n.git\n"));
    let rules = DockerIgnore::from_context_dir(dir.path()).expect("load");
    assert!(rules.is_excluded("node_modules", true));
    assert!(rules.is_excluded("node_modules/left-pad/index.js", false));
    assert!(rules.is_excluded(".git/objects/ab/cdef", false));
    assert!(!rules.is_excluded("src/index.js", false));
    assert!(!rules.is_excluded(".gitignore", false));
    assert!(
        !rules.is_excluded("sub/node_modules", true),
        "patterns are rooted"
    );
    assert!(rules.can_skip_dir("node_modules"));
    assert!(rules.can_skip_dir(".git"));
    assert!(rules.can_skip_dir("node_modules/left-pad"));
    assert!(!rules.can_skip_dir("src"), "not excluded");
    assert_eq!(
        walk(dir.path(), &rules),
        set(&[
            ".dockerignore",
            "Dockerfile",
            "package.json",
            "src/index.js",
            "src/lib/util.js",
            "docs/guide.md",
            "docs/img/logo.png",
        ])
    );
}

#[test]
fn exception_reincludes_a_file_inside_an_excluded_dir() {
    let dir = context(
        APP,
        Some("node_modules\n!node_modules/left-pad/README.md\n.git\n"),
    );
    let rules = DockerIgnore::from_context_dir(dir.path()).expect("load");
    assert!(!rules.is_excluded("node_modules/left-pad/README.md", false));
    assert!(rules.is_excluded("node_modules/left-pad/index.js", false));
    assert!(
        !rules.can_skip_dir("node_modules"),
        "the exception lies inside"
    );
    assert!(!rules.can_skip_dir("node_modules/left-pad"));
    assert!(
        rules.can_skip_dir("node_modules/.bin"),
        "nothing re-included there"
    );
    assert!(rules.can_skip_dir(".git"));
    assert_eq!(
        walk(dir.path(), &rules),
        set(&[
            ".dockerignore",
            "Dockerfile",
            "package.json",
            "src/index.js",
            "src/lib/util.js",
            "docs/guide.md",
            "docs/img/logo.png",
            "node_modules/left-pad/README.md",
        ])
    );
}

#[test]
fn wildcard_exceptions_decide_skipping_exactly() {
    // Everything but markdown files at the top level and the `src` tree.
    let dir = context(APP, Some("*\n!*.json\n!src\n"));
    let rules = DockerIgnore::from_context_dir(dir.path()).expect("load");
    assert!(rules.can_skip_dir("node_modules"), "`*.json` has no `/`");
    assert!(!rules.is_excluded("src/lib/util.js", false));
    assert_eq!(
        walk(dir.path(), &rules),
        set(&["package.json", "src/index.js", "src/lib/util.js"])
    );

    // Markdown anywhere survives, so nothing excluded can be skipped.
    let rules = DockerIgnore::parse("node_modules\ndocs\n!**/*.md\n").expect("rules");
    assert!(!rules.can_skip_dir("node_modules"));
    assert_eq!(
        walk(dir.path(), &rules),
        set(&[
            ".dockerignore",
            "Dockerfile",
            "package.json",
            "src/index.js",
            "src/lib/util.js",
            ".git/HEAD",
            ".git/objects/ab/cdef",
            "docs/guide.md",
            "node_modules/left-pad/README.md",
        ])
    );

    // Markdown under docs only.
    let rules = DockerIgnore::parse("docs\nnode_modules\n!docs/*.md\n").expect("rules");
    assert!(!rules.can_skip_dir("docs"));
    assert!(rules.can_skip_dir("docs/img"));
    assert!(rules.can_skip_dir("node_modules"));

    // A later pattern re-excluding after the exception still counts as
    // reachable: skipping decisions stay conservative.
    let rules = DockerIgnore::parse("docs\n!docs/guide.md\ndocs/guide.md\n").expect("rules");
    assert!(rules.is_excluded("docs/guide.md", false));
    assert!(rules.is_excluded("docs", true));
}

#[test]
fn prefix_and_suffix_exceptions() {
    let rules = DockerIgnore::parse("vendor\n!vendor/keep/**\n").expect("rules");
    assert!(!rules.can_skip_dir("vendor"));
    assert!(!rules.can_skip_dir("vendor/keep"));
    assert!(rules.can_skip_dir("vendor/other"));
    assert!(!rules.is_excluded("vendor/keep/a/b", false));
    assert!(rules.is_excluded("vendor/other/a", false));

    let rules = DockerIgnore::parse("vendor\n!**/LICENSE\n").expect("rules");
    assert!(!rules.can_skip_dir("vendor/deep/er"));
    assert!(!rules.is_excluded("vendor/deep/er/LICENSE", false));
}

#[test]
fn can_skip_dir_is_sound_over_a_small_universe() {
    let patterns = [
        "a", "a/b", "a/*", "*", "**", "a/**", "**/b", "*/b", "a?", "[ab]", "a/b/c", "**/c",
        "a[^x]b", "b/**/c",
    ];
    let paths = [
        "a", "a/b", "a/b/c", "a/c", "ab", "b", "b/c", "b/x/c", "a/b/c/d", "ax", "a/x/c", "c",
    ];
    let mut checked = 0;
    for first in patterns {
        for second in patterns {
            for third in ["a/b", "**/c", "*", "a[^x]b", "b/**"] {
                let lines = [first.to_owned(), format!("!{second}"), third.to_owned()];
                let with_exception_last =
                    [first.to_owned(), third.to_owned(), format!("!{second}")];
                for lines in [&lines, &with_exception_last] {
                    let rules = DockerIgnore::from_patterns(lines.iter()).expect("rules");
                    for dir in paths {
                        if !rules.can_skip_dir(dir) {
                            continue;
                        }
                        for path in paths {
                            if path.starts_with(&format!("{dir}/")) {
                                checked += 1;
                                assert!(
                                    rules.is_excluded(path, false),
                                    "{lines:?}: skipped {dir} but {path} is sent"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "universe too small: {checked}");
}

#[test]
fn bom_comments_and_leading_slash() {
    let dir = context(
        &["build/out", "sub/build/out", "# not a comment", "keep"],
        Some("\u{FEFF}/build\n# keep\n  # not a comment\n"),
    );
    let rules = DockerIgnore::from_context_dir(dir.path()).expect("load");
    assert!(
        rules.is_excluded("build", true),
        "BOM stripped, `/` dropped"
    );
    assert!(
        !rules.is_excluded("sub/build/out", false),
        "anchored at the root"
    );
    assert!(!rules.is_excluded("keep", false), "`# keep` is a comment");
    assert!(
        rules.is_excluded("# not a comment", false),
        "`#` after whitespace is a pattern"
    );
    assert_eq!(
        walk(dir.path(), &rules),
        set(&[".dockerignore", "keep", "sub/build/out"])
    );
}

#[test]
fn paths_are_cleaned() {
    let rules = DockerIgnore::parse("a/b\n").expect("rules");
    assert!(rules.is_excluded("./a//b/", false));
    assert!(rules.is_excluded("/a/b/c", false));
    assert!(!rules.is_excluded(".", true));
    assert!(!rules.is_excluded("", true));
    assert!(!rules.can_skip_dir("."));
    let everything = DockerIgnore::parse("**\n").expect("rules");
    assert!(
        !everything.is_excluded(".", true),
        "the root itself is kept"
    );
    assert!(everything.is_excluded("x", false));
}

#[test]
fn no_dockerignore_excludes_nothing() {
    let dir = context(APP, None);
    let rules = DockerIgnore::from_context_dir(dir.path()).expect("load");
    assert!(rules.matcher().patterns().is_empty());
    assert!(!rules.is_excluded("node_modules/left-pad/index.js", false));
    assert!(!rules.can_skip_dir("node_modules"));
    assert_eq!(walk(dir.path(), &rules).len(), APP.len());
}

#[test]
fn dockerfile_specific_ignore_file_wins() {
    let dir = context(&["app.Dockerfile", "a", "b"], Some("a\n"));
    fs::write(dir.path().join("app.Dockerfile.dockerignore"), "b\n").expect("write");
    let rules =
        DockerIgnore::for_dockerfile(dir.path(), &dir.path().join("app.Dockerfile")).expect("load");
    assert!(rules.is_excluded("b", false));
    assert!(!rules.is_excluded("a", false));
    let fallback =
        DockerIgnore::for_dockerfile(dir.path(), &dir.path().join("Dockerfile")).expect("load");
    assert!(fallback.is_excluded("a", false));
}

#[test]
fn bad_patterns_are_reported() {
    let dir = context(&[], Some("ok\n[unclosed\n"));
    match DockerIgnore::from_context_dir(dir.path()) {
        Err(LoadError::Pattern { path, source }) => {
            assert!(path.ends_with(".dockerignore"));
            assert_eq!(
                source,
                PatternError::BadPattern {
                    pattern: "[unclosed".to_owned()
                }
            );
        }
        other => panic!("want a pattern error, got {other:?}"),
    }
    assert_eq!(
        DockerIgnore::parse("!\n").err(),
        Some(PatternError::IllegalExclusion)
    );
    // Passes docker's syntax check, fails to compile: rejected up front.
    assert!(matches!(
        DockerIgnore::parse("[z-a]\n"),
        Err(PatternError::BadPattern { .. })
    ));
}

#[test]
fn an_unreadable_dockerignore_is_an_io_error() {
    let dir = context(&[], None);
    fs::create_dir(dir.path().join(".dockerignore")).expect("mkdir");
    assert!(matches!(
        DockerIgnore::from_context_dir(dir.path()),
        Err(LoadError::Io { .. })
    ));
}

#[test]
fn dockerfile_and_dockerignore_are_kept_anyway() {
    assert!(keeps_anyway("Dockerfile"));
    assert!(keeps_anyway("./.dockerignore"));
    assert!(!keeps_anyway("sub/Dockerfile"));
    assert!(!keeps_anyway("dockerfile"));
    assert!(keeps_anyway_for(
        "build/app.Dockerfile",
        "./build/app.Dockerfile"
    ));
    assert!(keeps_anyway_for(".dockerignore", "build/app.Dockerfile"));
    assert!(!keeps_anyway_for("Dockerfile", "build/app.Dockerfile"));
}
