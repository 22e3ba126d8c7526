//! A real directory and a real `notify` watcher: edits become debounced
//! batches, and `run` carries them into a tree seen through a root fd.

use berth_watch::root_sync::{open_root, sync_in_root};
use berth_watch::{
    loaded_rules, plan, run, ExecHook, FileWatcher, Progress, SyncFile, TargetError, Timing,
    WatchAction, WatchTarget,
};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn project(dir: &Path, initial_sync: bool) -> Vec<berth_watch::WatchRule> {
    std::fs::write(
        dir.join("compose.yaml"),
        format!(
            "services:\n  app:\n    image: node\n    develop:\n      watch:\n        - action: sync\n          path: .\n          target: /app\n          ignore: [node_modules]\n          initial_sync: {initial_sync}\n"
        ),
    )
    .unwrap();
    let loaded = berth_compose::load(&berth_compose::Options {
        cwd: dir.to_path_buf(),
        ..Default::default()
    })
    .unwrap();
    loaded_rules(&loaded, &[]).unwrap()
}

#[test]
fn an_editors_save_is_one_debounced_sync_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir_all(dir.join("node_modules/dep")).unwrap();
    std::fs::write(dir.join("index.js"), "v1").unwrap();
    let rules = project(&dir, false);
    let mut watcher = FileWatcher::new(&rules, Timing::default()).unwrap();
    let stop = || false;

    // A save the way vim does it: swap file, write a new file, rename it
    // over the old one; plus noise the rule ignores.
    std::fs::write(dir.join(".index.js.swp"), "swap").unwrap();
    std::fs::write(dir.join("index.js.new"), "v2").unwrap();
    std::fs::rename(dir.join("index.js.new"), dir.join("index.js")).unwrap();
    std::fs::write(dir.join("index.js"), "v2 again").unwrap();
    std::fs::write(dir.join("node_modules/dep/x.js"), "dep").unwrap();
    std::fs::remove_file(dir.join(".index.js.swp")).unwrap();
    let saved = Instant::now();

    let batch = watcher
        .next_batch(&stop, Some(saved + Duration::from_secs(10)))
        .unwrap()
        .expect("no batch within 10 s of the save");
    let latency = saved.elapsed();
    println!("batch of {} paths after {latency:?}", batch.len());
    assert!(batch.contains(&dir.join("index.js")), "{batch:?}");
    let actions = plan(&rules, &batch);
    assert_eq!(
        actions,
        [WatchAction::Sync {
            service: "app".into(),
            files: vec![SyncFile {
                host: dir.join("index.js"),
                container: "/app/index.js".into(),
            }],
            deletions: vec![
                // The editor's temporary name existed and is gone.
                "/app/index.js.new".into()
            ],
        }]
    );
    // The whole burst was one batch: nothing follows it.
    let more = watcher
        .next_batch(&stop, Some(Instant::now() + Duration::from_millis(600)))
        .unwrap();
    assert_eq!(more, None, "a second batch for the same save");
}

/// A target that syncs into a directory standing for a container's root
/// and records the rest.
struct DirTarget {
    root: std::fs::File,
    calls: Vec<String>,
}

impl WatchTarget for DirTarget {
    fn sync(
        &mut self,
        service: &str,
        files: &[SyncFile],
        deletions: &[String],
    ) -> Result<(), TargetError> {
        self.calls.push(format!(
            "sync {service} {} {}",
            files.len(),
            deletions.len()
        ));
        Ok(sync_in_root(&self.root, files, deletions)?)
    }
    fn rebuild(&mut self, service: &str) -> Result<(), TargetError> {
        self.calls.push(format!("rebuild {service}"));
        Ok(())
    }
    fn restart(&mut self, service: &str) -> Result<(), TargetError> {
        self.calls.push(format!("restart {service}"));
        Ok(())
    }
    fn exec(&mut self, service: &str, hook: &ExecHook) -> Result<(), TargetError> {
        self.calls
            .push(format!("exec {service} {:?}", hook.command));
        Ok(())
    }
}

#[test]
fn run_syncs_the_tree_first_then_each_edit_and_deletion() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    let container = tmp.path().join("root");
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::create_dir_all(dir.join("node_modules")).unwrap();
    std::fs::create_dir_all(&container).unwrap();
    std::fs::write(dir.join("index.js"), "v1").unwrap();
    std::fs::write(dir.join("lib/util.js"), "util").unwrap();
    std::fs::write(dir.join("node_modules/big.js"), "big").unwrap();
    let rules = project(&dir, true);

    let stop = Arc::new(AtomicBool::new(false));
    let watching = Arc::new(AtomicBool::new(false));
    let (stop2, watching2, rules2) = (stop.clone(), watching.clone(), rules.clone());
    let root = open_root(&container).unwrap();
    let thread = std::thread::spawn(move || {
        let mut target = DirTarget {
            root,
            calls: Vec::new(),
        };
        let mut errors = Vec::new();
        run(
            &rules2,
            &mut target,
            Timing::default(),
            &|| stop2.load(Ordering::SeqCst),
            |p| match p {
                Progress::Watching { .. } => watching2.store(true, Ordering::SeqCst),
                Progress::Done(o) => {
                    if let Err(e) = &o.result {
                        errors.push(e.to_string());
                    }
                }
                _ => {}
            },
        )
        .unwrap();
        (target.calls, errors)
    });
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    wait("the initial sync", &|| watching.load(Ordering::SeqCst));
    let app = container.join("app");
    assert!(app.join("compose.yaml").exists());
    assert_eq!(std::fs::read_to_string(app.join("index.js")).unwrap(), "v1");
    assert_eq!(
        std::fs::read_to_string(app.join("lib/util.js")).unwrap(),
        "util"
    );
    assert!(
        !app.join("node_modules").exists(),
        "an ignored directory was synced"
    );

    let edited = Instant::now();
    std::fs::write(dir.join("index.js"), "v2").unwrap();
    wait("the edit in the container", &|| {
        std::fs::read_to_string(app.join("index.js")).is_ok_and(|s| s == "v2")
    });
    println!("edit reached the container after {:?}", edited.elapsed());

    std::fs::remove_dir_all(dir.join("lib")).unwrap();
    wait("the deletion", &|| !app.join("lib").exists());

    stop.store(true, Ordering::SeqCst);
    let (calls, errors) = thread.join().unwrap();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(calls, ["sync app 3 0", "sync app 1 0", "sync app 0 1"]);
}

#[test]
fn a_rule_path_that_does_not_exist_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rules = project(tmp.path(), false);
    rules[0].path = tmp.path().join("missing");
    let err = FileWatcher::new(&rules, Timing::default())
        .err()
        .expect("watching a missing path");
    assert_eq!(
        err.to_string(),
        format!(
            "services.app.develop.watch[0].path: {} does not exist",
            tmp.path().join("missing").display()
        )
    );
}
