//! A fake transport for unit tests: it records every command, answers with scripted outputs and
//! keeps files and directories in memory. Clones share one state, so a test keeps a handle while
//! the code under test holds another (as a [`super::DynTransport`]).
//!
//! ```
//! use pgtopo::transport::{CommandOutput, CommandSpec, FakeTransport, Transport};
//! # tokio_test_block(async {
//! let fake = FakeTransport::new()
//!     .with_file("/data/PG_VERSION", "15\n")
//!     .with_output("pg_controldata", CommandOutput::ok("Database cluster state: shut down\n"));
//! let out = fake.run(&CommandSpec::new("/usr/lib/postgresql/15/bin/pg_controldata")).await.unwrap();
//! assert!(out.stdout_text().contains("shut down"));
//! assert_eq!(fake.command_lines(), ["/usr/lib/postgresql/15/bin/pg_controldata"]);
//! # });
//! # fn tokio_test_block(f: impl std::future::Future<Output = ()>) {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
//!
//! Scripted outputs match on the program's file name (`pg_ctl` matches
//! `/usr/lib/postgresql/15/bin/pg_ctl`) and, optionally, on an argument the command must contain.
//! Each scripted output is used once, in the order given; when none matches, the command succeeds
//! with empty output (or fails, after [`FakeTransport::fail_unscripted`]) — except `stat -c '%a
//! %F' -- PATHS` and `chmod MODE -- PATHS`, which act on the in-memory files and directories.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{CommandOutput, CommandSpec, Transport, TransportError};

impl CommandOutput {
    /// Exit 0 with this stdout.
    pub fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        CommandOutput {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// Exit `code` with this stderr.
    pub fn failed(code: i32, stderr: impl Into<String>) -> Self {
        CommandOutput {
            code: Some(code),
            stdout: Vec::new(),
            stderr: stderr.into(),
        }
    }
}

#[derive(Debug)]
struct Scripted {
    program: String,
    arg: Option<String>,
    output: CommandOutput,
}

#[derive(Debug, Default)]
struct State {
    commands: Vec<CommandSpec>,
    scripts: VecDeque<Scripted>,
    files: BTreeMap<PathBuf, (Vec<u8>, u32)>,
    dirs: BTreeSet<PathBuf>,
    unreachable: bool,
    fail_unscripted: bool,
}

/// An in-memory transport that records what it is asked to do.
#[derive(Debug, Clone, Default)]
pub struct FakeTransport {
    state: Arc<Mutex<State>>,
}

impl FakeTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn st(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add a file (its parent directories exist from then on) with mode 0600.
    pub fn with_file(self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        self.set_file(path, contents);
        self
    }

    /// Add an (empty) directory and its parents.
    pub fn with_dir(self, path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        let mut st = self.st();
        add_dirs(&mut st.dirs, &path);
        drop(st);
        self
    }

    /// Script the output of the next command whose program's file name is `program`.
    pub fn with_output(self, program: &str, output: CommandOutput) -> Self {
        self.script(program, None, output);
        self
    }

    /// Script the output of the next command named `program` whose arguments include `arg`.
    pub fn with_output_for_arg(self, program: &str, arg: &str, output: CommandOutput) -> Self {
        self.script(program, Some(arg), output);
        self
    }

    /// Every operation fails with [`TransportError::Unreachable`] (a host that is down).
    pub fn unreachable(self) -> Self {
        self.st().unreachable = true;
        self
    }

    /// Commands without a scripted output fail (exit 1) instead of succeeding.
    pub fn fail_unscripted(self) -> Self {
        self.st().fail_unscripted = true;
        self
    }

    /// Queue a scripted output (see the module docs for matching).
    pub fn script(&self, program: &str, arg: Option<&str>, output: CommandOutput) {
        self.st().scripts.push_back(Scripted {
            program: program.to_string(),
            arg: arg.map(str::to_string),
            output,
        });
    }

    /// Set a file's contents (mode 0600).
    pub fn set_file(&self, path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) {
        let path = path.into();
        let mut st = self.st();
        if let Some(parent) = path.parent() {
            add_dirs(&mut st.dirs, parent);
        }
        st.files.insert(path, (contents.into(), 0o600));
    }

    /// A file's contents.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        self.st().files.get(path.as_ref()).map(|(c, _)| c.clone())
    }

