//! What berth does with each key of the compose spec (issue 13: every key is
//! honoured or refused, never silently dropped).
//!
//! The statuses are data, one [`Row`] per key path of the spec's JSON schema,
//! so that `COMPOSE_KEYS.md` is generated from them and a test holds them
//! against the schema and the test sources (a new schema key without a row,
//! a row for a key the schema does not have, or a row naming a test that
//! does not exist fails it). [`not_applied`] reads the same rows, so what
//! `up --dry-run` lists and what the table says cannot drift apart.
//!
//! Statuses are for the embedded engine (the default backend). Key paths use
//! `*` for a name the user chooses (a service, a network, an ulimit) and
//! `[]` for the entries of a list: `services.*.volumes[].bind.propagation`.

use crate::Project;
use serde_json::Value;
use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Applied as docker compose with Docker Engine applies it.
    Honoured,
    /// `up` fails before it makes anything, with one line naming the key.
    Refused,
    /// Meaningless for this engine and harmless (swarm-only, Windows-only,
    /// informational): accepted, and listed by `up --dry-run`.
    NotApplied,
    /// Accepted and without effect although it means something here: a bug
    /// (issue 13). Listed by `up --dry-run` as not applied until it is fixed.
    Ignored,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Honoured => "honoured",
            Status::Refused => "refused",
            Status::NotApplied => "not applied",
            Status::Ignored => "**ignored (bug)**",
        }
    }
}

/// Which values of a key [`not_applied`] lists. Defaults that would change
/// nothing on any engine (`attach: true`, an empty map) are left out, so the
/// listing names only what the user asked for and did not get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listed {
    Never,
    /// Any value but null, `false` or an empty string, list or map.
    WhenSet,
    WhenFalse,
    /// A value other than these (strings compared as written).
    Unless(&'static [&'static str]),
    /// Only these values.
    When(&'static [&'static str]),
    /// A list with more entries than the first, which alone is used.
    BeyondFirst,
}

