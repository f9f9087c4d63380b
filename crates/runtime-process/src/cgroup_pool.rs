//! Instance cgroups made ahead of time. Creating a cgroup (a directory per hierarchy, then the
//! limit files) takes milliseconds on cgroup v1 — more than a whole process start — so each
//! revision keeps one spare cgroup with its limits, made in the background when the revision is
//! first seen and again each time one is taken. A cold start takes the spare; only a start that
//! finds none (the first ones of a burst) waits for a new cgroup, on a blocking thread.
//!
//! For host processes the spare also holds an instance stub (see [`crate::stub`]): a process
//! already inside the cgroup, waiting to `execve` the instance, so the cgroup attach (which
//! waits for an RCU grace period after an idle spell) is paid here too, in the background. A
//! spare whose stub could not be started is still a spare; its instance joins the cgroup the
//! ordinary way. A spare's stub is killed whenever its cgroup is removed: when the revision is
//! forgotten (removed) or the runtime shuts down or is dropped. Scaling to zero keeps the spare:
//! that is what the next cold start takes.
//!
//! Spares are bounded, since each stub is a process: at most [`SpareLimits::max`] revisions hold
//! one (the most recently used: a new revision gets one only while there is room, a revision
//! that just started an instance always gets its refill, evicting the least recently used
//! revision's spare), and a spare not taken for [`SpareLimits::ttl`] is removed. So an idle
//! server holds no stub and no spare cgroup, however many revisions it has; the revisions
//! likely to be called keep the fast cold start, the others attach their cgroup when they
//! start (milliseconds more).
//!
//! A cgroup is never reused for a second instance: its OOM counter would speak of the last
//! one, and runc removes a container's cgroup on delete anyway.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use nimbus_cgroup::{Cgroup, CgroupError, Cgroups, Limits};
use nimbus_runtime::{InstanceSpec, RevisionKey};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::stub::{Stub, StubCommand};

/// How long after a spare is taken the next one is made.
const REFILL_DELAY: Duration = Duration::from_millis(500);
/// How long a start waits for a spare that is being made (normally ready within tens of
/// milliseconds) before making its own cgroup.
const SPARE_WAIT: Duration = Duration::from_secs(1);

/// How many spares are kept, and for how long.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpareLimits {
    /// Revisions holding a spare at once (each spare's stub is a process).
    pub max: usize,
    /// A spare not taken for this long is removed.
    pub ttl: Duration,
}

impl Default for SpareLimits {
    fn default() -> Self {
        Self {
            max: 32,
            ttl: Duration::from_secs(300),
        }
    }
}

/// How often spares past their time are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Spare cgroups for the revisions of one runtime.
pub(crate) struct CgroupPool {
    cgroups: Cgroups,
    /// Distinguishes this runtime's cgroups from other runtimes' under the same parent.
    tag: String,
    default_pids_limit: u64,
    /// How spares' stubs are started; `None`: spares have no stub.
    stub: Option<StubCommand>,
    /// Whether a failed stub start was already reported as a warning (later ones are debug).
    stub_warned: AtomicBool,
    /// Names are `<tag>/<namespace>/<revision>-<n>`, unique for the runtime's life.
    seq: AtomicU64,
    limits: SpareLimits,
    /// Whether the sweeper of spares past their time runs (started with the first spare).
    sweeping: AtomicBool,
    revisions: Mutex<Revisions>,
}

/// The revisions with spares, and whether the pool was closed (shutdown: no more spares).
#[derive(Default)]
struct Revisions {
    map: HashMap<RevisionKey, Spares>,
    closed: bool,
}

/// One revision's spare, and whether one is being made.
#[derive(Default)]
struct Spares {
    spare: Option<Spare>,
    making: bool,
    /// Woken when a spare being made is stored (or failed).
    made: Arc<Notify>,
    /// When the revision last asked for a spare or took one.
    used: Option<Instant>,
}

impl Spares {
    /// Whether a spare is held or being made.
    fn holds(&self) -> bool {
        self.spare.is_some() || self.making
    }
}

/// A fresh cgroup with a revision's limits and, when stubs are in use, a stub waiting in it.
#[derive(Debug)]
pub(crate) struct Spare {
    /// Declared first: dropped (killed) before the cgroup is torn down.
    pub stub: Option<Stub>,
    pub cgroup: Cgroup,
}

impl Spare {
    /// Kill the stub, then kill whatever is left in the cgroup and remove it. Blocks.
    fn remove(self) -> Result<(), CgroupError> {
        drop(self.stub);
        self.cgroup.remove()
    }
}

