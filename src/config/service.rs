//! How a node's server is started and stopped, as argv: the one function ([`command`]) that both
//! the plan's text (which names the command that stops each node) and the steps that run it
//! read, so what a reviewer approves is what runs (SPEC §1d). Also the judgement of a systemd
//! unit's stop ([`unit_stop`]): a switchover needs a fast shutdown, and a unit decides its own.
//!
//! Pure: no IO. The steps run the argv through the node's transport (as its os_user); reading a
//! unit (`systemctl show`, [`UNIT_PROPERTIES`]) is theirs too.

use std::ffi::OsString;
use std::path::PathBuf;

use super::model::{DesiredNode, Service};

/// A PostgreSQL shutdown mode (`pg_ctl -m`; SIGTERM, SIGINT, SIGQUIT to the postmaster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    Smart,
    Fast,
    Immediate,
}

impl StopMode {
    /// The word `pg_ctl -m` and `pg_ctlcluster -m` take.
    pub fn word(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// A request to the node's service manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Start,
    Stop(StopMode),
}

/// Debian's postgresql-common wrapper.
pub const PG_CTLCLUSTER: &str = "/usr/bin/pg_ctlcluster";

/// The file a `pg_ctl` node's server logs to: beside the data directory, so the server holds no
/// pipe of pgtopo's open.
pub fn log_file(node: &DesiredNode) -> PathBuf {
    let mut p = node.data_dir.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

/// The argv (program first) that starts or stops `node` through its service: `pg_ctl -D
/// data_dir … -W` (returns at once; pgtopo waits itself), with `-o "-c config_file=…"` when
/// the node's configuration is outside its data directory; `pg_ctlcluster MAJOR NAME start|stop
/// -m MODE` (Debian: the server reads its configuration in /etc); `sudo -n systemctl
/// start|stop UNIT` (systemd's view of the server stays right; the unit decides the shutdown
/// mode, judged by [`unit_stop`]).
pub fn command(node: &DesiredNode, what: Control) -> Vec<OsString> {
    let words = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>();
    match (&node.service, what) {
        (Service::PgCtl, Control::Stop(mode)) => {
            let mut argv = vec![node.bin_dir.join("pg_ctl").into_os_string()];
            argv.extend(words(&["stop", "-D"]));
            argv.push(node.data_dir.clone().into_os_string());
            argv.extend(words(&["-m", mode.word(), "-W"]));
            argv
        }
        (Service::PgCtl, Control::Start) => {
            let mut argv = vec![node.bin_dir.join("pg_ctl").into_os_string()];
            argv.extend(words(&["start", "-D"]));
            argv.push(node.data_dir.clone().into_os_string());
            argv.push("-l".into());
            argv.push(log_file(node).into_os_string());
            if let Some(conf) = node.outside_config_file() {
                argv.push("-o".into());
                argv.push(config_file_option(&conf));
            }
            argv.push("-W".into());
            argv
        }
        (Service::PgCtlcluster { major, name }, what) => {
            let mut argv = words(&[PG_CTLCLUSTER, &major.to_string(), name]);
            match what {
                Control::Start => argv.push("start".into()),
                Control::Stop(mode) => argv.extend(words(&["stop", "-m", mode.word()])),
            }
            argv
        }
        (Service::Systemd { unit }, what) => {
            let verb = match what {
                Control::Start => "start",
                Control::Stop(_) => "stop",
            };
            words(&["sudo", "-n", "systemctl", verb, unit])
        }
    }
}

/// Whether the node's service commands run as the transport's own user (root, or the SSH login
/// user) instead of the os_user: `sudo -n systemctl` needs the login user's privilege (SPEC
/// §1d); pg_ctl and pg_ctlcluster run as the os_user, who owns the cluster.
pub fn as_login_user(node: &DesiredNode) -> bool {
    matches!(node.service, Service::Systemd { .. })
}

/// `-c config_file='PATH'` for `pg_ctl -o`, whose value pg_ctl hands to `/bin/sh -c`: the path
/// single-quoted (a `'` in it written `'\''`).
fn config_file_option(conf: &std::path::Path) -> OsString {
    let path = conf.to_string_lossy().replace('\'', r"'\''");
    format!("-c config_file='{path}'").into()
}

/// The argv as one line for a person (the plan's text): words with a space, quote or shell
/// character single-quoted.
pub fn display(argv: &[OsString]) -> String {
    argv.iter()
        .map(|w| {
            let w = w.to_string_lossy();
            let plain = !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
            match plain {
                true => w.into_owned(),
                false => format!("'{}'", w.replace('\'', r"'\''")),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The properties of a unit that say how `systemctl stop` ends its server:
/// `systemctl show UNIT -p KillSignal -p ExecStop -p KillMode`.
pub const UNIT_PROPERTIES: [&str; 3] = ["KillSignal", "ExecStop", "KillMode"];

/// The argv that reads [`UNIT_PROPERTIES`] of `unit` (no privilege needed).
pub fn show_unit(unit: &str) -> Vec<OsString> {
    let mut argv = vec![OsString::from("systemctl"), "show".into(), unit.into()];
    for p in UNIT_PROPERTIES {
        argv.extend(["-p".into(), p.into()]);
    }
    argv
}

/// What a unit's stop does to PostgreSQL, as read from `systemctl show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitStop {
    /// A fast shutdown: the way it is done, for the plan's words.
    Fast(String),
    /// Anything else (smart, immediate, nothing, or not known): why, in words that name it.
    NotFast(String),
}

/// Judge a unit's stop from `systemctl show UNIT -p KillSignal -p ExecStop -p KillMode`'s
/// output. An `ExecStop` runs first and decides: `pg_ctlcluster`/`pg_ctl` with `-m fast` (or
/// `pg_ctl` without `-m`, fast since 9.5) is fast (Debian's `postgresql@.service`); any other
/// mode, or another program, is not. Without one, systemd signals the postmaster with
/// `KillSignal`: SIGINT is a fast shutdown (PGDG's `postgresql-N.service`), SIGTERM a smart one,
/// SIGQUIT an immediate one; `KillMode=none` sends nothing.
pub fn unit_stop(show: &str) -> UnitStop {
    let prop = |k: &str| {
        show.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .map(str::trim)
            .unwrap_or_default()
    };
    let exec_stop: Vec<Vec<&str>> = show
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStop="))
        .flat_map(|v| v.split("argv[]=").skip(1))
        .map(|a| {
            a.split(" ;")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .collect()
        })
        .filter(|a: &Vec<&str>| !a.is_empty())
        .collect();
    if let Some(argv) = exec_stop.first() {
        let line = argv.join(" ");
        let program = argv[0].rsplit('/').next().unwrap_or_default();
        return match (program, stop_mode_arg(argv)) {
            ("pg_ctlcluster" | "pg_ctl", Some("fast" | "f")) | ("pg_ctl", None) => {
                UnitStop::Fast(format!("ExecStop={line}"))
            }
            (_, Some(mode)) => {
                UnitStop::NotFast(format!("its ExecStop `{line}` stops in mode {mode}"))
            }
            (_, None) => UnitStop::NotFast(format!("its ExecStop `{line}` does not say `-m fast`")),
        };
    }
    if prop("KillMode") == "none" {
        return UnitStop::NotFast(
            "it has no ExecStop and KillMode=none: nothing stops the server".into(),
        );
    }
    match prop("KillSignal") {
        "2" | "SIGINT" | "INT" => UnitStop::Fast("KillSignal=SIGINT".into()),
        "15" | "SIGTERM" | "TERM" => UnitStop::NotFast(
            "its stop sends SIGTERM (KillSignal), a smart shutdown that waits for every session to end"
                .into(),
        ),
        "3" | "SIGQUIT" | "QUIT" => UnitStop::NotFast(
            "its stop sends SIGQUIT (KillSignal), an immediate shutdown without a shutdown checkpoint"
                .into(),
        ),
        "" => UnitStop::NotFast("systemctl show told nothing of its KillSignal or ExecStop".into()),
        other => UnitStop::NotFast(format!("its stop sends signal {other} (KillSignal)")),
    }
}

/// The value of `-m`/`--mode` in a pg_ctl or pg_ctlcluster argv (`-m fast`, `-mfast`,
/// `--mode fast`, `--mode=fast`).
fn stop_mode_arg<'a>(argv: &[&'a str]) -> Option<&'a str> {
    argv.iter().enumerate().find_map(|(i, w)| match *w {
        "-m" | "--mode" => argv.get(i + 1).copied(),
        w => w
            .strip_prefix("--mode=")
            .or_else(|| w.strip_prefix("-m").filter(|m| !m.is_empty())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(service: Service, config_dir: Option<&str>) -> DesiredNode {
        let mut n =
            crate::observe::fixtures::node("n1", 0, super::super::model::DesiredRole::Primary);
        n.service = service;
        n.config_dir = config_dir.map(PathBuf::from);
        n
    }

    fn line(n: &DesiredNode, what: Control) -> String {
        display(&command(n, what))
    }

    #[test]
    fn each_service_has_its_own_argv() {
        let fast = Control::Stop(StopMode::Fast);
        let deb = node(
            Service::PgCtlcluster {
                major: 15,
                name: "main".into(),
            },
            None,
        );
        assert_eq!(
            line(&deb, fast),
            "/usr/bin/pg_ctlcluster 15 main stop -m fast"
        );
        assert_eq!(
            line(&deb, Control::Start),
            "/usr/bin/pg_ctlcluster 15 main start"
        );
        let sd = node(
            Service::Systemd {
                unit: "postgresql@15-main".into(),
            },
            None,
        );
        assert_eq!(line(&sd, fast), "sudo -n systemctl stop postgresql@15-main");
        assert_eq!(
            line(&sd, Control::Start),
            "sudo -n systemctl start postgresql@15-main"
        );
    }

    #[test]
    fn pg_ctl_with_an_outside_config_dir_is_given_its_config_file() {
        let plain = node(Service::PgCtl, None);
        let bin = plain.bin_dir.join("pg_ctl");
        let data = plain.data_dir.display().to_string();
        assert_eq!(
            line(&plain, Control::Start),
            format!("{} start -D {data} -l {data}.log -W", bin.display())
        );
        assert_eq!(
            line(&plain, Control::Stop(StopMode::Immediate)),
            format!("{} stop -D {data} -m immediate -W", bin.display())
        );
        let outside = node(Service::PgCtl, Some("/etc/pg conf/n1"));
        let argv = command(&outside, Control::Start);
        let o = argv.iter().position(|w| w == "-o").expect("-o given");
        assert_eq!(
            argv[o + 1],
            "-c config_file='/etc/pg conf/n1/postgresql.conf'"
        );
        assert_eq!(argv.last().unwrap(), "-W");
        // A config_dir that is the data directory changes nothing.
        let same = node(Service::PgCtl, Some(&data));
        assert!(!command(&same, Control::Start).iter().any(|w| w == "-o"));
    }

    #[test]
    fn a_quote_in_the_config_path_is_kept_for_the_shell() {
        let n = node(Service::PgCtl, Some("/etc/it's"));
        let argv = command(&n, Control::Start);
        assert!(argv.contains(&OsString::from(
            r"-c config_file='/etc/it'\''s/postgresql.conf'"
        )));
    }

    #[test]
    fn the_unit_is_read_with_its_stop_properties() {
        assert_eq!(
            display(&show_unit("postgresql-16.service")),
            "systemctl show postgresql-16.service -p KillSignal -p ExecStop -p KillMode"
        );
    }

    #[test]
    fn debian_and_pgdg_units_stop_fast_others_are_named() {
        // Debian's postgresql@.service (postgresql-common), as systemctl show prints it.
        let debian = "KillSignal=15\nExecStop={ path=/usr/bin/pg_ctlcluster ; argv[]=/usr/bin/pg_ctlcluster --skip-systemctl-redirect -m fast 15-main stop ; ignore_errors=yes ; start_time=[n/a] ; stop_time=[n/a] ; pid=0 ; code=(null) ; status=0/0 }\nKillMode=mixed\n";
        assert!(matches!(unit_stop(debian), UnitStop::Fast(w) if w.contains("-m fast")));
        // PGDG's postgresql-16.service: no ExecStop, SIGINT to the postmaster.
        let pgdg = "KillSignal=2\nExecStop=\nKillMode=mixed\n";
        assert_eq!(unit_stop(pgdg), UnitStop::Fast("KillSignal=SIGINT".into()));
        assert!(matches!(
            unit_stop("KillSignal=SIGINT\nKillMode=mixed"),
            UnitStop::Fast(_)
        ));
        // A unit of one's own with systemd's default SIGTERM: a smart shutdown.
        let smart = "KillSignal=15\nExecStop=\nKillMode=control-group\n";
        assert!(
            matches!(unit_stop(smart), UnitStop::NotFast(w) if w.contains("SIGTERM") && w.contains("smart"))
        );
        let quit = "KillSignal=3\nKillMode=mixed\n";
        assert!(matches!(unit_stop(quit), UnitStop::NotFast(w) if w.contains("immediate")));
        let none = "KillSignal=2\nKillMode=none\n";
        assert!(matches!(unit_stop(none), UnitStop::NotFast(w) if w.contains("KillMode=none")));
        // An ExecStop decides over the signal.
        let pg_ctl_smart = "KillSignal=2\nExecStop={ path=/usr/pgsql-16/bin/pg_ctl ; argv[]=/usr/pgsql-16/bin/pg_ctl stop -D /var/lib/pgsql/16/data -m smart ; ignore_errors=no }\n";
        assert!(
            matches!(unit_stop(pg_ctl_smart), UnitStop::NotFast(w) if w.contains("mode smart"))
        );
        let pg_ctl_default = "ExecStop={ path=/usr/bin/pg_ctl ; argv[]=/usr/bin/pg_ctl stop -D /d ; ignore_errors=no }\n";
        assert!(matches!(unit_stop(pg_ctl_default), UnitStop::Fast(_)));
        let mfast = "ExecStop={ path=/usr/bin/pg_ctlcluster ; argv[]=/usr/bin/pg_ctlcluster --mode=fast 15 main stop ; ignore_errors=no }\n";
        assert!(matches!(unit_stop(mfast), UnitStop::Fast(_)));
        let script = "KillSignal=2\nExecStop={ path=/usr/local/bin/stop-pg ; argv[]=/usr/local/bin/stop-pg ; ignore_errors=no }\n";
        assert!(matches!(unit_stop(script), UnitStop::NotFast(w) if w.contains("stop-pg")));
        assert!(matches!(unit_stop(""), UnitStop::NotFast(_)));
    }
}
