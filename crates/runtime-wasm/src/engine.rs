//! The one wasmtime [`Engine`] a runtime shares across revisions: component model, pooling
//! allocator sized from the config (its per-instance memory maximum is the ceiling of every
//! revision's memory limit), epoch interruption driven by a background ticker thread,
//! and the [`Linker`] offering WASI 0.2 plus `wasi:http`.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::WasmRuntimeConfig;
use crate::host::Host;

/// Build the engine: pooling allocator (instantiation reuses pre-reserved, copy-on-write
/// slots, so a request's instance costs microseconds) and epoch interruption (the request
/// timeout).
pub(crate) fn engine(config: &WasmRuntimeConfig) -> wasmtime::Result<Engine> {
    let mut wasm = Config::new();
    wasm.wasm_component_model(true);
    wasm.epoch_interruption(true);
    wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(config)));
    Engine::new(&wasm)
}

fn pool(config: &WasmRuntimeConfig) -> PoolingAllocationConfig {
    let instances = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(4))
        .total_stacks(instances)
        .max_memory_size(config.pool_memory_bytes())
        // A finished request's pages stay mapped and are reset in place (only the dirty ones,
        // found with PAGEMAP_SCAN where the kernel has it), so the next request in the slot
        // takes no page faults for them; beyond this the slot is decommitted as usual.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(wasmtime::Enabled::Auto);
    pool
}

/// Bytes of each memory and table kept resident between the requests a pool slot serves:
/// enough for a Rust guest's stack, data and first heap pages.
const KEEP_RESIDENT: usize = 2 << 20;

/// Every interface a `wasi:http/proxy` component may import, plus the rest of WASI 0.2's CLI
/// world (environment, filesystem, sockets) so that components built with `std` link. No
/// directory is preopened and no socket address is allowed, so only the environment adds
/// capability.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<Host>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

/// Advances the engine's epoch every `tick` until dropped.
pub(crate) struct EpochTicker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn spawn(engine: Engine, tick: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("nimbus-wasm-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_bounds_live_component_instances() {
        let config = WasmRuntimeConfig {
            max_instances: 1,
            ..WasmRuntimeConfig::default()
        };
        let engine = engine(&config).unwrap();
        let component = wasmtime::component::Component::new(
            &engine,
            "(component (core module $m (memory 1)) (core instance (instantiate $m)))",
        )
        .unwrap();
        let linker = wasmtime::component::Linker::<()>::new(&engine);
        let mut first = wasmtime::Store::new(&engine, ());
        let mut second = wasmtime::Store::new(&engine, ());
        linker.instantiate(&mut first, &component).unwrap();
        let error = linker.instantiate(&mut second, &component).unwrap_err();
        assert!(
            error.is::<wasmtime::PoolConcurrencyLimitError>(),
            "{error:?}"
        );
    }
}
