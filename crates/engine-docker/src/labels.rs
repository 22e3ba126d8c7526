//! The labels docker compose puts on what it creates. berth uses the same
//! names so `docker compose ps`, `docker-compose ps` and Docker Desktop list
//! berth's containers, and so berth finds a project docker compose started.

pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const NUMBER: &str = "com.docker.compose.container-number";
pub const ONEOFF: &str = "com.docker.compose.oneoff";
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const CONFIG_FILES: &str = "com.docker.compose.project.config_files";
pub const VERSION: &str = "com.docker.compose.version";
pub const DEPENDS_ON: &str = "com.docker.compose.depends_on";
pub const IMAGE: &str = "com.docker.compose.image";
pub const NETWORK: &str = "com.docker.compose.network";
pub const VOLUME: &str = "com.docker.compose.volume";

/// The compose version whose label conventions berth follows. docker
/// compose v2 reads this label as a version, so it must look like one.
pub const COMPOSE_VERSION: &str = "2.20.2";

/// Service → image ID of the `volumes_from` sources a container mounts
/// (JSON): what the planner compares to swap consumers of new code.
pub const MOUNTED_IMAGES: &str = "io.berth.mounted-images";
/// The ports berth's keeper publishes for it (`IP:PORT->TARGET/tcp`,
/// comma-separated): Docker does not know them, `ps` shows them.
pub const PUBLISHED: &str = "io.berth.published";
/// The digest of the `x-runtime` mounted into it: with the image ID, what
/// the planner compares.
pub const RUNTIME: &str = "io.berth.runtime";
/// The service's `post_start`/`pre_stop` hooks (JSON, as in the file):
/// `stop` and `start` are given only the project's name, not its file.
pub const HOOKS: &str = "io.berth.hooks";
/// Which berth made it (containers docker compose made lack it).
pub const BERTH_VERSION: &str = "io.berth.version";

/// `com.docker.compose.project=NAME`, as an Engine API label filter.
pub fn project_filter(project: &str) -> String {
    format!("{PROJECT}={project}")
}
