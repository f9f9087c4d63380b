//! Instance logs: capped, rotated files with timestamps, and reading/following them.
//!
//! This crate owns the on-disk format of instance output and nothing else: it knows neither
//! processes nor HTTP. Runtimes write through a [`LogWriter`]; the API server reads with
//! [`read_dirs`] / [`read_revision`] or follows with [`follow`].
//!
//! # Layout
//!
//! `<logs root>/<namespace>/<revision>/<instance>.log`, where the logs root is `<data dir>/logs`
//! ([`logs_root`]). When a file would grow past [`LogLimits::max_bytes`] it is renamed to
//! `<instance>.log.1` (older ones shift to `.2`, `.3`, … and those past [`LogLimits::keep`] are
//! deleted) and a new file is started.
//!
//! # Line format
//!
//! Exactly the CRI container log format (what kubelet writes under `/var/log/pods`), so log
//! shippers that read CRI files read these too:
//!
//! ```text
//! 2026-11-27T18:00:00.123456789Z stdout F hello
//! ```
//!
//! An RFC 3339 UTC timestamp with nanoseconds, the stream (`stdout` or `stderr`), the tag `F`
//! (a full line; Nimbus never writes the partial-line tag `P`, as it cuts long lines short
//! instead of splitting them) and the text, which never holds a newline.

mod error;
mod follow;
mod format;
mod paths;
mod reader;
mod writer;

pub use error::LogError;
pub use follow::{DEFAULT_POLL, follow};
pub use format::{LogLine, Stream};
pub use jiff::Timestamp;
pub use paths::{instance_file, logs_root, revision_dir};
pub use reader::{Follower, read_dirs, read_revision};
pub use writer::{LogLimits, LogWriter};
