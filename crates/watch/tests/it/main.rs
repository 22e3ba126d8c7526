//! berth-watch against real compose files and a real file watcher. One
//! test binary, so the suite links once.

mod rules;
mod watching;
