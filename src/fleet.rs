//! Many clusters at once (SPEC §9): which topology files a `-f` names, reading every cluster
//! concurrently with one cluster's failure kept under its name, and what each cluster's reading
//! amounts to (clean, drifted, changes, could not be read). The reading of one cluster is the
//! command's own function, the same one the single-file form runs; rendering is `render::fleet`
//! and `render::metrics`; the exit code is `cli`'s.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;

use crate::config::Desired;
use crate::diff::drift::DriftReport;
use crate::observe::ObservedCluster;
use crate::plan::Plan;

/// What `-f` names: one topology file (the single-cluster form, its output as it always was),
/// or several clusters (given as several files or as a directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Targets {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

/// One `-f FILE` is the single form; a directory (even one holding a single file, so that a
/// nightly job's report keeps its shape) or several `-f` are the fleet form. A directory
/// contributes its `*.yaml` and `*.yml` files, sorted by name.
pub fn targets(files: &[PathBuf]) -> miette::Result<Targets> {
    if let [one] = files {
        if !one.is_dir() {
            return Ok(Targets::One(one.clone()));
        }
    }
    let mut out = Vec::new();
    for f in files {
        match f.is_dir() {
            true => out.extend(yaml_in(f)?),
            false => out.push(f.clone()),
        }
    }
    Ok(Targets::Many(out))
}

fn yaml_in(dir: &Path) -> miette::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| miette::miette!("cannot read the directory {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    match files.is_empty() {
        true => Err(miette::miette!(
            help = "a cluster directory holds one topology file per cluster",
            "{} holds no *.yaml or *.yml file",
            dir.display()
        )),
        false => Ok(files),
    }
}

/// What one cluster's reading amounts to in the summary and the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Valid, nothing drifted, no change.
    Clean,
    /// `status`: this many nodes do not answer (information; status never fails on it).
    Down(usize),
    /// `drift`: this many findings.
    Findings(usize),
    /// `plan`: this many changes (the "cannot fix" findings counted with them).
    Changes(usize),
}

impl Outcome {
    /// Drifted, or a plan with changes: what makes the fleet exit 2.
    pub fn changed(self) -> bool {
        matches!(self, Outcome::Findings(n) | Outcome::Changes(n) if n > 0)
    }
}

/// A cluster's reading, as the summary sees it.
pub trait Reading {
    /// The cluster's name (from its file).
    fn cluster(&self) -> &str;
    /// Declared nodes.
    fn nodes(&self) -> usize;
    fn outcome(&self) -> Outcome;
}

/// `validate`: the file and what it declares.
#[derive(Debug)]
pub struct Validated {
    pub file: PathBuf,
    pub desired: Desired,
}

/// `status`: what was declared, what was observed and how long observing took.
#[derive(Debug)]
pub struct Observation {
    pub desired: Desired,
    pub observed: ObservedCluster,
    pub took: Duration,
}

/// `drift` (and the metrics): an observation and its drift report.
#[derive(Debug)]
pub struct Drifted {
    pub observation: Observation,
    pub report: DriftReport,
}

/// `plan`: the plan and the number of declared nodes.
#[derive(Debug)]
pub struct Planned {
    pub plan: Plan,
    pub nodes: usize,
}

impl AsRef<Observation> for Observation {
    fn as_ref(&self) -> &Observation {
        self
    }
}

impl AsRef<Observation> for Drifted {
    fn as_ref(&self) -> &Observation {
        &self.observation
    }
}

impl Reading for Validated {
    fn cluster(&self) -> &str {
        &self.desired.cluster
    }
    fn nodes(&self) -> usize {
        self.desired.nodes.len()
    }
    fn outcome(&self) -> Outcome {
        Outcome::Clean
    }
}

impl Reading for Observation {
    fn cluster(&self) -> &str {
        &self.desired.cluster
    }
    fn nodes(&self) -> usize {
        self.desired.nodes.len()
    }
    fn outcome(&self) -> Outcome {
        let down = self
            .desired
            .present()
            .filter(|d| {
                !self
                    .observed
                    .nodes
                    .get(&d.name)
                    .is_some_and(|o| o.reachable)
            })
            .count();
        match down {
            0 => Outcome::Clean,
            n => Outcome::Down(n),
        }
    }
}

impl Reading for Drifted {
    fn cluster(&self) -> &str {
        self.observation.cluster()
    }
    fn nodes(&self) -> usize {
        self.observation.nodes()
    }
    fn outcome(&self) -> Outcome {
        match self.report.items.len() {
            0 => Outcome::Clean,
            n => Outcome::Findings(n),
        }
    }
}

impl Reading for Planned {
    fn cluster(&self) -> &str {
        &self.plan.cluster
    }
    fn nodes(&self) -> usize {
        self.nodes
    }
    fn outcome(&self) -> Outcome {
        match self.plan.changes.len() + self.plan.summary.cannot_fix.len() {
            0 if self.plan.steps.is_empty() => Outcome::Clean,
            0 => Outcome::Changes(self.plan.steps.len()),
            n => Outcome::Changes(n),
        }
    }
}

