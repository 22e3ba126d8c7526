//! A container rooted on the host's own filesystem (`x-runtime` without an
//! image): it sees the host's files, writes only to its own layer, gets its
//! own /tmp and /run, and none of the host's mounted filesystems.

use crate::support::*;
use berth_sandbox::{ContainerSpec, MountKind, MountSpec, Stdio};

#[test]
fn host_root_sees_host_files_and_writes_privately() {
    let f = fixture();
    let marker = format!("/usr/local/berth-host-root-{}", std::process::id());
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("index.js"), "code\n").unwrap();
    let mut spec = ContainerSpec {
        id: id("host-root"),
        host_root: true,
        ..ContainerSpec::default()
    };
    spec.cmd = Some(vec![
        "/bin/sh".into(),
        "-c".into(),
        format!(
            "cat /etc/os-release | head -1; echo written > {marker} && cat {marker}; \
             cat /app/index.js; pwd; ls -A /run | wc -l; \
             test -e /run/docker.sock && echo docker-sock-$((6*7)); \
             touch /tmp/t && echo tmp-$((6*7)); cat /proc/1/cmdline | tr '\\0' ' '; echo"
        ),
    ]);
    spec.working_dir = Some("/app".into());
    spec.mounts = vec![MountSpec {
        target: "/app".into(),
        kind: MountKind::Bind {
            source: app.path().to_path_buf(),
            read_only: true,
        },
    }];
    let out = tempfile::tempdir().unwrap();
    spec.stdout = Stdio::File(out.path().join("stdout"));
    spec.stderr = Stdio::File(out.path().join("stderr"));
    let mut c = f.sandbox.create(&[], spec).unwrap();
    c.start().unwrap();
    let status = c.wait().unwrap();
    c.delete().unwrap();
    let stdout = std::fs::read_to_string(out.path().join("stdout")).unwrap();
    let stderr = std::fs::read_to_string(out.path().join("stderr")).unwrap();
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    let host_os = std::fs::read_to_string("/etc/os-release").unwrap();
    let first = host_os.lines().next().unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], first, "{stdout}");
    assert_eq!(lines[1], "written");
    assert_eq!(lines[2], "code");
    assert_eq!(lines[3], "/app");
    assert_eq!(lines[4], "0", "/run is not empty: {stdout}");
    // The script itself shows up in the cmdline line: match computed text.
    assert!(!stdout.contains("docker-sock-42"), "{stdout}");
    assert!(stdout.contains("tmp-42"), "{stdout}");
    assert!(lines.last().unwrap().starts_with("/bin/sh -c"), "{stdout}");
    // Its writes stayed in its own layer.
    assert!(
        !std::path::Path::new(&marker).exists(),
        "{marker} was written to the host"
    );
}
