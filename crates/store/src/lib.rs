//! Durable state: every Nimbus resource, with Kubernetes-style metadata, in one SQLite file.
//!
//! The store owns `uid`, `resourceVersion` (one monotonic counter for the whole store, like etcd's
//! revision, used for optimistic concurrency and watch resumption), `generation` (bumped when the
//! spec changes) and `creationTimestamp`. It validates nothing about specs (that is `nimbus-api`'s
//! job) and never interprets them; it stores objects and tells watchers what changed.
//!
//! Every write is one SQLite transaction in WAL mode: a crash leaves either the old or the new
//! object, never half of one. Secrets' values are encrypted before they reach the file (see
//! `seal.rs`: AES-256-GCM under `secrets.key` beside the database).

mod error;
mod seal;
mod sqlite;

pub use error::StoreError;
pub use seal::{KEY_FILE, SecretsKey};
pub use sqlite::Store;

use nimbus_api::Object;

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    /// `ADDED`, `MODIFIED`, `DELETED` (Kubernetes watch event types).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(Self::Added),
            "MODIFIED" => Some(Self::Modified),
            "DELETED" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One change, as sent to watchers. `object` is the state after the change (for deletions, the
/// last state, with the deletion's resourceVersion).
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub type_: EventType,
    pub resource_version: u64,
    pub object: Object,
}

/// A list result: the objects and the store's resourceVersion at the time of listing.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList {
    pub items: Vec<Object>,
    pub resource_version: u64,
}
