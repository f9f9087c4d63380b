//! How the Wasm runtime behaves: where compiled components are cached, and the limits every
//! request runs under. Plain data with documented defaults; no I/O.
//!
//! The limits are runtime-wide for now: [`nimbus_runtime::InstanceSpec`] does not yet carry a
//! revision's `resources.limits.memory`, `timeoutSeconds`, `containerConcurrency` or allowed
//! outbound hosts. Once it does, each field here becomes the default the spec overrides.

use std::path::PathBuf;
use std::time::Duration;

/// Configuration of a [`crate::WasmRuntime`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmRuntimeConfig {
    /// Where precompiled components are cached:
    /// `<data_dir>/wasm-cache/<engine>/<sha256>.cwasm`. `None` compiles in memory on every start.
    pub data_dir: Option<PathBuf>,
    /// Linear memory one request's instance may grow to, in bytes (default 128 MiB). Growing
    /// past it fails inside the guest; a guest that then traps gets a 500 naming the limit.
    pub max_memory_bytes: usize,
    /// Wall-clock and CPU budget of one request (default 300 s, Knative's `timeoutSeconds`
    /// default). Guest code is interrupted at the deadline (epoch interruption); the client gets
    /// a 504.
    pub request_timeout: Duration,
    /// Requests one instance runs at once; further ones wait for a slot (Knative's
    /// `containerConcurrency`). `0` means unlimited (default).
    pub max_concurrent_per_instance: usize,
    /// Largest request body accepted, in bytes (default 16 MiB); larger ones get a 413.
    pub max_body_bytes: u64,
    /// Hosts (`name` or `name:port`) the component may send outgoing HTTP requests to. Empty
    /// (default): every outgoing request is denied with `HTTP-request-denied`.
    pub allowed_outbound_hosts: Vec<String>,
    /// How often the epoch advances (default 10 ms): the granularity of the request timeout.
    pub epoch_tick: Duration,
    /// Component instances that may exist at once across all revisions: the size of the pooling
    /// allocator (default 1000). A request beyond it gets a 503 (safe to retry).
    pub max_instances: u32,
    /// Send the guest's stdout and stderr to this process's stdout and stderr (default true);
    /// otherwise they are discarded.
    pub inherit_stdio: bool,
}

impl Default for WasmRuntimeConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            max_memory_bytes: 128 << 20,
            request_timeout: Duration::from_secs(300),
            max_concurrent_per_instance: 0,
            max_body_bytes: 16 << 20,
            allowed_outbound_hosts: Vec::new(),
            epoch_tick: Duration::from_millis(10),
            max_instances: 1000,
            inherit_stdio: true,
        }
    }
}

impl WasmRuntimeConfig {
    /// Epoch ticks in one request timeout (at least one).
    pub(crate) fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        let ticks = self.request_timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }

    /// Whether the guest may send a request to `authority` (`host` or `host:port`).
    pub(crate) fn allows_outbound(&self, authority: &str) -> bool {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        self.allowed_outbound_hosts.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(authority) || allowed.eq_ignore_ascii_case(host)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let mut c = WasmRuntimeConfig::default();
        assert_eq!(c.deadline_ticks(), 30_000);
        c.request_timeout = Duration::from_millis(15);
        assert_eq!(c.deadline_ticks(), 2);
        c.request_timeout = Duration::ZERO;
        assert_eq!(c.deadline_ticks(), 1);
    }

    #[test]
    fn outbound_is_denied_unless_listed() {
        let mut c = WasmRuntimeConfig::default();
        assert!(!c.allows_outbound("example.com"));
        c.allowed_outbound_hosts = vec!["example.com".into(), "api.local:8443".into()];
        assert!(c.allows_outbound("example.com"));
        assert!(c.allows_outbound("EXAMPLE.com:443"));
        assert!(c.allows_outbound("api.local:8443"));
        assert!(!c.allows_outbound("api.local:80"));
        assert!(!c.allows_outbound("evil.com"));
    }
}
