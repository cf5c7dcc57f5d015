//! This machine's listening TCP sockets, from `/proc/net/tcp` and `/proc/net/tcp6`: the candidate
//! addresses of a standby that connects to its upstream from a loopback address (it runs on the
//! same machine, and pg_stat_replication does not say on which port it listens).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A listening socket: its address (`0.0.0.0` / `::` for any) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listener {
    pub addr: IpAddr,
    pub port: u16,
}

/// The listening sockets of this machine (empty where /proc is not readable).
pub fn listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(parse_proc_net_tcp(&text));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Parse the LISTEN (state `0A`) rows of a `/proc/net/tcp{,6}` table.
pub fn parse_proc_net_tcp(text: &str) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let local = f.nth(1)?;
            let state = f.nth(1)?;
            if state != "0A" {
                return None;
            }
            let (addr, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let addr = match addr.len() {
                8 => IpAddr::V4(Ipv4Addr::from(
                    u32::from_str_radix(addr, 16).ok()?.swap_bytes(),
                )),
                32 => {
                    // Four 32-bit words, each in host (little-endian) order.
                    let mut bytes = [0u8; 16];
                    for w in 0..4 {
                        let word = u32::from_str_radix(&addr[w * 8..w * 8 + 8], 16).ok()?;
                        bytes[w * 4..w * 4 + 4].copy_from_slice(&word.swap_bytes().to_be_bytes());
                    }
                    IpAddr::V6(Ipv6Addr::from(bytes))
                }
                _ => return None,
            };
            Some(Listener { addr, port })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listeners_only() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0200007F:DAC1 00000000:0000 0A 00000000:00000000 00:00000000 00000000   101        0 1 1 0 100 0 0 10 0\n\
   1: 0100007F:DAC1 0100007F:A2B4 01 00000000:00000000 00:00000000 00000000   101        0 1 1 0 100 0 0 10 0\n\
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0\n";
        let l = parse_proc_net_tcp(t);
        assert_eq!(
            l,
            vec![
                Listener {
                    addr: "127.0.0.2".parse().unwrap(),
                    port: 0xDAC1
                },
                Listener {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 22
                }
            ]
        );
        let t6 = "header\n   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 0\n";
        assert_eq!(
            parse_proc_net_tcp(t6),
            vec![Listener {
                addr: "::1".parse().unwrap(),
                port: 5432
            }]
        );
    }
}

/// The server on this machine whose WAL receiver is connected from local TCP port `client_port`
/// to `upstream_port` (pg_stat_replication's `client_port` on the upstream): the socket's inode
/// from `/proc/net/tcp{,6}`, the process holding it (the WAL receiver), its parent (the
/// postmaster), whose working directory is the data directory, and that directory's
/// `postmaster.pid` (port, first listen address). `None` when any of it cannot be read (another
/// machine, not allowed to read other users' /proc entries).
pub fn server_of_local_client(client_port: u16, upstream_port: u16) -> Option<(String, u16)> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        established_inode(&text, client_port, upstream_port)
    })?;
    let target = format!("socket:[{inode}]");
    let pid = std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(e.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()))
            .then_some(pid)
    })?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces; read after the last ')'.
    let ppid: u32 = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    let data_dir = std::fs::read_link(format!("/proc/{ppid}/cwd")).ok()?;
    let pid_file = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    postmaster_address(&pid_file, ppid)
}

/// The inode of the ESTABLISHED (`01`) socket from local port `local` to remote port `remote`.
fn established_inode(text: &str, local: u16, remote: u16) -> Option<u64> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit_once(':')?.1, 16).ok();
        (f.len() > 9 && f[3] == "01" && port(f[1])? == local && port(f[2])? == remote)
            .then(|| f[9].parse().ok())
            .flatten()
    })
}

/// (first listen address, port) from a `postmaster.pid` whose first line is `pid`. A listen
/// address of `*` (or none) reads as `127.0.0.1`.
fn postmaster_address(pid_file: &str, pid: u32) -> Option<(String, u16)> {
    let lines: Vec<&str> = pid_file.lines().collect();
    if lines.first()?.trim().parse::<u32>().ok()? != pid {
        return None;
    }
    let port: u16 = lines.get(3)?.trim().parse().ok()?;
    let listen = lines.get(5).map(|l| l.trim()).unwrap_or("");
    let host = match listen {
        "" | "*" | "0.0.0.0" | "::" => "127.0.0.1".to_string(),
        h => h.to_string(),
    };
    Some((host, port))
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[test]
    fn established_sockets_and_pid_files() {
        let t = "header\n   0: 0100007F:A2B4 0100007F:DAC1 01 00000000:00000000 00:00000000 00000000   101        0 4242 1 0\n\
   1: 0100007F:A2B5 0100007F:DAC1 0A 00000000:00000000 00:00000000 00000000   101        0 4343 1 0\n";
        assert_eq!(established_inode(t, 0xA2B4, 0xDAC1), Some(4242));
        assert_eq!(established_inode(t, 0xA2B5, 0xDAC1), None);
        let pf = "777\n/data/n2\n1700000000\n56002\n/tmp\n127.0.0.2\n  1234   5678\nready\n";
        assert_eq!(
            postmaster_address(pf, 777),
            Some(("127.0.0.2".to_string(), 56002))
        );
        assert_eq!(postmaster_address(pf, 778), None);
        let any = "777\n/data/n2\n1700000000\n5432\n/tmp\n*\n";
        assert_eq!(
            postmaster_address(any, 777),
            Some(("127.0.0.1".to_string(), 5432))
        );
    }
}
