//! One instance's life, as a task: prepare the revision (the launcher pulls an image, …), make
//! the instance's cgroup with its limits, start the launcher's command, run the startup probe,
//! wait until it is ready, publish it; while it serves, run its liveness and readiness probes;
//! when it exits (or fails liveness), unpublish it and start it again after a back-off
//! (CrashLoopBackOff), until told to stop; then drain it (wait for its in-flight requests) and
//! stop it. Every attempt ends by releasing what it held: the cgroup (telling an OOM kill from
//! other deaths) and whatever the launcher left. A socket-activated instance's first attempt is
//! published as soon as the process exists and confirmed (the program accepted a connection) in
//! the background; its restarts are confirmed first. Everything it learns goes into the shared
//! state through small `report_*` calls; it never decides how many instances should exist.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nimbus_runtime::{Endpoint, InstanceSpec};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::failure::Failure;
use crate::health;
use crate::instance::{Instance, ready_check};
use crate::output::OutputTail;
use crate::probe;
use crate::process::{Listen, RunningProcess};
use crate::readiness::{self, NotReady, Pace};
use crate::state::Shared;

/// How often a draining instance's in-flight count is checked.
const DRAIN_POLL: Duration = Duration::from_millis(2);

/// Supervises one instance (one ordinal) of a revision.
pub(crate) struct Supervisor {
    pub(crate) shared: Arc<Shared>,
    pub(crate) spec: Arc<InstanceSpec>,
    pub(crate) ordinal: u64,
    /// `<revision>-<ordinal>`: the endpoint id and the name in logs.
    pub(crate) id: String,
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

