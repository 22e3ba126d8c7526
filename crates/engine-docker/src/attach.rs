//! `attach` on the Docker Engine: the Engine API's attach stream, this
//! process's stdin into it (the daemon detaches at the detach keys), and
//! the signals this process gets passed on to the container
//! (`--sig-proxy`, not for a terminal, where Ctrl-C is a key).

use crate::observe::status_of;
use crate::ops::{pump_output, RawTerminal};
use crate::{api_err, DockerBackend, Result};
use berth_engine::backend::{AttachOutcome, AttachRequest};
use berth_engine::{BackendError, ErrorKind};
use bollard::query_parameters::{
    AttachContainerOptions, InspectContainerOptions, KillContainerOptions,
};
use futures_util::future::{select, Either};
use std::io::Read;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::signal::unix::{signal, SignalKind};

/// The signals passed on to the container: the ones a user sends.
const PROXIED: &[(i32, &str)] = &[
    (libc::SIGINT, "SIGINT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
];

/// Detach keys as bytes → the daemon's spelling (`ctrl-p,ctrl-q`).
pub(crate) fn docker_keys(keys: &[u8]) -> String {
    keys.iter()
        .map(|&b| match b {
            0 => "ctrl-@".to_string(),
            1..=26 => format!("ctrl-{}", (b'a' + b - 1) as char),
            27 => "ctrl-[".to_string(),
            28 => "ctrl-\\".to_string(),
            29 => "ctrl-]".to_string(),
            30 => "ctrl-^".to_string(),
            31 => "ctrl-_".to_string(),
            other => (other as char).to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Whether `keys` have just been typed, fed one read at a time.
struct KeyMatcher {
    keys: Vec<u8>,
    matched: usize,
}

impl KeyMatcher {
    fn feed(&mut self, bytes: &[u8]) -> bool {
        if self.keys.is_empty() {
            return false;
        }
        for &b in bytes {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return true;
                }
            } else {
                self.matched = usize::from(b == self.keys[0]);
            }
        }
        false
    }
}

/// This process's stdin into the container, from a thread (reading stdin
/// blocks). The detach keys end the attach here: the daemon acts on them
/// only for a terminal, berth for every container, as its embedded engine
/// does; `detached` records it and `end` wakes the attach.
fn forward_stdin(
    mut input: Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
    keys: &[u8],
    detached: Arc<AtomicBool>,
    end: Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
    let mut matcher = KeyMatcher {
        keys: keys.to_vec(),
        matched: 0,
    };
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 8192];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if matcher.feed(&buf[..n]) {
                        detached.store(true, Ordering::SeqCst);
                        end.notify_one();
                        break;
                    }
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            }
        }
    });
    tokio::spawn(async move {
        while let Some(chunk) = rx.recv().await {
            if input.write_all(&chunk).await.is_err() {
                return;
            }
            let _ = input.flush().await;
        }
        // Our stdin ended; the container's stays open (docker attach does
        // not close it either: other clients may still write to it).
    })
}

/// Tasks that end with the attach, however it ends.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl DockerBackend {
    pub(crate) async fn attach_to(&self, request: &AttachRequest) -> Result<AttachOutcome> {
        let name = request.container.name.clone();
        let info = self
            .docker
            .inspect_container(&name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| api_err(format!("inspecting {name}"), e))?;
        if !status_of(&info).is_alive() {
            return Err(BackendError::new(
                ErrorKind::NotRunning,
                format!("container {name} is not running"),
            ));
        }
        let config = info.config.unwrap_or_default();
        let tty = config.tty.unwrap_or(false);
        let stdin = request.stdin && config.open_stdin.unwrap_or(false);
        // Signals: passed on (sig-proxy without a terminal), or, when they
        // are not, Ctrl-C detaches this client and leaves the container be.
        // Watched before the streams are joined, so none is missed once
        // output flows.
        let proxy = request.sig_proxy && !tty;
        let interrupted = Arc::new(tokio::sync::Notify::new());
        let mut watchers = AbortOnDrop(Vec::new());
        for &(number, signame) in PROXIED {
            if !proxy && number != libc::SIGINT {
                continue;
            }
            let mut stream = signal(SignalKind::from_raw(number))
                .map_err(|e| BackendError::engine(format!("watching {signame}: {e}")))?;
            let docker = self.docker.clone();
            let target = name.clone();
            let interrupted = interrupted.clone();
            watchers.0.push(tokio::spawn(async move {
                while stream.recv().await.is_some() {
                    if !proxy {
                        interrupted.notify_one();
                        return;
                    }
                    let _ = docker
                        .kill_container(
                            &target,
                            Some(KillContainerOptions {
                                signal: signame.to_string(),
                            }),
                        )
                        .await;
                }
            }));
        }

        let attached = self
            .docker
            .attach_container(
                &name,
                Some(AttachContainerOptions {
                    stream: true,
                    stdin,
                    stdout: true,
                    stderr: true,
                    detach_keys: (!request.detach_keys.is_empty())
                        .then(|| docker_keys(&request.detach_keys)),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| api_err(format!("attaching to {name}"), e))?;
        let raw = RawTerminal::enter(tty && stdin);
        let detached = Arc::new(AtomicBool::new(false));
        let input = stdin.then(|| {
            forward_stdin(
                attached.input,
                &request.detach_keys,
                detached.clone(),
                interrupted.clone(),
            )
        });

        let output = pin!(pump_output(attached.output));
        // Ctrl-C without the sig-proxy, or the detach keys.
        let ctrl_c = pin!(interrupted.notified());
        let outcome = match select(output, ctrl_c).await {
            Either::Left((result, _)) => result.map(|()| None),
            Either::Right(_) => Ok(Some(AttachOutcome::Detached)),
        };
        drop(watchers);
        if let Some(i) = input {
            i.abort();
        }
        drop(raw);
        if let Some(outcome) = outcome? {
            return Ok(outcome);
        }
        if detached.load(Ordering::SeqCst) {
            return Ok(AttachOutcome::Detached);
        }
        let code = self.wait_exit(&name).await?;
        Ok(AttachOutcome::Exited(i32::try_from(code).unwrap_or(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_keys_are_spelled_as_the_daemon_reads_them() {
        assert_eq!(docker_keys(&[16, 17]), "ctrl-p,ctrl-q");
        assert_eq!(docker_keys(&[0, 27, 31, b'x']), "ctrl-@,ctrl-[,ctrl-_,x");
    }

    #[test]
    fn the_key_sequence_is_found_across_reads() {
        let mut m = KeyMatcher {
            keys: vec![16, 17],
            matched: 0,
        };
        assert!(!m.feed(b"ab\x10"));
        assert!(m.feed(b"\x11"));
        let mut m = KeyMatcher {
            keys: vec![16, 17],
            matched: 0,
        };
        assert!(!m.feed(b"\x10x\x11"));
        assert!(m.feed(b"\x10\x10\x11"));
    }
}
