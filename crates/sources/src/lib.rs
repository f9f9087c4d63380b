//! Event sources: consume a broker and deliver every message to a sink as a CloudEvent, at
//! least once.
//!
//! ```text
//!  broker ──read a batch (parallelism)──▶ Message ──cloudevent::Event──▶ deliver::attempts
//!   ▲                                                                   │ Deliver (the binary:
//!   │                                                                   │ the router in-process)
//!   └──────── ack after a 2xx, or after the dead letter is stored ◀─────┘
//! ```
//!
//! - [`cloudevent`]: a broker message as a CloudEvent in HTTP binary content mode;
//! - [`deliver`]: attempts with the invocation crate's retry rules and back-off, then the
//!   dead letter (a `deadLetterSink`, else the invocation store's failed invocations);
//! - [`redis`], [`nats`], [`rabbitmq`]: one consumer loop per broker;
//! - [`Supervisor`]: one running consumer per source, started, restarted on change and
//!   stopped as the binary syncs the wanted set.
//!
//! Nothing here knows the router or the object store: the binary resolves each source into a
//! [`SourceConfig`] (secrets read, sink resolved) and gives a [`nimbus_invocations::Deliver`],
//! the invocation [`nimbus_invocations::Queue`] for dead letters and a [`Report`] for status.

pub mod cloudevent;
pub mod deliver;
pub mod nats;
pub mod rabbitmq;
pub mod redis;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nimbus_api::sources::Retry;
use nimbus_invocations::{Deliver, Queue, Target};

/// One source, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceKey {
    pub kind: nimbus_api::Kind,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// What to consume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Broker {
    /// A Redis stream read by consumer group `group` (created at the stream's start).
    RedisStream {
        url: String,
        stream: String,
        group: String,
    },
    /// A Redis list taken with BLMOVE into `processing` (a reliable queue).
    RedisList {
        url: String,
        list: String,
        processing: String,
    },
    /// A JetStream stream read by a durable pull consumer.
    Nats {
        url: String,
        token: Option<String>,
        stream: String,
        subject: Option<String>,
        consumer: String,
    },
    /// A RabbitMQ queue consumed with manual acks (`declare`: declare it, bound to this
    /// exchange when one is named).
    Rabbitmq {
        url: String,
        queue: String,
        declare: Option<Option<String>>,
    },
}

/// Where events go: a target and the request's path there (`/` unless the Destination has a
/// `uri` beside its `ref`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sink {
    pub target: Target,
    pub path: String,
}

/// A source resolved by the binary: everything needed to run it.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceConfig {
    pub key: SourceKey,
    pub broker: Broker,
    pub sink: Sink,
    pub dead_letter_sink: Option<Sink>,
    pub retry: Retry,
    /// Messages read per batch and delivered at once.
    pub parallelism: usize,
    /// `ce-source` (`/apis/v1/namespaces/<ns>/<plural>/<name>`, as Knative's sources say it).
    pub ce_source: String,
    /// `ce-type` for messages that carry none.
    pub ce_type: String,
    /// Extension attributes added to every event (Knative's `ceOverrides`).
    pub ce_overrides: BTreeMap<String, String>,
}

/// A source's state, as its status shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    /// Connected and consuming.
    Ready,
    /// Not consuming now (`reason`: a CamelCase word; `message`: what to do).
    NotReady { reason: String, message: String },
}

/// Where running sources report their state (the binary writes it into the status).
pub trait Report: Send + Sync + 'static {
    fn report(&self, key: &SourceKey, state: State);
}

/// Errors of a consumer loop: the broker could not be reached or refused something.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    #[error("nats: {0}")]
    Nats(String),
    #[error("rabbitmq: {0}")]
    Rabbitmq(#[from] lapin::Error),
    #[error("{0}")]
    Other(String),
}

/// What every consumer shares.
pub struct Env {
    pub deliver: Arc<dyn Deliver>,
    /// Where dead letters without a `deadLetterSink` are kept (`None` on a cluster: dropped).
    pub dead_letters: Option<Arc<Queue>>,
    pub report: Arc<dyn Report>,
}

/// How long a consumer waits before connecting again after its broker failed.
const RECONNECT: Duration = Duration::from_secs(1);
const MAX_RECONNECT: Duration = Duration::from_secs(30);

/// The running consumers, one per source.
pub struct Supervisor {
    env: Arc<Env>,
    running: Mutex<HashMap<SourceKey, Running>>,
}

struct Running {
    config: SourceConfig,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Supervisor {
    pub fn new(env: Env) -> Self {
        Self {
            env: Arc::new(env),
            running: Mutex::default(),
        }
    }

    /// Run exactly `wanted`: start the new ones, restart the changed ones, stop the rest.
    /// A stopped consumer acks nothing more; what it had in flight is redelivered to the next.
    pub fn sync(&self, wanted: Vec<SourceConfig>) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<SourceKey> = wanted.iter().map(|c| c.key.clone()).collect();
        running.retain(|k, _| keys.contains(k));
        for config in wanted {
            if running
                .get(&config.key)
                .is_some_and(|r| r.config == config && !r.task.is_finished())
            {
                continue;
            }
            tracing::info!(source = %config.key, "starting the event source");
            let task = tokio::spawn(run(Arc::clone(&self.env), config.clone()));
            running.insert(config.key.clone(), Running { config, task });
        }
    }

    /// The sources running now.
    pub fn running(&self) -> Vec<SourceKey> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.keys().cloned().collect()
    }
}

/// Consume until stopped: on a broker error, report it, wait (doubling up to 30 s) and
/// connect again.
async fn run(env: Arc<Env>, config: SourceConfig) {
    let mut wait = RECONNECT;
    loop {
        let started = tokio::time::Instant::now();
        let result = match &config.broker {
            Broker::RedisStream { .. } => redis::run_stream(&env, &config).await,
            Broker::RedisList { .. } => redis::run_list(&env, &config).await,
            Broker::Nats { .. } => nats::run(&env, &config).await,
            Broker::Rabbitmq { .. } => rabbitmq::run(&env, &config).await,
        };
        if let Err(e) = result {
            tracing::warn!(source = %config.key, "event source failed: {e}");
            env.report.report(
                &config.key,
                State::NotReady {
                    reason: "BrokerUnavailable".into(),
                    message: format!("{e}; retrying in {}s", wait.as_secs()),
                },
            );
        }
        if started.elapsed() > MAX_RECONNECT {
            wait = RECONNECT; // it ran a while: this is a new failure, not the same one
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(MAX_RECONNECT);
    }
}
