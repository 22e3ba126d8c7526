//! Building images from Dockerfiles into a real store, the seed first.

use crate::support::make_true_image;
use berth_image::builder::{build, BaseImages, BuildRequest, DockerfileSource, Silent};
use berth_oci::{Platform, Store};
use std::fs;
use std::path::{Path, PathBuf};

/// Base images from the store only, under docker's naming defaults.
pub struct StoreOnly;

impl BaseImages for StoreOnly {
    fn ensure(
        &self,
        store: &Store,
        reference: &str,
        _pull: bool,
        _p: &Platform,
    ) -> Result<String, String> {
        let full = if reference.contains('/') {
            format!("docker.io/{reference}")
        } else {
            format!("docker.io/library/{reference}")
        };
        let full = if full.rsplit('/').next().is_some_and(|l| l.contains(':')) {
            full
        } else {
            format!("{full}:latest")
        };
        match store.resolve(&full) {
            Ok(Some(_)) => Ok(full),
            _ => Err(format!("{reference} is not in the store")),
        }
    }
}

pub fn request(context: &Path, tag: &str) -> BuildRequest {
    BuildRequest {
        context: context.to_path_buf(),
        dockerfile: DockerfileSource::Path("Dockerfile".into()),
        build_args: Default::default(),
        target: None,
        labels: Default::default(),
        tags: vec![tag.to_string()],
        no_cache: false,
        pull: false,
        platform: Platform::host(),
        secrets: Default::default(),
        network: None,
        extra_hosts: Vec::new(),
        shm_size: None,
        ssh: Default::default(),
        cache_from: Vec::new(),
        named_contexts: Default::default(),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn seed_context(dir: &Path) -> PathBuf {
    let ctx = dir.join("seed");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed"),
        &ctx,
    );
    fs::create_dir_all(ctx.join("node_modules/left-pad")).unwrap();
    fs::write(
        ctx.join("node_modules/left-pad/index.js"),
        "module.exports = 1",
    )
    .unwrap();
    fs::create_dir_all(ctx.join(".git")).unwrap();
    fs::write(ctx.join(".git/HEAD"), "ref: refs/heads/main").unwrap();
    ctx
}

/// The files of an image's layers, unpacked in order.
fn unpack_image(store: &Store, name: &str, into: &Path) {
    let img = store.image(name, &Platform::host()).unwrap();
    for l in &img.manifest.layers {
        let f = store.open_blob(&l.digest).unwrap();
        let r = berth_image::unpack::decompress(Box::new(f)).unwrap();
        berth_image::unpack::unpack(
            r,
            into,
            berth_image::unpack::UnpackOptions {
                whiteouts: true,
                ..Default::default()
            },
        )
        .unwrap();
    }
}

#[test]
fn seed_code_image_builds_with_the_right_contents_and_a_stable_digest() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    make_true_image(&store, "docker.io/tianon/true:latest");
    let ctx = seed_context(dir.path());

    let first = build(&store, &request(&ctx, "seed-code:1"), &StoreOnly, &Silent).unwrap();
    let out = dir.path().join("rootfs");
    unpack_image(&store, "seed-code:1", &out);
    assert_eq!(
        fs::read(out.join("app/index.js")).unwrap(),
        fs::read(ctx.join("index.js")).unwrap()
    );
    assert!(out.join("app/package.json").is_file());
    assert!(out.join("true").is_file(), "the base layer comes first");
    assert!(
        !out.join("app/node_modules").exists(),
        ".dockerignore leaves node_modules out"
    );
    assert!(
        !out.join("app/.git").exists(),
        ".dockerignore leaves .git out"
    );
    let img = store.image("seed-code:1", &Platform::host()).unwrap();
    assert!(img
        .config
        .config
        .volumes
        .as_ref()
        .unwrap()
        .contains_key("/app"));
    assert_eq!(
        img.config.config.cmd.as_deref(),
        Some(&["/true".to_string()][..])
    );

    // Unchanged inputs: the same digest, and the ADD step comes from the cache.
    let again = build(&store, &request(&ctx, "seed-code:2"), &StoreOnly, &Silent).unwrap();
    assert_eq!(again.manifest.digest, first.manifest.digest);
    assert_eq!(again.cached_steps, 1);
    // Also without the cache: reproducible, not just remembered.
    let mut fresh = request(&ctx, "seed-code:3");
    fresh.no_cache = true;
    let rebuilt = build(&store, &fresh, &StoreOnly, &Silent).unwrap();
    assert_eq!(rebuilt.manifest.digest, first.manifest.digest);
    assert_eq!(rebuilt.cached_steps, 0);
    // Changes under ignored paths change nothing.
    fs::write(ctx.join("node_modules/left-pad/index.js"), "changed").unwrap();
    assert_eq!(
        build(&store, &request(&ctx, "seed-code:4"), &StoreOnly, &Silent)
            .unwrap()
            .manifest
            .digest,
        first.manifest.digest
    );

    // New code: a new digest.
    fs::write(ctx.join("index.js"), "console.log('v2')\n").unwrap();
    let changed = build(&store, &request(&ctx, "seed-code:5"), &StoreOnly, &Silent).unwrap();
    assert_ne!(changed.manifest.digest, first.manifest.digest);
    assert!(store.fsck().unwrap().problems.is_empty());
}

