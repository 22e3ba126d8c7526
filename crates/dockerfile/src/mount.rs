//! `RUN --mount=type=cache,target=/root/.cache,…` specifications.
//!
//! At parse time only the CSV shape and `from=` are checked, because other
//! values may still hold `$VARS`; the builder expands the spec and then
//! calls [`parse_mount`] for the full check, as BuildKit does.

use thiserror::Error;

use crate::unicode::go_quote;
use crate::units::{parse_bool, parse_uint32, ram_in_bytes};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// Cache mount sharing between concurrent builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// A parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub kind: MountType,
    /// Stage or image to mount from (bind, cache).
    pub from: Option<String>,
    pub source: Option<String>,
    pub target: Option<String>,
    pub read_only: bool,
    /// tmpfs size in bytes.
    pub size_limit: Option<i64>,
    /// Cache or secret id.
    pub id: Option<String>,
    pub sharing: Option<Sharing>,
    /// Secret/ssh: fail when not provided.
    pub required: bool,
    /// Secret: expose as this environment variable.
    pub env: Option<String>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MountError {
    #[error("failed to parse csv mounts: {0}")]
    Csv(String),
    #[error("'from' doesn't support variable expansion, define alias stage instead")]
    FromVariable,
    #[error("invalid field '{0}' must be a key=value pair")]
    NotKeyValue(String),
    #[error("unexpected key '{key}' for mount type '{kind}'")]
    KeyNotForType { key: String, kind: &'static str },
    #[error("unexpected key '{key}' in '{field}'")]
    UnknownKey { key: String, field: String },
    #[error("unsupported mount type {}", go_quote(.0))]
    UnknownType(String),
    #[error("unsupported sharing value {}", go_quote(.0))]
    UnknownSharing(String),
    #[error("invalid value for {key}: {value}")]
    InvalidValue { key: String, value: String },
    #[error("invalid value {value} for {key}")]
    InvalidNumber { key: &'static str, value: String },
    #[error("{what} not allowed for {} type mounts", go_quote(.kind))]
    FileInfoNotAllowed {
        what: &'static str,
        kind: &'static str,
    },
    #[error("secret mount should not have a from")]
    SecretFrom,
    #[error("secret mount should not define sharing")]
    SecretSharing,
    #[error("invalid secret mount. one of source, target required")]
    SecretTarget,
    #[error("both source and id can't be set")]
    SecretSourceAndId,
    #[error("invalid cache sharing set for {0} mount")]
    SharingNotCache(&'static str),
}

/// Splits one CSV record (Go `encoding/csv` rules: `"…"` fields with `""`
/// for a quote; a quote inside an unquoted field is an error).
fn csv_fields(s: &str) -> Result<Vec<String>, MountError> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => {
                        return Err(MountError::Csv(
                            "extraneous or missing \" in quoted-field".into(),
                        ))
                    }
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => fields.push(field),
                Some(_) => {
                    return Err(MountError::Csv(
                        "extraneous or missing \" in quoted-field".into(),
                    ))
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err(MountError::Csv("bare \" in non-quoted-field".into())),
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// The parse-time check of an unexpanded `--mount` value.
pub(crate) fn check_unexpanded(spec: &str) -> Result<(), MountError> {
    for field in csv_fields(spec)? {
        if let Some((key, value)) = field.split_once('=') {
            // A `$` anywhere but last would be a variable.
            if key.eq_ignore_ascii_case("from")
                && value.find('$').is_some_and(|i| i + 1 != value.len())
            {
                return Err(MountError::FromVariable);
            }
        }
    }
    Ok(())
}

/// Parses and validates an expanded `--mount` value.
pub fn parse_mount(spec: &str) -> Result<Mount, MountError> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        read_only: false,
        size_limit: None,
        id: None,
        sharing: None,
        required: false,
        env: None,
        mode: None,
        uid: None,
        gid: None,
    };
    let mut ro_auto = true;
    for field in csv_fields(spec)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
            None => (field.to_ascii_lowercase(), None),
        };
        let secretish = matches!(m.kind, MountType::Secret | MountType::Ssh);
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.read_only = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.read_only = false;
                    ro_auto = false;
                }
                "required" if secretish => m.required = true,
                "required" => {
                    return Err(MountError::KeyNotForType {
                        key,
                        kind: m.kind.as_str(),
                    })
                }
                _ => return Err(MountError::NotKeyValue(field)),
            }
            continue;
        };
        let bool_value = |key: &str| {
            parse_bool(&value).ok_or_else(|| MountError::InvalidValue {
                key: key.to_owned(),
                value: value.clone(),
            })
        };
        match key.as_str() {
            "type" => {
                m.kind = match value.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => return Err(MountError::UnknownType(value)),
                }
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.read_only = bool_value(&key)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !bool_value(&key)?;
                ro_auto = false;
            }
            "required" if secretish => m.required = bool_value(&key)?,
            "required" => {
                return Err(MountError::KeyNotForType {
                    key,
                    kind: m.kind.as_str(),
                })
            }
            "size" if m.kind == MountType::Tmpfs => {
                m.size_limit =
                    Some(
                        ram_in_bytes(&value).ok_or_else(|| MountError::InvalidValue {
                            key: key.clone(),
                            value: value.clone(),
                        })?,
                    );
            }
            "size" => {
                return Err(MountError::KeyNotForType {
                    key,
                    kind: m.kind.as_str(),
                })
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => return Err(MountError::UnknownSharing(value)),
                })
            }
            "mode" => m.mode = Some(number("mode", &value, 8)?),
            "uid" => m.uid = Some(number("uid", &value, 10)?),
            "gid" => m.gid = Some(number("gid", &value, 10)?),
            "env" => m.env = Some(value),
            _ => return Err(MountError::UnknownKey { key, field }),
        }
    }

    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        let kind = m.kind.as_str();
        for (what, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(MountError::FileInfoNotAllowed { what, kind });
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.as_deref().is_some_and(|f| !f.is_empty()) {
            return Err(MountError::SecretFrom);
        }
        if m.sharing.is_some() {
            return Err(MountError::SecretSharing);
        }
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if !set(&m.source) && !set(&m.target) && !set(&m.id) {
            return Err(MountError::SecretTarget);
        }
        if set(&m.source) && set(&m.id) {
            return Err(MountError::SecretSourceAndId);
        }
    }
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(MountError::SharingNotCache(m.kind.as_str()));
    }
    Ok(m)
}

