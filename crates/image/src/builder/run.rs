//! `RUN`: the command line (shell, exec form, heredocs), its environment,
//! its `--mount`s, its cache key, and its changes as a layer.

use super::{
    chain, push_layer, write_cache, BuildError, Builder, CacheEntry, Result, RunMount,
    RunMountKind, RunNetwork, RunOutcome, RunStep, ScratchDir, SecretSource, StageState,
};
use crate::context::EntryKind;
use crate::copy::image_path;
use berth_dockerfile::{expand, parse_mount, Command, Heredoc, MountType, ShellOrExec};
use berth_oci::Digest;
use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

/// Lines of a failed step's output shown with the error.
const TAIL_LINES: usize = 20;
/// Where BuildKit mounts a heredoc that is a script (`#!`).
const PIPES_DIR: &str = "/dev/pipes";

/// What a step's `--mount`s need while it runs; dropped (files removed,
/// locks released) when the step ends.
#[derive(Default)]
struct Prepared {
    mounts: Vec<RunMount>,
    /// Before `scratch`: a proxy stops before its socket's directory goes.
    proxies: Vec<crate::ssh_proxy::SshProxy>,
    scratch: Vec<ScratchDir>,
    leases: Vec<crate::cache_mount::CacheLease>,
    /// Secret values, hidden from the build's output.
    secrets: Vec<String>,
    /// `KEY=VALUE` from `type=secret,env=KEY` (and the ssh agent's
    /// `SSH_AUTH_SOCK`): in the step's environment only.
    env: Vec<String>,
    /// `type=ssh` mounts so far.
    ssh: usize,
}

