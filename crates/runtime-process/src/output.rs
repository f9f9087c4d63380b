//! Instance output: stdout and stderr are read line by line, the last lines kept in memory for
//! failure messages, forwarded to `tracing` at debug level, and appended to the instance's log
//! file (timestamped and rotated by `nimbus-logs`) when the runtime has a data directory.
//! Reading never stops before EOF, so a chatty process never blocks on a full pipe; a log file
//! that cannot be written never stops it either.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_logs::{LogLimits, LogWriter, Stream};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
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

/// One log file shared by both streams of a process, so lines interleave as they arrive and a
/// single writer counts the size for rotation. Locked only for one synchronous write.
type SharedLog = Arc<Mutex<LogWriter>>;

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
        let log = open_log(sink);
        let tasks = vec![
            tokio::spawn(pump(stdout, Stream::Stdout, sink.clone(), log.clone())),
            tokio::spawn(pump(stderr, Stream::Stderr, sink.clone(), log)),
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
    // A finished handle must not be polled again (wait may be cancelled and called again).
    for task in tasks.iter_mut().filter(|t| !t.is_finished()) {
        let _ = task.await;
    }
}

async fn pump(
    stream: impl AsyncRead + Unpin,
    name: Stream,
    sink: OutputSink,
    log: Option<SharedLog>,
) {
    let mut reader = BufReader::new(stream);
    while let Some(line) = read_line(&mut reader).await {
        tracing::debug!(instance = %sink.instance, stream = %name, "{line}");
        if let Some(log) = &log {
            log.lock()
                .expect("instance log poisoned")
                .write(name, &line);
        }
        sink.tail.push(line);
    }
}

/// The instance's log writer, or `None` without a log file or when it cannot be opened (said
/// once here; output is then kept in memory only).
fn open_log(sink: &OutputSink) -> Option<SharedLog> {
    let path = sink.log_file.as_ref()?;
    let writer = LogWriter::open(path, LogLimits::default());
    let writer = writer.inspect_err(|e| tracing::warn!(instance = %sink.instance, "{e}"));
    Some(Arc::new(Mutex::new(writer.ok()?)))
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

    fn sink(log_file: Option<PathBuf>, tail: &OutputTail) -> OutputSink {
        OutputSink {
            instance: "i".into(),
            log_file,
            tail: tail.clone(),
        }
    }

    #[tokio::test]
    async fn lines_are_split_truncated_and_bounded() {
        let long = "x".repeat(MAX_LINE + 10);
        let input = format!("a\r\nb\n{long}\nlast");
        let tail = OutputTail::new(3);
        pump(input.as_bytes(), Stream::Stdout, sink(None, &tail), None).await;
        let lines = tail.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "b");
        assert_eq!(lines[1].len(), MAX_LINE);
        assert_eq!(lines[2], "last");
    }

    #[tokio::test]
    async fn log_file_gets_every_line_of_both_streams_with_time_and_stream() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns/rev/i.log");
        let tail = OutputTail::new(1);
        let mut pumps = Pumps::start(
            &b"one\ntwo\n"[..],
            &b"oops\n"[..],
            &sink(Some(path.clone()), &tail),
        );
        pumps.drained(Duration::from_secs(10)).await;
        let lines = nimbus_logs::read_revision(&dir.path().join("ns/rev"), None, None).unwrap();
        let got: Vec<(&str, Stream, &str)> = lines
            .iter()
            .map(|l| (l.instance.as_str(), l.stream, l.text.as_str()))
            .collect();
        let stdout: Vec<_> = got.iter().filter(|l| l.1 == Stream::Stdout).collect();
        assert_eq!(
            stdout,
            [&("i", Stream::Stdout, "one"), &("i", Stream::Stdout, "two")]
        );
        assert!(got.contains(&("i", Stream::Stderr, "oops")), "{got:?}");
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text.lines().all(|l| l.ends_with("Z stdout F one")
                || l.ends_with("Z stdout F two")
                || l.ends_with("Z stderr F oops")),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_unwritable_log_never_stops_reading() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the log's directory should be: the log cannot be opened.
        std::fs::write(dir.path().join("ns"), "").unwrap();
        let tail = OutputTail::new(5);
        let log_file = Some(dir.path().join("ns/rev/i.log"));
        let mut pumps = Pumps::start(&b"a\nb\n"[..], &b""[..], &sink(log_file, &tail));
        pumps.drained(Duration::from_secs(10)).await;
        assert_eq!(tail.lines(), ["a", "b"]);
    }
}
