//! Instance output: stdout and stderr are read line by line, the last lines kept in memory for
//! failure messages, forwarded to `tracing` at debug level, and appended to a log file when the
//! runtime has a data directory. Reading never stops before EOF, so a chatty process never blocks
//! on a full pipe.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::task::JoinHandle;

/// Longest line kept; the rest of a longer line is dropped.
const MAX_LINE: usize = 4096;

/// The last lines a process printed, stdout and stderr interleaved as they arrived.
#[derive(Clone)]
pub(crate) struct OutputTail {
    lines: Arc<Mutex<VecDeque<String>>>,
    capacity: usize,
}

impl OutputTail {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: Arc::default(),
            capacity,
        }
    }

    fn push(&self, line: String) {
        let mut lines = self.lines.lock().expect("output tail poisoned");
        if lines.len() == self.capacity {
            lines.pop_front();
        }
        if self.capacity > 0 {
            lines.push_back(line);
        }
    }

    /// A copy of the kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .expect("output tail poisoned")
            .iter()
            .cloned()
            .collect()
    }
}

/// Where one instance's output goes besides the tail.
#[derive(Clone)]
pub(crate) struct OutputSink {
    /// The instance id, for tracing.
    pub instance: String,
    pub log_file: Option<PathBuf>,
    pub tail: OutputTail,
}

/// The reader tasks of one process.
pub(crate) struct Pumps {
    tasks: Vec<JoinHandle<()>>,
}

impl Pumps {
    /// Start reading `stdout` and `stderr` into `sink`.
    pub fn start(
        stdout: impl AsyncRead + Unpin + Send + 'static,
        stderr: impl AsyncRead + Unpin + Send + 'static,
        sink: &OutputSink,
    ) -> Self {
        let tasks = vec![
            tokio::spawn(pump(stdout, "stdout", sink.clone())),
            tokio::spawn(pump(stderr, "stderr", sink.clone())),
        ];
        Self { tasks }
    }

    /// Wait until both streams reached EOF, or `limit` passed (a leftover process may hold a
    /// pipe open; the readers then continue in the background).
    pub async fn drained(&mut self, limit: Duration) {
        let all = futures_join(&mut self.tasks);
        let _ = tokio::time::timeout(limit, all).await;
    }
}

async fn futures_join(tasks: &mut [JoinHandle<()>]) {
    for task in tasks.iter_mut() {
        let _ = task.await;
    }
}

async fn pump(stream: impl AsyncRead + Unpin, name: &'static str, sink: OutputSink) {
    let mut log = open_log(&sink).await;
    let mut reader = BufReader::new(stream);
    while let Some(line) = read_line(&mut reader).await {
        tracing::debug!(instance = %sink.instance, stream = name, "{line}");
        if let Some(file) = log.as_mut() {
            // tokio writes in the background; flushing makes the line visible before the next.
            let written = file.write_all(format!("{line}\n").as_bytes()).await;
            let _ = written.and(file.flush().await);
        }
        sink.tail.push(line);
    }
}

async fn open_log(sink: &OutputSink) -> Option<tokio::fs::File> {
    let path = sink.log_file.as_ref()?;
    if let Some(dir) = path.parent() {
        let _ = tokio::fs::create_dir_all(dir).await;
    }
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await;
    file.inspect_err(|e| tracing::warn!(path = %path.display(), "cannot open instance log: {e}"))
        .ok()
}

/// The next line without its newline (lossy UTF-8, at most [`MAX_LINE`] bytes kept), or `None`
/// at EOF or on a read error.
async fn read_line(reader: &mut (impl AsyncBufReadExt + Unpin)) -> Option<String> {
    let mut line = Vec::new();
    loop {
        let buf = reader.fill_buf().await.ok()?;
        if buf.is_empty() {
            return (!line.is_empty()).then(|| finish(line));
        }
        let (chunk, found) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = MAX_LINE.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let consumed = found.unwrap_or(buf.len());
        reader.consume(consumed);
        if found.is_some() {
            return Some(finish(line));
        }
    }
}

fn finish(mut line: Vec<u8>) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_split_truncated_and_bounded() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("a\r\nb\n{long}\nlast");
        let tail = OutputTail::new(3);
        let sink = OutputSink {
            instance: "i".into(),
            log_file: None,
            tail: tail.clone(),
        };
        pump(input.as_bytes(), "stdout", sink).await;
        let lines = tail.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "b");
        assert_eq!(lines[1].len(), MAX_LINE);
        assert_eq!(lines[2], "last");
    }

    #[tokio::test]
    async fn log_file_gets_every_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns/rev/i.log");
        let sink = OutputSink {
            instance: "i".into(),
            log_file: Some(path.clone()),
            tail: OutputTail::new(1),
        };
        pump(&b"one\ntwo\n"[..], "stdout", sink).await;
        assert_eq!(std::fs::read_to_string(path).unwrap(), "one\ntwo\n");
    }
}
