//! Faults injected at a chosen moment of an apply: `pgtopo apply --auto-approve -v` runs with
//! its progress read line by line, and when the step event named by `at` appears the test's
//! closure runs (a cut, a freeze, a killed pooler); its guard lives until the apply has ended.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;

use super::TestCluster;

/// What an apply did.
pub struct Applied {
    pub ok: bool,
    pub text: String,
}

/// Run `pgtopo apply --auto-approve -v`; at the first event of `at` (`|`-separated, see
/// [`event_is`]; `none`: never) call `inject` (its guard lives until the apply has ended and
/// is returned).
pub fn apply_injecting<G>(
    c: &TestCluster,
    at: &str,
    inject: impl FnOnce() -> G,
) -> (Applied, Option<G>) {
    let mut child = c
        .pgtopo_command(&["apply", "--auto-approve", "-v"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgtopo runs");
    let mut stderr = child.stderr.take().expect("piped");
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let mut inject = Some(inject);
    let mut guard = None;
    let mut text = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let Ok(line) = line else { break };
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() > 3 && at.split('|').any(|k| event_is(&w, k)) {
            if let Some(f) = inject.take() {
                guard = Some(f());
            }
        }
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().expect("reaped");
    text.push_str(&err.join().expect("stderr reader"));
    eprintln!("--- apply, fault at {at}:\n{text}");
    (
        Applied {
            ok: status.success(),
            text,
        },
        guard,
    )
}

/// Whether a progress line (split in words: time, id, kind, node, …) is the event `at`: `KIND`
/// when a step of that kind starts, `KIND:done` when it has finished.
fn event_is(w: &[&str], at: &str) -> bool {
    match at.split_once(':') {
        None => w.last() == Some(&"started") && w[2] == at,
        Some((kind, "done")) => w[2] == kind && w.len() > 4 && w[w.len() - 3] == "done",
        Some(_) => panic!("unknown event {at}"),
    }
}