impl Listed {
    fn matches(self, v: &Value) -> bool {
        let text = || match v {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        };
        match self {
            Listed::Never => false,
            Listed::WhenSet => match v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(m) => !m.is_empty(),
                _ => true,
            },
            Listed::WhenFalse => v == &Value::Bool(false),
            Listed::Unless(ok) => !v.is_null() && !text().is_some_and(|t| ok.contains(&t)),
            Listed::When(these) => text().is_some_and(|t| these.contains(&t)),
            Listed::BeyondFirst => v.as_array().is_some_and(|a| a.len() > 1),
        }
    }

    /// A value this rule lists (for the test that every listed key is found).
    pub fn example(self) -> Option<Value> {
        match self {
            Listed::Never => None,
            Listed::WhenSet | Listed::Unless(_) => Some(Value::String("set-by-test".into())),
            Listed::WhenFalse => Some(Value::Bool(false)),
            Listed::When(these) => these.first().map(|t| Value::String(t.to_string())),
            Listed::BeyondFirst => Some(Value::Array(vec![Value::Null, Value::Null])),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub key: &'static str,
    pub status: Status,
    /// A `fn` under `crates/*/tests` or `crates/*/src` that shows the status.
    pub test: &'static str,
    /// Refused: the reason. Not applied / ignored: why nothing happens.
    /// Honoured: what is worth knowing (values refused, limits).
    pub note: &'static str,
    pub listed: Listed,
}

const fn row(key: &'static str, status: Status, test: &'static str, note: &'static str) -> Row {
    let listed = match status {
        Status::Honoured | Status::Refused => Listed::Never,
        Status::NotApplied | Status::Ignored => Listed::WhenSet,
    };
    Row {
        key,
        status,
        test,
        note,
        listed,
    }
}

const fn ok(key: &'static str, test: &'static str) -> Row {
    row(key, Status::Honoured, test, "")
}

const fn ok_but(key: &'static str, test: &'static str, note: &'static str) -> Row {
    row(key, Status::Honoured, test, note)
}

const fn refused(key: &'static str, test: &'static str, why: &'static str) -> Row {
    row(key, Status::Refused, test, why)
}

const fn inert(key: &'static str, why: &'static str) -> Row {
    row(key, Status::NotApplied, LISTED, why)
}

impl Row {
    const fn listed(self, listed: Listed) -> Row {
        Row { listed, ..self }
    }
}

// Tests the rows name more than once.
/// The unit test below: every not-applied or ignored key is listed.
const LISTED: &str = "every_not_applied_and_ignored_key_is_listed";
/// engine-embedded's refusal table test (platform, runtime, drivers, …).
const REFUSALS: &str = "refusals_name_the_key_path";
/// `up` refuses `isolation` by name before anything is made.
const REFUSED_E2E: &str = "nocopy_applies_and_unsupported_keys_are_refused";
const FIXTURES: &str = "fixture_corpus_loads_or_fails_cleanly";
const FULL_EXAMPLE: &str = "compose_go_full_example";
const RESOURCES: &str = "keys_reach_the_spec";
const SECRETS: &str = "secrets_and_configs_are_mounted_with_owner_and_mode";
/// `up` refuses each key by path before anything is made, one case per key.
const REFUSED_BY_PATH: &str = "keys_the_engine_cannot_honour_are_refused_by_path";
const MOUNTS: &str = "tmpfs_mode_and_create_host_path_false_apply";
const HEALTH: &str = "healthchecks_gate_dependants_and_show_in_ps";
const NETS: &str = "networks_aliases_internal_links_dns_and_shared_namespaces";
const SWARM: &str =
    "a Docker Swarm setting; there is no swarm outside it (docker compose ignores it too)";
const SWARM_OBJECT: &str =
    "names or labels the Docker Swarm object; berth reads the source in place";
/// The cgroup keys read back inside a running container (cgroup v1 here).
const CGROUP_KEYS: &str = "cgroup_keys_reach_the_containers_cgroup";
/// ipc/pid/uts/cgroup namespaces shared with a service or the host.
const NAMESPACES: &str = "namespaces_are_shared_with_another_service_or_the_host";
/// `berth watch` on the seed: sync, sync+exec, rebuild and restart rules.
const SEED_WATCH: &str = "watch_syncs_an_edit_into_the_running_seed_with_no_failed_request";
const HOOKS: &str = "post_start_and_pre_stop_hooks_run_around_the_container";

use Status::*;

/// Every key of the schema, in the schema's order. A key whose row is not
/// `Honoured` stands for the keys under it too.
// One row per line, so the table reads (and diffs) as a table.
#[rustfmt::skip]
pub const ROWS: &[Row] = &[
    row("version", NotApplied, "docker_compose_v1_config_expectations", "obsolete: dropped at load, with a warning `up` prints (so `--dry-run` does not list it again)").listed(Listed::Never),
    ok("name", "project_names_never_become_paths"),
    ok_but("include", FIXTURES, "merged at load; no test runs an included service"),
    ok("include[].path", FIXTURES),
    ok("include[].env_file", "include_env_file_interpolates_the_included_file"),
    ok("include[].project_directory", FIXTURES),
    ok("services", "the_seed_runs_attached_and_detached_and_leaves_nothing"),
    ok_but("services.*.develop", SEED_WATCH, "through `berth watch` and `up --watch`"),
    ok("services.*.develop.watch", SEED_WATCH),
    ok_but("services.*.develop.watch[].action", SEED_WATCH, "sync, rebuild, restart, sync+exec and sync+restart; no end-to-end test sets sync+restart"),
    ok("services.*.develop.watch[].path", SEED_WATCH),
    ok("services.*.develop.watch[].target", SEED_WATCH),
    ok_but("services.*.develop.watch[].ignore", SEED_WATCH, ".dockerignore semantics"),
    ok_but("services.*.develop.watch[].include", "include_takes_in_only_what_it_names", "the matcher's test; no end-to-end test names this key"),
    ok_but("services.*.develop.watch[].initial_sync", "initial_sync_copies_the_whole_tree_of_rules_that_ask_for_it", "the planner's test; no end-to-end test names this key"),
    ok("services.*.develop.watch[].exec", SEED_WATCH),
    ok("services.*.develop.watch[].exec.command", SEED_WATCH),
    ok_but("services.*.develop.watch[].exec.user", "sync_exec_runs_its_command_after_the_sync_and_other_services_are_untouched", "passed to the exec as a hook's is; no test sets it"),
    ok_but("services.*.develop.watch[].exec.privileged", "sync_exec_runs_its_command_after_the_sync_and_other_services_are_untouched", "passed to the exec as a hook's is; no test sets it"),
    ok_but("services.*.develop.watch[].exec.working_dir", "sync_exec_runs_its_command_after_the_sync_and_other_services_are_untouched", "passed to the exec as a hook's is; no test sets it"),
    ok_but("services.*.develop.watch[].exec.environment", "sync_exec_runs_its_command_after_the_sync_and_other_services_are_untouched", "passed to the exec as a hook's is; no test sets it"),
    ok("services.*.deploy", "create_honours_scale_and_deploy_replicas"),
    inert("services.*.deploy.mode", SWARM).listed(Listed::Unless(&["replicated"])),
    inert("services.*.deploy.endpoint_mode", SWARM),
    ok("services.*.deploy.replicas", "create_honours_scale_and_deploy_replicas"),
    inert("services.*.deploy.labels", "labels of the swarm service, not of its containers (docker compose ignores them too)"),
    inert("services.*.deploy.rollback_config", SWARM),
    ok_but("services.*.deploy.update_config", "update_order_stop_first_and_start_first", "only `order` has a meaning outside swarm"),
    inert("services.*.deploy.update_config.parallelism", SWARM),
    inert("services.*.deploy.update_config.delay", SWARM),
    inert("services.*.deploy.update_config.failure_action", SWARM),
    inert("services.*.deploy.update_config.monitor", SWARM),
    inert("services.*.deploy.update_config.max_failure_ratio", SWARM),
    ok("services.*.deploy.update_config.order", "update_order_stop_first_and_start_first"),
    ok("services.*.deploy.resources", "deploy_limits_fill_in_and_bad_values_are_errors"),
    ok("services.*.deploy.resources.limits", "deploy_limits_fill_in_and_bad_values_are_errors"),
    ok("services.*.deploy.resources.limits.cpus", "deploy_limits_fill_in_and_bad_values_are_errors"),
    ok("services.*.deploy.resources.limits.memory", "deploy_limits_fill_in_and_bad_values_are_errors"),
    ok("services.*.deploy.resources.limits.pids", "deploy_limits_fill_in_and_bad_values_are_errors"),
    ok_but("services.*.deploy.resources.reservations", CGROUP_KEYS, "memory is the soft limit, as with mem_reservation"),
    inert("services.*.deploy.resources.reservations.cpus", "a swarm scheduling hint with no effect on one host (docker compose drops it too)"),
    ok("services.*.deploy.resources.reservations.memory", CGROUP_KEYS),
    refused("services.*.deploy.resources.reservations.devices", REFUSED_BY_PATH, "device (GPU) reservations: the embedded engine has no GPU support"),
    inert("services.*.deploy.resources.reservations.generic_resources", SWARM),
    ok("services.*.deploy.restart_policy", "tmpfs_options_and_deploy_restart_policy_apply"),
    ok("services.*.deploy.restart_policy.condition", "tmpfs_options_and_deploy_restart_policy_apply"),
    refused("services.*.deploy.restart_policy.delay", "deploy_restart_policy_maps_as_compose_does", "docker compose has no equivalent outside swarm"),
    ok("services.*.deploy.restart_policy.max_attempts", "tmpfs_options_and_deploy_restart_policy_apply"),
    refused("services.*.deploy.restart_policy.window", REFUSED_BY_PATH, "docker compose has no equivalent outside swarm"),
    inert("services.*.deploy.placement", SWARM),
    ok_but("services.*.annotations", "annotations_are_kept_and_shown_by_inspect", "kept on the container and shown by `inspect` (HostConfig.Annotations); the Docker engine refuses them (Docker 20.10 has no API for them)"),
    ok("services.*.attach", "attach_false_hides_a_services_output_from_up"),
    ok("services.*.build", "build_no_cache_image_prune_and_rmi"),
    ok("services.*.build.context", "a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers"),
    ok_but("services.*.build.dockerfile", "a_node_backend_builds_and_a_source_change_keeps_npm_ci_cached", "the test builds the default Dockerfile; no test names this key"),
    ok_but("services.*.build.dockerfile_inline", "a_node_backend_builds_and_a_source_change_keeps_npm_ci_cached", "no test names this key"),
    refused("services.*.build.entitlements", "build_keys_the_builder_cannot_honour_are_refused_by_path", "RUN steps never get extra privileges"),
    ok_but("services.*.build.args", "instructions_shape_the_config", "the builder's test; no test goes through the compose key"),
    ok("services.*.build.ssh", "run_steps_get_a_nat_network_without_ipv6_extra_hosts_shm_and_an_ssh_agent"),
    ok_but("services.*.build.labels", "build_no_cache_image_prune_and_rmi", "no test names this key"),
    ok_but("services.*.build.cache_from", "cache_from_a_registry_image_answers_every_step_in_a_fresh_store", "images berth built (they carry their build records), local or pulled from a registry; `type=registry,ref=` too, other cache types refused by key path"),
    refused("services.*.build.cache_to", "build_keys_the_builder_cannot_honour_are_refused_by_path", "the build cache is not exported"),
    ok("services.*.build.no_cache", "build_no_cache_image_prune_and_rmi"),
    refused("services.*.build.no_cache_filter", "build_keys_the_builder_cannot_honour_are_refused_by_path", "use no_cache: true"),
    ok_but("services.*.build.additional_contexts", "additional_contexts_name_a_service_a_directory_and_an_image", "local directories, docker-image:// and service: contexts; remote (git, https) and oci-layout:// contexts are refused by key path"),
    ok_but("services.*.build.network", "a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers", "no test names this key"),
    refused("services.*.build.provenance", "build_keys_the_builder_cannot_honour_are_refused_by_path", "no attestation is made"),
    refused("services.*.build.sbom", "build_keys_the_builder_cannot_honour_are_refused_by_path", "no attestation is made"),
    ok_but("services.*.build.pull", "build_no_cache_image_prune_and_rmi", "no test names this key"),
    ok_but("services.*.build.target", "multi_stage_copy_from_a_stage_and_an_image", "the builder's test; no test goes through the compose key"),
    ok("services.*.build.shm_size", "run_steps_get_a_nat_network_without_ipv6_extra_hosts_shm_and_an_ssh_agent"),
    ok("services.*.build.extra_hosts", "run_steps_get_a_nat_network_without_ipv6_extra_hosts_shm_and_an_ssh_agent"),
    inert("services.*.build.isolation", "a Windows build setting"),
    refused("services.*.build.privileged", "build_keys_the_builder_cannot_honour_are_refused_by_path", "RUN steps are never privileged"),
    ok("services.*.build.secrets", "a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers"),
    ok("services.*.build.secrets[].source", "a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers"),
    ok_but("services.*.build.secrets[].target", "a_python_app_with_apt_pip_a_cache_mount_and_a_secret_builds_and_answers", "the id a Dockerfile mounts; no test sets it"),
    inert("services.*.build.secrets[].uid", "a build secret's owner is set by the Dockerfile's RUN --mount (docker compose ignores it too)"),
    inert("services.*.build.secrets[].gid", "a build secret's owner is set by the Dockerfile's RUN --mount (docker compose ignores it too)"),
    inert("services.*.build.secrets[].mode", "a build secret's mode is set by the Dockerfile's RUN --mount (docker compose ignores it too)"),
    ok_but("services.*.build.tags", "build_no_cache_image_prune_and_rmi", "no test names this key"),
    refused("services.*.build.ulimits", "build_keys_the_builder_cannot_honour_are_refused_by_path", "RUN steps get the default limits"),
    refused("services.*.build.platforms", "build_keys_the_builder_cannot_honour_are_refused_by_path", "berth builds for this host's platform only; the host's own platform is accepted"),
    ok_but("services.*.blkio_config", CGROUP_KEYS, "the throttles apply; a weight is refused where the host has no proportional I/O scheduler"),
    refused("services.*.blkio_config.weight", "cgroup_keys_this_host_cannot_honour_are_refused", "this host's block devices have no proportional I/O scheduler (BFQ), so weights cannot apply; hosts with one honour it"),
    refused("services.*.blkio_config.weight_device", "cgroup_keys_this_host_cannot_honour_are_refused", "this host's block devices have no proportional I/O scheduler (BFQ), so weights cannot apply; hosts with one honour it"),
    ok("services.*.blkio_config.device_read_bps", CGROUP_KEYS),
    ok("services.*.blkio_config.device_read_bps[].path", CGROUP_KEYS),
    ok("services.*.blkio_config.device_read_bps[].rate", CGROUP_KEYS),
    ok_but("services.*.blkio_config.device_read_iops", CGROUP_KEYS, "the test sets device_write_iops and device_read_bps; the four throttles share the code"),
    ok("services.*.blkio_config.device_read_iops[].path", CGROUP_KEYS),
    ok("services.*.blkio_config.device_read_iops[].rate", CGROUP_KEYS),
    ok_but("services.*.blkio_config.device_write_bps", CGROUP_KEYS, "the test sets device_write_iops and device_read_bps; the four throttles share the code"),
    ok("services.*.blkio_config.device_write_bps[].path", CGROUP_KEYS),
    ok("services.*.blkio_config.device_write_bps[].rate", CGROUP_KEYS),
    ok("services.*.blkio_config.device_write_iops", CGROUP_KEYS),
    ok("services.*.blkio_config.device_write_iops[].path", CGROUP_KEYS),
    ok("services.*.blkio_config.device_write_iops[].rate", CGROUP_KEYS),
    ok("services.*.cap_add", "security_defaults_resources_and_pause"),
    ok("services.*.cap_drop", "cap_drop_privileged_sysctls_and_cpus_reach_the_container"),
    ok_but("services.*.cgroup", NAMESPACES, "host and private"),
    ok("services.*.cgroup_parent", CGROUP_KEYS),
    ok("services.*.command", "lifecycle_commands_act_on_running_containers"),
    ok("services.*.configs", SECRETS),
    ok("services.*.configs[].source", SECRETS),
    ok("services.*.configs[].target", SECRETS),
    ok_but("services.*.configs[].uid", SECRETS, "the test sets uid on a secret; configs share the code"),
    ok_but("services.*.configs[].gid", SECRETS, "the test sets gid on a secret; configs share the code"),
    ok("services.*.configs[].mode", SECRETS),
    ok("services.*.container_name", "container_name_names_the_created_container"),
    refused("services.*.cpu_count", REFUSED_BY_PATH, "a Windows setting"),
    refused("services.*.cpu_percent", REFUSED_BY_PATH, "a Windows setting"),
    ok("services.*.cpu_shares", RESOURCES),
    ok_but("services.*.cpu_quota", CGROUP_KEYS, "with cpus too, refused (docker refuses both)"),
    ok("services.*.cpu_period", CGROUP_KEYS),
    ok_but("services.*.cpu_rt_period", CGROUP_KEYS, "cgroup v1; refused on a cgroup v2 host"),
    ok_but("services.*.cpu_rt_runtime", CGROUP_KEYS, "cgroup v1; refused on a cgroup v2 host"),
    ok("services.*.cpus", "cap_drop_privileged_sysctls_and_cpus_reach_the_container"),
    ok_but("services.*.cpuset", CGROUP_KEYS, "CPUs this host does not have are refused"),
    refused("services.*.credential_spec", REFUSED_BY_PATH, "a Windows feature"),
    ok("services.*.depends_on", "down_stops_dependants_first"),
    ok("services.*.depends_on.*.restart", "depends_on_restart_true_restarts_dependant"),
    ok("services.*.depends_on.*.required", "optional_dependency_on_a_missing_service_is_ignored"),
    ok("services.*.depends_on.*.condition", "service_completed_successfully_gates_dependants"),
    ok("services.*.device_cgroup_rules", CGROUP_KEYS),
    ok("services.*.devices", RESOURCES),
    ok_but("services.*.devices[].source", RESOURCES, "the long syntax becomes the short one at load; no test uses the long syntax"),
    ok_but("services.*.devices[].target", RESOURCES, "the long syntax becomes the short one at load; no test uses the long syntax"),
    ok_but("services.*.devices[].permissions", RESOURCES, "the long syntax becomes the short one at load; no test uses the long syntax"),
    ok("services.*.dns", NETS),
    ok_but("services.*.dns_opt", NETS, "written to resolv.conf with dns and dns_search; no test names this key"),
    ok("services.*.dns_search", NETS),
    ok_but("services.*.domainname", "domainname_is_the_containers", "the UTS namespace's domain name; with uts: host it is refused by path (the container has the host's)"),
    ok("services.*.entrypoint", "entrypoint_and_cmd_follow_docker"),
    ok("services.*.env_file", FULL_EXAMPLE),
    ok("services.*.env_file[].path", FULL_EXAMPLE),
    ok("services.*.env_file[].format", FULL_EXAMPLE),
    ok("services.*.env_file[].required", FULL_EXAMPLE),
    ok("services.*.label_file", "labels_are_kept_inspected_and_filtered"),
    ok("services.*.environment", "healthchecks_gate_dependants_and_show_in_ps"),
    inert("services.*.expose", "ports are open between containers of a network anyway; expose only documents them"),
    ok_but("services.*.extends", FIXTURES, "merged at load"),
    ok("services.*.extends.service", FIXTURES),
    ok("services.*.extends.file", FIXTURES),
    refused("services.*.provider", REFUSED_BY_PATH, "provider services (a plugin standing in for a container) are not supported"),
    refused("services.*.external_links", REFUSED_BY_PATH, "links to containers outside the project are not supported"),
    ok_but("services.*.extra_hosts", NETS, "written to the hosts file; no test names this key"),
    refused("services.*.gpus", REFUSED_BY_PATH, "GPU devices are not supported by the embedded engine"),
    ok("services.*.group_add", RESOURCES),
    ok("services.*.healthcheck", HEALTH),
    ok("services.*.healthcheck.disable", "image_healthcheck_is_inherited_and_overridden"),
    ok("services.*.healthcheck.interval", HEALTH),
    ok("services.*.healthcheck.retries", HEALTH),
    ok("services.*.healthcheck.test", HEALTH),
    ok_but("services.*.healthcheck.timeout", "tests_parse_like_docker", "parsed and used; no test shows a probe cut off at its timeout"),
    ok("services.*.healthcheck.start_period", "start_period_failures_do_not_count_and_probe_faster"),
    ok("services.*.healthcheck.start_interval", HEALTH),
    ok_but("services.*.hostname", "working_dir_and_hostname", "the sandbox's test; no end-to-end test names this key"),
    ok("services.*.image", "the_seed_runs_attached_and_detached_and_leaves_nothing"),
    ok("services.*.init", "init_forwards_the_stop_signal"),
    ok_but("services.*.ipc", NAMESPACES, "private, shareable, host, service:NAME, container:NAME; joining a private one is refused"),
    refused("services.*.isolation", REFUSED_E2E, "a Windows feature"),
    ok("services.*.labels", "labels_are_kept_inspected_and_filtered"),
    ok("services.*.links", NETS),
    ok_but("services.*.logging", "log_rotation_and_drivers", "drivers json-file, local and none; others are refused before anything is made"),
    ok_but("services.*.logging.driver", "log_rotation_and_drivers", "json-file, local, none; the refusal of others is shown by keys_the_engine_cannot_honour_are_refused_by_path"),
    ok("services.*.logging.options", "local_log_driver_rotates_to_five_files_by_default"),
    ok_but("services.*.mac_address", "mac_addresses_are_the_interfaces", "on the service's first network (priority, then name), as docker compose; a different one set there, a multicast or malformed address, or no network are refused by path"),
    ok("services.*.mem_limit", "security_defaults_resources_and_pause"),
    ok("services.*.mem_reservation", CGROUP_KEYS),
    ok_but("services.*.mem_swappiness", CGROUP_KEYS, "cgroup v1; refused on a cgroup v2 host"),
    ok("services.*.memswap_limit", RESOURCES),
    ok_but("services.*.network_mode", "network_modes_host_none_and_container", "`ns:…` and `service:` of an undefined service are refused"),
    refused("services.*.models", "refusals_name_the_key_path", "no model runner: the endpoint and model variables could not be set"),
    ok("services.*.networks", NETS),
    ok("services.*.networks.*.aliases", NETS),
    ok_but("services.*.networks.*.interface_name", "interface_name_and_gw_priority_shape_the_interfaces_and_route", "the other networks keep eth<n> by their place in order; an invalid name or one another network has is refused by path"),
    ok("services.*.networks.*.ipv4_address", NETS),
    ok_but("services.*.networks.*.ipv6_address", "enable_ipv6_gives_addresses_on_its_network_only_and_link_local_ips_apply", "on a network with enable_ipv6 (refused by path on others); without it a container's IPv6 address is the subnet's prefix and its IPv4 host part"),
    ok_but("services.*.networks.*.link_local_ips", "enable_ipv6_gives_addresses_on_its_network_only_and_link_local_ips_apply", "169.254.0.0/16 addresses on any network, fe80::/10 ones on a network with enable_ipv6; others refused by path"),
    ok_but("services.*.networks.*.mac_address", "mac_addresses_are_the_interfaces", "unique on the network; a multicast or malformed address is refused by path"),
    refused("services.*.networks.*.driver_opts", REFUSED_BY_PATH, "endpoint driver options are not supported"),
    ok_but("services.*.networks.*.priority", NETS, "orders the networks (the first routed one has the default route); no test names this key"),
    ok_but("services.*.networks.*.gw_priority", "interface_name_and_gw_priority_shape_the_interfaces_and_route", "the highest among the service's non-internal networks carries the default route; ties go by network order"),
    ok_but("services.*.oom_kill_disable", CGROUP_KEYS, "cgroup v1; refused on a cgroup v2 host"),
    ok("services.*.oom_score_adj", CGROUP_KEYS),
    ok_but("services.*.pid", NAMESPACES, "host, service:NAME, container:NAME"),
    ok("services.*.pids_limit", "security_defaults_resources_and_pause"),
    ok_but("services.*.platform", REFUSALS, "this host's platform runs; any other is refused"),
    ok("services.*.ports", "published_port_forms_short_long_range_and_udp"),
    inert("services.*.ports[].name", "a name for humans and tools; publishing does not use it"),
    inert("services.*.ports[].mode", "ingress and host publish alike without a swarm").listed(Listed::Unless(&["ingress"])),
    ok("services.*.ports[].host_ip", "published_port_forms_short_long_range_and_udp"),
    ok("services.*.ports[].target", "published_port_forms_short_long_range_and_udp"),
    ok("services.*.ports[].published", "published_port_forms_short_long_range_and_udp"),
    ok("services.*.ports[].protocol", "published_port_forms_short_long_range_and_udp"),
    inert("services.*.ports[].app_protocol", "informational (the port proxy detects HTTP itself; see x-berth.protocol)"),
    refused("services.*.pre_start", REFUSED_BY_PATH, "init containers (compose-go's schema) are not supported yet"),
    ok_but("services.*.post_start", HOOKS, "run through exec once the container started; a failing hook fails `up`"),
    ok("services.*.post_start[].command", HOOKS),
    ok("services.*.post_start[].user", HOOKS),
    ok("services.*.post_start[].privileged", HOOKS),
    ok_but("services.*.post_start[].working_dir", HOOKS, "passed to the exec; no test sets it"),
    ok("services.*.post_start[].environment", HOOKS),
    ok("services.*.pre_stop", HOOKS),
    ok("services.*.pre_stop[].command", HOOKS),
    ok_but("services.*.pre_stop[].user", HOOKS, "the test sets user on post_start; the hooks share the code"),
    ok_but("services.*.pre_stop[].privileged", HOOKS, "the test sets privileged on post_start; the hooks share the code"),
    ok_but("services.*.pre_stop[].working_dir", HOOKS, "passed to the exec; no test sets it"),
    ok("services.*.pre_stop[].environment", HOOKS),
    ok("services.*.privileged", "cap_drop_privileged_sysctls_and_cpus_reach_the_container"),
    ok("services.*.profiles", "profiles_select_services"),
    ok("services.*.pull_policy", "pull_policy_is_followed"),
    refused("services.*.pull_refresh_after", REFUSED_BY_PATH, "not supported (pull_policy daily, weekly and every_<duration> are)"),
    ok_but("services.*.read_only", "a_read_only_rootfs_refuses_writes_but_mounts_still_work", "the sandbox's test; no end-to-end test names this key"),
    ok("services.*.restart", "on_failure_restarts_with_backoff_and_down_removes_it_all"),
    inert("services.*.runtime", "containers run through youki's libcontainer, runc-compatible; any other runtime is refused").listed(Listed::When(&["runc", "io.containerd.runc.v2"])),
    ok("services.*.scale", "create_honours_scale_and_deploy_replicas"),
    ok_but("services.*.security_opt", "security_defaults_resources_and_pause", "no-new-privileges and seccomp; apparmor and label options are accepted and not applied (no AppArmor or SELinux here); others are refused"),
    ok("services.*.shm_size", "shm_size_sets_the_dev_shm_tmpfs"),
    ok("services.*.secrets", SECRETS),
    ok("services.*.secrets[].source", SECRETS),
    ok("services.*.secrets[].target", SECRETS),
    ok("services.*.secrets[].uid", SECRETS),
    ok("services.*.secrets[].gid", SECRETS),
    ok("services.*.secrets[].mode", SECRETS),
    ok("services.*.sysctls", "cap_drop_privileged_sysctls_and_cpus_reach_the_container"),
    ok_but("services.*.stdin_open", "stdin_open_keeps_stdin_open_and_tty_gives_a_terminal", "`berth attach` writes into it (attach_joins_stdin_and_output_detaches_and_returns_the_exit_code); attach shows stdout and stderr as one stream"),
    ok("services.*.stop_grace_period", "a_kill_after_the_grace_period_is_explained_and_init_avoids_it"),
    ok_but("services.*.stop_signal", "a_kill_after_the_grace_period_is_explained_and_init_avoids_it", "the test shows the stop path; no test sets stop_signal"),
    refused("services.*.storage_opt", REFUSED_BY_PATH, "per-container storage options are not supported by the overlay"),
    ok_but("services.*.tmpfs", "tmpfs_options_and_deploy_restart_policy_apply", "size= and mode= apply; other options are refused"),
    ok_but("services.*.tty", "stdin_open_keeps_stdin_open_and_tty_gives_a_terminal", "`berth attach` is a terminal to it, with attach's window size (attach_to_a_tty_service_is_a_terminal)"),
    ok("services.*.ulimits", "security_defaults_resources_and_pause"),
    ok("services.*.ulimits.*.hard", "security_defaults_resources_and_pause"),
    ok("services.*.ulimits.*.soft", "security_defaults_resources_and_pause"),
    refused("services.*.use_api_socket", REFUSED_BY_PATH, "the embedded engine has no Docker API socket to give"),
    ok_but("services.*.user", "user_by_name_and_by_number", "the sandbox's test; no end-to-end test names this key"),
    ok_but("services.*.uts", NAMESPACES, "host; a hostname with uts: host is refused"),
    refused("services.*.userns_mode", REFUSED_BY_PATH, "only `host` (the default: containers are not user-namespaced) is accepted"),
    ok("services.*.volumes", "named_volumes_volumes_from_and_service_names"),
    ok_but("services.*.volumes[].type", "named_volumes_volumes_from_and_service_names", "bind, volume and tmpfs; image, npipe and cluster are refused (keys_the_engine_cannot_honour_are_refused_by_path)"),
    ok("services.*.volumes[].source", "named_volumes_volumes_from_and_service_names"),
    ok("services.*.volumes[].target", "named_volumes_volumes_from_and_service_names"),
    ok("services.*.volumes[].read_only", "a_read_only_bind_cannot_be_written_and_a_read_write_one_can"),
    inert("services.*.volumes[].consistency", "a Docker Desktop (macOS) file-sharing setting"),
    ok("services.*.volumes[].bind", "named_volumes_volumes_from_and_service_names"),
    refused("services.*.volumes[].bind.propagation", REFUSED_BY_PATH, "binds are rprivate; private and rprivate are accepted, others refused"),
    ok_but("services.*.volumes[].bind.create_host_path", MOUNTS, "`false` with a missing host path fails `up` before anything is made, as docker fails the container"),
    refused("services.*.volumes[].bind.recursive", REFUSED_BY_PATH, "binds are always recursive; `enabled` is accepted, others refused"),
    inert("services.*.volumes[].bind.selinux", "no SELinux here: there is nothing to relabel"),
    ok("services.*.volumes[].volume", "nocopy_applies_and_unsupported_keys_are_refused"),
    inert("services.*.volumes[].volume.labels", "berth's volumes are directories without metadata, and no command lists or filters volumes by label"),
    ok("services.*.volumes[].volume.nocopy", "nocopy_applies_and_unsupported_keys_are_refused"),
    ok_but("services.*.volumes[].volume.subpath", "volume_subpath_mounts_part_of_a_volume_and_never_follows_a_symlink", "a named volume's existing part, resolved beneath the volume without following symlinks (openat2) and bound through the descriptor; a path leaving the volume, an anonymous volume or one with driver_opts are refused by path"),
    ok("services.*.volumes[].tmpfs", "tmpfs_mounts_are_fresh_sized_and_writable"),
    ok("services.*.volumes[].tmpfs.size", MOUNTS),
    ok("services.*.volumes[].tmpfs.mode", MOUNTS),
    refused("services.*.volumes[].image", REFUSED_BY_PATH, "image mounts are not supported by the embedded engine (refused as type image)"),
    ok("services.*.volumes_from", "the_seed_runs_attached_and_detached_and_leaves_nothing"),
    ok("services.*.working_dir", "the_seed_runs_attached_and_detached_and_leaves_nothing"),
    refused("models", REFUSED_BY_PATH, "no model runner: models are never pulled or served"),
    ok("networks", NETS),
    ok("networks.*.name", NETS),
    ok_but("networks.*.driver", REFUSALS, "bridge; any other driver is refused"),
    ok_but("networks.*.driver_opts", "bridge_driver_options_name_the_bridge_and_set_mtu_masquerade_and_icc", "com.docker.network.bridge.name, .enable_ip_masquerade, .enable_icc and com.docker.network.driver.mtu; any other option is refused by key path (keys_the_engine_cannot_honour_are_refused_by_path)"),
    ok_but("networks.*.ipam", NETS, "the default driver and one subnet; what else it could ask for is refused"),
    refused("networks.*.ipam.driver", REFUSED_BY_PATH, "addresses come from berth's own allocator; `default` is accepted"),
    ok_but("networks.*.ipam.config", NETS, "one IPv4 entry and, with enable_ipv6, one IPv6 entry; more are refused"),
    ok("networks.*.ipam.config[].subnet", NETS),
    ok_but("networks.*.ipam.config[].ip_range", "ip_range_and_aux_addresses_shape_address_allocation", "IPv4: where addresses are taken from when none is asked for (an ipv4_address may be anywhere in the subnet, as with docker); outside the subnet or on an IPv6 entry refused by path"),
    ok_but("networks.*.ipam.config[].gateway", REFUSED_BY_PATH, "the bridge is the subnet's first address: that gateway is accepted, any other refused"),
    ok_but("networks.*.ipam.config[].aux_addresses", "ip_range_and_aux_addresses_shape_address_allocation", "IPv4: never given to a container; outside the subnet or on an IPv6 entry refused by path"),
    refused("networks.*.ipam.options", REFUSED_BY_PATH, "IPAM options are not supported"),
    ok("networks.*.external", NETS),
    ok_but("networks.*.external.name", "external_volume_and_network_names_that_are_paths_are_refused", "the obsolete form of an external network's name"),
    ok("networks.*.internal", NETS),
    refused("networks.*.enable_ipv4", REFUSED_BY_PATH, "`false` is refused (IPv6-only networks are not supported); `true` is the default"),
    ok_but("networks.*.enable_ipv6", "enable_ipv6_gives_addresses_on_its_network_only_and_link_local_ips_apply", "IPv6 inside the network and with the host (the subnet from ipam.config, else a unique local /64 from the network's name); IPv6 stays off in containers of other networks (containers_ask_no_aaaa_on_ipv4_networks); no IPv6 route leaves the host: berth adds no ip6tables rules and keeps networks apart by the host not routing IPv6, so a host with net.ipv6.conf.all.forwarding=1, or enable_icc false with IPv6, is refused"),
    inert("networks.*.attachable", SWARM),
    inert("networks.*.labels", "berth's networks have no metadata store, and no command lists or filters networks by label"),
    ok("volumes", "named_volumes_volumes_from_and_service_names"),
    ok("volumes.*.name", "a_volume_name_cannot_reach_a_host_directory"),
    ok_but("volumes.*.driver", REFUSALS, "local; any other driver is refused"),
    ok_but("volumes.*.driver_opts", "local_driver_bind_and_tmpfs_volumes_mount_as_docker_does", "the local driver's bind volumes (type none, o: bind, an existing absolute device; berth never writes the image's content into the device nor removes it with down -v) and tmpfs volumes (o: size, mode, uid, gid, nr_inodes and mount flags; one tmpfs shared while the project runs); other types (nfs, …) and options are refused by key path (keys_the_engine_cannot_honour_are_refused_by_path)"),
    ok_but("volumes.*.external", "external_volume_and_network_names_that_are_paths_are_refused", "a missing external volume fails `up`; no end-to-end test shows that"),
    ok_but("volumes.*.external.name", "external_volume_and_network_names_that_are_paths_are_refused", "the obsolete form of an external volume's name"),
    inert("volumes.*.labels", "berth's volumes are directories without metadata, and no command lists or filters volumes by label"),
    ok("secrets", SECRETS),
    inert("secrets.*.name", SWARM_OBJECT),
    ok("secrets.*.environment", SECRETS),
    ok("secrets.*.file", SECRETS),
    refused("secrets.*.external", "bad_references_name_the_key", "an external secret lives in Docker Swarm"),
    inert("secrets.*.labels", SWARM_OBJECT),
    inert("secrets.*.driver", "a swarm secret driver; without swarm the secret comes from file or environment"),
    inert("secrets.*.driver_opts", "a swarm secret driver's options"),
    inert("secrets.*.template_driver", "swarm templating of the secret's content"),
    ok("configs", SECRETS),
    inert("configs.*.name", SWARM_OBJECT),
    ok("configs.*.content", SECRETS),
    ok_but("configs.*.environment", SECRETS, "the test reads a secret from the environment; configs share the code"),
    ok_but("configs.*.file", SECRETS, "the test reads a secret from a file; configs share the code"),
    refused("configs.*.external", "bad_references_name_the_key", "an external config lives in Docker Swarm"),
    inert("configs.*.labels", SWARM_OBJECT),
    inert("configs.*.template_driver", "swarm templating of the config's content"),
];

/// The row of `key` (a pattern such as `services.*.expose`).
pub fn row_of(key: &str) -> Option<&'static Row> {
    ROWS.iter().find(|r| r.key == key)
}

