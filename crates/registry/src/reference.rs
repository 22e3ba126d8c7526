//! Image references, parsed and normalized the way docker does.
//!
//! `nginx` means `docker.io/library/nginx:latest`: the first path component
//! names a registry only when it looks like a host (has a `.` or a `:`, or is
//! `localhost`), otherwise the image lives on Docker Hub, where single-name
//! repositories sit under `library/`. The normalized form is the name berth
//! tags images under in its store, so `nginx` and `docker.io/library/nginx`
//! are the same image.

use berth_oci::Digest;
use std::fmt;
use std::str::FromStr;

/// Docker Hub's canonical registry name.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API (`docker.io` itself
/// only redirects to the website).
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";
const DEFAULT_TAG: &str = "latest";
/// docker's limit on `registry/repository`, kept so that names berth accepts
/// are names every registry accepts.
const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty reference")]
    Empty,
    #[error("invalid reference format: repository name ({0}) must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
    #[error(
        "invalid repository name ({0}): cannot specify 64-byte hexadecimal strings \
         (is it an image ID?)"
    )]
    LooksLikeId(String),
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    NameTooLong(String),
    #[error("unsupported digest {0:?}: berth handles sha256:<64 lowercase hex digits>")]
    UnsupportedDigest(String),
}

/// A normalized image reference: `registry/repository[:tag][@digest]`.
///
/// A reference without tag and digest gets the tag `latest`; one with a
/// digest keeps its tag (if written) for display, but the digest decides
/// what is pulled.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let invalid = |reason: &str| ReferenceError::Invalid {
            reference: s.to_string(),
            reason: reason.to_string(),
        };
        // The digest is split off first: it is the only part that may hold
        // a `:` after the last `/` besides the tag.
        let (name_and_tag, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(parse_digest(d)?)),
            None => (s, None),
        };
        let last_slash = name_and_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_and_tag[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&name_and_tag[..i], Some(&name_and_tag[i + 1..]))
            }
            None => (name_and_tag, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(invalid(&format!(
                    "invalid tag {tag:?}: use letters, digits, '_', '.' and '-' (at most 128, \
                     not starting with '.' or '-')"
                )));
            }
        }
        if name.is_empty() {
            return Err(invalid("missing repository name"));
        }

        let (registry, remote) = split_registry(name);
        if let Some(registry) = registry {
            if !valid_registry(registry) {
                return Err(invalid(&format!("invalid registry host {registry:?}")));
            }
        }
        if remote.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(remote.to_string()));
        }
        for component in remote.split('/') {
            if !valid_path_component(component) {
                return Err(invalid(&format!(
                    "invalid repository path component {component:?}: use lowercase letters and \
                     digits, separated by '.', '_', '__' or '-'"
                )));
            }
        }
        if registry.is_none() && is_hex64(remote) {
            return Err(ReferenceError::LooksLikeId(remote.to_string()));
        }

        let registry = match registry {
            None => DOCKER_HUB.to_string(),
            // Docker's old names for its hub, as `docker login` writes them.
            Some("index.docker.io") | Some("registry-1.docker.io") => DOCKER_HUB.to_string(),
            Some(r) => r.to_ascii_lowercase(),
        };
        let repository = if registry == DOCKER_HUB && !remote.contains('/') {
            format!("library/{remote}")
        } else {
            remote.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(format!(
                "{registry}/{repository}"
            )));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as written in references: `docker.io`, `quay.io`,
    /// `localhost:5000`, `[::1]:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The host (and port) that serves the registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// The repository path inside the registry, e.g. `library/nginx`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What the manifest endpoint is asked for: the digest when there is
    /// one (it pins the content; a tag can move), else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository pinned to `digest` (the tag is dropped: a
    /// digest reference names content, not a moving tag).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: None,
            digest: Some(digest),
        }
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::Invalid {
                reference: format!("{}:{tag}", self.name()),
                reason: format!("invalid tag {tag:?}"),
            });
        }
        Ok(Reference {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            tag: Some(tag.to_string()),
            digest: None,
        })
    }

    /// The short name docker shows: `nginx` for `docker.io/library/nginx`,
    /// `tianon/true` for `docker.io/tianon/true`, other registries in full.
    pub fn familiar_name(&self) -> String {
        if self.registry != DOCKER_HUB {
            return self.name();
        }
        match self.repository.strip_prefix("library/") {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => self.repository.clone(),
        }
    }

    /// The short form for listings: `nginx:latest`, `tianon/true:latest`,
    /// `quay.io/oddnetworks/alpine-nodejs:4.2.2`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        self.push_tag_and_digest(&mut s);
        s
    }

    fn push_tag_and_digest(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_tag_and_digest(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn parse_digest(d: &str) -> Result<Digest, ReferenceError> {
    d.parse::<Digest>()
        .map_err(|_| ReferenceError::UnsupportedDigest(d.to_string()))
}

/// docker's rule: the first component is a registry only if it could not be
/// a Docker Hub user name (those have no `.` or `:`, are lowercase, and are
/// not `localhost`).
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.')
                || first.contains(':')
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// `[a-z0-9]+` runs joined by one separator: `.`, `_`, `__` or any number
/// of `-`.
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// `host[:port]` where host is a DNS name, an IPv4 address or `[IPv6]`.
fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return false;
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return false;
        }
        match after {
            "" => ("", None),
            p => match p.strip_prefix(':') {
                Some(port) => ("", Some(port)),
                None => return false,
            },
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    // Bracketed IPv6 was checked above.
    if r.starts_with('[') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalizes_like_docker() {
        for (input, want) in [
            ("nginx", "docker.io/library/nginx:latest"),
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("tianon/true", "docker.io/tianon/true:latest"),
            ("docker.io/nginx", "docker.io/library/nginx:latest"),
            (
                "index.docker.io/library/nginx",
                "docker.io/library/nginx:latest",
            ),
            (
                "docker.io/library/node:4.2.2",
                "docker.io/library/node:4.2.2",
            ),
            (
                "quay.io/oddnetworks/alpine-nodejs:4.2.2",
                "quay.io/oddnetworks/alpine-nodejs:4.2.2",
            ),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x", "localhost/x:latest"),
            ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000/a/b:t"),
            ("[::1]:5000/a:t", "[::1]:5000/a:t"),
            ("Example.COM/a", "example.com/a:latest"),
            ("a/b/c/d", "docker.io/a/b/c/d:latest"),
            ("my_user/my-app__x", "docker.io/my_user/my-app__x:latest"),
            ("x--y/z.w", "docker.io/x--y/z.w:latest"),
        ] {
            assert_eq!(norm(input), want, "{input}");
        }
    }

    #[test]
    fn digests() {
        let r = Reference::parse(&format!("nginx@{D}")).unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/nginx@{D}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_ref(), D);

        let r = Reference::parse(&format!("localhost:5000/a:1.0@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.0"));
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.manifest_ref(), D);
        assert_eq!(r.to_string(), format!("localhost:5000/a:1.0@{D}"));

        assert!(matches!(
            Reference::parse("nginx@sha512:abc"),
            Err(ReferenceError::UnsupportedDigest(_))
        ));
        assert!(matches!(
            Reference::parse("nginx@sha256:ABC"),
            Err(ReferenceError::UnsupportedDigest(_))
        ));
    }

    #[test]
    fn parts_and_api_host() {
        let r = Reference::parse("nginx").unwrap();
        assert_eq!(r.registry(), "docker.io");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "library/nginx");
        assert_eq!(r.tag(), Some("latest"));
        assert_eq!(r.name(), "docker.io/library/nginx");
        let q = Reference::parse("quay.io/oddnetworks/alpine-nodejs:4.2.2").unwrap();
        assert_eq!(q.api_host(), "quay.io");
        assert_eq!(q.repository(), "oddnetworks/alpine-nodejs");
        assert_eq!(q.manifest_ref(), "4.2.2");
    }

    #[test]
    fn familiar_forms() {
        for (input, want) in [
            ("nginx", "nginx:latest"),
            ("docker.io/library/nginx:1", "nginx:1"),
            ("tianon/true", "tianon/true:latest"),
            ("docker.io/library/a/b", "library/a/b:latest"),
            ("quay.io/o/a:4.2.2", "quay.io/o/a:4.2.2"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
        ] {
            assert_eq!(Reference::parse(input).unwrap().familiar(), want, "{input}");
        }
        assert_eq!(
            Reference::parse(&format!("nginx@{D}")).unwrap().familiar(),
            format!("nginx@{D}")
        );
        assert_eq!(Reference::parse("nginx").unwrap().familiar_name(), "nginx");
    }

    #[test]
    fn rejects_invalid_references() {
        assert_eq!(Reference::parse(""), Err(ReferenceError::Empty));
        assert!(matches!(
            Reference::parse("Nginx"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("quay.io/Odd/app"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse(&"a".repeat(64)),
            Err(ReferenceError::LooksLikeId(_))
        ));
        assert!(matches!(
            Reference::parse(&format!("x/{}", "a".repeat(260))),
            Err(ReferenceError::NameTooLong(_))
        ));
        for bad in [
            "nginx:",
            "nginx:-x",
            "nginx:.x",
            ":tag",
            "a//b",
            "/a",
            "a/",
            "a..b",
            "-a",
            "a-",
            "a___b",
            "a b",
            "localhost:x/a",
            "local_host.io/a",
            "[::zz]:5000/a",
            "registry.io:123456/a",
            "nginx:t@",
            "nginx@",
            "ñ",
            "a/ñ",
            "é:tag",
            "quay.io/a:ñ",
            "a@sha256:ñ",
            "ü.io/a",
            "@",
            ":",
            "/",
            &format!("nginx:{}", "t".repeat(129)),
        ] {
            let err = Reference::parse(bad).unwrap_err();
            assert!(!err.to_string().is_empty(), "{bad}");
        }
        // The message says what was wrong.
        let err = Reference::parse("nginx:-x").unwrap_err().to_string();
        assert!(err.contains("invalid tag"), "{err}");
    }

    #[test]
    fn with_digest_and_tag() {
        let r = Reference::parse("quay.io/a/b:1").unwrap();
        let d: Digest = D.parse().unwrap();
        assert_eq!(r.with_digest(d).to_string(), format!("quay.io/a/b@{D}"));
        assert_eq!(r.with_tag("2").unwrap().to_string(), "quay.io/a/b:2");
        assert!(r.with_tag("-2").is_err());
    }
}
