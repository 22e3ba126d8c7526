//! A batch of changed host paths into what to do, per service.

use crate::rules::{Action, ExecHook, WatchRule};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One host file (or symlink) to copy to a path in the container.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncFile {
    pub host: PathBuf,
    pub container: String,
}

/// What a batch of changes calls for, in the order to do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchAction {
    /// Copy `files` in (replacing what is there) and remove `deletions`
    /// (files or whole directories), all in the service's container.
    Sync {
        service: String,
        files: Vec<SyncFile>,
        deletions: Vec<String>,
    },
    /// Build the service's image again and recreate its container.
    Rebuild {
        service: String,
    },
    Restart {
        service: String,
    },
    Exec {
        service: String,
        exec: ExecHook,
    },
}

impl WatchAction {
    pub fn service(&self) -> &str {
        match self {
            WatchAction::Sync { service, .. }
            | WatchAction::Rebuild { service }
            | WatchAction::Restart { service }
            | WatchAction::Exec { service, .. } => service,
        }
    }
}

/// What one service needs from a batch, gathered over its rules.
#[derive(Default)]
struct ServiceWork {
    rebuild: bool,
    restart: bool,
    /// Container path → host path; a later rule wins for the same path.
    files: BTreeMap<String, PathBuf>,
    deletions: BTreeMap<String, ()>,
    execs: Vec<ExecHook>,
    touched: bool,
}