/// The patterns `key` is under, nearest last: `services.*.volumes[].bind`
/// → `services`, `services.*`, `services.*.volumes`, `services.*.volumes[]`.
pub fn ancestors(key: &str) -> impl Iterator<Item = &str> {
    key.char_indices()
        .filter(|(_, c)| *c == '.' || *c == '[')
        .map(move |(i, _)| &key[..i])
}

/// Whether the table says what happens to `key`: its own row, or a row
/// above it that is not `Honoured` (what is refused or not applied is so
/// with everything under it).
pub fn covers(key: &str) -> bool {
    row_of(key).is_some()
        || ancestors(key)
            .filter_map(row_of)
            .any(|r| r.status != Status::Honoured)
}

/// The keys of `project` that are accepted and change nothing, as concrete
/// paths (`services.web.expose`, `services.web.volumes[0].bind.selinux`),
/// each once, sorted: what `up --dry-run` prints as "not applied". Keys
/// `up` refuses are not listed (it fails on them instead).
pub fn not_applied(project: &Project) -> Vec<String> {
    // The project serializes to its normalized compose JSON (see model.rs).
    let doc = serde_json::to_value(project).unwrap_or(Value::Null);
    not_applied_in(&doc)
}

fn not_applied_in(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if let Value::Object(m) = doc {
        for (k, v) in m {
            visit(v, k, k, &mut out);
        }
    }
    // Sorted, because normalizing does not keep the file's key order.
    out.sort();
    out.dedup();
    out
}

