//! The metering loop: read every `sample_every`, flush every `flush_every` (then run the
//! after-flush hook: budgets), flush once more at shutdown. Its clock is the wall time at start
//! plus tokio's elapsed time, so tests can pause time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::{CgroupReading, RevisionReading, Usage};

/// Where readings come from (the binary: the router, the endpoints, the store, the cgroups).
pub trait Readings: Send + Sync + 'static {
    fn revisions(&self) -> Vec<RevisionReading>;
    fn cgroups(&self) -> Vec<CgroupReading>;
}

/// How often the loop reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct SamplerConfig {
    pub sample_every: Duration,
    /// At most this much metering is lost to a crash (`kill -9`).
    pub flush_every: Duration,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            sample_every: Duration::from_secs(1),
            flush_every: Duration::from_secs(10),
        }
    }
}

/// A clock that follows tokio's (pausable) time from the wall time at its start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    wall: DateTime<Utc>,
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            wall: Utc::now(),
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.wall + elapsed
    }
}

/// Run until `shutdown` resolves. `after_flush` runs on the loop after each flush (at `now`).
pub async fn run<F, Fut>(
    usage: Arc<Usage>,
    readings: Arc<dyn Readings>,
    config: SamplerConfig,
    after_flush: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(DateTime<Utc>) -> Fut,
    Fut: Future<Output = ()>,
{
    let clock = Clock::start();
    let mut sample = tokio::time::interval(config.sample_every);
    let mut flush = tokio::time::interval(config.flush_every);
    flush.tick().await;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // A sample due at the same time as a flush goes first, so the flush holds it.
            biased;
            _ = sample.tick() => {
                // Readings touch the store and cgroupfs: off the async threads.
                let readings = readings.clone();
                let read = tokio::task::spawn_blocking(move || (readings.revisions(), readings.cgroups()));
                if let Ok((revisions, cgroups)) = read.await {
                    usage.observe(clock.now(), &revisions, &cgroups);
                }
            }
            _ = flush.tick() => {
                flush_now(&usage).await;
                after_flush(clock.now()).await;
            }
            _ = &mut shutdown => break,
        }
    }
    flush_now(&usage).await;
}

async fn flush_now(usage: &Arc<Usage>) {
    let usage = usage.clone();
    let flushed = tokio::task::spawn_blocking(move || usage.flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::warn!(error = %e, "cannot write usage (kept for the next flush)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Allocation, PriceTable, RevisionId, UsageDb, Window};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};

    struct Fake {
        requests: AtomicU64,
    }

    impl Readings for Fake {
        fn revisions(&self) -> Vec<RevisionReading> {
            vec![RevisionReading {
                id: RevisionId {
                    namespace: "default".into(),
                    service: "hello".into(),
                    revision: "hello-00001".into(),
                },
                requests_total: self.requests.fetch_add(1, Ordering::Relaxed) + 1,
                cold_starts_total: 0,
                ready_instances: 2,
                allocation: Allocation::DEFAULT,
            }]
        }
        fn cgroups(&self) -> Vec<CgroupReading> {
            Vec::new()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn samples_are_integrated_and_flushed_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let usage = Usage::new(
            UsageDb::open(&dir.path().join("u.db")).unwrap(),
            PriceTable::default(),
        );
        let fake = Arc::new(Fake {
            requests: AtomicU64::new(0),
        });
        let flushes = Arc::new(Mutex::new(0));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn({
            let (usage, flushes) = (usage.clone(), flushes.clone());
            async move {
                let counted = move |_now| {
                    let flushes = flushes.clone();
                    async move { *flushes.lock().unwrap() += 1 }
                };
                run(usage, fake, SamplerConfig::default(), counted, async {
                    let _ = stop_rx.await;
                })
                .await
            }
        });
        // Samples at 0, 1, …, 30 s; flushes at 10, 20, 30 s.
        tokio::time::sleep(Duration::from_millis(30_500)).await;
        assert_eq!(*flushes.lock().unwrap(), 3);
        let window = Window::new(
            Utc::now() - chrono::Duration::hours(1),
            Utc::now() + chrono::Duration::hours(1),
        )
        .unwrap();
        let stored = usage.db().query(window, None, None).unwrap();
        assert_eq!(stored[0].figures.requests, 31);
        assert_eq!(
            stored[0].figures.instance_seconds, 60.0,
            "2 instances × 30 s"
        );
        stop_tx.send(()).unwrap();
        task.await.unwrap();
    }
}
