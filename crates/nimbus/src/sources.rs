//! Event sources wired into the server (see `nimbus-sources`): the source objects resolved
//! into running consumers (secrets read, sinks resolved to Services), each source's state
//! written into its status. Both modes run it over [`Resources`]:
//!
//! - embedded (`nimbus serve`): events go through the router in-process like asynchronous
//!   invocations (so a Service at zero scales up for them), dead letters into the invocation
//!   store;
//! - Kubernetes (`nimbus operator`, the leader): events go to the routers over HTTP
//!   (`crate::cluster_delivery`), and an event that fails for good without a
//!   `deadLetterSink` is dropped, as Knative Eventing drops it.
//!
//! The supervisor is level-based: on start, on every change to a source, Secret or Service,
//! and every few seconds, it lists the sources and syncs the running set to them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use nimbus_api::sources::{DeliverySpec, Destination, SecretValueFromSource, SourceStatus};
use nimbus_api::{Condition, ConditionStatus, Kind, Object};
use nimbus_controller::{Change, Resources};
use nimbus_invocations::{Deliver, Queue, Target};
use nimbus_sources::{Broker, Env, Report, Sink, SourceConfig, SourceKey, State, Supervisor};

/// How often the sources are listed again without a change.
const RESYNC: Duration = Duration::from_secs(5);

/// Start the supervisor over the source kinds in `kinds` (on a cluster: those whose CRDs are
/// Nimbus's).
pub fn start(
    resources: Arc<dyn Resources>,
    kinds: Vec<Kind>,
    dead_letters: Option<Arc<Queue>>,
    deliver: Arc<dyn Deliver>,
    domain: &str,
) -> tokio::task::JoinHandle<()> {
    let report = StatusWriter::start(Arc::clone(&resources));
    let supervisor = Supervisor::new(Env {
        deliver,
        dead_letters,
        report: report.clone(),
    });
    let domain = domain.to_owned();
    tokio::spawn(async move {
        let mut watched: Vec<Kind> = kinds.clone();
        watched.extend([Kind::Secret, Kind::Service]);
        loop {
            let version = sync(&*resources, &kinds, &supervisor, &report, &domain).await;
            let deadline = tokio::time::sleep(RESYNC);
            tokio::pin!(deadline);
            let Some(version) = version else {
                deadline.await;
                continue;
            };
            // Wait for a change that matters (or the resync).
            let mut changes = resources.watch(&watched, version);
            loop {
                tokio::select! {
                    () = &mut deadline => break,
                    change = changes.next() => match change {
                        Some(Ok(c)) if matters(&c) => break,
                        Some(Ok(_)) => continue,
                        // A broken watch: wait for the resync.
                        Some(Err(_)) | None => {
                            (&mut deadline).await;
                            break;
                        }
                    },
                }
            }
        }
    })
}

/// Whether a change may change what runs: any change to a Secret or Service, and a source's
/// creation, deletion or spec change (not the status writes of ours).
fn matters(c: &Change) -> bool {
    let kind = c.object.kind();
    matches!(kind, Kind::Secret | Kind::Service)
        || (kind.is_source() && (c.deleted || !only_status_changed(&c.object)))
}

/// A status write of ours: its generation is the one its status observed.
fn only_status_changed(obj: &Object) -> bool {
    obj.source_status()
        .and_then(|s| s.observed_generation)
        .is_some_and(|g| g == obj.generation())
}

/// Sync the running set to the sources listed now; the resourceVersion to watch from, or
/// `None` when a list failed (what runs is kept).
async fn sync(
    resources: &dyn Resources,
    kinds: &[Kind],
    supervisor: &Supervisor,
    report: &StatusWriter,
    domain: &str,
) -> Option<u64> {
    let mut wanted = Vec::new();
    let mut version = 0;
    for &kind in kinds {
        let list = match resources.list(kind, None, &[]).await {
            Ok(list) => list,
            Err(e) => {
                tracing::error!("cannot list {}: {e}", kind.plural());
                return None;
            }
        };
        version = version.max(list.resource_version);
        for obj in list.items {
            if obj.is_deleting() {
                continue;
            }
            let key = SourceKey {
                kind,
                namespace: obj.namespace().to_owned(),
                name: obj.name().to_owned(),
            };
            // On a cluster no admission webhook ran Nimbus's validation: run it here.
            let resolved = match nimbus_api::validate::refusal(&obj) {
                None => resolve(resources, &obj, &key, domain).await,
                Some(why) => Err(("InvalidSpec".to_owned(), why)),
            };
            match resolved {
                Ok((config, sink_uri)) => {
                    report.sink_uri(&key, Some(sink_uri));
                    wanted.push(config);
                }
                Err((reason, message)) => {
                    report.sink_uri(&key, None);
                    report.report(&key, State::NotReady { reason, message });
                }
            }
        }
    }
    supervisor.sync(wanted);
    Some(version)
}