fn visit(v: &Value, pattern: &str, concrete: &str, out: &mut Vec<String>) {
    // No row: an extension (`x-…`) or a key outside the schema; not ours to judge.
    let Some(row) = row_of(pattern) else { return };
    if row.listed.matches(v) {
        out.push(concrete.to_string());
    }
    if row.status == Status::Honoured {
        descend(v, pattern, concrete, out);
    }
}

fn descend(v: &Value, pattern: &str, concrete: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            // A map of names (services, networks, ulimits…) when the table
            // has keys under `pattern.*`; else a map of keys.
            let names = format!("{pattern}.*");
            let named = ROWS.iter().any(|r| r.key.starts_with(&names));
            for (k, x) in m {
                if named {
                    descend(x, &names, &format!("{concrete}.{k}"), out);
                } else {
                    visit(
                        x,
                        &format!("{pattern}.{k}"),
                        &format!("{concrete}.{k}"),
                        out,
                    );
                }
            }
        }
        Value::Array(items) => {
            let each = format!("{pattern}[]");
            if ROWS.iter().any(|r| r.key.starts_with(&each)) {
                for (i, x) in items.iter().enumerate() {
                    descend(x, &each, &format!("{concrete}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// `COMPOSE_KEYS.md`: the rows as a table, with counts.
pub fn markdown() -> String {
    let mut s = String::new();
    let count = |st: Status| ROWS.iter().filter(|r| r.status == st).count();
    s.push_str("# Compose keys in berth\n\n");
    s.push_str(
        "Generated from `crates/compose/src/coverage.rs` by the test `coverage_table_is_current` \
         (`crates/compose/tests/it/coverage.rs`); do not edit by hand. Regenerate with\n\
         `BERTH_BLESS=1 cargo nextest run -p berth-compose -E 'test(coverage)'`.\n\n",
    );
    s.push_str(
        "One row per key of the compose spec's JSON schema (compose-spec and compose-go, \
         `../shared/conformance/compose/`), for the embedded engine (berth's default backend). \
         `*` stands for a name (a service, a network…), `[]` for the entries of a list. \
         A row that is not *honoured* stands for the keys under it too.\n\n",
    );
    s.push_str(
        "- **honoured**: applied as docker compose with Docker Engine applies it.\n\
         - **refused**: `config -q` accepts the file; `up` fails before it makes anything, \
         with one line naming the key path.\n\
         - **not applied**: meaningless and harmless here (swarm-only, Windows-only, \
         informational); accepted, and listed once by `up --dry-run` as \"not applied\".\n\
         - **ignored (bug)**: accepted and without effect although it has a meaning here \
         (issue 13); `up --dry-run` lists it as \"not applied\" until it is honoured or refused.\n\n\
         The test column names a `fn` in `crates/` (`grep -rn 'fn NAME' crates`) that shows the \
         status; the table's test fails when it no longer exists.\n\n",
    );
    let _ = writeln!(
        s,
        "{} keys: {} honoured, {} refused, {} not applied, {} ignored (bug).\n",
        ROWS.len(),
        count(Honoured),
        count(Refused),
        count(NotApplied),
        count(Ignored)
    );
    let mut section = "";
    for r in ROWS {
        let top = r.key.split(['.', '[']).next().unwrap_or(r.key);
        let heading = match top {
            "services" | "networks" | "volumes" | "secrets" | "configs" | "models" => top,
            _ => "top level",
        };
        if heading != section {
            section = heading;
            let _ = write!(
                s,
                "\n## {heading}\n\n| key | status | test | note |\n|---|---|---|---|\n"
            );
        }
        let _ = writeln!(
            s,
            "| `{}` | {} | `{}` | {} |",
            r.key,
            r.status.label(),
            r.test,
            r.note.replace('|', "\\|")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `{"services": {"s": {"volumes": [{"bind": {"selinux": v}}]}}}` for
    /// `services.*.volumes[].bind.selinux`, and the concrete path expected.
    fn document_with(key: &str, value: Value) -> (Value, String) {
        let mut segments: Vec<String> = Vec::new();
        for part in key.split('.') {
            let (name, lists) = match part.find("[]") {
                Some(i) => (&part[..i], part[i..].matches("[]").count()),
                None => (part, 0),
            };
            segments.push(name.to_string());
            segments.extend(std::iter::repeat_n("[]".to_string(), lists));
        }
        let mut doc = value;
        for seg in segments.iter().rev() {
            doc = match seg.as_str() {
                "[]" => Value::Array(vec![doc]),
                "*" => json!({ "n": doc }),
                k => json!({ k: doc }),
            };
        }
        let mut concrete = String::new();
        for seg in &segments {
            match seg.as_str() {
                "[]" => concrete.push_str("[0]"),
                s => {
                    if !concrete.is_empty() {
                        concrete.push('.');
                    }
                    concrete.push_str(if s == "*" { "n" } else { s });
                }
            }
        }
        (doc, concrete)
    }

    /// Defends: `up --dry-run` names every key the table says changes
    /// nothing, wherever it sits (under service names, list entries, maps of
    /// names), so a user learns of each one.
    #[test]
    fn every_not_applied_and_ignored_key_is_listed() {
        let mut checked = 0;
        for r in ROWS {
            let Some(value) = r.listed.example() else {
                continue;
            };
            if ancestors(r.key)
                .filter_map(row_of)
                .any(|a| a.status != Status::Honoured)
            {
                continue; // stands under a key listed in its place
            }
            let (doc, concrete) = document_with(r.key, value);
            assert_eq!(not_applied_in(&doc), [concrete], "{}: {doc}", r.key);
            checked += 1;
        }
        assert!(checked > 30, "only {checked} rows checked");
    }

    /// `yaml` loaded as `-f -` would be, from a directory that need not exist.
    fn load(yaml: &str) -> Project {
        let opts = crate::Options {
            files: vec!["-".into()],
            stdin: Some(yaml.to_string()),
            cwd: "/nonexistent/berth-coverage".into(),
            os_env: [("HOME".to_string(), "/home/tester".to_string())]
                .into_iter()
                .collect(),
            ..crate::Options::default()
        };
        crate::load(&opts).unwrap().project
    }

    /// Defends: the examples (`expose`, `runtime: runc`) and the
    /// gaps are listed once each with the service's own name; what berth
    /// applies (`attach: false`), what `up` refuses (`interface_name`) and
    /// defaults that normalizing fills in (port mode `ingress`,
    /// `create_host_path: true`) are not.
    #[test]
    fn a_loaded_project_lists_what_changes_nothing() {
        let project = load(
            "services:\n  web:\n    image: nginx\n    expose: [\"80\", \"443\"]\n    runtime: runc\n    \
             ports: [\"8080:80\"]\n    volumes: [\"./data:/data:z\", \"cache:/cache\"]\n    \
             attach: true\n    cpuset: \"0\"\n    deploy:\n      replicas: 2\n      placement:\n        constraints: [node.role==manager]\n  \
             db:\n    image: postgres\n    attach: false\n    runtime: nvidia\n    \
             networks:\n      back:\n        interface_name: db0\n\
             networks:\n  back:\n    attachable: true\n    enable_ipv4: true\n\
             volumes:\n  cache: {}\n",
        );
        assert_eq!(
            not_applied(&project),
            [
                "networks.back.attachable",
                "services.web.deploy.placement",
                "services.web.expose",
                "services.web.runtime",
                "services.web.volumes[0].bind.selinux",
            ]
            .map(String::from),
        );
    }

    /// Defends: a project that uses only what berth applies prints no "not
    /// applied" line at all.
    #[test]
    fn a_project_berth_fully_applies_lists_nothing() {
        let project = load(
            "services:\n  app:\n    image: quay.io/oddnetworks/alpine-nodejs:4.2.2\n    volumes_from: [code]\n    \
             ports: [\"8080:3000\"]\n    working_dir: /app\n    command: /bin/ash -c \"npm start\"\n    \
             healthcheck: {test: [\"CMD\", \"true\"], interval: 1s}\n    depends_on: [code]\n  \
             code:\n    build: .\n    volumes: [\"./src:/src:ro\"]\n",
        );
        assert_eq!(not_applied(&project), Vec::<String>::new());
    }

    #[test]
    fn ancestors_and_cover() {
        assert_eq!(
            ancestors("services.*.volumes[].bind.selinux").collect::<Vec<_>>(),
            [
                "services",
                "services.*",
                "services.*.volumes",
                "services.*.volumes[]",
                "services.*.volumes[].bind"
            ]
        );
        // Under a refused key, under a not-applied key, and not covered.
        assert!(covers("services.*.blkio_config.weight"));
        assert!(covers("services.*.deploy.placement.constraints"));
        assert!(!covers("services.*.healthcheck.nonsense"));
    }
}
