//! The HTTP side: one `ureq` agent, per-host state (which scheme answered,
//! how the host wants to be authenticated), authenticated requests with
//! retries, and the registry API calls shared by pull and push.

use crate::auth::{self, AuthCache, Challenge, Credential, DockerConfig, TokenAnswer};
use crate::mirrors::{self, RegistryConfig, Scheme, Source};
use crate::progress::Progress;
use crate::{Error, Result};
use berth_oci::{media, Digest};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use ureq::http::{self, Method, Response};
use ureq::Body;

/// Registries refuse larger manifests too (docker's limit is 4 MiB); the
/// cap keeps a hostile server from filling memory.
pub(crate) const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Error bodies are only read for their message.
const MAX_ERROR_BODY: u64 = 64 << 10;

/// Every media type a pull accepts, most specific first.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Time to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time to wait for a response's headers once the request is sent.
    pub response_timeout: Duration,
    /// Longest silence while a body streams (there is no total limit: a
    /// big layer on a slow link is fine as long as bytes keep coming).
    pub read_timeout: Duration,
    /// How often a failed idempotent request (and an interrupted blob
    /// download) is tried again.
    pub retries: u32,
    /// Pause before the first retry; each further one waits three times
    /// longer.
    pub retry_backoff: Duration,
    /// Blob transfers at once.
    pub parallel_transfers: usize,
    pub user_agent: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(15),
            response_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            retries: 2,
            retry_backoff: Duration::from_millis(200),
            parallel_transfers: 3,
            user_agent: concat!("berth/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// What the client learned about a host from its `/v2/` endpoint.
#[derive(Debug, Clone)]
struct HostState {
    /// `scheme://authority` that answered.
    base: String,
    challenge: Option<Challenge>,
}

/// A registry client. Cheap to share between threads; tokens and host
/// probes are cached for its lifetime, so one client per command is right.
pub struct Client {
    agent: ureq::Agent,
    registries: RegistryConfig,
    docker_config: DockerConfig,
    auth: AuthCache,
    hosts: Mutex<HashMap<String, HostState>>,
    pub(crate) options: ClientOptions,
}

/// A request body that can be sent again (after a `401`, a token is
/// fetched and the request repeated).
pub(crate) enum ReqBody<'a> {
    None,
    Bytes(&'a [u8]),
    /// A file of known size, reported to `progress` as it goes out.
    File {
        path: PathBuf,
        size: u64,
        digest: &'a Digest,
        progress: Option<&'a dyn Progress>,
    },
}

pub(crate) struct Req<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: ReqBody<'a>,
    /// Send the registry's credentials (false for URLs on other hosts,
    /// such as an upload location elsewhere).
    pub auth: bool,
}

impl<'a> Req<'a> {
    pub fn new(method: Method, url: String) -> Req<'a> {
        Req {
            method,
            url,
            headers: Vec::new(),
            body: ReqBody::None,
            auth: true,
        }
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Req<'a> {
        self.headers.push((name, value.into()));
        self
    }
    pub fn body(mut self, body: ReqBody<'a>) -> Req<'a> {
        self.body = body;
        self
    }
    fn idempotent(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }
}

/// A transport failure, kept apart from HTTP statuses so that callers can
/// tell "refused" (nothing listens) from other trouble.
pub(crate) struct TransportError {
    url: String,
    error: ureq::Error,
}

impl TransportError {
    fn refused(&self) -> bool {
        match &self.error {
            ureq::Error::Io(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            _ => false,
        }
    }
    fn retryable(&self) -> bool {
        matches!(
            self.error,
            ureq::Error::Io(_)
                | ureq::Error::Timeout(_)
                | ureq::Error::ConnectionFailed
                | ureq::Error::Protocol(_)
        )
    }
}

impl From<TransportError> for Error {
    fn from(t: TransportError) -> Error {
        Error::Unreachable {
            url: t.url,
            message: t.error.to_string(),
        }
    }
}

/// A manifest or index as served, with the digest it was verified against.
pub(crate) struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
    pub url: String,
}

impl Client {
    pub fn new(registries: RegistryConfig, docker_config: DockerConfig) -> Client {
        Client::with_options(registries, docker_config, ClientOptions::default())
    }

