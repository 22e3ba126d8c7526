//! `RUN` steps on the build's network.

use anyhow::{Context, Result};
use berth_image::builder;
use berth_oci::{Digest, Store};
use std::sync::Mutex;

/// The network `RUN` steps with the default network get: a namespace of
/// their own on a bridge of berth's (one per state directory, there while
/// builds use it), NAT'd outbound as containers
/// are, IPv6 off (this machine's resolver drops AAAA queries, and glibc
/// sends them whenever the namespace has IPv6: 5 s per lookup), and the
/// resolvers containers get. One namespace serves every such step of a
/// build (their processes never overlap); it goes when the build ends.
///
/// The sandbox runs a step with the host network in its caller's network
/// namespace (it makes none), so the step is run from this thread while it
/// has joined the build's namespace, and the thread returns afterwards.
pub struct BuildNetworkRunner<'r> {
    inner: &'r berth_sandbox::BuildRunner,
    netns: Mutex<Option<BuildNetns>>,
}

/// The network of this state directory's builds: its bridge is named
/// after it, so the builds of another state directory (another user's, a
/// test's) have their own.
fn build_network() -> String {
    let state = berth_oci::store::state_dir();
    format!(
        "build-{}",
        &Digest::of(state.to_string_lossy().as_bytes()).hex()[..10]
    )
}

struct BuildNetns {
    networks: berth_network::Networks,
    name: String,
    file: std::fs::File,
    /// The resolv.conf of its steps (removed with it).
    resolv: std::path::PathBuf,
}

impl Drop for BuildNetns {
    fn drop(&mut self) {
        let _ = self.networks.detach(&build_network(), &self.name);
        let _ = berth_network::delete_netns(&self.name);
        let _ = std::fs::remove_file(&self.resolv);
        // The bridge and its rules go with the last build using them (a
        // build still attached keeps them: removal then fails, harmlessly).
        let _ = self.networks.remove(&build_network());
    }
}

impl<'r> BuildNetworkRunner<'r> {
    pub fn new(inner: &'r berth_sandbox::BuildRunner) -> BuildNetworkRunner<'r> {
        BuildNetworkRunner {
            inner,
            netns: Mutex::new(None),
        }
    }

    fn open_netns() -> Result<BuildNetns> {
        let networks = berth_network::Networks::open(
            berth_oci::store::state_dir().join("network"),
            address_pool()?,
        );
        networks
            .create(&build_network(), &Default::default())
            .context("creating the network of RUN steps")?;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "berth-build-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let path = berth_network::create_netns(&name)?;
        let resolv = berth_oci::store::state_dir()
            .join("network")
            .join(format!("{name}.resolv.conf"));
        let ns = BuildNetns {
            file: std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?,
            networks: networks.clone(),
            name: name.clone(),
            resolv,
        };
        // Before any interface is up, so no IPv6 address ever appears.
        berth_network::disable_ipv6(&path)?;
        let attached = networks.attach(&build_network(), &name, &path, None, &Default::default());
        if let Err(berth_network::Error::NotFound(_)) = attached {
            // The last other build removed the network between our create
            // and attach: make it again.
            networks.create(&build_network(), &Default::default())?;
            networks.attach(&build_network(), &name, &path, None, &Default::default())?;
        } else {
            attached?;
        }
        let conf = berth_network::ResolvConf::for_containers()?;
        std::fs::write(&ns.resolv, conf.render(None))?;
        Ok(ns)
    }
}

/// The pool networks take subnets from, as the engine reads it
/// (`BERTH_ADDRESS_POOL=base/bits[,size]`), so the build's network never
/// overlaps a project's.
fn address_pool() -> Result<berth_network::PoolConfig> {
    let Ok(text) = std::env::var("BERTH_ADDRESS_POOL") else {
        return Ok(Default::default());
    };
    let (base, size) = match text.split_once(',') {
        Some((b, s)) => (
            b,
            s.trim()
                .parse::<u8>()
                .with_context(|| format!("BERTH_ADDRESS_POOL={text:?}: size"))?,
        ),
        None => (text.as_str(), 24),
    };
    let base = base
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("BERTH_ADDRESS_POOL={text:?}: {e}"))?;
    berth_network::PoolConfig::new(base, size)
        .map_err(|e| anyhow::anyhow!("BERTH_ADDRESS_POOL={text:?}: {e}"))
}

/// This thread inside a network namespace until [`Joined::leave`] (or drop).
struct Joined {
    home: Option<std::fs::File>,
}

impl Joined {
    fn enter(ns: &std::fs::File) -> std::io::Result<Joined> {
        use std::os::fd::AsRawFd;
        let home = std::fs::File::open("/proc/thread-self/ns/net")?;
        // SAFETY: setns with a namespace fd we hold; CLONE_NEWNET makes the
        // kernel refuse anything else. It changes this thread only.
        if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Joined { home: Some(home) })
    }

    fn leave(mut self) -> std::io::Result<()> {
        self.back()
    }

    fn back(&mut self) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let Some(home) = self.home.take() else {
            return Ok(());
        };
        // SAFETY: as in `enter`, with the namespace this thread came from.
        if unsafe { libc::setns(home.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        if self.back().is_err() {
            // Anything this thread did next would be in the build's
            // namespace: stopping is the only safe thing left.
            eprintln!("error: cannot return from the build's network namespace");
            std::process::exit(1);
        }
    }
}

impl builder::RunSteps for BuildNetworkRunner<'_> {
    fn run(
        &self,
        store: &Store,
        step: &builder::RunStep,
        output: &mut dyn FnMut(&str),
        commit: &mut dyn FnMut(
            &std::path::Path,
        )
            -> std::result::Result<Option<berth_oci::Digest>, builder::RunError>,
    ) -> std::result::Result<builder::RunOutcome, builder::RunError> {
        if step.network != builder::RunNetwork::Default {
            return self.inner.run(store, step, output, commit);
        }
        // Held only to make or look up the namespace: steps of parallel
        // stages run in it side by side.
        let (file, resolv) = {
            let mut slot = self.netns.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                *slot = Some(Self::open_netns().map_err(|e| format!("{e:#}"))?);
            }
            let Some(ns) = slot.as_ref() else {
                return Err("the build's network namespace is gone".into());
            };
            (ns.file.try_clone()?, ns.resolv.clone())
        };
        let mut step = step.clone();
        step.mounts.push(builder::RunMount {
            target: "/etc/resolv.conf".into(),
            kind: builder::RunMountKind::Bind {
                source: resolv,
                read_only: true,
            },
        });
        let joined = Joined::enter(&file)?;
        let result = self.inner.run(store, &step, output, commit);
        joined.leave()?;
        result
    }
}
