//! One test (or more) per planner rule. Fixtures are the seed example loaded
//! through `berth_compose::load`, small YAML projects loaded the same way,
//! and observed containers built as `up` would have left them.

use super::*;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------- fixtures

fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn manifest_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn options_for(cwd: PathBuf) -> berth_compose::Options {
    berth_compose::Options {
        cwd,
        os_env: [("HOME".to_string(), "/home/tester".to_string())]
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

/// examples/seed/docker-compose.yml, verbatim.
fn seed() -> Project {
    let dir = manifest_dir().join("../../examples/seed");
    let mut opts = options_for(dir.clone());
    opts.files = vec![dir.join("docker-compose.yml")];
    berth_compose::load(&opts).expect("the seed loads").project
}

/// A project named `p` from YAML, through the real loader (normalization,
/// profiles, network and volume names).
fn yaml_with_profiles(text: &str, profiles: &[&str]) -> Project {
    let mut opts = options_for(manifest_dir());
    opts.files = vec![PathBuf::from("-")];
    opts.stdin = Some(text.to_string());
    opts.project_name = Some("p".into());
    opts.profiles = profiles.iter().map(|s| s.to_string()).collect();
    berth_compose::load(&opts).expect("fixture loads").project
}

fn yaml(text: &str) -> Project {
    yaml_with_profiles(text, &[])
}

const CODE_V1: char = '1';
const CODE_V2: char = '2';
const NODE_422: char = 'a';
const NODE_423: char = 'b';

fn seed_desired(p: &Project, code: char, node: char) -> Desired<'_> {
    Desired::new(p)
        .with_image_digest("code", &digest(code))
        .with_image_digest("app", &digest(node))
}

/// A running container exactly as `up` leaves it for `desired` now.
fn current(desired: &Desired<'_>, service: &str, number: u32) -> ObservedContainer {
    let p = desired.project;
    let svc = &p.services[service];
    ObservedContainer {
        name: format!("{}-{service}-{number}", p.name),
        service: service.to_string(),
        number,
        config_hash: service_hash(svc),
        image_digest: desired.image_digests.get(service).cloned(),
        mounted_image_digests: svc
            .volumes_from()
            .into_iter()
            .filter_map(|vf| match vf {
                berth_compose::model::VolumesFrom::Service { name, .. } => {
                    let d = desired.image_digests.get(&name)?.clone();
                    Some((name, d))
                }
                berth_compose::model::VolumesFrom::Container { .. } => None,
            })
            .collect(),
        networks: svc
            .networks
            .iter()
            .flatten()
            .map(|(k, _)| {
                p.networks
                    .get(k)
                    .and_then(|n| n.name.clone())
                    .unwrap_or_else(|| k.clone())
            })
            .collect(),
        volumes: svc
            .volumes
            .iter()
            .filter(|m| m.kind == "volume")
            .filter_map(|m| m.source.as_ref())
            .map(|s| {
                p.volumes
                    .get(s)
                    .and_then(|v| v.name.clone())
                    .unwrap_or_else(|| s.clone())
            })
            .collect(),
        state: ContainerState::Running,
        one_off: false,
    }
}

fn with_state(mut c: ObservedContainer, state: ContainerState) -> ObservedContainer {
    c.state = state;
    c
}

/// The seed as `up` leaves it: `code` exited 0, `app` running on its volumes.
fn seed_up(desired: &Desired<'_>) -> Vec<ObservedContainer> {
    vec![
        with_state(
            current(desired, "code", 1),
            ContainerState::Exited { code: 0 },
        ),
        current(desired, "app", 1),
    ]
}

fn run(desired: &Desired<'_>, observed: &[ObservedContainer]) -> Plan {
    run_with(desired, observed, &PlanOptions::default())
}

fn run_with(desired: &Desired<'_>, observed: &[ObservedContainer], options: &PlanOptions) -> Plan {
    plan(desired, observed, options).expect("plans")
}

/// `verb container` per step: the shape of a plan at a glance.
fn summary(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.action.verb(),
                s.action.container().unwrap_or("-")
            )
        })
        .collect()
}

fn step<'p>(plan: &'p Plan, container: &str) -> &'p Step {
    plan.steps
        .iter()
        .find(|s| s.action.container() == Some(container))
        .unwrap_or_else(|| panic!("no step for {container} in\n{plan}"))
}

fn strategy_of(plan: &Plan, container: &str) -> (Strategy, bool) {
    match step(plan, container).action {
        Action::Recreate {
            strategy,
            renew_anonymous_volumes,
            ..
        } => (strategy, renew_anonymous_volumes),
        ref other => panic!("{container} is not recreated: {other:?}\n{plan}"),
    }
}

fn opts(f: impl FnOnce(&mut PlanOptions)) -> PlanOptions {
    let mut o = PlanOptions::default();
    f(&mut o);
    o
}

// ------------------------------------------------------ nothing running yet

#[test]
fn nothing_running_creates_every_service_in_dependency_order() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let plan = run(&d, &[]);
    assert_eq!(summary(&plan), ["create seed-code-1", "create seed-app-1"]);
    assert_eq!(plan.steps[0].reason, "code: not created yet");
    assert_eq!(
        plan.steps[1].action,
        Action::Create {
            number: 1,
            name: "seed-app-1".into()
        }
    );
    assert!(plan.warnings.is_empty());
}

#[test]
fn create_honours_scale_and_deploy_replicas() {
    let p = yaml(
        "services:
  web: {image: nginx, scale: 3}
  worker: {image: w, deploy: {replicas: 2}}
  idle: {image: i, deploy: {replicas: 0}}
",
    );
    let plan = run(&Desired::new(&p), &[]);
    assert_eq!(
        summary(&plan),
        [
            "keep -",
            "create p-web-1",
            "create p-web-2",
            "create p-web-3",
            "create p-worker-1",
            "create p-worker-2",
        ]
    );
    assert_eq!(plan.steps[0].reason, "idle: scaled to 0, nothing to run");
    assert_eq!(plan.steps[1].reason, "web: not created yet (scale 3)");
}