impl Builder<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run_step(
        &mut self,
        state: &mut StageState,
        cmd: &Command,
        line: &ShellOrExec,
        mounts: &[String],
        network: Option<&str>,
        heredocs: &[Heredoc],
        done: &[(Option<String>, StageState)],
        at: (usize, usize),
    ) -> Result<bool> {
        let env_pairs = state.env_pairs();
        let mut prepared = Prepared::default();
        let argv = self.run_argv(state, cmd, line, heredocs, &mut prepared)?;
        let env = run_env(state);
        let network_name = network
            .or(self.req.network.as_deref())
            .unwrap_or("default")
            .to_ascii_lowercase();
        let network = match network_name.as_str() {
            "default" | "" => RunNetwork::Default,
            "none" => RunNetwork::None,
            "host" => RunNetwork::Host,
            other => {
                return Err(self.fail(
                    cmd,
                    format!("--network={other}: expected default, none or host"),
                ))
            }
        };
        let workdir = state.workdir();
        let user = state.config.config.user.clone().filter(|u| !u.is_empty());
        let mut parts: Vec<String> = vec!["RUN".into(), format!("{argv:?}"), format!("{env:?}")];
        parts.push(format!("user={}", user.as_deref().unwrap_or("")));
        parts.push(format!("workdir={workdir}"));
        parts.push(format!("network={network_name}"));
        for raw in mounts {
            let spec = expand(raw, &env_pairs, self.escape)
                .map_err(|e| self.fail(cmd, format!("--mount={raw}: {e}")))?;
            // The spec names a secret, never holds its bytes.
            parts.push(format!("mount={spec}"));
            let key = self.prepare_mount(cmd, &spec, state, done, &mut prepared)?;
            parts.push(key);
        }
        if !self.req.extra_hosts.is_empty() && network != RunNetwork::None {
            let mut hosts = String::from(
                "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n",
            );
            for (name, addr) in &self.req.extra_hosts {
                hosts.push_str(&format!("{addr}\t{name}\n"));
            }
            parts.push(format!("hosts={hosts}"));
            let dir = self.scratch_dir("hosts")?;
            let path = dir.0.join("hosts");
            write_private(&path, hosts.as_bytes(), 0o644).map_err(|source| BuildError::Io {
                path: path.clone(),
                source,
            })?;
            prepared.mounts.push(RunMount {
                target: "/etc/hosts".into(),
                kind: RunMountKind::Bind {
                    source: path,
                    read_only: true,
                },
            });
            prepared.scratch.push(dir);
        }
        if let Some(size) = self.req.shm_size {
            parts.push(format!("shm={size}"));
            prepared.mounts.push(RunMount {
                target: "/dev/shm".into(),
                kind: RunMountKind::Tmpfs { size: Some(size) },
            });
        }
        let key = chain(
            &state.key,
            &parts.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let cache_file = self.cache_dir.join(key.hex());
        if let Some(layer) = self.cached_layer(&key) {
            state.key = key;
            push_layer(state, layer, cmd);
            return Ok(true);
        }
        let mut step_env = env;
        step_env.extend(prepared.env.iter().cloned());
        // A layer met twice is the runner's to stack once (the sandbox does).
        let layers: Vec<(berth_oci::Descriptor, Digest)> = state
            .layers
            .iter()
            .cloned()
            .zip(state.config.rootfs.diff_ids.iter().cloned())
            .collect();
        let step = RunStep {
            layers,
            argv,
            env: step_env,
            user,
            workdir,
            network,
            mounts: prepared.mounts.clone(),
        };
        let progress = self.progress;
        let secrets = &prepared.secrets;
        let mut tail: VecDeque<String> = VecDeque::new();
        let mut output = |line: &str| {
            let line = redact(line, secrets);
            progress.output(at.0, at.1, &line);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        };
        let store = self.store;
        let mut layer = None;
        let mut commit = |upper: &Path| -> std::result::Result<Option<Digest>, super::RunError> {
            let (made, exact) = crate::diff::layer_from_upper(store, upper)?;
            let diff_id = exact.then(|| made.diff_id.clone());
            layer = Some(made);
            Ok(diff_id)
        };
        let outcome = self
            .runner
            .run(self.store, &step, &mut output, &mut commit)
            .map_err(|e| self.fail(cmd, redact(&e.to_string(), secrets)))?;
        drop(prepared);
        match (outcome, layer) {
            (RunOutcome::Committed, Some(layer)) => {
                write_cache(
                    &cache_file,
                    &CacheEntry {
                        layer: layer.descriptor.clone(),
                    },
                );
                state.key = key;
                push_layer(state, layer, cmd);
                Ok(false)
            }
            (RunOutcome::Committed, None) => Err(self.fail(
                cmd,
                "the step succeeded but its changes were never handed over",
            )),
            (RunOutcome::Failed { code }, _) => {
                let mut message = format!(
                    "`{}` did not complete successfully: exit code {code}",
                    cmd.source.trim()
                );
                if !tail.is_empty() {
                    message.push_str("\n--- last lines of its output ---\n");
                    message.push_str(&Vec::from(tail).join("\n"));
                }
                Err(self.fail(cmd, message))
            }
        }
    }

    /// The command line, as BuildKit makes it: the shell form through
    /// `SHELL`; one heredoc that is the whole command is the script (run
    /// directly when it starts with `#!`); other heredocs are handed to the
    /// shell with their bodies, which it expands itself.
    fn run_argv(
        &self,
        state: &StageState,
        cmd: &Command,
        line: &ShellOrExec,
        heredocs: &[Heredoc],
        prepared: &mut Prepared,
    ) -> Result<Vec<String>> {
        let ShellOrExec::Shell(text) = line else {
            if !heredocs.is_empty() {
                return Err(self.fail(cmd, "heredocs need the shell form of RUN"));
            }
            return Ok(self.command_line(state, line));
        };
        if heredocs.is_empty() {
            return Ok(self.command_line(state, line));
        }
        let whole = berth_dockerfile::heredoc::parse_heredoc(text.trim())
            .ok()
            .flatten()
            .is_some();
        if whole && heredocs.len() == 1 {
            let doc = &heredocs[0];
            let body = if doc.chomp {
                berth_dockerfile::heredoc::chomp_heredoc_content(&doc.content)
            } else {
                doc.content.clone()
            };
            if body.starts_with("#!") {
                let dir = self.scratch_dir("script")?;
                let name = doc.name.replace('/', "_");
                let path = dir.0.join(&name);
                write_private(&path, body.as_bytes(), 0o755).map_err(|source| BuildError::Io {
                    path: path.clone(),
                    source,
                })?;
                let target = format!("{PIPES_DIR}/{name}");
                prepared.mounts.push(RunMount {
                    target: target.clone(),
                    kind: RunMountKind::Bind {
                        source: path,
                        read_only: true,
                    },
                });
                prepared.scratch.push(dir);
                return Ok(vec![target]);
            }
            return Ok(self.command_line(state, &ShellOrExec::Shell(body)));
        }
        let mut script = text.clone();
        for doc in heredocs {
            script.push('\n');
            script.push_str(&doc.content);
            script.push_str(&doc.name);
        }
        Ok(self.command_line(state, &ShellOrExec::Shell(script)))
    }

    /// A private directory removed when dropped.
    fn scratch_dir(&self, what: &str) -> Result<ScratchDir> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = self.store.root().join("ingest").join(format!(
            "run-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).map_err(|source| BuildError::Io {
            path: dir.clone(),
            source,
        })?;
        let scratch = ScratchDir(dir);
        fs::set_permissions(&scratch.0, fs::Permissions::from_mode(0o700)).map_err(|source| {
            BuildError::Io {
                path: scratch.0.clone(),
                source,
            }
        })?;
        Ok(scratch)
    }

    /// Set up one `--mount`; returns what of it goes into the cache key
    /// (content digests for binds, never a secret's bytes).
    fn prepare_mount(
        &mut self,
        cmd: &Command,
        spec: &str,
        state: &StageState,
        done: &[(Option<String>, StageState)],
        prepared: &mut Prepared,
    ) -> Result<String> {
        let m = parse_mount(spec).map_err(|e| self.fail(cmd, format!("--mount={spec}: {e}")))?;
        let workdir = state.workdir();
        let target_of = |t: &str| format!("/{}", image_path(&workdir, t));
        match m.kind {
            MountType::Tmpfs => {
                let target = m
                    .target
                    .as_deref()
                    .ok_or_else(|| self.fail(cmd, format!("--mount={spec}: target required")))?;
                prepared.mounts.push(RunMount {
                    target: target_of(target),
                    kind: RunMountKind::Tmpfs {
                        size: m.size_limit.and_then(|s| u64::try_from(s).ok()),
                    },
                });
                Ok(String::new())
            }
            MountType::Cache => {
                let target = m
                    .target
                    .as_deref()
                    .ok_or_else(|| self.fail(cmd, format!("--mount={spec}: target required")))?;
                let target = target_of(target);
                let id = m.id.clone().unwrap_or_else(|| target.clone());
                let source = match m.source.as_deref() {
                    Some(s) => Some(clean_relative(s).ok_or_else(|| {
                        self.fail(
                            cmd,
                            format!("--mount={spec}: source must stay inside what it mounts from"),
                        )
                    })?),
                    None => None,
                };
                // `from=` seeds a new cache with a stage's or image's files
                // (at `source`); a cache seeded from other files is another cache.
                let (identity, seed) = match &m.from {
                    Some(from) => {
                        let (key, dir) = self.stage_dir(cmd, from, done)?;
                        let rel = source.clone().unwrap_or_default();
                        let seed = dir.join(&rel);
                        if !seed.is_dir() {
                            return Err(self.fail(
                                cmd,
                                format!(
                                    "--mount={spec}: {:?} is not a directory in {from}",
                                    rel.display().to_string()
                                ),
                            ));
                        }
                        (format!("{id}\0from={key}/{}", rel.display()), Some(seed))
                    }
                    None => (id, None),
                };
                let lease = crate::cache_mount::lease(
                    self.store.root(),
                    &identity,
                    m.sharing.unwrap_or(berth_dockerfile::Sharing::Shared),
                    &crate::cache_mount::NewCache {
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid,
                        gid: m.gid,
                        seed: seed.as_deref(),
                    },
                )
                .map_err(|e| self.fail(cmd, format!("--mount={spec}: {e}")))?;
                // Without `from=`, `source=` is a directory inside the cache.
                let dir = match (&m.from, &source) {
                    (None, Some(rel)) if !rel.as_os_str().is_empty() => {
                        let d = lease.dir.join(rel);
                        fs::create_dir_all(&d).map_err(|source| BuildError::Io {
                            path: d.clone(),
                            source,
                        })?;
                        d
                    }
                    _ => lease.dir.clone(),
                };
                prepared.leases.push(lease);
                prepared.mounts.push(RunMount {
                    target,
                    kind: RunMountKind::Bind {
                        source: dir,
                        read_only: m.read_only,
                    },
                });
                // A cache's content is by definition not an input.
                Ok(String::new())
            }
            MountType::Bind => {
                let target = m
                    .target
                    .as_deref()
                    .ok_or_else(|| self.fail(cmd, format!("--mount={spec}: target required")))?;
                let target = target_of(target);
                let source = m.source.clone().unwrap_or_default();
                let rel = clean_relative(&source).ok_or_else(|| {
                    self.fail(
                        cmd,
                        format!("--mount={spec}: source must stay inside what it mounts from"),
                    )
                })?;
                let (root, key) = match &m.from {
                    Some(from) => {
                        let (key, dir) = self.stage_dir(cmd, from, done)?;
                        (dir, format!("from={key}"))
                    }
                    None => {
                        let digest = self.context_digest(&rel)?;
                        (self.req.context.clone(), format!("context={digest}"))
                    }
                };
                let host = root.join(&rel);
                if fs::symlink_metadata(&host).is_err() {
                    return Err(self.fail(
                        cmd,
                        format!("--mount={spec}: {source:?} does not exist in what it mounts from"),
                    ));
                }
                let source = if m.read_only {
                    host
                } else {
                    // Writes to an rw bind are the step's own: never the
                    // context's or another stage's files.
                    let dir = self.scratch_dir("bind")?;
                    let copy = dir.0.join("src");
                    copy_tree(&host, &copy).map_err(|source| BuildError::Io {
                        path: host.clone(),
                        source,
                    })?;
                    prepared.scratch.push(dir);
                    copy
                };
                prepared.mounts.push(RunMount {
                    target,
                    kind: RunMountKind::Bind {
                        source,
                        read_only: m.read_only,
                    },
                });
                Ok(key)
            }
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or(m.source.clone())
                        .filter(|s| !s.is_empty())
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .and_then(|t| t.rsplit('/').next())
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                let value = match self.req.secrets.get(&id) {
                    Some(SecretSource::File(path)) => {
                        Some(fs::read(path).map_err(|source| BuildError::Io {
                            path: path.clone(),
                            source,
                        })?)
                    }
                    Some(SecretSource::Env(var)) => std::env::var_os(var).map(|v| {
                        use std::os::unix::ffi::OsStringExt;
                        v.into_vec()
                    }),
                    None => None,
                };
                let Some(value) = value else {
                    if m.required {
                        return Err(self.fail(
                            cmd,
                            format!("secret {id:?} is required but was not provided (--secret id={id},src=FILE)"),
                        ));
                    }
                    return Ok(String::new());
                };
                if let Ok(text) = std::str::from_utf8(&value) {
                    let text = text.trim_end_matches('\n');
                    if !text.is_empty() {
                        prepared.secrets.push(text.to_string());
                    }
                }
                if let Some(var) = &m.env {
                    prepared
                        .env
                        .push(format!("{var}={}", String::from_utf8_lossy(&value)));
                }
                if m.env.is_none() || m.target.is_some() {
                    let target = match &m.target {
                        Some(t) => target_of(t),
                        None => format!("/run/secrets/{id}"),
                    };
                    let dir = self.scratch_dir("secret")?;
                    let path = dir.0.join("secret");
                    let io = |source| BuildError::Io {
                        path: path.clone(),
                        source,
                    };
                    write_private(&path, &value, m.mode.unwrap_or(0o400)).map_err(io)?;
                    std::os::unix::fs::chown(
                        &path,
                        Some(m.uid.unwrap_or(0)),
                        Some(m.gid.unwrap_or(0)),
                    )
                    .map_err(io)?;
                    prepared.mounts.push(RunMount {
                        target,
                        kind: RunMountKind::Bind {
                            source: path,
                            read_only: true,
                        },
                    });
                    prepared.scratch.push(dir);
                }
                Ok(String::new())
            }
            MountType::Ssh => {
                let id = m.id.clone().unwrap_or_else(|| "default".into());
                let Some(socket) = self.req.ssh.get(&id) else {
                    if m.required {
                        return Err(self.fail(
                            cmd,
                            format!("ssh agent {id:?} is required but was not forwarded (--ssh {id}=SOCKET, compose build.ssh)"),
                        ));
                    }
                    return Ok(String::new());
                };
                // BuildKit's default place, numbered like its: the first
                // forwarded agent is also the step's SSH_AUTH_SOCK.
                let n = prepared.ssh;
                prepared.ssh += 1;
                let target = match &m.target {
                    Some(t) => target_of(t),
                    None => format!("/run/buildkit/ssh_agent.{n}"),
                };
                if n == 0 {
                    prepared.env.push(format!("SSH_AUTH_SOCK={target}"));
                }
                if fs::symlink_metadata(socket).is_err() {
                    return Err(self.fail(
                        cmd,
                        format!(
                            "--mount={spec}: the ssh agent socket {} does not exist",
                            socket.display()
                        ),
                    ));
                }
                // A socket of the step's own, forwarding to the agent: the
                // step talks to the agent, never sees a key, and the socket
                // belongs to the step's user (or the mount's uid/gid/mode),
                // where the agent's belongs to whoever started it.
                let (uid, gid) = match (m.uid, m.gid) {
                    (Some(u), Some(g)) => (u, g),
                    (u, g) => {
                        let user = state.config.config.user.clone().unwrap_or_default();
                        let owner = if user.is_empty() {
                            crate::layer::Owner::ROOT
                        } else {
                            self.owner(state, &user).map_err(|e| {
                                self.fail(cmd, format!("--mount={spec}: USER {user}: {e}"))
                            })?
                        };
                        (u.unwrap_or(owner.uid as u32), g.unwrap_or(owner.gid as u32))
                    }
                };
                let dir = self.scratch_dir("ssh")?;
                let path = dir.0.join("agent.sock");
                let proxy = crate::ssh_proxy::SshProxy::start(
                    &path,
                    socket,
                    uid,
                    gid,
                    m.mode.unwrap_or(0o600),
                )
                .map_err(|e| self.fail(cmd, format!("--mount={spec}: {e}")))?;
                prepared.proxies.push(proxy);
                prepared.mounts.push(RunMount {
                    target,
                    kind: RunMountKind::Bind {
                        source: path,
                        read_only: false,
                    },
                });
                prepared.scratch.push(dir);
                // Which agent answers is not an input of the step.
                Ok(String::new())
            }
        }
    }

    /// The digest of the context's files under `rel` (after
    /// `.dockerignore`): names, modes, link targets and contents.
    fn context_digest(&mut self, rel: &Path) -> Result<Digest> {
        let prefix = rel.to_string_lossy().into_owned();
        let inside =
            |r: &str| prefix.is_empty() || r == prefix || r.starts_with(&format!("{prefix}/"));
        let entries: Vec<_> = self
            .entries()?
            .iter()
            .filter(|e| inside(&e.rel))
            .cloned()
            .collect();
        let hashes = self.hash_sources(entries.iter())?;
        let mut parts = Vec::new();
        for e in &entries {
            let what = match &e.kind {
                EntryKind::Dir => "dir".to_string(),
                EntryKind::Symlink(t) => format!("link:{t}"),
                EntryKind::File => hashes
                    .get(&e.path)
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
            };
            parts.push(format!("{}|{:o}|{what}", e.rel, e.mode));
        }
        Ok(chain(
            &Digest::of(b"context"),
            &parts.iter().map(String::as_str).collect::<Vec<_>>(),
        ))
    }
}

