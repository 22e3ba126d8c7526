//! Which rule a changed host path falls under, and where it goes in the
//! container.

use crate::rules::WatchRule;
use std::path::{Component, Path};

/// Names editors write next to the file being edited (swap, backup and
/// lock files) and version-control metadata: docker compose never acts on
/// them either, and syncing a vim swap file would be noise at best.
fn is_ephemeral(name: &str) -> bool {
    name == ".git"
        || name == "4913" // vim probes whether it may write a directory
        || name == ".DS_Store"
        || name.ends_with('~')
        || name.ends_with("___jb_old___")
        || name.ends_with("___jb_tmp___")
        || name.ends_with(".kate-swp")
        || (name.starts_with('.')
            && [".swp", ".swx", ".swo", ".swn"]
                .iter()
                .any(|s| name.ends_with(s)))
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#') && name.len() > 1)
}

/// A host path matched by a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    /// `/`-separated, relative to the rule's path; empty for the path itself.
    pub rel: String,
    /// Where it lives in the container (for syncing rules).
    pub container: Option<String>,
}

impl WatchRule {
    /// Whether a change at `host` (absolute) concerns this rule: it is the
    /// rule's path or below it, no name on the way is an editor's scratch
    /// file or `.git`, neither the rule's `ignore` nor the build context's
    /// `.dockerignore` leave it out, and `include` (when given) takes it in.
    pub fn matches(&self, host: &Path) -> Option<Matched> {
        let rest = host.strip_prefix(&self.path).ok()?;
        let mut names = Vec::new();
        for c in rest.components() {
            match c {
                Component::Normal(n) => names.push(n.to_str()?),
                // A path with `..` after the rule's path is not below it.
                _ => return None,
            }
        }
        let rel = names.join("/");
        let last_name = host.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if names.iter().any(|n| is_ephemeral(n)) || is_ephemeral(last_name) {
            return None;
        }
        if !rel.is_empty() {
            if self.ignore.is_excluded(&rel, false) {
                return None;
            }
            if let Some(include) = &self.include {
                // An include pattern names what is watched; a directory
                // named by it takes in everything below, as `ignore` does.
                if !include.is_excluded(&rel, false) {
                    return None;
                }
            }
        }
        if let Some((context, ignore)) = &self.context_ignore {
            if let Ok(in_context) = host.strip_prefix(context) {
                let in_context = in_context.to_str()?;
                if !in_context.is_empty() && ignore.is_excluded(in_context, false) {
                    return None;
                }
            }
        }
        let container = self.target.as_ref().map(|target| {
            if rel.is_empty() {
                target.clone()
            } else if target == "/" {
                format!("/{rel}")
            } else {
                format!("{target}/{rel}")
            }
        });
        Some(Matched { rel, container })
    }