type Refusal = (String, String);

async fn secret_value(
    resources: &dyn Resources,
    ns: &str,
    path: &str,
    r: &SecretValueFromSource,
) -> Result<String, Refusal> {
    let name = &r.secret_key_ref.name;
    let key = &r.secret_key_ref.key;
    secret_key(resources, ns, path, name, key)
        .await?
        .ok_or_else(|| {
            (
                "SecretKeyMissing".into(),
                format!("{path}: Secret {name:?} has no key {key:?}"),
            )
        })
}

/// The value of `key` in Secret `name` (None when the Secret lacks the key).
async fn secret_key(
    resources: &dyn Resources,
    ns: &str,
    path: &str,
    name: &str,
    key: &str,
) -> Result<Option<String>, Refusal> {
    match resources.get(Kind::Secret, ns, name).await {
        Ok(Some(Object::Secret(s))) => Ok(s
            .data
            .get(key)
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())),
        Ok(_) => Err((
            "SecretNotFound".into(),
            format!(
                "{path}: Secret {name:?} not found in namespace {ns:?}; create it with the broker's credentials"
            ),
        )),
        Err(e) => Err(("SecretUnavailable".into(), format!("{path}: {e}"))),
    }
}

/// The sink as a delivery target, and its URI for the status.
async fn sink(
    resources: &dyn Resources,
    ns: &str,
    path: &str,
    d: &Destination,
    domain: &str,
) -> Result<(Sink, String), Refusal> {
    if let Some(r) = &d.ref_ {
        let sink_ns = r.namespace.as_deref().unwrap_or(ns);
        if sink_ns != ns {
            return Err((
                "SinkNotFound".into(),
                format!(
                    "{path}.ref: a sink in another namespace ({sink_ns}) is not supported; use uri"
                ),
            ));
        }
        return match resources.get(Kind::Service, ns, &r.name).await {
            Ok(Some(_)) => {
                let host = nimbus_api::names::route_host(&r.name, ns, domain);
                let request_path = d.uri.clone().unwrap_or_else(|| "/".into());
                let uri = format!("http://{host}{}", request_path.trim_end_matches('/'));
                let target = Target::Service {
                    name: r.name.clone(),
                    host,
                };
                Ok((
                    Sink {
                        target,
                        path: request_path,
                    },
                    uri,
                ))
            }
            Ok(None) => Err((
                "SinkNotFound".into(),
                format!(
                    "{path}.ref: Service {:?} not found in namespace {ns:?}; create it or fix the sink",
                    r.name
                ),
            )),
            Err(e) => Err(("SinkUnavailable".into(), format!("{path}: {e}"))),
        };
    }
    match &d.uri {
        Some(uri) => Ok((
            Sink {
                target: Target::Url { url: uri.clone() },
                path: "/".into(),
            },
            uri.clone(),
        )),
        None => Err(("SinkMissing".into(), format!("{path}: set ref or uri"))),
    }
}

/// Put a password into a `redis://` URL (`redis://:password@host:port`).
fn redis_url(address: &str, password: Option<String>) -> String {
    let rest = address.strip_prefix("redis://").unwrap_or(address);
    match password {
        Some(p) => format!("redis://:{}@{rest}", percent(&p)),
        None => format!("redis://{rest}"),
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(
            |b| match b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                true => (b as char).to_string(),
                false => format!("%{b:02X}"),
            },
        )
        .collect()
}

