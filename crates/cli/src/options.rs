//! Global flags → the compose loader's options.

use crate::GlobalArgs;
use anyhow::{Context, Result};
use berth_compose::Options;
use std::io::Read;

pub fn load_options(global: &GlobalArgs) -> Result<Options> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let stdin = if global.file.iter().any(|f| f.as_os_str() == "-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the compose file from standard input")?;
        Some(text)
    } else {
        None
    };
    Ok(Options {
        files: global.file.clone(),
        project_directory: global.project_directory.clone(),
        project_name: global.project_name.clone(),
        env_files: global.env_file.clone(),
        profiles: global.profile.clone(),
        os_env: std::env::vars().collect(),
        cwd,
        stdin,
        ..Options::default()
    })
}
