//! Long-lived remote sessions: per master connection, a small pool of remote `/bin/sh`
//! processes, each started once through the master and then fed one command after another.
//!
//! Why: sshd starts the login user's shell for every session, and that shell reads its rc files
//! (a `pyenv init` there costs ~0.3 s). A session pays that once; a command over it costs the
//! round trip and the program.
//!
//! Protocol (the script is [`SCRIPT`]; nothing of a command is ever parsed by a shell):
//! - start: `exec /bin/sh -c SCRIPT pgtopo-session TAG OS_USER SCRIPT`. The shell greets with
//!   `PID USER` (a frame, below); when USER is not OS_USER it runs itself again through
//!   `runuser -u OS_USER` (root) or `sudo -n -u OS_USER`, which greets again: the user switch
//!   (and its check) happens once per session, not per command. It then unsets the caller's
//!   libpq and server environment ([`crate::transport::CALLER_ENV_REMOVED`]) once.
//! - request, on the session's stdin: `TAG N LEN\n`, then N words, each `l<word>\n` (a word
//!   without newline) or `b<bytes>\n<word>` (any other), then LEN bytes of stdin (`-`: none,
//!   the program's stdin is /dev/null). The words are the whole argv: `env K=V…` when the
//!   command has an environment, program and arguments. The shell sets them as its positional parameters and runs
//!   `"$@"`; stdin goes through `head -c LEN`, and what the program leaves unread is drained, so
//!   the next request starts where it should.
//! - answer: on stdout `TAG S\n`, the program's stdout, `TAG E STATUS\n`; on stderr `TAG S\n`,
//!   its stderr, `TAG E\n`. TAG is random per command, so no output can end a frame early;
//!   bytes before a `TAG S` (the login shell's rc noise, a stray daemon's) are dropped.
//! - A session that ends before `TAG S` never started the command; one that ends after it may
//!   have run it in part: the command fails with the cause, the session is not reused.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::hash::{BuildHasher, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};

use super::shell_word;

/// Sessions per master: commands beyond this many at once wait for one to be free.
pub(super) const SESSIONS_PER_HOST: usize = 4;

/// How long a new session may take to start (the login shell's rc files run then).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The remote loop, run by `/bin/sh -c SCRIPT pgtopo-session TAG` (see the module comment). Each
/// line is complete by itself: they are joined into one ([`script`]), since some login shells
/// (csh) take no newline inside quotes.
const SCRIPT: &str = r#"
t=$1;
u=$(id -un) || exit 1;
printf '%s S\n%s E\n' "$t" "$t" >&2;
printf '%s S\n%s %s\n%s E 0\n' "$t" "$$" "$u" "$t";
if [ "$u" != "$2" ]; then
  [ -z "$4" ] || exit 1;
  if [ "$(id -u)" = 0 ]; then exec runuser -u "$2" -- /bin/sh -c "$3" pgtopo-session "$t" "$2" "$3" switched; fi;
  exec sudo -n -u "$2" -- /bin/sh -c "$3" pgtopo-session "$t" "$2" "$3" switched;
fi;
unset UNSET;
while IFS=' ' read -r t n len; do
  set --;
  while [ "$n" -gt 0 ]; do
    IFS= read -r w || exit 1;
    case $w in
    l*) w=${w#l} ;;
    *) w=$(head -c "${w#b}"; printf x) || exit 1; w=${w%x} ;;
    esac;
    set -- "$@" "$w";
    n=$((n - 1));
  done;
  printf '%s S\n' "$t" >&2;
  printf '%s S\n' "$t";
  if [ "$len" = - ]; then
    "$@" </dev/null;
  else
    head -c "$len" | { "$@"; r=$?; cat >/dev/null; exit $r; };
  fi;
  r=$?;
  printf '%s E\n' "$t" >&2;
  printf '%s E %s\n' "$t" "$r";
done
"#;

/// [`SCRIPT`] on one line.
fn script() -> String {
    let lines: Vec<&str> = SCRIPT
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .join(" ")
        .replace("UNSET", &crate::transport::CALLER_ENV_REMOVED.join(" "))
}

