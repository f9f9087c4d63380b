//! What can go wrong reading or writing log files: always an I/O error on a named path.

use std::path::PathBuf;

/// A log file or directory could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// An I/O error on `path` (`action` says what was tried: "open", "read", "rotate", ...).
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl LogError {
    pub(crate) fn io(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// Whether the error is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
        }
    }
}