    /// A file's contents as text.
    pub fn file_text(&self, path: impl AsRef<Path>) -> Option<String> {
        self.file(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// A file's mode.
    pub fn file_mode(&self, path: impl AsRef<Path>) -> Option<u32> {
        self.st().files.get(path.as_ref()).map(|(_, m)| *m)
    }

    /// Whether a directory exists.
    pub fn has_dir(&self, path: impl AsRef<Path>) -> bool {
        self.st().dirs.contains(path.as_ref())
    }

    /// Every command run so far, in order.
    pub fn commands(&self) -> Vec<CommandSpec> {
        self.st().commands.clone()
    }

    /// Every command run so far as one line each (program and arguments).
    pub fn command_lines(&self) -> Vec<String> {
        self.st().commands.iter().map(|c| c.display()).collect()
    }

    /// Scripted outputs not used yet.
    pub fn unused_scripts(&self) -> usize {
        self.st().scripts.len()
    }

    fn check_reachable(&self) -> Result<(), TransportError> {
        if self.st().unreachable {
            Err(TransportError::Unreachable {
                host: "fake".into(),
                message: "no route to host".into(),
            })
        } else {
            Ok(())
        }
    }
}

fn add_dirs(dirs: &mut BTreeSet<PathBuf>, path: &Path) {
    for a in path.ancestors() {
        if a.as_os_str().is_empty() {
            break;
        }
        dirs.insert(a.to_path_buf());
    }
}

/// The paths after `--` of a command.
fn operands(cmd: &CommandSpec) -> impl Iterator<Item = PathBuf> + '_ {
    cmd.args
        .iter()
        .skip_while(|a| a.as_os_str() != "--")
        .skip(1)
        .map(PathBuf::from)
}

/// `stat -c '%a %F' -- PATHS` over the in-memory files (their mode) and directories (0700).
fn stat(st: &State, cmd: &CommandSpec) -> CommandOutput {
    let mut out = String::new();
    for p in operands(cmd) {
        match st.files.get(&p) {
            Some((_, mode)) => out.push_str(&format!("{mode:o} regular file\n")),
            None if st.dirs.contains(&p) => out.push_str("700 directory\n"),
            None => {
                let msg = format!(
                    "stat: cannot statx '{}': No such file or directory",
                    p.display()
                );
                return CommandOutput::failed(1, msg);
            }
        }
    }
    CommandOutput::ok(out)
}

/// `chmod MODE -- PATHS` of in-memory files (directories have no mode here).
fn chmod(st: &mut State, cmd: &CommandSpec) -> CommandOutput {
    let mode = cmd.args.first().map(|a| a.to_string_lossy().into_owned());
    let Some(mode) = mode.and_then(|m| u32::from_str_radix(&m, 8).ok()) else {
        return CommandOutput::failed(1, "chmod: invalid mode");
    };
    for p in operands(cmd) {
        if let Some(f) = st.files.get_mut(&p) {
            f.1 = mode;
        }
    }
    CommandOutput::ok("")
}

fn io(op: &'static str, path: &Path, message: &str) -> TransportError {
    TransportError::Io {
        host: "fake".into(),
        op,
        path: path.display().to_string(),
        message: message.into(),
    }
}

#[async_trait]
impl Transport for FakeTransport {
    fn describe(&self) -> String {
        "fake".into()
    }

    async fn check_access(&self) -> Result<(), TransportError> {
        self.check_reachable()
    }

    async fn run(&self, cmd: &CommandSpec) -> Result<CommandOutput, TransportError> {
        self.check_reachable()?;
        let mut st = self.st();
        st.commands.push(cmd.clone());
        let name = cmd
            .program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pos = st.scripts.iter().position(|s| {
            s.program == name
                && s.arg
                    .as_ref()
                    .map_or(true, |a| cmd.args.iter().any(|x| x.to_string_lossy() == *a))
        });
        match pos.and_then(|i| st.scripts.remove(i)) {
            Some(s) => Ok(s.output),
            None if name == "stat" => Ok(stat(&st, cmd)),
            None if name == "chmod" => Ok(chmod(&mut st, cmd)),
            None if st.fail_unscripted => Ok(CommandOutput::failed(
                1,
                format!("fake: no scripted output for {}", cmd.display()),
            )),
            None => Ok(CommandOutput::ok("")),
        }
    }

    async fn read_file(&self, path: &Path) -> Result<Option<Vec<u8>>, TransportError> {
        self.check_reachable()?;
        Ok(self.file(path))
    }

    async fn write_file_atomic(
        &self,
        path: &Path,
        contents: &[u8],
        mode: u32,
    ) -> Result<(), TransportError> {
        self.check_reachable()?;
        let mut st = self.st();
        match path.parent() {
            Some(p) if !p.as_os_str().is_empty() && !st.dirs.contains(p) => {
                return Err(io("write", path, "No such file or directory"))
            }
            _ => {}
        }
        st.files
            .insert(path.to_path_buf(), (contents.to_vec(), mode));
        Ok(())
    }

    async fn remove_file(&self, path: &Path) -> Result<(), TransportError> {
        self.check_reachable()?;
        self.st().files.remove(path);
        Ok(())
    }