    /// Whether a whole directory below the rule's path can be left unwalked:
    /// it is ignored and nothing below it could be taken back in.
    pub(crate) fn skips_dir(&self, host: &Path) -> bool {
        let Ok(rest) = host.strip_prefix(&self.path) else {
            return true;
        };
        let Some(rel) = rest.to_str() else {
            return true;
        };
        if rel.is_empty() {
            return false;
        }
        if rest
            .components()
            .any(|c| c.as_os_str().to_str().is_some_and(is_ephemeral))
        {
            return true;
        }
        if self.ignore.can_skip_dir(rel) {
            return true;
        }
        if let Some((context, ignore)) = &self.context_ignore {
            if let Some(in_context) = host.strip_prefix(context).ok().and_then(|p| p.to_str()) {
                if !in_context.is_empty() && ignore.can_skip_dir(in_context) {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Action, WatchRule};
    use berth_dockerignore::DockerIgnore;
    use std::path::PathBuf;

    fn rule(ignore: &[&str], include: Option<&[&str]>) -> WatchRule {
        WatchRule {
            service: "app".into(),
            index: 0,
            action: Action::Sync,
            path: PathBuf::from("/src/proj"),
            target: Some("/app".into()),
            ignore: DockerIgnore::from_patterns(ignore).unwrap(),
            include: include.map(|p| DockerIgnore::from_patterns(p).unwrap()),
            exec: None,
            initial_sync: false,
            context_ignore: None,
            bind_mounted: None,
        }
    }

    fn container(r: &WatchRule, host: &str) -> Option<String> {
        r.matches(Path::new(host)).and_then(|m| m.container)
    }

    #[test]
    fn a_path_below_the_rule_maps_under_the_target() {
        let r = rule(&[], None);
        assert_eq!(
            container(&r, "/src/proj/index.js").as_deref(),
            Some("/app/index.js")
        );
        assert_eq!(
            container(&r, "/src/proj/lib/a/b.js").as_deref(),
            Some("/app/lib/a/b.js")
        );
        assert_eq!(container(&r, "/src/proj").as_deref(), Some("/app"));
    }

    #[test]
    fn a_path_outside_the_rule_or_a_sibling_with_a_common_prefix_is_not_matched() {
        let r = rule(&[], None);
        assert_eq!(r.matches(Path::new("/src/project/index.js")), None);
        assert_eq!(r.matches(Path::new("/src/other.js")), None);
        assert_eq!(r.matches(Path::new("/src/proj/../x.js")), None);
    }

    #[test]
    fn ignore_patterns_are_relative_to_the_rule_path_with_dockerignore_semantics() {
        let r = rule(&["node_modules", "*.log", "!keep.log", "**/*.tmp"], None);
        assert_eq!(
            r.matches(Path::new("/src/proj/node_modules/x/index.js")),
            None
        );
        assert_eq!(r.matches(Path::new("/src/proj/debug.log")), None);
        assert!(r.matches(Path::new("/src/proj/keep.log")).is_some());
        assert_eq!(r.matches(Path::new("/src/proj/a/b/c.tmp")), None);
        // `*.log` matches only at the top, as in a .dockerignore.
        assert!(r.matches(Path::new("/src/proj/sub/debug.log")).is_some());
    }

    #[test]
    fn include_takes_in_only_what_it_names() {
        let r = rule(&[], Some(&["src", "*.json"]));
        assert!(r.matches(Path::new("/src/proj/src/main.js")).is_some());
        assert!(r.matches(Path::new("/src/proj/package.json")).is_some());
        assert_eq!(r.matches(Path::new("/src/proj/README.md")), None);
    }

    #[test]
    fn editor_scratch_files_and_git_are_never_matched() {
        let r = rule(&[], None);
        for p in [
            "/src/proj/.index.js.swp",
            "/src/proj/index.js~",
            "/src/proj/4913",
            "/src/proj/.#index.js",
            "/src/proj/#index.js#",
            "/src/proj/.git/HEAD",
            "/src/proj/index.js___jb_tmp___",
        ] {
            assert_eq!(r.matches(Path::new(p)), None, "{p}");
        }
    }

    #[test]
    fn the_build_contexts_dockerignore_applies_too() {
        let mut r = rule(&[], None);
        r.context_ignore = Some((
            PathBuf::from("/src"),
            DockerIgnore::from_patterns(["proj/secret.env"]).unwrap(),
        ));
        assert_eq!(r.matches(Path::new("/src/proj/secret.env")), None);
        assert!(r.matches(Path::new("/src/proj/index.js")).is_some());
    }

    #[test]
    fn a_target_at_the_root_does_not_double_the_slash() {
        let mut r = rule(&[], None);
        r.target = Some("/".into());
        assert_eq!(container(&r, "/src/proj/a.js").as_deref(), Some("/a.js"));
    }

    #[test]
    fn ignored_directories_are_skipped_whole() {
        let r = rule(&["node_modules"], None);
        assert!(r.skips_dir(Path::new("/src/proj/node_modules")));
        assert!(!r.skips_dir(Path::new("/src/proj/lib")));
        assert!(r.skips_dir(Path::new("/src/proj/.git")));
        let r = rule(&["node_modules", "!node_modules/keep"], None);
        assert!(!r.skips_dir(Path::new("/src/proj/node_modules")));
    }
}