#[test]
fn instructions_shape_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(ctx.join("conf")).unwrap();
    fs::write(ctx.join("conf/app.ini"), "x=1").unwrap();
    fs::write(ctx.join("Dockerfile"), INSTRUCTIONS).unwrap();
    let mut req = request(&ctx, "cfg:1");
    req.build_args.insert("VERSION".into(), "2.5".into());
    build(&store, &req, &StoreOnly, &Silent).unwrap();
    let img = store.image("cfg:1", &Platform::host()).unwrap();
    let c = &img.config.config;
    let env = c.env.clone().unwrap();
    assert!(env.contains(&"APP_HOME=/srv/app".to_string()), "{env:?}");
    assert!(env.contains(&"VERSION=2.5".to_string()), "{env:?}");
    assert_eq!(c.working_dir.as_deref(), Some("/srv/app"));
    assert_eq!(c.labels.as_ref().unwrap()["org.example.version"], "2.5");
    assert!(c.exposed_ports.as_ref().unwrap().contains_key("53/udp"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        c.entrypoint.as_deref(),
        Some(&["/srv/app/run".to_string()][..])
    );
    assert_eq!(
        c.cmd.as_deref(),
        Some(
            &[
                "/bin/sh".to_string(),
                "-c".into(),
                "serve --port 3000".into()
            ][..]
        )
    );
    assert_eq!(
        c.healthcheck.as_ref().unwrap()["Interval"],
        5_000_000_000u64
    );
    let out = dir.path().join("rootfs");
    unpack_image(&store, "cfg:1", &out);
    assert_eq!(
        fs::read_to_string(out.join("srv/app/conf/app.ini")).unwrap(),
        "x=1"
    );
    assert_eq!(
        fs::read_to_string(out.join("etc/motd")).unwrap(),
        "version 2.5\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(out.join("etc/app.ini"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
}

const INSTRUCTIONS: &str = "ARG BASE=scratch
FROM ${BASE} AS base
ARG VERSION=1.0
ENV APP_HOME=/srv/app VERSION=${VERSION}
WORKDIR $APP_HOME
COPY conf/ ./conf/
COPY --chmod=600 conf/app.ini /etc/app.ini
COPY <<EOT /etc/motd
version ${VERSION}
EOT
LABEL org.example.version=$VERSION
EXPOSE 3000 53/udp
USER 1000:1000
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=3 CMD [\"/check\"]
ENTRYPOINT [\"/srv/app/run\"]
CMD serve --port 3000
";

#[test]
fn add_extracts_archives_and_refuses_hostile_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    tar.append_data(&mut h, "pkg/readme", &b"hello"[..])
        .unwrap();
    let bytes = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    fs::write(ctx.join("pkg.tar.gz"), gz.finish().unwrap()).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nADD pkg.tar.gz /opt/\n",
    )
    .unwrap();
    build(&store, &request(&ctx, "add:1"), &StoreOnly, &Silent).unwrap();
    let out = dir.path().join("rootfs");
    unpack_image(&store, "add:1", &out);
    assert_eq!(
        fs::read_to_string(out.join("opt/pkg/readme")).unwrap(),
        "hello"
    );

    // An archive with an entry climbing out of its root.
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_old_mut().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    let mut evil = tar::Builder::new(Vec::new());
    evil.append(&h, &b"x"[..]).unwrap();
    fs::write(ctx.join("evil.tar"), evil.into_inner().unwrap()).unwrap();
    fs::write(ctx.join("Dockerfile"), "FROM scratch\nADD evil.tar /opt/\n").unwrap();
    let before = store.references().unwrap();
    let err = build(&store, &request(&ctx, "add:2"), &StoreOnly, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dockerfile:2: ADD") && err.contains("escapes"),
        "{err}"
    );
    assert_eq!(store.references().unwrap(), before);
    assert!(store.fsck().unwrap().problems.is_empty());
}

#[test]
fn errors_name_the_file_line_and_instruction() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let cases = [
        ("FROM scratch\nCOPY missing.txt /x\n", "Dockerfile:2: COPY"),
        ("FROM scratch\nENV\n", "Dockerfile"),
        ("FROM nothere:1\n", "nothere:1"),
        ("FROM scratch\nRUN echo hi\n", "Dockerfile:2: RUN"),
        (
            "FROM scratch\nCOPY ../outside /x\n",
            "outside the build context",
        ),
    ];
    for (text, want) in cases {
        fs::write(ctx.join("Dockerfile"), text).unwrap();
        let err = build(&store, &request(&ctx, "bad:1"), &StoreOnly, &Silent)
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{text:?}: {err}");
    }
    assert!(store.references().unwrap().is_empty());
}

