//! The one wait helper of pgtopo, in the spirit of Terraform's `StateChangeConf`.
//!
//! A caller describes what it waits for, how long it may take, and gives an async `refresh`
//! closure that looks at the world once and answers [`Poll::Ready`] (done, with a value),
//! [`Poll::Pending`] (not yet, with a one-line description of what it saw) or [`Poll::Failed`]
//! (it will never happen, stop now). [`wait_until`] polls at millisecond resolution: the first
//! retry comes after about 1 ms and the interval grows gently up to a cap (10 ms by default),
//! because the moments pgtopo waits for — a postmaster gone, a WAL location replayed, a promotion
//! done — take tens of milliseconds and every millisecond of polling slack is a millisecond of
//! writes unavailable. On timeout the error reports the last state seen, so a failed apply says
//! *what* it was still looking at ("replay 0/3000060 < 0/3000108"), not just "timed out".
//!
//! Architecture invariant: this is the only place in `apply` and `steps` that sleeps.

use std::future::Future;
use std::time::{Duration, Instant};

/// One look at the world by a refresh closure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    /// The target state holds; the wait is over.
    Ready(T),
    /// Not yet; the string says what was seen (kept for the timeout error).
    Pending(String),
    /// The target can no longer be reached; stop waiting with this reason.
    Failed(String),
}

/// How to wait.
#[derive(Debug, Clone)]
pub struct WaitSpec {
    /// What is awaited, for messages ("n2 replays 0/3000108").
    pub what: String,
    pub timeout: Duration,
    /// First interval between two looks.
    pub first_interval: Duration,
    /// Largest interval between two looks.
    pub max_interval: Duration,
}

impl WaitSpec {
    /// Wait for `what` up to `timeout`, polling from 1 ms up to 10 ms.
    pub fn new(what: impl Into<String>, timeout: Duration) -> Self {
        WaitSpec {
            what: what.into(),
            timeout,
            first_interval: Duration::from_millis(1),
            max_interval: Duration::from_millis(10),
        }
    }

    /// Change the interval cap (e.g. 100 ms for slow conditions such as a base backup).
    pub fn max_interval(mut self, d: Duration) -> Self {
        self.max_interval = d.max(self.first_interval);
        self
    }
}

/// Why a wait ended without reaching its target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    #[error("timed out after {elapsed:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        elapsed: Duration,
        last: String,
    },
    #[error("gave up waiting for {what}: {reason}")]
    Failed { what: String, reason: String },
}

/// Poll `refresh` until it answers `Ready` (→ `Ok`), `Failed` (→ `Err(Failed)`) or the timeout
/// passes (→ `Err(Timeout)` with the last `Pending` description). `refresh` is always called at
/// least once, and once more at the deadline, so a zero timeout still looks once.
pub async fn wait_until<T, F, Fut>(spec: &WaitSpec, mut refresh: F) -> Result<T, WaitError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Poll<T>>,
{
    let start = Instant::now();
    let deadline = start + spec.timeout;
    let mut interval = spec.first_interval;
    loop {
        let last = match refresh().await {
            Poll::Ready(v) => return Ok(v),
            Poll::Failed(reason) => {
                return Err(WaitError::Failed {
                    what: spec.what.clone(),
                    reason,
                })
            }
            Poll::Pending(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(WaitError::Timeout {
                what: spec.what.clone(),
                elapsed: now - start,
                last,
            });
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        // Gentle backoff: +50 % per look, capped.
        interval = (interval + interval / 2).min(spec.max_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn ready_after_a_few_looks_at_millisecond_resolution() {
        let n = AtomicU32::new(0);
        let t0 = Instant::now();
        let v = wait_until(
            &WaitSpec::new("three looks", Duration::from_secs(5)),
            || {
                let k = n.fetch_add(1, Ordering::SeqCst);
                async move {
                    if k >= 3 {
                        Poll::Ready(k)
                    } else {
                        Poll::Pending(format!("look {k}"))
                    }
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(v, 3);
        // 1 + 1.5 + 2.25 ms of intervals (plus timer slack): far below 100 ms.
        assert!(
            t0.elapsed() < Duration::from_millis(100),
            "{:?}",
            t0.elapsed()
        );
    }

    #[tokio::test]
    async fn timeout_reports_the_last_state_seen() {
        let n = AtomicU32::new(0);
        let err = wait_until::<(), _, _>(
            &WaitSpec::new("replay ≥ 0/3000108", Duration::from_millis(30)),
            || {
                let k = n.fetch_add(1, Ordering::SeqCst);
                async move { Poll::Pending(format!("replay at look {k}")) }
            },
        )
        .await
        .unwrap_err();
        let looks = n.load(Ordering::SeqCst);
        match &err {
            WaitError::Timeout { what, last, .. } => {
                assert_eq!(what, "replay ≥ 0/3000108");
                assert_eq!(last, &format!("replay at look {}", looks - 1));
            }
            other => panic!("{other:?}"),
        }
        // Interval capped at 10 ms: 30 ms allows several looks.
        assert!(looks >= 4, "{looks} looks");
        assert!(err.to_string().contains("last seen: replay at look"));
    }

    #[tokio::test]
    async fn failed_stops_at_once() {
        let err = wait_until::<(), _, _>(&WaitSpec::new("x", Duration::from_secs(10)), || async {
            Poll::Failed("postmaster exited".into())
        })
        .await
        .unwrap_err();
        assert_eq!(
            err,
            WaitError::Failed {
                what: "x".into(),
                reason: "postmaster exited".into()
            }
        );
    }

    #[tokio::test]
    async fn zero_timeout_still_looks_once() {
        let v = wait_until(&WaitSpec::new("x", Duration::ZERO), || async {
            Poll::Ready(7)
        })
        .await
        .unwrap();
        assert_eq!(v, 7);
    }
}
