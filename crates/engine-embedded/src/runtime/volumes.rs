//! Volumes: named, anonymous (populated from the image, carried over or
//! renewed), bind mounts, tmpfs; released once nothing mounts them.

use super::*;
use crate::unsupported::{local_volume, LocalVolume};

pub(super) fn tmpfs_size(m: &Mount) -> Option<u64> {
    let size = m.extra.get("tmpfs")?.get("size")?;
    match size {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => berth_compose::units::parse_bytes(s),
        _ => None,
    }
}

pub(super) fn tmpfs_mode(m: &Mount) -> Option<u32> {
    unsupported::tmpfs_mode(m.extra.get("tmpfs")?.get("mode")?)
}

pub(super) fn bind(source: PathBuf, target: &str, read_only: bool) -> MountSpec {
    MountSpec {
        target: target.to_string(),
        kind: MountKind::Bind { source, read_only },
    }
}

impl ProjectRuntime {
    pub(super) fn volumes(
        &self,
        project: &Project,
        live: &mut Live,
        inherit: Option<Vec<AnonymousVolume>>,
    ) -> Result<()> {
        let service = live.service.clone();
        let mut out: Vec<MountSpec> = Vec::new();
        for vf in live.svc.volumes_from() {
            let (theirs, read_only) = match vf {
                VolumesFrom::Service { name, read_only } => (
                    self.current(&name)
                        .ok_or_else(|| svc_err(&service, format!("volumes_from {name}: it has no container")))?,
                    read_only,
                ),
                VolumesFrom::Container { name, read_only } => (
                    self.live
                        .iter()
                        .rev()
                        .find(|l| l.name == name)
                        .ok_or_else(|| svc_err(&service, format!("volumes_from container:{name}: no such container in this project")))?,
                    read_only,
                ),
            };
            for m in &theirs.volume_mounts {
                if let MountKind::Bind {
                    source,
                    read_only: ro,
                } = &m.kind
                {
                    out.push(bind(source.clone(), &m.target, *ro || read_only));
                }
            }
        }
        let inherited = inherit.unwrap_or_default();
        let anonymous = |target: &str, live: &mut Live| -> PathBuf {
            let dir = inherited
                .iter()
                .find(|a| a.target == target)
                .map(|a| a.dir.clone())
                .unwrap_or_else(|| self.anonymous_dir(&live.id, target));
            live.anonymous.push(AnonymousVolume {
                target: target.to_string(),
                dir: dir.clone(),
            });
            dir.join("_data")
        };
        for m in &live.svc.volumes.clone() {
            match m.kind.as_str() {
                "bind" => {
                    let src = PathBuf::from(m.source.clone().unwrap_or_default());
                    // `create_host_path: false`: a missing source is an
                    // error (the project's check names it before `up`
                    // makes anything; this covers a path removed since).
                    let create = m
                        .extra
                        .get("bind")
                        .and_then(|b| b.get("create_host_path"))
                        .and_then(|c| c.as_bool())
                        != Some(false);
                    if !src.exists() && !create {
                        return Err(svc_err(
                            &service,
                            format!(
                                "bind source {} does not exist (create_host_path is false)",
                                src.display()
                            ),
                        ));
                    }
                    if !src.exists() {
                        fs::create_dir_all(&src).map_err(io_err(&src))?;
                    }
                    out.push(bind(src, &m.target, m.read_only == Some(true)));
                }
                "tmpfs" => out.push(MountSpec {
                    target: m.target.clone(),
                    kind: MountKind::Tmpfs {
                        size: tmpfs_size(m),
                        mode: tmpfs_mode(m),
                    },
                }),
                _ => {
                    let data = match &m.source {
                        Some(named) => {
                            let decl = project.volumes.get(named);
                            let full = decl
                                .and_then(|v| v.name.clone())
                                .unwrap_or_else(|| format!("{}_{named}", project.name));
                            let local = match decl {
                                Some(d) => {
                                    local_volume(named, d).map_err(EngineError::Unsupported)?
                                }
                                None => None,
                            };
                            let dir = volume_dir(&self.engine.state, &full)
                                .map_err(|e| svc_err(&service, format!("volumes.{named}: {e}")))?;
                            match local {
                                Some(LocalVolume::Bind { device, read_only }) => {
                                    live.named_volumes.push(full.clone());
                                    let ro = read_only || m.read_only == Some(true);
                                    out.push(bind(device, &m.target, ro));
                                    continue;
                                }
                                Some(LocalVolume::Tmpfs { flags, data }) => {
                                    let data_dir = dir.join("_data");
                                    mount_tmpfs(&data_dir, flags, &data).map_err(|e| {
                                        svc_err(
                                            &service,
                                            format!("volumes.{named}: mounting its tmpfs: {e}"),
                                        )
                                    })?;
                                    live.named_volumes.push(full.clone());
                                    out.push(bind(data_dir, &m.target, m.read_only == Some(true)));
                                    continue;
                                }
                                None => {}
                            }
                            if decl.and_then(|v| v.external) == Some(true) && !dir.is_dir() {
                                return Err(svc_err(
                                    &service,
                                    format!("volume {full} is declared as external, but could not be found"),
                                ));
                            }
                            live.named_volumes.push(full.clone());
                            dir.join("_data")
                        }
                        None => anonymous(&m.target, live),
                    };
                    // `volume: {nocopy: true}`: a new volume starts empty
                    // instead of with the image's files at its target.
                    let nocopy = m
                        .extra
                        .get("volume")
                        .and_then(|v| v.get("nocopy"))
                        .and_then(|v| v.as_bool())
                        == Some(true);
                    if nocopy {
                        fs::create_dir_all(&data).map_err(io_err(&data))?;
                    } else {
                        self.prepare_volume(&data, &live.layers, &m.target, &service)?;
                    }
                    let subpath = m
                        .extra
                        .get("volume")
                        .and_then(|v| v.get("subpath"))
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.is_empty());
                    let source = match subpath {
                        Some(sub) => {
                            let n = out.len();
                            mount_subpath(&self.engine.state, &live.id, n, &data, sub).map_err(
                                |e| {
                                    svc_err(
                                        &service,
                                        format!(
                                            "volumes {}: subpath {sub}: {e}",
                                            m.source.as_deref().unwrap_or_default()
                                        ),
                                    )
                                },
                            )?
                        }
                        None => data,
                    };
                    out.push(bind(source, &m.target, m.read_only == Some(true)));
                }
            }
        }
        // The image's VOLUMEs not covered above become anonymous volumes.
        let image_volumes: Vec<String> = live
            .config
            .volumes
            .iter()
            .flat_map(|v| v.keys().cloned())
            .collect();
        for target in image_volumes {
            if out.iter().any(|m| m.target == target) {
                continue;
            }
            let data = anonymous(&target, live);
            self.prepare_volume(&data, &live.layers, &target, &service)?;
            out.push(bind(data, &target, false));
        }
        live.volume_mounts = out
            .iter()
            .filter(|m| matches!(m.kind, MountKind::Bind { .. }))
            .cloned()
            .collect();
        live.mounts.extend(out);
        Ok(())
    }

    pub(super) fn anonymous_dir(&self, id: &str, target: &str) -> PathBuf {
        let digest = berth_oci::Digest::of(format!("{id}\0{target}").as_bytes());
        self.engine
            .state
            .join("volumes")
            .join(format!("anon-{}", &digest.hex()[..24]))
    }

    /// A new volume is filled from the image's content at its mount point.
    pub(super) fn prepare_volume(
        &self,
        dir: &Path,
        layers: &[PathBuf],
        target: &str,
        service: &str,
    ) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        // Populate beside it and rename: a crash never leaves a half-filled
        // volume that the next start would take as complete.
        let parent = dir.parent().unwrap_or(dir);
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = parent.join("_data.tmp");
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
        berth_sandbox::populate(layers, target, &tmp)
            .map_err(|e| svc_err(service, format!("populating the volume at {target}: {e}")))?;
        fs::rename(&tmp, dir).map_err(io_err(dir))
    }

    /// Remove released anonymous volumes that no container mounts any more.
    pub(super) fn release_volumes(&mut self) {
        let live = &self.live;
        let retiring = self.retiring.iter().map(|r| &r.live);
        let all: Vec<&Live> = live.iter().chain(retiring).collect();
        self.released.retain(|dir| {
            let used = all.iter().any(|l| {
                l.mounts.iter().any(|m| match &m.kind {
                    MountKind::Bind { source, .. } => source.starts_with(dir),
                    _ => false,
                })
            });
            if !used {
                let _ = fs::remove_dir_all(dir);
            }
            used
        });
    }
}

