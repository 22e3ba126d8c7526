//! Compose keys on swarm: secrets and configs, named volumes, x-runtime.

use super::{
    deployed_layers, docker, layer, make_image, node_addr, runtime_image, store, uploaded, Cluster,
    Project,
};
use berth_engine::backend::{DownOptions, PlanFlags, RuntimeMount, UpRequest};
use berth_engine::Backend;
use berth_oci::Digest;
use serde_json::json;
use std::collections::BTreeMap;
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

    p.down_and_gone(&b);
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

/// `up` with service → runtime given, as the CLI resolves `x-runtime`.
fn up_with(
    p: &Project,
    b: &berth_engine_swarm::SwarmBackend,
    runtimes: &BTreeMap<String, RuntimeMount>,
) -> (berth_engine::Plan, Vec<String>) {
    let (load, loaded) = p.load();
    let (images, flags) = (BTreeMap::new(), PlanFlags::default());
    let req = UpRequest {
        load: &load,
        loaded: &loaded,
        images: &images,
        runtimes,
        flags: &flags,
    };
    let plan = b.plan(&req).expect("plan");
    let lines = std::sync::Mutex::new(Vec::new());
    b.up(&req, &|l| {
        eprintln!("{l}");
        lines.lock().unwrap().push(l.to_string());
    })
    .expect("up");
    (plan, lines.into_inner().unwrap())
}

/// A runtime as berth's runtime store unpacks one: `bin/node` printing its
/// version, `bin/npm` a relative symlink into `lib`.
fn runtime_dir(version: &str) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bin")).unwrap();
    std::fs::create_dir_all(dir.path().join("lib")).unwrap();
    for (path, text) in [
        ("bin/node", format!("#!/bin/sh\necho v{version}\n")),
        ("lib/npm-cli", "#!/bin/sh\necho npm\n".to_string()),
    ] {
        let p = dir.path().join(path);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::os::unix::fs::symlink("../lib/npm-cli", dir.path().join("bin/npm")).unwrap();
    dir
}

/// An `x-runtime` on swarm: the runtime directory rides on the base image
/// as its own layer (the CA bundle as another, trusted through
/// NODE_EXTRA_CA_CERTS), under the code's layer: the tasks run the
/// runtime's `node` from PATH; a runtime bump ships only the new runtime
/// layer (the plan says the runtime changed) and the code layer is the
/// same; a code change ships only the code layer and the runtime layer's
/// digest is unchanged.
#[test]
fn an_x_runtime_rides_as_its_own_layer_and_each_change_ships_only_its_layer() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let store = store();
    let name = format!("swxrt{}", std::process::id());
    let port = 45000 + (std::process::id() % 5000) as u16;
    let base = runtime_image(&store, "base");
    let cgi = b"#!/bin/sh\necho 'Content-Type: text/plain'\necho\necho \"$(node) $(npm) ca=$(cat $NODE_EXTRA_CA_CERTS) $(cat /app/code.txt)\"\n";
    let code = |n: u32, text: &str| {
        let reference = format!("berth-test/swarm-xrt-code:{name}-{n}");
        make_image(
            &store,
            &reference,
            &layer(
                false,
                &[
                    ("app/code.txt", 0o644, text.as_bytes()),
                    ("app/cgi-bin/v", 0o755, cgi),
                ],
            ),
            json!({"Volumes": {"/app": {}}}),
        );
        reference
    };
    let compose = |version: &str, code: &str| {
        format!(
            "services:\n  code:\n    image: {code}\n  app:\n    image: {base}\n    x-runtime: node@{version}\n    volumes_from: [code]\n    ports: [\"{port}:3000\"]\n    command: [httpd, -f, -p, \"3000\", -h, /app]\n    stop_grace_period: 1s\n    deploy: {{replicas: 2}}\n"
        )
    };
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), "TEST-CA").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let (rt1, rt2) = (runtime_dir("4.2.2"), runtime_dir("4.2.3"));
    let mount = |dir: &tempfile::TempDir, version: &str| {
        BTreeMap::from([(
            "app".to_string(),
            RuntimeMount {
                root: dir.path().to_path_buf(),
                digest: format!("sha256:{}", Digest::of(version.as_bytes()).hex()),
                npm_cache: Some(cache.path().to_path_buf()),
                ca_bundle: Some(ca.path().to_path_buf()),
            },
        )])
    };
    let code1 = code(1, "code one");
    let p = Project::new(&name, &compose("4.2.2", &code1));
    let (plan, _) = up_with(&p, &b, &mount(&rt1, "4.2.2"));
    // The shared npm cache is this machine's: the plan says it is not used.
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("services.app.x-runtime's shared npm cache")),
        "{plan}"
    );
    wait_for(port, "/cgi-bin/v", "v4.2.2 npm ca=TEST-CA code one");
    let first = deployed_layers(&name, "app");
    assert_eq!(
        first.len(),
        5,
        "base, runtime, CA bundle, code, readiness probe: {first:?}"
    );

    // A runtime bump: the runtime layer and a config go over the wire.
    std::fs::write(p.dir.join("docker-compose.yml"), compose("4.2.3", &code1)).unwrap();
    let (plan, lines) = up_with(&p, &b, &mount(&rt2, "4.2.3"));
    let step = plan.steps.iter().find(|s| s.service == "app").unwrap();
    assert!(step.reason.contains("runtime changed"), "{plan}");
    assert!(
        uploaded(&lines)[0].contains("(2 blobs uploaded"),
        "{lines:?}"
    );
    wait_for(port, "/cgi-bin/v", "v4.2.3 npm ca=TEST-CA code one");
    let second = deployed_layers(&name, "app");
    assert_eq!(second[0], first[0]);
    assert_ne!(second[1], first[1], "a new runtime layer");
    assert_eq!(
        second[2..],
        first[2..],
        "CA bundle and code layers unchanged"
    );

    // A code change: the runtime layer is the same digest, not shipped.
    let code2 = code(2, "code two");
    std::fs::write(p.dir.join("docker-compose.yml"), compose("4.2.3", &code2)).unwrap();
    let (plan, lines) = up_with(&p, &b, &mount(&rt2, "4.2.3"));
    let step = plan.steps.iter().find(|s| s.service == "app").unwrap();
    assert!(
        step.reason.contains("code image of code changed") && !step.reason.contains("runtime"),
        "{plan}"
    );
    assert!(
        uploaded(&lines)[0].contains("(2 blobs uploaded"),
        "{lines:?}"
    );
    wait_for(port, "/cgi-bin/v", "v4.2.3 npm ca=TEST-CA code two");
    let third = deployed_layers(&name, "app");
    assert_eq!(third[..3], second[..3], "the runtime layer is unchanged");
    assert_ne!(third[3], second[3]);

    p.down_and_gone(&b);
}