async fn resolve(
    resources: &dyn Resources,
    obj: &Object,
    key: &SourceKey,
    domain: &str,
) -> Result<(SourceConfig, String), Refusal> {
    let ns = key.namespace.as_str();
    let default_name = format!("nimbus-{}-{}", key.namespace, key.name);
    let (broker, sink_spec, delivery, parallelism, overrides, type_) = match obj {
        Object::RedisStreamSource(s) => {
            let p = match s.spec.password_ref() {
                Some(p) => Some(secret_value(resources, ns, "spec.password", &p).await?),
                None => None,
            };
            (
                Broker::RedisStream {
                    url: redis_url(&s.spec.address, p),
                    stream: s.spec.stream.clone(),
                    group: s.spec.group.clone().unwrap_or_else(|| key.name.clone()),
                },
                &s.spec.sink,
                s.spec.delivery.as_ref(),
                s.spec.parallelism.or(s.spec.consumers.map(i64::from)),
                s.spec.ce_overrides.as_ref(),
                "dev.knative.sources.redisstream",
            )
        }
        Object::RedisListSource(s) => {
            let p = s
                .spec
                .password
                .as_ref()
                .map(|p| secret_value(resources, ns, "spec.password", p));
            let p = match p {
                Some(p) => Some(p.await?),
                None => None,
            };
            (
                Broker::RedisList {
                    url: redis_url(&s.spec.address, p),
                    list: s.spec.list.clone(),
                    processing: format!("{}:processing:{default_name}", s.spec.list),
                },
                &s.spec.sink,
                s.spec.delivery.as_ref(),
                s.spec.parallelism,
                s.spec.ce_overrides.as_ref(),
                "dev.nimbus.sources.redislist",
            )
        }
        Object::NatsJetStreamSource(s) => {
            let token = s
                .spec
                .token
                .as_ref()
                .map(|t| secret_value(resources, ns, "spec.token", t));
            let token = match token {
                Some(t) => Some(t.await?),
                None => None,
            };
            (
                Broker::Nats {
                    url: s.spec.address.clone(),
                    token,
                    stream: s.spec.stream.clone(),
                    subject: s.spec.subject.clone(),
                    consumer: s
                        .spec
                        .consumer
                        .clone()
                        .unwrap_or_else(|| default_name.replace('.', "-")),
                },
                &s.spec.sink,
                s.spec.delivery.as_ref(),
                s.spec.parallelism,
                s.spec.ce_overrides.as_ref(),
                "dev.nimbus.sources.natsjetstream",
            )
        }
        Object::RabbitmqSource(s) => {
            let path = "spec.rabbitmqClusterReference.connectionSecret";
            let secret = s
                .spec
                .rabbitmq_cluster_reference
                .connection_secret
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default();
            let get = |k: &'static str| secret_key(resources, ns, path, &secret, k);
            let uri = get("uri").await?.ok_or_else(|| {
                (
                    "SecretKeyMissing".to_owned(),
                    format!("{path}: Secret {secret:?} has no key \"uri\""),
                )
            })?;
            let url = amqp_url(
                &uri,
                get("username").await?,
                get("password").await?,
                get("port").await?,
                s.spec.rabbitmq_resources_config.vhost.as_deref(),
            );
            let r = &s.spec.rabbitmq_resources_config;
            (
                Broker::Rabbitmq {
                    url,
                    queue: r.queue_name.clone(),
                    declare: (!r.predeclared).then(|| r.exchange_name.clone()),
                },
                &s.spec.sink,
                s.spec.delivery.as_ref(),
                r.parallelism,
                s.spec.ce_overrides.as_ref(),
                "dev.knative.rabbitmq.event",
            )
        }
        _ => {
            return Err((
                "Unsupported".into(),
                format!("{} is not an event source", obj.kind()),
            ));
        }
    };
    let (sink_target, sink_uri) = sink(resources, ns, "spec.sink", sink_spec, domain).await?;
    let dead_letter_sink = match delivery.and_then(|d| d.dead_letter_sink.as_ref()) {
        Some(d) => Some(
            sink(resources, ns, "spec.delivery.deadLetterSink", d, domain)
                .await?
                .0,
        ),
        None => None,
    };
    let config = SourceConfig {
        key: key.clone(),
        broker,
        sink: sink_target,
        dead_letter_sink,
        retry: DeliverySpec::retry(delivery),
        parallelism: parallelism
            .unwrap_or(1)
            .clamp(1, nimbus_api::sources::MAX_PARALLELISM) as usize,
        ce_source: ce_source(key, obj),
        ce_type: type_.to_owned(),
        ce_overrides: overrides
            .map(|o| o.extensions.clone())
            .unwrap_or_else(BTreeMap::new),
    };
    Ok((config, sink_uri))
}

/// `ce-source` as Knative's sources say it: `/apis/v1/namespaces/<ns>/<plural>/<name>`, and
/// `#<queue>` for a RabbitmqSource.
fn ce_source(key: &SourceKey, obj: &Object) -> String {
    let base = format!(
        "/apis/v1/namespaces/{}/{}/{}",
        key.namespace,
        key.kind.plural(),
        key.name
    );
    match obj {
        Object::RabbitmqSource(s) => {
            format!("{base}#{}", s.spec.rabbitmq_resources_config.queue_name)
        }
        _ => base,
    }
}

