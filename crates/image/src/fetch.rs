//! `ADD https://…`: download into the store's scratch area, verify.
//!
//! The file is streamed to disk while hashing, so a large download never
//! sits in memory; with `--checksum=sha256:…` a mismatch fails the step and
//! nothing is kept.

use berth_oci::digest::HashingWriter;
use berth_oci::Digest;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url}: {message}")]
    Http { url: String, message: String },
    #[error("GET {url}: server answered {status}")]
    Status { url: String, status: u16 },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{url}: checksum mismatch: expected {expected}, got {actual}")]
    Checksum {
        url: String,
        expected: String,
        actual: Digest,
    },
    #[error("--checksum={0}: expected sha256:<64 hex digits>")]
    BadChecksum(String),
}

/// A downloaded file, removed when dropped.
pub struct Downloaded {
    pub path: PathBuf,
    pub digest: Digest,
    /// The last path segment of the URL (what `ADD url dir/` names the file).
    pub file_name: String,
}

impl Drop for Downloaded {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub fn file_name_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let after_host = path.split_once("://").map(|(_, r)| r).unwrap_or(path);
    match after_host.split_once('/') {
        Some((_, p)) => p
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("download")
            .to_string(),
        None => "download".to_string(),
    }
}

pub fn download(
    url: &str,
    checksum: Option<&str>,
    scratch: &Path,
) -> Result<Downloaded, FetchError> {
    let expected = match checksum {
        Some(c) => Some(
            c.parse::<Digest>()
                .map_err(|_| FetchError::BadChecksum(c.to_string()))?,
        ),
        None => None,
    };
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .new_agent();
    let resp = agent.get(url).call().map_err(|e| FetchError::Http {
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
    std::fs::create_dir_all(scratch).map_err(|source| FetchError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
    let path = scratch.join(format!(
        "add-url-{}-{}",
        std::process::id(),
        Digest::of(url.as_bytes()).short()
    ));
    let file = std::fs::File::create(&path).map_err(|source| FetchError::Io {
        path: path.clone(),
        source,
    })?;
    let mut out = HashingWriter::new(BufWriter::new(file));
    let mut body = resp.into_body();
    let copied = io::copy(&mut body.as_reader(), &mut out);
    let (buf, digest, _) = out.finish();
    let flushed = buf.into_inner().map_err(|e| e.into_error());
    let downloaded = Downloaded {
        path: path.clone(),
        digest: digest.clone(),
        file_name: file_name_of(url),
    };
    copied
        .and(flushed.map(|_| 0))
        .map_err(|source| FetchError::Io {
            path: path.clone(),
            source,
        })?;
    if let Some(want) = expected {
        if want != digest {
            return Err(FetchError::Checksum {
                url: url.to_string(),
                expected: want.to_string(),
                actual: digest,
            });
        }
    }
    Ok(downloaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_urls() {
        assert_eq!(
            file_name_of("https://example.com/a/b/node.tar.gz?x=1"),
            "node.tar.gz"
        );
        assert_eq!(file_name_of("http://127.0.0.1:8080/"), "download");
        assert_eq!(file_name_of("http://h"), "download");
    }
}