/// What a command sent over a session came to.
#[derive(Debug)]
pub(super) enum Outcome {
    /// It ran: exit status (128+N after signal N, as the shell says), stdout, stderr.
    Ran {
        code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    /// It never started. `fresh`: on a session started for it (else one that had been idle);
    /// `master_gone`: ssh could not reach the master.
    NotStarted {
        fresh: bool,
        master_gone: bool,
        cause: String,
    },
    /// It never started: the login worked but the switch to the pool's user did not (what
    /// sudo or runuser said, or who the commands would run as).
    Denied(String),
    /// The session ended while it ran.
    Lost(String),
}

/// Why a session did not start.
#[derive(Debug, Clone)]
pub(super) enum StartError {
    /// ssh could not reach the master (it fell back to a connection of its own to `none`).
    MasterGone(String),
    /// The login worked, the switch to the pool's user did not.
    Denied(String),
    Failed(String),
}

impl StartError {
    pub(super) fn said(&self) -> &str {
        match self {
            StartError::MasterGone(s) | StartError::Denied(s) | StartError::Failed(s) => s,
        }
    }
}

/// The sessions of one master connection for one remote user. New sessions start one at a time, in the
/// background: a command that finds none idle takes whichever comes first, one that another
/// command hands back or the new one, so a burst of short commands does not make every session
/// pay the login shell's rc files.
#[derive(Debug)]
pub(super) struct Pool {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ctl: PathBuf,
    /// The user the sessions run as (os_user).
    user: String,
    state: Mutex<State>,
    /// A session went idle, ended, or a start finished.
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<Session>,
    /// Sessions that exist or are starting.
    live: usize,
    starting: bool,
    /// Why the last start failed, for the next command that waits.
    failed: Option<StartError>,
    /// Remote PIDs of the sessions, busy or idle.
    pids: BTreeSet<u32>,
    /// The master is gone: no session is kept.
    closed: bool,
    /// Who the sessions logged in as (their first greeting), once one greeted.
    login: Option<String>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("session pool")
    }
}

impl Pool {
    /// A pool for the master whose control socket is `ctl`, of sessions running as `user`;
    /// sessions start on first use.
    pub(super) fn new(ctl: PathBuf, user: &str) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                ctl,
                user: user.to_string(),
                state: Mutex::default(),
                changed: tokio::sync::Notify::new(),
            }),
        }
    }

    /// Start one session and keep it idle. A denied user switch is kept for the first command
    /// (the login itself works).
    pub(super) async fn start_first(&self) -> Result<(), StartError> {
        self.shared.lock().live += 1;
        match Session::start(&self.shared).await {
            Ok(s) => {
                self.shared.lock().idle.push(s);
                Ok(())
            }
            Err(e) => {
                let mut st = self.shared.lock();
                st.live -= 1;
                match e {
                    StartError::Denied(_) => {
                        st.failed = Some(e);
                        Ok(())
                    }
                    e => Err(e),
                }
            }
        }
    }

    /// Who the sessions log in as, once one greeted.
    pub(super) fn login_user(&self) -> Option<String> {
        self.shared.lock().login.clone()
    }

    /// Whether a session is idle or busy now (its user switch was seen to work).
    pub(super) fn has_session(&self) -> bool {
        !self.shared.lock().pids.is_empty()
    }

    /// Run `words` (a whole argv) with `stdin` on an idle session, or on a new one when none is.
    pub(super) async fn run(&self, words: &[OsString], stdin: Option<&[u8]>) -> Outcome {
        let mut s = match self.checkout().await {
            Ok(s) => s,
            Err(StartError::Denied(cause)) => return Outcome::Denied(cause),
            Err(e) => {
                return Outcome::NotStarted {
                    fresh: true,
                    master_gone: matches!(e, StartError::MasterGone(_)),
                    cause: e.said().to_string(),
                }
            }
        };
        let outcome = s.run(words, stdin).await;
        if matches!(outcome, Outcome::Ran { .. }) {
            s.used = true;
            self.shared.lock().idle.push(s);
            self.shared.changed.notify_one();
        }
        outcome
    }

    /// An idle session, waiting for one (and starting one when fewer than
    /// [`SESSIONS_PER_HOST`] exist and none is starting). Err: why a start failed.
    async fn checkout(&self) -> Result<Session, StartError> {
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let mut dead = Vec::new();
            {
                let mut st = self.shared.lock();
                while let Some(mut s) = st.idle.pop() {
                    match s.child.try_wait() {
                        Ok(None) => return Ok(s),
                        _ => dead.push(s),
                    }
                }
                if let Some(e) = st.failed.take() {
                    return Err(e);
                }
                if !st.starting && st.live < SESSIONS_PER_HOST {
                    st.starting = true;
                    st.live += 1;
                    tokio::spawn(start_in_background(self.shared.clone()));
                }
            }
            // Dropped outside the lock (a session's Drop takes it).
            drop(dead);
            changed.await;
        }
    }

    /// The remote PIDs of the live sessions (for tests).
    pub(super) fn pids(&self) -> Vec<u32> {
        self.shared.lock().pids.iter().copied().collect()
    }

    /// End the idle sessions (their ssh is killed; the remote shell then reads EOF and exits);
    /// none is kept after.
    pub(super) fn close(&self) {
        let idle = {
            let mut st = self.shared.lock();
            st.closed = true;
            std::mem::take(&mut st.idle)
        };
        drop(idle);
    }
}

