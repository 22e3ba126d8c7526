//! Registry credentials and the token dance.
//!
//! Credentials come from docker's `config.json` (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`), so `docker login` works for berth too:
//! a credential helper for the host (`credHelpers`), else the default store
//! (`credsStore`), else the inline `auths` entry.
//!
//! A registry says how to authenticate in its `401`'s `WWW-Authenticate`:
//! `Basic` (send the credentials) or `Bearer realm=…,service=…,scope=…`
//! (trade the credentials, or nothing, for a token at the realm). Tokens are
//! cached per realm, service and scope for the life of the client.

use base64::Engine as _;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid docker config JSON: {source}", path.display())]
    BadConfig {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the saved credentials for {host} in {} are not valid base64 user:password", path.display())]
    BadAuthField { host: String, path: PathBuf },
    #[error("credential helper docker-credential-{helper} failed for {host}: {message}")]
    Helper {
        helper: String,
        host: String,
        message: String,
    },
}

/// What a user logged in with. `Debug` never shows secrets.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Basic {
        username: String,
        password: String,
    },
    /// An OAuth2 refresh token (docker's `identitytoken`), traded at the
    /// realm for access tokens.
    IdentityToken(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

impl Credential {
    pub fn basic_header(username: &str, password: &str) -> String {
        let raw = format!("{username}:{password}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigShape {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

/// The credential part of docker's `config.json`.
#[derive(Debug, Default, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
    /// Where `docker-credential-*` programs are looked up; `None` means `PATH`.
    helper_dir: Option<PathBuf>,
}

/// The server URL docker uses for Docker Hub in `config.json` and with
/// credential helpers.
const DOCKER_HUB_LOGIN: &str = "https://index.docker.io/v1/";

impl DockerConfig {
    /// No credentials at all.
    pub fn empty() -> DockerConfig {
        DockerConfig::default()
    }

    /// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
    pub fn default_path() -> PathBuf {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir).join("config.json");
        }
        let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
        PathBuf::from(home).join(".docker/config.json")
    }

    /// Load the default file; a missing file means no credentials.
    pub fn load_default() -> Result<DockerConfig, AuthError> {
        let path = Self::default_path();
        match std::fs::read(&path) {
            Ok(bytes) => Self::from_json(&bytes, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig::empty()),
            Err(source) => Err(AuthError::Read { path, source }),
        }
    }

    /// Parse `config.json` text (`path` is only for messages).
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<DockerConfig, AuthError> {
        let shape: ConfigShape =
            serde_json::from_slice(bytes).map_err(|source| AuthError::BadConfig {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(DockerConfig {
            path: path.to_path_buf(),
            auths: shape.auths,
            creds_store: shape.creds_store.filter(|s| !s.is_empty()),
            cred_helpers: shape.cred_helpers,
            helper_dir: None,
        })
    }

    /// Look credential helpers up in `dir` instead of `PATH`.
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> DockerConfig {
        self.helper_dir = Some(dir.into());
        self
    }

    /// The credentials for a registry host (`host[:port]` as the registry
    /// is named in references; `registry-1.docker.io` counts as Docker Hub).
    pub fn credential_for(&self, host: &str) -> Result<Option<Credential>, AuthError> {
        let keys = login_keys(host);
        let helper = keys
            .iter()
            .find_map(|k| self.cred_helpers.get(k))
            .or(self.creds_store.as_ref());
        if let Some(helper) = helper {
            if let Some(c) = self.run_helper(helper, &keys[0])? {
                return Ok(Some(c));
            }
        }
        let entry = keys.iter().find_map(|k| {
            self.auths
                .iter()
                .find(|(key, _)| normalize_login_key(key) == *k)
                .map(|(_, e)| e)
        });
        let Some(entry) = entry else { return Ok(None) };
        if let Some(token) = entry.identitytoken.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(token.clone())));
        }
        if let Some(auth) = entry.auth.as_ref().filter(|a| !a.is_empty()) {
            let bad = || AuthError::BadAuthField {
                host: host.to_string(),
                path: self.path.clone(),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (username, password) = text.split_once(':').ok_or_else(bad)?;
            return Ok(Some(Credential::Basic {
                username: username.to_string(),
                password: password.to_string(),
            }));
        }
        match (&entry.username, &entry.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credential::Basic {
                username: u.clone(),
                password: p.clone(),
            })),
            _ => Ok(None),
        }
    }

    /// Run `docker-credential-<helper> get` with the server URL on stdin.
    /// A helper that is not installed, or that has nothing for the host,
    /// yields no credentials: a `credsStore` copied from another machine
    /// must not break pulls of public images.
    fn run_helper(&self, helper: &str, server: &str) -> Result<Option<Credential>, AuthError> {
        let program = format!("docker-credential-{helper}");
        let program = match &self.helper_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let fail = |message: String| AuthError::Helper {
            helper: helper.to_string(),
            host: server.to_string(),
            message,
        };
        let mut child = match Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(fail(e.to_string())),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading closes the pipe; its exit
            // status below says what went wrong.
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let msg = format!(
                "{}{}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if msg.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(if msg.is_empty() {
                format!("exited with {}", out.status)
            } else {
                msg
            }));
        }
        parse_helper_output(stdout.as_bytes()).map_err(fail)
    }
}

