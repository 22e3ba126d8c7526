use crate::common::*;
use berth_engine::{Action, Backend, Strategy};
use berth_engine_docker::{DockerBackend, Endpoint, KeeperLaunch};

/// On a `tcp://` daemon berth cannot hold the ports (the containers are not
/// reachable from here): Docker publishes them, swaps are stop-first and
/// the plan says why; files berth would bind-mount are refused by name.
#[test]
fn a_remote_daemon_publishes_its_own_ports_and_swaps_stop_first() {
    let relay = TcpRelay::start();
    let b = DockerBackend::connect_to(Endpoint {
        host: format!("tcp://127.0.0.1:{}", relay.port),
        context: None,
    })
    .unwrap()
    .with_port_keeper(KeeperLaunch::Thread);
    assert!(!b.endpoint().is_local());
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "remote", "remote code one");
    let port = free_port();
    let compose = format!(
        r#"services:
  code:
    build: .
    image: {code}
  app:
    image: {app}
    volumes_from: [code]
    ports: ["127.0.0.1:{port}:3000"]
    command: ["httpd", "-f", "-p", "3000", "-h", "/app"]
    stop_grace_period: 1s
"#,
        code = images["code"],
        app = images["box"],
    );
    let p = Project::new("bdk-remote", &compose);
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "remote code one");
    let status = b.observe(&p.name).unwrap().unwrap();
    let app = status.running("app", 1).unwrap();
    assert_eq!(app.pid, None, "a remote container's pid means nothing here");
    assert!(
        app.ports.contains(&format!("127.0.0.1:{port}->3000/tcp")),
        "{:?}",
        app.ports
    );

    images_code(&b, &store, "remote", "remote code two");
    let plan = p.plan(&b);
    let step = plan.steps.iter().find(|s| s.service == "app").unwrap();
    assert!(
        matches!(
            step.action,
            Action::Recreate {
                strategy: Strategy::StopFirst,
                ..
            }
        ),
        "{plan:#?}"
    );
    assert!(
        step.reason
            .contains("is remote, so Docker publishes the ports"),
        "{}",
        step.reason
    );
    p.up(&b).unwrap();
    wait_for_body(port, "/index.html", "remote code two");
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());

    // Secrets are files of this machine: not for a remote daemon.
    let p = Project::new(
        "bdk-remote-secret",
        &format!(
            "services:\n  app:\n    image: {}\n    secrets: [token]\nsecrets:\n  token:\n    environment: PATH\n",
            images["box"]
        ),
    );
    let e = p.up(&b).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "the docker engine does not support services.app.secrets/configs on a remote daemon"
        ),
        "{e}"
    );
}
