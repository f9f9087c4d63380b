//! Following logs as they grow: a task polls a [`Follower`] and sends new lines on a channel
//! until the receiver is dropped.
//!
//! The directories are asked for again before every poll, so a caller following a service can
//! pick up revisions created meanwhile. Polls run on tokio's blocking pool (they read files).

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use crate::format::LogLine;
use crate::reader::{Follower, keep_tail};

/// How often [`follow`] looks for new lines when the caller has no better figure.
pub const DEFAULT_POLL: Duration = Duration::from_millis(200);

/// Lines sent ahead of a slow receiver before the follower waits for it.
const CHANNEL: usize = 1024;

/// Follow the log directories `dirs()` returns: first the lines already there (from `since`, at
/// most the last `tail`), then new ones as they are written, polling every `every`. Must be
/// called within a tokio runtime. The task ends when the receiver is dropped; read errors are
/// logged through `tracing` (once until a poll succeeds) and polling goes on.
pub fn follow<F>(
    dirs: F,
    since: Option<Timestamp>,
    tail: Option<usize>,
    every: Duration,
) -> mpsc::Receiver<LogLine>
where
    F: FnMut() -> Vec<PathBuf> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL);
    tokio::spawn(run(Follower::new(since), dirs, tail, every, tx));
    rx
}

async fn run<F>(
    mut follower: Follower,
    mut dirs: F,
    mut tail: Option<usize>,
    every: Duration,
    tx: mpsc::Sender<LogLine>,
) where
    F: FnMut() -> Vec<PathBuf> + Send + 'static,
{
    let mut failing = false;
    loop {
        let polled = tokio::task::spawn_blocking(move || {
            let lines = follower.poll(&dirs());
            (follower, dirs, lines)
        })
        .await;
        let Ok((returned, returned_dirs, lines)) = polled else {
            return; // the poll panicked or the runtime is shutting down
        };
        (follower, dirs) = (returned, returned_dirs);
        let lines = match lines {
            Ok(mut lines) => {
                failing = false;
                keep_tail(&mut lines, tail.take());
                lines
            }
            Err(e) => {
                if !std::mem::replace(&mut failing, true) {
                    tracing::warn!("following instance logs: {e}");
                }
                Vec::new()
            }
        };
        for line in lines {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        tokio::select! {
            () = tx.closed() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