impl Drop for Pool {
    /// Idle sessions hold the pool's state: they go with it.
    fn drop(&mut self) {
        self.close();
    }
}

/// Start a session for the pool and leave it idle, or leave why it could not start.
async fn start_in_background(shared: Arc<Shared>) {
    let r = Session::start(&shared).await;
    let unwanted = {
        let mut st = shared.lock();
        st.starting = false;
        match r {
            Ok(s) if st.closed => Some(s),
            Ok(s) => {
                st.idle.push(s);
                None
            }
            Err(e) => {
                st.live -= 1;
                st.failed = Some(e);
                None
            }
        }
    };
    drop(unwanted);
    shared.changed.notify_one();
}

/// One remote `/bin/sh` running [`SCRIPT`], through `ssh -S CTL`.
#[derive(Debug)]
struct Session {
    child: Child,
    stdin: ChildStdin,
    out: Stream<ChildStdout>,
    err: Stream<ChildStderr>,
    /// The remote shell's PID.
    pid: u32,
    /// It ran a command already (else it was started for the one it runs).
    used: bool,
    pool: Arc<Shared>,
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut st = self.pool.lock();
        st.pids.remove(&self.pid);
        st.live -= 1;
        drop(st);
        self.pool.changed.notify_one();
    }
}

impl Session {
    async fn start(pool: &Arc<Shared>) -> Result<Session, StartError> {
        let began = std::time::Instant::now();
        let tag = new_tag();
        let script = shell_word(script().as_bytes());
        let mut remote = b"exec /bin/sh -c ".to_vec();
        remote.extend(&script);
        remote.extend(format!(" pgtopo-session {tag} ").as_bytes());
        remote.extend(shell_word(pool.user.as_bytes()));
        remote.push(b' ');
        remote.extend(&script);
        let mut c = tokio::process::Command::new("ssh");
        // ssh would send what the user's `SendEnv` names.
        crate::transport::clean_env(&mut c);
        let mut child = c
            .arg("-S")
            .arg(&pool.ctl)
            .args(["-o", "BatchMode=yes", "-T", "-p", "9", "--", "none"])
            .arg(std::ffi::OsStr::from_bytes(&remote))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| StartError::Failed(format!("cannot run ssh: {e}")))?;
        let mut out = Stream::new(child.stdout.take().expect("piped"));
        let mut err = Stream::new(child.stderr.take().expect("piped"));
        let first = tokio::time::timeout(START_TIMEOUT, greeting(&mut out, &mut err, &tag)).await;
        let (mut pid, login) = match first {
            Ok(Some(g)) => g,
            Ok(None) => {
                let said = ended(&mut child, &mut err).await;
                return Err(match said.contains("Could not resolve hostname none") {
                    true => StartError::MasterGone(said),
                    false => StartError::Failed(said),
                });
            }
            Err(_) => {
                let said = format!("no session within {START_TIMEOUT:?}");
                return Err(StartError::Failed(said));
            }
        };
        pool.lock().login = Some(login.clone());
        if login != pool.user {
            let second = tokio::time::timeout(START_TIMEOUT, greeting(&mut out, &mut err, &tag));
            match second.await {
                Ok(Some((p, u))) if u == pool.user => pid = p,
                Ok(Some((_, u))) => return Err(StartError::Denied(format!("commands run as {u}"))),
                Ok(None) => return Err(StartError::Denied(ended(&mut child, &mut err).await)),
                Err(_) => {
                    let said = format!("no session as {} within {START_TIMEOUT:?}", pool.user);
                    return Err(StartError::Failed(said));
                }
            }
        }
        pool.lock().pids.insert(pid);
        tracing::debug!(pid, took = ?began.elapsed(), "ssh session started");
        Ok(Session {
            stdin: child.stdin.take().expect("piped"),
            child,
            out,
            err,
            pid,
            used: false,
            pool: pool.clone(),
        })
    }

    async fn run(&mut self, words: &[OsString], stdin: Option<&[u8]>) -> Outcome {
        let fresh = !self.used;
        let tag = new_tag();
        let request = request(&tag, words, stdin.map(<[u8]>::len));
        let pipe = &mut self.stdin;
        let send = async move {
            pipe.write_all(&request).await?;
            if let Some(bytes) = stdin {
                pipe.write_all(bytes).await?;
            }
            pipe.flush().await
        };
        // Sent while the answer is read: a program may write before it has read all its stdin.
        let (sent, out, err) = tokio::join!(send, self.out.frame(&tag), self.err.frame(&tag));
        match (out, err) {
            (Ok(Frame::Done { body, trailer }), Ok(Frame::Done { body: e, .. })) => {
                match trailer.trim().parse() {
                    Ok(code) => Outcome::Ran {
                        code,
                        stdout: body,
                        stderr: e,
                    },
                    Err(_) => Outcome::Lost(format!("unexpected status {trailer:?}")),
                }
            }
            (Ok(Frame::NotStarted), _) | (Err(_), _) if !self.started(&tag) => {
                let mut cause = ended(&mut self.child, &mut self.err).await;
                if let Err(e) = sent {
                    cause = format!("{cause} (sending: {e})");
                }
                Outcome::NotStarted {
                    master_gone: cause.contains("Could not resolve hostname none"),
                    fresh,
                    cause,
                }
            }
            _ => Outcome::Lost(ended(&mut self.child, &mut self.err).await),
        }
    }

    /// Whether `tag`'s start line was seen on stdout.
    fn started(&self, tag: &str) -> bool {
        self.out.seen.as_deref() == Some(tag)
    }
}

