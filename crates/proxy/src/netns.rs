//! Sockets created inside another network namespace.
//!
//! A socket belongs to the namespace of the thread that called socket(2), for its whole life.
//! So one helper thread per namespace calls setns(CLONE_NEWNET) once and from then on only
//! creates sockets on request; the proxy's own threads bind, connect and relay with them
//! without ever changing namespace. setns affects only the calling thread, but a thread's
//! namespace is inherited by threads it spawns, so the helper spawns nothing.
//!
//! Helpers are shared: every target in the same namespace (several published ports of one
//! container, or a target switched away and back) reuses one helper, found by the namespace's
//! identity (device and inode of its nsfs file), not by path. The helper lives while any
//! target refers to it and is joined when the last reference goes.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use crate::sys::{self, SockKind};

/// Why a network namespace could not be used as a target.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter { path: PathBuf, source: io::Error },
    #[error("cannot start the helper thread for network namespace {path}: {source}")]
    Thread { path: PathBuf, source: io::Error },
}

/// A namespace's identity: the nsfs inode, unique while the namespace exists.
type NsId = (u64, u64);

/// Live helpers by namespace. Weak, so the cache never keeps a helper (and its namespace) alive.
static HELPERS: Mutex<BTreeMap<NsId, Weak<NetnsSockets>>> = Mutex::new(BTreeMap::new());

struct Request {
    kind: SockKind,
    reply: mpsc::SyncSender<io::Result<OwnedFd>>,
}

/// The helper thread of one network namespace.
pub(crate) struct NetnsSockets {
    path: PathBuf,
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl NetnsSockets {
    /// The helper for the namespace at `path` (e.g. `/proc/<pid>/ns/net` or `/run/netns/NAME`),
    /// starting one if none is running.
    pub(crate) fn get(path: &Path) -> Result<Arc<NetnsSockets>, NetnsError> {
        let open_err = |source| NetnsError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        let meta = file.metadata().map_err(open_err)?;
        let id = (meta.dev(), meta.ino());

        let mut helpers = HELPERS.lock().unwrap_or_else(|e| e.into_inner());
        helpers.retain(|_, weak| weak.strong_count() > 0);
        if let Some(helper) = helpers.get(&id).and_then(Weak::upgrade) {
            return Ok(helper);
        }
        let helper = Arc::new(Self::start(path, file.into())?);
        helpers.insert(id, Arc::downgrade(&helper));
        Ok(helper)
    }

    fn start(path: &Path, ns: OwnedFd) -> Result<NetnsSockets, NetnsError> {
        let (requests, inbox) = mpsc::channel::<Request>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<io::Result<()>>(1);
        let thread = std::thread::Builder::new()
            .name("berth-netns".into())
            // It only loops on a channel and calls socket(2).
            .stack_size(64 * 1024)
            .spawn(move || {
                let entered = sys::enter_netns(ns.as_fd());
                drop(ns);
                let ok = entered.is_ok();
                // The caller is blocked on this reply; it cannot have gone away.
                let _ = ready_tx.send(entered);
                if !ok {
                    return;
                }
                // Ends when every NetnsSockets handle (and so every Sender) is gone.
                for req in inbox {
                    let family = libc::AF_INET;
                    let _ = req.reply.send(sys::socket(family, req.kind));
                }
            })
            .map_err(|source| NetnsError::Thread {
                path: path.to_path_buf(),
                source,
            })?;
        let entered = ready_rx.recv().unwrap_or_else(|_| {
            Err(io::Error::other(
                "helper thread ended before entering the namespace",
            ))
        });
        if let Err(source) = entered {
            let _ = thread.join();
            return Err(NetnsError::Enter {
                path: path.to_path_buf(),
                source,
            });
        }
        Ok(NetnsSockets {
            path: path.to_path_buf(),
            requests: Some(requests),
            thread: Some(thread),
        })
    }

    /// A new IPv4 socket of `kind` that lives in this namespace.
    pub(crate) fn socket(&self, kind: SockKind) -> io::Result<OwnedFd> {
        let gone = || io::Error::other(format!("helper for {} has stopped", self.path.display()));
        let (reply, answer) = mpsc::sync_channel(1);
        self.requests
            .as_ref()
            .ok_or_else(gone)?
            .send(Request { kind, reply })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}

impl Drop for NetnsSockets {
    fn drop(&mut self) {
        // Closing the channel ends the helper's loop; joining means no thread outlives the
        // last target that used it (the leak tests count threads).
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
