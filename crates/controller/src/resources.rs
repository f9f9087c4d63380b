//! The reconcilers' view of the API: the operations a Kubernetes API server offers, with the
//! semantics one has, so the embedded store ([`crate::StoreResources`]) and a kube-rs client
//! are two implementations of one trait.
//!
//! - Reads: `get`, label-selector `list`, and `watch` from a resourceVersion (a watch that
//!   cannot resume says so with [`ResourceError::Gone`]; the caller lists again).
//! - Writes never overwrite what another actor owns: children are written with server-side
//!   apply under a field manager ([`Resources::apply`]: the fields this manager set last time
//!   and no longer sets are removed, everyone else's labels, annotations and finalizers stay);
//!   status and metadata edits (finalizers, labels) are writes guarded by the object's
//!   `resourceVersion` ([`Resources::replace_meta`], [`Resources::replace_status`]) that touch
//!   nothing else (not the spec, whose stored form may differ from the defaulted one a
//!   reconciler reads), retried on conflict with a fresh read by [`update_status`] and
//!   [`update_meta`].
//! - Deletes may carry a uid precondition, so a garbage collector never deletes the object that
//!   replaced the one it meant. Objects with finalizers are only marked (`deletionTimestamp`).

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use nimbus_api::{Kind, Object};

/// What went wrong talking to the API, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: Kind,
        namespace: String,
        name: String,
    },
    #[error("{kind} {namespace}/{name} already exists")]
    AlreadyExists {
        kind: Kind,
        namespace: String,
        name: String,
    },
    /// Another write came first (stale resourceVersion, uid precondition): read again, retry.
    /// The message names the object.
    #[error("{0}")]
    Conflict(String),
    /// The API refused the object: retrying the same write cannot succeed. The message names
    /// the object and the field.
    #[error("{0}")]
    Invalid(String),
    /// A watch cannot resume from the resourceVersion given: list again.
    #[error("watch history from resourceVersion {0} is gone; list again")]
    Gone(u64),
    /// The API (or the store under it) is unavailable; retry with backoff.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
}

/// How a failed reconcile is retried, by error kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Someone else wrote first: reconcile again at once from fresh reads.
    Immediately,
    /// A transient failure: retry with exponential backoff.
    Backoff,
    /// Retrying the same thing cannot help until something else changes; still retried, slowly,
    /// in case it does.
    Slowly,
}

impl ResourceError {
    pub fn retry(&self) -> Retry {
        match self {
            ResourceError::Conflict(_) | ResourceError::AlreadyExists { .. } => Retry::Immediately,
            ResourceError::NotFound { .. } | ResourceError::Gone(_) => Retry::Immediately,
            ResourceError::Unavailable(_) => Retry::Backoff,
            ResourceError::Invalid(_) => Retry::Slowly,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ResourceError::NotFound { .. })
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, ResourceError::Conflict(_))
    }
}

/// Equality label requirements (`key=value,...`), the selectors reconcilers use.
pub type Selector<'a> = &'a [(&'a str, &'a str)];

/// A change seen by a watch.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub deleted: bool,
    /// The object after the change (for deletions: its last state).
    pub object: Object,
    pub resource_version: u64,
}

/// A list result and the resourceVersion to watch from to see every later change.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    pub items: Vec<Object>,
    pub resource_version: u64,
}

/// The API as reconcilers use it. See the module documentation for the semantics.
#[async_trait]
pub trait Resources: Send + Sync + 'static {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, ResourceError>;

    /// Objects of a kind matching every `key=value` of `selector`, in one namespace or all.
    async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Selector<'_>,
    ) -> Result<Listed, ResourceError>;

    /// Create exactly this object (its metadata as given: owner references, finalizers).
    async fn create(&self, obj: Object) -> Result<Object, ResourceError>;

    /// Server-side apply of `obj` by `manager`, forcing conflicts: creates the object if it is
    /// missing; otherwise sets the spec, labels and annotations `obj` names, removes those this
    /// manager applied before and no longer names, and keeps everything else (status,
    /// finalizers, other managers' labels and annotations). Owner references are replaced when
    /// `obj` has them.
    async fn apply(&self, obj: Object, manager: &str) -> Result<Object, ResourceError>;

    /// Replace the object's labels, annotations, finalizers and owner references with `obj`'s;
    /// `obj.metadata.resourceVersion` must be the stored one. The stored spec and status stay
    /// as they are whatever `obj` holds: a reconciler reads objects with defaults applied, and
    /// writing those back would change a spec the user owns (a Revision's spec is immutable).
    async fn replace_meta(&self, obj: Object) -> Result<Object, ResourceError>;

    /// Replace the status; `obj.metadata.resourceVersion` must be the stored one.
    async fn replace_status(&self, obj: Object) -> Result<Object, ResourceError>;

    /// Delete (only the object with `uid`, when given). Deleting a missing object is not an
    /// error. An object with finalizers is marked for deletion and stays until they are gone.
    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ResourceError>;

    /// Every change to objects of the given kinds after `resource_version`, in order. Ends
    /// with [`ResourceError::Gone`] when the history to resume from is no longer kept.
    fn watch(
        &self,
        kinds: &[Kind],
        resource_version: u64,
    ) -> BoxStream<'static, Result<Change, ResourceError>>;
}

/// How often a write guarded by resourceVersion is tried before the conflict is returned.
const CONFLICT_ATTEMPTS: usize = 5;

/// Set an object's status from a fresh read, retrying on conflict: `set` gets the latest object
/// and changes its status; nothing is written when the status is already as `set` leaves it, or
/// when the object is gone.
pub async fn update_status(
    resources: &dyn Resources,
    kind: Kind,
    namespace: &str,
    name: &str,
    set: impl Fn(&mut Object),
) -> Result<(), ResourceError> {
    write_fresh(resources, kind, namespace, name, true, set).await
}

/// Change an object's metadata (finalizers, labels, annotations) from a fresh read, retrying
/// on conflict, as [`update_status`] does for status.
pub async fn update_meta(
    resources: &dyn Resources,
    kind: Kind,
    namespace: &str,
    name: &str,
    set: impl Fn(&mut Object),
) -> Result<(), ResourceError> {
    write_fresh(resources, kind, namespace, name, false, set).await
}

async fn write_fresh(
    resources: &dyn Resources,
    kind: Kind,
    namespace: &str,
    name: &str,
    status: bool,
    set: impl Fn(&mut Object),
) -> Result<(), ResourceError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(current) = resources.get(kind, namespace, name).await? else {
            return Ok(());
        };
        let mut next = current.clone();
        set(&mut next);
        if next == current {
            return Ok(());
        }
        let written = match status {
            true => resources.replace_status(next).await,
            false => resources.replace_meta(next).await,
        };
        match written {
            Err(e) if e.is_conflict() && attempt < CONFLICT_ATTEMPTS => continue,
            Err(e) if e.is_not_found() => return Ok(()),
            other => return other.map(|_| ()),
        }
    }
}

/// What a reconcile asks of the manager when it succeeded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Action {
    /// Reconcile again after this long even if nothing changes (time-based rules: revision
    /// garbage collection).
    pub requeue_after: Option<Duration>,
}

impl Action {
    /// Wait for the next change.
    pub fn await_change() -> Self {
        Self::default()
    }

    /// Reconcile again after `after`.
    pub fn requeue(after: Duration) -> Self {
        Self {
            requeue_after: Some(after),
        }
    }
}
