//! A TCP proxy that delays every byte by a fixed time in each direction: a network with a known
//! round-trip time (2 × `one_way`) on a kernel without netem. The fault suite puts it between a
//! standby and its upstream; the SSH suite and `bench switchover --ssh` between pgtopo and the
//! nodes.
//!
//! Each connection accepted on `listen` is forwarded to `target`. What is read in one direction
//! is queued with the moment it may leave (read time + `one_way`) and written in order at that
//! moment, so bandwidth is not limited, only latency added. An end of stream is forwarded after
//! the same delay. The proxy runs on a thread of its own (its own runtime), so sync tests and
//! async callers use it alike; dropping it stops accepting and ends every connection.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// A running proxy; stopped on drop.
pub struct DelayProxy {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DelayProxy {
    /// Listen on `listen` (port 0: any free port) and forward to `target`, `one_way` late.
    pub fn start(
        listen: SocketAddr,
        target: SocketAddr,
        one_way: Duration,
    ) -> std::io::Result<Self> {
        let std_listener = std::net::TcpListener::bind(listen)?;
        std_listener.set_nonblocking(true)?;
        let addr = std_listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(format!("delay-proxy-{addr}"))
            .spawn(move || {
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(std_listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = accept_loop(listener, target, one_way) => {}
                        _ = stopped => {}
                    }
                });
                // Dropping the runtime here ends every connection task.
            })?;
        Ok(Self {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, one_way: Duration) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pipe(cr, sw, one_way), pipe(sr, cw, one_way));
        });
    }
}

/// Copy `from` to `to`, each chunk `delay` after it was read; an end of stream (or an error)
/// is passed on as a shutdown of the writing side, after the same delay.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = from.read(&mut buf).await.unwrap_or(0);
            if tx
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
                || n == 0
            {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if bytes.is_empty() || to.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// An echo server behind the proxy: a round trip takes at least 2 × one_way, bytes intact.
    #[test]
    fn a_round_trip_through_the_proxy_takes_twice_the_delay_and_keeps_the_bytes() {
        let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = echo.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = echo.accept().unwrap();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).unwrap();
            }
        });
        let one_way = Duration::from_millis(40);
        let p = DelayProxy::start("127.0.0.1:0".parse().unwrap(), target, one_way).unwrap();
        let mut c = std::net::TcpStream::connect(p.addr()).unwrap();
        let payload: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let t0 = std::time::Instant::now();
        c.write_all(&payload).unwrap();
        let mut got = vec![0u8; payload.len()];
        c.read_exact(&mut got).unwrap();
        let rtt = t0.elapsed();
        assert_eq!(got, payload);
        assert!(rtt >= 2 * one_way, "{rtt:?}");
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        server.join().unwrap();
        drop(p);
    }
}
