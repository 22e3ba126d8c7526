use crate::common::*;
use berth_engine::backend::{Control, Health, LogOptions, PlanFlags};
use berth_engine::{Backend, Status};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Several services: health-gated and completion-gated order, scale,
/// followed logs and events while the project changes.
#[test]
fn health_gated_order_scale_logs_and_events() {
    let b = backend();
    let store_dir = tempfile::tempdir().unwrap();
    let store = berth_oci::Store::open(store_dir.path()).unwrap();
    let images = images(&b, &store, "multi", "unused");
    let image = &images["box"];
    let p = Project::new(
        "bdk-multi",
        &format!(
            r#"services:
  db:
    image: {image}
    command: ["sh", "-c", "sleep 1; echo ready > /tmp/ready; exec sleep 1000"]
    healthcheck:
      test: ["CMD", "cat", "/tmp/ready"]
      interval: 1s
      retries: 30
    stop_grace_period: 1s
  migrate:
    image: {image}
    command: ["sh", "-c", "cat /tmp/ready 2>/dev/null; echo migrated"]
    depends_on:
      db:
        condition: service_healthy
  web:
    image: {image}
    command: ["sh", "-c", "echo web up; exec sleep 1000"]
    scale: 2
    stop_grace_period: 1s
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
"#
        ),
    );
    p.up(&b).unwrap();
    let status = b.observe(&p.name).unwrap().unwrap();
    let by_name: BTreeMap<&str, (Status, Option<Health>, Option<i32>)> = status
        .containers
        .iter()
        .map(|c| (c.name.as_str(), (c.status, c.health, c.exit_code)))
        .collect();
    assert_eq!(
        by_name,
        BTreeMap::from([
            (
                "bdk-multi-db-1",
                (Status::Running, Some(Health::Healthy), None)
            ),
            ("bdk-multi-migrate-1", (Status::Exited, None, Some(0))),
            ("bdk-multi-web-1", (Status::Running, None, None)),
            ("bdk-multi-web-2", (Status::Running, None, None)),
        ])
    );
    assert!(p.plan(&b).is_noop(), "{:#?}", p.plan(&b));

    // Events and followed logs, each through its own connection.
    let stop = Arc::new(AtomicBool::new(false));
    let events = Arc::new(Mutex::new(Vec::new()));
    let logs = Arc::new(Mutex::new(Vec::new()));
    let watchers: Vec<_> = [true, false]
        .into_iter()
        .map(|watch_events| {
            let (stop, events, logs, name) =
                (stop.clone(), events.clone(), logs.clone(), p.name.clone());
            std::thread::spawn(move || {
                let b = backend();
                let done = || stop.load(Ordering::Relaxed);
                if watch_events {
                    b.events(
                        &name,
                        &mut |e| events.lock().unwrap().push((e.action, e.container)),
                        &done,
                    )
                    .unwrap();
                } else {
                    let options = LogOptions {
                        services: vec!["web".into()],
                        follow: true,
                        from_now: true,
                        ..LogOptions::default()
                    };
                    b.logs(
                        &name,
                        &options,
                        &mut |l| logs.lock().unwrap().push((l.container, l.text)),
                        &done,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    b.control(
        &p.name,
        &Control::Restart {
            services: vec!["web".into()],
            timeout_secs: Some(1),
        },
        &|_| {},
    )
    .unwrap();
    let seen_all = || {
        let events = events.lock().unwrap();
        logs.lock().unwrap().len() >= 2
            && ["bdk-multi-web-1", "bdk-multi-web-2"].iter().all(|c| {
                ["die", "start", "restart"]
                    .iter()
                    .all(|a| events.iter().any(|(ea, en)| ea == a && en == c))
            })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !seen_all() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for w in watchers {
        w.join().unwrap();
    }
    let mut logs = logs.lock().unwrap().clone();
    logs.sort();
    assert_eq!(
        logs,
        [
            ("bdk-multi-web-1".to_string(), "web up".to_string()),
            ("bdk-multi-web-2".to_string(), "web up".to_string())
        ]
    );
    let events = events.lock().unwrap().clone();
    for c in ["bdk-multi-web-1", "bdk-multi-web-2"] {
        for action in ["die", "start", "restart"] {
            assert!(
                events.iter().any(|(a, n)| a == action && n == c),
                "no {action} of {c} in {events:?}"
            );
        }
    }

    // --scale web=1 removes the higher number.
    let flags = PlanFlags {
        scale: BTreeMap::from([("web".to_string(), 1)]),
        ..PlanFlags::default()
    };
    p.up_with(&b, &flags).unwrap();
    let names: Vec<String> = b
        .observe(&p.name)
        .unwrap()
        .unwrap()
        .containers
        .into_iter()
        .filter(|c| c.service == "web")
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["bdk-multi-web-1"]);
    assert!(p.down(&b));
    assert_eq!(p.leftovers(), Vec::<String>::new());
}
