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
    /// The key Secrets are encrypted with cannot be read or made.
    #[error("the key to encrypt Secrets with, {path}, cannot be used: {message}")]
    SecretsKey {
        path: std::path::PathBuf,
        message: String,
    },
    #[error(
        "watch history from resourceVersion {requested} is gone (oldest kept: {oldest}); list again"
    )]
    Gone { requested: u64, oldest: u64 },
    /// The file system holding the database has no room left: the write did not happen.
    #[error(
        "the data directory's file system is full, so nothing was written: free space there \
         (instance logs and images live beside the database) and retry"
    )]
    Full(#[source] rusqlite::Error),
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // SQLite's unix VFS reports a write that fails with ENOSPC as SQLITE_FULL.
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => Self::Full(e),
            _ => Self::Sqlite(e),
        }
    }
}

impl StoreError {
    /// Whether retrying the same call (after re-reading) can succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }

    /// Whether the data directory's file system is full.
    pub fn is_full(&self) -> bool {
        matches!(self, StoreError::Full(_))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }
}
