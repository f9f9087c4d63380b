//! Tasks (a Job's run-to-completion work) on the Wasm runtime: one WASI command component
//! (`wasi:cli/command`, exporting `wasi:cli/run@0.2`: what `cargo build --target
//! wasm32-wasip2` makes of a `fn main` program) run once, from `run` to its exit.
//!
//! The steps are a revision's, without publishing anything: the component comes through the
//! same compile cache (`compile.rs`, on a blocking thread); the instance reads its Secret and
//! ConfigMap references and writes its volumes as an instance does at each start
//! ([`Started`]); its store has the revision's memory limit and outbound hosts ([`Limits`]),
//! the task's timeout as its epoch deadline, and yields to the executor every epoch tick, so a
//! spinning task runs on the async threads beside the requests without starving them.
//!
//! - **Arguments.** `argv[0]` is the component's file name (as `wasmtime run` does), followed
//!   by the container's `command` and then its `args`: the component is the program, so
//!   `command` does not replace it as on a container.
//! - **Exit.** `run` returning `ok` is exit code 0, `err` exit code 1, `wasi:cli/exit`'s
//!   `exit(ok)`/`exit(err)` 0/1, and its `exit-with-code(n)` exit code `n`. (Rust's
//!   `std::process::exit(n)` on wasm32-wasip2 calls `exit(err)` for every non-zero `n`: WASI
//!   0.2 carries no number there, so such a task shows exit code 1.) A trap fails the task with reason
//!   `Trap` (`OOMKilled` when it followed a refused memory grow), with the trap in the
//!   message.
//! - **End.** At the timeout (or when its epoch deadline passes first) the guest is dropped at
//!   its next yield and the task is `TimedOut`; the same on cancellation (`Cancelled`).
//! - **Never started** with the reasons a revision fails with (`ImageNotFound`,
//!   `InvalidComponent`, `WrongWorld` for a component that is not a command,
//!   `MemoryLimitTooLarge`, ...), `CreateContainerConfigError` when a Secret or ConfigMap is
//!   missing, `InstancePoolFull` when the pooling allocator has no free slot.
//! - **Output** goes to `<data_dir>/logs/<namespace>/<execution>/<task id>.log`; its last lines
//!   end the outcome's message.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::env::CONFIG_ERROR_REASON;
use nimbus_runtime::{InstanceSpec, TaskEnd, TaskOutcome, TaskRun};
use wasmtime::{PoolConcurrencyLimitError, Trap};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::compile;
use crate::error::LoadError;
use crate::handler::guest_store;
use crate::host::Host;
use crate::image::component_path;
use crate::instance::Started;
use crate::limits::{Limits, human_bytes};
use crate::output::{InstanceLog, RevisionLogs};
use crate::runtime::read_and_prepare;
use crate::state::Shared;

/// Output lines the outcome's message ends with.
const TAIL_LINES: usize = 50;

/// How the guest's run ended.
enum Ended {
    /// `run`'s result, and whether a memory grow was refused.
    Ran(wasmtime::Result<Result<(), ()>>, bool),
    /// The guest's task panicked.
    Panicked(String),
    TimedOut,
    Cancelled,
}

/// What a task runs: its command, its instance, its limits and its log.
struct Prepared {
    pre: CommandPre<Host>,
    started: Started,
    limits: Limits,
    id: String,
}

pub(crate) async fn run(shared: Arc<Shared>, spec: &InstanceSpec, task: TaskRun) -> TaskOutcome {
    let TaskRun {
        id,
        env,
        timeout,
        mut cancel,
    } = task;
    let mut spec = spec.clone();
    spec.env.extend(env);
    let cancelled = nimbus_runtime::cancelled(&mut cancel);
    tokio::pin!(cancelled);
    let preparing = tokio::task::spawn_blocking({
        let shared = Arc::clone(&shared);
        move || prepare(&shared, spec, id, timeout)
    });
    let prepared = tokio::select! {
        biased;
        () = &mut cancelled => return cancelled_before_start(),
        prepared = preparing => prepared.unwrap_or_else(|e| Err(not_started(
            LoadError::Interrupted.reason(),
            format!("preparing the task was interrupted: {e}"),
        ))),
    };
    match prepared {
        Ok(prepared) => prepared.run(&shared, timeout, cancelled).await,
        Err(outcome) => outcome,
    }
}

/// Load the command component and start its instance (blocking: compiles, reads the config
/// source, writes volumes).
fn prepare(
    shared: &Shared,
    spec: InstanceSpec,
    id: String,
    timeout: Duration,
) -> Result<Prepared, TaskOutcome> {
    let load_failed = |e: LoadError| not_started(e.reason(), format!("task {id}: {e}"));
    let mut limits = Limits::for_revision(&spec, &shared.config).map_err(load_failed)?;
    limits.request_timeout = timeout;
    let pre = read_and_prepare(shared, &spec, compile::load_command).map_err(load_failed)?;
    let log = shared
        .config
        .data_dir
        .as_deref()
        .map(|dir| RevisionLogs::new(dir, &spec.revision).task(id.clone(), TAIL_LINES));
    let start = shared
        .starts
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = shared.instance_dir(&spec.revision.namespace, &format!("{id}.{start}"));
    let source = shared.config_source.get().map(|s| &**s);
    let mut started = Started::new(&spec, source, dir, log)
        .map_err(|e| not_started(CONFIG_ERROR_REASON, format!("task {id}: {}", e.message)))?;
    started.args = argv(&spec);
    Ok(Prepared {
        pre,
        started,
        limits,
        id,
    })
}

