//! Project chores: `cargo run -p xtask -- codegen` regenerates the ECS wire
//! types and the API coverage table from the committed botocore model.

use anyhow::{Context, Result};

use xtask::{MODEL_GZ, codegen, coverage_path, types_path};

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "codegen" => {
            let model = codegen::Model::load(MODEL_GZ)?;
            std::fs::write(types_path(), codegen::generate_types(&model)?)
                .context("writing generated types")?;
            // The coverage table needs the server's list of implemented
            // operations, so the server's test writes it.
            eprintln!(
                "wrote {}; refresh {} with `BERTH_BLESS=1 cargo test -p berth-server --test api_coverage`",
                types_path().display(),
                coverage_path().display()
            );
            Ok(())
        }
        _ => {
            eprintln!("usage: cargo run -p xtask -- codegen");
            std::process::exit(2)
        }
    }
}
