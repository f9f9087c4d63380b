//! Figures for `bench/all`: when the environment variable `BENCH_SUMMARY` names a file, each
//! benchmark appends one JSON line per headline figure, next to its peer measured in the same
//! run: `{"bench", "figure", "value", "peer", "peer_value", "unit", "better"}`. Without the
//! variable nothing is written; every program prints its own table as before.

use std::io::Write as _;

/// Which way a figure improves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// One figure and its peer.
#[derive(Clone, Debug)]
pub struct Figure<'a> {
    /// The program (`coldstart`, `burst`, ...).
    pub bench: &'a str,
    /// What was measured (`process zero → first byte`).
    pub figure: &'a str,
    pub value: f64,
    /// What it is compared with (`spawn floor`, `nginx`, `goal`).
    pub peer: &'a str,
    pub peer_value: f64,
    /// `ms`, `req/s`, `s`, `msg/s`.
    pub unit: &'a str,
    pub better: Better,
}

/// Append `figure` to `$BENCH_SUMMARY`, if set (a failure to write is printed, not fatal).
pub fn record(figure: &Figure<'_>) {
    let Some(path) = std::env::var_os("BENCH_SUMMARY") else {
        return;
    };
    let line = serde_json::json!({
        "bench": figure.bench,
        "figure": figure.figure,
        "value": figure.value,
        "peer": figure.peer,
        "peer_value": figure.peer_value,
        "unit": figure.unit,
        "better": match figure.better {
            Better::Lower => "lower",
            Better::Higher => "higher",
        },
    });
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        eprintln!(
            "cannot append to BENCH_SUMMARY {}: {e}",
            path.to_string_lossy()
        );
    }
}