fn number(key: &'static str, value: &str, radix: u32) -> Result<u32, MountError> {
    parse_uint32(value, radix).ok_or_else(|| MountError::InvalidNumber {
        key,
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_mount() {
        let m = parse_mount("type=cache,target=/root/.cache,id=pip,sharing=locked,mode=0755,uid=1")
            .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.target.as_deref(), Some("/root/.cache"));
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert!(!m.read_only);
    }

    #[test]
    fn defaults_and_errors() {
        let m = parse_mount("target=/src,from=build,source=/out").unwrap();
        assert!(m.read_only);
        assert_eq!(m.kind, MountType::Bind);
        let err = |s: &str| parse_mount(s).unwrap_err().to_string();
        assert_eq!(
            err("type=secret"),
            "invalid secret mount. one of source, target required"
        );
        assert_eq!(err("type=nope"), "unsupported mount type \"nope\"");
        assert_eq!(
            err("target=/x,mode=0644"),
            "mode not allowed for \"bind\" type mounts"
        );
        assert_eq!(
            err("type=bind,required"),
            "unexpected key 'required' for mount type 'bind'"
        );
        assert_eq!(err("foo"), "invalid field 'foo' must be a key=value pair");
        assert!(parse_mount("type=secret,id=x,required").unwrap().required);
    }

    #[test]
    fn csv() {
        assert_eq!(
            csv_fields("a,\"b,c\",\"d\"\"e\"").unwrap(),
            ["a", "b,c", "d\"e"]
        );
        assert!(csv_fields("a\"b").is_err());
        assert!(check_unexpanded("from=$STAGE").is_err());
        assert!(check_unexpanded("from=a$,target=$T").is_ok());
    }
}
