//! Compose files written by an attacker: names that would become paths
//! outside berth's state, ports that only fail once `up` runs, YAML bombs and
//! nesting deep enough to exhaust the stack. Each must fail at load with a
//! located, one-line error (what `config -q` prints), never hang or crash.

use berth_compose::{LoadError, Loaded, Options};
use std::path::PathBuf;

/// Names that are paths, not names, in every form seen in attacks.
fn path_like_names() -> Vec<(&'static str, String)> {
    vec![
        ("parent", "../x".into()),
        ("deep parent", "../../../../tmp/victim".into()),
        ("absolute", "/abs".into()),
        ("nested", "a/b".into()),
        ("dot", ".".into()),
        ("dot-dot", "..".into()),
        ("empty", "".into()),
        ("NUL", "a\0b".into()),
        ("very long", "a".repeat(300)),
    ]
}

/// A YAML double-quoted scalar holding `s` exactly (NUL included).
fn quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn options(yaml: &str) -> Options {
    Options {
        cwd: PathBuf::from("/nonexistent/hostile"),
        files: vec!["-".into()],
        stdin: Some(yaml.to_string()),
        project_name: Some("hostile".into()),
        os_env: [("HOME".to_string(), "/home/tester".to_string())]
            .into_iter()
            .collect(),
        ..Options::default()
    }
}

fn load(yaml: &str) -> Result<Loaded, LoadError> {
    berth_compose::load(&options(yaml))
}

/// `yaml` is refused with file:line:column, a key path under `key`, and a
/// first line that says what is wrong.
fn assert_rejected(yaml: &str, key: &str, what: &str) -> LoadError {
    let e = match load(yaml) {
        Ok(l) => panic!("{what}: loaded, project {:?}\n{yaml}", l.project),
        Err(e) => e,
    };
    let loc = e
        .location
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: error without a location: {e}"));
    assert!(
        loc.line > 0 && loc.column > 0,
        "{what}: error without line:column: {e}"
    );
    let path = e.key_path.clone().unwrap_or_default();
    assert!(
        path.starts_with(key),
        "{what}: error at key {path:?}, expected under {key:?}: {e}"
    );
    assert!(
        !e.to_string().lines().next().unwrap_or_default().is_empty(),
        "{what}: empty message"
    );
    e
}

/// A named volume's `name:` cannot point outside the volume store (`down -v` would delete it).
#[test]
fn volume_name_that_is_a_path_is_refused() {
    for (label, name) in path_like_names() {
        let yaml = format!(
            "services:\n  app:\n    image: a\n    volumes: [data:/d]\nvolumes:\n  data:\n    name: {}\n",
            quoted(&name)
        );
        let e = assert_rejected(&yaml, "volumes.data.name", label);
        assert!(e.message.contains("invalid volume name"), "{label}: {e}");
        // Points at the offending `name:` line, not just the file.
        assert_eq!(e.location.unwrap().line, 7, "{label}");
    }
}

/// The reproduction, word for word: refused at load, with where and why.
#[test]
fn volume_name_escaping_the_store_names_line_and_key() {
    let yaml = "services:\n  app:\n    image: a\n    volumes: [data:/d]\nvolumes:\n  data:\n    name: \"../../../../tmp/victim\"\n";
    let e = load(yaml).unwrap_err();
    let first = e.to_string();
    assert!(
        first.starts_with(
            "-:7:11: volumes.data.name: invalid volume name \"../../../../tmp/victim\""
        ),
        "{first}"
    );
}

/// An external volume or network is looked up by name: a path there reaches the host too.
#[test]
fn external_volume_and_network_names_that_are_paths_are_refused() {
    for (label, name) in path_like_names() {
        let q = quoted(&name);
        let yaml = format!(
            "services:\n  app:\n    image: a\n    volumes: [data:/d]\nvolumes:\n  data:\n    external: true\n    name: {q}\n"
        );
        assert_rejected(&yaml, "volumes.data.name", label);
        let yaml = format!(
            "services:\n  app:\n    image: a\n    networks: [front]\nnetworks:\n  front:\n    external: true\n    name: {q}\n"
        );
        assert_rejected(&yaml, "networks.front.name", label);
        let yaml = format!(
            "services:\n  app:\n    image: a\n    volumes: [data:/d]\nvolumes:\n  data:\n    external:\n      name: {q}\n"
        );
        assert_rejected(&yaml, "volumes.data", label);
    }
}

