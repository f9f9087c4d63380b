//! Guest output: what a component writes to `wasi:cli/stdout` and `wasi:cli/stderr` goes, line
//! by line, to its instance's log file (`<data dir>/logs/<namespace>/<revision>/<instance>.log`,
//! timestamped, capped and rotated by `nimbus-logs`) and to `tracing` at debug level, as the
//! process runtime does with a process's pipes. The API's `log` subresource and `nimbus logs`
//! read the same files.
//!
//! Three levels, each owning what lives as long as it does:
//!
//! - [`RevisionLogs`]: the revision's log directory and whether it still exists. Removing the
//!   revision deletes the directory; lines printed afterwards (by requests still draining) are
//!   dropped rather than recreating it.
//! - [`InstanceLog`]: one instance's [`LogWriter`], opened on the first line (so starting an
//!   instance stays an allocation) and shared by the instance's concurrent requests; each line
//!   is written whole under its lock, so lines of different requests interleave but never mix.
//! - [`GuestOutput`]: one stream (stdout or stderr) of one request, given to `WasiCtxBuilder`
//!   as its `StdoutStream`. It splits what the guest writes into lines (its own buffer, so a
//!   partial line of one request is never glued to another's) and writes the partial last line
//!   when the request's store is dropped, however the request ended.
//!
//! Writes are synchronous, like wasmtime-wasi's own `OutputFile`: one `write` of a few hundred
//! bytes to a local file per line. Memory is bounded: a line keeps at most [`MAX_LINE`] bytes
//! (the rest of a longer line is dropped, as in the process runtime), and a guest may hand over
//! at most [`PERMIT`] bytes per write. A log file that cannot be opened or written never fails
//! the guest's write: the line still goes to `tracing`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use nimbus_logs::{LogLimits, LogWriter, Stream};
use nimbus_runtime::RevisionKey;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Longest line kept; the rest of a longer line is dropped.
pub(crate) const MAX_LINE: usize = 4096;

/// Bytes a guest may write at once (`check-write`); as much as `blocking-write-and-flush`
/// accepts, so one host call writes at most a few thousand lines.
pub(crate) const PERMIT: usize = 4096;

// === impl RevisionLogs ===

/// The log directory of one revision.
pub(crate) struct RevisionLogs {
    root: PathBuf,
    revision: RevisionKey,
    /// `<logs root>/<namespace>/<revision>`.
    dir: PathBuf,
    /// Set once the revision is removed. Writers hold the read lock while they open and write,
    /// so after [`RevisionLogs::remove`] has taken the write lock no line reaches the disk.
    removed: RwLock<bool>,
}

impl RevisionLogs {
    /// The logs of `revision` under the logs root of `data_dir`; nothing is created until a
    /// line is written.
    pub fn new(data_dir: &Path, revision: &RevisionKey) -> Arc<Self> {
        let root = nimbus_logs::logs_root(data_dir);
        let dir = nimbus_logs::revision_dir(&root, &revision.namespace, &revision.name);
        Arc::new(Self {
            root,
            revision: revision.clone(),
            dir,
            removed: RwLock::new(false),
        })
    }

    /// The log of the instance `id` (the endpoint id, `<revision>-<ordinal>`).
    pub fn instance(self: &Arc<Self>, id: String) -> Arc<InstanceLog> {
        self.log(id, 0)
    }

    /// The log of the task `id`, which also keeps its last `tail` lines in memory for the
    /// task's outcome message.
    pub fn task(self: &Arc<Self>, id: String, tail: usize) -> Arc<InstanceLog> {
        self.log(id, tail)
    }

    fn log(self: &Arc<Self>, id: String, tail: usize) -> Arc<InstanceLog> {
        let key = &self.revision;
        let path = nimbus_logs::instance_file(&self.root, &key.namespace, &key.name, &id);
        Arc::new(InstanceLog {
            revision: Arc::clone(self),
            file: Mutex::new(LogFile::Unopened),
            path,
            id,
            tail: Mutex::new(Tail::new(tail)),
        })
    }

