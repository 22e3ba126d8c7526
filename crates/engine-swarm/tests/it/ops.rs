//! Operations on tasks of any node: logs, exec, cp, top.

use super::{docker, runtime_image, store, Cluster, Project};
use berth_engine::backend::{
    Container, CopyRequest, ExecRequest, HostEnd, LogLine, LogOptions, Status,
};
use berth_engine::Backend;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn all_logs(b: &berth_engine_swarm::SwarmBackend, name: &str, tail: Option<usize>) -> Vec<LogLine> {
    let mut lines = Vec::new();
    b.logs(
        name,
        &LogOptions {
            tail,
            ..Default::default()
        },
        &mut |l| lines.push(l),
        &|| false,
    )
    .expect("logs");
    lines
}

/// `logs` reads every task through the manager, names each line's task as
/// `ps` does (`talk.N@node`), keeps stderr apart, honours `--tail` per
/// task; `--follow` shows the tasks a roll starts, on whichever node.
#[test]
fn logs_name_every_task_and_follow_the_tasks_of_a_roll() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let rt = runtime_image(&store(), "4.2.2");
    let name = format!("swlogs{}", std::process::id());
    let compose = |v: &str| {
        format!(
            "services:\n  talk:\n    image: {rt}\n    environment:\n      V: {v}\n    command: [sh, -c, 'while true; do echo \"$$V from $$(cat /etc/hostname)\"; echo oops >&2; sleep 0.5; done']\n    stop_grace_period: 1s\n    deploy:\n      replicas: 3\n"
        )
    };
    let p = Project::new(&name, &compose("one"));
    p.up(&b);

    // Every task has written something within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let lines = loop {
        let lines = all_logs(&b, &name, None);
        let tasks: BTreeSet<&str> = lines.iter().map(|l| l.container.as_str()).collect();
        if tasks.len() == 3 {
            break lines;
        }
        assert!(Instant::now() < deadline, "not three tasks: {tasks:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let nodes: BTreeSet<&str> = lines
        .iter()
        .map(|l| l.container.split_once('@').expect("service.N@node").1)
        .collect();
    assert_eq!(nodes.len(), 3, "one task per node: {nodes:?}");
    for l in &lines {
        assert!(l.container.starts_with("talk."), "{l:?}");
        assert_eq!(l.service, "talk");
        assert!(l.time.is_some(), "{l:?}");
        if l.stderr {
            assert_eq!(l.text, "oops");
        } else {
            assert!(l.text.starts_with("one from "), "{l:?}");
        }
    }
    assert!(lines.iter().any(|l| l.stderr), "stderr is kept apart");
    // `--tail 1`: the last line of each task.
    let tail = all_logs(&b, &name, Some(1));
    let per_task: BTreeSet<&str> = tail.iter().map(|l| l.container.as_str()).collect();
    assert_eq!((tail.len(), per_task.len()), (3, 3), "{tail:?}");

    // Follow from now while another client rolls the service to V=two: the
    // new tasks' lines arrive on the same stream, from all three slots.
    std::fs::write(p.dir.join("docker-compose.yml"), compose("two")).unwrap();
    let seen_two = std::cell::RefCell::new(BTreeSet::new());
    let mut followed = 0;
    std::thread::scope(|s| {
        let roll = s.spawn(|| p.up(&cluster.backend()));
        let deadline = Instant::now() + Duration::from_secs(180);
        b.logs(
            &name,
            &LogOptions {
                follow: true,
                from_now: true,
                ..Default::default()
            },
            &mut |l| {
                followed += 1;
                if l.text.starts_with("two from ") {
                    seen_two.borrow_mut().insert(l.container.clone());
                }
            },
            &|| seen_two.borrow().len() == 3 || Instant::now() > deadline,
        )
        .expect("logs --follow");
        roll.join().expect("the roll's up");
    });
    let seen_two = seen_two.into_inner();
    assert_eq!(
        seen_two.len(),
        3,
        "followed {followed} lines; new tasks seen: {seen_two:?}"
    );
    p.down_and_gone(&b);
}