impl CgroupPool {
    /// Spares made under `cgroups`; with `stub`, each holds a stub started by it.
    pub fn new(
        cgroups: Cgroups,
        tag: String,
        default_pids_limit: u64,
        stub: Option<StubCommand>,
        limits: SpareLimits,
    ) -> Arc<Self> {
        Arc::new(Self {
            cgroups,
            tag,
            default_pids_limit,
            stub,
            stub_warned: AtomicBool::new(false),
            seq: AtomicU64::new(1),
            limits,
            sweeping: AtomicBool::new(false),
            revisions: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Revisions> {
        self.revisions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start making a spare for `spec`'s revision unless it has one (or one is being made).
    pub fn prewarm(self: &Arc<Self>, spec: &Arc<InstanceSpec>) {
        self.make_spare(spec, true);
    }

    /// Start making a spare unless the revision has one or is being given one; a revision the
    /// pool does not know gets one only if `add` (else it was forgotten: it is gone).
    /// A new revision (`add`) gets one only while fewer than [`SpareLimits::max`] revisions
    /// hold one; a refill always does (see [`CgroupPool::keep`]).
    fn make_spare(self: &Arc<Self>, spec: &Arc<InstanceSpec>, add: bool) {
        {
            let mut revisions = self.lock();
            if revisions.closed || (!add && !revisions.map.contains_key(&spec.revision)) {
                return;
            }
            let held = revisions.map.values().filter(|s| s.holds()).count();
            let spares = revisions.map.entry(spec.revision.clone()).or_default();
            spares.used = Some(Instant::now());
            if spares.holds() || (add && held >= self.limits.max) {
                return;
            }
            spares.making = true;
        }
        self.start_sweeper();
        let (pool, spec) = (Arc::clone(self), Arc::clone(spec));
        tokio::task::spawn_blocking(move || {
            let made = pool
                .create(&spec)
                .map(|cgroup| pool.with_stub(cgroup, &spec));
            let made = made.inspect_err(
                |e| tracing::warn!(revision = %spec.revision, "cannot make a spare cgroup: {e}"),
            );
            for spare in pool.keep(&spec.revision, made.ok()) {
                if let Err(e) = spare.remove() {
                    tracing::warn!("cannot remove a spare cgroup: {e}");
                }
            }
        });
    }

    /// Store a newly made spare. Returns the spares to remove: this one if the revision was
    /// forgotten meanwhile, else those of the least recently used other revisions beyond
    /// [`SpareLimits::max`].
    fn keep(&self, revision: &RevisionKey, made: Option<Spare>) -> Vec<Spare> {
        let mut revisions = self.lock();
        let Some(spares) = revisions.map.get_mut(revision) else {
            return made.into_iter().collect();
        };
        spares.making = false;
        spares.made.notify_waiters();
        let mut unwanted: Vec<Spare> = match made {
            Some(spare) => spares.spare.replace(spare).into_iter().collect(),
            None => Vec::new(),
        };
        while revisions.map.values().filter(|s| s.holds()).count() > self.limits.max {
            let oldest = revisions
                .map
                .iter_mut()
                .filter(|(k, s)| *k != revision && s.spare.is_some())
                .min_by_key(|(_, s)| s.used);
            let Some((_, s)) = oldest else { break };
            unwanted.extend(s.spare.take());
        }
        unwanted
    }

    /// Remove, every [`SWEEP_EVERY`], the spares not taken for [`SpareLimits::ttl`]; started
    /// once, with the first spare, and ends with the pool.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                let expired = pool.expired();
                if !expired.is_empty() {
                    tokio::task::spawn_blocking(move || {
                        for spare in expired {
                            drop(spare.remove());
                        }
                    });
                }
            }
        });
    }

    /// Take out the spares whose revisions have not used them for [`SpareLimits::ttl`].
    fn expired(&self) -> Vec<Spare> {
        let now = Instant::now();
        let mut revisions = self.lock();
        revisions
            .map
            .values_mut()
            .filter(|s| {
                s.used
                    .is_none_or(|at| now.duration_since(at) >= self.limits.ttl)
            })
            .filter_map(|s| s.spare.take())
            .collect()
    }