#[test]
fn scale_flag_overrides_the_file() {
    let p = yaml("services:\n  web: {image: nginx, scale: 3}\n");
    let o = opts(|o| {
        o.scale.insert("web".into(), 1);
    });
    assert_eq!(
        summary(&run_with(&Desired::new(&p), &[], &o)),
        ["create p-web-1"]
    );
}

#[test]
fn container_name_names_the_created_container() {
    let p = yaml("services:\n  db: {image: postgres, container_name: the-db}\n");
    assert_eq!(summary(&run(&Desired::new(&p), &[])), ["create the-db"]);
}

// ------------------------------------------------ what changed, per container

#[test]
fn up_to_date_seed_is_a_noop() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let plan = run(&d, &seed_up(&d));
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(summary(&plan), ["keep seed-code-1", "keep seed-app-1"]);
    assert_eq!(
        plan.steps[0].reason,
        "code: completed successfully (exit 0); a one-shot service, left as is"
    );
    assert_eq!(plan.steps[1].reason, "app: up to date");
}

#[test]
fn config_hash_change_recreates() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let mut changed = p.clone();
    if let Some(app) = changed.services.get_mut("app") {
        app.working_dir = Some("/srv".into());
    }
    let d2 = seed_desired(&changed, CODE_V1, NODE_422);
    let plan = run(&d2, &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "recreate seed-app-1"]);
    let reason = &step(&plan, "seed-app-1").reason;
    assert!(
        reason.starts_with("app: configuration changed (config hash "),
        "{reason}"
    );
}

#[test]
fn runtime_tag_change_recreates_only_app() {
    // The seed's story: 4.2.2 → 4.2.3 changes the tag (so the config hash)
    // and the digest; the code artifact is untouched.
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let mut patched = p.clone();
    if let Some(app) = patched.services.get_mut("app") {
        app.image = Some("quay.io/oddnetworks/alpine-nodejs:4.2.3".into());
    }
    let d2 = seed_desired(&patched, CODE_V1, NODE_423);
    let plan = run(&d2, &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "recreate seed-app-1"]);
    let reason = &step(&plan, "seed-app-1").reason;
    assert!(
        reason.starts_with(
            "app: runtime image changed sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…, config hash "
        ),
        "{reason}"
    );
    assert_eq!(
        strategy_of(&plan, "seed-app-1"),
        (Strategy::StartFirst, false)
    );
}

#[test]
fn same_tag_new_digest_recreates() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let plan = run(&seed_desired(&p, CODE_V1, NODE_423), &observed);
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: runtime image changed sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…; start-first swap (published ports)"
    );
}

#[test]
fn unknown_digests_are_not_compared() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[1].image_digest = None;
    assert!(run(&d, &observed).is_noop());
    // …nor when the executor could not resolve the wanted one.
    let unresolved = Desired::new(&p).with_image_digest("code", &digest(CODE_V1));
    assert!(run(&unresolved, &seed_up(&d)).is_noop());
}

#[test]
fn missing_config_hash_counts_as_changed() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[1].config_hash = String::new();
    let plan = run(&d, &observed);
    assert!(step(&plan, "seed-app-1")
        .reason
        .starts_with("app: configuration changed (config hash (none) → "));
}

#[test]
fn exited_container_is_started() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[1].state = ContainerState::Exited { code: 137 };
    let plan = run(&d, &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "start seed-app-1"]);
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: exited with code 137"
    );
}

#[test]
fn plain_service_that_exited_0_is_started() {
    let p = yaml("services:\n  web: {image: nginx}\n");
    let d = Desired::new(&p);
    let observed = [with_state(
        current(&d, "web", 1),
        ContainerState::Exited { code: 0 },
    )];
    assert_eq!(summary(&run(&d, &observed)), ["start p-web-1"]);
}

#[test]
fn completed_dependency_stays_exited() {
    let p = yaml(
        "services:
  migrate: {image: m}
  api:
    image: a
    depends_on: {migrate: {condition: service_completed_successfully}}
",
    );
    let d = Desired::new(&p);
    let observed = [
        with_state(
            current(&d, "migrate", 1),
            ContainerState::Exited { code: 0 },
        ),
        current(&d, "api", 1),
    ];
    let plan = run(&d, &observed);
    assert!(plan.is_noop(), "{plan}");
    assert_eq!(summary(&plan), ["keep p-migrate-1", "keep p-api-1"]);
}

#[test]
fn failed_one_shot_is_started_again() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[0].state = ContainerState::Exited { code: 1 };
    let plan = run(&d, &observed);
    assert_eq!(summary(&plan), ["start seed-code-1", "keep seed-app-1"]);
}

#[test]
fn restart_always_is_not_one_shot() {
    let p = yaml(
        "services:
  code: {image: c, restart: always}
  app: {image: a, volumes_from: [code]}
",
    );
    let d = Desired::new(&p);
    let observed = [
        with_state(current(&d, "code", 1), ContainerState::Exited { code: 0 }),
        current(&d, "app", 1),
    ];
    assert_eq!(
        summary(&run(&d, &observed)),
        ["start p-code-1", "keep p-app-1"]
    );
}

#[test]
fn volume_source_with_ports_is_not_one_shot() {
    let p = yaml(
        "services:
  web: {image: nginx, ports: ['80:80']}
  logs: {image: l, volumes_from: [web]}
",
    );
    let d = Desired::new(&p);
    let observed = [
        with_state(current(&d, "web", 1), ContainerState::Exited { code: 0 }),
        current(&d, "logs", 1),
    ];
    assert_eq!(
        summary(&run(&d, &observed)),
        ["start p-web-1", "keep p-logs-1"]
    );
}