/// The running task `c`'s container ID, asked of the node it runs on.
fn container_on_node(c: &Container) -> String {
    let node: u32 = c
        .name
        .rsplit_once("berth-swarm-")
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or_else(|| panic!("not on a cluster node: {}", c.name));
    docker(
        node,
        &[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=com.docker.swarm.task.id={}", c.id),
        ],
    )
    .trim()
    .to_string()
}

fn exec(
    b: &berth_engine_swarm::SwarmBackend,
    project: &str,
    c: &Container,
    script: &str,
) -> Result<i32, berth_engine::BackendError> {
    b.exec(
        project,
        &ExecRequest {
            container: c.clone(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            ..Default::default()
        },
    )
}

/// exec, cp and top act on the task's own container, on whichever node it
/// runs, through that node's Engine; without a way to reach a worker's
/// Engine they say so in one line, while the manager's own tasks still work.
#[test]
fn exec_cp_and_top_reach_the_task_s_container_on_its_node() {
    let cluster = Cluster::get();
    let b = cluster.backend();
    let rt = runtime_image(&store(), "4.2.2");
    let name = format!("swops{}", std::process::id());
    let p = Project::new(
        &name,
        &format!(
            "services:\n  box:\n    image: {rt}\n    command: [sleep, '1000']\n    stop_grace_period: 1s\n    deploy:\n      replicas: 3\n"
        ),
    );
    p.up(&b);
    let running: Vec<Container> = b
        .observe(&name)
        .unwrap()
        .expect("running")
        .containers
        .into_iter()
        .filter(|c| c.service == "box" && c.status == Status::Running)
        .collect();
    let nodes: BTreeSet<&str> = running
        .iter()
        .map(|c| c.name.split_once('@').unwrap().1)
        .collect();
    assert_eq!(nodes.len(), 3, "{running:?}");
    let dir = tempfile::tempdir().unwrap();
    for c in &running {
        // exec's exit code is the command's; it ran in this task's
        // container (Docker names a container's host by its ID).
        let code = exec(&b, &name, c, "cat /etc/hostname > /tmp/who; exit 7").unwrap();
        assert_eq!(code, 7, "{}", c.name);
        let out = dir.path().join(&c.name);
        b.copy(
            &name,
            &CopyRequest {
                container: c.clone(),
                path: "/tmp/who".into(),
                host: HostEnd::Path(out.clone()),
                out: true,
            },
        )
        .unwrap();
        let who = std::fs::read_to_string(&out).unwrap();
        let id = container_on_node(c);
        assert!(
            !who.trim().is_empty() && id.starts_with(who.trim()),
            "{}: hostname {who:?}, container {id:?}",
            c.name
        );
        // cp into the container, read back there.
        let file = dir.path().join(format!("in-{}", c.number));
        std::fs::write(&file, format!("hello {}", c.name)).unwrap();
        b.copy(
            &name,
            &CopyRequest {
                container: c.clone(),
                path: "/tmp/in".into(),
                host: HostEnd::Path(file),
                out: false,
            },
        )
        .unwrap();
        let check = format!("test \"$(cat /tmp/in)\" = 'hello {}'", c.name);
        assert_eq!(exec(&b, &name, c, &check).unwrap(), 0, "{}", c.name);
        let top = b.top(&name, c).unwrap();
        assert!(
            top.iter().any(|p| p.command.contains("sleep 1000")),
            "{}: {top:?}",
            c.name
        );
    }

    // The manager alone reaches only its own node's containers.
    let alone = cluster.manager_only();
    let by_node: BTreeMap<&str, &Container> = running
        .iter()
        .map(|c| (c.name.split_once('@').unwrap().1, c))
        .collect();
    assert_eq!(
        exec(&alone, &name, by_node["berth-swarm-1"], "exit 3").unwrap(),
        3
    );
    let err = exec(&alone, &name, by_node["berth-swarm-2"], "true").unwrap_err();
    let task = &by_node["berth-swarm-2"].name;
    assert_eq!(
        err.message,
        format!("exec: {task} runs on node berth-swarm-2, whose Docker Engine berth does not know: add berth-swarm-2=unix:///…|tcp://… to BERTH_SWARM_NODES")
    );
    p.down_and_gone(&b);
}
