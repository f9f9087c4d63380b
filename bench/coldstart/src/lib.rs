//! Benchmark programs for Nimbus (`coldstart`, `burst`); this library holds what they share: a
//! minimal blocking HTTP/1.1 client (so timings carry no client-library overhead), a driver
//! for `nimbus serve`, the spawn, runc and `wasmtime serve` floors of a cold start, idle-CPU
//! waits and summaries, and the figures `bench/all` collects ([`summary`]).

pub mod container;
pub mod floor;
pub mod http;
pub mod nimbus;
pub mod quiet;
pub mod stats;
pub mod summary;
pub mod wasm;
