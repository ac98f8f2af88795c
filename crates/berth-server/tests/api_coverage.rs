//! docs/api-coverage.md is generated from the botocore model and the
//! server's routing table; this test fails when it is out of date.
//! Refresh it with `BERTH_BLESS=1 cargo test -p berth-server --test api_coverage`.

use xtask::{MODEL_GZ, codegen, coverage_path};

#[test]
fn coverage_table_is_current() {
    let model = codegen::Model::load(MODEL_GZ).expect("model loads");
    assert_eq!(
        model.operations.len(),
        88,
        "the ECS model has 88 operations"
    );
    let expected = codegen::generate_coverage(&model, &berth_server::api::is_implemented);
    let path = coverage_path();
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&path, &expected).expect("write coverage table");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date; run `BERTH_BLESS=1 cargo test -p berth-server --test api_coverage`",
        path.display()
    );
}

#[test]
fn generated_types_are_current() {
    let model = codegen::Model::load(MODEL_GZ).expect("model loads");
    let expected = codegen::generate_types(&model).expect("types generate");
    let actual = std::fs::read_to_string(xtask::types_path()).unwrap_or_default();
    assert!(
        actual == expected,
        "crates/berth-types/src/generated.rs is out of date; run `cargo run -p xtask -- codegen`"
    );
}
