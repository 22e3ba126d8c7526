//! `RUN` steps executed in berth's sandbox, on a busybox-only image built in
//! the test (no registry): layers, whiteouts, cache, mounts, secrets and
//! failures. Needs root, overlayfs and `busybox` (static) on the host.

use crate::build::{request, StoreOnly};
use berth_image::builder::{build_with, BuildProgress, BuildRequest, Built, SecretSource};
use berth_oci::{Platform, Store};
use berth_sandbox::BuildRunner;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A build context holding a static busybox, a store and a sandbox.
struct Fixture {
    tmp: tempfile::TempDir,
    ctx: PathBuf,
    store: Store,
    sandbox: PathBuf,
    runner: BuildRunner,
}

/// The lines every Dockerfile here starts with: busybox as the whole image.
const BUSYBOX: &str =
    "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";

fn fixture(dockerfile: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let ctx = tmp.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::copy("/usr/bin/busybox", ctx.join("busybox")).unwrap();
    fs::write(ctx.join("Dockerfile"), format!("{BUSYBOX}{dockerfile}")).unwrap();
    let store = Store::open(tmp.path().join("images")).unwrap();
    let sandbox = tmp.path().join("sandbox");
    Fixture {
        runner: BuildRunner::new(&sandbox),
        ctx,
        store,
        sandbox,
        tmp,
    }
}

/// Collects what a build prints.
#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl BuildProgress for Lines {
    fn step(&self, _: usize, _: usize, _: usize, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
    fn cached(&self, _: usize, _: usize) {}
    fn note(&self, text: &str) {
        self.0.lock().unwrap().push(text.to_string());
    }
    fn output(&self, _: usize, _: usize, line: &str) {
        self.0.lock().unwrap().push(line.to_string());
    }
}

impl Fixture {
    fn build(&self, tag: &str, edit: impl FnOnce(&mut BuildRequest)) -> Result<Built, String> {
        self.build_logged(tag, edit, &Lines::default())
    }

    fn build_logged(
        &self,
        tag: &str,
        edit: impl FnOnce(&mut BuildRequest),
        lines: &Lines,
    ) -> Result<Built, String> {
        let mut req = request(&self.ctx, tag);
        edit(&mut req);
        build_with(&self.store, &req, &StoreOnly, &self.runner, lines).map_err(|e| e.to_string())
    }

    /// Every layer's entry names, bottom first.
    fn layer_entries(&self, tag: &str) -> Vec<Vec<String>> {
        let image = self.store.image(tag, &Platform::host()).unwrap();
        image
            .manifest
            .layers
            .iter()
            .map(|l| {
                let blob = self.store.open_blob(&l.digest).unwrap();
                tar::Archive::new(blob)
                    .entries()
                    .unwrap()
                    .map(|e| {
                        let e = e.unwrap();
                        let path = e.path().unwrap();
                        path.to_string_lossy().trim_end_matches('/').to_string()
                    })
                    .collect()
            })
            .collect()
    }

    /// The image's filesystem, whiteouts applied.
    fn rootfs(&self, tag: &str) -> PathBuf {
        let image = self.store.image(tag, &Platform::host()).unwrap();
        let dir = self
            .tmp
            .path()
            .join(format!("rootfs-{}", tag.replace([':', '/'], "-")));
        for l in &image.manifest.layers {
            let blob = self.store.open_blob(&l.digest).unwrap();
            let opts = berth_image::unpack::UnpackOptions {
                whiteouts: true,
                ..Default::default()
            };
            berth_image::unpack::unpack(blob, &dir, opts).unwrap();
        }
        dir
    }

