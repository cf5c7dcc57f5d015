//! `pgtopo validate` and `pgtopo schema` through the real binary: exit codes, what goes to
//! stdout and stderr, and that an inline password never reaches either.

use std::process::{Command, Output};

fn pgtopo(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgtopo"));
    cmd.args(args)
        .env_remove("PGTOPO_FILE")
        .env("NO_COLOR", "1")
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pgtopo")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_valid_file_exits_0_with_a_short_confirmation() {
    let out = pgtopo(
        &["validate", "-f", "tests/fixtures/valid/spec_example.yaml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "tests/fixtures/valid/spec_example.yaml: valid: cluster shop, primary n1, 2 standbys, 1 \
         retired\n"
    );
}

#[test]
fn the_file_can_come_from_pgtopo_file() {
    let out = pgtopo(
        &["validate"],
        &[("PGTOPO_FILE", "tests/fixtures/valid/spec_example.yaml")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn an_invalid_file_exits_1_prints_nothing_on_stdout_and_every_error_on_stderr() {
    let out = pgtopo(
        &["validate", "-f", "tests/fixtures/invalid/many_errors.yaml"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    for expected in [
        "is not a valid topology",
        "many_errors.yaml:10:5",
        "unknown key `colour`",
        "`n9`",
        "help:",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in\n{err}");
    }
}

#[test]
fn a_missing_file_gives_a_clear_message() {
    let out = pgtopo(&["validate", "-f", "does/not/exist.yaml"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot read the topology file does/not/exist.yaml: it does not exist"),
        "{err}"
    );
    assert!(err.contains("-f/--file"), "{err}");
}

#[test]
fn an_inline_password_never_appears_in_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "cluster: c\nconnect: { password: hunter2 }\nnodes:\n  n1: { host: h, data_dir: /d, role: primary }\n",
        "cluster: c\nreplication:\n  password: \"hunter2\"\nnodes:\n  n1: { host: h, data_dir: /d, role: primary }\n",
        // Malformed YAML: the password must be masked in the snippet too.
        "cluster: c\nconnect:\n  password: hunter2\n  user: [\nnodes: {}\n",
        // A password where a reference is expected, one level down.
        "cluster: c\nconnect:\n  password: { env: hunter2x, value: hunter2 }\nnodes:\n  n1: { host: h, data_dir: /d, role: primary }\n",
    ];
    for (i, case) in cases.iter().enumerate() {
        let path = dir.path().join(format!("t{i}.yaml"));
        std::fs::write(&path, case).unwrap();
        for extra in [&[][..], &["-vv"][..]] {
            let mut args = vec!["validate", "-f", path.to_str().unwrap()];
            args.extend_from_slice(extra);
            let out = pgtopo(&args, &[]);
            assert_eq!(out.status.code(), Some(1), "case {i}");
            let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
            let shown = all.replace("hunter2x", "");
            assert!(!shown.contains("hunter2"), "case {i} leaked:\n{all}");
        }
    }
}

#[test]
fn schema_prints_the_committed_schemas() {
    for (kind, file) in [
        (None, "topology"),
        (Some("topology"), "topology"),
        (Some("plan"), "plan"),
        (Some("observed"), "observed"),
    ] {
        let mut args = vec!["schema"];
        args.extend(kind);
        let out = pgtopo(&args, &[]);
        assert_eq!(out.status.code(), Some(0));
        let committed = std::fs::read_to_string(format!(
            "{}/schemas/{file}.schema.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        assert_eq!(text(&out.stdout), committed, "pgtopo schema {kind:?}");
    }
}
