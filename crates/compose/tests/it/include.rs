//! `include:` entries' `env_file`: the included file is interpolated with
//! the including project's environment plus its env files (by default the
//! included directory's `.env`), for variables not set already, as
//! compose-go does.

use crate::common::options;
use berth_compose::{LoadError, Loaded};
use std::path::{Path, PathBuf};

/// A fresh directory holding `files` (path → text).
fn project(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("berth-include-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (path, text) in files {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    dir
}

fn load(dir: &Path, os_env: &[(&str, &str)]) -> Result<Loaded, LoadError> {
    let mut opts = options(dir);
    for (k, v) in os_env {
        opts.os_env.insert(k.to_string(), v.to_string());
    }
    opts.files = vec![dir.join("compose.yaml")];
    let loaded = berth_compose::load(&opts);
    let _ = std::fs::remove_dir_all(dir);
    loaded
}

fn image(loaded: &Loaded, service: &str) -> String {
    loaded.project.services[service].image.clone().unwrap()
}

const SUB: &str = "services:\n  db:\n    image: postgres:${TAG:-default}\n";
const MAIN_WITH_ENV_FILE: &str = "include:\n  - path: sub/compose.yaml\n    env_file: sub.env\n\
     services:\n  web:\n    image: nginx:${TAG:-none}\n";

/// Defends: an included file gets the values of its `env_file`, and only it:
/// the including file's own variables are not changed by them.
#[test]
fn include_env_file_interpolates_the_included_file() {
    let dir = project(
        "envfile",
        &[
            ("compose.yaml", MAIN_WITH_ENV_FILE),
            ("sub.env", "TAG=from-sub-env\n"),
            ("sub/compose.yaml", SUB),
        ],
    );
    let loaded = load(&dir, &[]).unwrap();
    assert_eq!(image(&loaded, "db"), "postgres:from-sub-env");
    assert_eq!(image(&loaded, "web"), "nginx:none");
}

/// Defends: the project's environment wins over an include's env file, as
/// it does over `.env`.
#[test]
fn include_env_file_does_not_override_the_environment() {
    let dir = project(
        "envwins",
        &[
            ("compose.yaml", MAIN_WITH_ENV_FILE),
            ("sub.env", "TAG=from-sub-env\n"),
            ("sub/compose.yaml", SUB),
        ],
    );
    let loaded = load(&dir, &[("TAG", "from-shell")]).unwrap();
    assert_eq!(image(&loaded, "db"), "postgres:from-shell");
}

/// Defends: without `env_file`, the included project's own `.env` is read
/// for it (a project made to be included keeps working when it is).
#[test]
fn include_reads_the_included_directorys_dotenv() {
    let dir = project(
        "dotenv",
        &[
            ("compose.yaml", "include: [sub/compose.yaml]\n"),
            ("sub/.env", "TAG=from-sub-dotenv\n"),
            ("sub/compose.yaml", SUB),
        ],
    );
    let loaded = load(&dir, &[]).unwrap();
    assert_eq!(image(&loaded, "db"), "postgres:from-sub-dotenv");
}

/// Defends: an `env_file` that is not there fails the load naming the key,
/// not silently interpolating with defaults.
#[test]
fn include_env_file_that_is_missing_is_an_error() {
    let dir = project(
        "missing",
        &[
            ("compose.yaml", MAIN_WITH_ENV_FILE),
            ("sub/compose.yaml", SUB),
        ],
    );
    let e = load(&dir, &[]).unwrap_err().to_string();
    assert!(e.contains("include[0].env_file"), "{e}");
    assert!(
        e.contains("couldn't find env file") && e.contains("sub.env"),
        "{e}"
    );
}