    /// Nothing of a step is left: no bundle, no scratch dir, no mount.
    fn assert_clean(&self) {
        for d in ["bundles", "build"] {
            let left: Vec<_> = fs::read_dir(self.sandbox.join(d))
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "left in {d}: {left:?}");
        }
        let mounts = fs::read_to_string("/proc/self/mounts").unwrap();
        let root = self.tmp.path().to_string_lossy().to_string();
        assert!(
            !mounts.contains(&root),
            "a mount is left under {root}:\n{mounts}"
        );
        let ingest: Vec<_> = fs::read_dir(self.store.root().join("ingest"))
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            !ingest
                .iter()
                .any(|n| n.to_string_lossy().starts_with("run-")),
            "scratch files left: {ingest:?}"
        );
    }
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn run_steps_become_layers_and_are_cached() {
    let f = fixture(
        r#"ARG WHO=world
ENV GREETING=hello
WORKDIR /work
RUN echo "$GREETING $WHO from $(pwd)" > out && mkdir -p /gone/sub /tmp && chmod 1777 /tmp && echo x > /gone/sub/f
RUN rm -rf /gone && printf 'root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/tmp:/bin/sh\n' > /etc/passwd && echo "app:x:1234:" > /etc/group
USER app
RUN ["/bin/sh", "-c", "id -u > /tmp/uid"]
USER root
SHELL ["/bin/sh", "-ec"]
RUN <<EOF
echo "heredoc sees $GREETING" > /work/heredoc
EOF
RUN <<SCRIPT
#!/bin/sh
echo "script $0" > /work/script
SCRIPT
RUN cat <<A > /work/two && cat <<-'B' >> /work/two
expanded $GREETING
A
	literal $GREETING
	B
"#,
    );
    let first = f.build("run:1", |_| {}).unwrap();
    let root = f.rootfs("run:1");
    assert_eq!(read(&root, "work/out"), "hello world from /work\n");
    assert_eq!(read(&root, "tmp/uid"), "1234\n");
    assert_eq!(read(&root, "work/heredoc"), "heredoc sees hello\n");
    assert_eq!(read(&root, "work/script"), "script /dev/pipes/SCRIPT\n");
    assert_eq!(
        read(&root, "work/two"),
        "expanded hello\nliteral $GREETING\n"
    );
    assert!(!root.join("gone").exists());
    let layers = f.layer_entries("run:1");
    assert!(
        layers.iter().any(|l| l.iter().any(|e| e == ".wh.gone")),
        "the deletion is a whiteout: {layers:?}"
    );
    for l in &layers {
        for e in l {
            assert!(
                !["etc/hosts", "etc/resolv.conf", "proc", "sys", "dev"].contains(&e.as_str()),
                "build noise {e} in a layer: {l:?}"
            );
        }
    }
    f.assert_clean();

    let again = f.build("run:2", |_| {}).unwrap();
    assert_eq!(
        again.cached_steps,
        layers.len(),
        "every step that makes a layer is cached"
    );
    assert_eq!(again.manifest.digest, first.manifest.digest);
    let rerun = f.build("run:3", |r| r.no_cache = true).unwrap();
    assert_eq!(rerun.cached_steps, 0);
    // A changed ARG runs the steps that see it again.
    let changed = f
        .build("run:4", |r| {
            r.build_args.insert("WHO".into(), "you".into());
        })
        .unwrap();
    assert!(changed.cached_steps < changed.steps);
    assert_eq!(
        read(&f.rootfs("run:4"), "work/out"),
        "hello you from /work\n"
    );
}

#[test]
fn a_failing_step_says_where_and_why_and_leaves_nothing() {
    let f = fixture("RUN echo first words; echo last words >&2; exit 7\nRUN echo never\n");
    let err = f.build("fail:1", |_| {}).unwrap_err();
    assert!(err.contains("Dockerfile:4"), "{err}");
    assert!(err.contains("exit code 7"), "{err}");
    assert!(
        err.contains("first words") && err.contains("last words"),
        "{err}"
    );
    f.assert_clean();
    assert!(f.store.resolve("fail:1").unwrap().is_none());
}