/// Resource keys become names (`external` ones as they are): a path-like key is refused.
#[test]
fn resource_keys_that_are_paths_are_refused() {
    for (label, name) in path_like_names() {
        let q = quoted(&name);
        for kind in ["volumes", "networks"] {
            let yaml =
                format!("services:\n  app:\n    image: a\n{kind}:\n  {q}:\n    external: true\n");
            assert_rejected(&yaml, kind, &format!("{kind} key {label}"));
        }
        for kind in ["secrets", "configs"] {
            let yaml = format!("services:\n  app:\n    image: a\n{kind}:\n  {q}:\n    file: ./x\n");
            assert_rejected(&yaml, kind, &format!("{kind} key {label}"));
        }
    }
}

/// Network, secret and config `name:`s become objects berth creates and removes.
#[test]
fn network_secret_and_config_names_that_are_paths_are_refused() {
    for (label, name) in path_like_names() {
        let q = quoted(&name);
        let yaml = format!(
            "services:\n  app:\n    image: a\n    networks: [front]\nnetworks:\n  front:\n    name: {q}\n"
        );
        let e = assert_rejected(&yaml, "networks.front.name", label);
        assert!(e.message.contains("invalid network name"), "{label}: {e}");
        for (kind, what) in [("secrets", "secret"), ("configs", "config")] {
            let yaml = format!(
                "services:\n  app:\n    image: a\n{kind}:\n  s:\n    file: ./x\n    name: {q}\n"
            );
            let e = assert_rejected(&yaml, &format!("{kind}.s.name"), label);
            assert!(
                e.message.contains(&format!("invalid {what} name")),
                "{label}: {e}"
            );
        }
    }
}

/// A named volume a service mounts without defining it is still made: its name is checked too.
#[test]
fn undefined_volume_source_that_is_a_path_is_refused() {
    for source in ["a/b", "..a", "_x"] {
        let yaml = format!(
            "services:\n  app:\n    image: a\n    volumes:\n      - type: volume\n        source: {}\n        target: /d\n",
            quoted(source)
        );
        let mut opts = options(&yaml);
        opts.skip_consistency = true;
        let e = berth_compose::load(&opts).expect_err(source);
        assert_eq!(
            e.key_path.as_deref(),
            Some("services.app.volumes[0].source"),
            "{source}: {e}"
        );
        assert!(e.location.is_some_and(|l| l.line == 6), "{source}");
    }
}

/// Names still holding a variable pass when interpolation is skipped (`config --no-interpolate`).
#[test]
fn unresolved_names_pass_without_interpolation() {
    let mut opts = options(
        "services:\n  app:\n    image: a\n    volumes: [data:/d]\nvolumes:\n  data:\n    name: ${VOL}\n",
    );
    opts.skip_interpolation = true;
    let l = berth_compose::load(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.project.volumes["data"].name.as_deref(), Some("${VOL}"));
}

/// `container_name` becomes a state directory per container.
#[test]
fn container_name_that_is_a_path_is_refused() {
    for (label, name) in path_like_names() {
        let yaml = format!(
            "services:\n  app:\n    image: a\n    container_name: {}\n",
            quoted(&name)
        );
        assert_rejected(&yaml, "services.app", label);
    }
}

/// Service names make container names (`PROJECT-SERVICE-N`): no path, no overlong name.
#[test]
fn service_names_that_are_paths_are_refused() {
    for (label, name) in path_like_names() {
        let yaml = format!("services:\n  {}:\n    image: a\n", quoted(&name));
        assert_rejected(&yaml, "services", label);
    }
    // docker compose runs a service named like a flag; so does berth.
    let ok = load("services:\n  --test-service:\n    image: a\n").unwrap();
    assert!(ok.project.services.contains_key("--test-service"));
}

/// Project names (`name:`, `-p`, `COMPOSE_PROJECT_NAME`) are normalized to
/// `[a-z0-9][a-z0-9_-]*`, or refused when nothing valid is left.
#[test]
fn project_names_never_become_paths() {
    let valid = |n: &str| {
        let mut b = n.bytes();
        b.next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
    };
    for (label, name) in path_like_names() {
        let yaml = format!("name: {}\nservices:\n  app:\n    image: a\n", quoted(&name));
        let mut from_file = options(&yaml);
        from_file.project_name = None;
        let mut from_flag = options("services:\n  app:\n    image: a\n");
        from_flag.project_name = Some(name.clone());
        let mut from_env = options("services:\n  app:\n    image: a\n");
        from_env.project_name = None;
        from_env
            .os_env
            .insert("COMPOSE_PROJECT_NAME".into(), name.clone());
        for (how, opts) in [("name:", from_file), ("-p", from_flag), ("env", from_env)] {
            match berth_compose::load(&opts) {
                Ok(l) => assert!(
                    valid(&l.project.name) && l.project.name.len() <= 255,
                    "{label} via {how}: project name {:?}",
                    l.project.name
                ),
                Err(e) => assert!(
                    e.message.contains("invalid project name"),
                    "{label} via {how}: {e}"
                ),
            }
        }
    }
    // Nothing valid left: refused, pointing at the file's `name:`.
    let mut opts = options("name: \"../..\"\nservices:\n  app:\n    image: a\n");
    opts.project_name = None;
    let e = berth_compose::load(&opts).unwrap_err();
    assert_eq!(e.location.as_ref().map(|l| l.line), Some(1), "{e}");
    assert!(e.message.contains("invalid project name"), "{e}");
}

