//! Store errors, each naming the object concerned and what the caller can do.

use nimbus_api::Kind;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} \"{name}\" not found in namespace \"{namespace}\"")]
    NotFound {
        kind: Kind,
        namespace: String,
        name: String,
    },
    #[error("{kind} \"{name}\" already exists in namespace \"{namespace}\"")]
    AlreadyExists {
        kind: Kind,
        namespace: String,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {kind} \"{name}\": the object has been modified \
         (resourceVersion {given} is stale, current is {current}); read it again and retry"
    )]
    Conflict {
        kind: Kind,
        name: String,
        given: String,
        current: u64,
    },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the object stored as {kind} {namespace}/{name} cannot be read: {message}")]
    Corrupt {
        kind: String,
        namespace: String,
        name: String,
        message: String,
    },
    #[error(
        "watch history from resourceVersion {requested} is gone (oldest kept: {oldest}); list again"
    )]
    Gone { requested: u64, oldest: u64 },
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    /// Whether retrying the same call (after re-reading) can succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}