#[test]
fn multi_stage_copy_from_a_stage_and_an_image() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    make_true_image(&store, "docker.io/tianon/true:latest");
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(ctx.join("src")).unwrap();
    fs::write(ctx.join("src/app.js"), "console.log(1)").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS assets\nCOPY src/ /build/out/\nFROM scratch\nCOPY --from=assets /build/out/app.js /app/app.js\nCOPY --from=tianon/true /true /bin/true\nCOPY --from=0 /build /copy-of-build\n",
    )
    .unwrap();
    build(&store, &request(&ctx, "multi:1"), &StoreOnly, &Silent).unwrap();
    let out = dir.path().join("rootfs");
    unpack_image(&store, "multi:1", &out);
    assert_eq!(
        fs::read_to_string(out.join("app/app.js")).unwrap(),
        "console.log(1)"
    );
    assert!(out.join("bin/true").is_file());
    assert!(out.join("copy-of-build/out/app.js").is_file());
    assert!(
        !out.join("build").exists(),
        "the first stage's files stay out of the final image"
    );
    // The target option stops at a named stage.
    let mut req = request(&ctx, "multi:assets");
    req.target = Some("assets".into());
    build(&store, &req, &StoreOnly, &Silent).unwrap();
    let img = store.image("multi:assets", &Platform::host()).unwrap();
    assert_eq!(img.manifest.layers.len(), 1);
    assert_eq!(
        fs::read_dir(store.root().join("ingest")).unwrap().count(),
        0,
        "scratch dirs are cleaned up"
    );
}

/// Named contexts (compose `build.additional_contexts`): a directory is
/// what `FROM name` starts from and `COPY --from=name` reads (its own
/// `.dockerignore` applied); an image context stands in for the image of
/// that name; a stage of the Dockerfile with the same name wins over a
/// context, as in BuildKit; a change in the directory changes the image.
#[test]
fn named_contexts_are_directories_or_images_behind_from_and_copy_from() {
    use berth_image::builder::NamedContext;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    make_true_image(&store, "docker.io/tianon/true:latest");
    let ctx = dir.path().join("ctx");
    let shared = dir.path().join("shared");
    fs::create_dir_all(&ctx).unwrap();
    fs::create_dir_all(shared.join("lib")).unwrap();
    fs::write(shared.join("lib/util.js"), "exports.v = 1").unwrap();
    fs::write(shared.join("secret.key"), "not for images").unwrap();
    fs::write(shared.join(".dockerignore"), "*.key\n").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS stagename\nCOPY Dockerfile /from-the-stage\n\
         FROM shared\nCOPY --from=shared /lib/util.js /copied/util.js\n\
         COPY --from=tools /true /bin/true\nCOPY --from=stagename /from-the-stage /\n",
    )
    .unwrap();
    let mut req = request(&ctx, "named:1");
    req.named_contexts = [
        ("shared".to_string(), NamedContext::Dir(shared.clone())),
        (
            "tools".to_string(),
            NamedContext::Image("tianon/true".into()),
        ),
        (
            "stagename".to_string(),
            NamedContext::Dir(dir.path().join("nowhere")),
        ),
    ]
    .into_iter()
    .collect();
    let first = build(&store, &req, &StoreOnly, &Silent).unwrap();
    let out = dir.path().join("rootfs");
    unpack_image(&store, "named:1", &out);
    assert_eq!(
        fs::read_to_string(out.join("lib/util.js")).unwrap(),
        "exports.v = 1",
        "FROM a directory context starts from its files"
    );
    assert!(
        !out.join("secret.key").exists(),
        "its .dockerignore applies"
    );
    assert_eq!(
        fs::read_to_string(out.join("copied/util.js")).unwrap(),
        "exports.v = 1"
    );
    assert!(out.join("bin/true").is_file(), "an image context");
    assert!(out.join("from-the-stage").is_file(), "the stage wins");

    let again = build(&store, &req, &StoreOnly, &Silent).unwrap();
    assert_eq!(again.manifest.digest, first.manifest.digest);
    assert_eq!(again.cached_steps, again.steps);
    fs::write(shared.join("lib/util.js"), "exports.v = 2").unwrap();
    let changed = build(&store, &req, &StoreOnly, &Silent).unwrap();
    assert_ne!(changed.manifest.digest, first.manifest.digest);
    let out = dir.path().join("rootfs2");
    unpack_image(&store, "named:1", &out);
    assert_eq!(
        fs::read_to_string(out.join("copied/util.js")).unwrap(),
        "exports.v = 2"
    );
}

