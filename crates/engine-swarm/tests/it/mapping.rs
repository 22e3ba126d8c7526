//! Compose keys on swarm: secrets and configs, named volumes, x-runtime.