#[test]
fn created_container_is_started() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[1].state = ContainerState::Created;
    let plan = run(&d, &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "start seed-app-1"]);
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: created but never started"
    );
}

#[test]
fn paused_and_restarting_containers_are_left_alone() {
    let p = yaml("services:\n  a: {image: x}\n  b: {image: y}\n");
    let d = Desired::new(&p);
    let observed = [
        with_state(current(&d, "a", 1), ContainerState::Paused),
        with_state(current(&d, "b", 1), ContainerState::Restarting),
    ];
    let plan = run(&d, &observed);
    assert!(plan.is_noop());
    assert_eq!(
        plan.steps[0].reason,
        "a: paused; `berth unpause` resumes it"
    );
    assert_eq!(
        plan.steps[1].reason,
        "b: restarting under its restart policy"
    );
}

#[test]
fn missing_network_recreates_a_live_container_only() {
    let p = yaml(
        "services:
  web: {image: nginx, networks: [front, back]}
networks: {front: {}, back: {}}
",
    );
    let d = Desired::new(&p);
    let mut c = current(&d, "web", 1);
    assert_eq!(c.networks, ["p_front", "p_back"]);
    c.networks.retain(|n| n != "p_back");
    let plan = run(&d, std::slice::from_ref(&c));
    assert_eq!(
        step(&plan, "p-web-1").reason,
        "web: is not connected to network p_back; stop-first"
    );
    // A stopped container is attached when it starts: just start it.
    let stopped = with_state(c, ContainerState::Exited { code: 0 });
    assert_eq!(summary(&run(&d, &[stopped])), ["start p-web-1"]);
}

#[test]
fn missing_named_volume_recreates() {
    let p = yaml(
        "services:
  db: {image: postgres, volumes: ['data:/var/lib/postgresql/data', '/scratch']}
volumes: {data: {}}
",
    );
    let d = Desired::new(&p);
    let mut c = current(&d, "db", 1);
    assert_eq!(c.volumes, ["p_data"]);
    assert!(run(&d, std::slice::from_ref(&c)).is_noop());
    c.volumes = vec!["3f9c…anonymous".into()];
    let plan = run(&d, &[c]);
    assert_eq!(
        step(&plan, "p-db-1").reason,
        "db: does not mount named volume p_data; stop-first"
    );
}

// ------------------------------------------------------------- propagation

#[test]
fn volumes_from_source_recreated_recreates_consumer() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[0].config_hash = "0".repeat(64);
    let plan = run(&d, &observed);
    assert_eq!(
        summary(&plan),
        ["recreate seed-code-1", "recreate seed-app-1"]
    );
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: mounts volumes from code, which is recreated; start-first swap (published ports)"
    );
}

#[test]
fn shared_namespaces_propagate() {
    let p = yaml(
        "services:
  app: {image: a}
  net: {image: n, network_mode: 'service:app'}
  ipc: {image: i, ipc: 'service:app'}
  pid: {image: p, pid: 'service:app'}
",
    );
    let d = Desired::new(&p);
    let mut observed: Vec<_> = ["app", "net", "ipc", "pid"]
        .iter()
        .map(|s| current(&d, s, 1))
        .collect();
    observed[0].config_hash = "old".into();
    let plan = run(&d, &observed);
    assert_eq!(
        summary(&plan),
        [
            "recreate p-app-1",
            "recreate p-ipc-1",
            "recreate p-net-1",
            "recreate p-pid-1"
        ]
    );
    assert_eq!(
        step(&plan, "p-net-1").reason,
        "net: shares the network namespace of app, which is recreated; stop-first"
    );
    assert_eq!(
        step(&plan, "p-ipc-1").reason,
        "ipc: shares the IPC namespace of app, which is recreated; stop-first"
    );
    assert_eq!(
        step(&plan, "p-pid-1").reason,
        "pid: shares the PID namespace of app, which is recreated; stop-first"
    );
}

#[test]
fn propagation_is_transitive() {
    let p = yaml(
        "services:
  a: {image: a}
  b: {image: b, volumes_from: [a]}
  c: {image: c, network_mode: 'service:b'}
  d: {image: d}
",
    );
    let d = Desired::new(&p);
    let mut observed: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| current(&d, s, 1))
        .collect();
    observed[0].config_hash = "old".into();
    assert_eq!(
        summary(&run(&d, &observed)),
        [
            "recreate p-a-1",
            "recreate p-b-1",
            "recreate p-c-1",
            "keep p-d-1"
        ]
    );
}

#[test]
fn source_created_anew_recreates_consumer() {
    // `code` was removed by hand while `app` kept its old volumes.
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = [current(&d, "app", 1)];
    let plan = run(&d, &observed);
    assert_eq!(
        summary(&plan),
        ["create seed-code-1", "recreate seed-app-1"]
    );
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: mounts volumes from code, which gets a new container; start-first swap (published ports)"
    );
}

#[test]
fn depends_on_restart_true_restarts_dependant() {
    let p = yaml(
        "services:
  db: {image: postgres}
  api:
    image: api
    depends_on: {db: {condition: service_started, restart: true}}
",
    );
    let d = Desired::new(&p);
    let mut observed = vec![current(&d, "db", 1), current(&d, "api", 1)];
    observed[0].config_hash = "old".into();
    let plan = run(&d, &observed);
    assert_eq!(summary(&plan), ["recreate p-db-1", "restart p-api-1"]);
    assert_eq!(
        step(&plan, "p-api-1").reason,
        "api: depends on db (restart: true), which is recreated"
    );
    assert_eq!(
        step(&plan, "p-api-1").action,
        Action::Restart {
            container: "p-api-1".into()
        }
    );

    // A stopped dependant is started instead.
    observed[1].state = ContainerState::Exited { code: 0 };
    assert_eq!(
        summary(&run(&d, &observed)),
        ["recreate p-db-1", "start p-api-1"]
    );
}

