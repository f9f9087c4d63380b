//! The recording side of Nimbus's Prometheus metrics, shared by every crate that measures
//! something: a fixed-bucket [`Histogram`] and status-class [`CodeCounters`] recorded with
//! relaxed atomics (no lock, no allocation, no label lookup per observation), and the pieces
//! that render what they hold at scrape time ([`HistogramSnapshot`], [`Rows`]).
//!
//! A crate keeps its own recorders next to what it measures and hands out snapshots; only the
//! binary's `/metrics` route decides names and labels. This crate never does I/O and never
//! keeps a registry of its own.

mod histogram;
mod rows;

pub use histogram::{
    COLD_START_BUCKETS, CodeCounters, Histogram, HistogramSnapshot, LATENCY_BUCKETS, SLOW_BUCKETS,
};
pub use rows::Rows;