    async fn list_dir(&self, path: &Path) -> Result<Option<Vec<String>>, TransportError> {
        self.check_reachable()?;
        let st = self.st();
        if !st.dirs.contains(path) {
            return Ok(None);
        }
        let children = st
            .files
            .keys()
            .chain(st.dirs.iter())
            .filter(|p| p.parent() == Some(path))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect::<BTreeSet<_>>();
        Ok(Some(children.into_iter().collect()))
    }

    async fn rename(&self, from: &Path, to: &Path) -> Result<(), TransportError> {
        self.check_reachable()?;
        let mut st = self.st();
        if let Some(f) = st.files.remove(from) {
            st.files.insert(to.to_path_buf(), f);
            return Ok(());
        }
        if !st.dirs.contains(from) {
            return Err(io("rename", from, "No such file or directory"));
        }
        let moved_dirs: Vec<PathBuf> = st
            .dirs
            .iter()
            .filter(|d| d.starts_with(from))
            .cloned()
            .collect();
        for d in moved_dirs {
            st.dirs.remove(&d);
            let rel = d.strip_prefix(from).expect("prefix checked");
            st.dirs.insert(to.join(rel));
        }
        let moved_files: Vec<PathBuf> = st
            .files
            .keys()
            .filter(|f| f.starts_with(from))
            .cloned()
            .collect();
        for f in moved_files {
            let v = st.files.remove(&f).expect("listed");
            let rel = f.strip_prefix(from).expect("prefix checked");
            st.files.insert(to.join(rel), v);
        }
        Ok(())
    }

    async fn create_dir(&self, path: &Path, _mode: u32) -> Result<(), TransportError> {
        self.check_reachable()?;
        add_dirs(&mut self.st().dirs, path);
        Ok(())
    }

    async fn move_into(
        &self,
        from: &Path,
        names: &[(String, String)],
        to: &Path,
    ) -> Result<bool, TransportError> {
        self.check_reachable()?;
        let mut st = self.st();
        if !st.dirs.contains(to) {
            return Ok(false);
        }
        for (a, b) in names {
            if st.files.contains_key(&to.join(b)) {
                return Ok(false);
            }
            let Some(f) = st.files.remove(&from.join(a)) else {
                return Ok(false);
            };
            st.files.insert(to.join(b), f);
        }
        Ok(true)
    }

    async fn remove_tree(&self, path: &Path) -> Result<(), TransportError> {
        self.check_reachable()?;
        let mut st = self.st();
        st.files.retain(|f, _| !f.starts_with(path));
        st.dirs.retain(|d| !d.starts_with(path));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scripts_match_program_and_argument_once_each() {
        let f = FakeTransport::new()
            .with_output_for_arg("pg_ctl", "promote", CommandOutput::ok("promoted"))
            .with_output("pg_ctl", CommandOutput::failed(1, "no"));
        let stop = CommandSpec::new("/bin/pg_ctl").args(["-D", "/d", "stop"]);
        let promote = CommandSpec::new("/bin/pg_ctl").args(["-D", "/d", "promote"]);
        assert_eq!(f.run(&promote).await.unwrap().stdout, b"promoted");
        assert_eq!(f.run(&stop).await.unwrap().code, Some(1));
        assert!(f.run(&stop).await.unwrap().success());
        assert_eq!(f.command_lines().len(), 3);
        assert_eq!(f.unused_scripts(), 0);
    }

    #[tokio::test]
    async fn files_and_dirs_live_in_memory() {
        let f = FakeTransport::new().with_file("/d/PG_VERSION", "15\n");
        assert_eq!(
            f.list_dir(Path::new("/d")).await.unwrap().unwrap(),
            ["PG_VERSION"]
        );
        assert!(f
            .write_file_atomic(Path::new("/nope/x"), b"", 0o600)
            .await
            .is_err());
        f.write_file_atomic(Path::new("/d/x"), b"1", 0o640)
            .await
            .unwrap();
        assert_eq!(f.file_mode("/d/x"), Some(0o640));
        f.rename(Path::new("/d"), Path::new("/e")).await.unwrap();
        assert_eq!(f.file_text("/e/x").as_deref(), Some("1"));
        assert!(f.file("/d/x").is_none());
        assert_eq!(f.list_dir(Path::new("/d")).await.unwrap(), None);
        f.create_dir(Path::new("/g/h"), 0o700).await.unwrap();
        assert!(f.has_dir("/g"));
    }

    #[tokio::test]
    async fn unreachable_fails_everything() {
        let f = FakeTransport::new().unreachable();
        assert!(matches!(
            f.read_file(Path::new("/x")).await,
            Err(TransportError::Unreachable { .. })
        ));
        assert!(f.run(&CommandSpec::new("ls")).await.is_err());
    }
}
