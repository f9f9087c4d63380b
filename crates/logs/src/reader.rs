//! Reading log files: everything a set of revision directories holds, merged by time, and then
//! whatever was appended since — across rotations and new instance files.
//!
//! A [`Follower`] keeps, per instance, the open file it reads and the bytes of an unfinished
//! last line. On Unix an open file survives being renamed, so after a rotation the follower
//! finishes the old file through its handle, then reads any rotated files newer than it, then
//! the new current file from the start: no line is lost or read twice. Each call to
//! [`Follower::poll`] is short, synchronous file I/O.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::error::LogError;
use crate::format::{LogLine, decode};
use crate::paths::{instances_in, rotated_files};

/// Every line under `dirs` (one directory per revision), oldest first, from `since` on (if
/// given), at most the last `tail` (if given).
pub fn read_dirs(
    dirs: &[PathBuf],
    since: Option<Timestamp>,
    tail: Option<usize>,
) -> Result<Vec<LogLine>, LogError> {
    let mut lines = Follower::new(since).poll(dirs)?;
    keep_tail(&mut lines, tail);
    Ok(lines)
}

/// Every line of one revision's instances: [`read_dirs`] for one directory.
pub fn read_revision(
    dir: &Path,
    since: Option<Timestamp>,
    tail: Option<usize>,
) -> Result<Vec<LogLine>, LogError> {
    read_dirs(&[dir.to_path_buf()], since, tail)
}

/// Drop all but the last `tail` lines.
pub(crate) fn keep_tail(lines: &mut Vec<LogLine>, tail: Option<usize>) {
    if let Some(n) = tail {
        let cut = lines.len().saturating_sub(n);
        lines.drain(..cut);
    }
}

/// Reads log directories incrementally: the first [`poll`](Self::poll) returns what is there,
/// each later one what was written since.
#[derive(Debug, Default)]
pub struct Follower {
    since: Option<Timestamp>,
    /// By current file path.
    cursors: BTreeMap<PathBuf, Cursor>,
}

/// Where reading one instance's log stands.
#[derive(Debug)]
struct Cursor {
    instance: String,
    file: File,
    /// Inode of `file`: a different inode at the path means the file was rotated.
    ino: u64,
    /// Bytes after the last newline read so far.
    partial: Vec<u8>,
}

// === impl Follower ===

impl Follower {
    /// A follower that skips lines older than `since`.
    pub fn new(since: Option<Timestamp>) -> Self {
        Self {
            since,
            cursors: BTreeMap::new(),
        }
    }

    /// The lines written under `dirs` since the last poll (all of them the first time), merged
    /// across instances by time. Directories and files that do not exist (yet) are skipped;
    /// directories may change between polls.
    pub fn poll(&mut self, dirs: &[PathBuf]) -> Result<Vec<LogLine>, LogError> {
        let mut lines = Vec::new();
        for dir in dirs {
            for (instance, path) in instances_in(dir)? {
                self.poll_instance(instance, path, &mut lines)?;
            }
        }
        if let Some(since) = self.since {
            lines.retain(|l| l.time >= since);
        }
        lines.sort_by_key(|l| l.time);
        Ok(lines)
    }

    fn poll_instance(
        &mut self,
        instance: String,
        path: PathBuf,
        out: &mut Vec<LogLine>,
    ) -> Result<(), LogError> {
        match self.cursors.get_mut(&path) {
            Some(cursor) => cursor.advance(&path, out),
            None => {
                if let Some(cursor) = Cursor::start(instance, &path, out)? {
                    self.cursors.insert(path, cursor);
                }
                Ok(())
            }
        }
    }
}

// === impl Cursor ===

impl Cursor {
    /// Read an instance's rotated files, oldest first, then its current file, and stay on it.
    /// `None` if the file vanished meanwhile.
    fn start(
        instance: String,
        path: &Path,
        out: &mut Vec<LogLine>,
    ) -> Result<Option<Self>, LogError> {
        let Some((file, ino)) = open(path)? else {
            return Ok(None);
        };
        let mut cursor = Self {
            instance,
            file,
            ino,
            partial: Vec::new(),
        };
        cursor.read_rotated(path, None, out)?;
        cursor.read_current(path, out)?;
        Ok(Some(cursor))
    }

    /// Read what was appended; on rotation, finish the old file and move to the new one.
    fn advance(&mut self, path: &Path, out: &mut Vec<LogLine>) -> Result<(), LogError> {
        self.read_current(path, out)?;
        // A missing path is a rotation in progress (renamed, not yet recreated).
        if inode(path)?.is_none_or(|ino| ino == self.ino) {
            return Ok(());
        }
        let Some((file, ino)) = open(path)? else {
            return Ok(());
        };
        self.flush_partial(out);
        let old = self.ino;
        (self.file, self.ino) = (file, ino);
        self.read_rotated(path, Some(old), out)?;
        self.read_current(path, out)
    }

    /// Read whole the rotated files newer than the one with inode `after` (all of them when it
    /// is `None` or gone), skipping the current file's inode.
    fn read_rotated(
        &mut self,
        path: &Path,
        after: Option<u64>,
        out: &mut Vec<LogLine>,
    ) -> Result<(), LogError> {
        let mut files = Vec::new();
        for (_, rotated) in rotated_files(path)? {
            if let Some((file, ino)) = open(&rotated)? {
                files.push((file, ino, rotated));
            }
        }
        let start = after
            .and_then(|old| files.iter().position(|(_, ino, _)| *ino == old))
            .map_or(0, |i| i + 1);
        for (mut file, ino, rotated) in files.into_iter().skip(start) {
            if ino != self.ino {
                let bytes = read_to_end(&mut file, &rotated)?;
                self.parse(&bytes, out);
                self.flush_partial(out);
            }
        }
        Ok(())
    }

    fn read_current(&mut self, path: &Path, out: &mut Vec<LogLine>) -> Result<(), LogError> {
        let bytes = read_to_end(&mut self.file, path)?;
        self.parse(&bytes, out);
        Ok(())
    }

    /// Split `bytes` (after any kept partial line) into lines; keep an unfinished last line.
    fn parse(&mut self, bytes: &[u8], out: &mut Vec<LogLine>) {
        self.partial.extend_from_slice(bytes);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        for line in complete.split(|&b| b == b'\n') {
            self.push(line, out);
        }
    }

    /// A file ended without a newline (a writer cut short): keep that line as it is.
    fn flush_partial(&mut self, out: &mut Vec<LogLine>) {
        let partial = std::mem::take(&mut self.partial);
        self.push(&partial, out);
    }

    fn push(&self, line: &[u8], out: &mut Vec<LogLine>) {
        let line = String::from_utf8_lossy(line);
        if let Some((time, stream, text)) = decode(&line) {
            out.push(LogLine {
                instance: self.instance.clone(),
                time,
                stream,
                text: text.to_string(),
            });
        }
    }
}

/// The open file and its inode; `None` if it does not exist.
fn open(path: &Path) -> Result<Option<(File, u64)>, LogError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("open", path)(e)),
    };
    let ino = file.metadata().map_err(LogError::io("open", path))?.ino();
    Ok(Some((file, ino)))
}

/// The inode at `path`; `None` if nothing is there.
fn inode(path: &Path) -> Result<Option<u64>, LogError> {
    match std::fs::metadata(path) {
        Ok(meta) => Ok(Some(meta.ino())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LogError::io("open", path)(e)),
    }
}

fn read_to_end(file: &mut File, path: &Path) -> Result<Vec<u8>, LogError> {
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(LogError::io("read", path))?;
    Ok(bytes)
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
