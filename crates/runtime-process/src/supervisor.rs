//! One instance's life, as a task: start the process, wait until it listens, publish it, and when
//! it exits, unpublish it and start it again after a back-off (CrashLoopBackOff), until told to
//! stop. Everything it learns goes into the shared state through small `report_*` calls; it never
//! decides how many instances should exist.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::{Endpoint, InstanceSpec};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::failure::Failure;
use crate::output::{OutputSink, OutputTail};
use crate::ports::PortLease;
use crate::process::{self, RunningProcess, StartError};
use crate::readiness::{self, NotReady};
use crate::state::Shared;

/// Supervises one instance (one ordinal) of a revision.
pub(crate) struct Supervisor {
    shared: Arc<Shared>,
    spec: Arc<InstanceSpec>,
    ordinal: u64,
    /// `<revision>-<ordinal>`: the endpoint id and the name in logs.
    id: String,
}

/// How one attempt (one process) ended.
enum Outcome {
    /// Told to stop; the process is gone.
    Stopped,
    /// The process failed; `ready_for` is how long it had been ready, if it ever was.
    Failed {
        failure: Failure,
        ready_for: Option<Duration>,
    },
}

type StopSignal = oneshot::Receiver<()>;

impl Supervisor {
    /// Start supervising; the instance stops when the returned sender is used or dropped.
    pub fn spawn(
        shared: Arc<Shared>,
        spec: Arc<InstanceSpec>,
        ordinal: u64,
    ) -> (oneshot::Sender<()>, JoinHandle<()>) {
        let id = format!("{}-{ordinal}", spec.revision.name);
        let (stop_tx, stop_rx) = oneshot::channel();
        let supervisor = Self {
            shared,
            spec,
            ordinal,
            id,
        };
        (stop_tx, tokio::spawn(supervisor.run(stop_rx)))
    }

    async fn run(self, mut stop: StopSignal) {
        let backoff = self.shared.config.restart_backoff;
        let mut failures = 0;
        loop {
            let Outcome::Failed { failure, ready_for } = self.attempt(&mut stop).await else {
                return;
            };
            if ready_for.is_some_and(|up| up >= backoff.reset_after) {
                failures = 0;
            }
            failures += 1;
            let delay = backoff.delay(failures);
            // A crash after being ready shows as CrashLoopBackOff; a failed start keeps its cause.
            self.report_failed(if ready_for.is_some() {
                failure.backing_off(delay)
            } else {
                failure
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = &mut stop => return,
            }
        }
    }

    /// Run one process until it fails or the stop signal comes.
    async fn attempt(&self, stop: &mut StopSignal) -> Outcome {
        let tail = OutputTail::new(self.shared.config.output_lines);
        let (mut process, lease) = match self.launch(&tail) {
            Ok(started) => started,
            Err(error) => return failed(Failure::start(&self.spec.revision, &error), None),
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], lease.port()));
        let timeout = self.spec.startup_timeout;
        let started = tokio::select! {
            biased;
            _ = &mut *stop => None,
            result = readiness::wait_ready(addr, &mut process, timeout) => Some(result),
        };
        match started {
            None => self.stop(process).await,
            Some(Ok(())) => self.serve(process, addr, &tail, stop).await,
            Some(Err(NotReady::Exited(status))) => failed(
                Failure::exited_before_ready(status, lease.port(), &tail.lines()),
                None,
            ),
            Some(Err(NotReady::TimedOut)) => {
                let failure = Failure::startup_timeout(
                    &self.spec.revision,
                    lease.port(),
                    timeout,
                    &tail.lines(),
                );
                self.report_failed(failure.clone());
                self.stop(process).await;
                failed(failure, None)
            }
        }
    }

    fn launch(&self, tail: &OutputTail) -> Result<(RunningProcess, PortLease), StartError> {
        let lease = self.shared.ports.lease().map_err(StartError::NoPort)?;
        let sink = OutputSink {
            instance: self.id.clone(),
            log_file: self.log_file(),
            tail: tail.clone(),
        };
        let process = process::spawn(&self.spec, lease.port(), &sink)?;
        tracing::debug!(instance = %self.id, pid = process.pid(), port = lease.port(), "instance started");
        Ok((process, lease))
    }

    /// Publish the ready process and wait until it exits or the stop signal comes.
    async fn serve(
        &self,
        mut process: RunningProcess,
        addr: SocketAddr,
        tail: &OutputTail,
        stop: &mut StopSignal,
    ) -> Outcome {
        let endpoint = Endpoint {
            id: self.id.clone(),
            addr,
            protocol: self.spec.protocol,
        };
        if !self.report_ready(endpoint) {
            return self.stop(process).await; // removed while starting
        }
        let since = Instant::now();
        let exited = tokio::select! {
            _ = &mut *stop => None,
            status = process.wait() => Some(status),
        };
        let Some(status) = exited else {
            return self.stop(process).await;
        };
        let failure = Failure::crashed(&self.id, status, &tail.lines());
        tracing::warn!(instance = %self.id, reason = %failure.reason, "instance exited");
        self.report_failed(failure.clone()); // unpublishes it at once
        failed(failure, Some(since.elapsed()))
    }

    async fn stop(&self, mut process: RunningProcess) -> Outcome {
        let status = process.stop(self.shared.config.stop_grace).await;
        tracing::debug!(instance = %self.id, ?status, "instance stopped");
        Outcome::Stopped
    }

    fn log_file(&self) -> Option<std::path::PathBuf> {
        let dir = self.shared.config.data_dir.as_ref()?;
        let revision = &self.spec.revision;
        Some(
            dir.join("logs")
                .join(&revision.namespace)
                .join(&revision.name)
                .join(format!("{}.log", self.id)),
        )
    }

    /// Mark this instance ready. `false` if it was removed meanwhile (it must then stop).
    fn report_ready(&self, endpoint: Endpoint) -> bool {
        tracing::debug!(instance = %self.id, addr = %endpoint.addr, "instance ready");
        let ordinal = self.ordinal;
        let ready = self.shared.update(&self.spec.revision, |revision| {
            let slot = revision.instances.get_mut(&ordinal)?;
            slot.endpoint = Some(endpoint);
            revision.ever_ready = true;
            revision.last_failure = None;
            Some(())
        });
        ready.flatten().is_some()
    }

    /// Mark this instance failed (not ready) and record why.
    fn report_failed(&self, failure: Failure) {
        let ordinal = self.ordinal;
        self.shared.update(&self.spec.revision, |revision| {
            if let Some(slot) = revision.instances.get_mut(&ordinal) {
                slot.endpoint = None;
                revision.last_failure = Some(failure);
            }
        });
    }
}

fn failed(failure: Failure, ready_for: Option<Duration>) -> Outcome {
    Outcome::Failed { failure, ready_for }
}
