//! Applying a plan: each step's container made (its rootfs, mounts,
//! environment, namespaces, ports) and started.

use super::*;

/// `stdin_open: true`: the container's stdin stays open, as docker keeps a
/// pipe to it: a FIFO in the container's directory, handed over opened for
/// reading and writing, so the container holds a writer itself and a read
/// waits instead of seeing end of file, whatever happens to the supervisor.
pub(super) fn open_stdin_fifo(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("stdin");
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|e| io_err(&path)(std::io::Error::other(e)))?;
    // SAFETY: mkfifo on a valid C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(io_err(&path)(e));
        }
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err(&path))?;
    Ok(OwnedFd::from(f))
}

/// The environment a runtime brings: its `bin` first on `PATH` (ahead of
/// the image's, or the user's own `PATH`), the shared npm cache and the CA
/// bundle. The service's own settings for the latter win.
pub(super) fn runtime_env(
    runtime: Option<&RuntimeMount>,
    config: &ContainerConfig,
    svc: &Service,
) -> Vec<String> {
    let Some(r) = runtime else {
        return Vec::new();
    };
    let path = svc
        .environment
        .get("PATH")
        .cloned()
        .flatten()
        .or_else(|| {
            config
                .env
                .iter()
                .flatten()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        })
        .unwrap_or_else(|| berth_sandbox::DEFAULT_PATH.to_string());
    let mut env = vec![format!("PATH={RUNTIME_DIR}/bin:{path}")];
    if r.npm_cache.is_some() {
        env.push(format!("npm_config_cache={NPM_CACHE_DIR}"));
        // Take what the cache has without asking the registry again: npm ≥ 5
        // reads prefer-offline, older ones cache-min (seconds).
        env.push("npm_config_prefer_offline=true".to_string());
        env.push("npm_config_cache_min=86400".to_string());
    }
    if r.ca_bundle.is_some() {
        env.push(format!("NODE_EXTRA_CA_CERTS={CA_BUNDLE}"));
        env.push(format!("npm_config_cafile={CA_BUNDLE}"));
    }
    env
}

