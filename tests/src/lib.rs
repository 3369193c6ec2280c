//! Integration tests live in `integration/`. This library holds what they share with the
//! helper binaries in `src/bin/`, which the fault suite runs as separate processes.

pub mod fault;