/// A published port berth cannot bind fails at load, with the key path, not in `up`.
#[test]
fn bad_ports_are_refused_at_load() {
    let cases: &[(&str, &str)] = &[
        ("\"0:80\"", "published port 0 is out of range 1-65535"),
        ("\"-1:80\"", "invalid published port \"-1\""),
        (
            "\"65536:80\"",
            "published port 65536 is out of range 1-65535",
        ),
        ("\"80:0\"", "target port 0 is out of range 1-65535"),
        (
            "\"8080:70000\"",
            "target port 70000 is out of range 1-65535",
        ),
        ("\"0\"", "target port 0 is out of range 1-65535"),
        ("\"8000-8001:80-82\"", "differ in size"),
        ("\"9-1:80\"", "end is before start"),
        ("\"localhost:80:80\"", "invalid host IP \"localhost\""),
        ("\"1.2.3:80:80\"", "invalid host IP"),
        ("\"[::1:80:80\"", "invalid port"),
        ("\"80/icmp\"", "invalid protocol \"icmp\""),
        ("\"a:80\"", "invalid published port \"a\""),
        ("{target: 0}", "target port 0 is out of range"),
        (
            "{target: 80, published: 0}",
            "published port 0 is out of range",
        ),
        (
            "{target: 80, published: \"70000\"}",
            "published port 70000 is out of range",
        ),
        (
            "{target: 80, published: \"-1\"}",
            "invalid published port \"-1\"",
        ),
        ("{target: 80, host_ip: nope}", "invalid host IP \"nope\""),
        ("{target: 80, protocol: icmp}", "invalid protocol \"icmp\""),
    ];
    for (port, want) in cases {
        let yaml = format!("services:\n  web:\n    image: a\n    ports:\n      - {port}\n");
        let e = assert_rejected(&yaml, "services.web.ports[0]", port);
        assert!(e.message.contains(want), "{port}: {e}");
        assert_eq!(e.location.as_ref().unwrap().line, 5, "{port}: {e}");
    }
}

/// The forms docker accepts still load, as docker compose normalizes them.
#[test]
fn docker_port_forms_still_load() {
    let yaml = "services:\n  web:\n    image: a\n    ports:\n      - \"8000-8010:80\"\n      - \"127.0.0.1:8080:80\"\n      - \"[::1]:8081:80\"\n      - \"9090-9091:8080-8081\"\n      - \"53:53/UDP\"\n      - \"65535:1\"\n      - {target: 81, published: \"7000-7001\", host_ip: \"::1\", protocol: sctp}\n";
    let l = load(yaml).unwrap_or_else(|e| panic!("{e}"));
    let ports = &l.project.services["web"].ports;
    let seen: Vec<(Option<&str>, u16, Option<&str>, &str)> = ports
        .iter()
        .map(|p| {
            (
                p.host_ip.as_deref(),
                p.target,
                p.published.as_deref(),
                p.protocol.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            (None, 80, Some("8000-8010"), "tcp"),
            (Some("127.0.0.1"), 80, Some("8080"), "tcp"),
            (Some("::1"), 80, Some("8081"), "tcp"),
            (None, 8080, Some("9090"), "tcp"),
            (None, 8081, Some("9091"), "tcp"),
            (None, 53, Some("53"), "udp"),
            (None, 1, Some("65535"), "tcp"),
            (Some("::1"), 81, Some("7000-7001"), "sctp"),
        ]
    );
}

fn assert_one_line_yaml_error(e: &LoadError, what: &str) {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        e.location.as_ref().is_some_and(|l| l.line > 0),
        "{what}: unlocated: {text}"
    );
    assert!(first.len() < 300, "{what}: first line too long: {first}");
    assert!(
        text.len() < 1_000,
        "{what}: error text of {} bytes",
        text.len()
    );
}

/// A syntax error on a line of megabytes quotes a window of it, not all of it.
#[test]
fn error_on_a_huge_line_quotes_a_window() {
    let src = format!("x-big: [{}] ]\nservices: {{}}\n", "1, ".repeat(1 << 20));
    let e = load(&src).unwrap_err();
    assert_one_line_yaml_error(&e, "huge line");
    assert!(e.snippet.as_deref().is_some_and(|s| s.contains('^')), "{e}");
}

