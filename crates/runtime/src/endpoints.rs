//! The ready-endpoint registry: written by runtimes, read by the router on every request.
//!
//! Reads are lock-free (`arc-swap`); writes copy the map, which is fine because endpoints change
//! orders of magnitude less often than requests arrive. Runtimes also note here when they
//! began an instance and when its process started ([`StartMilestones`]): the phases of a
//! cold start a traced request reports.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::RevisionKey;
use crate::local::LocalHandle;

/// The protocol an instance speaks on its port (Knative: port name `h2c` or `http1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    #[default]
    Http1,
    H2c,
}

/// One ready instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// Unique within the revision (for example `hello-00001-7`).
    pub id: String,
    pub transport: Transport,
}

/// How the router reaches an instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// The instance listens on a socket (host processes, containers).
    Tcp {
        addr: SocketAddr,
        protocol: Protocol,
    },
    /// The instance lives inside the server process (Wasm) and is called directly.
    InProcess(LocalHandle),
}

// === impl Endpoint ===

impl Endpoint {
    /// An instance listening on `addr`.
    pub fn tcp(id: impl Into<String>, addr: SocketAddr, protocol: Protocol) -> Self {
        Self {
            id: id.into(),
            transport: Transport::Tcp { addr, protocol },
        }
    }

    /// An instance inside the server process.
    pub fn in_process(id: impl Into<String>, handle: LocalHandle) -> Self {
        Self {
            id: id.into(),
            transport: Transport::InProcess(handle),
        }
    }

    /// The socket address, for instances behind one.
    pub fn addr(&self) -> Option<SocketAddr> {
        match &self.transport {
            Transport::Tcp { addr, .. } => Some(*addr),
            Transport::InProcess(_) => None,
        }
    }
}

/// `hello-00001-7 at 127.0.0.1:4242`, or `hello-00001-7 (in process)`.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.transport {
            Transport::Tcp { addr, .. } => write!(f, "{} at {addr}", self.id),
            Transport::InProcess(_) => write!(f, "{} (in process)", self.id),
        }
    }
}

/// The ready instances of one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionEndpoints {
    pub ready: Vec<Endpoint>,
    /// Set when the revision has no ready instance because its latest start failed (the
    /// runtime's reason and message): requests waiting for it should fail now, not time out.
    pub failure: Option<String>,
}

type Map = HashMap<RevisionKey, Arc<RevisionEndpoints>>;

/// Shared map from revision to its ready endpoints. Cheap to clone (it is a handle).
#[derive(Clone)]
pub struct EndpointRegistry {
    map: Arc<ArcSwap<Map>>,
    changed: Arc<watch::Sender<u64>>,
    milestones: Arc<Mutex<HashMap<RevisionKey, StartMilestones>>>,
}

/// A step of an instance's start a runtime notes ([`EndpointRegistry::note_start`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Milestone {
    /// The runtime was asked for the instance and began it (the scale decision is applied).
    Scheduled,
    /// The instance's process (or component instance) started; readiness comes next.
    Launched,
}

/// When a revision's latest instance start passed each [`Milestone`] (the cold-start phases
/// decide → start → ready, whose end is the instance's publication).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StartMilestones {
    pub scheduled: Option<Instant>,
    pub launched: Option<Instant>,
}

impl Default for EndpointRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl EndpointRegistry {
    pub fn new() -> Self {
        let (tx, _) = watch::channel(0);
        Self {
            map: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            changed: Arc::new(tx),
            milestones: Arc::default(),
        }
    }

    /// Notes that an instance of `revision` passed `milestone` now (instance starts only:
    /// never on the request path).
    pub fn note_start(&self, revision: &RevisionKey, milestone: Milestone) {
        let mut all = self
            .milestones
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let noted = all.entry(revision.clone()).or_default();
        let now = Some(Instant::now());
        match milestone {
            Milestone::Scheduled => {
                *noted = StartMilestones {
                    scheduled: now,
                    launched: None,
                }
            }
            Milestone::Launched => noted.launched = now,
        }
    }

    /// The milestones of `revision`'s latest instance start (read by traced cold starts).
    pub fn start_milestones(&self, revision: &RevisionKey) -> StartMilestones {
        let all = self
            .milestones
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.get(revision).copied().unwrap_or_default()
    }

    /// Forgets the milestones of a revision the runtime no longer runs.
    pub fn forget_starts(&self, revision: &RevisionKey) {
        let mut all = self
            .milestones
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        all.remove(revision);
    }

    /// The ready endpoints of a revision (empty when it has none or is unknown).
    pub fn get(&self, revision: &RevisionKey) -> Option<Arc<RevisionEndpoints>> {
        self.map.load().get(revision).cloned()
    }

    /// Replace the ready endpoints of a revision.
    pub fn set(&self, revision: &RevisionKey, endpoints: RevisionEndpoints) {
        self.map.rcu(|old| {
            let mut next = Map::clone(old);
            if endpoints.ready.is_empty() && endpoints.failure.is_none() {
                next.remove(revision);
            } else {
                next.insert(revision.clone(), Arc::new(endpoints.clone()));
            }
            next
        });
        self.changed.send_modify(|v| *v += 1);
    }

    /// A receiver that changes every time any revision's endpoints change. Used by waiters that
    /// want to know when an endpoint appears (the activator).
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(port: u16) -> Endpoint {
        Endpoint::tcp(
            format!("i{port}"),
            ([127, 0, 0, 1], port).into(),
            Protocol::Http1,
        )
    }

    #[test]
    fn a_new_start_replaces_the_last_ones_milestones() {
        let reg = EndpointRegistry::new();
        let key = RevisionKey::new("default", "hello-00001");
        assert_eq!(reg.start_milestones(&key), StartMilestones::default());
        reg.note_start(&key, Milestone::Scheduled);
        reg.note_start(&key, Milestone::Launched);
        let first = reg.start_milestones(&key);
        assert!(first.scheduled.unwrap() <= first.launched.unwrap());
        reg.note_start(&key, Milestone::Scheduled);
        let second = reg.start_milestones(&key);
        assert!(second.scheduled >= first.scheduled && second.launched.is_none());
        reg.forget_starts(&key);
        assert_eq!(reg.start_milestones(&key), StartMilestones::default());
    }

    #[test]
    fn set_get_and_clear() {
        let reg = EndpointRegistry::new();
        let key = RevisionKey::new("default", "hello-00001");
        assert!(reg.get(&key).is_none());
        let mut w = reg.watch();
        reg.set(
            &key,
            RevisionEndpoints {
                ready: vec![ep(1), ep(2)],
                failure: None,
            },
        );
        assert!(w.has_changed().unwrap());
        assert_eq!(reg.get(&key).unwrap().ready.len(), 2);
        w.mark_unchanged();
        reg.set(&key, RevisionEndpoints::default());
        assert!(reg.get(&key).is_none());
        assert!(w.has_changed().unwrap());
    }
}