/// Whether `dir` is the root of a mount (its device differs from its
/// parent's).
pub(super) fn is_mountpoint(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = dir.parent().unwrap_or(dir);
    match (fs::metadata(dir), fs::metadata(parent)) {
        (Ok(d), Ok(p)) => d.dev() != p.dev(),
        _ => false,
    }
}

/// Mount the tmpfs of a tmpfs volume at `dir` unless it is there already
/// (another container of the project mounts the volume).
fn mount_tmpfs(dir: &Path, flags: libc::c_ulong, data: &str) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    fs::create_dir_all(dir)?;
    if is_mountpoint(dir) {
        return Ok(());
    }
    let target = std::ffi::CString::new(dir.as_os_str().as_bytes())?;
    let data = std::ffi::CString::new(data)?;
    // SAFETY: every pointer is a NUL-terminated string that outlives the call.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            flags,
            data.as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmount the tmpfs of a tmpfs volume (its content goes with it, as with
/// docker once no container mounts it). Only a tmpfs is ever unmounted.
pub(crate) fn unmount_tmpfs_volume(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if !is_mountpoint(dir) {
        return;
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let shown = dir.to_string_lossy();
    let tmpfs = mountinfo.lines().any(|l| {
        let fields: Vec<&str> = l.split(' ').collect();
        let fstype = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
        fields.get(4) == Some(&shown.as_ref()) && fstype == Some("tmpfs")
    });
    if !tmpfs {
        return;
    }
    if let Ok(target) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Where the part of a volume a mount shows (`volume: {subpath: …}`) is
/// bound for a container: a directory of its own, outside every directory
/// berth ever removes recursively (a removal must never reach into the
/// volume through this mount).
fn subpath_dir(state: &Path) -> PathBuf {
    state.join("subpaths")
}

/// Bind `subpath` of the volume at `data` on a staging path of container
/// `id` (its `n`th mount), and return that path for the container to bind.
/// The path is resolved beneath the volume without following any symlink
/// (`openat2` with `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`) and mounted
/// through the descriptor, so a symlink a container planted in the volume
/// cannot make berth mount anything outside it.
fn mount_subpath(
    state: &Path,
    id: &str,
    n: usize,
    data: &Path,
    subpath: &str,
) -> std::io::Result<PathBuf> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::ffi::OsStrExt;
    let dir = fs::File::open(data)?;
    let path = std::ffi::CString::new(subpath)?;
    // The kernel's `struct open_how` (libc's cannot be built outside it).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (libc::O_PATH | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve: libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    };
    // SAFETY: openat2 with a directory fd we own, a NUL-terminated path and
    // an open_how of the size given; the result is a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned from here on.
    let target = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let is_dir = fs::metadata(format!("/proc/self/fd/{}", target.as_raw_fd()))?.is_dir();
    let parent = subpath_dir(state);
    fs::create_dir_all(&parent)?;
    let staging = parent.join(format!("{id}.{n}"));
    unmount_staging(&staging);
    if is_dir {
        fs::create_dir_all(&staging)?;
    } else if !staging.exists() {
        fs::File::create(&staging)?;
    }
    let source = std::ffi::CString::new(format!("/proc/self/fd/{}", target.as_raw_fd()))?;
    let dest = std::ffi::CString::new(staging.as_os_str().as_bytes())?;
    // SAFETY: NUL-terminated strings that outlive the call.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            dest.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(staging)
}

/// Unmount a staging path and remove it, never recursively: whatever is
/// still mounted there stays, with its content.
fn unmount_staging(staging: &Path) {
    use std::os::unix::ffi::OsStrExt;
    if let Ok(c) = std::ffi::CString::new(staging.as_os_str().as_bytes()) {
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
    let _ = fs::remove_dir(staging).or_else(|_| fs::remove_file(staging));
}

/// Unmount the subpath mounts of container `id` (see [`mount_subpath`]).
pub(crate) fn unmount_subpaths(state: &Path, id: &str) {
    let prefix = format!("{id}.");
    let Ok(entries) = fs::read_dir(subpath_dir(state)) else {
        return;
    };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(&prefix) {
            unmount_staging(&e.path());
        }
    }
}