    /// How many revisions hold a spare or are being given one.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.lock().map.values().filter(|s| s.holds()).count()
    }

    /// A fresh cgroup with the revision's limits: the spare if there is one (then another is
    /// started), else a new one made now (without a stub: starting one now would pay the very
    /// attach stubs exist to avoid).
    pub async fn take(self: &Arc<Self>, spec: &Arc<InstanceSpec>) -> Result<Spare, CgroupError> {
        let spare = self.take_spare(&spec.revision).await;
        let spare = match spare {
            Some(spare) => spare,
            None => {
                let (pool, spec) = (Arc::clone(self), Arc::clone(spec));
                let cgroup = tokio::task::spawn_blocking(move || pool.create(&spec))
                    .await
                    .map_err(|e| CgroupError::Unavailable {
                        why: format!("the cgroup task failed: {e}"),
                    })??;
                Spare { stub: None, cgroup }
            }
        };
        // Not now: making a cgroup (and attaching a stub) holds the kernel's cgroup lock, which
        // the instance starting right now may need.
        let (pool, spec) = (Arc::clone(self), Arc::clone(spec));
        tokio::spawn(async move {
            tokio::time::sleep(REFILL_DELAY).await;
            pool.make_spare(&spec, false);
        });
        Ok(spare)
    }

    /// The revision's spare; one being made is waited for (at most [`SPARE_WAIT`]): it is
    /// nearly done, and making another one now would only compete with it for the kernel's
    /// cgroup lock.
    async fn take_spare(&self, revision: &RevisionKey) -> Option<Spare> {
        let made = {
            let mut revisions = self.lock();
            let spares = revisions.map.get_mut(revision)?;
            spares.used = Some(Instant::now());
            if let Some(spare) = spares.spare.take() {
                return Some(spare);
            }
            if !spares.making {
                return None;
            }
            Arc::clone(&spares.made)
        };
        let stored = made.notified();
        tokio::pin!(stored);
        stored.as_mut().enable();
        // Stored between the look above and `enable`?
        if let Some(spare) = self
            .lock()
            .map
            .get_mut(revision)
            .and_then(|s| s.spare.take())
        {
            return Some(spare);
        }
        let _ = tokio::time::timeout(SPARE_WAIT, stored).await;
        self.lock().map.get_mut(revision)?.spare.take()
    }

    /// The revision is gone: remove its spare (in the background) and make no more.
    pub fn forget(&self, revision: &RevisionKey) {
        let spare = self.lock().map.remove(revision).and_then(|s| s.spare);
        if let Some(spare) = spare {
            tokio::task::spawn_blocking(move || drop(spare.remove()));
        }
    }

    /// Every revision is gone (shutdown): remove all spares (and kill their stubs) now, and
    /// make no more.
    pub fn forget_all(&self) {
        let all: Vec<Spares> = {
            let mut revisions = self.lock();
            revisions.closed = true;
            revisions.map.drain().map(|(_, s)| s).collect()
        };
        for spare in all.into_iter().filter_map(|s| s.spare) {
            if let Err(e) = spare.remove() {
                tracing::warn!("cannot remove a spare cgroup: {e}");
            }
        }
    }

    /// `cgroup` as a spare, with a stub started in it if stubs are in use (and can be started).
    fn with_stub(&self, cgroup: Cgroup, spec: &InstanceSpec) -> Spare {
        let Some(command) = &self.stub else {
            return Spare { stub: None, cgroup };
        };
        let label = spec.revision.to_string();
        let stub = cgroup
            .joiner()
            .map_err(std::io::Error::other)
            .and_then(|joiner| Stub::spawn(command, Some(joiner), &label));
        let stub = stub
            .inspect_err(|e| {
                let first = !self.stub_warned.swap(true, Ordering::Relaxed);
                let program = command.program.display();
                let why = format!("cannot start an instance stub ({program}): {e}; cold starts attach the cgroup themselves");
                if first {
                    tracing::warn!(revision = %spec.revision, "{why}");
                } else {
                    tracing::debug!(revision = %spec.revision, "{why}");
                }
            })
            .ok();
        Spare { stub, cgroup }
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

/// The revision an instance cgroup belongs to, from its name below the cgroup parent
/// (`<tag>/<namespace>/<revision>-<n>`, as [`CgroupPool`] names them); `None` for other names.
/// For metering, which reads the cgroups' counters without holding them.
pub fn revision_of_cgroup(name: &str) -> Option<RevisionKey> {
    let mut parts = name.split('/');
    let (_tag, namespace, leaf) = (parts.next()?, parts.next()?, parts.next()?);
    let (revision, n) = leaf.rsplit_once('-')?;
    let numbered = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
    (parts.next().is_none() && numbered && !revision.is_empty())
        .then(|| RevisionKey::new(namespace, revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_names_lead_back_to_their_revision() {
        let key = revision_of_cgroup("123-0/default/hello-00001-7").unwrap();
        assert_eq!(
            (key.namespace.as_str(), key.name.as_str()),
            ("default", "hello-00001")
        );
        assert!(revision_of_cgroup("123-0/default/hello-x").is_none());
        assert!(revision_of_cgroup("nimbus-probe-1-0").is_none());
        assert!(revision_of_cgroup("a/b/c-1/d").is_none());
    }

    /// A pool under the default parent, or `None` without cgroups (not root, no cgroupfs).
    fn pool() -> Option<Arc<CgroupPool>> {
        let cgroups = Cgroups::detect("nimbus").ok()?;
        let tag = format!("pool-test-{}", std::process::id());
        Some(CgroupPool::new(
            cgroups,
            tag,
            64,
            None,
            SpareLimits::default(),
        ))
    }

    fn spec(name: &str) -> Arc<InstanceSpec> {
        Arc::new(InstanceSpec {
            revision: RevisionKey::new("default", name),
            command: vec!["true".into()],
            ..Default::default()
        })
    }

    /// (has a spare, one is being made), or `None` if the pool does not know the revision.
    fn state(pool: &CgroupPool, spec: &InstanceSpec) -> Option<(bool, bool)> {
        let revisions = pool.lock();
        let spares = revisions.map.get(&spec.revision)?;
        Some((spares.spare.is_some(), spares.making))
    }

    async fn wait_spare(pool: &CgroupPool, spec: &InstanceSpec) {
        // Spares are made on blocking threads, in real time; this only yields to them.
        for _ in 0..10_000 {
            if state(pool, spec) == Some((true, false)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("no spare for {}", spec.revision);
    }

    #[tokio::test(start_paused = true)]
    async fn a_taken_spare_is_refilled_after_the_delay_unless_forgotten_or_closed() {
        let Some(pool) = pool() else {
            nimbus_testkit::skip("spare cgroups need root and a cgroup filesystem");
            return;
        };
        let (kept, gone) = (spec("pool-kept"), spec("pool-gone"));
        pool.prewarm(&kept);
        pool.prewarm(&gone);
        wait_spare(&pool, &kept).await;
        wait_spare(&pool, &gone).await;
        let taken = [
            pool.take(&kept).await.unwrap(),
            pool.take(&gone).await.unwrap(),
        ];
        pool.forget(&gone.revision);
        tokio::time::sleep(REFILL_DELAY - Duration::from_millis(1)).await;
        assert_eq!(
            state(&pool, &kept),
            Some((false, false)),
            "not before the delay"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
        wait_spare(&pool, &kept).await;
        assert_eq!(
            state(&pool, &gone),
            None,
            "a forgotten revision gets no spare"
        );
        // After shutdown a pending refill makes nothing either.
        let again = pool.take(&kept).await.unwrap();
        pool.forget_all();
        tokio::time::sleep(REFILL_DELAY * 2).await;
        assert_eq!(state(&pool, &kept), None);
        for spare in taken.into_iter().chain([again]) {
            spare.remove().unwrap();
        }
    }

    /// #16: an idle server holds no stub. At most `max` revisions hold a spare (new ones only
    /// while there is room; a refill evicts the least recently used), and none after `ttl`.
    #[tokio::test(start_paused = true)]
    async fn spares_are_bounded_to_the_most_recently_used_and_expire() {
        let Some(cgroups) = Cgroups::detect("nimbus").ok() else {
            nimbus_testkit::skip("spare cgroups need root and a cgroup filesystem");
            return;
        };
        let tag = format!("pool-bound-{}", std::process::id());
        let limits = SpareLimits {
            max: 2,
            ttl: Duration::from_secs(60),
        };
        let pool = CgroupPool::new(cgroups, tag, 64, None, limits);
        let (a, b, c) = (spec("bound-a"), spec("bound-b"), spec("bound-c"));
        for s in [&a, &b] {
            pool.prewarm(s);
            wait_spare(&pool, s).await;
        }
        pool.prewarm(&c);
        assert_eq!(
            state(&pool, &c),
            Some((false, false)),
            "no room for a new revision"
        );
        assert_eq!(pool.held(), 2);
        // c starts an instance: its refill evicts a, the least recently used.
        tokio::time::sleep(Duration::from_secs(1)).await;
        pool.prewarm(&b);
        let taken = pool.take(&c).await.unwrap();
        tokio::time::sleep(REFILL_DELAY + Duration::from_millis(1)).await;
        wait_spare(&pool, &c).await;
        assert_eq!(state(&pool, &a), Some((false, false)), "evicted");
        assert_eq!(state(&pool, &b), Some((true, false)));
        assert_eq!(pool.held(), 2);
        // Idle past the ttl: nothing held.
        tokio::time::sleep(limits.ttl + SWEEP_EVERY * 2).await;
        for _ in 0..10_000 {
            if pool.held() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(pool.held(), 0, "an idle pool holds no spare");
        taken.remove().unwrap();
        pool.forget_all();
    }
}
