use crate::common::*;
use berth_engine::backend::{
    CopyRequest, HostEnd, PlanFlags, RunOutcome, RunRequest, RuntimeMount,
};
use berth_engine::{Action, Backend};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

/// A runtime directory as berth's runtime store holds one: `bin/NAME`.
fn runtime(dir: &std::path::Path, version: &str) -> RuntimeMount {
    let root = dir.join(version);
    std::fs::create_dir_all(root.join("bin")).unwrap();
    let tool = root.join("bin/runtime-version");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\necho {version} > /tmp/version\nexec sleep 1000\n"),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
    RuntimeMount {
        root,
        digest: format!("sha256:{version}"),
        npm_cache: None,
        ca_bundle: None,
    }
}

/// An `x-runtime` on a local daemon: the runtime is mounted read-only and
/// first on `PATH`; a new runtime recreates the service, and says so.
#[test]
fn an_x_runtime_is_mounted_and_a_new_one_recreates() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "runtime", "unused");
    let dir = tempfile::tempdir().unwrap();
    let p = Project::new(
        "bdk-runtime",
        &format!(
            "services:\n  app:\n    image: {}\n    x-runtime: node@4.2.3\n    command: [\"runtime-version\"]\n    stop_grace_period: 1s\n",
            images["box"]
        ),
    );
    let read_version = |b: &berth_engine_docker::DockerBackend| {
        let out = dir.path().join("version.out");
        let _ = std::fs::remove_file(&out);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let app = b.observe(&p.name).unwrap().unwrap().containers[0].clone();
            let r = b.copy(
                &p.name,
                &CopyRequest {
                    container: app,
                    path: "/tmp/version".into(),
                    host: HostEnd::Path(out.clone()),
                    out: true,
                },
            );
            if r.is_ok() {
                return std::fs::read_to_string(&out).unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "{r:?}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let one = BTreeMap::from([("app".to_string(), runtime(dir.path(), "4.2.2"))]);
    p.up_full(&b, &PlanFlags::default(), &one).unwrap();
    assert_eq!(read_version(&b), "4.2.2\n");
    assert!(p.plan_with(&b, &one).is_noop());

    let two = BTreeMap::from([("app".to_string(), runtime(dir.path(), "4.2.3"))]);
    let plan = p.plan_with(&b, &two);
    assert!(
        matches!(plan.steps[0].action, Action::Recreate { .. }),
        "{plan:#?}"
    );
    assert!(
        plan.steps[0].reason.contains("runtime image changed"),
        "{}",
        plan.steps[0].reason
    );
    p.up_full(&b, &PlanFlags::default(), &two).unwrap();
    assert_eq!(read_version(&b), "4.2.3\n");

    // A one-off gets the runtime its service's containers have.
    let (load, _) = p.load();
    let out = b
        .run(
            &p.name,
            &RunRequest {
                load,
                service: "app".into(),
                command: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    "grep -q 4.2.3 /opt/berth/runtime/bin/runtime-version".into(),
                ]),
                rm: true,
                ..RunRequest::default()
            },
        )
        .unwrap();
    assert_eq!(out, RunOutcome::Exited { code: 0 });
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}