#[test]
fn plain_depends_on_does_not_propagate() {
    let p = yaml(
        "services:
  db: {image: postgres}
  api: {image: api, depends_on: [db]}
",
    );
    let d = Desired::new(&p);
    let mut observed = vec![current(&d, "db", 1), current(&d, "api", 1)];
    observed[0].config_hash = "old".into();
    assert_eq!(
        summary(&run(&d, &observed)),
        ["recreate p-db-1", "keep p-api-1"]
    );
}

#[test]
fn links_restart_the_linking_service() {
    let p = yaml(
        "db: {image: postgres}
web: {image: w, links: ['db:database']}
",
    );
    let d = Desired::new(&p);
    let mut observed = vec![current(&d, "db", 1), current(&d, "web", 1)];
    observed[0].image_digest = Some(digest('0'));
    let d = d.with_image_digest("db", &digest('9'));
    let plan = run(&d, &observed);
    assert_eq!(summary(&plan), ["recreate p-db-1", "restart p-web-1"]);
    assert_eq!(
        step(&plan, "p-web-1").reason,
        "web: links to db, which is recreated"
    );
}

#[test]
fn always_recreate_deps_recreates_dependencies_of_recreated_services() {
    let p = yaml(
        "services:
  store: {image: s}
  db: {image: d, depends_on: [store]}
  cache: {image: c}
  web: {image: w, depends_on: [db, cache]}
  other: {image: o}
",
    );
    let d = Desired::new(&p);
    let mut observed: Vec<_> = ["store", "db", "cache", "web", "other"]
        .iter()
        .map(|s| current(&d, s, 1))
        .collect();
    observed[3].config_hash = "old".into();
    assert_eq!(
        summary(&run(&d, &observed)),
        [
            "keep p-cache-1",
            "keep p-other-1",
            "keep p-store-1",
            "keep p-db-1",
            "recreate p-web-1"
        ]
    );
    let plan = run_with(&d, &observed, &opts(|o| o.always_recreate_deps = true));
    assert_eq!(
        summary(&plan),
        [
            "recreate p-cache-1",
            "keep p-other-1",
            "recreate p-store-1",
            "recreate p-db-1",
            "recreate p-web-1"
        ]
    );
    assert_eq!(
        step(&plan, "p-db-1").reason,
        "db: dependency of web, which is recreated (--always-recreate-deps); stop-first"
    );
    assert_eq!(
        step(&plan, "p-store-1").reason,
        "store: dependency of db, which is recreated (--always-recreate-deps); stop-first"
    );
}

#[test]
fn always_recreate_deps_feeds_downstream_propagation() {
    // web's change pulls db in (upstream); db's sidecar shares its network
    // namespace, so it follows (downstream). Needs a second pass.
    let p = yaml(
        "services:
  db: {image: d}
  sidecar: {image: s, network_mode: 'service:db'}
  web: {image: w, depends_on: [db]}
",
    );
    let d = Desired::new(&p);
    let mut observed: Vec<_> = ["db", "sidecar", "web"]
        .iter()
        .map(|s| current(&d, s, 1))
        .collect();
    observed[2].config_hash = "old".into();
    let plan = run_with(&d, &observed, &opts(|o| o.always_recreate_deps = true));
    assert_eq!(
        summary(&plan),
        [
            "recreate p-db-1",
            "recreate p-sidecar-1",
            "recreate p-web-1"
        ]
    );
}

#[test]
fn propagation_reaches_services_outside_the_targets() {
    // `berth up --build code`: app is not a target, but it would keep
    // serving the old code.
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let d2 = seed_desired(&p, CODE_V2, NODE_422);
    let plan = run_with(&d2, &observed, &opts(|o| o.services = vec!["code".into()]));
    assert_eq!(
        summary(&plan),
        ["recreate seed-code-1", "recreate seed-app-1"]
    );
}

#[test]
fn no_deps_turns_propagation_into_a_warning() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let d2 = seed_desired(&p, CODE_V2, NODE_422);
    let plan = run_with(
        &d2,
        &observed,
        &opts(|o| {
            o.services = vec!["code".into()];
            o.no_deps = true;
        }),
    );
    assert_eq!(summary(&plan), ["recreate seed-code-1"]);
    assert_eq!(
        plan.warnings,
        [
            "app mounts volumes from code, which is recreated, but --no-deps leaves app as it is; \
          `berth up app` brings it up to date"
        ]
    );
}

// ----------------------------------------------------------- code artifacts

#[test]
fn new_code_digest_renews_volumes_and_swaps_consumers() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let plan = run(&seed_desired(&p, CODE_V2, NODE_422), &observed);
    assert_eq!(
        summary(&plan),
        ["recreate seed-code-1", "recreate seed-app-1"]
    );
    assert_eq!(
        step(&plan, "seed-code-1").reason,
        "code: built image changed (new code digest sha256:111111111111… → sha256:222222222222…); \
         stop-first; anonymous volumes renewed (new code)"
    );
    assert_eq!(
        strategy_of(&plan, "seed-code-1"),
        (Strategy::StopFirst, true)
    );
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: mounts volumes from code, which is recreated; start-first swap (published ports)"
    );
    assert_eq!(
        strategy_of(&plan, "seed-app-1"),
        (Strategy::StartFirst, false)
    );
}

#[test]
fn unchanged_code_keeps_its_volumes() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let plan = run(&seed_desired(&p, CODE_V1, NODE_423), &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "recreate seed-app-1"]);
    assert_eq!(
        strategy_of(&plan, "seed-app-1"),
        (Strategy::StartFirst, false)
    );
}

