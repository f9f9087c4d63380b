//! Reading and following: merge order, `since`/`tail`, rotation while reading, new files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use super::*;
use crate::format::Stream;
use crate::writer::{LogLimits, LogWriter};
use crate::{DEFAULT_POLL, follow};

fn t(second: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + second).unwrap()
}

fn writer(dir: &Path, instance: &str, limits: LogLimits) -> LogWriter {
    LogWriter::open(dir.join(format!("{instance}.log")), limits).unwrap()
}

fn texts(lines: &[LogLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| format!("{}:{}", l.instance, l.text))
        .collect()
}

/// A limit that rotates after every `n` short lines.
fn every(n: u64) -> LogLimits {
    LogLimits {
        max_bytes: n * "2027-01-15T08:00:00.000000000Z stdout F l00\n".len() as u64,
        keep: 5,
    }
}

#[test]
fn instances_are_merged_by_time_with_their_names() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = writer(dir.path(), "a", LogLimits::default());
    let mut b = writer(dir.path(), "b", LogLimits::default());
    a.try_write(t(1), Stream::Stdout, "a1").unwrap();
    b.try_write(t(2), Stream::Stderr, "b2").unwrap();
    a.try_write(t(3), Stream::Stdout, "a3").unwrap();
    b.try_write(t(0), Stream::Stdout, "b0").unwrap();
    let lines = read_revision(dir.path(), None, None).unwrap();
    assert_eq!(texts(&lines), ["b:b0", "a:a1", "b:b2", "a:a3"]);
    assert_eq!(lines[2].stream, Stream::Stderr);
    assert_eq!(lines[2].time, t(2));
}

#[test]
fn rotated_files_are_read_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = writer(dir.path(), "a", every(2));
    for i in 0..7 {
        a.try_write(t(i), Stream::Stdout, &format!("l{i:02}"))
            .unwrap();
    }
    assert!(dir.path().join("a.log.3").exists());
    let lines = read_revision(dir.path(), None, None).unwrap();
    let expected: Vec<String> = (0..7).map(|i| format!("a:l{i:02}")).collect();
    assert_eq!(texts(&lines), expected);
}

#[test]
fn since_and_tail_apply_to_the_merged_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = writer(dir.path(), "a", every(2));
    let mut b = writer(dir.path(), "b", LogLimits::default());
    for i in 0..6 {
        let w = if i % 2 == 0 { &mut a } else { &mut b };
        w.try_write(t(i), Stream::Stdout, &format!("l{i:02}"))
            .unwrap();
    }
    let since = read_revision(dir.path(), Some(t(3)), None).unwrap();
    assert_eq!(texts(&since), ["b:l03", "a:l04", "b:l05"]);
    let tail = read_revision(dir.path(), None, Some(2)).unwrap();
    assert_eq!(texts(&tail), ["a:l04", "b:l05"]);
    let both = read_revision(dir.path(), Some(t(1)), Some(10)).unwrap();
    assert_eq!(both.len(), 5);
    assert!(read_revision(dir.path(), None, Some(0)).unwrap().is_empty());
}

#[test]
fn several_revision_directories_merge_and_missing_ones_are_empty() {
    let root = tempfile::tempdir().unwrap();
    let one = root.path().join("r1");
    let two = root.path().join("r2");
    writer(&one, "r1-1", LogLimits::default())
        .try_write(t(2), Stream::Stdout, "late")
        .unwrap();
    writer(&two, "r2-1", LogLimits::default())
        .try_write(t(1), Stream::Stdout, "early")
        .unwrap();
    let dirs = [one, two, root.path().join("never")];
    let lines = read_dirs(&dirs, None, None).unwrap();
    assert_eq!(texts(&lines), ["r2-1:early", "r1-1:late"]);
}

#[test]
fn lines_not_in_the_format_and_unfinished_lines_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.log"),
        "plain old line\n2027-01-15T08:00:00Z stdout F ok\n2027-01-15T08:00:01Z stdout F unfini",
    )
    .unwrap();
    let mut follower = Follower::new(None);
    let dirs = [dir.path().to_path_buf()];
    assert_eq!(texts(&follower.poll(&dirs).unwrap()), ["a:ok"]);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("a.log"))
        .unwrap();
    std::io::Write::write_all(&mut file, b"shed\n").unwrap();
    assert_eq!(texts(&follower.poll(&dirs).unwrap()), ["a:unfinished"]);
}

