//! Time a `true` container through its whole life: create → start → exit →
//! delete, over N runs (default 50), on an image built from Debian's
//! `busybox-static`. Needs root.
//!
//! ```text
//! cargo run --release -p berth-sandbox --example bench_true [-- RUNS [copy]]
//! ```

use berth_image::layer::{LayerBuilder, Owner};
use berth_oci::spec::{ContainerConfig, RootFs};
use berth_oci::{media, ImageConfig, ImageManifest, Platform, Store};
use berth_sandbox::{ContainerSpec, RootfsMode, Sandbox};
use std::path::Path;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(50);
    let mode = match args.next().as_deref() {
        Some("copy") => RootfsMode::Copy,
        _ => RootfsMode::Overlay,
    };
    if !Path::new("/bin/busybox").is_file() {
        return Err("/bin/busybox is missing: apt-get install -y busybox-static".into());
    }
    let dir = tempfile::tempdir()?;
    let store = Store::open(dir.path().join("images"))?;
    let mut l = LayerBuilder::new(&store)?;
    l.add_dir("bin", 0o755, Owner::ROOT)?;
    l.add_file("bin/busybox", Path::new("/bin/busybox"), 0o755, Owner::ROOT)?;
    l.add_symlink("bin/true", "busybox", Owner::ROOT)?;
    let layer = l.finish()?;
    let config = ImageConfig {
        architecture: Platform::host().architecture,
        os: "linux".into(),
        config: ContainerConfig {
            cmd: Some(vec!["/bin/true".into()]),
            ..Default::default()
        },
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: vec![layer.diff_id.clone()],
        },
        ..Default::default()
    };
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(media::OCI_MANIFEST.into()),
        config: store.put_json(media::OCI_CONFIG, &config)?,
        layers: vec![layer.descriptor],
        annotations: Default::default(),
        extra: Default::default(),
    };
    store.tag(
        "bench:true",
        &store.put_json(media::OCI_MANIFEST, &manifest)?,
    )?;
    let image = store.image("bench:true", &Platform::host())?;
    let sandbox = Sandbox::open(dir.path())?.with_rootfs_mode(mode);
    let layers = sandbox.layers().unpack_image(&store, &image)?;

    let fds_before = open_fds();
    let cwd_before = std::env::current_dir()?;
    let (mut total, mut create, mut run, mut delete) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let t0 = Instant::now();
        let mut c = sandbox.create(&layers, ContainerSpec::new(format!("bench-{i}"), &image))?;
        let t1 = Instant::now();
        c.start()?;
        let status = c.wait()?;
        let t2 = Instant::now();
        c.delete()?;
        let t3 = Instant::now();
        if !status.success() {
            return Err(format!("run {i}: `true` exited with {status:?}").into());
        }
        create.push(t1 - t0);
        run.push(t2 - t1);
        delete.push(t3 - t2);
        total.push(t3 - t0);
    }
    println!("{runs} runs of `true` ({mode:?} rootfs), median (p10..p90):");
    for (name, v) in [
        ("create", &mut create),
        ("start+wait", &mut run),
        ("delete", &mut delete),
        ("total", &mut total),
    ] {
        v.sort();
        let pct = |p: usize| ms(v[(v.len() - 1) * p / 100]);
        println!(
            "  {name:<11} {:>7.2} ms ({:.2}..{:.2})",
            pct(50),
            pct(10),
            pct(90)
        );
    }
    // libcontainer chdirs and clones the whole process: check it leaves
    // neither fds nor a changed cwd behind.
    println!(
        "  open fds before/after: {fds_before}/{}, cwd unchanged: {}",
        open_fds(),
        std::env::current_dir()? == cwd_before
    );
    Ok(())
}

fn open_fds() -> usize {
    let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|p| p.display().to_string())
                .collect()
        })
        .unwrap_or_default();
    if std::env::var_os("BENCH_SHOW_FDS").is_some() {
        eprintln!("fds: {fds:?}");
    }
    fds.len()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