/// `NAME` of the project's volumes on node `n`.
fn node_volumes(n: u32, project: &str) -> Vec<String> {
    let filter = format!("label=com.docker.stack.namespace={project}");
    let mut v: Vec<String> = docker(n, &["volume", "ls", "-q", "--filter", &filter])
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// Named volumes on swarm: the plan says their data is per node; a task
/// pinned to the manager's node writes to its volume, and the task that
/// replaces it on an update finds what the old one wrote; the volume's
/// driver options and labels reach every node's daemon; `down -v` removes
/// the volumes on every node, the others' through their own Engines.
#[test]
fn a_named_volume_keeps_its_data_across_an_update_on_its_node() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let base = runtime_image(&store(), "base");
    let name = format!("swvol{}", std::process::id());
    let port = 50000 + (std::process::id() % 5000) as u16;
    let compose = |v: &str| {
        format!(
            "services:\n  web:\n    image: {base}\n    command: [sh, -c, \"echo {v} >> /data/log && exec httpd -f -p 3000 -h /data\"]\n    ports: [\"{port}:3000\"]\n    stop_grace_period: 1s\n    volumes: [data:/data]\n    deploy:\n      placement: {{constraints: [node.role==manager]}}\n  spread:\n    image: {base}\n    command: [sh, -c, \"echo x > /cache/x && exec sleep 3600\"]\n    stop_grace_period: 1s\n    volumes: [cache:/cache]\n    deploy: {{mode: global}}\nvolumes:\n  data:\n    labels: {{tier: test}}\n  cache:\n    driver: local\n    driver_opts: {{type: tmpfs, device: tmpfs, o: size=1m}}\n"
        )
    };
    let p = Project::new(&name, &compose("one"));
    let plan = p.plan(&b);
    assert!(
        plan.warnings.iter().any(|w| w.starts_with(
            "volumes.data: volume data is per node: a task rescheduled to another node starts with an empty volume"
        )),
        "{plan}"
    );
    p.up(&b);
    wait_for(port, "/log", "one");
    // The volume's options and labels, as each node's daemon made it.
    for n in 1..=3 {
        assert!(node_volumes(n, &name).contains(&format!("{name}_cache")));
        let opts = docker(
            n,
            &[
                "volume",
                "inspect",
                "-f",
                "{{json .Options}}",
                &format!("{name}_cache"),
            ],
        );
        assert!(opts.contains("\"type\":\"tmpfs\""), "node{n}: {opts}");
    }
    let labels = docker(
        1,
        &[
            "volume",
            "inspect",
            "-f",
            "{{json .Labels}}",
            &format!("{name}_data"),
        ],
    );
    assert!(labels.contains("\"tier\":\"test\""), "{labels}");

    // An update replaces the task on the same node: same volume, same data.
    std::fs::write(p.dir.join("docker-compose.yml"), compose("two")).unwrap();
    p.up(&b);
    wait_for(port, "/log", "one\ntwo");

    let (_, loaded) = p.load();
    let lines = std::sync::Mutex::new(Vec::new());
    assert!(b
        .down(
            &loaded.project,
            &DownOptions {
                volumes: true,
                ..Default::default()
            },
            &|l| {
                eprintln!("{l}");
                lines.lock().unwrap().push(l.to_string())
            },
        )
        .expect("down -v"));
    let lines = lines.into_inner().unwrap();
    assert!(
        lines.contains(&format!("Volume {name}_data Removed")),
        "{lines:?}"
    );
    // The other nodes' volumes go through their own Engines, which
    // BERTH_SWARM_NODES names (the cluster's backend has them).
    let cache_removed = lines
        .iter()
        .filter(|l| **l == format!("Volume {name}_cache Removed"))
        .count();
    assert_eq!(cache_removed, 3, "one per node: {lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("not removed")),
        "{lines:?}"
    );
    for n in 1..=3 {
        assert!(node_volumes(n, &name).is_empty(), "node{n}");
    }
}
