//! Test-only crate: drives a berth server with the AWS SDK for Rust
//! (`tests/`), so the SDK never enters the server's dependency graph.
