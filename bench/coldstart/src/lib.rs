//! Benchmark programs for Nimbus (`coldstart`, `burst`); this library holds what they share: a
//! minimal blocking HTTP/1.1 client (so timings carry no client-library overhead) and a driver
//! for `nimbus serve`.

pub mod http;
pub mod nimbus;