#[test]
fn stale_mounted_code_recreates_consumer() {
    // code already runs the new digest (an earlier `up --no-deps code`, or
    // docker-compose's stale volume), app still mounts the old content.
    let p = seed();
    let d1 = seed_desired(&p, CODE_V1, NODE_422);
    let d2 = seed_desired(&p, CODE_V2, NODE_422);
    let observed = vec![
        with_state(current(&d2, "code", 1), ContainerState::Exited { code: 0 }),
        current(&d1, "app", 1),
    ];
    let plan = run(&d2, &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "recreate seed-app-1"]);
    assert_eq!(
        step(&plan, "seed-app-1").reason,
        "app: mounts the volumes of code from image sha256:111111111111…, but code now provides \
         sha256:222222222222…; start-first swap (published ports)"
    );
}

#[test]
fn renew_anon_volumes_flag_renews_every_recreated_container() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    let o = opts(|o| o.renew_anon_volumes = true);
    let plan = run_with(&seed_desired(&p, CODE_V1, NODE_423), &observed, &o);
    assert_eq!(summary(&plan), ["keep seed-code-1", "recreate seed-app-1"]);
    assert_eq!(
        strategy_of(&plan, "seed-app-1"),
        (Strategy::StartFirst, true)
    );
    assert!(step(&plan, "seed-app-1")
        .reason
        .ends_with("; anonymous volumes renewed (-V)"));
}

#[test]
fn pulled_image_change_keeps_anonymous_volumes() {
    // A pulled image's anonymous volumes may hold data (a database's
    // VOLUME): only code, or -V, renews them.
    let p = yaml("services:\n  db: {image: postgres}\n");
    let d = Desired::new(&p).with_image_digest("db", &digest('0'));
    let observed = [current(&d, "db", 1)];
    let plan = run(
        &Desired::new(&p).with_image_digest("db", &digest('9')),
        &observed,
    );
    assert_eq!(strategy_of(&plan, "p-db-1"), (Strategy::StopFirst, false));
}

// ---------------------------------------------------------------- strategy

fn recreated_strategy(text: &str, service: &str) -> (Strategy, String) {
    let p = yaml(text);
    let d = Desired::new(&p);
    let mut c = current(&d, service, 1);
    c.config_hash = "old".into();
    let plan = run_with(&d, &[c], &opts(|o| o.services = vec![service.into()]));
    let name = format!("p-{service}-1");
    (
        strategy_of(&plan, &name).0,
        step(&plan, &name).reason.clone(),
    )
}

#[test]
fn published_ports_swap_start_first() {
    let (s, reason) =
        recreated_strategy("services:\n  web: {image: w, ports: ['8080:80']}\n", "web");
    assert_eq!(s, Strategy::StartFirst);
    assert!(
        reason.ends_with("; start-first swap (published ports)"),
        "{reason}"
    );
}

#[test]
fn no_ports_means_stop_first() {
    let (s, reason) = recreated_strategy("services:\n  worker: {image: w}\n", "worker");
    assert_eq!(s, Strategy::StopFirst);
    assert!(reason.ends_with("; stop-first"), "{reason}");
}

#[test]
fn x_berth_update_stop_first_opts_out() {
    let (s, reason) = recreated_strategy(
        "services:\n  web: {image: w, ports: ['80'], x-berth: {update: stop-first}}\n",
        "web",
    );
    assert_eq!(s, Strategy::StopFirst);
    assert!(
        reason.ends_with("; stop-first (x-berth.update)"),
        "{reason}"
    );
}

#[test]
fn deploy_update_config_order_is_honoured() {
    let (s, reason) = recreated_strategy(
        "services:\n  web: {image: w, ports: ['80'], deploy: {update_config: {order: stop-first}}}\n",
        "web",
    );
    assert_eq!(s, Strategy::StopFirst);
    assert!(
        reason.ends_with("; stop-first (deploy.update_config.order)"),
        "{reason}"
    );
    let (s, reason) = recreated_strategy(
        "services:\n  worker: {image: w, deploy: {update_config: {order: start-first}}}\n",
        "worker",
    );
    assert_eq!(s, Strategy::StartFirst);
    assert!(
        reason.ends_with("; start-first swap (deploy.update_config.order)"),
        "{reason}"
    );
}

#[test]
fn x_berth_wins_over_deploy_order() {
    let (s, _) = recreated_strategy(
        "services:
  web:
    image: w
    ports: ['80']
    deploy: {update_config: {order: stop-first}}
    x-berth: {update: start-first}
",
        "web",
    );
    assert_eq!(s, Strategy::StartFirst);
}

#[test]
fn container_name_forces_stop_first() {
    let (s, reason) = recreated_strategy(
        "services:\n  web: {image: w, ports: ['80:80'], container_name: web}\n",
        "web",
    );
    assert_eq!(s, Strategy::StopFirst);
    assert!(
        reason.ends_with("; stop-first: container_name \"web\" allows one container at a time"),
        "{reason}"
    );
    // Even when start-first is asked for explicitly.
    let (s, _) = recreated_strategy(
        "services:\n  w: {image: w, container_name: solo, x-berth: {update: start-first}}\n",
        "w",
    );
    assert_eq!(s, Strategy::StopFirst);
}

#[test]
fn fixed_ip_address_forces_stop_first() {
    let (s, reason) = recreated_strategy(
        "services:
  web:
    image: w
    ports: ['80:80']
    networks: {front: {ipv4_address: 172.31.7.10}}
networks:
  front: {ipam: {config: [{subnet: 172.31.7.0/24}]}}
",
        "web",
    );
    assert_eq!(s, Strategy::StopFirst);
    assert!(
        reason.ends_with(
            "; stop-first: fixed ipv4_address 172.31.7.10 on network front allows one container at a time"
        ),
        "{reason}"
    );
}

#[test]
fn host_network_forces_stop_first() {
    let (s, _) = recreated_strategy(
        "services:\n  web: {image: w, network_mode: host, x-berth: {update: start-first}}\n",
        "web",
    );
    assert_eq!(s, Strategy::StopFirst);
}