#[test]
fn a_follower_sees_new_lines_new_files_and_rotations_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = [dir.path().to_path_buf()];
    let mut a = writer(dir.path(), "a", every(2));
    a.try_write(t(0), Stream::Stdout, "l00").unwrap();
    let mut follower = Follower::new(None);
    assert_eq!(texts(&follower.poll(&dirs).unwrap()), ["a:l00"]);
    assert!(follower.poll(&dirs).unwrap().is_empty());
    // Three rotations between two polls, and a new instance.
    for i in 1..8 {
        a.try_write(t(i), Stream::Stdout, &format!("l{i:02}"))
            .unwrap();
    }
    writer(dir.path(), "b", LogLimits::default())
        .try_write(t(100), Stream::Stderr, "b")
        .unwrap();
    let expected: Vec<String> = (1..8)
        .map(|i| format!("a:l{i:02}"))
        .chain(["b:b".to_string()])
        .collect();
    assert_eq!(texts(&follower.poll(&dirs).unwrap()), expected);
    a.try_write(t(8), Stream::Stdout, "l08").unwrap();
    assert_eq!(texts(&follower.poll(&dirs).unwrap()), ["a:l08"]);
}

#[test]
fn a_follower_after_the_oldest_file_was_dropped_reads_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = [dir.path().to_path_buf()];
    let limits = LogLimits {
        keep: 1,
        ..every(1)
    };
    let mut a = writer(dir.path(), "a", limits);
    a.try_write(t(0), Stream::Stdout, "l00").unwrap();
    let mut follower = Follower::new(None);
    assert_eq!(follower.poll(&dirs).unwrap().len(), 1);
    for i in 1..5 {
        a.try_write(t(i), Stream::Stdout, &format!("l{i:02}"))
            .unwrap();
    }
    // l01 and l02 are gone with the dropped files; l03 (a.log.1) and l04 remain.
    assert_eq!(texts(&follower.poll(&dirs).unwrap()), ["a:l03", "a:l04"]);
}

async fn next_texts(rx: &mut tokio::sync::mpsc::Receiver<LogLine>, n: usize) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < n {
        let line = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a line within 10 s")
            .expect("the follower is running");
        got.push(format!("{}:{}", line.instance, line.text));
    }
    got
}

#[tokio::test]
async fn follow_streams_existing_then_new_lines_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().to_path_buf();
    let mut a = writer(&path, "a", every(2));
    for i in 0..3 {
        a.try_write(t(i), Stream::Stdout, &format!("l{i:02}"))
            .unwrap();
    }
    let dirs = path.clone();
    let mut rx = follow(
        move || vec![dirs.clone()],
        None,
        Some(2),
        Duration::from_millis(20),
    );
    assert_eq!(next_texts(&mut rx, 2).await, ["a:l01", "a:l02"]);
    for i in 3..8 {
        a.try_write(t(i), Stream::Stdout, &format!("l{i:02}"))
            .unwrap();
    }
    let expected: Vec<String> = (3..8).map(|i| format!("a:l{i:02}")).collect();
    assert_eq!(next_texts(&mut rx, 5).await, expected);
    writer(&path, "b", LogLimits::default())
        .try_write(t(9), Stream::Stdout, "new instance")
        .unwrap();
    assert_eq!(next_texts(&mut rx, 1).await, ["b:new instance"]);
    assert!(rx.try_recv().is_err());
}

#[tokio::test]
async fn follow_ends_when_the_receiver_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let dirs = dir.path().to_path_buf();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    // The directory closure is dropped with the task: its sender going away proves the end.
    let rx = follow(
        move || {
            let _keep = &done_tx;
            vec![dirs.clone()]
        },
        None,
        None,
        DEFAULT_POLL,
    );
    drop(rx);
    let ended = tokio::task::spawn_blocking(move || done_rx.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(ended.is_err_and(|e| e == std::sync::mpsc::RecvTimeoutError::Disconnected));
}