/// The component's file name, then `command`, then `args`.
fn argv(spec: &InstanceSpec) -> Vec<String> {
    let program = component_path(spec.image.as_deref())
        .ok()
        .and_then(|path| Some(Path::new(path.file_name()?).display().to_string()))
        .unwrap_or_else(|| "main.wasm".to_owned());
    std::iter::once(program)
        .chain(spec.command.iter().cloned())
        .chain(spec.args.iter().cloned())
        .collect()
}

impl Prepared {
    /// Run the guest on the executor until it exits, its time is up, or it is cancelled.
    async fn run(
        self,
        shared: &Shared,
        timeout: Duration,
        cancelled: impl Future<Output = ()>,
    ) -> TaskOutcome {
        let host = match Host::new(&shared.config, &self.limits, &self.started) {
            Ok(host) => host,
            Err(e) => {
                let message = format!("task {}: cannot open its volumes: {e:#}", self.id);
                return not_started(CONFIG_ERROR_REASON, message);
            }
        };
        let ticks = self.limits.deadline_ticks(shared.config.epoch_tick);
        let mut store = guest_store(shared.linker.engine(), host, ticks);
        let pre = self.pre.clone();
        let mut guest = tokio::spawn(async move {
            let result = async {
                let command = pre.instantiate_async(&mut store).await?;
                command.wasi_cli_run().call_run(&mut store).await
            }
            .await;
            (result, store.data().limits.exceeded)
        });
        let ended = tokio::select! {
            joined = &mut guest => match joined {
                Ok((result, memory_exceeded)) => Ended::Ran(result, memory_exceeded),
                Err(e) => Ended::Panicked(e.to_string()),
            },
            () = tokio::time::sleep(timeout) => Ended::TimedOut,
            () = cancelled => Ended::Cancelled,
        };
        if !matches!(ended, Ended::Ran(..) | Ended::Panicked(_)) {
            // Dropped at its next epoch yield; its store (and its partial last lines) with it.
            guest.abort();
            let _ = guest.await;
        }
        self.outcome(ended, timeout)
    }

    fn outcome(&self, ended: Ended, timeout: Duration) -> TaskOutcome {
        let id = &self.id;
        let last = |what: String| with_output(what, self.started.log.as_deref());
        let failed = |reason: &str, what: String| TaskOutcome {
            end: TaskEnd::Failed {
                reason: reason.to_owned(),
            },
            exit_code: None,
            message: last(what),
        };
        let timed_out = || TaskOutcome {
            end: TaskEnd::TimedOut,
            exit_code: None,
            message: last(format!(
                "task {id} ran longer than its timeout of {}s and was stopped",
                timeout.as_secs()
            )),
        };
        let exited = |code: i32| {
            TaskOutcome::exited(code, last(format!("task {id} exited with code {code}")))
        };
        let error = match ended {
            Ended::Ran(Ok(Ok(())), _) => return exited(0),
            Ended::Ran(Ok(Err(())), _) => return exited(1),
            Ended::Ran(Err(error), memory_exceeded) => (error, memory_exceeded),
            Ended::Panicked(e) => return failed("Error", format!("task {id} failed: {e}")),
            Ended::TimedOut => return timed_out(),
            Ended::Cancelled => {
                return TaskOutcome {
                    end: TaskEnd::Cancelled,
                    exit_code: None,
                    message: last(format!("task {id} was cancelled")),
                };
            }
        };
        match error {
            (e, _) if e.downcast_ref::<I32Exit>().is_some() => {
                exited(e.downcast_ref::<I32Exit>().map_or(1, |exit| exit.0))
            }
            (e, _) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => timed_out(),
            (e, _) if e.is::<PoolConcurrencyLimitError>() => not_started(
                "InstancePoolFull",
                format!("task {id}: no Wasm instance slot is free; retry later ({e})"),
            ),
            (e, true) => {
                let limit = human_bytes(self.limits.memory_bytes as u64);
                let what = format!("task {id} exceeded its memory limit of {limit} ({e})");
                failed("OOMKilled", what)
            }
            (e, false) => match e.downcast_ref::<Trap>() {
                Some(trap) => failed("Trap", format!("task {id} trapped: {trap}")),
                None => failed("Error", format!("task {id} failed: {e:#}")),
            },
        }
    }
}

/// `what`, then the log's last lines (when the task has a log).
fn with_output(what: String, log: Option<&InstanceLog>) -> String {
    let Some(log) = log else {
        return what;
    };
    let output = log.tail();
    match output.is_empty() {
        true => format!("{what}; no output"),
        false => format!("{what}; last output:\n{}", output.join("\n")),
    }
}

fn not_started(reason: &str, message: String) -> TaskOutcome {
    TaskOutcome {
        end: TaskEnd::NotStarted {
            reason: reason.to_owned(),
        },
        exit_code: None,
        message,
    }
}

fn cancelled_before_start() -> TaskOutcome {
    TaskOutcome {
        end: TaskEnd::Cancelled,
        exit_code: None,
        message: "cancelled before it started".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_is_the_file_name_then_command_then_args() {
        let spec = InstanceSpec {
            image: Some("file:///srv/jobs/report.wasm".into()),
            command: vec!["--mode".into()],
            args: vec!["full".into(), "x y".into()],
            ..InstanceSpec::default()
        };
        assert_eq!(argv(&spec), ["report.wasm", "--mode", "full", "x y"]);
    }
}
