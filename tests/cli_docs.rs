//! `pgtopo completions SHELL` and `pgtopo man [COMMAND]`, run through the binary: every shell's
//! script names the subcommands and their flags, and the man pages are roff with a title.

use std::process::Command;

fn pgtopo(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pgtopo"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("pgtopo runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_shell_completes_the_subcommands_and_their_flags() {
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let (code, out, err) = pgtopo(&["completions", shell]);
        assert_eq!(code, 0, "{shell}: {err}");
        for word in [
            "plan",
            "apply",
            "drift",
            "graph",
            "completions",
            "detailed-exitcode",
            "auto-approve",
        ] {
            assert!(out.contains(word), "{shell} completion lacks {word}");
        }
    }
    let (code, _, err) = pgtopo(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {err}");
}

#[test]
fn the_man_pages_render() {
    let (code, page, err) = pgtopo(&["man"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH pgtopo 1"), "{page}");
    for sub in ["plan", "apply", "drift", "completions"] {
        assert!(page.contains(sub), "pgtopo(1) lacks {sub}");
    }
    let (code, page, err) = pgtopo(&["man", "apply"]);
    assert_eq!(code, 0, "{err}");
    assert!(page.contains(".TH pgtopo-apply 1"), "{page}");
    assert!(page.contains("auto\\-approve"), "{page}");
    let (code, _, err) = pgtopo(&["man", "nonesuch"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no command `nonesuch`"), "{err}");
}