    /// Stop writing and delete the directory (like a pod's logs, they go with the revision).
    pub fn remove(&self) {
        *self.removed.write().unwrap_or_else(PoisonError::into_inner) = true;
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %self.dir.display(), "cannot remove a deleted revision's logs: {e}");
            }
            _ => {}
        }
    }
}

// === impl InstanceLog ===

/// One instance's log file.
pub(crate) struct InstanceLog {
    revision: Arc<RevisionLogs>,
    id: String,
    path: PathBuf,
    file: Mutex<LogFile>,
    /// The last lines written (kept for tasks only: capacity 0 otherwise).
    tail: Mutex<Tail>,
}

/// The last `capacity` lines, oldest first.
struct Tail {
    lines: VecDeque<String>,
    capacity: usize,
}

impl Tail {
    fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            capacity,
        }
    }

    fn push(&mut self, line: &str) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines.push_back(line.to_owned());
    }
}

enum LogFile {
    Unopened,
    Open(LogWriter),
    /// Opening failed (said once); lines go to `tracing` only.
    Unavailable,
}

impl InstanceLog {
    /// Append one line (no newline in it). Never fails.
    fn write(&self, stream: Stream, line: &str) {
        tracing::debug!(instance = %self.id, %stream, "{line}");
        self.tail
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
        // Held until the line is written: removal waits for it.
        let removed = self
            .revision
            .removed
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if *removed {
            return;
        }
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let LogFile::Unopened = *file {
            *file = self.open();
        }
        if let LogFile::Open(writer) = &mut *file {
            writer.write(stream, line);
        }
    }

    /// The last lines written, oldest first (none unless made by [`RevisionLogs::task`]).
    pub fn tail(&self) -> Vec<String> {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.lines.iter().cloned().collect()
    }

    fn open(&self) -> LogFile {
        match LogWriter::open(&self.path, LogLimits::default()) {
            Ok(writer) => LogFile::Open(writer),
            Err(e) => {
                tracing::warn!(instance = %self.id, "{e}; its output goes to the debug log only");
                LogFile::Unavailable
            }
        }
    }
}

// === impl GuestOutput ===

/// One request's stdout or stderr. Clones (one per `get-stdout` call of the guest) share the
/// line buffer.
#[derive(Clone)]
pub(crate) struct GuestOutput(Arc<Mutex<LineBuffer>>);

impl GuestOutput {
    pub fn new(log: &Arc<InstanceLog>, stream: Stream) -> Self {
        Self(Arc::new(Mutex::new(LineBuffer {
            log: Arc::clone(log),
            stream,
            line: Vec::new(),
        })))
    }

    fn push(&self, bytes: &[u8]) {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.push(bytes);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for GuestOutput {
    /// Always ready: writing never waits.
    async fn ready(&mut self) {}
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        if bytes.len() > PERMIT {
            return Err(StreamError::trap(
                "wrote more to stdout/stderr than check-write allowed",
            ));
        }
        self.push(&bytes);
        Ok(())
    }

    /// Complete lines are written as they arrive; a partial line waits for its newline or the
    /// end of the request.
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(PERMIT)
    }
}

/// The same stream for `wasi:cli` 0.3 guests (not linked today; the trait asks for it).
impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let len = buf.len().min(PERMIT);
        self.push(&buf[..len]);
        Poll::Ready(Ok(len))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

// === impl LineBuffer ===

/// The line being written on one stream of one request.
struct LineBuffer {
    log: Arc<InstanceLog>,
    stream: Stream,
    /// At most [`MAX_LINE`] bytes, without the newline.
    line: Vec<u8>,
}

