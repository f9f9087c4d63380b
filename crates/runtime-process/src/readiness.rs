//! Start-up readiness: an instance is ready once a TCP connection to its port succeeds (the
//! Knative default TCP probe). Polls with a short, growing interval; never a fixed sleep.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::process::RunningProcess;

/// First probe interval; doubled after each refused connection up to [`MAX_INTERVAL`].
const FIRST_INTERVAL: Duration = Duration::from_micros(200);
const MAX_INTERVAL: Duration = Duration::from_millis(10);

/// Why an instance did not become ready.
#[derive(Debug)]
pub(crate) enum NotReady {
    /// The process exited first.
    Exited(ExitStatus),
    /// Nothing listened before the deadline.
    TimedOut,
}

/// Wait until `addr` accepts connections, the process exits, or `timeout` passes.
pub(crate) async fn wait_ready(
    addr: SocketAddr,
    process: &mut RunningProcess,
    timeout: Duration,
) -> Result<(), NotReady> {
    tokio::select! {
        () = listening(addr) => Ok(()),
        status = process.wait() => Err(NotReady::Exited(status)),
        () = tokio::time::sleep(timeout) => Err(NotReady::TimedOut),
    }
}

/// Resolves once a connection to `addr` succeeds.
pub(crate) async fn listening(addr: SocketAddr) {
    let mut interval = FIRST_INTERVAL;
    while !accepts(addr).await {
        tokio::time::sleep(interval).await;
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

/// One probe. A connection from the port to itself (TCP simultaneous open, possible because
/// our ports come from the ephemeral range) proves nothing and does not count.
async fn accepts(addr: SocketAddr) -> bool {
    match TcpStream::connect(addr).await {
        Ok(stream) => stream.local_addr().ok() != Some(addr),
        Err(_) => false,
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
        let waiter = tokio::spawn(listening(addr));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        let _listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
