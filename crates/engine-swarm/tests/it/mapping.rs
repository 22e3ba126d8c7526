//! Compose keys on swarm: secrets and configs, named volumes, x-runtime.

use super::{docker, node_addr, runtime_image, store, Cluster, Project};
use berth_engine::Backend;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One GET of `path` on a node's published port: the body of a 200.
fn fetch(addr: &str, port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &format!("{addr}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let buf = buf.replace("\r\n", "\n");
    (buf.split_whitespace().nth(1)? == "200")
        .then(|| buf.split_once("\n\n").map(|(_, b)| b.trim().to_string()))
        .flatten()
}

/// Until node1 serves `want` at `path`.
fn wait_for(port: u16, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let addr = node_addr(1);
    while fetch(&addr, port, path).as_deref() != Some(want) {
        assert!(
            Instant::now() < deadline,
            "{path} never served {want:?}: {:?}",
            fetch(&addr, port, path)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `NAME` of every secret (or config) carrying the project's stack label.
fn stack_objects(kind: &str, project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={project}");
    let mut names: Vec<String> = docker(
        1,
        &[kind, "ls", "--filter", &filter, "--format", "{{.Name}}"],
    )
    .lines()
    .map(str::to_string)
    .collect();
    names.sort();
    names
}

fn down_and_gone(p: &Project, b: &berth_engine_swarm::SwarmBackend) {
    assert!(p.down(b));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !p.leftovers().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left after down: {:?}",
            p.leftovers()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Secrets and configs reach the tasks as swarm secrets and configs named
/// by their content: a task serves them (short and long syntax, `file:`,
/// `environment:`, `content:`, an external secret by name); a changed
/// secret file rolls the service onto a new secret, the old one is removed
/// after the roll; `down` leaves no secret or config (and the external one
/// untouched).
#[test]
fn secrets_and_configs_reach_the_tasks_and_a_change_rolls_onto_new_ones() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let rt = runtime_image(&store(), "4.2.2");
    let name = format!("swsecret{}", std::process::id());
    let port = 40000 + (std::process::id() % 5000) as u16;
    let external = format!("{name}-shared");
    let ext_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ext_file.path(), "from outside").unwrap();
    docker(
        1,
        &[
            "secret",
            "create",
            &external,
            &ext_file.path().to_string_lossy(),
        ],
    );
    std::env::set_var("BERTH_SWARM_TEST_TOKEN", "t0ken");
    let p = Project::new(
        &name,
        &format!(
            "services:\n  web:\n    image: {rt}\n    command: [httpd, -f, -p, \"3000\", -h, /www]\n    ports: [\"{port}:3000\"]\n    stop_grace_period: 1s\n    deploy: {{replicas: 2}}\n    secrets:\n      - source: db\n        target: /www/db.txt\n        mode: 0400\n      - {{source: token, target: /www/token.txt}}\n      - {{source: shared, target: /www/shared.txt}}\n      - db\n    configs:\n      - {{source: site, target: /www/site.txt, mode: 0444}}\nsecrets:\n  db: {{file: ./db.txt}}\n  token: {{environment: BERTH_SWARM_TEST_TOKEN}}\n  shared: {{external: true, name: {external}}}\nconfigs:\n  site: {{content: 'site config'}}\n"
        ),
    );
    std::fs::write(p.dir.join("db.txt"), "password one").unwrap();
    p.up(&b);
    wait_for(port, "/db.txt", "password one");
    let addr = node_addr(1);
    assert_eq!(fetch(&addr, port, "/token.txt").as_deref(), Some("t0ken"));
    assert_eq!(
        fetch(&addr, port, "/shared.txt").as_deref(),
        Some("from outside")
    );
    assert_eq!(
        fetch(&addr, port, "/site.txt").as_deref(),
        Some("site config")
    );
    let secrets = stack_objects("secret", &name);
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert!(
        secrets
            .iter()
            .any(|s| s.starts_with(&format!("{name}_db-"))),
        "{secrets:?}"
    );
    assert_eq!(stack_objects("config", &name).len(), 1);
    // The short syntax's default target, with its owner and mode.
    let task = docker(
        1,
        &[
            "service",
            "inspect",
            "-f",
            "{{json .Spec.TaskTemplate.ContainerSpec.Secrets}}",
            &format!("{name}_web"),
        ],
    );
    assert!(task.contains("\"/run/secrets/db\""), "{task}");
    assert!(task.contains("\"Mode\":256"), "{task}");
    assert!(p
        .plan(&b)
        .steps
        .iter()
        .all(|s| matches!(s.action, berth_engine::Action::Nothing { .. })));

    // New content: a new secret, the service rolls onto it, the old one goes.
    let old_db = secrets
        .iter()
        .find(|s| s.starts_with(&format!("{name}_db-")))
        .unwrap()
        .clone();
    std::fs::write(p.dir.join("db.txt"), "password two").unwrap();
    let plan = p.plan(&b);
    let web = plan.steps.iter().find(|s| s.service == "web").unwrap();
    assert!(
        matches!(web.action, berth_engine::Action::Recreate { .. }),
        "{plan}"
    );
    assert!(web.reason.contains("secrets.db changed"), "{plan}");
    let lines = p.up(&b);
    assert!(
        lines
            .iter()
            .any(|l| l == &format!("Secret {old_db} Removed")),
        "{lines:?}"
    );
    wait_for(port, "/db.txt", "password two");
    let secrets = stack_objects("secret", &name);
    assert_eq!(secrets.len(), 2, "{secrets:?}");
    assert!(!secrets.contains(&old_db), "{secrets:?}");

    down_and_gone(&p, &b);
    assert!(stack_objects("secret", &name).is_empty());
    assert!(stack_objects("config", &name).is_empty());
    // The external secret is the swarm's, not the project's.
    assert!(docker(1, &["secret", "ls", "--format", "{{.Name}}"])
        .lines()
        .any(|l| l == external));
    docker(1, &["secret", "rm", &external]);
}

/// What swarm cannot do with a secret is refused by its key path before
/// anything is made; a missing external secret is named.
#[test]
fn a_secret_swarm_cannot_make_is_refused_by_path() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let name = format!("swsecretno{}", std::process::id());
    let p = Project::new(
        &name,
        "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {file: ./s.txt, driver: vault}\n",
    );
    std::fs::write(p.dir.join("s.txt"), "x").unwrap();
    let (load, loaded) = p.load();
    let (images, runtimes, flags) = Default::default();
    let req = berth_engine::backend::UpRequest {
        load: &load,
        loaded: &loaded,
        images: &images,
        runtimes: &runtimes,
        flags: &flags,
    };
    let err = b.plan(&req).unwrap_err();
    assert_eq!(
        err.message,
        "secrets.s.driver: the swarm engine does not support driver"
    );
    assert!(p.leftovers().is_empty());

    let p = Project::new(
        &name,
        "services:\n  a:\n    image: x\n    secrets: [s]\nsecrets:\n  s: {external: true, name: berth-no-such-secret}\n",
    );
    let (load, loaded) = p.load();
    let req = berth_engine::backend::UpRequest {
        load: &load,
        loaded: &loaded,
        images: &images,
        runtimes: &runtimes,
        flags: &flags,
    };
    let err = b.up(&req, &|_| {}).unwrap_err();
    assert_eq!(
        err.message,
        "secrets.s: external secret berth-no-such-secret does not exist on the swarm"
    );
    assert!(p.leftovers().is_empty());
}
