//! berth's record of its networks and endpoints, on disk.
//!
//! One JSON file per state directory, guarded by an exclusive `flock` on a
//! sibling lock file held for the whole read-modify-write (and the kernel
//! work in between), so two berth processes never hand out the same subnet
//! or address. Writes go to a temporary file that is fsynced and renamed over
//! the old one: a crash leaves either the old or the new state, never a torn one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::network::Network;
use crate::veth::Endpoint;

const STATE_FILE: &str = "networks.json";
const LOCK_FILE: &str = "networks.lock";
const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("network state {path} is unreadable ({source}); move it aside to start afresh (networks it lists may then need `berth down` by name)")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("network state {path} has format version {found}, newer than this berth understands ({FORMAT_VERSION})")]
    TooNew { path: PathBuf, found: u32 },
}

/// Everything berth knows about its networks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub networks: BTreeMap<String, NetworkRecord>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub network: Network,
    /// False from the moment the subnet is reserved until the bridge and its
    /// rules are all in place: a record left `false` by a crash tells the next
    /// create to clean up and build again.
    pub ready: bool,
    /// Keyed by container id.
    #[serde(default)]
    pub endpoints: BTreeMap<String, Endpoint>,
}

impl State {
    /// Every berth subnet with its network's name, for the pool.
    pub fn subnets(&self) -> Vec<(crate::Subnet, &str)> {
        self.networks
            .iter()
            .map(|(name, rec)| (rec.network.subnet, name.as_str()))
            .collect()
    }
}

/// A state directory. Cheap to clone; every operation locks anew.
#[derive(Debug, Clone)]
pub struct StateStore {
    dir: PathBuf,
}

/// The state, read under the lock. The lock is held until this is dropped.
#[derive(Debug)]
pub struct LockedState {
    _lock: File,
    path: PathBuf,
    pub state: State,
}

impl StateStore {
    pub fn new(dir: impl Into<PathBuf>) -> StateStore {
        StateStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits for the exclusive lock, then reads the current state.
    pub fn lock(&self) -> Result<LockedState, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|source| StateError::Io {
                action: "cannot create state directory",
                path: self.dir.clone(),
                source,
            })?;
        let lock_path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(|source| StateError::Io {
                action: "cannot open lock file",
                path: lock_path.clone(),
                source,
            })?;
        flock_exclusive(&lock).map_err(|source| StateError::Io {
            action: "cannot lock",
            path: lock_path,
            source,
        })?;
        let path = self.dir.join(STATE_FILE);
        let state = read_state(&path)?;
        Ok(LockedState {
            _lock: lock,
            path,
            state,
        })
    }
}

/// `flock` rather than `fcntl` locks: flock belongs to the open file, so two
/// threads of one process that each open the file also exclude each other.
fn flock_exclusive(file: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor owned by `file` for the whole call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn read_state(path: &Path) -> Result<State, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(State {
                version: FORMAT_VERSION,
                ..State::default()
            })
        }
        Err(source) => {
            return Err(StateError::Io {
                action: "cannot read",
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let state: State = serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
        path: path.to_path_buf(),
        source,
    })?;
    if state.version > FORMAT_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: state.version,
        });
    }
    Ok(state)
}

impl LockedState {
    /// Writes the state atomically (temp file, fsync, rename, fsync dir).
    pub fn save(&mut self) -> Result<(), StateError> {
        self.state.version = FORMAT_VERSION;
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        let json =
            serde_json::to_vec_pretty(&self.state).map_err(|source| StateError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
        let tmp = self.path.with_extension("json.tmp");
        // Only the lock holder writes, so one fixed temp name cannot clash.
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("cannot write", &tmp))?;
        file.write_all(&json).map_err(io("cannot write", &tmp))?;
        file.write_all(b"\n").map_err(io("cannot write", &tmp))?;
        file.sync_all().map_err(io("cannot sync", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(io("cannot replace", &self.path))?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io("cannot sync", dir))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn record(name: &str, subnet: &str) -> NetworkRecord {
        NetworkRecord {
            network: Network::describe(name, subnet.parse().unwrap(), false, 1500).unwrap(),
            ready: true,
            endpoints: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::new(dir.path().join("net"));
        let mut locked = store.lock().unwrap();
        assert!(locked.state.networks.is_empty());
        locked
            .state
            .networks
            .insert("p_default".into(), record("p_default", "172.31.0.0/24"));
        locked.save().unwrap();
        drop(locked);
        let again = store.lock().unwrap();
        assert_eq!(
            again.state.networks["p_default"].network.subnet.to_string(),
            "172.31.0.0/24"
        );
        assert!(!dir.path().join("net/networks.json.tmp").exists());
    }

    #[test]
    fn corrupt_and_future_state_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
        let err = StateStore::new(dir.path()).lock().unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        std::fs::write(
            dir.path().join(STATE_FILE),
            r#"{"version": 99, "networks": {}}"#,
        )
        .unwrap();
        let err = StateStore::new(dir.path()).lock().unwrap_err();
        assert!(matches!(err, StateError::TooNew { found: 99, .. }), "{err}");
    }

    /// Many threads, each with its own lock-file descriptor, reserving
    /// subnets from one pool: the lock must make every choice distinct.
    #[test]
    fn concurrent_reservations_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(StateStore::new(dir.path()));
        let pool: crate::PoolConfig = "10.200.0.0/24,size=28".parse().unwrap();
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut locked = store.lock().unwrap();
                    let subnet =
                        crate::pool::choose_subnet(&pool, &locked.state.subnets(), &[]).unwrap();
                    // Widen the race window: without the lock, others would
                    // read the old state meanwhile.
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    let name = format!("n{i}");
                    locked
                        .state
                        .networks
                        .insert(name.clone(), record(&name, &subnet.to_string()));
                    locked.save().unwrap();
                    subnet
                })
            })
            .collect();
        let mut subnets: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        subnets.sort();
        subnets.dedup();
        assert_eq!(subnets.len(), 8);
        assert_eq!(store.lock().unwrap().state.networks.len(), 8);
    }
}