    pub fn with_options(
        registries: RegistryConfig,
        docker_config: DockerConfig,
        options: ClientOptions,
    ) -> Client {
        let tls = ureq::tls::TlsConfig::builder()
            // The platform's roots: this machine's HTTPS goes through a
            // proxy whose CA is only in the system bundle.
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            // Statuses are answers to interpret (401 starts the token
            // dance, 404 means unknown), not transport failures.
            .http_status_as_error(false)
            .timeout_resolve(Some(options.connect_timeout))
            .timeout_connect(Some(options.connect_timeout))
            .timeout_recv_response(Some(options.response_timeout))
            .timeout_per_read(Some(options.read_timeout))
            .timeout_per_write(Some(options.read_timeout))
            // Blob GETs redirect to storage (S3 and the like); ureq drops
            // the Authorization header on the way, as those hosts require.
            .max_redirects(10)
            .user_agent(options.user_agent.as_str())
            .build()
            .new_agent();
        Client {
            agent,
            registries,
            docker_config,
            auth: AuthCache::default(),
            hosts: Mutex::new(HashMap::new()),
            options,
        }
    }

    /// The CLI's client: mirrors from berth's config file and
    /// `BERTH_REGISTRY_MIRRORS`, credentials from docker's `config.json`.
    pub fn from_env() -> Result<Client> {
        Ok(Client::new(
            RegistryConfig::from_env_and_file()?,
            DockerConfig::load_default()?,
        ))
    }

    pub fn registries(&self) -> &RegistryConfig {
        &self.registries
    }

