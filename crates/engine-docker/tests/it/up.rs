use crate::common::*;
use berth_engine::{Action, Backend, Status};
use std::collections::HashMap;

fn seed_file(images: &HashMap<&str, String>, app_image: &str, port: u16) -> String {
    format!(
        r#"services:
  code:
    build: .
    image: {code}
  app:
    image: {app_image}
    volumes_from:
      - code
    ports:
      - "{port}:3000"
    working_dir: /app
    # busybox httpd as PID 1 ignores SIGTERM: do not wait 10 s for it.
    stop_grace_period: 1s
    command: ["/bin/busybox", "httpd", "-f", "-p", "3000", "-h", "/app"]
"#,
        code = images["code"],
    )
}

/// The seed's shape: a code-only image whose `/app` volume an HTTP server
/// mounts through `volumes_from`; the server's image comes from a registry.
#[test]
fn seed_like_project_serves_is_listed_by_docker_compose_and_goes_down_clean() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "seed", "I am the seed's code v1");

    // The app image reaches the daemon through a registry pull.
    let registry = Registry::start();
    let remote = format!("127.0.0.1:{}/berth-test/httpd:1", registry.port);
    make_image(
        &store,
        &remote,
        &[],
        serde_json::json!({"Env": ["PATH=/bin"]}),
    );
    b.import_image(&store, &remote, &|_| {}).unwrap();
    let status = std::process::Command::new("docker")
        .args(["push", &remote])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    std::process::Command::new("docker")
        .args(["rmi", &remote])
        .output()
        .unwrap();
    assert!(!b.has_image(&remote).unwrap());
    b.pull_image(&remote, &|_| {}).unwrap();
    assert!(b.has_image(&remote).unwrap());

    let port = free_port();
    let p = Project::new("bdk-seed", &seed_file(&images, &remote, port));
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "I am the seed's code v1");

    let status = b.observe(&p.name).unwrap().expect("observed");
    let names: Vec<&str> = status.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["bdk-seed-app-1", "bdk-seed-code-1"]);
    let app = status.running("app", 1).expect("app runs");
    // Docker binds IPv6 too on a dual-stack host.
    assert!(
        app.ports.contains(&format!("0.0.0.0:{port}->3000/tcp")),
        "{:?}",
        app.ports
    );
    let code = status
        .containers
        .iter()
        .find(|c| c.service == "code")
        .unwrap();
    assert_eq!((code.status, code.exit_code), (Status::Exited, Some(0)));

    // docker-compose 1.29.2 recognises the project from the labels.
    let (ok, out) = docker_compose(&p.dir, &["ps"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("bdk-seed-app-1") && out.contains("bdk-seed-code-1"),
        "{out}"
    );
    assert!(out.contains("Up"), "{out}");

    // A second up changes nothing.
    assert!(p.plan(&b).is_noop(), "{:?}", p.plan(&b));

    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
    assert!(b.observe(&p.name).unwrap().is_none());
}

/// New code (a new image digest for the code service) gets a fresh `/app`
/// volume, and its `volumes_from` consumer is replaced so it serves it:
/// docker-compose keeps serving the old code here.
#[test]
fn new_code_gets_a_fresh_volume_and_its_consumer_serves_it() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let v1 = images(&b, &store, "code", "code version one");
    let port = free_port();
    let p = Project::new("bdk-code", &seed_file(&v1, &v1["box"], port));
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "code version one");
    let before = b.observe(&p.name).unwrap().unwrap();
    let old_volume = code_volume(&p.name);

    // The same tag, new content: what `up --build` leaves in the daemon.
    let v2 = images(&b, &store, "code", "code version two");
    assert_eq!(v1, v2);
    let plan = p.plan(&b);
    let recreated: Vec<(&str, bool)> = plan
        .steps
        .iter()
        .filter_map(|s| match &s.action {
            Action::Recreate {
                renew_anonymous_volumes,
                ..
            } => Some((s.service.as_str(), *renew_anonymous_volumes)),
            _ => None,
        })
        .collect();
    assert_eq!(recreated, [("code", true), ("app", false)], "{plan:#?}");
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "code version two");
    let after = b.observe(&p.name).unwrap().unwrap();
    let id = |s: &berth_engine::ProjectStatus, svc: &str| {
        s.containers
            .iter()
            .find(|c| c.service == svc)
            .unwrap()
            .id
            .clone()
    };
    assert_ne!(id(&before, "app"), id(&after, "app"));
    assert!(p.plan(&b).is_noop());
    // The old code volume went with its container; the new one is another.
    let new_volume = code_volume(&p.name);
    assert_ne!(old_volume, new_volume);
    let gone = std::process::Command::new("docker")
        .args(["volume", "inspect", &old_volume])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "{old_volume} is still there");
    assert!(p.down(&b));
    let gone = std::process::Command::new("docker")
        .args(["volume", "inspect", &new_volume])
        .output()
        .unwrap();
    assert!(!gone.status.success(), "{new_volume} outlived down");
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

/// A project docker-compose 1.29.2 started is observed through its labels
/// and converged: its config hash is not berth's, so it is recreated (the
/// plan says why), and the next plan is a no-op.
#[test]
fn a_project_started_by_docker_compose_is_observed_and_converged() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "dc", "unused");
    let p = Project::new(
        "bdk-adopt",
        &format!(
            "services:\n  web:\n    image: {}\n    command: [\"sleep\", \"1000\"]\n",
            images["box"]
        ),
    );
    let (ok, out) = docker_compose(&p.dir, &["up", "-d"]);
    assert!(ok, "{out}");
    let status = b.observe(&p.name).unwrap().expect("observed");
    assert_eq!(status.containers.len(), 1);
    let web = &status.containers[0];
    assert_eq!(
        (web.service.as_str(), web.number, web.status),
        ("web", 1, Status::Running)
    );
    assert_eq!(status.observed[0].service, "web");

    let plan = p.plan(&b);
    assert_eq!(plan.steps.len(), 1, "{plan:#?}");
    assert!(
        matches!(plan.steps[0].action, Action::Recreate { .. }),
        "{plan:#?}"
    );
    assert!(
        plan.steps[0].reason.contains("configuration changed"),
        "{}",
        plan.steps[0].reason
    );
    p.up(&b).unwrap();
    assert!(p.plan(&b).is_noop(), "{:#?}", p.plan(&b));
    let status = b.observe(&p.name).unwrap().unwrap();
    assert_eq!(status.containers.len(), 1);
    assert_eq!(status.containers[0].status, Status::Running);
    // docker-compose still sees it as its own.
    let (ok, out) = docker_compose(&p.dir, &["ps"]);
    assert!(ok && out.contains("web"), "{out}");
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}

#[test]
fn what_the_docker_engine_cannot_honour_is_refused_by_key_path() {
    let b = backend();
    // Docker 20.10's API has no container annotations; the container-level
    // MAC address is gone from the API berth speaks.
    for (key, value) in [
        ("mac_address", "\"02:42:ac:11:00:02\""),
        ("annotations", "{a: b}"),
    ] {
        let p = Project::new(
            "bdk-refuse",
            &format!("services:\n  app:\n    image: busybox\n    {key}: {value}\n"),
        );
        let e = p.up(&b).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("services.app.{key}: the docker engine does not support {key}")
        );
        assert!(b.observe(&p.name).unwrap().is_none());
    }
}