/// The step's environment: the stage's ENV, and the ARGs in scope that no
/// ENV of the same name shadows (as docker: ENV wins).
fn run_env(state: &StageState) -> Vec<String> {
    let env: Vec<String> = state.config.config.env.clone().unwrap_or_default();
    let set = |k: &str| {
        env.iter()
            .any(|e| e.split_once('=').map(|(n, _)| n) == Some(k))
    };
    let mut out: Vec<String> = Vec::new();
    for (k, v) in &state.args {
        if !set(k) {
            out.retain(|e| e.split_once('=').map(|(n, _)| n) != Some(k.as_str()));
            out.push(format!("{k}={v}"));
        }
    }
    out.extend(env.iter().cloned());
    out
}

/// `source` of a bind mount as a relative path with no `..`.
fn clean_relative(source: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(source).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn redact(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_string();
    for s in secrets {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "****");
        }
    }
    out
}

/// A file only its owner can reach until `mode` is set.
fn write_private(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.set_permissions(fs::Permissions::from_mode(mode))
}

/// A copy of a file or tree (links kept as links).
pub(crate) fn copy_tree(src: &Path, dest: &Path) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(src)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(src)?, dest)
    } else if meta.is_dir() {
        fs::create_dir(dest)?;
        for e in fs::read_dir(src)? {
            let e = e?;
            copy_tree(&e.path(), &dest.join(e.file_name()))?;
        }
        fs::set_permissions(dest, meta.permissions())
    } else {
        fs::copy(src, dest).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_hidden_from_output() {
        let s = vec!["hunter2".to_string()];
        assert_eq!(redact("token=hunter2 ok", &s), "token=**** ok");
        assert_eq!(redact("nothing here", &s), "nothing here");
    }

    #[test]
    fn bind_sources_stay_inside() {
        assert_eq!(clean_relative("/a/./b"), Some(PathBuf::from("a/b")));
        assert_eq!(clean_relative(""), Some(PathBuf::new()));
        assert_eq!(clean_relative("a/../../etc"), None);
    }
}
