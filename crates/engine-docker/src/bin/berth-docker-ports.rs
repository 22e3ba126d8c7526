//! The port keeper as a program of its own: `berth-docker-ports PROJECT`
//! holds the project's published ports until `down` stops it. berth itself
//! runs the keeper as `berth __docker-ports PROJECT`; this binary is the
//! same thing for tests and for a berth built without that subcommand.

fn main() -> std::process::ExitCode {
    let Some(project) = std::env::args().nth(1) else {
        eprintln!("usage: berth-docker-ports PROJECT");
        return std::process::ExitCode::from(2);
    };
    match berth_engine_docker::keep_ports(&project) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-docker-ports: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
