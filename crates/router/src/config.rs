//! The router's tuning knobs: limits on what clients may send, how long and how many requests
//! may wait for capacity, and how instance connections are pooled. Owns only the values and
//! their defaults; it never opens sockets.

use std::time::Duration;

/// hyper's built-in limit on HTTP/1 header fields, parsed without allocating.
pub(crate) const HYPER_MAX_HEADERS: usize = 100;

/// How the router serves clients and talks to instances. `RouterConfig::default()` is what
/// production uses; tests shorten the timeouts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    /// Largest HTTP/1 request head (request line plus headers) accepted, in bytes. Larger heads
    /// are answered with `431 Request Header Fields Too Large` and the connection is closed.
    /// hyper enforces a floor of 8 KiB.
    pub max_header_bytes: usize,
    /// Most header fields accepted in one HTTP/1 request (more ⇒ 431). The default, 100, is
    /// hyper's own (and Envoy's): hyper parses up to 100 headers in a buffer on the stack, while
    /// any other limit costs a heap buffer and its initialisation on every request.
    pub max_headers: usize,
    /// Largest HTTP/2 header list accepted from clients, in bytes (HPACK-decoded size).
    pub max_h2_header_list_bytes: u32,
    /// How long a client may take to send a complete HTTP/1 request head.
    pub header_read_timeout: Duration,
    /// How long opening a TCP connection to an instance may take before the request fails
    /// with 502.
    pub connect_timeout: Duration,
    /// How long an idle keep-alive connection to an instance is kept in the pool.
    pub pool_idle_timeout: Duration,
    /// Most idle keep-alive connections kept per instance.
    pub pool_max_idle_per_instance: usize,
    /// Threads serving clients, each with its own single-threaded runtime and accept loop
    /// (connections stay on the thread that accepted them, with the instance connections they
    /// use). One thread serves tens of thousands of requests a second; more help only where
    /// there are spare cores. 0 serves clients on the runtime that calls `serve`.
    pub workers: usize,
    /// How long `serve` waits, after its shutdown future fired, for open connections to finish.
    pub drain_timeout: Duration,
    /// Most requests of one revision that may wait at once for an instance with free capacity
    /// (scale from zero, or every instance at its `containerConcurrency`). Beyond it requests
    /// get `503` with `Retry-After` at once.
    pub max_queued_per_revision: usize,
    /// Longest a request waits for capacity; the revision's `timeoutSeconds` applies when
    /// shorter. Then it gets `503` with `Retry-After`.
    pub max_activation_wait: Duration,
}

impl Default for RouterConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: HYPER_MAX_HEADERS,
            max_h2_header_list_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_instance: 1024,
            workers: 1,
            drain_timeout: Duration::from_secs(30),
            max_queued_per_revision: 1000,
            max_activation_wait: Duration::from_secs(60),
        }
    }
}