#[test]
fn stopped_container_is_replaced_stop_first() {
    let p = yaml("services:\n  web: {image: w, ports: ['80:80']}\n");
    let d = Desired::new(&p);
    let mut c = with_state(current(&d, "web", 1), ContainerState::Exited { code: 1 });
    c.config_hash = "old".into();
    let plan = run(&d, &[c]);
    assert_eq!(strategy_of(&plan, "p-web-1").0, Strategy::StopFirst);
    assert!(step(&plan, "p-web-1").reason.ends_with(
        "; stop-first: the old container is not running, so there is nothing to keep serving"
    ));
}

#[test]
fn writable_named_volume_defaults_to_stop_first() {
    let (s, reason) = recreated_strategy(
        "services:
  redis: {image: r, ports: ['6379:6379'], volumes: ['data:/data']}
volumes: {data: {}}
",
        "redis",
    );
    assert_eq!(s, Strategy::StopFirst);
    assert!(
        reason.contains("stop-first: it writes named volume data"),
        "{reason}"
    );
    let (s, _) = recreated_strategy(
        "services:
  web: {image: w, ports: ['80:80'], volumes: ['assets:/srv:ro']}
volumes: {assets: {}}
",
        "web",
    );
    assert_eq!(
        s,
        Strategy::StartFirst,
        "a read-only volume is safe to share"
    );
    let (s, _) = recreated_strategy(
        "services:
  redis: {image: r, ports: ['6379:6379'], volumes: ['data:/data'], x-berth: {update: start-first}}
volumes: {data: {}}
",
        "redis",
    );
    assert_eq!(s, Strategy::StartFirst, "an explicit start-first wins");
}

// ------------------------------------------------------------------- flags

#[test]
fn force_recreate_recreates_every_target() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let plan = run_with(&d, &seed_up(&d), &opts(|o| o.force_recreate = true));
    assert_eq!(
        summary(&plan),
        ["recreate seed-code-1", "recreate seed-app-1"]
    );
    assert_eq!(
        step(&plan, "seed-code-1").reason,
        "code: recreate forced (--force-recreate); stop-first"
    );
    // Forcing is no code change: the code volume is kept.
    assert_eq!(
        strategy_of(&plan, "seed-code-1"),
        (Strategy::StopFirst, false)
    );
}

#[test]
fn force_recreate_applies_to_named_services_not_their_dependencies() {
    let p = yaml(
        "services:
  db: {image: d}
  web: {image: w, depends_on: [db]}
",
    );
    let d = Desired::new(&p);
    let observed = [current(&d, "db", 1), current(&d, "web", 1)];
    let plan = run_with(
        &d,
        &observed,
        &opts(|o| {
            o.force_recreate = true;
            o.services = vec!["web".into()];
        }),
    );
    assert_eq!(summary(&plan), ["keep p-db-1", "recreate p-web-1"]);
}

#[test]
fn no_recreate_never_recreates_but_creates_missing() {
    let p = yaml(
        "services:
  db: {image: d}
  web: {image: w}
",
    );
    let d = Desired::new(&p);
    let mut web = current(&d, "web", 1);
    web.config_hash = "0".repeat(64);
    let plan = run_with(&d, &[web], &opts(|o| o.no_recreate = true));
    assert_eq!(summary(&plan), ["create p-db-1", "keep p-web-1"]);
    assert!(step(&plan, "p-web-1")
        .reason
        .starts_with("web: running; not recreated (--no-recreate) although configuration changed"));
}

#[test]
fn no_recreate_still_starts_stopped_containers_and_stops_propagation() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    observed[1].state = ContainerState::Exited { code: 2 };
    let plan = run_with(
        &seed_desired(&p, CODE_V2, NODE_423),
        &observed,
        &opts(|o| o.no_recreate = true),
    );
    assert_eq!(summary(&plan), ["keep seed-code-1", "start seed-app-1"]);
}

#[test]
fn named_services_bring_their_dependencies() {
    let p = yaml(
        "services:
  db: {image: d}
  web: {image: w, depends_on: [db]}
  other: {image: o}
",
    );
    let plan = run_with(
        &Desired::new(&p),
        &[],
        &opts(|o| o.services = vec!["web".into()]),
    );
    assert_eq!(summary(&plan), ["create p-db-1", "create p-web-1"]);
}

#[test]
fn no_deps_limits_to_named_services() {
    let p = yaml(
        "services:
  db: {image: d}
  web: {image: w, depends_on: [db]}
",
    );
    let plan = run_with(
        &Desired::new(&p),
        &[],
        &opts(|o| {
            o.services = vec!["web".into()];
            o.no_deps = true;
        }),
    );
    assert_eq!(summary(&plan), ["create p-web-1"]);
}

// ----------------------------------------------------------- scale, orphans

#[test]
fn scale_up_creates_the_lowest_free_numbers() {
    let p = yaml("services:\n  web: {image: w, scale: 4}\n");
    let d = Desired::new(&p);
    let observed = [current(&d, "web", 1), current(&d, "web", 3)];
    let plan = run(&d, &observed);
    assert_eq!(
        summary(&plan),
        [
            "keep p-web-1",
            "keep p-web-3",
            "create p-web-2",
            "create p-web-4"
        ]
    );
    assert_eq!(step(&plan, "p-web-2").reason, "web: scaling up from 2 to 4");
}

#[test]
fn scale_down_removes_highest_numbers_first() {
    let p = yaml("services:\n  web: {image: w}\n");
    let d = Desired::new(&p);
    let observed: Vec<_> = (1..=4).map(|n| current(&d, "web", n)).collect();
    let plan = run_with(
        &d,
        &observed,
        &opts(|o| {
            o.scale.insert("web".into(), 2);
        }),
    );
    assert_eq!(
        summary(&plan),
        [
            "remove p-web-4",
            "remove p-web-3",
            "keep p-web-1",
            "keep p-web-2"
        ]
    );
    assert_eq!(
        step(&plan, "p-web-4").reason,
        "web: scaling down from 4 to 2"
    );
    assert!(matches!(
        step(&plan, "p-web-4").action,
        Action::ScaleDown { .. }
    ));
}