impl Observation {
    /// At least one declared node answered.
    pub fn answered(&self) -> bool {
        self.desired.present().any(|n| {
            self.observed
                .nodes
                .get(&n.name)
                .is_some_and(|o| o.reachable)
        })
    }
}

/// In the fleet form a cluster none of whose declared nodes answered could not be read: it is
/// reported as an error under its name (exit 1), not as a cluster that drifted.
pub fn require_answer(o: &Observation) -> miette::Result<()> {
    if o.answered() {
        return Ok(());
    }
    let reasons: Vec<String> = o
        .desired
        .present()
        .map(|n| {
            let why = o
                .observed
                .nodes
                .get(&n.name)
                .map_or("not observed", |node| {
                    node.unreachable_reason
                        .as_deref()
                        .unwrap_or("not reachable")
                });
            format!("{}: {why}", n.name)
        })
        .collect();
    Err(miette::miette!(
        "no node of cluster `{}` answered ({})",
        o.desired.cluster,
        reasons.join("; ")
    ))
}

/// One cluster of the fleet: the name it is reported under, its file, and its reading or why
/// it could not be read.
#[derive(Debug)]
pub struct Member<T> {
    pub name: String,
    pub file: PathBuf,
    pub read: Result<T, miette::Report>,
}

impl<T: Reading> Member<T> {
    /// The outcome, None when the cluster could not be read.
    pub fn outcome(&self) -> Option<Outcome> {
        self.read.as_ref().ok().map(Reading::outcome)
    }
}

/// Every cluster's reading, in the order of the files.
#[derive(Debug)]
pub struct Fleet<T> {
    pub members: Vec<Member<T>>,
}

impl<T: Reading> Fleet<T> {
    /// A cluster could not be read (invalid file, no node answered, …).
    pub fn any_error(&self) -> bool {
        self.members.iter().any(|m| m.read.is_err())
    }

    /// A cluster drifted or has changes.
    pub fn any_changed(&self) -> bool {
        self.members
            .iter()
            .any(|m| m.outcome().is_some_and(Outcome::changed))
    }

    /// The single form's one cluster, as a fleet of one (for the metrics, which look the same
    /// for one cluster or many).
    pub fn one(file: PathBuf, reading: T) -> Self {
        Fleet {
            members: vec![Member {
                name: reading.cluster().to_string(),
                file,
                read: Ok(reading),
            }],
        }
    }
}

/// Read every file with `read`, at most `parallelism` at once; a failure stays with its cluster.
/// Members keep the files' order. A cluster is reported under the name its file declares, or
/// the file's stem when the file could not be read; a name already taken is reported under the
/// file's path instead.
pub async fn read_all<T, F, Fut>(files: &[PathBuf], parallelism: usize, read: F) -> Fleet<T>
where
    T: Reading,
    F: Fn(PathBuf) -> Fut,
    Fut: Future<Output = miette::Result<T>>,
{
    let mut done: Vec<(usize, miette::Result<T>)> = futures::stream::iter(files.iter().cloned())
        .enumerate()
        .map(|(i, f)| {
            let fut = read(f);
            async move { (i, fut.await) }
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    done.sort_by_key(|(i, _)| *i);
    let mut members: Vec<Member<T>> = Vec::with_capacity(done.len());
    for (i, read) in done {
        let file = files[i].clone();
        let name = match &read {
            Ok(r) => r.cluster().to_string(),
            Err(_) => file.file_stem().map_or_else(
                || file.display().to_string(),
                |s| s.to_string_lossy().into(),
            ),
        };
        let name = match members.iter().any(|m| m.name == name) {
            true => file.display().to_string(),
            false => name,
        };
        members.push(Member { name, file, read });
    }
    Fleet { members }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_file_is_the_single_form_and_a_directory_is_always_the_fleet_form() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        std::fs::write(&a, "x").unwrap();
        std::fs::write(dir.path().join("c.yml"), "x").unwrap();
        std::fs::write(dir.path().join("b.yaml"), "x").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert_eq!(
            targets(std::slice::from_ref(&a)).unwrap(),
            Targets::One(a.clone())
        );
        let names = |t: Targets| match t {
            Targets::Many(v) => v
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect::<Vec<_>>(),
            Targets::One(_) => panic!("a directory is the fleet form"),
        };
        assert_eq!(
            names(targets(&[dir.path().to_path_buf()]).unwrap()),
            ["a.yaml", "b.yaml", "c.yml"]
        );
        assert_eq!(
            names(targets(&[a.clone(), a]).unwrap()),
            ["a.yaml", "a.yaml"]
        );
        let empty = tempfile::tempdir().unwrap();
        let e = targets(&[empty.path().to_path_buf()]).unwrap_err();
        assert!(e.to_string().contains("holds no *.yaml"), "{e}");
    }
}