/// The actions for a batch of changed host paths (absolute). A rebuild
/// makes the service's syncs, restarts and execs moot (its new container
/// starts from the new image); otherwise a service gets one `Sync` for all
/// its syncing rules, then one `Restart` if any rule asks for it, then the
/// `Exec` of each `sync+exec` rule that saw a change.
pub fn plan(rules: &[WatchRule], changed: &[PathBuf]) -> Vec<WatchAction> {
    let mut order: Vec<String> = Vec::new();
    let mut work: BTreeMap<String, ServiceWork> = BTreeMap::new();
    for rule in rules {
        let hits: Vec<(PathBuf, Option<String>)> = changed
            .iter()
            .filter_map(|p| rule.matches(p).map(|m| (p.clone(), m.container)))
            .collect();
        if hits.is_empty() {
            continue;
        }
        if !order.contains(&rule.service) {
            order.push(rule.service.clone());
        }
        let w = work.entry(rule.service.clone()).or_default();
        w.touched = true;
        match rule.action {
            Action::Rebuild => w.rebuild = true,
            Action::Restart => w.restart = true,
            Action::Sync | Action::SyncRestart | Action::SyncExec => {
                for (host, container) in hits {
                    let Some(container) = container else { continue };
                    gather(rule, &host, &container, w);
                }
                match rule.action {
                    Action::SyncRestart => w.restart = true,
                    Action::SyncExec => {
                        if let Some(exec) = &rule.exec {
                            if !w.execs.contains(exec) {
                                w.execs.push(exec.clone());
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut actions = Vec::new();
    for service in order {
        let Some(w) = work.remove(&service) else {
            continue;
        };
        if !w.touched {
            continue;
        }
        if w.rebuild {
            actions.push(WatchAction::Rebuild { service });
            continue;
        }
        if !w.files.is_empty() || !w.deletions.is_empty() {
            actions.push(WatchAction::Sync {
                service: service.clone(),
                files: w
                    .files
                    .into_iter()
                    .map(|(container, host)| SyncFile { host, container })
                    .collect(),
                deletions: outermost(w.deletions.into_keys()),
            });
        }
        if w.restart {
            actions.push(WatchAction::Restart {
                service: service.clone(),
            });
        }
        for exec in w.execs {
            actions.push(WatchAction::Exec {
                service: service.clone(),
                exec,
            });
        }
    }
    actions
}

/// Deleted paths without those below another deleted path: removing a
/// directory removes what it held. `sorted` puts a parent right before its
/// children (`/a` < `/a/b` < `/a0`).
fn outermost(sorted: impl Iterator<Item = String>) -> Vec<String> {
    let mut kept: Vec<String> = Vec::new();
    for path in sorted {
        let below_kept = kept.iter().any(|k| {
            path.strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with('/') || k == "/")
        });
        if !below_kept {
            kept.push(path);
        }
    }
    kept
}

/// The `Sync` of every rule with `initial_sync: true`: everything under
/// its path that it does not ignore, before any change is waited for.
pub fn initial_sync(rules: &[WatchRule]) -> Vec<WatchAction> {
    let initial: Vec<WatchRule> = rules
        .iter()
        .filter(|r| r.initial_sync && r.action.syncs())
        .map(|r| {
            let mut r = r.clone();
            // Only the copy: restarts and execs are for changes.
            r.action = Action::Sync;
            r
        })
        .collect();
    let roots: Vec<PathBuf> = initial.iter().map(|r| r.path.clone()).collect();
    plan(&initial, &roots)
        .into_iter()
        .map(|a| match a {
            // Nothing was deleted: a missing root is simply not there yet.
            WatchAction::Sync {
                service,
                files,
                deletions: _,
            } => WatchAction::Sync {
                service,
                files,
                deletions: Vec::new(),
            },
            other => other,
        })
        .filter(|a| !matches!(a, WatchAction::Sync { files, .. } if files.is_empty()))
        .collect()
}

/// Add what is at `host` now: a file or symlink to copy, a directory's
/// files (walked, minus what the rule ignores), or a deletion when it is
/// gone. Symlinks are copied as links, never followed, as `docker cp` does.
fn gather(rule: &WatchRule, host: &Path, container: &str, w: &mut ServiceWork) {
    match std::fs::symlink_metadata(host) {
        Err(_) => {
            w.files.remove(container);
            w.deletions.insert(container.to_string(), ());
        }
        Ok(meta) if meta.is_dir() => walk(rule, host, w),
        Ok(_) => {
            w.deletions.remove(container);
            w.files.insert(container.to_string(), host.to_path_buf());
        }
    }
}

fn walk(rule: &WatchRule, dir: &Path, w: &mut ServiceWork) {
    if rule.skips_dir(dir) {
        return;
    }
    // A directory that vanished or cannot be read mid-walk has nothing to
    // copy now; its own deletion event follows if it is gone.
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            walk(rule, &path, w);
        } else if let Some(container) = rule.matches(&path).and_then(|m| m.container) {
            w.deletions.remove(&container);
            w.files.insert(container, path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_dockerignore::DockerIgnore;

    fn rule(service: &str, action: Action, path: &Path, ignore: &[&str]) -> WatchRule {
        WatchRule {
            service: service.into(),
            index: 0,
            action,
            path: path.to_path_buf(),
            target: action.syncs().then(|| "/app".to_string()),
            ignore: DockerIgnore::from_patterns(ignore).unwrap(),
            include: None,
            exec: (action == Action::SyncExec).then(|| ExecHook {
                command: vec!["touch".into(), "/tmp/synced".into()],
                user: None,
                privileged: false,
                working_dir: None,
                environment: Vec::new(),
            }),
            initial_sync: false,
            context_ignore: None,
            bind_mounted: None,
        }
    }

    #[test]
    fn an_edit_and_a_deletion_become_one_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("index.js"), "v2").unwrap();
        let rules = [rule("app", Action::Sync, root, &[])];
        let actions = plan(&rules, &[root.join("index.js"), root.join("gone.js")]);
        assert_eq!(
            actions,
            [WatchAction::Sync {
                service: "app".into(),
                files: vec![SyncFile {
                    host: root.join("index.js"),
                    container: "/app/index.js".into()
                }],
                deletions: vec!["/app/gone.js".into()],
            }]
        );
    }

    #[test]
    fn a_new_directory_is_synced_file_by_file_without_its_ignored_parts() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("lib/node_modules/x")).unwrap();
        std::fs::write(root.join("lib/a.js"), "a").unwrap();
        std::fs::write(root.join("lib/node_modules/x/i.js"), "x").unwrap();
        std::fs::write(root.join("lib/.a.js.swp"), "swap").unwrap();
        let rules = [rule("app", Action::Sync, root, &["**/node_modules"])];
        let actions = plan(&rules, &[root.join("lib")]);
        let WatchAction::Sync { files, .. } = &actions[0] else {
            panic!("{actions:?}")
        };
        let targets: Vec<&str> = files.iter().map(|f| f.container.as_str()).collect();
        assert_eq!(targets, ["/app/lib/a.js"]);
    }

    #[test]
    fn rebuild_wins_over_sync_and_restart_for_the_same_service() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::write(root.join("package.json"), "{}").unwrap();
        std::fs::write(root.join("index.js"), "").unwrap();
        let mut rebuild = rule("app", Action::Rebuild, root, &[]);
        rebuild.path = root.join("package.json");
        let rules = [rule("app", Action::SyncRestart, root, &[]), rebuild];
        let actions = plan(&rules, &[root.join("package.json"), root.join("index.js")]);
        assert_eq!(
            actions,
            [WatchAction::Rebuild {
                service: "app".into()
            }]
        );
        // Without the package.json change: sync, then restart.
        let actions = plan(&rules, &[root.join("index.js")]);
        assert!(matches!(
            &actions[..],
            [WatchAction::Sync { .. }, WatchAction::Restart { .. }]
        ));
    }

    #[test]
    fn sync_exec_runs_its_command_after_the_sync_and_other_services_are_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("web")).unwrap();
        std::fs::write(root.join("web/x.css"), "").unwrap();
        let rules = [
            rule("app", Action::Sync, &root.join("api"), &[]),
            rule("web", Action::SyncExec, &root.join("web"), &[]),
        ];
        let actions = plan(&rules, &[root.join("web/x.css")]);
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(matches!(&actions[0], WatchAction::Sync { service, .. } if service == "web"));
        assert!(
            matches!(&actions[1], WatchAction::Exec { service, exec } if service == "web" && exec.command[0] == "touch")
        );
    }

    #[test]
    fn a_deleted_directory_is_one_deletion_not_one_per_file() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let rules = [rule("app", Action::Sync, root, &[])];
        let gone = [
            root.join("lib"),
            root.join("lib/a.js"),
            root.join("lib/sub/b.js"),
            root.join("lib0.js"),
        ];
        let actions = plan(&rules, &gone);
        let [WatchAction::Sync {
            deletions, files, ..
        }] = &actions[..]
        else {
            panic!("{actions:?}")
        };
        assert!(files.is_empty());
        assert_eq!(deletions, &["/app/lib", "/app/lib0.js"]);
    }

    #[test]
    fn nothing_matched_is_nothing_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let rules = [rule("app", Action::Sync, tmp.path(), &["*.md"])];
        assert_eq!(plan(&rules, &[tmp.path().join("README.md")]), []);
        assert_eq!(plan(&rules, &[PathBuf::from("/elsewhere/a.js")]), []);
    }

    #[test]
    fn initial_sync_copies_the_whole_tree_of_rules_that_ask_for_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir(root.join("src")).unwrap();
        std::fs::write(root.join("src/a.js"), "").unwrap();
        std::fs::write(root.join("b.js"), "").unwrap();
        let mut with = rule("app", Action::SyncRestart, root, &[]);
        with.initial_sync = true;
        let without = rule("web", Action::Sync, root, &[]);
        let actions = initial_sync(&[with, without]);
        let [WatchAction::Sync { service, files, .. }] = &actions[..] else {
            panic!("{actions:?}")
        };
        assert_eq!(service, "app");
        let targets: Vec<&str> = files.iter().map(|f| f.container.as_str()).collect();
        assert_eq!(targets, ["/app/b.js", "/app/src/a.js"]);
    }
}
