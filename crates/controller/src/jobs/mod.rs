//! Jobs in Cloud Run's model (`run.nimbus.dev/v1`): a Job is a template, an Execution one run
//! of it, a Schedule starts runs from a cron expression.
//!
//! - [`job`]: a Job's status (its executions: how many, the latest).
//! - [`execution`]: an Execution's reconciler hands it to the [`Executor`], which runs its
//!   tasks in the runtime of its backend (`Runtime::run_task`) with its parallelism, retries
//!   and timeout, and writes every task's state into the Execution's status as it changes.
//!   After a restart a run resumes from that status: finished tasks stay finished, a task that
//!   was running counts a failed attempt and is retried if it has retries left.
//! - [`schedule`]: fires at the cron times in the schedule's time zone, with CronJob's
//!   concurrency policy and missed-run rule; a run is an Execution of the Job, or a CloudEvent
//!   handed to the [`EventSink`] (the async invocation queue, which retries it).

pub mod execution;
mod executor;
pub mod job;
pub(crate) mod schedule;

pub use executor::Executor;
pub use schedule::{EventSink, ScheduledDelivery};
