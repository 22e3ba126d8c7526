//! Lifecycle hooks as a service declares them: `post_start` runs in the
//! container once it has started, `pre_stop` before it gets its stop
//! signal, each exec'd into it with the hook's `user`, `privileged`,
//! `working_dir` and `environment` (docker compose's semantics). Parsed
//! here once; each backend runs them its own way.

use berth_compose::model::Service;
use serde_json::Value as Json;

/// One hook of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub command: Vec<String>,
    pub user: Option<String>,
    pub privileged: bool,
    pub working_dir: Option<String>,
    /// `KEY=VALUE` over the container's environment.
    pub environment: Vec<String>,
}

/// The service's hooks under `key` (`post_start`, `pre_stop`), in order;
/// an error names the key path below the service.
pub fn of(svc: &Service, key: &str) -> Result<Vec<Hook>, String> {
    let Some(list) = svc.extra.get(key).filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let Json::Array(items) = list else {
        return Err(format!("{key}: expected a list of hooks"));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse(item).map_err(|e| format!("{key}[{i}].{e}")))
        .collect()
}

fn parse(item: &Json) -> Result<Hook, String> {
    let command = match item.get("command") {
        // A string is split into words as compose does (no shell).
        Some(Json::String(s)) => {
            berth_compose::units::split_shell_words(s).map_err(|e| format!("command: {e}"))?
        }
        Some(Json::Array(a)) => a
            .iter()
            .map(|w| match w {
                Json::String(s) => Ok(s.clone()),
                other => Ok(other.to_string()),
            })
            .collect::<Result<Vec<_>, String>>()?,
        _ => return Err("command: missing".into()),
    };
    if command.first().is_none_or(|c| c.is_empty()) {
        return Err("command: empty".into());
    }
    let text = |k: &str| {
        item.get(k)
            .and_then(|v| match v {
                Json::String(s) => Some(s.clone()),
                Json::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(|s| !s.is_empty())
    };
    let environment = match item.get("environment") {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                // `KEY:` with no value unsets it, as a bare `KEY` does.
                Json::Null => k.clone(),
                Json::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect(),
        Some(Json::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        Some(_) => return Err("environment: expected a map or a list".into()),
    };
    Ok(Hook {
        command,
        user: text("user"),
        privileged: item.get("privileged").and_then(Json::as_bool) == Some(true),
        working_dir: text("working_dir"),
        environment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(v: Json) -> Service {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hooks_parse_with_their_options() {
        let svc = service(serde_json::json!({
            "post_start": [
                {"command": "touch /tmp/a 'b c'", "user": "app", "privileged": true,
                 "working_dir": "/srv", "environment": {"A": "1", "B": null}},
                {"command": ["sh", "-c", "echo hi"], "environment": ["C=3"]}
            ]
        }));
        let hooks = of(&svc, "post_start").unwrap();
        assert_eq!(hooks[0].command, ["touch", "/tmp/a", "b c"]);
        assert_eq!(hooks[0].user.as_deref(), Some("app"));
        assert!(hooks[0].privileged);
        assert_eq!(hooks[0].working_dir.as_deref(), Some("/srv"));
        assert_eq!(hooks[0].environment, ["A=1", "B"]);
        assert_eq!(hooks[1].command, ["sh", "-c", "echo hi"]);
        assert_eq!(hooks[1].environment, ["C=3"]);
        assert!(of(&svc, "pre_stop").unwrap().is_empty());
        for (bad, key) in [
            (
                serde_json::json!({"pre_stop": [{"user": "x"}]}),
                "pre_stop[0].command",
            ),
            (
                serde_json::json!({"pre_stop": [{"command": ""}]}),
                "pre_stop[0].command",
            ),
            (
                serde_json::json!({"pre_stop": {"command": "x"}}),
                "pre_stop:",
            ),
        ] {
            let e = of(&service(bad), "pre_stop").unwrap_err();
            assert!(e.starts_with(key), "{key}: {e}");
        }
    }
}
