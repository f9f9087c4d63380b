//! Revision removals in the background. Stopping a revision's instances drains them (up to
//! their grace periods), which must not hold a reconcile worker: a removal runs in its own task
//! and, when every runtime is done, reports the revision back to the manager, whose next
//! reconcile of it drops the Revision's finalizer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nimbus_runtime::{RevisionKey, Runtime};
use tokio::sync::mpsc;

/// Where a revision's removal stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    NotStarted,
    Running,
    /// Every runtime has stopped and forgotten the revision.
    Done,
}

pub(crate) struct Removals {
    state: Arc<Mutex<HashMap<RevisionKey, bool>>>,
    done_tx: mpsc::UnboundedSender<RevisionKey>,
    done_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<RevisionKey>>,
}

impl Default for Removals {
    fn default() -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Self {
            state: Arc::default(),
            done_tx,
            done_rx: tokio::sync::Mutex::new(done_rx),
        }
    }
}

impl Removals {
    pub(crate) fn status(&self, key: &RevisionKey) -> Removal {
        match self.lock().get(key) {
            None => Removal::NotStarted,
            Some(false) => Removal::Running,
            Some(true) => Removal::Done,
        }
    }

    /// Start removing `key` from every runtime, unless a removal of it is already known.
    pub(crate) fn start(&self, key: RevisionKey, runtimes: Vec<Arc<dyn Runtime>>) {
        {
            let mut state = self.lock();
            if state.contains_key(&key) {
                return;
            }
            state.insert(key.clone(), false);
        }
        let (state, done) = (self.state.clone(), self.done_tx.clone());
        tokio::spawn(async move {
            for runtime in runtimes {
                runtime.remove(&key).await;
            }
            state
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), true);
            let _ = done.send(key);
        });
    }

    /// Forget a finished removal (the Revision is gone).
    pub(crate) fn finish(&self, key: &RevisionKey) {
        let mut state = self.lock();
        if state.get(key) == Some(&true) {
            state.remove(key);
        }
    }

    /// The next revision whose removal finished.
    pub(crate) async fn next_done(&self) -> Option<RevisionKey> {
        self.done_rx.lock().await.recv().await
    }

    /// A finished removal's revision, if one is waiting, without waiting.
    pub(crate) fn try_next_done(&self) -> Option<RevisionKey> {
        self.done_rx.try_lock().ok()?.try_recv().ok()
    }

    /// Whether any removal is still running.
    pub(crate) fn any_running(&self) -> bool {
        self.lock().values().any(|done| !done)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RevisionKey, bool>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
