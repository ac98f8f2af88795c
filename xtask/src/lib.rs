//! The generators behind `cargo run -p xtask`, as a library so that tests can
//! check the committed outputs are current.

use std::path::PathBuf;

pub mod codegen;

/// The botocore ECS model the wire types are generated from (botocore 1.44.8).
pub const MODEL_GZ: &[u8] = include_bytes!("../../model/ecs-2014-11-13.service-2.json.gz");

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits one level below the repository root")
        .to_path_buf()
}

pub fn types_path() -> PathBuf {
    repo_root().join("crates/berth-types/src/generated.rs")
}

pub fn coverage_path() -> PathBuf {
    repo_root().join("docs/api-coverage.md")
}
