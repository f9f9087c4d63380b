//! The crate's errors.

use std::path::PathBuf;

/// What can go wrong metering, pricing or querying.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage database {path}: {source}")]
    Db {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("price table {source_name}: {message}")]
    Prices {
        source_name: String,
        message: String,
    },
    #[error("{field}: {message}")]
    BadQuery {
        field: &'static str,
        message: String,
    },
}
