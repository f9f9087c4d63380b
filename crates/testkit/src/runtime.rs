//! Waiting on a [`Runtime`] in tests: event-driven (its change notifications), with a deadline,
//! failing with the last status seen. Shared by every runtime crate's tests.

use std::time::Duration;

use nimbus_runtime::{RevisionKey, RevisionPhase, RevisionRuntimeStatus, Runtime};
use tokio::time::Instant;

/// Wait until the revision's status satisfies `done`; panics with `what` after `patience`.
pub async fn wait_until<R: Runtime + ?Sized>(
    runtime: &R,
    revision: &RevisionKey,
    what: &str,
    patience: Duration,
    done: impl Fn(&RevisionRuntimeStatus) -> bool,
) -> RevisionRuntimeStatus {
    let deadline = Instant::now() + patience;
    let mut events = runtime.subscribe();
    loop {
        let status = runtime.status(revision);
        if let Some(status) = status.as_ref().filter(|s| done(s)) {
            return status.clone();
        }
        let next = tokio::time::timeout_at(deadline, events.recv()).await;
        assert!(
            next.is_ok(),
            "timed out waiting for {what}; last status: {status:?}"
        );
    }
}

/// Wait until exactly `n` instances are ready.
pub async fn wait_ready<R: Runtime + ?Sized>(
    runtime: &R,
    revision: &RevisionKey,
    n: u32,
    patience: Duration,
) -> RevisionRuntimeStatus {
    let what = format!("{n} ready");
    wait_until(runtime, revision, &what, patience, |s| s.ready == n).await
}

/// Wait until the phase is `Failed`; returns `(reason, message)`.
pub async fn wait_failed<R: Runtime + ?Sized>(
    runtime: &R,
    revision: &RevisionKey,
    patience: Duration,
) -> (String, String) {
    let failed = |s: &RevisionRuntimeStatus| matches!(s.phase, RevisionPhase::Failed { .. });
    let status = wait_until(runtime, revision, "failure", patience, failed).await;
    match status.phase {
        RevisionPhase::Failed { reason, message } => (reason, message),
        _ => unreachable!("wait_until returned a status that is not Failed"),
    }
}