#[test]
fn mounts_secrets_and_caches_stay_out_of_the_image() {
    const SECRET: &str = "s3cr3t-value-9f2c";
    let f = fixture(
        r#"RUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /secret-len && cat /run/secrets/tok
RUN --mount=type=secret,id=tok,env=TOK printf %s "$TOK" | wc -c > /env-len
RUN --mount=type=cache,target=/cache echo run >> /cache/log && wc -l < /cache/log > /cache-count
RUN --mount=type=bind,source=data,target=/data cat /data/f > /bound
RUN --mount=type=bind,source=data,target=/data,rw echo scribble > /data/f
RUN --mount=type=tmpfs,target=/scratch echo hi > /scratch/x && ls /scratch > /tmpfs-list
"#,
    );
    fs::create_dir_all(f.ctx.join("data")).unwrap();
    fs::write(f.ctx.join("data/f"), "from the context\n").unwrap();
    let secret_file = f.tmp.path().join("token");
    fs::write(&secret_file, SECRET).unwrap();
    let with_secret = |r: &mut BuildRequest| {
        r.secrets
            .insert("tok".into(), SecretSource::File(secret_file.clone()));
    };
    let lines = Lines::default();
    f.build_logged("m:1", with_secret, &lines).unwrap();
    let root = f.rootfs("m:1");
    assert_eq!(read(&root, "secret-len").trim(), SECRET.len().to_string());
    assert_eq!(read(&root, "env-len").trim(), SECRET.len().to_string());
    assert_eq!(read(&root, "cache-count").trim(), "1");
    assert_eq!(read(&root, "bound"), "from the context\n");
    assert_eq!(read(&root, "tmpfs-list"), "x\n");
    assert_eq!(
        fs::read_to_string(f.ctx.join("data/f")).unwrap(),
        "from the context\n",
        "an rw bind never writes the context"
    );
    for l in f.layer_entries("m:1") {
        for e in l {
            for gone in ["run", "cache", "data", "scratch"] {
                assert!(
                    e != gone && !e.starts_with(&format!("{gone}/")),
                    "mount point {e} in a layer"
                );
            }
        }
    }
    // The secret is in no blob of the store (layers, config, manifest)...
    let blobs = f.store.root().join("blobs/sha256");
    for b in fs::read_dir(&blobs).unwrap().flatten() {
        let bytes = fs::read(b.path()).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in blob {:?}",
            b.file_name()
        );
    }
    // ...nor in the build's output, though the step printed it.
    let printed = lines.0.lock().unwrap().join("\n");
    assert!(!printed.contains(SECRET), "{printed}");
    assert!(printed.contains("****"), "{printed}");
    f.assert_clean();

    // The cache mount keeps its content between builds.
    f.build("m:2", |r| {
        with_secret(r);
        r.no_cache = true;
    })
    .unwrap();
    assert_eq!(read(&f.rootfs("m:2"), "cache-count").trim(), "2");
    // A required secret that is missing is an error, not an empty file.
    fs::write(
        f.ctx.join("Dockerfile"),
        format!("{BUSYBOX}RUN --mount=type=secret,id=nope,required true\n"),
    )
    .unwrap();
    let err = f.build("m:3", |_| {}).unwrap_err();
    assert!(err.contains("\"nope\" is required"), "{err}");
}

#[test]
fn run_network_none_has_only_loopback() {
    let f = fixture("RUN --network=none ls /sys/class/net > /ifaces\n");
    f.build("net:1", |_| {}).unwrap();
    assert_eq!(read(&f.rootfs("net:1"), "ifaces"), "lo\n");
    let bad = fixture("RUN --network=bridge true\n");
    let err = bad.build("net:2", |_| {}).unwrap_err();
    assert!(err.contains("invalid network mode"), "{err}");
}

#[test]
fn a_symlinked_resolv_conf_keeps_build_noise_out_of_the_layer() {
    let f = fixture("COPY etc /etc\nRUN cat /etc/resolv.conf > /seen\n");
    fs::create_dir_all(f.ctx.join("etc")).unwrap();
    std::os::unix::fs::symlink("/run/real/resolv.conf", f.ctx.join("etc/resolv.conf")).unwrap();
    f.build("sym:1", |_| {}).unwrap();
    let layers = f.layer_entries("sym:1");
    assert_eq!(layers.last().unwrap(), &["seen"], "{layers:?}");
    f.assert_clean();
}

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn stop_requested() -> bool {
    STOP.load(std::sync::atomic::Ordering::SeqCst)
}

/// Asks to stop (as Ctrl-C does) once the step says it started.
struct StopOnStart;

