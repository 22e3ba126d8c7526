//! berth's port proxy for a swarm service: `berth-swarm-proxy LISTEN:HOST:PORT…`.

fn main() -> std::process::ExitCode {
    let routes: Result<Vec<berth_engine_swarm::proxy::Route>, String> =
        std::env::args().skip(1).map(|a| a.parse()).collect();
    let result = routes
        .map_err(|e| e.to_string())
        .and_then(|r| berth_engine_swarm::proxy::run(r).map_err(|e| e.to_string()));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-swarm-proxy: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
