//! The WebAssembly runtime: serves revisions whose container `image:` names a WebAssembly
//! component (`runtimeClassName: wasm`) that exports `wasi:http/incoming-handler@0.2`, and
//! runs Job tasks whose component is a WASI command (`wasi:cli/run@0.2`).
//!
//! # Design
//!
//! - **Image.** `image:` is an absolute path or a `file://` URL to a `.wasm` component. OCI
//!   artifacts are not supported yet (the revision fails with `UnsupportedImage`).
//! - **Compile once per revision.** The first `set_desired` of a revision loads its component on
//!   a blocking thread: the precompiled artifact comes from
//!   `<data_dir>/wasm-cache/<engine>/<sha256>.cwasm` when present, otherwise the component is
//!   compiled and the artifact written there (`<engine>` hashes wasmtime's precompile
//!   compatibility, so artifacts of another version or configuration are never loaded). It is
//!   then linked (WASI 0.2 + `wasi:http`) into a `ProxyPre` once.
//! - **Instances are in-process.** An instance is published as an in-process endpoint
//!   ([`LocalHandle`](nimbus_runtime::LocalHandle)); the router calls it directly on the thread
//!   that accepted the request (no socket, no second HTTP parse), with the same traffic split,
//!   `containerConcurrency`, timeouts and metrics as any instance. An instance is ready as soon
//!   as it exists, which is an allocation once the component is loaded: scaling from zero
//!   costs microseconds.
//! - **One component instance per request** (the cold start), from the pooling allocator's
//!   pre-reserved copy-on-write slots. Nothing survives between requests.
//! - **Limits per request**, per revision from its manifest, the [`WasmRuntimeConfig`] giving the
//!   defaults: linear memory from `resources.limits.memory` (a trap after a refused grow is a 500
//!   naming the limit; asking for more than the pool's per-instance maximum fails the revision
//!   with `MemoryLimitTooLarge` before anything is compiled), a deadline from `timeoutSeconds`
//!   enforced by epoch interruption (a background thread advances the epoch every `epoch_tick`;
//!   the client gets a 504), outbound HTTP denied unless the host is listed in the annotation
//!   `nimbus.dev/allowed-outbound-hosts`, and the runtime-wide request body size (413). A fault
//!   drops only that request's store.
//! - **Concurrency.** `containerConcurrency` is enforced by the router, which never sends an
//!   instance more requests at once (the excess waits in its queue, or gets a 503 when the queue
//!   is full or the wait runs out); the runtime does not count a second time. Across the
//!   runtime, the pooling allocator's `max_instances` bounds live component instances (503).
//! - **Environment.** The component sees `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION` and the
//!   spec's `env` through `wasi:cli/environment`; its only preopened directories are its
//!   Secret/ConfigMap volumes (read-only), and it gets no socket address.
//! - **Output.** With a data directory, what the guest writes to stdout and stderr goes line by
//!   line into its instance's log file, `<data_dir>/logs/<namespace>/<revision>/<instance>.log`
//!   (the instance being the endpoint id `<revision>-<ordinal>`; CRI format, capped and rotated
//!   by `nimbus-logs`), which the API's `log` subresource and `nimbus logs` read, and to
//!   `tracing` at debug level. The file is opened on the first line; long lines are cut at 4 KiB;
//!   a request's partial last line is written when the request ends. Removing a revision
//!   deletes its logs. Without a data directory, output goes to the server's stdout/stderr
//!   (`inherit_stdio`) or nowhere.
//! - **Status.** Like the process runtime: `Starting` while loading, `Ready` once an instance
//!   runs (or once loaded with zero wanted), `Failed` with a CamelCase reason when the
//!   component cannot be served: `ImageNotFound`, `InvalidComponent` (not a component, not
//!   valid), `WrongWorld` (missing export or unknown imports), `UnsupportedImage`,
//!   `MemoryLimitTooLarge`.
//! - **Tasks** (a Job's run-to-completion work,
//!   [`Runtime::run_task`](nimbus_runtime::Runtime::run_task)): the component is a **WASI
//!   command** (the `wasi:cli/command` world, exporting `wasi:cli/run@0.2`: what `cargo
//!   build --target wasm32-wasip2` makes of a plain `fn main` program; `examples/task` is one),
//!   instantiated once and run from `run` to its exit. It comes through the same compile cache,
//!   and its instance starts as a revision's does (env references resolved, Secret/ConfigMap
//!   volumes preopened read-only, the memory limit, outbound HTTP only to the annotation's
//!   hosts; no sockets), with the task's env after the spec's. `argv` is the component's file
//!   name, then `command`, then `args` (the component is the program, so `command` does not
//!   replace it as on a container). It runs on the async executor, yielding every epoch tick,
//!   so a spinning task never holds a worker thread; at its timeout, or when cancelled, it is
//!   dropped at its next yield (`TimedOut`, `Cancelled`). `run` returning `ok` is exit code 0,
//!   `err` exit code 1, `wasi:cli/exit`'s `exit-with-code(n)` exit code `n` (Rust's
//!   `std::process::exit(n)` on wasm32-wasip2 calls WASI 0.2's `exit(err)`, which carries no
//!   number: any non-zero code shows as 1), a trap fails it with reason `Trap` (`OOMKilled`
//!   after a refused memory grow). Its output goes to
//!   `<data_dir>/logs/<namespace>/<execution>/<task id>.log`, and its last 50 lines end the
//!   outcome's message. A component that cannot start never runs (`NotStarted` with the
//!   reasons above; an HTTP component is `WrongWorld`: a task needs a command), and a command
//!   component deployed as a revision fails with `WrongWorld` as before.
//!
//! This crate decides nothing about *how many* instances run and never reads API objects.

mod body;
mod compile;
mod config;
mod engine;
mod error;
mod handler;
mod host;
mod image;
mod instance;
mod limits;
mod output;
mod runtime;
mod state;
mod task;

pub use config::WasmRuntimeConfig;
pub use error::LoadError;
pub use runtime::{CompileStats, WasmRuntime, WasmRuntimeError};
