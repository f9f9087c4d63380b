//! Start-up readiness: an instance is ready once a check passes — a TCP connection to its port
//! succeeds (the Knative default TCP probe), or, for a socket-activated instance, the program
//! accepted a connection (see `activation`).
//!
//! Checks run on a blocking thread, because tokio's timer cannot wait less than a millisecond and
//! a program that starts in two milliseconds should not be published at four. When publication
//! waits for the check ([`Pace::Eager`]), the first [`FINE_PHASE`] is checked every
//! [`FINE_INTERVAL`]; after that the interval grows with the time already waited (a tenth of it,
//! at most [`MAX_INTERVAL`]), so a slow start costs few checks and is noticed at most about 10 %
//! late. When the endpoint is already published ([`Pace::Background`]) the check only confirms,
//! and stays at least [`BACKGROUND_INTERVAL`] apart to leave the CPU to the starting program.

use std::net::{SocketAddr, TcpStream};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::process::RunningProcess;

const FINE_INTERVAL: Duration = Duration::from_micros(150);
const FINE_PHASE: Duration = Duration::from_millis(20);
const MAX_INTERVAL: Duration = Duration::from_millis(10);
const BACKGROUND_INTERVAL: Duration = Duration::from_millis(2);

/// How eagerly to check; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Nothing is published until the check passes.
    Eager,
    /// The endpoint is published already; the first check waits one interval too, so requests
    /// that arrive meanwhile are ahead of any probe connection.
    Background,
}

/// Why an instance did not become ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The process exited first.
    Exited(ExitStatus),
    /// The check did not pass before the deadline.
    TimedOut,
    /// The startup probe failed its threshold; the text says how.
    StartupProbe(String),
}

/// Wait until `check` passes, the process exits, or `timeout` passes.
pub(crate) async fn wait_ready(
    check: impl FnMut() -> bool + Send + 'static,
    pace: Pace,
    process: &mut RunningProcess,
    timeout: Duration,
) -> Result<(), NotReady> {
    tokio::select! {
        () = passes(check, pace) => Ok(()),
        status = process.wait() => Err(NotReady::Exited(status)),
        () = tokio::time::sleep(timeout) => Err(NotReady::TimedOut),
    }
}

/// A check that passes once a connection to `addr` succeeds. A connection from the port to
/// itself (TCP simultaneous open, possible because our ports come from the ephemeral range)
/// proves nothing and does not count.
pub(crate) fn connects(addr: SocketAddr) -> impl FnMut() -> bool + Send + 'static {
    move || match TcpStream::connect(addr) {
        Ok(stream) => stream.local_addr().ok() != Some(addr),
        Err(_) => false,
    }
}

/// Resolves once `check` passes; never if it panics. Dropping the future stops the checks.
pub(crate) async fn passes(mut check: impl FnMut() -> bool + Send + 'static, pace: Pace) {
    let cancelled = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let stop = Arc::clone(&cancelled.0);
    let checking = tokio::task::spawn_blocking(move || {
        let began = Instant::now();
        if pace == Pace::Background {
            std::thread::sleep(BACKGROUND_INTERVAL);
        }
        while !stop.load(Ordering::Relaxed) {
            if check() {
                return true;
            }
            std::thread::sleep(interval(pace, began.elapsed()));
        }
        false
    });
    if !matches!(checking.await, Ok(true)) {
        std::future::pending::<()>().await;
    }
}

/// The pause before the next check, `waited` after the wait began.
fn interval(pace: Pace, waited: Duration) -> Duration {
    let grown = (waited / 10).min(MAX_INTERVAL);
    match pace {
        Pace::Eager if waited < FINE_PHASE => FINE_INTERVAL,
        Pace::Eager => grown,
        Pace::Background => grown.max(BACKGROUND_INTERVAL),
    }
}

/// Tells the checking thread to stop when the waiting future is dropped.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detects_a_listener_that_appears_later() {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let waiter = tokio::spawn(passes(connects(addr), Pace::Eager));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[test]
    fn intervals_start_fine_then_grow_to_a_cap() {
        let eager = |ms| interval(Pace::Eager, Duration::from_millis(ms));
        assert_eq!(eager(0), FINE_INTERVAL);
        assert_eq!(eager(50), Duration::from_millis(5));
        assert_eq!(eager(9000), MAX_INTERVAL);
        let background = |ms| interval(Pace::Background, Duration::from_millis(ms));
        assert_eq!(background(0), BACKGROUND_INTERVAL);
        assert_eq!(background(50), Duration::from_millis(5));
        assert_eq!(background(9000), MAX_INTERVAL);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn dropping_the_wait_stops_the_checks() {
        let (tx, rx) = std::sync::mpsc::channel();
        let check = move || tx.send(()).is_err();
        let waiting = tokio::spawn(passes(check, Pace::Eager));
        rx.recv().unwrap();
        waiting.abort();
        let _ = waiting.await;
        // The checking thread ends, dropping the check (and its sender) with it.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(()) => continue,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("still checking"),
            }
        }
    }
}
