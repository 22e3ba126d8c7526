//! Integration tests against a real registry on loopback (Debian's
//! `docker-registry`), plus a hand-written server for faults a real
//! registry will not produce on demand. No mocks of the client's side.

mod fake;
mod faults;
mod hostile;
mod images;
mod mount;
mod pull_push;
mod registry;

use berth_oci::{Digest, Store};
use berth_registry::{Client, ClientOptions, DockerConfig, Progress, RegistryConfig};
use std::sync::Mutex;
use std::time::Duration;

/// A fresh store in a temp dir.
pub fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    (dir, store)
}

/// A client without mirrors or credentials and with short timeouts.
pub fn client() -> Client {
    client_with(RegistryConfig::new())
}

pub fn client_with(registries: RegistryConfig) -> Client {
    Client::with_options(registries, DockerConfig::empty(), quick())
}

pub fn quick() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(10),
        read_timeout: Duration::from_secs(10),
        retry_backoff: Duration::from_millis(50),
        ..ClientOptions::default()
    }
}

/// Everything about a store a failed pull must not change: its references
/// and its set of blobs; plus nothing left in `ingest/`, and fsck clean.
pub fn snapshot(store: &Store) -> (Vec<String>, Vec<String>) {
    let refs = store
        .references()
        .unwrap()
        .into_iter()
        .map(|(n, d)| format!("{n} {}", d.digest))
        .collect();
    let mut blobs: Vec<String> = std::fs::read_dir(store.root().join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    (refs, blobs)
}

pub fn assert_clean(store: &Store) {
    let report = store.fsck().unwrap();
    assert!(report.problems.is_empty(), "fsck: {:?}", report.problems);
    let ingest: Vec<_> = std::fs::read_dir(store.root().join("ingest"))
        .unwrap()
        .collect();
    assert!(ingest.is_empty(), "leftovers in ingest/: {ingest:?}");
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Start(Digest, u64),
    Bytes(Digest, u64),
    Restart(Digest),
    Done(Digest, bool),
    /// Mounted from this repository.
    Mounted(Digest, String),
}

#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);

impl Recorder {
    pub fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
    pub fn bytes_for(&self, d: &Digest) -> u64 {
        self.events()
            .iter()
            .map(|e| match e {
                Event::Bytes(x, n) if x == d => *n,
                _ => 0,
            })
            .sum()
    }
    pub fn done(&self) -> Vec<(Digest, bool)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Done(d, c) => Some((d, c)),
                _ => None,
            })
            .collect()
    }
    pub fn mounted(&self) -> Vec<(Digest, String)> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Mounted(d, from) => Some((d, from)),
                _ => None,
            })
            .collect()
    }
}

impl Progress for Recorder {
    fn on_layer_start(&self, digest: &Digest, size: u64) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Start(digest.clone(), size));
    }
    fn on_bytes(&self, digest: &Digest, n: u64) {
        self.0.lock().unwrap().push(Event::Bytes(digest.clone(), n));
    }
    fn on_layer_restart(&self, digest: &Digest) {
        self.0.lock().unwrap().push(Event::Restart(digest.clone()));
    }
    fn on_layer_done(&self, digest: &Digest, cached: bool) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Done(digest.clone(), cached));
    }
    fn on_layer_mounted(&self, digest: &Digest, from: &str) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Mounted(digest.clone(), from.to_string()));
    }
}
