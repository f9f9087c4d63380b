//! One instance's life, as a task: start the process, wait until it is ready, publish it, and
//! when it exits, unpublish it and start it again after a back-off (CrashLoopBackOff), until told
//! to stop; then drain it (wait for its in-flight requests) and stop it. A socket-activated
//! instance's first attempt is published as soon as the process exists and confirmed (the
//! program accepted a connection) in the background; its restarts are confirmed first.
//! Everything it learns goes into the shared state through small `report_*` calls; it never
//! decides how many instances should exist.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::{Endpoint, InstanceSpec};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::activation::ActivationSocket;
use crate::failure::Failure;
use crate::output::{OutputSink, OutputTail};
use crate::process::{self, Listen, RunningProcess, StartError};
use crate::readiness::{self, NotReady, Pace};
use crate::state::Shared;

/// How often a draining instance's in-flight count is checked.
const DRAIN_POLL: Duration = Duration::from_millis(2);

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
            let attempt = self.attempt(&mut stop, failures == 0).await;
            let Outcome::Failed { failure, ready_for } = attempt else {
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

    /// Run one process until it fails or the stop signal comes. A socket-activated process is
    /// published at once when `first` (connections queue until it accepts).
    async fn attempt(&self, stop: &mut StopSignal, first: bool) -> Outcome {
        let tail = OutputTail::new(self.shared.config.output_lines);
        let (mut process, listen) = match self.launch(&tail) {
            Ok(started) => started,
            Err(error) => return failed(Failure::start(&self.spec.revision, &error), None),
        };
        let endpoint = self.endpoint(listen.addr());
        let early = first && matches!(listen, Listen::Activated(_));
        if early && !self.report_published(endpoint.clone()) {
            return self.stop(process, None).await; // removed while starting
        }
        let (check, timeout) = (ready_check(&listen), self.spec.startup_timeout);
        let pace = if early { Pace::Background } else { Pace::Eager };
        let started = tokio::select! {
            biased;
            _ = &mut *stop => None,
            result = readiness::wait_ready(check, pace, &mut process, timeout) => Some(result),
        };
        let port = listen.port();
        match started {
            None => self.stop(process, early.then_some(&endpoint)).await,
            Some(Ok(())) => self.serve(process, endpoint, &tail, stop).await,
            Some(Err(NotReady::Exited(status))) => failed(
                Failure::exited_before_ready(status, port, &tail.lines()),
                None,
            ),
            Some(Err(NotReady::TimedOut)) => {
                let failure =
                    Failure::startup_timeout(&self.spec.revision, port, timeout, &tail.lines());
                self.report_failed(failure.clone());
                self.stop(process, None).await;
                failed(failure, None)
            }
        }
    }

    fn launch(&self, tail: &OutputTail) -> Result<(RunningProcess, Listen), StartError> {
        let ports = &self.shared.ports;
        let listen = if self.spec.socket_activation {
            Listen::Activated(ActivationSocket::bind(ports).map_err(StartError::NoPort)?)
        } else {
            Listen::Port(ports.lease().map_err(StartError::NoPort)?)
        };
        let sink = OutputSink {
            instance: self.id.clone(),
            log_file: self.log_file(),
            tail: tail.clone(),
        };
        let process = process::spawn(&self.spec, &listen, &sink)?;
        let port = listen.port();
        tracing::debug!(instance = %self.id, pid = process.pid(), port, "instance started");
        Ok((process, listen))
    }

    fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        Endpoint {
            id: self.id.clone(),
            addr,
            protocol: self.spec.protocol,
        }
    }

    /// Publish the ready process and wait until it exits or the stop signal comes.
    async fn serve(
        &self,
        mut process: RunningProcess,
        endpoint: Endpoint,
        tail: &OutputTail,
        stop: &mut StopSignal,
    ) -> Outcome {
        if !self.report_ready(endpoint.clone()) {
            // Removed while starting; drained in case it had been published early.
            return self.stop(process, Some(&endpoint)).await;
        }
        let since = Instant::now();
        let exited = tokio::select! {
            _ = &mut *stop => None,
            status = process.wait() => Some(status),
        };
        let Some(status) = exited else {
            return self.stop(process, Some(&endpoint)).await;
        };
        let failure = Failure::crashed(&self.id, status, &tail.lines());
        tracing::warn!(instance = %self.id, reason = %failure.reason, "instance exited");
        self.report_failed(failure.clone()); // unpublishes it at once
        failed(failure, Some(since.elapsed()))
    }

    /// Stop the process, first draining `published` (already unpublished by now).
    async fn stop(&self, mut process: RunningProcess, published: Option<&Endpoint>) -> Outcome {
        if let Some(endpoint) = published {
            self.drain(endpoint, &mut process).await;
        }
        let status = process.stop(self.shared.config.stop_grace).await;
        tracing::debug!(instance = %self.id, ?status, "instance stopped");
        Outcome::Stopped
    }

    /// Wait until the load probe reports no request in flight to `endpoint`, the process exits,
    /// or the drain timeout passes. The first look comes after one poll interval, so a request
    /// that picked the endpoint just before it was unpublished has been counted by then.
    async fn drain(&self, endpoint: &Endpoint, process: &mut RunningProcess) {
        let Some(probe) = self.shared.load_probe.get() else {
            return;
        };
        let idle = async {
            loop {
                tokio::time::sleep(DRAIN_POLL).await;
                if probe.in_flight(endpoint) == 0 {
                    return;
                }
            }
        };
        let limit = self.shared.config.drain_timeout;
        tokio::select! {
            () = idle => {}
            _ = process.wait() => {}
            () = tokio::time::sleep(limit) => {
                let in_flight = probe.in_flight(endpoint);
                tracing::warn!(instance = %self.id, in_flight, "drain timeout over; stopping anyway");
            }
        }
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

    /// Publish this instance's endpoint. `false` if it was removed meanwhile (it must then stop).
    fn report_published(&self, endpoint: Endpoint) -> bool {
        tracing::debug!(instance = %self.id, addr = %endpoint.addr, "instance published");
        let ordinal = self.ordinal;
        let published = self.shared.update(&self.spec.revision, |revision| {
            revision.instances.get_mut(&ordinal)?.endpoint = Some(endpoint);
            Some(())
        });
        published.flatten().is_some()
    }

    /// Mark this instance ready (published and proven to serve), forgetting earlier failures.
    /// `false` if it was removed meanwhile (it must then stop).
    fn report_ready(&self, endpoint: Endpoint) -> bool {
        tracing::debug!(instance = %self.id, addr = %endpoint.addr, "instance ready");
        let ordinal = self.ordinal;
        let ready = self.shared.update(&self.spec.revision, |revision| {
            let slot = revision.instances.get_mut(&ordinal)?;
            slot.endpoint = Some(endpoint);
            slot.failed = false;
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
                slot.failed = true;
                revision.last_failure = Some(failure);
            }
        });
    }
}

/// How a starting instance proves it serves: its port accepts connections, or (socket
/// activation) the program accepted one from its socket.
fn ready_check(listen: &Listen) -> Box<dyn FnMut() -> bool + Send> {
    match listen {
        Listen::Port(_) => Box::new(readiness::connects(listen.addr())),
        Listen::Activated(socket) => Box::new(socket.accepted_check()),
    }
}

fn failed(failure: Failure, ready_for: Option<Duration>) -> Outcome {
    Outcome::Failed { failure, ready_for }
}
