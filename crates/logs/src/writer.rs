//! Appending lines to one instance's log file, rotating it when it would grow past its cap.
//!
//! Writes are synchronous: each line is one `write` of a few hundred bytes to a local file opened
//! for appending, which is as cheap as the pipe read that produced it. Every line is written at
//! once (no buffering), so readers see it immediately. One writer per file: two writers would
//! each rotate on their own count.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::error::LogError;
use crate::format::{Stream, encode};
use crate::paths::rotated;

/// How large a log file may grow and how many rotated files are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Size at which the file is rotated (default 10 MiB). A single line larger than this still
    /// gets written, alone in a fresh file.
    pub max_bytes: u64,
    /// Rotated files kept besides the current one (default 1); 0 starts over in an empty file.
    pub keep: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_bytes: 10 * 1024 * 1024,
            keep: 1,
        }
    }
}

/// Appends timestamped lines to one log file.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    limits: LogLimits,
    /// `None` after a failed reopen; reopened on the next write.
    file: Option<File>,
    /// Bytes in the current file.
    size: u64,
    /// A failure has been reported and nothing has succeeded since.
    failing: bool,
}

// === impl LogWriter ===

impl LogWriter {
    /// Open `path` for appending (creating it and its directories), keeping what it holds.
    pub fn open(path: impl Into<PathBuf>, limits: LogLimits) -> Result<Self, LogError> {
        let path = path.into();
        let (file, size) = open_append(&path)?;
        Ok(Self {
            path,
            limits,
            file: Some(file),
            size,
            failing: false,
        })
    }

    /// The current file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `line` (without its newline) stamped with the current time. Never fails: the
    /// first error of a run of failures is logged through `tracing`, and writing goes on with
    /// the next line.
    pub fn write(&mut self, stream: Stream, line: &str) {
        match self.try_write(Timestamp::now(), stream, line) {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!("instance log: {e}; lines are dropped until writing works again");
            }
            Err(_) => {}
        }
    }

    /// Append `line` stamped with `time`, rotating first if the file would outgrow its cap.
    pub fn try_write(
        &mut self,
        time: Timestamp,
        stream: Stream,
        line: &str,
    ) -> Result<(), LogError> {
        let record = encode(time, stream, line);
        let len = record.len() as u64;
        if self.size > 0 && self.size + len > self.limits.max_bytes {
            self.rotate()?;
        }
        let file = match &mut self.file {
            Some(file) => file,
            None => self.reopen()?,
        };
        file.write_all(record.as_bytes())
            .map_err(LogError::io("write", &self.path))?;
        self.size += len;
        Ok(())
    }

    /// `x.log` → `x.log.1` (older ones shift, those past `keep` are removed), then a new `x.log`.
    fn rotate(&mut self) -> Result<(), LogError> {
        self.file = None;
        let keep = self.limits.keep;
        remove_if_present(&rotated(&self.path, keep.max(1)))?;
        for n in (1..keep).rev() {
            rename_if_present(&rotated(&self.path, n), &rotated(&self.path, n + 1))?;
        }
        match keep {
            0 => remove_if_present(&self.path)?,
            _ => rename_if_present(&self.path, &rotated(&self.path, 1))?,
        }
        self.reopen()?;
        Ok(())
    }

    fn reopen(&mut self) -> Result<&mut File, LogError> {
        let (file, size) = open_append(&self.path)?;
        self.size = size;
        Ok(self.file.insert(file))
    }
}

fn open_append(path: &Path) -> Result<(File, u64), LogError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(LogError::io("create", dir))?;
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(LogError::io("open", path))?;
    let size = file.metadata().map_err(LogError::io("open", path))?.len();
    Ok((file, size))
}

fn remove_if_present(path: &Path) -> Result<(), LogError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io("rotate", path)(e)),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> Result<(), LogError> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io("rotate", from)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(second: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + second).unwrap()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// One record with a 1-character text is this long.
    const RECORD: u64 = "2027-01-15T08:00:00.000000000Z stdout F x\n".len() as u64;

    #[test]
    fn appends_timestamped_lines_and_creates_directories() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns/rev/i.log");
        let mut w = LogWriter::open(&path, LogLimits::default()).unwrap();
        w.try_write(t(0), Stream::Stdout, "one").unwrap();
        w.write(Stream::Stderr, "two");
        let text = read(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "2027-01-15T08:00:00.000000000Z stdout F one");
        assert!(lines[1].ends_with("Z stderr F two"), "{}", lines[1]);
    }

    #[test]
    fn reopening_appends_and_counts_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.log");
        let limits = LogLimits {
            max_bytes: 2 * RECORD,
            keep: 1,
        };
        LogWriter::open(&path, limits)
            .unwrap()
            .try_write(t(0), Stream::Stdout, "a")
            .unwrap();
        let mut w = LogWriter::open(&path, limits).unwrap();
        w.try_write(t(1), Stream::Stdout, "b").unwrap();
        w.try_write(t(2), Stream::Stdout, "c").unwrap();
        assert_eq!(read(&rotated(&path, 1)).lines().count(), 2);
        assert!(read(&path).ends_with(" c\n"));
    }

    #[test]
    fn rotation_shifts_files_and_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.log");
        let limits = LogLimits {
            max_bytes: RECORD,
            keep: 2,
        };
        let mut w = LogWriter::open(&path, limits).unwrap();
        for (i, text) in ["a", "b", "c", "d"].into_iter().enumerate() {
            w.try_write(t(i as i64), Stream::Stdout, text).unwrap();
        }
        assert!(read(&path).ends_with(" d\n"));
        assert!(read(&rotated(&path, 1)).ends_with(" c\n"));
        assert!(read(&rotated(&path, 2)).ends_with(" b\n"));
        assert!(!rotated(&path, 3).exists());
        assert_eq!(read(&path).len() as u64, RECORD);
    }

    #[test]
    fn keep_zero_starts_over_and_long_lines_are_still_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("i.log");
        let mut w = LogWriter::open(
            &path,
            LogLimits {
                max_bytes: RECORD,
                keep: 0,
            },
        )
        .unwrap();
        w.try_write(t(0), Stream::Stdout, "a").unwrap();
        w.try_write(t(1), Stream::Stdout, "much longer than the cap")
            .unwrap();
        assert!(read(&path).ends_with(" much longer than the cap\n"));
        assert_eq!(read(&path).lines().count(), 1);
        assert!(!rotated(&path, 1).exists());
    }

    #[test]
    fn a_failing_write_does_not_panic_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/i.log");
        let mut w = LogWriter::open(
            &path,
            LogLimits {
                max_bytes: RECORD,
                keep: 1,
            },
        )
        .unwrap();
        w.try_write(t(0), Stream::Stdout, "a").unwrap();
        // A directory where the rotated file must go makes rotation fail.
        std::fs::create_dir(rotated(&path, 1)).unwrap();
        std::fs::write(rotated(&path, 1).join("x"), "").unwrap();
        w.write(Stream::Stdout, "lost");
        w.write(Stream::Stdout, "lost too");
        std::fs::remove_dir_all(rotated(&path, 1)).unwrap();
        w.write(Stream::Stdout, "back");
        assert!(read(&path).ends_with(" back\n"), "{}", read(&path));
    }
}
