//! Labels on what berth creates in a swarm: docker stack's namespace (so
//! `docker stack ls/ps/services` list the project), docker compose's
//! project/service names, and berth's own comparison keys.

/// What `docker stack` groups services, networks, secrets and configs by.
pub const STACK: &str = "com.docker.stack.namespace";
/// The image as the compose file names it (`docker stack` sets it too).
pub const STACK_IMAGE: &str = "com.docker.stack.image";
pub const PROJECT: &str = "com.docker.compose.project";
pub const SERVICE: &str = "com.docker.compose.service";
pub const CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const IMAGE: &str = "com.docker.compose.image";
/// Service → manifest digest (in berth's store) of every image the
/// deployed image is made from, `svc=sha256:…` comma-separated: the
/// runtime's and, for a service with `volumes_from`, the code's.
pub const SOURCES: &str = "io.berth.sources";
/// The secrets and configs a service's tasks get, `secrets.KEY=NAME`
/// comma-separated: a changed name is changed content.
pub const FILES: &str = "io.berth.files";
/// On a secret or config berth made: its compose key (`secrets.db`).
pub const FILE_KEY: &str = "io.berth.file";
/// The routes of berth's proxy service (`LISTEN:HOST:PORT`, comma-separated).
pub const PROXY_ROUTES: &str = "io.berth.proxy-routes";
/// On a service's containers: a digest of the task template berth sent,
/// so a task can be told to be of the service's current template (swarm
/// fills defaults into the service's copy that the tasks' lack).
pub const TASK_TEMPLATE: &str = "io.berth.task-template";
/// Which berth made it.
pub const BERTH_VERSION: &str = "io.berth.version";

/// `label=KEY=VALUE` for a filter on the stack namespace.
pub fn stack_filter(project: &str) -> String {
    format!("{STACK}={project}")
}