    /// A supervisor for one task attempt (`id`: its instance id), run by [`crate::task`]
    /// instead of its own loop.
    pub(crate) fn for_task(shared: Arc<Shared>, spec: Arc<InstanceSpec>, id: String) -> Self {
        Self {
            shared,
            spec,
            ordinal: 0,
            id,
        }
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
            self.note_restart(&failure);
            let delay = backoff.delay(failures);
            self.notify(&failure, delay);
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

    /// Run one instance until it fails or the stop signal comes, then release it. A
    /// socket-activated process is published at once when `first` (connections queue until it
    /// accepts).
    async fn attempt(&self, stop: &mut StopSignal, first: bool) -> Outcome {
        let (began, cold) = (Instant::now(), self.revision_at_zero());
        let prepared = tokio::select! {
            biased;
            _ = &mut *stop => return Outcome::Stopped,
            prepared = self.shared.launcher.prepare(&self.spec) => prepared,
        };
        if let Err(error) = prepared {
            return failed(Failure::start(&self.spec.revision, &error.into()), None);
        }
        let tail = OutputTail::new(self.shared.config.output_lines);
        let mut instance = match self.launch(&tail).await {
            Ok(instance) => instance,
            Err(error) => return failed(Failure::start(&self.spec.revision, &error), None),
        };
        let usage = instance
            .cgroup
            .as_ref()
            .map(nimbus_cgroup::UsageReader::new);
        self.note_started(usage, cold, began.elapsed());
        let milestone = nimbus_runtime::Milestone::Launched;
        self.shared
            .registry
            .note_start(&self.spec.revision, milestone);
        let launched = cold.then(Instant::now);
        let outcome = self
            .run_instance(&mut instance, &tail, stop, (first, launched))
            .await;
        self.release(instance).await;
        outcome
    }

    async fn run_instance(
        &self,
        instance: &mut Instance,
        tail: &OutputTail,
        stop: &mut StopSignal,
        (first, launched): (bool, Option<Instant>),
    ) -> Outcome {
        let endpoint = self.endpoint(instance.target.addr());
        let early = first && matches!(instance.listen, Listen::Activated(_));
        if early && !self.report_published(endpoint.clone()) {
            return self.stop(instance, None).await; // removed while starting
        }
        let started = tokio::select! {
            biased;
            _ = &mut *stop => None,
            result = self.become_ready(instance, early) => Some(result),
        };
        let port = instance.target.port;
        let timeout = self.spec.startup_timeout;
        let failure = match started {
            None => return self.stop(instance, early.then_some(&endpoint)).await,
            Some(Ok(())) => {
                if let Some(launched) = launched {
                    self.note_ready(launched.elapsed());
                }
                return self.serve(instance, endpoint, tail, stop).await;
            }
            Some(Err(NotReady::Exited(status))) => {
                let failure = Failure::exited_before_ready(status, port, &tail.lines());
                return failed(self.oom_or(instance, failure, tail), None);
            }
            Some(Err(NotReady::TimedOut)) => {
                Failure::startup_timeout(&self.spec.revision, port, timeout, &tail.lines())
            }
            Some(Err(NotReady::StartupProbe(why))) => {
                Failure::startup_probe(&self.id, &why, &tail.lines())
            }
        };
        self.report_failed(failure.clone());
        self.stop(instance, None).await;
        failed(failure, None)
    }

    /// Run the startup probe (if any), then wait until the instance is ready, all within the
    /// revision's startup timeout.
    async fn become_ready(&self, instance: &mut Instance, early: bool) -> Result<(), NotReady> {
        let began = Instant::now();
        let timeout = self.spec.startup_timeout;
        if let Some(startup) = &self.spec.probes.startup {
            let target = instance.target.clone();
            let check = || probe::check_async(&startup.action, &target, startup.timeout);
            tokio::select! {
                result = health::startup(startup, check) => result.map_err(NotReady::StartupProbe)?,
                status = instance.process.wait() => return Err(NotReady::Exited(status)),
                () = tokio::time::sleep(timeout) => return Err(NotReady::TimedOut),
            }
        }
        let check = ready_check(instance, self.spec.probes.readiness.as_ref());
        let pace = if early { Pace::Background } else { Pace::Eager };
        let left = timeout.saturating_sub(began.elapsed());
        readiness::wait_ready(check, pace, &mut instance.process, left).await
    }

    fn endpoint(&self, addr: SocketAddr) -> Endpoint {
        Endpoint::tcp(self.id.clone(), addr, self.spec.protocol)
    }

    /// Publish the ready instance and watch it (exit, liveness, readiness) until it fails or the
    /// stop signal comes.
    async fn serve(
        &self,
        instance: &mut Instance,
        endpoint: Endpoint,
        tail: &OutputTail,
        stop: &mut StopSignal,
    ) -> Outcome {
        if !self.report_ready(endpoint.clone()) {
            // Removed while starting; drained in case it had been published early.
            return self.stop(instance, Some(&endpoint)).await;
        }
        let since = Instant::now();
        let target = instance.target.clone();
        let probes = &self.spec.probes;
        let liveness = async {
            match &probes.liveness {
                Some(p) => {
                    health::liveness(p, || probe::check_async(&p.action, &target, p.timeout)).await
                }
                None => std::future::pending().await,
            }
        };
        let readiness = async {
            match &probes.readiness {
                Some(p) => {
                    let check = || probe::check_async(&p.action, &target, p.timeout);
                    health::readiness(p, check, |ready, why| {
                        self.report_readiness(&endpoint, ready, why)
                    })
                    .await;
                }
                None => std::future::pending().await,
            }
        };
        let ended = tokio::select! {
            _ = &mut *stop => None,
            status = instance.process.wait() => Some(Ok(status)),
            why = liveness => Some(Err(why)),
            () = readiness => None,
        };
        let failure = match ended {
            None => return self.stop(instance, Some(&endpoint)).await,
            Some(Ok(status)) => {
                let crashed = Failure::crashed(&self.id, status, &tail.lines());
                self.oom_or(instance, crashed, tail)
            }
            Some(Err(why)) => Failure::liveness(&self.id, &why),
        };
        tracing::warn!(instance = %self.id, reason = %failure.reason, "instance failed");
        self.report_failed(failure.clone()); // unpublishes it at once
        self.stop(instance, None).await;
        failed(failure, Some(since.elapsed()))
    }

    /// Stop the process, first draining `published` (already unpublished by now).
    async fn stop(&self, instance: &mut Instance, published: Option<&Endpoint>) -> Outcome {
        if let Some(endpoint) = published {
            self.drain(endpoint, &mut instance.process).await;
        }
        let grace = self
            .spec
            .termination_grace
            .unwrap_or(self.shared.config.stop_grace);
        let status = instance.process.stop(grace).await;
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

    /// Publish this instance's endpoint. `false` if it was removed meanwhile (it must then stop).
    fn report_published(&self, endpoint: Endpoint) -> bool {
        tracing::debug!(instance = %self.id, endpoint = %endpoint, "instance published");
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
        tracing::debug!(instance = %self.id, endpoint = %endpoint, "instance ready");
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

    /// The readiness probe changed its mind about this serving instance: publish or unpublish
    /// it (without counting a failure: a not-ready instance is not restarted).
    fn report_readiness(&self, endpoint: &Endpoint, ready: bool, why: &str) {
        if ready {
            self.report_ready(endpoint.clone());
            return;
        }
        tracing::info!(instance = %self.id, "readiness probe failing, taking it out of traffic: {why}");
        let ordinal = self.ordinal;
        self.shared.update(&self.spec.revision, |revision| {
            if let Some(slot) = revision.instances.get_mut(&ordinal) {
                slot.endpoint = None;
            }
        });
    }

    /// Report the failure to the runtime's notices, if any (see [`Failure::notices`]).
    fn notify(&self, failure: &Failure, delay: Duration) {
        if let Some(notices) = self.shared.notices.get() {
            for notice in failure.notices(delay) {
                notices.notice(&self.spec.revision, notice);
            }
        }
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

fn failed(failure: Failure, ready_for: Option<Duration>) -> Outcome {
    Outcome::Failed { failure, ready_for }
}
