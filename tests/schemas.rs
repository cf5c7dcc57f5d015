//! `schemas/*.schema.json` are generated from the Rust types; this test fails when they are out
//! of date (run with `UPDATE_SCHEMAS=1` to rewrite them). It also checks every
//! `examples/*/topology.yaml` against the topology schema (YAML converted to JSON, checked with
//! the `jsonschema` crate) and with `config::load`.

use std::path::{Path, PathBuf};

use pgtopo::cli::schema::{self, Kind};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schemas_are_up_to_date() {
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let mut stale = Vec::new();
    for kind in Kind::ALL {
        let path = root().join("schemas").join(kind.file_name());
        let want = schema::text(kind);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        if have != want {
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &want).unwrap();
            } else {
                stale.push(path.display().to_string());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "out of date: {stale:?}; run `UPDATE_SCHEMAS=1 cargo test --test schemas` and commit"
    );
}

fn examples() -> Vec<PathBuf> {
    let mut found = Vec::new();
    if let Ok(entries) = std::fs::read_dir(root().join("examples")) {
        for e in entries.flatten() {
            let t = e.path().join("topology.yaml");
            if t.is_file() {
                found.push(t);
            }
        }
    }
    found.sort();
    found
}

fn validator() -> jsonschema::Validator {
    jsonschema::validator_for(&schema::value(Kind::Topology)).expect("the schema compiles")
}

fn schema_errors(validator: &jsonschema::Validator, yaml: &str) -> Vec<String> {
    let json: serde_json::Value = serde_yaml::from_str(yaml).expect("YAML parses");
    validator
        .iter_errors(&json)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect()
}

#[test]
fn every_example_matches_the_schema_and_loads() {
    let validator = validator();
    for path in examples() {
        let text = std::fs::read_to_string(&path).unwrap();
        let errors = schema_errors(&validator, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        if let Err(report) = pgtopo::config::load(&path) {
            panic!("{}: {report:?}", path.display());
        }
    }
}

#[test]
fn the_schema_accepts_the_spec_example_and_refuses_inline_passwords() {
    let validator = validator();
    let spec =
        std::fs::read_to_string(root().join("tests/fixtures/valid/spec_example.yaml")).unwrap();
    assert_eq!(schema_errors(&validator, &spec), Vec::<String>::new());
    let inline =
        std::fs::read_to_string(root().join("tests/fixtures/invalid/inline_password.yaml"))
            .unwrap();
    assert!(!schema_errors(&validator, &inline).is_empty());
    for refused in ["unknown_key", "node_name", "cluster_name", "wrong_type"] {
        let path = root().join(format!("tests/fixtures/invalid/{refused}.yaml"));
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!schema_errors(&validator, &text).is_empty(), "{refused}");
    }
}