/// Parse a credential helper's `get` answer:
/// `{"ServerURL": …, "Username": …, "Secret": …}`; the user `<token>` marks
/// the secret as an identity token.
pub fn parse_helper_output(bytes: &[u8]) -> Result<Option<Credential>, String> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(rename = "Username", default)]
        username: String,
        #[serde(rename = "Secret", default)]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(bytes)
        .map_err(|e| format!("unexpected output (not credential JSON): {e}"))?;
    if a.secret.is_empty() {
        return Ok(None);
    }
    if a.username == "<token>" {
        return Ok(Some(Credential::IdentityToken(a.secret)));
    }
    Ok(Some(Credential::Basic {
        username: a.username,
        password: a.secret,
    }))
}

/// The keys a registry's credentials may be saved under, the canonical one
/// (what helpers are asked for) first.
fn login_keys(host: &str) -> Vec<String> {
    let host = host.to_ascii_lowercase();
    if matches!(
        host.as_str(),
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        vec![
            DOCKER_HUB_LOGIN.to_string(),
            "index.docker.io".to_string(),
            "docker.io".to_string(),
            "registry-1.docker.io".to_string(),
        ]
    } else {
        vec![host]
    }
}

/// `https://host:port/v1/` and `host:port` name the same login.
fn normalize_login_key(key: &str) -> String {
    let lower = key.trim().to_ascii_lowercase();
    if lower == DOCKER_HUB_LOGIN {
        return lower;
    }
    let no_scheme = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    no_scheme.split('/').next().unwrap_or("").to_string()
}

/// One challenge from a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lowercased: `bearer`, `basic`.
    pub scheme: String,
    /// Parameter names lowercased, values unquoted.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
    pub fn is_bearer(&self) -> bool {
        self.scheme == "bearer"
    }
    pub fn is_basic(&self) -> bool {
        self.scheme == "basic"
    }
}

/// Parse a `WWW-Authenticate` value (RFC 9110 §11.6.1): one or more
/// challenges, each a scheme and comma-separated `name=value` parameters
/// where values may be quoted strings with backslash escapes. Malformed
/// input yields what could be understood, never a panic.
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        let Some(scheme) = p.token() else { break };
        let mut challenge = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: BTreeMap::new(),
        };
        loop {
            p.skip(|b| b == b' ' || b == b'\t');
            let save = p.i;
            let Some(name) = p.token() else { break };
            p.skip(|b| b == b' ' || b == b'\t');
            if !p.eat(b'=') {
                // The next challenge's scheme (a token68 blob reads as one
                // too, and is harmless: no registry sends one).
                p.i = save;
                break;
            }
            p.skip(|b| b == b' ' || b == b'\t');
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.until(|b| b == b',' || b == b' ' || b == b'\t')
            };
            challenge.params.insert(name.to_ascii_lowercase(), value);
            p.skip(|b| b == b' ' || b == b'\t');
            if !p.eat(b',') {
                break;
            }
            // Empty list elements are allowed (`a=b,,c=d`).
            p.skip(|b| b == b' ' || b == b'\t' || b == b',');
        }
        out.push(challenge);
        if p.i >= p.s.len() {
            break;
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }
    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn is_tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        self.skip(Self::is_tchar);
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn until(&mut self, stop: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        self.skip(|b| !stop(b));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn quoted(&mut self) -> String {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        while let Some(b) = self.peek() {
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(b),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    expires: Option<Instant>,
}

impl Token {
    pub fn new(value: String, expires_in: Option<u64>) -> Token {
        // Renew a little early: the clock started when the registry issued
        // the token, before the answer reached us.
        let expires = expires_in
            .filter(|s| *s > 0)
            .map(|s| Instant::now() + Duration::from_secs(s.saturating_sub(10).max(1)));
        Token { value, expires }
    }
    fn fresh(&self) -> bool {
        self.expires.is_none_or(|e| Instant::now() < e)
    }
}

/// The token endpoint's answer (docker's `token`, OAuth2's `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenAnswer {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenAnswer {
    pub fn into_token(self) -> Option<Token> {
        let value = self
            .token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))?;
        Some(Token::new(value, self.expires_in))
    }
}