#[test]
fn scale_down_removes_obsolete_containers_first() {
    // Like compose: dropping a container that needs recreating saves a recreate.
    let p = yaml("services:\n  web: {image: w, scale: 2}\n");
    let d = Desired::new(&p);
    let mut observed: Vec<_> = (1..=3).map(|n| current(&d, "web", n)).collect();
    observed[0].config_hash = "old".into();
    let plan = run(&d, &observed);
    assert_eq!(
        summary(&plan),
        ["remove p-web-1", "keep p-web-2", "keep p-web-3"]
    );
}

#[test]
fn scale_to_zero_removes_every_container() {
    let p = yaml("services:\n  web: {image: w, deploy: {replicas: 0}}\n");
    let d = Desired::new(&p);
    let observed = [current(&d, "web", 1), current(&d, "web", 2)];
    assert_eq!(
        summary(&run(&d, &observed)),
        ["remove p-web-2", "remove p-web-1"]
    );
}

#[test]
fn duplicate_numbers_keep_the_current_running_container() {
    let p = yaml("services:\n  web: {image: w, ports: ['80:80']}\n");
    let d = Desired::new(&p);
    let mut stale = current(&d, "web", 1);
    stale.name = "4be1c0ffee_p-web-1".into();
    stale.config_hash = "old".into();
    let fresh = current(&d, "web", 1);
    let plan = run(&d, &[stale, fresh]);
    assert_eq!(
        summary(&plan),
        ["remove 4be1c0ffee_p-web-1", "keep p-web-1"]
    );
    assert_eq!(
        plan.steps[0].reason,
        "web: duplicate of p-web-1 (both number 1), left over from an interrupted replacement"
    );
}

#[test]
fn orphans_are_reported_without_remove_orphans() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    let mut old = current(&d, "app", 1);
    old.name = "seed-worker-1".into();
    old.service = "worker".into();
    observed.push(old);
    let plan = run(&d, &observed);
    assert!(plan.is_noop());
    assert_eq!(
        plan.warnings,
        ["found orphan containers (seed-worker-1) for this project: their services are no longer \
          in it or their profiles are not enabled; run with --remove-orphans to remove them"]
    );
}

#[test]
fn orphans_are_removed_with_remove_orphans_before_anything_else() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    for (svc, n) in [("worker", 2), ("cron", 1), ("worker", 1)] {
        let mut c = current(&d, "app", 1);
        c.name = format!("seed-{svc}-{n}");
        c.service = svc.into();
        c.number = n;
        observed.insert(0, c);
    }
    let plan = run_with(&d, &observed, &opts(|o| o.remove_orphans = true));
    assert_eq!(
        summary(&plan),
        [
            "remove seed-cron-1",
            "remove seed-worker-1",
            "remove seed-worker-2",
            "keep seed-code-1",
            "keep seed-app-1"
        ]
    );
    assert!(matches!(plan.steps[0].action, Action::RemoveOrphan { .. }));
    assert!(plan.warnings.is_empty());
}

#[test]
fn services_disabled_by_profile_are_orphans() {
    let text = "services:\n  web: {image: w}\n  debug: {image: d, profiles: [debug]}\n";
    let with = yaml_with_profiles(text, &["debug"]);
    let dw = Desired::new(&with);
    let observed = [current(&dw, "web", 1), current(&dw, "debug", 1)];
    let without = yaml(text);
    let plan = run_with(
        &Desired::new(&without),
        &observed,
        &opts(|o| o.remove_orphans = true),
    );
    assert_eq!(summary(&plan), ["remove p-debug-1", "keep p-web-1"]);
}

#[test]
fn one_off_containers_are_ignored() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    let mut run_app = with_state(current(&d, "app", 1), ContainerState::Exited { code: 3 });
    run_app.name = "seed-app-run-1a2b".into();
    run_app.config_hash = "stale".into();
    run_app.one_off = true;
    let mut run_gone = run_app.clone();
    run_gone.service = "gone".into();
    observed.extend([run_app, run_gone]);
    let plan = run_with(&d, &observed, &opts(|o| o.remove_orphans = true));
    assert_eq!(summary(&plan), ["keep seed-code-1", "keep seed-app-1"]);
}

// ------------------------------------------------- order, determinism, errors

#[test]
fn steps_follow_dependency_order_with_ties_by_name() {
    let p = yaml(
        "services:
  zeta: {image: z}
  web: {image: w, depends_on: [db], volumes_from: [assets], network_mode: 'service:net'}
  net: {image: n}
  db: {image: d, ipc: 'service:alpha'}
  assets: {image: a, pid: 'service:zeta'}
  alpha: {image: a}
",
    );
    let plan = run(&Desired::new(&p), &[]);
    assert_eq!(
        summary(&plan),
        [
            "create p-alpha-1",
            "create p-db-1",
            "create p-net-1",
            "create p-zeta-1",
            "create p-assets-1",
            "create p-web-1"
        ]
    );
}

#[test]
fn plan_does_not_depend_on_input_order() {
    let p = yaml("services:\n  web: {image: w, scale: 3}\n  db: {image: d}\n");
    let d = Desired::new(&p);
    let mut observed: Vec<_> = (1..=3).map(|n| current(&d, "web", n)).collect();
    observed.push(current(&d, "db", 1));
    observed[1].config_hash = "old".into();
    let first = run(&d, &observed);
    observed.reverse();
    assert_eq!(first, run(&d, &observed));
    assert_eq!(
        summary(&first),
        [
            "keep p-db-1",
            "keep p-web-1",
            "recreate p-web-2",
            "keep p-web-3"
        ]
    );
}

