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