    /// Send once, or a few times with backoff for idempotent requests that
    /// failed in transit or met a busy gateway.
    fn transport(
        &self,
        req: &Req<'_>,
        authorization: Option<&str>,
    ) -> std::result::Result<Response<Body>, TransportError> {
        let attempts = if req.idempotent() {
            1 + self.options.retries
        } else {
            1
        };
        let mut delay = self.options.retry_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= attempts;
            match self.send_once(req, authorization) {
                Ok(resp) if !last && matches!(resp.status().as_u16(), 502..=504) => {}
                Ok(resp) => return Ok(resp),
                Err(e) if !last && e.retryable() => {}
                Err(e) => return Err(e),
            }
            std::thread::sleep(delay);
            delay *= 3;
        }
    }

    fn send_once(
        &self,
        req: &Req<'_>,
        authorization: Option<&str>,
    ) -> std::result::Result<Response<Body>, TransportError> {
        let fail = |error: ureq::Error| TransportError {
            url: req.url.clone(),
            error,
        };
        let mut builder = http::Request::builder()
            .method(req.method.clone())
            .uri(req.url.as_str());
        for (name, value) in &req.headers {
            builder = builder.header(*name, value.as_str());
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        // An unparsable URL (say, a server's Location header) becomes an
        // error here, never a panic.
        let result = match &req.body {
            ReqBody::None => builder
                .body(())
                .map_err(|e| fail(ureq::Error::Http(e)))
                .map(|r| self.agent.run(r)),
            ReqBody::Bytes(b) => builder
                .body(*b)
                .map_err(|e| fail(ureq::Error::Http(e)))
                .map(|r| self.agent.run(r)),
            ReqBody::File {
                path,
                size,
                digest,
                progress,
            } => {
                let file = std::fs::File::open(path).map_err(|e| fail(ureq::Error::Io(e)))?;
                let mut reader = CountingReader {
                    inner: file.take(*size),
                    digest,
                    progress: *progress,
                };
                builder
                    .header("Content-Length", size.to_string())
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map_err(|e| fail(ureq::Error::Http(e)))
                    .map(|r| self.agent.run(r))
            }
        }?;
        result.map_err(fail)
    }

    /// What the host at `authority` is: probe `/v2/` once per client to
    /// learn the scheme (when there is a choice) and its auth challenge.
    fn host_state(&self, authority: &str, schemes: &[Scheme]) -> Result<(String, HostState)> {
        // Keyed by the schemes too: `https://h:1` as a mirror and `h:1` as
        // a loopback registry (HTTP first) may be different servers.
        let key = format!("{schemes:?} {authority}");
        if let Some(s) = self.hosts_lock().get(&key) {
            return Ok((key, s.clone()));
        }
        let mut last_error = None;
        for (i, scheme) in schemes.iter().enumerate() {
            let base = format!("{}://{authority}", scheme.as_str());
            let req = Req::new(Method::GET, format!("{base}/v2/"));
            match self.transport(&req, None) {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    // A TLS server answers plain HTTP with 400: go on to
                    // the next scheme if there is one.
                    if *scheme == Scheme::Http && status == 400 && i + 1 < schemes.len() {
                        continue;
                    }
                    let state = HostState {
                        base,
                        challenge: pick_challenge(&resp),
                    };
                    self.hosts_lock().insert(key.clone(), state.clone());
                    return Ok((key, state));
                }
                Err(e) => {
                    // Nothing listens on the port: another scheme on the
                    // same port will not do better.
                    let refused = e.refused();
                    last_error = Some(e);
                    if refused {
                        break;
                    }
                }
            }
        }
        Err(match last_error {
            Some(e) => e.into(),
            None => Error::Unreachable {
                url: authority.to_string(),
                message: "no scheme to try".into(),
            },
        })
    }

    fn hosts_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HostState>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_challenge(&self, host_key: &str, challenge: Challenge) {
        if let Some(s) = self.hosts_lock().get_mut(host_key) {
            s.challenge = Some(challenge);
        }
    }

    fn challenge(&self, host_key: &str) -> Option<Challenge> {
        self.hosts_lock()
            .get(host_key)
            .and_then(|s| s.challenge.clone())
    }

    /// A handle on `source`'s repository for the API calls below.
    pub(crate) fn open_repo(&self, source: &Source, push: bool) -> Result<Repo<'_>> {
        let (host_key, state) = self.host_state(&source.authority, &source.schemes)?;
        let actions = if push { "pull,push" } else { "pull" };
        Ok(Repo {
            client: self,
            authority: source.authority.clone(),
            host_key,
            base: state.base,
            repository: source.repository.clone(),
            scope: format!("repository:{}:{actions}", source.repository),
            mirror_of: source.mirror_of.clone(),
        })
    }

    fn credential(&self, authority: &str) -> Result<Option<Credential>> {
        Ok(self.auth.credential(&self.docker_config, authority)?)
    }

    /// The `Authorization` value for a request to `authority` needing
    /// `scope`, fetching a token if the host wants one and none is cached.
    fn authorization(
        &self,
        authority: &str,
        host_key: &str,
        scope: &str,
    ) -> Result<Option<String>> {
        let Some(challenge) = self.challenge(host_key) else {
            return Ok(None);
        };
        if challenge.is_basic() {
            return Ok(match self.credential(authority)? {
                Some(Credential::Basic { username, password }) => {
                    Some(Credential::basic_header(&username, &password))
                }
                _ => None,
            });
        }
        if !challenge.is_bearer() {
            return Ok(None);
        }
        let realm = challenge.param("realm").unwrap_or_default().to_string();
        let service = challenge.param("service").unwrap_or_default().to_string();
        if let Some(token) = self.auth.token(&realm, &service, scope) {
            return Ok(Some(format!("Bearer {token}")));
        }
        let token = self.fetch_token(authority, &challenge, scope)?;
        self.auth.put_token(&realm, &service, scope, token.clone());
        Ok(Some(format!("Bearer {}", token.value)))
    }

    fn fetch_token(
        &self,
        authority: &str,
        challenge: &Challenge,
        scope: &str,
    ) -> Result<auth::Token> {
        let realm = challenge.param("realm").unwrap_or_default();
        let service = challenge.param("service").unwrap_or_default();
        let denied = |detail: String| Error::Unauthorized {
            host: authority.to_string(),
            detail,
        };
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(denied(format!(
                "the token realm {realm:?} is not an http(s) URL"
            )));
        }
        // The registry's own scope (when it names one) joins ours: it is
        // what the refused request needed. Several scopes in one string
        // (space-separated, as registries write them in a challenge and as
        // a mount asks for two repositories) go as one `scope` each.
        let mut scopes: Vec<String> = Vec::new();
        for s in scope.split_whitespace().chain(
            challenge
                .param("scope")
                .unwrap_or_default()
                .split_whitespace(),
        ) {
            if !scopes.iter().any(|x| x == s) {
                scopes.push(s.to_string());
            }
        }
        let credential = self.credential(authority)?;
        let realm_authority = realm
            .split_once("://")
            .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
            .unwrap_or("");
        if credential.is_some()
            && realm.starts_with("http://")
            && !mirrors::is_loopback(realm_authority)
        {
            return Err(denied(format!(
                "refusing to send credentials to the plain-HTTP token realm {realm}"
            )));
        }
        let form;
        let req = match &credential {
            // A refresh token is traded with an OAuth2 POST.
            Some(Credential::IdentityToken(refresh)) => {
                let mut body = format!(
                    "grant_type=refresh_token&client_id=berth&service={}&refresh_token={}",
                    encode_component(service),
                    encode_component(refresh)
                );
                for s in &scopes {
                    body.push_str("&scope=");
                    body.push_str(&encode_component(s));
                }
                form = body.into_bytes();
                Req::new(Method::POST, realm.to_string())
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(ReqBody::Bytes(&form))
            }
            Some(Credential::Basic { username, password }) => {
                let mut url = token_url(realm, service, &scopes);
                url.push_str("&account=");
                url.push_str(&encode_component(username));
                Req::new(Method::GET, url).header(
                    "Authorization",
                    Credential::basic_header(username, password),
                )
            }
            None => Req::new(Method::GET, token_url(realm, service, &scopes)),
        };
        self.token_request(authority, &req, credential.is_some())
    }

    fn token_request(
        &self,
        authority: &str,
        req: &Req<'_>,
        with_credentials: bool,
    ) -> Result<auth::Token> {
        let url = req.url.clone();
        let mut resp = self.transport(req, None)?;
        let status = resp.status().as_u16();
        if status != 200 {
            let detail = error_detail(&mut resp);
            let host = authority.to_string();
            let detail = format!("the token server {url} answered HTTP {status}{detail}");
            let hint = match (status, with_credentials) {
                (401 | 403, true) => "; the saved credentials were not accepted".to_string(),
                (401 | 403, false) => {
                    format!("; no credentials are saved for it (run `docker login {authority}`)")
                }
                _ => String::new(),
            };
            return Err(Error::Unauthorized {
                host,
                detail: format!("{detail}{hint}"),
            });
        }
        let bytes = read_limited(&mut resp, MAX_ERROR_BODY, &url, "token answer")?;
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|e| Error::BadResponse {
                url: url.clone(),
                what: "token answer".into(),
                message: e.to_string(),
            })?;
        answer.into_token().ok_or_else(|| Error::BadResponse {
            url,
            what: "token answer".into(),
            message: "no token in it".into(),
        })
    }
}