#[test]
fn incompatible_flags_are_rejected() {
    let p = seed();
    let d = Desired::new(&p);
    let both = opts(|o| {
        o.force_recreate = true;
        o.no_recreate = true;
    });
    assert_eq!(
        plan(&d, &[], &both),
        Err(PlanError::IncompatibleFlags(
            "--force-recreate",
            "--no-recreate"
        ))
    );
    let deps = opts(|o| {
        o.always_recreate_deps = true;
        o.no_recreate = true;
    });
    assert_eq!(
        plan(&d, &[], &deps).map_err(|e| e.to_string()),
        Err("--always-recreate-deps and --no-recreate are incompatible".to_string())
    );
}

#[test]
fn unknown_services_are_rejected() {
    let p = seed();
    let d = Desired::new(&p);
    assert_eq!(
        plan(&d, &[], &opts(|o| o.services = vec!["nope".into()])),
        Err(PlanError::NoSuchService("nope".into()))
    );
    assert_eq!(
        plan(
            &d,
            &[],
            &opts(|o| {
                o.scale.insert("ghost".into(), 2);
            })
        ),
        Err(PlanError::NoSuchService("ghost".into()))
    );
}

#[test]
fn scaling_a_service_with_container_name_is_rejected() {
    let p = yaml("services:\n  db: {image: d, container_name: the-db}\n");
    let err = plan(
        &Desired::new(&p),
        &[],
        &opts(|o| {
            o.scale.insert("db".into(), 2);
        }),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        PlanError::ScaleWithContainerName { scale: 2, .. }
    ));
}

#[test]
fn invalid_update_order_is_rejected() {
    // The loader's schema refuses this; a project built another way may not.
    let mut p = yaml("services:\n  web: {image: w}\n");
    if let Some(web) = p.services.get_mut("web") {
        web.extra.insert(
            "deploy".into(),
            serde_json::json!({"update_config": {"order": "blue-green"}}),
        );
    }
    assert_eq!(
        plan(&Desired::new(&p), &[], &PlanOptions::default()).map_err(|e| e.to_string()),
        Err("service \"web\": deploy.update_config.order must be \"start-first\" or \"stop-first\", not \"blue-green\"".into())
    );
}

#[test]
fn invalid_scale_is_rejected() {
    let mut p = yaml("services:\n  web: {image: w}\n");
    if let Some(web) = p.services.get_mut("web") {
        web.extra.insert("scale".into(), serde_json::json!(-1));
    }
    assert!(matches!(
        plan(&Desired::new(&p), &[], &PlanOptions::default()),
        Err(PlanError::InvalidScale { key: "scale", .. })
    ));
}

#[test]
fn dependency_cycle_is_an_error_not_a_hang() {
    // The loader refuses cycles; a Project built in code can still hold one.
    let p: Project = serde_json::from_value(serde_json::json!({
        "name": "p",
        "services": {
            "a": {"image": "a", "depends_on": {"b": {"condition": "service_started"}}},
            "b": {"image": "b", "volumes_from": ["service:a:rw"]},
            "c": {"image": "c"}
        }
    }))
    .unwrap();
    assert_eq!(
        plan(&Desired::new(&p), &[], &PlanOptions::default()),
        Err(PlanError::DependencyCycle(vec!["a".into(), "b".into()]))
    );
}

#[test]
fn optional_dependency_on_a_missing_service_is_ignored() {
    let p: Project = serde_json::from_value(serde_json::json!({
        "name": "p",
        "services": {
            "web": {"image": "w", "depends_on": {"gone": {"condition": "service_started", "required": false}}}
        }
    }))
    .unwrap();
    assert_eq!(summary(&run(&Desired::new(&p), &[])), ["create p-web-1"]);
}

#[test]
fn precomputed_config_hashes_are_used() {
    let p = seed();
    let mut d = seed_desired(&p, CODE_V1, NODE_422);
    let observed = seed_up(&d);
    d.config_hashes.insert("app".into(), "f".repeat(64));
    let plan = run(&d, &observed);
    assert_eq!(summary(&plan), ["keep seed-code-1", "recreate seed-app-1"]);
}

// ------------------------------------------------------------------ display

#[test]
fn display_prints_one_aligned_line_per_step() {
    let p = seed();
    let d = seed_desired(&p, CODE_V1, NODE_422);
    let mut observed = seed_up(&d);
    let mut orphan = current(&d, "app", 1);
    orphan.name = "seed-worker-1".into();
    orphan.service = "worker".into();
    observed.push(orphan);
    let plan = run(&seed_desired(&p, CODE_V2, NODE_422), &observed);
    assert_eq!(
        plan.to_string(),
        "warning: found orphan containers (seed-worker-1) for this project: their services are no \
         longer in it or their profiles are not enabled; run with --remove-orphans to remove them\n\
         recreate  seed-code-1  code: built image changed (new code digest sha256:111111111111… → \
         sha256:222222222222…); stop-first; anonymous volumes renewed (new code)\n\
         recreate  seed-app-1   app: mounts volumes from code, which is recreated; start-first swap \
         (published ports)\n"
    );
    let noop = run(&d, &seed_up(&d));
    assert_eq!(
        noop.to_string(),
        "keep  seed-code-1  code: completed successfully (exit 0); a one-shot service, left as is\n\
         keep  seed-app-1   app: up to date\n"
    );
    assert_eq!(
        noop.steps[1].to_string(),
        "keep  seed-app-1  app: up to date"
    );
}

#[test]
fn plan_serializes_for_json_output() {
    let p = seed();
    let plan = run(&seed_desired(&p, CODE_V1, NODE_422), &[]);
    let json = serde_json::to_value(&plan).unwrap();
    assert_eq!(
        json["steps"][1],
        serde_json::json!({
            "service": "app",
            "action": {"action": "create", "number": 1, "name": "seed-app-1"},
            "reason": "app: not created yet"
        })
    );
}