/// Billion laughs: nested aliases are refused before they are expanded into memory.
#[test]
fn billion_laughs_is_refused() {
    let mut src = String::from("x-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..=9 {
        let p = i - 1;
        let refs = vec![format!("*a{p}"); 10].join(", ");
        src.push_str(&format!("x-a{i}: &a{i} [{refs}]\n"));
    }
    src.push_str("services:\n  app:\n    image: a\n");
    let e = load(&src).unwrap_err();
    assert!(e.message.contains("alias bomb"), "{e}");
    assert_one_line_yaml_error(&e, "billion laughs");
}

/// One long string aliased many times is a bomb too, though it has few nodes.
#[test]
fn aliased_long_string_is_refused() {
    let big = "x".repeat(1 << 20);
    let refs = vec!["*s"; 200].join(", ");
    let src = format!("x-s: &s \"{big}\"\nx-many: [{refs}]\nservices:\n  app:\n    image: a\n");
    let e = load(&src).unwrap_err();
    assert!(e.message.contains("alias bomb"), "{e}");
    assert_one_line_yaml_error(&e, "string bomb");
}

/// An alias to the collection that contains it cannot be expanded: refused, not looped on.
#[test]
fn recursive_alias_is_refused() {
    let e = load("x-a: &a [1, *a]\nservices:\n  app:\n    image: a\n").unwrap_err();
    assert_one_line_yaml_error(&e, "recursive alias");
}

/// Deep nesting, in flow or block style, is refused without overflowing the stack.
#[test]
fn deep_nesting_is_refused() {
    let flow_seq = format!("x-deep: {}", "[".repeat(100_000));
    let flow_map = format!("x-deep: {}", "{a: ".repeat(100_000));
    let mut block = String::from("x-deep:\n");
    for depth in 1..2_000 {
        block.push_str(&" ".repeat(depth));
        block.push_str("a:\n");
    }
    for (what, src) in [
        ("flow sequences", flow_seq),
        ("flow mappings", flow_map),
        ("block mappings", block),
    ] {
        let e = load(&src).unwrap_err();
        assert_one_line_yaml_error(&e, what);
    }
}

/// Nesting just under the parser's limit goes through every later pass without a crash.
#[test]
fn nesting_under_the_limit_loads() {
    let depth = 120;
    let src = format!(
        "x-deep: {}{}\nservices:\n  app:\n    image: a\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    load(&src).unwrap_or_else(|e| panic!("{e}"));
}

/// `${A:-${A:-…}}` nested thousands deep fails cleanly instead of recursing without end.
#[test]
fn deeply_nested_interpolation_is_refused() {
    let n = 5_000;
    let src = format!(
        "services:\n  app:\n    image: \"{}x{}\"\n",
        "${A:-".repeat(n),
        "}".repeat(n)
    );
    let e = load(&src).unwrap_err();
    assert!(
        e.message.contains("services.app.image") && e.message.contains("nested"),
        "{e}"
    );
}

/// A long chain of services (`extends`, `depends_on`) is walked without overflowing the stack.
#[test]
fn long_service_chains_do_not_overflow() {
    let n = 20_000;
    for key in ["extends", "depends_on"] {
        // Each service points at the next, so walking from the first goes all the way down.
        let mut src = String::from("services:\n");
        for i in 0..n - 1 {
            let link = if key == "extends" {
                format!("extends: s{}", i + 1)
            } else {
                format!("depends_on: [s{}]", i + 1)
            };
            src.push_str(&format!("  s{i}:\n    image: a\n    {link}\n"));
        }
        src.push_str(&format!("  s{}:\n    image: a\n", n - 1));
        // A stack overflow would abort the test binary.
        match (key, load(&src)) {
            ("depends_on", Ok(l)) => assert_eq!(l.project.services.len(), n),
            ("extends", Err(e)) => {
                assert!(
                    e.message.contains(
                        "extends chain deeper than 64 services (starting at service \"s0\")"
                    ),
                    "{e}"
                );
                assert!(e.location.is_some_and(|l| l.line > 0));
            }
            (_, other) => panic!("{key}: {:?}", other.map(|l| l.project.services.len())),
        }
    }
    // A chain under the limit still resolves, from the far end up.
    let mut src = String::from("services:\n");
    for i in 0..49 {
        src.push_str(&format!("  s{i}:\n    extends: s{}\n", i + 1));
    }
    src.push_str("  s49:\n    image: base\n");
    let l = load(&src).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.project.services["s0"].image.as_deref(), Some("base"));
}