/// The next greeting of a starting session, `PID USER`; None when the session ended first.
async fn greeting<O, E>(
    out: &mut Stream<O>,
    err: &mut Stream<E>,
    tag: &str,
) -> Option<(u32, String)>
where
    O: AsyncRead + Unpin,
    E: AsyncRead + Unpin,
{
    let (o, e) = tokio::join!(out.frame(tag), err.frame(tag));
    let (Ok(Frame::Done { body, .. }), Ok(Frame::Done { .. })) = (o, e) else {
        return None;
    };
    let hello = String::from_utf8_lossy(&body);
    let (p, u) = hello.trim().split_once(' ')?;
    Some((p.parse().ok()?, u.to_string()))
}

/// What ssh said and how it ended, once its session is over (it is killed when it does not end
/// within a second of its output ending).
async fn ended(child: &mut Child, err: &mut Stream<ChildStderr>) -> String {
    let _ = tokio::time::timeout(Duration::from_secs(1), err.r.read_to_end(&mut err.buf)).await;
    let status = match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(st)) => format!("ssh exited with {st}"),
        _ => {
            let _ = child.start_kill();
            "ssh did not exit".to_string()
        }
    };
    let said = String::from_utf8_lossy(&err.buf);
    let said = said.trim();
    let cause = match said.lines().last() {
        Some(l) if said.contains("Could not resolve hostname none") => format!("{status}: {l}"),
        Some(_) => format!("{status}: {}", tail(said, 400)),
        None => format!("the remote session ended ({status})"),
    };
    cause
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The request for `words` (see the module comment).
fn request(tag: &str, words: &[OsString], stdin: Option<usize>) -> Vec<u8> {
    let len = stdin.map_or("-".to_string(), |n| n.to_string());
    let mut r = format!("{tag} {} {len}\n", words.len()).into_bytes();
    for w in words {
        let w = w.as_bytes();
        if w.contains(&b'\n') {
            r.extend(format!("b{}\n", w.len()).as_bytes());
        } else {
            r.push(b'l');
        }
        r.extend_from_slice(w);
        if !w.contains(&b'\n') {
            r.push(b'\n');
        }
    }
    r
}

/// A tag no output can guess: 128 bits from the process's random hash keys and a counter.
fn new_tag() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let half = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u64(salt);
        h.finish()
    };
    format!("pgtopo-{:016x}{:016x}", half(1), half(2))
}