impl LineBuffer {
    /// Add `bytes`, writing every line they complete.
    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (chunk, rest) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], Some(&bytes[i + 1..])),
                None => (bytes, None),
            };
            let room = MAX_LINE.saturating_sub(self.line.len());
            self.line.extend_from_slice(&chunk[..chunk.len().min(room)]);
            match rest {
                Some(rest) => {
                    self.emit();
                    bytes = rest;
                }
                None => break,
            }
        }
    }

    /// Write the buffered line (without a trailing `\r`; lossy UTF-8) and start a new one.
    fn emit(&mut self) {
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        let line = String::from_utf8_lossy(&self.line);
        self.log.write(self.stream, &line);
        self.line.clear();
    }
}

impl Drop for LineBuffer {
    /// The request is over: its partial last line is written as a line of its own.
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.emit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_in(data_dir: &Path) -> (Arc<RevisionLogs>, Arc<InstanceLog>) {
        let revision = RevisionLogs::new(data_dir, &RevisionKey::new("ns", "rev"));
        let instance = revision.instance("rev-1".into());
        (revision, instance)
    }

    /// `(stream, text)` of every line of the revision, in file order.
    fn lines(data_dir: &Path) -> Vec<(Stream, String)> {
        let dir = data_dir.join("logs/ns/rev");
        let lines = nimbus_logs::read_revision(&dir, None, None).unwrap();
        lines.into_iter().map(|l| (l.stream, l.text)).collect()
    }

    fn write(output: &GuestOutput, text: &str) {
        output
            .clone()
            .write(Bytes::copy_from_slice(text.as_bytes()))
            .unwrap();
    }

    #[test]
    fn lines_are_split_across_writes_and_the_partial_one_flushed_at_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let (_revision, log) = log_in(dir.path());
        let out = GuestOutput::new(&log, Stream::Stdout);
        let err = GuestOutput::new(&log, Stream::Stderr);
        write(&out, "one\ntw");
        write(&err, "oops\r\n");
        write(&out, "o\n\nlast");
        assert_eq!(
            lines(dir.path()),
            [
                (Stream::Stdout, "one".to_owned()),
                (Stream::Stderr, "oops".to_owned()),
                (Stream::Stdout, "two".to_owned()),
                (Stream::Stdout, String::new()),
            ]
        );
        drop((out, err));
        assert_eq!(
            lines(dir.path()).last(),
            Some(&(Stream::Stdout, "last".to_owned()))
        );
    }

    #[test]
    fn long_lines_are_cut_and_writes_past_the_permit_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_revision, log) = log_in(dir.path());
        let out = GuestOutput::new(&log, Stream::Stdout);
        for _ in 0..3 {
            write(&out, &"x".repeat(PERMIT));
        }
        write(&out, "\nnext\n");
        let got = lines(dir.path());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1, "x".repeat(MAX_LINE));
        assert_eq!(got[1].1, "next");
        let too_much = Bytes::from(vec![b'x'; PERMIT + 1]);
        assert!(out.clone().write(too_much).is_err());
    }

    #[test]
    fn nothing_is_created_before_output_nor_written_after_removal() {
        let dir = tempfile::tempdir().unwrap();
        let (revision, log) = log_in(dir.path());
        let out = GuestOutput::new(&log, Stream::Stdout);
        assert!(!dir.path().join("logs").exists());
        write(&out, "kept\n");
        assert!(dir.path().join("logs/ns/rev/rev-1.log").is_file());
        revision.remove();
        write(&out, "dropped\npartial");
        drop(out);
        assert!(!dir.path().join("logs/ns/rev").exists());
    }

    #[test]
    fn an_unwritable_log_never_fails_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the log's directory should be: the log cannot be opened.
        std::fs::write(dir.path().join("logs"), "").unwrap();
        let (_revision, log) = log_in(dir.path());
        let mut out = GuestOutput::new(&log, Stream::Stderr);
        assert!(out.write(Bytes::from_static(b"a\nb\n")).is_ok());
        assert!(out.write(Bytes::from_static(b"c\n")).is_ok());
        assert_eq!(out.check_write().unwrap(), PERMIT);
    }
}