fn token_url(realm: &str, service: &str, scopes: &[String]) -> String {
    let mut url = realm.to_string();
    url.push(if realm.contains('?') { '&' } else { '?' });
    url.push_str("service=");
    url.push_str(&encode_component(service));
    for s in scopes {
        url.push_str("&scope=");
        url.push_str(&encode_component(s));
    }
    url
}

/// Percent-encode everything but RFC 3986's unreserved characters.
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Prefer a bearer challenge (token auth) over basic when a host offers
/// both.
fn pick_challenge(resp: &Response<Body>) -> Option<Challenge> {
    let mut all: Vec<Challenge> = resp
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(auth::parse_www_authenticate)
        .collect();
    all.sort_by_key(|c| !c.is_bearer());
    all.into_iter().find(|c| c.is_bearer() || c.is_basic())
}

pub(crate) fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Read at most `limit` bytes of body; more is an error, not a truncation.
pub(crate) fn read_limited(
    resp: &mut Response<Body>,
    limit: u64,
    url: &str,
    what: &str,
) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut reader = resp.body_mut().as_reader().take(limit + 1);
    reader
        .read_to_end(&mut buf)
        .map_err(|e| Error::Unreachable {
            url: url.to_string(),
            message: format!("reading the {what}: {e}"),
        })?;
    if buf.len() as u64 > limit {
        return Err(Error::TooLarge {
            url: url.to_string(),
            what: what.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// `: CODE: message` from a registry error body (`{"errors": [...]}`), or
/// a snippet of whatever else it sent, or nothing.
pub(crate) fn error_detail(resp: &mut Response<Body>) -> String {
    let mut buf = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(MAX_ERROR_BODY)
        .read_to_end(&mut buf);
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(&buf) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| match (i.code.is_empty(), i.message.is_empty()) {
                (false, false) => format!("{}: {}", i.code, i.message),
                (false, true) => i.code.clone(),
                _ => i.message.clone(),
            })
            .filter(|s| !s.is_empty())
            .collect();
        if !parts.is_empty() {
            return format!(": {}", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        let snippet: String = text.chars().take(200).collect();
        format!(": {}", snippet.replace(['\n', '\r'], " "))
    }
}

struct CountingReader<'a, R> {
    inner: R,
    digest: &'a Digest,
    progress: Option<&'a dyn Progress>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let (Some(p), true) = (self.progress, n > 0) {
            p.on_bytes(self.digest, n as u64);
        }
        Ok(n)
    }
}

