//! How long the planner takes on an up-to-date 100-service project: the
//! `berth up` with nothing to do. Measured, never asserted.
//!
//! `cargo run --release -p berth-engine --example plan_bench`
//!
//! Three figures: the planner hashing every service itself (what `up` pays
//! when the loader hands over no hashes), the planner given the hashes, and
//! the hashing alone. Each is the median of many rounds, after a warm-up.
//! With `PLAN_BENCH_PROFILE=1` it only loops the planner (hashes handed in),
//! for `perf record`.

use berth_compose::hash::service_hash;
use berth_engine::{plan, ContainerState, Desired, ObservedContainer, PlanOptions};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const SERVICES: usize = 100;
const ROUNDS: usize = 2_000;

/// A project shaped like real ones: a built code service per ten, consumers
/// mounting its volumes, web services with ports, dependency chains,
/// environments, named volumes, two networks.
fn project_yaml() -> String {
    let mut y = String::from("name: bench\nservices:\n");
    for i in 0..SERVICES {
        let _ = writeln!(y, "  s{i:03}:");
        if i % 10 == 0 {
            let _ = writeln!(y, "    build: .");
            continue;
        }
        let _ = writeln!(y, "    image: registry.local/team/s{i:03}:1.{i}.0");
        let _ = writeln!(y, "    volumes_from: [s{:03}]", i - i % 10);
        if i % 3 == 0 {
            let _ = writeln!(y, "    ports: ['{}:8080']", 10_000 + i);
        }
        if i % 10 > 1 {
            let _ = writeln!(y, "    depends_on: [s{:03}]", i - 1);
        }
        if i % 7 == 0 {
            let _ = writeln!(y, "    volumes: ['data{i}:/var/lib/data']");
        }
        let _ = writeln!(y, "    networks: [front, back]");
        let _ = writeln!(
            y,
            "    command: ['/bin/sh', '-c', 'exec server --port 8080']"
        );
        let _ = writeln!(y, "    environment:");
        for k in 0..8 {
            let _ = writeln!(y, "      VAR_{k}: value-{i}-{k}");
        }
        let _ = writeln!(
            y,
            "    healthcheck: {{test: ['CMD', 'true'], interval: 5s}}"
        );
    }
    y.push_str("networks: {front: {}, back: {}}\nvolumes:\n");
    for i in (0..SERVICES).filter(|i| i % 7 == 0 && i % 10 != 0) {
        let _ = writeln!(y, "  data{i}: {{}}");
    }
    y
}

fn observed(desired: &Desired<'_>) -> Vec<ObservedContainer> {
    let p = desired.project;
    p.services
        .iter()
        .map(|(name, svc)| {
            let built = svc.build.is_some();
            ObservedContainer {
                name: format!("bench-{name}-1"),
                service: name.clone(),
                number: 1,
                config_hash: service_hash(svc),
                image_digest: desired.image_digests.get(name).cloned(),
                mounted_image_digests: svc
                    .volumes_from
                    .iter()
                    .filter_map(|vf| vf.split(':').nth(1))
                    .filter_map(|src| {
                        Some((src.to_string(), desired.image_digests.get(src)?.clone()))
                    })
                    .collect(),
                networks: vec!["bench_front".into(), "bench_back".into()],
                volumes: svc
                    .volumes
                    .iter()
                    .filter_map(|m| m.source.as_ref())
                    .map(|s| format!("bench_{s}"))
                    .collect(),
                state: if built {
                    ContainerState::Exited { code: 0 }
                } else {
                    ContainerState::Running
                },
                one_off: false,
            }
        })
        .collect()
}

fn median(mut f: impl FnMut()) -> Duration {
    for _ in 0..ROUNDS / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let mut opts = berth_compose::Options {
        files: vec!["-".into()],
        stdin: Some(project_yaml()),
        cwd: std::env::temp_dir(),
        ..Default::default()
    };
    opts.project_name = Some("bench".into());
    let project = berth_compose::load(&opts)
        .expect("bench project loads")
        .project;
    let mut desired = Desired::new(&project);
    for (i, name) in project.services.keys().enumerate() {
        desired = desired.with_image_digest(name, &format!("sha256:{i:064x}"));
    }
    let state = observed(&desired);
    let options = PlanOptions::default();

    let check = plan(&desired, &state, &options).expect("plans");
    assert!(
        check.is_noop(),
        "the bench project must be up to date:\n{check}"
    );
    assert_eq!(check.steps.len(), SERVICES);

    if std::env::var_os("PLAN_BENCH_PROFILE").is_some() {
        let mut pre = desired.clone();
        pre.config_hashes = project
            .services
            .iter()
            .map(|(n, s)| (n.clone(), service_hash(s)))
            .collect();
        for _ in 0..20_000 {
            std::hint::black_box(plan(&pre, &state, &options).ok());
        }
        return;
    }
    let hashing = median(|| {
        for svc in project.services.values() {
            std::hint::black_box(service_hash(svc));
        }
    });
    let planning = median(|| {
        std::hint::black_box(plan(&desired, &state, &options).ok());
    });
    let mut prehashed = desired.clone();
    prehashed.config_hashes = project
        .services
        .iter()
        .map(|(n, s)| (n.clone(), service_hash(s)))
        .collect();
    let planning_prehashed = median(|| {
        std::hint::black_box(plan(&prehashed, &state, &options).ok());
    });

    println!("up-to-date project of {SERVICES} services, median of {ROUNDS} rounds:");
    println!("  plan (hashes computed by the planner): {planning:?}");
    println!("  plan (config hashes handed in):        {planning_prehashed:?}");
    println!("  config hashing alone (100 services):   {hashing:?}");
}