/// `COPY --from` unpacks only the trees its sources can name: several
/// sources, a wildcard below a literal directory, a link kept as a link.
#[test]
fn copy_from_reads_the_trees_its_sources_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(ctx.join("real")).unwrap();
    fs::write(ctx.join("real/file.txt"), "in real").unwrap();
    fs::write(ctx.join("real/b.bin"), "bin").unwrap();
    fs::write(ctx.join("other.txt"), "other").unwrap();
    std::os::unix::fs::symlink("real", ctx.join("link")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY . /st/\nFROM scratch\nCOPY --from=0 /st/link /lnk\n\
         COPY --from=0 /st/other.txt /st/real/ /both/\nCOPY --from=0 /st/real/*.bin /bins/\n",
    )
    .unwrap();
    build(&store, &request(&ctx, "subset:1"), &StoreOnly, &Silent).unwrap();
    let out = dir.path().join("rootfs");
    unpack_image(&store, "subset:1", &out);
    assert_eq!(fs::read_link(out.join("lnk")).unwrap(), Path::new("real"));
    assert_eq!(
        fs::read_to_string(out.join("both/other.txt")).unwrap(),
        "other"
    );
    assert_eq!(
        fs::read_to_string(out.join("both/file.txt")).unwrap(),
        "in real"
    );
    assert_eq!(fs::read_to_string(out.join("bins/b.bin")).unwrap(), "bin");
    assert!(!out.join("bins/file.txt").exists());
}

/// A one-shot HTTP server on loopback serving `body` for any GET.
fn serve_once(body: &'static [u8]) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(4) {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_from_a_url_with_checksum() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    let base = serve_once(b"downloaded content");
    let good = berth_oci::Digest::of(b"downloaded content");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD --checksum={good} {base}/files/data.txt /opt/\n"),
    )
    .unwrap();
    build(&store, &request(&ctx, "url:1"), &StoreOnly, &Silent).unwrap();
    let out = dir.path().join("rootfs");
    unpack_image(&store, "url:1", &out);
    assert_eq!(
        fs::read_to_string(out.join("opt/data.txt")).unwrap(),
        "downloaded content"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        fs::metadata(out.join("opt/data.txt"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let bad = berth_oci::Digest::of(b"something else");
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nADD --checksum={bad} {base}/files/data.txt /opt/\n"),
    )
    .unwrap();
    let err = build(&store, &request(&ctx, "url:2"), &StoreOnly, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dockerfile:2: ADD") && err.contains("checksum mismatch"),
        "{err}"
    );
    assert!(store.resolve("url:2").unwrap().is_none());
}

#[test]
fn from_platform_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM --platform=linux/arm64 scratch\nARG TARGETARCH\nENV ARCH=$TARGETARCH\n",
    )
    .unwrap();
    build(&store, &request(&ctx, "plat:1"), &StoreOnly, &Silent).unwrap();
    let desc = store.resolve("plat:1").unwrap().unwrap();
    let m = store.read_manifest(&desc.digest).unwrap();
    let c = store.read_config(&m.config.digest).unwrap();
    assert_eq!(c.architecture, "arm64");
    fs::write(ctx.join("Dockerfile"), "FROM --platform=nonsense scratch\n").unwrap();
    let err = build(&store, &request(&ctx, "plat:2"), &StoreOnly, &Silent)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--platform=nonsense"), "{err}");
}

#[test]
fn chown_by_name_reads_the_images_passwd() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let ctx = dir.path().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("passwd"),
        "root:x:0:0::/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n",
    )
    .unwrap();
    fs::write(ctx.join("group"), "root:x:0:\nstaff:x:50:\n").unwrap();
    fs::write(ctx.join("app.js"), "1").unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS base\nCOPY passwd group /etc/\nFROM base\nCOPY --chown=node:staff app.js /app/app.js\n",
    )
    .unwrap();
    build(&store, &request(&ctx, "chown:1"), &StoreOnly, &Silent).unwrap();
    let img = store.image("chown:1", &Platform::host()).unwrap();
    let top = img.manifest.layers.last().unwrap();
    let mut ar = tar::Archive::new(store.open_blob(&top.digest).unwrap());
    let entry = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_str() == Some("app/app.js"))
        .unwrap();
    assert_eq!(
        (entry.header().uid().unwrap(), entry.header().gid().unwrap()),
        (1000, 50)
    );
    fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY --chown=ghost app.js /app.js\n",
    )
    .unwrap();
    let err = build(&store, &request(&ctx, "chown:2"), &StoreOnly, &Silent)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Dockerfile:2: COPY") && err.contains("no user \"ghost\""),
        "{err}"
    );
}
