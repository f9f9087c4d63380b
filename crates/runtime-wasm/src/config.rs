//! How the Wasm runtime behaves: where compiled components are cached, the size of the
//! pooling allocator, and the limits a request runs under when its revision does not set them.
//! Plain data with documented defaults; no I/O.
//!
//! Per revision, the manifest wins (see `limits.rs`): `resources.limits.memory` replaces
//! [`WasmRuntimeConfig::memory_limit_bytes`] (up to [`WasmRuntimeConfig::max_memory_bytes`]),
//! `timeoutSeconds` replaces [`WasmRuntimeConfig::request_timeout`], and the annotation
//! `nimbus.dev/allowed-outbound-hosts` replaces [`WasmRuntimeConfig::allowed_outbound_hosts`].
//! `containerConcurrency` is not enforced here at all: the router already keeps each instance
//! at or below it (`crates/router/src/capacity.rs`), queueing the excess and answering 503 when
//! the queue is full or the wait runs out, so the runtime does not limit twice.

use std::path::PathBuf;
use std::time::Duration;

/// Wasm pages are 64 KiB.
const PAGE: usize = 64 << 10;

/// Configuration of a [`crate::WasmRuntime`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WasmRuntimeConfig {
    /// Where precompiled components are cached
    /// (`<data_dir>/wasm-cache/<engine>/<sha256>.cwasm`) and instance logs are written
    /// (`<data_dir>/logs/<namespace>/<revision>/<instance>.log`). `None` compiles in memory on
    /// every start and keeps no logs.
    pub data_dir: Option<PathBuf>,
    /// Linear memory one request's instance may grow to, in bytes, when the revision sets no
    /// `resources.limits.memory` (default 128 MiB). Growing past it fails inside the guest; a
    /// guest that then traps gets a 500 naming the limit.
    pub memory_limit_bytes: usize,
    /// The pooling allocator's per-instance maximum of linear memory, in bytes, rounded up to
    /// whole 64 KiB pages (default 1 GiB, at most 4 GiB): the largest `resources.limits.memory`
    /// a revision may ask for. A revision asking for more fails with `MemoryLimitTooLarge`.
    /// Must be at least `memory_limit_bytes`.
    pub max_memory_bytes: usize,
    /// Wall-clock and CPU budget of one request when the revision sets no `timeoutSeconds`
    /// (default 300 s, Knative's default). Guest code is interrupted at the deadline (epoch
    /// interruption); the client gets a 504.
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes (default 16 MiB); larger ones get a 413.
    pub max_body_bytes: u64,
    /// Hosts (`name` or `name:port`) a component may send outgoing HTTP requests to when its
    /// revision has no `nimbus.dev/allowed-outbound-hosts` annotation. Empty (default): every
    /// outgoing request is denied with `HTTP-request-denied`.
    pub allowed_outbound_hosts: Vec<String>,
    /// How often the epoch advances (default 10 ms): the granularity of the request timeout.
    pub epoch_tick: Duration,
    /// Component instances that may exist at once across all revisions: the size of the pooling
    /// allocator (default 1000). A request beyond it gets a 503 (safe to retry).
    pub max_instances: u32,
    /// Without a `data_dir`, send the guest's stdout and stderr to this process's stdout and
    /// stderr (default true); otherwise they are discarded. With a `data_dir` they go to the
    /// instance's log file instead, whatever this says.
    pub inherit_stdio: bool,
    /// The directories `image:` may name a component in (issue #13): a component must be a
    /// regular file under one of them, reached without a symlink out of it. `None` (the
    /// library's default, for embedding and tests): any path. `nimbus serve` always sets it
    /// (`--wasm-dir`, default its working directory).
    pub component_dirs: Option<Vec<PathBuf>>,
    /// The largest component file read, in bytes (default 256 MiB).
    pub max_component_bytes: u64,
}

impl Default for WasmRuntimeConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            memory_limit_bytes: 128 << 20,
            max_memory_bytes: 1 << 30,
            request_timeout: Duration::from_secs(300),
            max_body_bytes: 16 << 20,
            allowed_outbound_hosts: Vec::new(),
            epoch_tick: Duration::from_millis(10),
            max_instances: 1000,
            inherit_stdio: true,
            component_dirs: None,
            max_component_bytes: 256 << 20,
        }
    }
}

impl WasmRuntimeConfig {
    /// The pool's per-instance memory maximum as the engine gets it: `max_memory_bytes` rounded
    /// up to whole pages (at least one).
    pub(crate) fn pool_memory_bytes(&self) -> usize {
        self.max_memory_bytes.div_ceil(PAGE).max(1) * PAGE
    }

    /// Why this configuration cannot work, if it cannot.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.memory_limit_bytes > self.pool_memory_bytes() {
            return Err(format!(
                "memory_limit_bytes ({}) is more than max_memory_bytes ({})",
                self.memory_limit_bytes,
                self.pool_memory_bytes()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_consistent() {
        let c = WasmRuntimeConfig::default();
        assert_eq!(c.check(), Ok(()));
        assert_eq!(c.pool_memory_bytes(), c.max_memory_bytes);
    }

    #[test]
    fn the_pool_maximum_is_whole_pages() {
        let mut c = WasmRuntimeConfig {
            max_memory_bytes: PAGE + 1,
            memory_limit_bytes: 1,
            ..WasmRuntimeConfig::default()
        };
        assert_eq!(c.pool_memory_bytes(), 2 * PAGE);
        c.max_memory_bytes = 0;
        assert_eq!(c.pool_memory_bytes(), PAGE);
    }

    #[test]
    fn a_default_limit_above_the_pool_is_refused() {
        let c = WasmRuntimeConfig {
            max_memory_bytes: 32 << 20,
            ..WasmRuntimeConfig::default()
        };
        let error = c.check().unwrap_err();
        assert!(
            error.contains("134217728") && error.contains("33554432"),
            "{error}"
        );
    }

    /// The README's Wasm section states these defaults; keep the two in step.
    #[test]
    fn the_readme_states_the_defaults() {
        let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(readme).unwrap();
        let start = readme
            .find("## WebAssembly functions")
            .expect("Wasm section");
        let section = &readme[start..];
        let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
        let section = &section[..end];
        let c = WasmRuntimeConfig::default();
        let human = |bytes: usize| crate::limits::human_bytes(bytes as u64);
        let stated = [
            format!("| {} |", human(c.memory_limit_bytes)),
            format!("maximum ({})", human(c.max_memory_bytes)),
            format!("| {} s |", c.request_timeout.as_secs()),
            format!("over {}", crate::limits::human_bytes(c.max_body_bytes)),
        ];
        for fact in stated {
            assert!(
                section.contains(&fact),
                "README's Wasm section lacks {fact:?}"
            );
        }
        assert!(c.allowed_outbound_hosts.is_empty() && section.contains("| none |"));
    }
}