/// How reading one frame of a stream ended.
#[derive(Debug)]
enum Frame {
    /// The bytes between `TAG S\n` and `TAG E`, and the rest of the end line.
    Done { body: Vec<u8>, trailer: String },
    /// The stream ended before `TAG S`.
    NotStarted,
    /// It ended after `TAG S`, before `TAG E`.
    Lost,
}

/// One output stream of a session and what was read of it ahead.
#[derive(Debug)]
struct Stream<R> {
    r: R,
    buf: Vec<u8>,
    /// The tag whose start line was last seen.
    seen: Option<String>,
}

impl<R: AsyncRead + Unpin> Stream<R> {
    fn new(r: R) -> Self {
        Stream {
            r,
            buf: Vec::new(),
            seen: None,
        }
    }

    /// Read `tag`'s frame: bytes before its start line are dropped.
    async fn frame(&mut self, tag: &str) -> std::io::Result<Frame> {
        let start = format!("{tag} S\n");
        let Some(at) = self.find(start.as_bytes(), 0).await? else {
            return Ok(Frame::NotStarted);
        };
        if at > 0 {
            let stray = String::from_utf8_lossy(&self.buf[..at]);
            tracing::debug!(stray = %tail(&stray, 200), "ssh session: output outside a command dropped");
        }
        self.buf.drain(..at + start.len());
        self.seen = Some(tag.to_string());
        let end = format!("{tag} E");
        let Some(at) = self.find(end.as_bytes(), 0).await? else {
            return Ok(Frame::Lost);
        };
        let Some(nl) = self.find(b"\n", at).await? else {
            return Ok(Frame::Lost);
        };
        let trailer = String::from_utf8_lossy(&self.buf[at + end.len()..nl]).into_owned();
        let mut body: Vec<u8> = self.buf.drain(..=nl).collect();
        body.truncate(at);
        Ok(Frame::Done { body, trailer })
    }

    /// The position of `needle` at or after `from`, reading more until it is there; None at EOF.
    async fn find(&mut self, needle: &[u8], from: usize) -> std::io::Result<Option<usize>> {
        let mut scanned = from;
        loop {
            if let Some(p) = memchr::memmem::find(&self.buf[scanned..], needle) {
                return Ok(Some(scanned + p));
            }
            scanned = self.buf.len().saturating_sub(needle.len() - 1).max(from);
            self.buf.reserve(64 * 1024);
            if self.r.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_is_one_line_sh_accepts() {
        let line = script();
        assert!(!line.contains('\n'));
        let st = std::process::Command::new("/bin/sh")
            .args(["-n", "-c", &line])
            .status()
            .unwrap();
        assert!(st.success(), "{line}");
    }

    #[test]
    fn the_session_unsets_the_libpq_environment_after_the_user_switch() {
        let line = script();
        let (switch, rest) = line.split_once("unset ").unwrap();
        assert!(switch.contains("runuser -u") && switch.contains("sudo -n -u"));
        let unset: Vec<&str> = rest.split(';').next().unwrap().split(' ').collect();
        for k in ["PGHOST", "PGPASSWORD", "PGSSLMODE", "PGDATA", "PGOPTIONS"] {
            assert!(unset.contains(&k), "{k}");
        }
    }

    #[test]
    fn words_with_a_newline_go_by_length() {
        let words: Vec<OsString> = ["env", "a\nb", ""].map(OsString::from).to_vec();
        assert_eq!(
            request("T", &words, Some(3)),
            b"T 3 3\nlenv\nb3\na\nbl\n".to_vec()
        );
        assert_eq!(request("T", &words[..1], None), b"T 1 -\nlenv\n".to_vec());
    }

    #[tokio::test]
    async fn a_frame_drops_what_precedes_it_and_keeps_what_follows() {
        let input: &[u8] = b"rc noise\nT S\nout\0put T-E T E 3\nU S\n";
        let mut s = Stream::new(input);
        match s.frame("T").await.unwrap() {
            Frame::Done { body, trailer } => {
                assert_eq!(body, b"out\0put T-E ");
                assert_eq!(trailer, " 3");
            }
            f => panic!("{f:?}"),
        }
        assert!(matches!(s.frame("U").await.unwrap(), Frame::Lost));
        assert!(matches!(s.frame("V").await.unwrap(), Frame::NotStarted));
    }
}
