//! One revision's request limits: the manifest's values where it sets them, the runtime's
//! defaults ([`WasmRuntimeConfig`]) otherwise, checked against the pooling allocator once, when
//! the revision is first seen. Pure; no I/O.
//!
//! | limit | from the manifest | default |
//! |---|---|---|
//! | linear memory per request | `resources.limits.memory` | `memory_limit_bytes` |
//! | request deadline (epoch interruption) | `timeoutSeconds` | `request_timeout` |
//! | outbound HTTP hosts | annotation `nimbus.dev/allowed-outbound-hosts` | `allowed_outbound_hosts` |
//!
//! `containerConcurrency` is absent on purpose: the router enforces it per instance.

use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::InstanceSpec;

use crate::config::WasmRuntimeConfig;
use crate::error::LoadError;

/// The limits every request of one revision runs under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Total linear memory of one request's instance, in bytes.
    pub memory_bytes: usize,
    /// How long one request may run before it is interrupted (504).
    pub request_timeout: Duration,
    /// Where the component may send outgoing HTTP requests.
    pub outbound: OutboundHosts,
}

impl Limits {
    /// The revision's limits, or [`LoadError::MemoryLimitTooLarge`] when it asks for more
    /// memory than the pool gives one instance.
    pub fn for_revision(
        spec: &InstanceSpec,
        config: &WasmRuntimeConfig,
    ) -> Result<Self, LoadError> {
        let memory_bytes = match spec.resources.memory_limit {
            None => config.memory_limit_bytes,
            Some(requested) => within_pool(requested, config.pool_memory_bytes())?,
        };
        let hosts = match spec.allowed_outbound_hosts.as_slice() {
            [] => &config.allowed_outbound_hosts,
            hosts => hosts,
        };
        Ok(Self {
            memory_bytes,
            request_timeout: spec.request_timeout.unwrap_or(config.request_timeout),
            outbound: OutboundHosts(hosts.iter().cloned().collect()),
        })
    }

    /// Epoch ticks of `tick` in one request timeout, rounded up (at least one).
    pub fn deadline_ticks(&self, tick: Duration) -> u64 {
        let tick = tick.as_nanos().max(1);
        let ticks = self.request_timeout.as_nanos().div_ceil(tick);
        u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
    }
}

fn within_pool(requested: u64, maximum: usize) -> Result<usize, LoadError> {
    usize::try_from(requested)
        .ok()
        .filter(|bytes| *bytes <= maximum)
        .ok_or(LoadError::MemoryLimitTooLarge { requested, maximum })
}

/// `bytes` the way a person reads a memory size: `1 GiB`, `32 MiB`, `1536 KiB`, `1000 bytes`
/// (exact: the largest unit that divides it).
pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

// === impl OutboundHosts ===

/// Hosts (`name` or `name:port`) outgoing requests may go to; cheap to clone into each
/// request's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct OutboundHosts(Arc<[String]>);

impl OutboundHosts {
    /// Whether the guest may send a request to `authority` (`host` or `host:port`): an entry
    /// without a port allows every port of its host; names compare case-insensitively.
    pub fn allows(&self, authority: &str) -> bool {
        let host = authority
            .rsplit_once(':')
            .map_or(authority, |(host, _)| host);
        self.0.iter().any(|allowed| {
            allowed.eq_ignore_ascii_case(authority) || allowed.eq_ignore_ascii_case(host)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> WasmRuntimeConfig {
        WasmRuntimeConfig {
            memory_limit_bytes: 32 << 20,
            max_memory_bytes: 64 << 20,
            request_timeout: Duration::from_secs(300),
            allowed_outbound_hosts: vec!["default.example".into()],
            ..WasmRuntimeConfig::default()
        }
    }

    #[test]
    fn a_spec_without_limits_gets_the_defaults() {
        let limits = Limits::for_revision(&InstanceSpec::default(), &config()).unwrap();
        assert_eq!(limits.memory_bytes, 32 << 20);
        assert_eq!(limits.request_timeout, Duration::from_secs(300));
        assert!(limits.outbound.allows("default.example"));
    }

    #[test]
    fn the_manifest_overrides_each_default() {
        let mut spec = InstanceSpec::default();
        spec.resources.memory_limit = Some(48 << 20);
        spec.request_timeout = Some(Duration::from_secs(2));
        spec.allowed_outbound_hosts = vec!["api.local:8443".into()];
        let limits = Limits::for_revision(&spec, &config()).unwrap();
        assert_eq!(limits.memory_bytes, 48 << 20);
        assert_eq!(limits.request_timeout, Duration::from_secs(2));
        assert!(limits.outbound.allows("api.local:8443"));
        assert!(
            !limits.outbound.allows("default.example"),
            "replaced, not added"
        );
    }

    #[test]
    fn memory_up_to_the_pool_maximum_is_accepted_and_beyond_it_refused() {
        let mut spec = InstanceSpec::default();
        spec.resources.memory_limit = Some(64 << 20);
        assert_eq!(
            Limits::for_revision(&spec, &config()).unwrap().memory_bytes,
            64 << 20
        );
        spec.resources.memory_limit = Some((64 << 20) + 1);
        let error = Limits::for_revision(&spec, &config()).unwrap_err();
        assert_eq!(error.reason(), "MemoryLimitTooLarge");
        let message = error.to_string();
        assert!(message.contains("67108865 bytes"), "{message}");
        assert!(message.contains("67108864 bytes (64 MiB)"), "{message}");
        assert!(
            message.contains("lower resources.limits.memory"),
            "{message}"
        );
    }

    #[test]
    fn deadline_rounds_up_to_whole_ticks() {
        let tick = Duration::from_millis(10);
        let mut limits = Limits::for_revision(&InstanceSpec::default(), &config()).unwrap();
        assert_eq!(limits.deadline_ticks(tick), 30_000);
        limits.request_timeout = Duration::from_millis(15);
        assert_eq!(limits.deadline_ticks(tick), 2);
        limits.request_timeout = Duration::ZERO;
        assert_eq!(limits.deadline_ticks(tick), 1);
    }

    #[test]
    fn outbound_is_denied_unless_listed() {
        let none = OutboundHosts(Arc::new([]));
        assert!(!none.allows("example.com"));
        let some = OutboundHosts(["example.com".into(), "api.local:8443".into()].into());
        assert!(some.allows("example.com"));
        assert!(some.allows("EXAMPLE.com:443"));
        assert!(some.allows("api.local:8443"));
        assert!(!some.allows("api.local:80"));
        assert!(!some.allows("evil.com"));
    }

    #[test]
    fn sizes_read_exactly() {
        assert_eq!(human_bytes(2 << 30), "2 GiB");
        assert_eq!(human_bytes(1536 << 20), "1536 MiB");
        assert_eq!(human_bytes(32 << 20), "32 MiB");
        assert_eq!(human_bytes(1536 << 10), "1536 KiB");
        assert_eq!(human_bytes(100_000_000), "100000000 bytes");
        assert_eq!(human_bytes(0), "0 bytes");
    }
}
