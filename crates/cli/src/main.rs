//! `berth`: a compose engine that keeps application code and its language
//! runtime apart. Commands and flags follow `docker compose`.

mod attach_cmd;
mod build_cmd;
mod config_cmd;
mod cp_cmd;
mod engine;
mod exec_cmd;
mod image_cmd;
mod lifecycle_cmd;
mod logs;
mod options;
mod project_cmd;
mod pull_policy;
mod run_cmd;
mod run_steps;
mod runtime_cmd;
mod up_cmd;
mod watch_cmd;

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Run compose projects without a daemon, with the language runtime as a verified input",
    disable_version_flag = true
)]
pub struct Cli {
    /// Print the berth version (as `berth version --short` does, with the name)
    #[arg(short = 'v', long = "version", action = clap::ArgAction::Version)]
    version: Option<bool>,
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Compose configuration files (repeatable; `-` reads standard input).
    /// Given before the command, as with docker compose (`logs -f` follows).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,
    /// Project name. Given before the command, as with docker compose
    /// (`run -p` publishes a port).
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Alternate working directory (default: the directory of the first file)
    #[arg(long, global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Alternate environment files (repeatable; default: `.env` in the project directory)
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Profiles to enable (repeatable)
    #[arg(long = "profile", global = true, value_name = "PROFILE")]
    pub profile: Vec<String>,
    /// When to use colour and cursor control
    #[arg(long, global = true, value_enum, default_value_t = Ansi::Auto)]
    pub ansi: Ansi,
    /// How to show progress
    #[arg(long, global = true, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// The engine that runs containers (default: `engine` in berth's config
    /// file, else embedded)
    #[arg(long, global = true, value_enum, env = "BERTH_ENGINE")]
    pub engine: Option<engine::EngineKind>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ansi {
    Never,
    Always,
    Auto,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    Auto,
    Tty,
    Plain,
    Json,
    Quiet,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Yaml,
    Json,
}

/// Output of listings: a table for people, JSON for programs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ListFormat {
    #[default]
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Parse, resolve and render the compose file in canonical form
    Config(config_cmd::ConfigArgs),
    /// Create and start the project's containers (attached, or -d)
    Up(watch_cmd::UpWatchArgs),
    /// Sync, rebuild or restart services as their `develop.watch` files change
    Watch(watch_cmd::WatchArgs),
    /// Stop and remove the project's containers, networks and anonymous volumes
    Down(project_cmd::DownArgs),
    /// List the project's containers
    Ps(project_cmd::PsArgs),
    /// Show the project's containers as `docker inspect` does (JSON)
    Inspect(project_cmd::InspectArgs),
    /// Show the output of the project's containers
    Logs(project_cmd::LogsArgs),
    /// Attach this terminal's input and output to a running service container
    Attach(attach_cmd::AttachArgs),
    /// Run a command in a running service container
    Exec(exec_cmd::ExecArgs),
    /// Run a one-off container of a service
    Run(run_cmd::RunArgs),
    /// Copy files between a service container and the host
    Cp(cp_cmd::CpArgs),
    /// Stop containers (they stay, exited, until start, up or rm)
    Stop(lifecycle_cmd::StopArgs),
    /// Start stopped containers
    Start(lifecycle_cmd::StartArgs),
    /// Restart containers
    Restart(lifecycle_cmd::StopArgs),
    /// Send a signal to containers
    Kill(lifecycle_cmd::KillArgs),
    /// Freeze every process of containers
    Pause(lifecycle_cmd::StartArgs),
    /// Thaw paused containers
    Unpause(lifecycle_cmd::StartArgs),
    /// Remove stopped containers
    Rm(lifecycle_cmd::RmArgs),
    /// Wait for containers to exit; print their exit codes
    Wait(lifecycle_cmd::WaitArgs),
    /// Print the host address a container port is published on
    Port(lifecycle_cmd::PortArgs),
    /// Show the processes running in containers
    Top(lifecycle_cmd::TopArgs),
    /// Follow container events (start, die, kill, destroy, restart)
    Events(lifecycle_cmd::EventsArgs),
    /// List running projects
    Ls(lifecycle_cmd::LsArgs),
    /// The per-project supervisor `up -d` starts (internal)
    #[command(name = "__supervise", hide = true)]
    Supervise { project: String },
    /// The port keeper of a project on the Docker engine (internal)
    #[command(name = "__docker-ports", hide = true)]
    DockerPorts { project: String },
    /// berth's port proxy, as a swarm's nodes run it (internal)
    #[command(name = "__swarm-proxy", hide = true)]
    SwarmProxy { routes: Vec<String> },
    /// Build the images of services that have a `build:` section
    Build(build_cmd::BuildArgs),
    /// Pull the images of services (through configured mirrors)
    Pull(build_cmd::PullArgs),
    /// Push the images of services to their registries
    Push(build_cmd::PushArgs),
    /// Manage the build cache (prune)
    #[command(subcommand)]
    Builder(build_cmd::BuilderCommand),
    /// List images in berth's store
    Images(image_cmd::ImagesArgs),
    /// Remove images
    Rmi(image_cmd::RmiArgs),
    /// Manage images (ls, rm, prune, fsck)
    #[command(subcommand)]
    Image(image_cmd::ImageCommand),
    /// Save images to a tar archive (an OCI layout that `docker load` also reads)
    Save(image_cmd::SaveArgs),
    /// Load images from a tar archive made by `berth save` or `docker save`
    Load(image_cmd::LoadArgs),
    /// Name the known vulnerabilities of each service's runtime (exit 1 at --fail-on)
    Audit(runtime_cmd::AuditArgs),
    /// Move services to a patched runtime release, editing the compose file in place
    Upgrade(runtime_cmd::UpgradeArgs),
    /// Manage the runtime store (ls, pull, rm, prune)
    #[command(subcommand)]
    Runtime(runtime_cmd::RuntimeCommand),
    /// Show the berth version
    Version(VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Output format
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    format: Format,
    /// Print only the version number
    #[arg(long)]
    short: bool,
}

impl GlobalArgs {
    pub fn colour(&self) -> bool {
        match self.ansi {
            Ansi::Always => true,
            Ansi::Never => false,
            Ansi::Auto => std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Supervise { .. } | Command::DockerPorts { .. } | Command::SwarmProxy { .. }
    ) {
        // Rust ignores SIGPIPE, so `berth ls | head -1` would panic on the
        // next print. A command whose reader went away should end quietly,
        // as other Unix tools do (exit 141). The supervisor keeps ignoring
        // it: its clients and proxied connections may close at any time.
        // SAFETY: sets a signal disposition; no handler code runs.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    let colour = cli.global.colour();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            let prefix = if colour {
                "\x1b[31merror:\x1b[0m"
            } else {
                "error:"
            };
            eprintln!("{prefix} {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// message before it already includes (library errors often embed their
/// source's message).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Config(args) => config_cmd::run(&cli.global, args),
        Command::Up(args) => watch_cmd::up(&cli.global, args),
        Command::Watch(args) => watch_cmd::watch(&cli.global, args),
        Command::Down(args) => project_cmd::down(&cli.global, args),
        Command::Ps(args) => project_cmd::ps(&cli.global, args),
        Command::Inspect(args) => project_cmd::inspect(&cli.global, args),
        Command::Logs(args) => project_cmd::logs(&cli.global, args),
        Command::Attach(args) => attach_cmd::attach(&cli.global, args),
        Command::Exec(args) => exec_cmd::exec(&cli.global, args),
        Command::Run(args) => run_cmd::run(&cli.global, args),
        Command::Cp(args) => cp_cmd::cp(&cli.global, args),
        Command::Stop(args) => lifecycle_cmd::stop(&cli.global, args),
        Command::Start(args) => lifecycle_cmd::start(&cli.global, args),
        Command::Restart(args) => lifecycle_cmd::restart(&cli.global, args),
        Command::Kill(args) => lifecycle_cmd::kill(&cli.global, args),
        Command::Pause(args) => lifecycle_cmd::pause(&cli.global, args, true),
        Command::Unpause(args) => lifecycle_cmd::pause(&cli.global, args, false),
        Command::Rm(args) => lifecycle_cmd::rm(&cli.global, args),
        Command::Wait(args) => lifecycle_cmd::wait(&cli.global, args),
        Command::Port(args) => lifecycle_cmd::port(&cli.global, args),
        Command::Top(args) => lifecycle_cmd::top(&cli.global, args),
        Command::Events(args) => lifecycle_cmd::events(&cli.global, args),
        Command::Ls(args) => lifecycle_cmd::ls(&cli.global, args),
        #[cfg(feature = "runtime")]
        Command::Supervise { project } => {
            berth_engine_embedded::supervisor::supervise(&project)?;
            Ok(ExitCode::SUCCESS)
        }
        #[cfg(not(feature = "runtime"))]
        Command::Supervise { project } => {
            anyhow::bail!("{project}: this berth was built without the embedded engine's runtime")
        }
        Command::DockerPorts { project } => {
            berth_engine_docker::keep_ports(&project)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SwarmProxy { routes } => {
            let routes = routes
                .iter()
                .map(|r| r.parse().map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()?;
            berth_engine_swarm::proxy::run(routes)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(args) => build_cmd::build(&cli.global, args),
        Command::Pull(args) => build_cmd::pull(&cli.global, args),
        Command::Push(args) => build_cmd::push(&cli.global, args),
        Command::Builder(cmd) => build_cmd::builder(cmd),
        Command::Images(args) => image_cmd::images(args),
        Command::Rmi(args) => image_cmd::rmi(args),
        Command::Image(cmd) => image_cmd::image(cmd),
        Command::Save(args) => image_cmd::save(args),
        Command::Load(args) => image_cmd::load(args),
        Command::Audit(args) => runtime_cmd::audit(&cli.global, args),
        Command::Upgrade(args) => runtime_cmd::upgrade(&cli.global, args),
        Command::Runtime(cmd) => runtime_cmd::runtime(&cli.global, cmd),
        Command::Version(args) => {
            let version = env!("CARGO_PKG_VERSION");
            if args.short {
                println!("{version}");
            } else if args.format == Format::Json {
                println!("{}", serde_json::json!({ "version": version }));
            } else {
                println!("berth version {version}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "berth", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}
