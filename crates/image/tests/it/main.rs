//! berth-image against real peers: the Docker Engine (`docker load`, `docker
//! run`). scripts/test.sh installs and starts dockerd.

mod build;
mod docker_load;
mod full_disk;
mod hostile;
mod run;
mod support;