impl BuildProgress for StopOnStart {
    fn step(&self, _: usize, _: usize, _: usize, _: &str) {}
    fn cached(&self, _: usize, _: usize) {}
    fn note(&self, _: &str) {}
    fn output(&self, _: usize, _: usize, line: &str) {
        if line == "started" {
            STOP.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

#[test]
fn an_interrupted_step_is_killed_and_leaves_nothing() {
    let mut f = fixture("RUN echo started; sleep 120\nRUN echo never > /never\n");
    f.runner = BuildRunner::new(&f.sandbox).with_interrupt(stop_requested);
    let req = request(&f.ctx, "stop:1");
    let err = build_with(&f.store, &req, &StoreOnly, &f.runner, &StopOnStart)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(err.contains("interrupted"), "{err}");
    f.assert_clean();
    assert!(f.store.resolve("stop:1").unwrap().is_none());
}

/// An image built by berth carries its build records: after the step cache
/// is pruned, a build naming it in `cache_from` answers every step from
/// it, while one without reruns them.
#[test]
fn cache_from_an_image_answers_steps_after_a_prune() {
    let f = fixture("RUN echo built > /stamp\nCOPY Dockerfile /Dockerfile\n");
    let first = f.build("cachefrom:1", |_| {}).unwrap();
    assert_eq!(first.cached_steps, 0);
    // A name a cache_from can find (the test's store knows docker.io names).
    f.store
        .tag("docker.io/library/cachefrom:1", &first.manifest)
        .unwrap();

    let pruned = berth_image::cache_mount::prune(f.store.root()).unwrap();
    assert!(pruned.step_records >= 3, "{pruned:?}");
    let cold = f.build("cachefrom:2", |_| {}).unwrap();
    assert_eq!(cold.cached_steps, 0, "the records are gone");

    berth_image::cache_mount::prune(f.store.root()).unwrap();
    let lines = Lines::default();
    let warm = f
        .build_logged(
            "cachefrom:3",
            |r| r.cache_from = vec!["cachefrom:1".into(), "missing:1".into()],
            &lines,
        )
        .unwrap();
    assert_eq!(warm.cached_steps, warm.steps, "every step from cache_from");
    assert_eq!(warm.manifest.digest, first.manifest.digest);
    // No build answers from the cache under --no-cache, cache_from or not.
    let fresh = f
        .build("cachefrom:4", |r| {
            r.cache_from = vec!["cachefrom:1".into()];
            r.no_cache = true
        })
        .unwrap();
    assert_eq!(fresh.cached_steps, 0);
}

/// A cache mount seeded `from=` a stage's directory (`source=`) starts with
/// its files and keeps what steps add across builds; `builder prune`
/// empties it; a `sharing=private` mount works alone.
#[test]
fn a_cache_mount_seeded_from_a_stage_persists_until_pruned() {
    let f = fixture("");
    fs::write(
        f.ctx.join("Dockerfile"),
        "FROM scratch AS tools\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         RUN mkdir -p /warm && echo seeded > /warm/file\n\
         FROM tools\n\
         RUN --mount=type=cache,id=c,target=/cache,from=tools,source=/warm,sharing=private \
         cat /cache/file && echo more >> /cache/file && echo lines $(wc -l < /cache/file)\n",
    )
    .unwrap();
    let lines = Lines::default();
    f.build_logged("seeded:1", |_| {}, &lines).unwrap();
    let log = lines.0.lock().unwrap().join("\n");
    assert!(log.contains("seeded\nlines 2"), "{log}");

    let lines = Lines::default();
    f.build_logged("seeded:2", |r| r.no_cache = true, &lines)
        .unwrap();
    let log = lines.0.lock().unwrap().join("\n");
    assert!(log.contains("lines 3"), "the cache kept the line: {log}");

    let pruned = berth_image::cache_mount::prune(f.store.root()).unwrap();
    assert_eq!(pruned.cache_mounts, 1, "{pruned:?}");
    let lines = Lines::default();
    f.build_logged("seeded:3", |r| r.no_cache = true, &lines)
        .unwrap();
    let log = lines.0.lock().unwrap().join("\n");
    assert!(log.contains("lines 2"), "pruned, seeded afresh: {log}");
    f.assert_clean();
}

/// `target` builds what it needs only: a stage based on an image no
/// registry here has is never fetched unless the target needs it; stages
/// are found by name and by index.
#[test]
fn a_target_builds_only_the_stages_it_needs() {
    let f = fixture("");
    fs::write(f.ctx.join("note"), "n").unwrap();
    fs::write(
        f.ctx.join("Dockerfile"),
        "# syntax=docker/dockerfile:1.7\n\
         FROM scratch AS tools\nCOPY busybox /bin/busybox\n\
         RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
         FROM hub-only/never-fetched:1 AS unneeded\nRUN echo no\n\
         FROM tools AS app\nCOPY --from=0 /bin/busybox /copy\nRUN test -x /copy\n\
         FROM app AS final\nCOPY note /note\n",
    )
    .unwrap();
    let lines = Lines::default();
    let built = f
        .build_logged("target:1", |r| r.target = Some("final".into()), &lines)
        .unwrap();
    let log = lines.0.lock().unwrap().join("\n");
    assert!(!log.contains("never-fetched"), "{log}");
    assert!(
        log.contains("# syntax=docker/dockerfile:1.7 ignored: berth's built-in"),
        "{log}"
    );
    assert_eq!(built.steps, 5, "{log}");
    let err = f
        .build("target:2", |r| r.target = Some("unneeded".into()))
        .unwrap_err();
    assert!(err.contains("hub-only/never-fetched:1"), "{err}");
}

/// Stages that do not need each other run at once: each of these two
/// waits (10 s at most) in a shared cache for the other's mark, which only
/// works if both run side by side; the last stage takes from both.
#[test]
fn independent_stages_run_side_by_side() {
    let f = fixture("");
    let wait = |me: &str, other: &str| {
        format!(
            "RUN --mount=type=cache,id=rendezvous,target=/r touch /r/{me} && \
             for i in $(seq 1 100); do [ -e /r/{other} ] && echo {me} met {other} > /{me} && exit 0; sleep 0.1; done; exit 1\n"
        )
    };
    fs::write(
        f.ctx.join("Dockerfile"),
        format!(
            "FROM scratch AS tools\nCOPY busybox /bin/busybox\n\
             RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
             FROM tools AS left\n{}\
             FROM tools AS right\n{}\
             FROM tools\nCOPY --from=left /left /left\nCOPY --from=right /right /right\n",
            wait("left", "right"),
            wait("right", "left")
        ),
    )
    .unwrap();
    f.build("parallel:1", |_| {}).unwrap();
    let root = f.rootfs("parallel:1");
    assert_eq!(read(&root, "left"), "left met right\n");
    assert_eq!(read(&root, "right"), "right met left\n");
    f.assert_clean();
}

/// `ONBUILD` triggers of a base image run in the build that uses it, first,
/// and are not passed on to the new image.
#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let f = fixture(
        "ONBUILD COPY note /from-trigger\nONBUILD RUN echo triggered > /ran\nRUN echo parent > /parent\n",
    );
    fs::write(f.ctx.join("note"), "copied by a trigger").unwrap();
    let parent = f.build("onbuild-parent:1", |_| {}).unwrap();
    f.store
        .tag("docker.io/library/onbuild-parent:1", &parent.manifest)
        .unwrap();
    let parent_root = f.rootfs("onbuild-parent:1");
    assert!(
        !parent_root.join("ran").exists(),
        "not in the parent itself"
    );

    fs::write(
        f.ctx.join("Child.Dockerfile"),
        "FROM onbuild-parent:1\nRUN cat /ran /from-trigger > /child\n",
    )
    .unwrap();
    let child = f
        .build("onbuild-child:1", |r| {
            r.dockerfile = berth_image::builder::DockerfileSource::Path("Child.Dockerfile".into())
        })
        .unwrap();
    assert_eq!(child.steps, 3, "two triggers and the child's RUN");
    let root = f.rootfs("onbuild-child:1");
    assert_eq!(read(&root, "child"), "triggered\ncopied by a trigger");
    let image = f.store.image("onbuild-child:1", &Platform::host()).unwrap();
    assert!(
        image.config.config.on_build.is_none(),
        "triggers are not inherited"
    );
}

/// A step's upper directory becomes its layer's directory in the layer
/// cache as it is (moved, not unpacked from the blob again): the last
/// step's layer is there though no step stacked on it, with the files
/// the blob holds; a later build stacking on it reads them.
#[test]
fn a_steps_upper_dir_becomes_its_cached_layer() {
    let f = fixture("RUN echo adopted > /a && mkdir -p /d/e && rm /bin/rm\n");
    f.build("adopt:1", |_| {}).unwrap();
    let image = f.store.image("adopt:1", &Platform::host()).unwrap();
    let top = image.config.rootfs.diff_ids.last().unwrap();
    let dir = f.sandbox.join("layers").join(top.hex());
    assert!(dir.is_dir(), "the last step's layer is not in the cache");
    assert_eq!(read(&dir, "a"), "adopted\n");
    assert!(dir.join("d/e").is_dir());
    use std::os::unix::fs::FileTypeExt;
    let rm = fs::symlink_metadata(dir.join("bin/rm")).unwrap();
    assert!(
        rm.file_type().is_char_device(),
        "a whiteout, as overlayfs keeps it"
    );
    f.assert_clean();
    fs::write(
        f.ctx.join("Dockerfile"),
        format!("{BUSYBOX}RUN echo adopted > /a && mkdir -p /d/e && rm /bin/rm\nRUN cat /a > /b && test ! -e /bin/rm\n"),
    )
    .unwrap();
    f.build("adopt:2", |_| {}).unwrap();
    assert_eq!(read(&f.rootfs("adopt:2"), "b"), "adopted\n");
}
