//! HTTP for runtimes: small documents (indexes, packuments, checksum
//! lists) into memory, artifacts streamed to a file while hashed, then
//! verified against the digest their source published.

use base64::Engine as _;
use sha2::{Digest as _, Sha256, Sha512};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot reach {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("GET {url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: download truncated ({got} of {expected} bytes)")]
    Truncated {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url}: download interrupted after {got} bytes: {message}")]
    Interrupted {
        url: String,
        got: u64,
        message: String,
    },
    #[error("{url}: larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{url}: unsupported integrity {integrity:?} (expected sha512-<base64> or sha256)")]
    BadIntegrity { url: String, integrity: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What a download is checked against, as its source published it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Expected {
    /// Hex sha256 (a `SHASUMS256.txt` line).
    Sha256(String),
    /// An npm `dist.integrity` (`sha512-<base64>`).
    Integrity(String),
}

/// A verified artifact on disk (removed when dropped unless kept).
#[derive(Debug)]
pub struct Downloaded {
    pub path: PathBuf,
    pub size: u64,
    /// Hex sha256 of the bytes (the store's content address uses it).
    pub sha256: String,
    /// `sha512-<base64>`, npm's integrity form.
    pub integrity: String,
}

impl Drop for Downloaded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Progress reports while a runtime is fetched and installed.
#[derive(Debug, Clone)]
pub enum Progress<'a> {
    /// Bytes so far of `url` (`total` when the server said).
    Download {
        url: &'a str,
        done: u64,
        total: Option<u64>,
    },
    /// A step: resolving, verifying, unpacking, a fallback taken.
    Step(&'a str),
}

pub type ProgressFn<'p> = &'p mut dyn FnMut(&Progress<'_>);

/// No progress reporting.
pub fn quiet(_: &Progress<'_>) {}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name in `dir` for a scratch file or directory.
pub fn scratch_path(dir: &Path, what: &str) -> PathBuf {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{what}-{}-{n}", std::process::id()))
}

/// A document and the dates its server sent.
#[derive(Debug, Clone)]
pub struct Document {
    pub body: Vec<u8>,
    /// The `Last-Modified` header, as sent.
    pub last_modified: Option<String>,
    /// The `Date` header, as sent.
    pub date: Option<String>,
}

#[derive(Clone)]
pub struct Http {
    agent: ureq::Agent,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Http")
    }
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    pub fn new() -> Http {
        let tls = ureq::tls::TlsConfig::builder()
            // The platform's roots: HTTPS here goes through a proxy whose CA
            // is only in the system bundle (same as berth-registry).
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .max_redirects(10)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Http { agent }
    }

    fn open(
        &self,
        url: &str,
        accept: Option<&str>,
    ) -> Result<ureq::http::Response<ureq::Body>, FetchError> {
        let mut req = self.agent.get(url);
        if let Some(a) = accept {
            req = req.header("Accept", a);
        }
        let resp = req.call().map_err(|e| FetchError::Unreachable {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        Ok(resp)
    }

    /// A small document, whole, at most `limit` bytes.
    pub fn get(&self, url: &str, accept: Option<&str>, limit: u64) -> Result<Vec<u8>, FetchError> {
        self.get_dated(url, accept, limit).map(|d| d.body)
    }

    /// [`Http::get`], with the dates the server gave.
    pub fn get_dated(
        &self,
        url: &str,
        accept: Option<&str>,
        limit: u64,
    ) -> Result<Document, FetchError> {
        let mut resp = self.open(url, accept)?;
        let total = content_length(&resp);
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (last_modified, date) = (header("last-modified"), header("date"));
        let mut out = Vec::new();
        let mut reader = resp.body_mut().as_reader().take(limit + 1);
        reader
            .read_to_end(&mut out)
            .map_err(|e| FetchError::Interrupted {
                url: url.to_string(),
                got: out.len() as u64,
                message: e.to_string(),
            })?;
        if out.len() as u64 > limit {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        if let Some(t) = total {
            if out.len() as u64 != t {
                return Err(FetchError::Truncated {
                    url: url.to_string(),
                    got: out.len() as u64,
                    expected: t,
                });
            }
        }
        Ok(Document {
            body: out,
            last_modified,
            date,
        })
    }

    /// Stream `url` into a new file in `dir`, hashing as it goes, then check
    /// it against `expected`. On any failure the file is gone.
    pub fn download(
        &self,
        url: &str,
        dir: &Path,
        expected: &Expected,
        progress: ProgressFn<'_>,
    ) -> Result<Downloaded, FetchError> {
        let resp = self.open(url, None)?;
        let total = content_length(&resp);
        let path = scratch_path(dir, "download");
        let file = File::create(&path).map_err(|source| FetchError::Io {
            path: path.clone(),
            source,
        })?;
        // From here on the file is owned by `out`, so any early return removes it.
        let mut out = Downloaded {
            path,
            size: 0,
            sha256: String::new(),
            integrity: String::new(),
        };
        let mut writer = io::BufWriter::new(file);
        let mut sha256 = Sha256::new();
        let mut sha512 = Sha512::new();
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_report = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(FetchError::Interrupted {
                        url: url.to_string(),
                        got: out.size,
                        message: e.to_string(),
                    })
                }
            };
            sha256.update(&buf[..n]);
            sha512.update(&buf[..n]);
            writer
                .write_all(&buf[..n])
                .map_err(|source| FetchError::Io {
                    path: out.path.clone(),
                    source,
                })?;
            out.size += n as u64;
            if out.size - last_report >= 1 << 20 {
                last_report = out.size;
                progress(&Progress::Download {
                    url,
                    done: out.size,
                    total,
                });
            }
        }
        writer
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .map_err(|source| FetchError::Io {
                path: out.path.clone(),
                source,
            })?;
        progress(&Progress::Download {
            url,
            done: out.size,
            total,
        });
        if let Some(t) = total {
            if out.size != t {
                return Err(FetchError::Truncated {
                    url: url.to_string(),
                    got: out.size,
                    expected: t,
                });
            }
        }
        out.sha256 = hex::encode(sha256.finalize());
        let sha512 = sha512.finalize();
        out.integrity = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(sha512)
        );
        verify(url, expected, &out.sha256, &sha512)?;
        Ok(out)
    }
}

fn content_length(resp: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

fn verify(url: &str, expected: &Expected, sha256: &str, sha512: &[u8]) -> Result<(), FetchError> {
    match expected {
        Expected::Sha256(hex_digest) => {
            if !hex_digest.eq_ignore_ascii_case(sha256) {
                return Err(FetchError::Checksum {
                    url: url.to_string(),
                    expected: format!("sha256:{hex_digest}"),
                    actual: format!("sha256:{sha256}"),
                });
            }
        }
        Expected::Integrity(integrity) => {
            // An integrity string may list several hashes; the strongest we
            // know must match (npm publishes sha512 for every package here).
            let wanted = integrity
                .split_whitespace()
                .find_map(|h| h.strip_prefix("sha512-"))
                .ok_or_else(|| FetchError::BadIntegrity {
                    url: url.to_string(),
                    integrity: integrity.clone(),
                })?;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(wanted.split('?').next().unwrap_or(wanted))
                .map_err(|_| FetchError::BadIntegrity {
                    url: url.to_string(),
                    integrity: integrity.clone(),
                })?;
            if decoded != sha512 {
                return Err(FetchError::Checksum {
                    url: url.to_string(),
                    expected: integrity.clone(),
                    actual: format!(
                        "sha512-{}",
                        base64::engine::general_purpose::STANDARD.encode(sha512)
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_both_digest_forms() {
        let data = b"hello";
        let s256 = hex::encode(Sha256::digest(data));
        let s512 = Sha512::digest(data);
        let integ = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(s512)
        );
        verify("u", &Expected::Sha256(s256.clone()), &s256, &s512).unwrap();
        verify("u", &Expected::Integrity(integ), &s256, &s512).unwrap();
        assert!(matches!(
            verify("u", &Expected::Sha256("00".repeat(32)), &s256, &s512),
            Err(FetchError::Checksum { .. })
        ));
        assert!(matches!(
            verify("u", &Expected::Integrity("sha1-abc".into()), &s256, &s512),
            Err(FetchError::BadIntegrity { .. })
        ));
        let other = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(Sha512::digest(b"x"))
        );
        assert!(matches!(
            verify("u", &Expected::Integrity(other), &s256, &s512),
            Err(FetchError::Checksum { .. })
        ));
    }
}