/// Tokens by (realm, service, scope) plus credentials by host, both kept
/// for the life of the client (credential helpers are slow processes).
#[derive(Default)]
pub(crate) struct AuthCache {
    tokens: Mutex<HashMap<(String, String, String), Token>>,
    credentials: Mutex<HashMap<String, Option<Credential>>>,
}

impl AuthCache {
    pub fn token(&self, realm: &str, service: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens
            .get(&(realm.to_string(), service.to_string(), scope.to_string()))
            .filter(|t| t.fresh())
            .map(|t| t.value.clone())
    }

    pub fn put_token(&self, realm: &str, service: &str, scope: &str, token: Token) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.insert(
            (realm.to_string(), service.to_string(), scope.to_string()),
            token,
        );
    }

    pub fn forget_token(&self, realm: &str, service: &str, scope: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        tokens.remove(&(realm.to_string(), service.to_string(), scope.to_string()));
    }

    pub fn credential(
        &self,
        config: &DockerConfig,
        host: &str,
    ) -> Result<Option<Credential>, AuthError> {
        if let Some(c) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            return Ok(c.clone());
        }
        let c = config.credential_for(host)?;
        self.credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_www_authenticate(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#,
        );
        assert_eq!(c.len(), 1);
        assert!(c[0].is_bearer());
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(c[0].param("scope"), Some("repository:library/nginx:pull"));

        // Scopes with commas inside quotes, spaces around separators,
        // unquoted values, odd case.
        let c = parse_www_authenticate(
            r#"bearer  Realm = "http://127.0.0.1:1/t" , scope="repository:a/b:pull,push", error=invalid_token"#,
        );
        assert_eq!(c[0].param("realm"), Some("http://127.0.0.1:1/t"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull,push"));
        assert_eq!(c[0].param("error"), Some("invalid_token"));
    }

    #[test]
    fn parses_basic_and_several_challenges() {
        let c = parse_www_authenticate(r#"Basic realm="Registry Realm""#);
        assert!(c[0].is_basic());
        assert_eq!(c[0].param("realm"), Some("Registry Realm"));

        let c =
            parse_www_authenticate(r#"Basic realm="x", Bearer realm="https://a/t",service="s""#);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].is_basic());
        assert!(c[1].is_bearer());
        assert_eq!(c[1].param("service"), Some("s"));

        let c = parse_www_authenticate(r#"Bearer realm="a\"b\\c""#);
        assert_eq!(c[0].param("realm"), Some(r#"a"b\c"#));
        assert_eq!(parse_www_authenticate("Basic")[0].scheme, "basic");
        assert!(parse_www_authenticate("").is_empty());
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "=",
            ",,,",
            "Bearer realm=\"unterminated",
            "Bearer =x",
            "Bearer realm=",
            "Negotiate abc==",
            "\u{1F600} x=y",
            "x y z",
        ] {
            let _ = parse_www_authenticate(s);
        }
        let c = parse_www_authenticate("Bearer a=b,,c=d");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].param("c"), Some("d"));
        let c = parse_www_authenticate("Negotiate abc==, Basic realm=r");
        assert!(c.iter().any(|c| c.is_basic()), "{c:?}");
    }

    fn config(json: &str) -> DockerConfig {
        DockerConfig::from_json(json.as_bytes(), Path::new("config.json")).unwrap()
    }

    #[test]
    fn reads_inline_auths() {
        // "user:pa:ss" — the password may itself hold colons.
        let c = config(
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
                "quay.io": {"auth": "dXNlcjpwYTpzcw=="},
                "http://localhost:5000/v2/": {"username": "u", "password": "p"},
                "ghcr.io": {"identitytoken": "refresh-me"},
                "empty.io": {}
            }}"#,
        );
        let basic = |u: &str, p: &str| {
            Some(Credential::Basic {
                username: u.into(),
                password: p.into(),
            })
        };
        assert_eq!(
            c.credential_for("docker.io").unwrap(),
            basic("hub", "secret")
        );
        assert_eq!(
            c.credential_for("registry-1.docker.io").unwrap(),
            basic("hub", "secret")
        );
        assert_eq!(c.credential_for("quay.io").unwrap(), basic("user", "pa:ss"));
        assert_eq!(c.credential_for("localhost:5000").unwrap(), basic("u", "p"));
        assert_eq!(
            c.credential_for("ghcr.io").unwrap(),
            Some(Credential::IdentityToken("refresh-me".into()))
        );
        assert_eq!(c.credential_for("empty.io").unwrap(), None);
        assert_eq!(c.credential_for("other.io").unwrap(), None);
        assert!(!format!("{:?}", basic("hub", "secret")).contains("secret"));

        let bad = config(r#"{"auths": {"x.io": {"auth": "!!!"}}}"#);
        assert!(matches!(
            bad.credential_for("x.io"),
            Err(AuthError::BadAuthField { .. })
        ));
        assert!(DockerConfig::from_json(b"{not json", Path::new("c")).is_err());
        // Unknown keys (docker writes many) are fine.
        config(r#"{"psFormat": "table", "auths": {}, "plugins": {"x": {}}}"#);
    }

    #[test]
    fn runs_credential_helpers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = |name: &str, body: &str| {
            let p = dir.path().join(format!("docker-credential-{name}"));
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // Echoes the server it was asked about as the user name.
        script(
            "echo",
            r#"read -r server; printf '{"ServerURL":"%s","Username":"%s","Secret":"pw"}' "$server" "$server""#,
        );
        script("token", r#"printf '{"Username":"<token>","Secret":"rt"}'"#);
        script(
            "none",
            "echo 'credentials not found in native keychain'; exit 1",
        );
        script("broken", "echo 'boom' >&2; exit 3");
        let c = config(
            r#"{"credsStore": "echo",
                "credHelpers": {"ghcr.io": "token", "none.io": "none", "broken.io": "broken",
                                "missing.io": "not-installed"},
                "auths": {"none.io": {"auth": "dTpw"}}}"#,
        )
        .with_helper_dir(dir.path());
        assert_eq!(
            c.credential_for("docker.io").unwrap(),
            Some(Credential::Basic {
                username: "https://index.docker.io/v1/".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            c.credential_for("quay.io").unwrap(),
            Some(Credential::Basic {
                username: "quay.io".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            c.credential_for("ghcr.io").unwrap(),
            Some(Credential::IdentityToken("rt".into()))
        );
        // Nothing in the helper: the inline entry still counts.
        assert_eq!(
            c.credential_for("none.io").unwrap(),
            Some(Credential::Basic {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(c.credential_for("missing.io").unwrap(), None);
        let err = c.credential_for("broken.io").unwrap_err().to_string();
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn helper_output() {
        assert_eq!(
            parse_helper_output(br#"{"Username":"u","Secret":""}"#),
            Ok(None)
        );
        assert!(parse_helper_output(b"nope").is_err());
    }

    #[test]
    fn token_answers_and_expiry() {
        let a: TokenAnswer =
            serde_json::from_str(r#"{"access_token":"x","expires_in":300}"#).unwrap();
        assert_eq!(a.into_token().unwrap().value, "x");
        let a: TokenAnswer = serde_json::from_str(r#"{"token":"","access_token":"y"}"#).unwrap();
        assert_eq!(a.into_token().unwrap().value, "y");
        let a: TokenAnswer = serde_json::from_str(r#"{}"#).unwrap();
        assert!(a.into_token().is_none());

        let cache = AuthCache::default();
        cache.put_token("r", "s", "scope", Token::new("t".into(), Some(300)));
        assert_eq!(cache.token("r", "s", "scope").as_deref(), Some("t"));
        assert_eq!(cache.token("r", "s", "other"), None);
        cache.put_token(
            "r",
            "s",
            "old",
            Token {
                value: "o".into(),
                expires: Some(Instant::now() - Duration::from_secs(1)),
            },
        );
        assert_eq!(cache.token("r", "s", "old"), None);
        cache.forget_token("r", "s", "scope");
        assert_eq!(cache.token("r", "s", "scope"), None);
    }
}