/// The AMQP URL of a connection Secret's `uri` (an `amqp://` URL or `host[:port]`), with its
/// `username`, `password` and `port` when given, and the vhost.
fn amqp_url(
    uri: &str,
    user: Option<String>,
    password: Option<String>,
    port: Option<String>,
    vhost: Option<&str>,
) -> String {
    let (scheme, rest) = match uri.split_once("://") {
        Some((s, r)) if s == "amqp" || s == "amqps" => (s, r),
        Some((_, r)) => ("amqp", r),
        None => ("amqp", uri),
    };
    let (auth, hostpath) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a.to_owned()), h),
        None => (None, rest),
    };
    let (hostport, path) = match hostpath.split_once('/') {
        Some((h, p)) => (h, Some(p)),
        None => (hostpath, None),
    };
    let host = match port {
        Some(p) => format!(
            "{}:{p}",
            hostport.rsplit_once(':').map_or(hostport, |(h, _)| h)
        ),
        None => hostport.to_owned(),
    };
    let auth = match (user, password) {
        (Some(u), Some(p)) => Some(format!("{}:{}", percent(&u), percent(&p))),
        (Some(u), None) => Some(percent(&u)),
        _ => auth,
    };
    let vhost = match vhost {
        Some(v) => percent(v),
        None => path.unwrap_or("%2f").to_owned(),
    };
    match auth {
        Some(a) => format!("{scheme}://{a}@{host}/{vhost}"),
        None => format!("{scheme}://{host}/{vhost}"),
    }
}

/// Writes sources' states into their status (conditions `Ready`, `sinkUri`), in order, from
/// one task: consumers report from their own tasks and must never wait for the API.
struct StatusWriter {
    updates: tokio::sync::mpsc::UnboundedSender<(SourceKey, Update)>,
}

type Update = Arc<dyn Fn(&mut SourceStatus) + Send + Sync>;

impl StatusWriter {
    fn start(resources: Arc<dyn Resources>) -> Arc<Self> {
        let (updates, mut rx) = tokio::sync::mpsc::unbounded_channel::<(SourceKey, Update)>();
        tokio::spawn(async move {
            while let Some((key, change)) = rx.recv().await {
                let (kind, ns, name) = (key.kind, &key.namespace, &key.name);
                let written =
                    nimbus_controller::update_status(&*resources, kind, ns, name, |obj| {
                        let mut status = obj.source_status().cloned().unwrap_or_default();
                        change(&mut status);
                        status.observed_generation = Some(obj.generation());
                        obj.set_source_status(status);
                    })
                    .await;
                if let Err(e) = written {
                    tracing::debug!(source = %key, "status not written: {e}");
                }
            }
        });
        Arc::new(Self { updates })
    }

    fn update(&self, key: &SourceKey, change: impl Fn(&mut SourceStatus) + Send + Sync + 'static) {
        let _ = self.updates.send((key.clone(), Arc::new(change)));
    }

    fn sink_uri(&self, key: &SourceKey, uri: Option<String>) {
        self.update(key, move |s| s.sink_uri = uri.clone());
    }
}

impl Report for StatusWriter {
    fn report(&self, key: &SourceKey, state: State) {
        let condition = match state {
            State::Ready => Condition::new("Ready", ConditionStatus::True),
            State::NotReady { reason, message } => {
                Condition::new("Ready", ConditionStatus::False).with_reason(reason, message)
            }
        };
        self.update(key, move |s| {
            let same = s.conditions.iter().any(|c| {
                c.type_ == condition.type_
                    && c.status == condition.status
                    && c.reason == condition.reason
                    && c.message == condition.message
            });
            if !same {
                let mut condition = condition.clone();
                condition.last_transition_time = Some(
                    jiff::Timestamp::now()
                        .round(jiff::Unit::Second)
                        .unwrap_or(jiff::Timestamp::now())
                        .to_string(),
                );
                s.conditions.retain(|c| c.type_ != "Ready");
                s.conditions.push(condition);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_urls_from_connection_secrets() {
        assert_eq!(
            amqp_url(
                "127.0.0.1:5672",
                Some("u".into()),
                Some("p@s".into()),
                None,
                None
            ),
            "amqp://u:p%40s@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            amqp_url(
                "http://rabbit:15672",
                Some("u".into()),
                Some("p".into()),
                Some("5672".into()),
                Some("/")
            ),
            "amqp://u:p@rabbit:5672/%2F"
        );
        assert_eq!(
            amqp_url("amqp://g:g@h:1/v", None, None, None, None),
            "amqp://g:g@h:1/v"
        );
    }

    #[test]
    fn redis_urls_carry_the_password() {
        assert_eq!(redis_url("127.0.0.1:6379", None), "redis://127.0.0.1:6379");
        assert_eq!(
            redis_url("redis://h:1", Some("a b".into())),
            "redis://:a%20b@h:1"
        );
    }
}