/// One repository on one endpoint (a mirror or the registry itself).
pub(crate) struct Repo<'c> {
    pub client: &'c Client,
    pub authority: String,
    /// The client's key for what it knows about the host.
    host_key: String,
    /// `scheme://authority`.
    pub base: String,
    pub repository: String,
    scope: String,
    pub mirror_of: Option<String>,
}

impl<'c> Repo<'c> {
    pub fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repository)
    }

    /// The same repository, with pull access to `other` (on the same
    /// host) asked for along with its own: a cross-repository mount needs
    /// both in one token.
    pub fn with_pull_of(&self, other: &str) -> Repo<'c> {
        Repo {
            client: self.client,
            authority: self.authority.clone(),
            host_key: self.host_key.clone(),
            base: self.base.clone(),
            repository: self.repository.clone(),
            scope: format!("{} repository:{other}:pull", self.scope),
            mirror_of: self.mirror_of.clone(),
        }
    }

    /// Send with the repository's credentials; a `401` refreshes the
    /// challenge and token once and repeats the request.
    pub fn send(&self, req: &Req<'_>) -> Result<Response<Body>> {
        let mut renewed = false;
        loop {
            let authorization = if req.auth {
                self.client
                    .authorization(&self.authority, &self.host_key, &self.scope)?
            } else {
                None
            };
            let mut resp = self.client.transport(req, authorization.as_deref())?;
            if resp.status().as_u16() != 401 || !req.auth {
                return Ok(resp);
            }
            let fresh = pick_challenge(&resp);
            let have_credentials = self.client.credential(&self.authority)?.is_some();
            if renewed || fresh.is_none() || (authorization.is_some() && fresh_is_basic(&fresh)) {
                let detail = error_detail(&mut resp);
                let hint = if have_credentials {
                    "the saved credentials were not accepted".to_string()
                } else {
                    format!(
                        "no credentials saved for it (run `docker login {}`)",
                        self.authority
                    )
                };
                return Err(Error::Unauthorized {
                    host: self.authority.clone(),
                    detail: format!("{} {}{detail}: {hint}", req.method, req.url),
                });
            }
            if let Some(old) = self.client.challenge(&self.host_key) {
                self.client.auth.forget_token(
                    old.param("realm").unwrap_or_default(),
                    old.param("service").unwrap_or_default(),
                    &self.scope,
                );
            }
            if let Some(c) = fresh {
                self.client.set_challenge(&self.host_key, c);
            }
            renewed = true;
        }
    }

    /// Turn an unexpected status into the error that says the most.
    pub fn status_error(&self, req: &Req<'_>, mut resp: Response<Body>) -> Error {
        let status = resp.status().as_u16();
        let detail = error_detail(&mut resp);
        match status {
            401 => Error::Unauthorized {
                host: self.authority.clone(),
                detail: format!("{} {}{detail}", req.method, req.url),
            },
            403 => Error::Denied {
                host: self.authority.clone(),
                detail: format!("{} {}{detail}", req.method, req.url),
            },
            _ => Error::Status {
                method: req.method.to_string(),
                url: req.url.clone(),
                status,
                detail,
            },
        }
    }

    /// GET a manifest or index by tag or digest and verify it: against
    /// `expected` when the caller knows the digest, else against the
    /// registry's `Docker-Content-Digest`. `display` names it in errors.
    pub fn fetch_manifest(
        &self,
        reference: &str,
        expected: Option<&Digest>,
        display: &str,
    ) -> Result<FetchedManifest> {
        let req = Req::new(Method::GET, self.url(&format!("manifests/{reference}")))
            .header("Accept", MANIFEST_ACCEPT);
        let mut resp = self.send(&req)?;
        match resp.status().as_u16() {
            200 => {}
            404 => return Err(Error::ManifestUnknown(display.to_string())),
            _ => return Err(self.status_error(&req, resp)),
        }
        let content_type = header(&resp, "content-type");
        let served_digest = header(&resp, "docker-content-digest");
        let bytes = read_limited(&mut resp, MAX_MANIFEST_BYTES, &req.url, "manifest")?;
        let digest = Digest::of(&bytes);
        let claimed = expected
            .cloned()
            .or_else(|| served_digest.and_then(|d| d.trim().parse::<Digest>().ok()));
        if let Some(want) = claimed {
            if want != digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest of {display}"),
                    url: req.url,
                    expected: want,
                    actual: digest,
                });
            }
        }
        let media_type = manifest_media_type(&bytes, content_type.as_deref()).ok_or_else(|| {
            Error::UnsupportedMediaType {
                reference: display.to_string(),
                media_type: content_type.unwrap_or_default(),
            }
        })?;
        Ok(FetchedManifest {
            bytes,
            media_type,
            digest,
            url: req.url,
        })
    }

    /// GET a blob; the caller streams the body.
    pub fn get_blob(&self, digest: &Digest) -> Result<(String, Response<Body>)> {
        let req = Req::new(Method::GET, self.url(&format!("blobs/{digest}")));
        let resp = self.send(&req)?;
        match resp.status().as_u16() {
            200 => Ok((req.url, resp)),
            404 => Err(self.blob_unknown(digest)),
            _ => Err(self.status_error(&req, resp)),
        }
    }

    pub fn blob_unknown(&self, digest: &Digest) -> Error {
        Error::BlobUnknown {
            registry: self.base.clone(),
            repository: self.repository.clone(),
            digest: digest.clone(),
        }
    }
}