impl ProjectRuntime {
    /// Apply `plan` (made from [`observed`](Self::observed)) to reach
    /// `project`. `progress` hears one line per step. On error the step that
    /// failed is undone; the steps before it stay applied.
    pub fn apply(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        plan: &Plan,
        progress: &dyn Fn(&str),
    ) -> Result<()> {
        unsupported::check(project).map_err(EngineError::Unsupported)?;
        self.ensure_networks(project)?;
        for step in &plan.steps {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(EngineError::Interrupted);
            }
            let service = step.service.as_str();
            match &step.action {
                Action::Nothing { .. } => {}
                Action::Create { number, name } => {
                    progress(&format!("Container {name}  Creating"));
                    self.create(project, images, service, *number, name, None, None)?;
                    progress(&format!("Container {name}  Started"));
                }
                Action::Start { container } | Action::Restart { container } => {
                    let i = self.index(container)?;
                    self.stop(i, None);
                    self.respawn(i)?;
                    progress(&format!("Container {container}  Started"));
                }
                Action::Recreate {
                    container,
                    number,
                    strategy,
                    renew_anonymous_volumes,
                } => {
                    let i = self.index(container)?;
                    let inherit =
                        (!renew_anonymous_volumes).then(|| self.live[i].anonymous.clone());
                    let mut swap = *strategy == Strategy::StartFirst
                        && self.live[i].running()
                        && self.live[i].proxy.is_some();
                    // Two copies on one anonymous volume (an image VOLUME:
                    // a database's data directory) corrupt it, as on the
                    // Docker engine: the old one goes first.
                    let carried: Vec<&str> = inherit
                        .iter()
                        .flatten()
                        .map(|a| a.target.as_str())
                        .collect();
                    if swap && !carried.is_empty() {
                        progress(&format!(
                            "Container {container}  stop-first: it keeps its anonymous volumes ({}), which two copies must not share",
                            carried.join(", ")
                        ));
                        swap = false;
                    }
                    if swap {
                        progress(&format!("Container {container}  Swapping (start-first)"));
                        self.swap(project, images, service, *number, i, inherit)?;
                        progress(&format!("Container {container}  Swapped"));
                    } else {
                        progress(&format!("Container {container}  Recreating"));
                        let grace = self.stop_timeout(i, None);
                        self.stop(i, Some(grace));
                        let mut old = self.live.remove(i);
                        let proxy = old.proxy.take();
                        let kept: Vec<PathBuf> = match &inherit {
                            Some(v) => v.iter().map(|a| a.dir.clone()).collect(),
                            None => Vec::new(),
                        };
                        self.discard(old, &kept);
                        self.create(project, images, service, *number, container, inherit, proxy)?;
                        progress(&format!("Container {container}  Started"));
                    }
                }
                Action::ScaleDown { container } | Action::RemoveOrphan { container } => {
                    progress(&format!("Container {container}  Removing"));
                    let i = self.index(container)?;
                    let grace = self.stop_timeout(i, None);
                    self.stop(i, Some(grace));
                    let old = self.live.remove(i);
                    self.discard(old, &[]);
                    progress(&format!("Container {container}  Removed"));
                }
            }
            self.release_volumes();
        }
        self.refresh_hosts();
        Ok(())
    }

    /// Make, start and register one container. `inherit` carries the
    /// anonymous volumes of the container it replaces; `proxy` its bound
    /// ports, switched to the new one (else ports are bound here, so a port
    /// in use fails before anything runs).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn create(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        number: u32,
        name: &str,
        inherit: Option<Vec<AnonymousVolume>>,
        proxy: Option<ProxySet>,
    ) -> Result<usize> {
        self.wait_dependencies(project, service)?;
        let mut live = self.prepare(project, images, service, number, name, inherit)?;
        let bound = match proxy {
            Some(p) => match &live.netns {
                Some(ns) => p
                    .switch_netns(ns)
                    .map(|_| p)
                    .map_err(|e| svc_err(service, e)),
                None => Ok(p),
            },
            None => self.bind_ports(&live),
        };
        let proxy = match bound {
            Ok(p) => p,
            Err(e) => {
                self.discard(live, &[]);
                return Err(e);
            }
        };
        live.proxy = Some(proxy);
        if let Err(e) = self.spawn(&mut live) {
            self.discard(live, &[]);
            return Err(e);
        }
        self.live.push(live);
        let i = self.live.len() - 1;

        // A dependency others wait on to complete must exit 0 first.
        let awaited = project.services.values().any(|s| {
            s.depends_on
                .get(service)
                .is_some_and(|d| d.condition == "service_completed_successfully")
        });
        if awaited {
            let l = &mut self.live[i];
            let container = l.container.as_mut().expect("just spawned");
            let status = container.wait().map_err(|e| svc_err(service, e))?;
            l.exited = Some(status);
            if !status.success() {
                return Err(svc_err(
                    service,
                    format!(
                        "exited with code {} before its dependants could start",
                        status.code()
                    ),
                ));
            }
        }
        self.refresh_hosts();
        Ok(i)
    }

    pub(super) fn bind_ports(&self, live: &Live) -> Result<ProxySet> {
        let publishes = ports::publishes(&live.svc.ports, live.netns.as_deref())
            .map_err(|e| svc_err(&live.service, e))?;
        if publishes.is_empty() {
            return Ok(ProxySet::default());
        }
        // `x-berth: {protocol: http|tcp|auto}`: how a swap drains the
        // port's connections (checked before anything is made).
        let protocol = unsupported::port_protocol(&live.svc);
        ProxySet::bind_each(
            publishes.into_iter().map(|p| (p, protocol)),
            &ProxyOptions::default(),
        )
        .map_err(|e| svc_err(&live.service, format!("{}: {e}", live.name)))
    }

    /// Everything but the process: namespace, address, files, volumes.
    pub(super) fn prepare(
        &mut self,
        project: &Project,
        images: &BTreeMap<String, ServiceImage>,
        service: &str,
        number: u32,
        name: &str,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<Live> {
        let svc = project
            .services
            .get(service)
            .ok_or_else(|| svc_err(service, "not in the project"))?
            .clone();
        let wanted = images
            .get(service)
            .ok_or_else(|| svc_err(service, "no image (build or pull it first)"))?;
        // Never the host's root: an x-runtime service gets a base image
        // (see the CLI's `runtime_base`), with the runtime mounted on top.
        let image_name = wanted.name.as_ref().ok_or_else(|| {
            svc_err(
                service,
                "no image to run on (an x-runtime needs a base image)",
            )
        })?;
        let image = self
            .engine
            .store
            .image(image_name, &Platform::host())
            .map_err(|e| svc_err(service, e))?;
        let layers = self
            .engine
            .sandbox
            .layers()
            .unpack_image(&self.engine.store, &image)
            .map_err(|e| svc_err(service, e))?;
        let config = image.config.config;
        let restart = RestartPolicy::of_service(svc.restart.as_deref(), svc.extra.get("deploy"))
            .map_err(|e| svc_err(service, e))?;
        let check = HealthCheck::resolve(svc.healthcheck.as_ref(), &config)
            .map_err(|e| svc_err(service, e))?;
        // userns_mode and logging.driver were checked with the project
        // (unsupported.rs), before anything was made.
        let mounted = svc
            .volumes_from()
            .into_iter()
            .filter_map(|vf| match vf {
                VolumesFrom::Service { name, .. } => {
                    let digest = images.get(&name)?.digest.clone();
                    Some((name, digest))
                }
                _ => None,
            })
            .collect();
        let mut live = Live {
            service: service.to_string(),
            number,
            name: name.to_string(),
            id: incarnation_id(name),
            config_hash: effective_hash(&svc, self.files.get(service)),
            image_digest: wanted.digest.clone(),
            mounted,
            named_volumes: Vec::new(),
            svc,
            config,
            runtime: wanted.runtime.clone(),
            layers,
            mounts: Vec::new(),
            volume_mounts: Vec::new(),
            anonymous: Vec::new(),
            container: None,
            netns: None,
            owns_netns: false,
            ip: None,
            attachments: Vec::new(),
            exited: None,
            proxy: None,
            restart,
            restarts: 0,
            started_at: Instant::now(),
            backoff: None,
            restart_at: None,
            user_stopped: false,
            check,
            health: None,
            one_off: false,
            paused: false,
            stdio: None,
            output: None,
        };
        match self.prepare_in(project, &mut live, inherit) {
            Ok(()) => Ok(live),
            Err(e) => {
                self.discard(live, &[]);
                Err(e)
            }
        }
    }

    pub(super) fn prepare_in(
        &mut self,
        project: &Project,
        live: &mut Live,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<()> {
        let service = live.service.clone();
        match live.svc.network_mode.as_deref() {
            Some("host") | Some("none") => {}
            Some(mode) if mode.starts_with("service:") => {
                let other = &mode["service:".len()..];
                let theirs = self
                    .current(other)
                    .and_then(|l| l.netns.clone().map(|ns| (ns, l.ip)))
                    .ok_or_else(|| {
                        svc_err(
                            &service,
                            format!("network_mode {mode}: {other} has no network namespace"),
                        )
                    })?;
                live.netns = Some(theirs.0);
                live.ip = theirs.1;
            }
            Some(mode) if mode.starts_with("container:") => {
                let other = &mode["container:".len()..];
                let theirs = self
                    .live
                    .iter()
                    .rev()
                    .find(|l| l.name == other)
                    .and_then(|l| l.netns.clone().map(|ns| (ns, l.ip)))
                    .ok_or_else(|| {
                        svc_err(
                            &service,
                            format!("network_mode {mode}: no such container in this project"),
                        )
                    })?;
                live.netns = Some(theirs.0);
                live.ip = theirs.1;
            }
            _ => {
                let ns = format!("berth-{}", live.id);
                let path = berth_network::create_netns(&ns).map_err(|e| svc_err(&service, e))?;
                // Before any interface is up: no link-local address ever
                // appears, so glibc never sends AAAA queries.
                berth_network::disable_ipv6(&path).map_err(|e| svc_err(&service, e))?;
                live.netns = Some(path.clone());
                live.owns_netns = true;
                let wanted = service_networks(project, &live.svc, &service);
                // The default route goes out of the first network that has one;
                // a container only on internal networks has none.
                // (the highest gw_priority among them, then network order).
                let first_routed = wanted
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| !w.internal)
                    .max_by(|(i, a), (j, b)| a.gw_priority.cmp(&b.gw_priority).then(j.cmp(i)))
                    .map(|(i, _)| i);
                for (n, w) in wanted.iter().enumerate() {
                    let ip = match &w.ipv4_address {
                        Some(a) => Some(a.parse().map_err(|_| {
                            svc_err(
                                &service,
                                format!("networks.{}.ipv4_address: invalid address {a:?}", w.key),
                            )
                        })?),
                        None => None,
                    };
                    let bad = |k: &str, a: &str| {
                        svc_err(
                            &service,
                            format!("networks.{}.{k}: invalid address {a:?}", w.key),
                        )
                    };
                    let ipv6 = match &w.ipv6_address {
                        Some(a) => Some(a.parse().map_err(|_| bad("ipv6_address", a))?),
                        None => None,
                    };
                    let link_local = w
                        .link_local_ips
                        .iter()
                        .map(|a| a.parse().map_err(|_| bad("link_local_ips", a)))
                        .collect::<Result<Vec<IpAddr>>>()?;
                    let ep = self.engine.networks.attach(
                        &w.network,
                        &live.id,
                        &path,
                        ip,
                        &AttachOptions {
                            ifname: w
                                .interface_name
                                .clone()
                                .unwrap_or_else(|| format!("eth{n}")),
                            default_route: Some(n) == first_routed,
                            ipv6,
                            link_local,
                            // The service's own goes to its first network
                            // (checked against that network's own).
                            mac: w.mac_address.clone().or_else(|| {
                                let own = live.svc.extra.get("mac_address");
                                own.filter(|_| n == 0)
                                    .and_then(|v| unsupported::mac_address(v).ok())
                            }),
                        },
                    )?;
                    live.ip.get_or_insert(IpAddr::V4(ep.ip));
                    live.attachments.push(Attachment {
                        network: w.network.clone(),
                        ip: IpAddr::V4(ep.ip),
                        aliases: w.aliases.clone(),
                    });
                }
            }
        }

        let dir = live.files(&self.engine.state);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let dns: Vec<IpAddr> = string_list(live.svc.extra.get("dns"))
            .iter()
            .map(|d| {
                d.parse()
                    .map_err(|_| svc_err(&service, format!("dns: invalid address {d:?}")))
            })
            .collect::<Result<_>>()?;
        let base = if dns.is_empty() {
            ResolvConf::for_containers()
                .map_err(|e| svc_err(&service, format!("cannot prepare resolv.conf: {e}")))?
        } else {
            // Explicit servers: the host's may all be unusable, and need not be read.
            ResolvConf::for_containers().unwrap_or_default()
        };
        let resolv = base
            .with_overrides(
                &dns,
                &string_list(live.svc.extra.get("dns_search")),
                &string_list(live.svc.extra.get("dns_opt")),
            )
            .map_err(|e| svc_err(&service, e))?
            .render(None);
        fs::write(dir.join("resolv.conf"), &resolv).map_err(io_err(&dir))?;
        fs::write(dir.join("hosts"), self.hosts_for(live)).map_err(io_err(&dir))?;
        live.mounts = vec![
            bind(dir.join("hosts"), "/etc/hosts", false),
            bind(dir.join("resolv.conf"), "/etc/resolv.conf", false),
        ];
        self.project_files(live, &dir)?;
        self.volumes(project, live, inherit)?;
        for t in string_list(live.svc.extra.get("tmpfs")) {
            let (target, size, mode) = unsupported::tmpfs_options(&t)
                .map_err(|e| svc_err(&service, format!("tmpfs: {e}")))?;
            live.mounts.push(MountSpec {
                target,
                kind: MountKind::Tmpfs { size, mode },
            });
        }
        Ok(())
    }

    /// Its secrets and configs: copies with their owner and mode in the
    /// container's own directory (gone with it), mounted read-only.
    pub(super) fn project_files(&self, live: &mut Live, dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let Some(files) = self.files.get(&live.service) else {
            return Ok(());
        };
        let store = dir.join("files");
        fs::create_dir_all(&store).map_err(io_err(&store))?;
        for (i, f) in files.iter().enumerate() {
            let path = store.join(format!("{i}"));
            let _ = fs::remove_file(&path);
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io_err(&path))?;
            out.write_all(&f.content).map_err(io_err(&path))?;
            std::os::unix::fs::fchown(&out, Some(f.uid), Some(f.gid)).map_err(io_err(&path))?;
            out.set_permissions(fs::Permissions::from_mode(f.mode))
                .map_err(io_err(&path))?;
            live.mounts.push(bind(path, &f.target, true));
        }
        Ok(())
    }

    /// Create and start the container process of `live`.
    pub(super) fn spawn(&self, live: &mut Live) -> Result<()> {
        let mut spec = ContainerSpec {
            id: live.id.clone(),
            image: live.config.clone(),
            ..ContainerSpec::default()
        };
        spec.entrypoint = live.svc.entrypoint.clone();
        spec.cmd = live.svc.command.clone();
        spec.env = runtime_env(live.runtime.as_ref(), &live.config, &live.svc);
        spec.env.extend(
            live.svc
                .environment
                .iter()
                .filter(|(k, _)| !(live.runtime.is_some() && k.as_str() == "PATH"))
                .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}"))),
        );
        spec.working_dir = live.svc.working_dir.clone();
        spec.user = live.svc.user.clone();
        spec.hostname = Some(
            live.svc
                .hostname
                .clone()
                .unwrap_or_else(|| live.service.clone()),
        );
        spec.domainname = live
            .svc
            .extra
            .get("domainname")
            .and_then(|d| d.as_str())
            .filter(|d| !d.is_empty())
            .map(str::to_string);
        self.shared_namespaces(live, &mut spec)
            .map_err(|e| svc_err(&live.service, e))?;
        spec.mounts = live.mounts.clone();
        if let Some(r) = &live.runtime {
            spec.mounts.push(bind(r.root.clone(), RUNTIME_DIR, true));
            if let Some(cache) = &r.npm_cache {
                spec.mounts.push(bind(cache.clone(), NPM_CACHE_DIR, false));
            }
            if let Some(ca) = &r.ca_bundle {
                spec.mounts.push(bind(ca.clone(), CA_BUNDLE, true));
            }
        }
        spec.read_only_rootfs = live.svc.read_only == Some(true);
        resources::apply(&live.svc, &mut spec).map_err(|e| svc_err(&live.service, e))?;
        spec.init = live.svc.extra.get("init").and_then(|v| v.as_bool()) == Some(true);
        spec.network = match live.svc.network_mode.as_deref() {
            Some("host") => Network::Host,
            Some("none") => Network::None,
            _ => match &live.netns {
                Some(p) => Network::Netns(p.clone()),
                None => Network::None,
            },
        };
        let dir = live.files(&self.engine.state);
        if let Some([i, o, e]) = live.stdio.take() {
            spec.stdin = Stdio::Fd(i);
            spec.stdout = Stdio::Fd(o);
            spec.stderr = Stdio::Fd(e);
        } else {
            if live.output.is_none() {
                live.output = Some(output::OutputTail::open(&dir).map_err(io_err(&dir))?);
                self.logs
                    .configure(&live.name, live.svc.extra.get("logging"));
            }
            let path = dir.join("output");
            if live.svc.extra.get("tty").and_then(|v| v.as_bool()) == Some(true) {
                // `tty: true`: a terminal for all three streams; what the
                // container writes to it goes to the same output file.
                let stdin =
                    if live.svc.extra.get("stdin_open").and_then(|v| v.as_bool()) == Some(true) {
                        Some(open_stdin_fifo(&dir)?)
                    } else {
                        None
                    };
                let slave = pty::open(&path, stdin).map_err(io_err(&path))?;
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(io_err(&path));
                spec.stdin = Stdio::Fd(dup(&slave)?);
                spec.stdout = Stdio::Fd(dup(&slave)?);
                spec.stderr = Stdio::Fd(slave);
            } else {
                spec.stdout = Stdio::File(path.clone());
                spec.stderr = Stdio::File(path);
                if live.svc.extra.get("stdin_open").and_then(|v| v.as_bool()) == Some(true) {
                    spec.stdin = Stdio::Fd(open_stdin_fifo(&dir)?);
                }
            }
        }
        // Errors name the container as users know it, not its incarnation.
        let named = |e: berth_sandbox::SandboxError| {
            svc_err(&live.service, e.to_string().replace(&live.id, &live.name))
        };
        let mut container = self
            .engine
            .sandbox
            .create(&live.layers, spec)
            .map_err(named)?;
        if let Err(e) = container.start() {
            let _ = container.delete();
            return Err(named(e));
        }
        // post_start: once it runs, before anyone is told it started. A
        // failed hook fails the start (docker compose fails `up` too).
        let hooks = hooks::of(&live.svc, "post_start").map_err(|e| svc_err(&live.service, e))?;
        for hook in &hooks {
            let ran = hooks::run(
                &self.engine.sandbox,
                &live.id,
                hook,
                &dir.join("output"),
                None,
            );
            if let Err(e) = ran {
                let _ = container.delete();
                return Err(svc_err(
                    &live.service,
                    format!("post_start hook: {}", e.replace(&live.id, &live.name)),
                ));
            }
        }
        live.container = Some(container);
        live.exited = None;
        live.started_at = Instant::now();
        live.health = live.check.clone().map(|c| HealthState {
            tracker: health::Tracker::new(c, live.started_at),
            inflight: None,
        });
        self.event(Event::Started {
            container: live.name.clone(),
        });
        Ok(())
    }

    /// `ipc`, `pid`, `uts` and `cgroup`: the namespaces `live` shares.
    /// `service:NAME` and `container:NAME` join the other container's; an
    /// IPC namespace is shareable unless the service says `private`, so
    /// that others can join it (docker's default before 20.10).
    pub(super) fn shared_namespaces(
        &self,
        live: &Live,
        spec: &mut ContainerSpec,
    ) -> std::result::Result<(), String> {
        let mode = |k: &str| live.svc.extra.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let other = |k: &str, m: &str| -> std::result::Result<Option<String>, String> {
            let found = if let Some(service) = m.strip_prefix("service:") {
                self.current(service).filter(|l| l.running())
            } else if let Some(name) = m.strip_prefix("container:") {
                self.live
                    .iter()
                    .rev()
                    .find(|l| l.name == name && l.running())
            } else {
                return Ok(None);
            };
            found
                .map(|l| Some(l.id.clone()))
                .ok_or_else(|| format!("{k} {m}: no running container to share it with"))
        };
        spec.ipc = match mode("ipc") {
            "private" => Ipc::Private,
            "host" => Ipc::Host,
            m => match other("ipc", m)? {
                Some(id) => Ipc::Container(id),
                None => Ipc::Shareable,
            },
        };
        spec.pid = match mode("pid") {
            "host" => Namespace::Host,
            m => other("pid", m)?.map_or(Namespace::Private, Namespace::Container),
        };
        if mode("uts") == "host" {
            spec.uts = Namespace::Host;
            // The host's name, as with docker: a hostname cannot be set.
            spec.hostname = None;
        }
        spec.cgroup_private = mode("cgroup") == "private";
        Ok(())
    }
}
