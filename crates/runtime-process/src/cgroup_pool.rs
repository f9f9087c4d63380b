//! Instance cgroups made ahead of time. Creating a cgroup (a directory per hierarchy, then the
//! limit files) takes milliseconds on cgroup v1 — more than a whole process start — so each
//! revision keeps one spare cgroup with its limits, made in the background when the revision is
//! first seen and again each time one is taken. A cold start takes the spare; only a start that
//! finds none (the first ones of a burst) waits for a new cgroup, on a blocking thread.
//!
//! A cgroup is never reused for a second instance: its OOM counter would speak of the last
//! one, and runc removes a container's cgroup on delete anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use nimbus_cgroup::{Cgroup, CgroupError, Cgroups, Limits};
use nimbus_runtime::{InstanceSpec, RevisionKey};

/// How long after a spare is taken the next one is made.
const REFILL_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Spare cgroups for the revisions of one runtime.
pub(crate) struct CgroupPool {
    cgroups: Cgroups,
    /// Distinguishes this runtime's cgroups from other runtimes' under the same parent.
    tag: String,
    default_pids_limit: u64,
    /// Names are `<tag>/<namespace>/<revision>-<n>`, unique for the runtime's life.
    seq: AtomicU64,
    revisions: Mutex<HashMap<RevisionKey, Spares>>,
}

/// One revision's spare, and whether one is being made.
#[derive(Default)]
struct Spares {
    spare: Option<Cgroup>,
    making: bool,
}

impl CgroupPool {
    pub fn new(cgroups: Cgroups, tag: String, default_pids_limit: u64) -> Arc<Self> {
        Arc::new(Self {
            cgroups,
            tag,
            default_pids_limit,
            seq: AtomicU64::new(1),
            revisions: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<RevisionKey, Spares>> {
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start making a spare for `spec`'s revision unless it has one (or one is being made).
    pub fn prewarm(self: &Arc<Self>, spec: &Arc<InstanceSpec>) {
        {
            let mut revisions = self.lock();
            let spares = revisions.entry(spec.revision.clone()).or_default();
            if spares.spare.is_some() || spares.making {
                return;
            }
            spares.making = true;
        }
        let (pool, spec) = (Arc::clone(self), Arc::clone(spec));
        tokio::task::spawn_blocking(move || {
            let made = pool.create(&spec);
            let mut revisions = pool.lock();
            // Forgotten meanwhile: the revision is gone; the cgroup goes too (dropped below).
            let Some(spares) = revisions.get_mut(&spec.revision) else {
                return;
            };
            spares.making = false;
            match made {
                Ok(cgroup) => spares.spare = Some(cgroup),
                Err(e) => {
                    tracing::warn!(revision = %spec.revision, "cannot make a spare cgroup: {e}")
                }
            }
        });
    }

    /// A fresh cgroup with the revision's limits: the spare if there is one (then another is
    /// started), else a new one made now.
    pub async fn take(self: &Arc<Self>, spec: &Arc<InstanceSpec>) -> Result<Cgroup, CgroupError> {
        let spare = self
            .lock()
            .get_mut(&spec.revision)
            .and_then(|s| s.spare.take());
        let cgroup = match spare {
            Some(cgroup) => cgroup,
            None => {
                let (pool, spec) = (Arc::clone(self), Arc::clone(spec));
                tokio::task::spawn_blocking(move || pool.create(&spec))
                    .await
                    .map_err(|e| CgroupError::Unavailable {
                        why: format!("the cgroup task failed: {e}"),
                    })??
            }
        };
        // Not now: making a cgroup holds the kernel's cgroup lock, which the instance starting
        // right now needs to join its own.
        let (pool, spec) = (Arc::clone(self), Arc::clone(spec));
        tokio::spawn(async move {
            tokio::time::sleep(REFILL_DELAY).await;
            pool.prewarm(&spec);
        });
        Ok(cgroup)
    }

    /// The revision is gone: remove its spare (in the background) and make no more.
    pub fn forget(&self, revision: &RevisionKey) {
        let spare = self.lock().remove(revision).and_then(|s| s.spare);
        if let Some(cgroup) = spare {
            tokio::task::spawn_blocking(move || drop(cgroup.remove()));
        }
    }

    /// Every revision is gone (shutdown): remove all spares now.
    pub fn forget_all(&self) {
        let all: Vec<Spares> = self.lock().drain().map(|(_, s)| s).collect();
        for cgroup in all.into_iter().filter_map(|s| s.spare) {
            if let Err(e) = cgroup.remove() {
                tracing::warn!("cannot remove a spare cgroup: {e}");
            }
        }
    }

    fn create(&self, spec: &InstanceSpec) -> Result<Cgroup, CgroupError> {
        let r = &spec.resources;
        let limits = Limits::from_kubernetes(
            r.memory_limit,
            r.cpu_limit_millis,
            r.cpu_request_millis,
            Some(r.pids_limit.unwrap_or(self.default_pids_limit)),
        );
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{}/{}/{}-{n}",
            self.tag, spec.revision.namespace, spec.revision.name
        );
        self.cgroups.create(&name, &limits)
    }
}