fn fresh_is_basic(c: &Option<Challenge>) -> bool {
    c.as_ref().is_some_and(|c| c.is_basic())
}

/// The media type of a manifest document: what it says about itself, else
/// what the server said, else what its shape says. `None` for anything
/// that is not an image manifest or index (schema 1, for one).
pub(crate) fn manifest_media_type(bytes: &[u8], content_type: Option<&str>) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Shape {
        #[serde(default)]
        schema_version: Option<u64>,
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        config: Option<serde_json::Value>,
    }
    let shape: Shape = serde_json::from_slice(bytes).ok()?;
    if shape.schema_version != Some(2) {
        return None;
    }
    let known = |t: &str| media::is_index(t) || media::is_manifest(t);
    if let Some(t) = shape.media_type.filter(|t| !t.is_empty()) {
        return known(&t).then_some(t);
    }
    let header_type = content_type
        .map(|c| c.split(';').next().unwrap_or("").trim().to_string())
        .filter(|t| known(t));
    if let Some(t) = header_type {
        return Some(t);
    }
    if shape.manifests.is_some() {
        Some(media::OCI_INDEX.to_string())
    } else if shape.config.is_some() {
        Some(media::OCI_MANIFEST.to_string())
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_type_detection() {
        let oci = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(oci, None).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        let bare = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        assert_eq!(
            manifest_media_type(
                bare,
                Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8")
            )
            .as_deref(),
            Some(media::DOCKER_MANIFEST)
        );
        assert_eq!(
            manifest_media_type(bare, Some("application/json")).as_deref(),
            Some(media::OCI_MANIFEST)
        );
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert_eq!(
            manifest_media_type(index, None).as_deref(),
            Some(media::OCI_INDEX)
        );
        let v1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert_eq!(manifest_media_type(v1, None), None);
        let other = br#"{"schemaVersion":2,"mediaType":"application/vnd.foo"}"#;
        assert_eq!(manifest_media_type(other, None), None);
        assert_eq!(manifest_media_type(b"not json", None), None);
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            encode_component("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
        assert_eq!(
            token_url("https://auth/t?x=1", "svc", &["s:1".into(), "s:2".into()]),
            "https://auth/t?x=1&service=svc&scope=s%3A1&scope=s%3A2"
        );
        assert_eq!(
            token_url("https://auth/t", "", &[]),
            "https://auth/t?service="
        );
    }
}
