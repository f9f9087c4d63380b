//! Event sources: resources that consume a message broker and deliver every message to a sink
//! as a CloudEvent.
//!
//! Where Knative Eventing has a kind, its shape is accepted unchanged:
//! `sources.knative.dev/v1alpha1` `RedisStreamSource` (knative-extensions/eventing-redis) and
//! `RabbitmqSource` (knative-extensions/eventing-rabbitmq). What Knative lacks is in
//! `sources.nimbus.dev/v1alpha1`, shaped the same way: `RedisListSource` and
//! `NatsJetStreamSource`. Every kind has a Knative `sink` (Destination) and may have a Knative
//! `delivery` (retry, backoffPolicy, backoffDelay, deadLetterSink); Nimbus adds `parallelism`
//! (messages read per batch and delivered at once) to the kinds that lack it, and credentials
//! as Secret key references.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::conditions::Condition;
use crate::error::FieldError;

/// `sources.knative.dev`
pub const KNATIVE_GROUP: &str = "sources.knative.dev";
/// `sources.knative.dev/v1alpha1`
pub const KNATIVE_API_VERSION: &str = "sources.knative.dev/v1alpha1";
/// `sources.nimbus.dev`
pub const NIMBUS_GROUP: &str = "sources.nimbus.dev";
/// `sources.nimbus.dev/v1alpha1`
pub const NIMBUS_API_VERSION: &str = "sources.nimbus.dev/v1alpha1";

/// Most messages a source delivers at once (RabbitmqSource's limit).
pub const MAX_PARALLELISM: i64 = 1000;

macro_rules! source_kind {
    ($(#[$doc:meta])* $name:ident, $spec:ident, $kind:literal, $plural:literal, $schema:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
        #[cfg_attr(feature = "schemars", schemars(rename = $schema))]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default)]
            pub api_version: String,
            #[serde(default)]
            pub kind: String,
            #[serde(default)]
            pub metadata: ObjectMeta,
            #[serde(default)]
            pub spec: $spec,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub status: Option<SourceStatus>,
        }

        impl $name {
            pub const KIND: &'static str = $kind;
            pub const PLURAL: &'static str = $plural;
        }
    };
}

source_kind!(
    /// `sources.knative.dev/v1alpha1` RedisStreamSource: a Redis stream read by a consumer group.
    RedisStreamSource,
    RedisStreamSourceSpec,
    "RedisStreamSource",
    "redisstreamsources",
    "dev.knative.sources.v1alpha1.RedisStreamSource"
);
source_kind!(
    /// `sources.knative.dev/v1alpha1` RabbitmqSource: a RabbitMQ queue.
    RabbitmqSource,
    RabbitmqSourceSpec,
    "RabbitmqSource",
    "rabbitmqsources",
    "dev.knative.sources.v1alpha1.RabbitmqSource"
);
source_kind!(
    /// `sources.nimbus.dev/v1alpha1` RedisListSource: a Redis list used as a reliable queue.
    RedisListSource,
    RedisListSourceSpec,
    "RedisListSource",
    "redislistsources",
    "dev.nimbus.sources.v1alpha1.RedisListSource"
);
source_kind!(
    /// `sources.nimbus.dev/v1alpha1` NatsJetStreamSource: a JetStream stream read by a durable
    /// pull consumer.
    NatsJetStreamSource,
    NatsJetStreamSourceSpec,
    "NatsJetStreamSource",
    "natsjetstreamsources",
    "dev.nimbus.sources.v1alpha1.NatsJetStreamSource"
);

/// Knative's `Destination`: a referenced object (a Knative Service) or a URI (or both: the
/// URI, a path, is then resolved against the Service's URL).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.pkg.apis.duck.v1.Destination")
)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub ref_: Option<KReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

/// Knative's `KReference`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.pkg.apis.duck.v1.KReference")
)]
#[serde(rename_all = "camelCase")]
pub struct KReference {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Knative's `DeliverySpec` (retries of one message and where it goes when they run out).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.eventing.duck.v1.DeliverySpec")
)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// Retries after the first attempt (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<i32>,
    /// `exponential` (default) or `linear`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_policy: Option<String>,
    /// The first back-off, an ISO 8601 duration (`PT0.5S`; default `PT1S`). Go durations
    /// (`500ms`) are accepted too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_delay: Option<String>,
    /// Where a message goes when its retries run out; without one it is kept in Nimbus's
    /// dead-letter store (`nimbus invocations list --state Failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter_sink: Option<Destination>,
    /// How long one attempt may take, an ISO 8601 duration (default: the router's timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// Knative's `CloudEventOverrides`: extension attributes added to every event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.pkg.apis.duck.v1.CloudEventOverrides")
)]
#[serde(rename_all = "camelCase")]
pub struct CloudEventOverrides {
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub extensions: std::collections::BTreeMap<String, String>,
}

/// A value read from a Secret of the source's namespace (`{secretKeyRef: {name, key}}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.sources.v1alpha1.SecretValueFromSource")
)]
#[serde(rename_all = "camelCase")]
pub struct SecretValueFromSource {
    #[serde(default)]
    pub secret_key_ref: SecretKeyRef,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.sources.v1alpha1.SecretKeyRef")
)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub key: String,
}

/// A Secret of the source's namespace, by name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.sources.v1alpha1.LocalObjectReference")
)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    #[serde(default)]
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.sources.v1alpha1.RedisStreamSourceSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisStreamSourceSpec {
    /// `redis://host:port` (or `host:port`).
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub stream: String,
    /// The consumer group (created at the stream's start if missing; default: the source's
    /// name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    /// Consumers in the group (Knative's; Nimbus runs one, delivering `parallelism` (default:
    /// this) entries at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumers: Option<i32>,
    /// Knative's connection options: `password` names a Secret (key `password`, or the
    /// reference's `fieldPath`); TLS is not supported yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dial_options: Option<RedisConnectionOptions>,
    /// Nimbus: the Redis password, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValueFromSource>,
    /// Nimbus: retries and dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    /// Nimbus: entries read per batch and delivered at once (1..1000, default 1: in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
}

/// eventing-redis's `RedisConnectionOptions`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.sources.v1alpha1.RedisConnectionOptions")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisConnectionOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<ObjectReference>,
    #[serde(default, rename = "useTLS", skip_serializing_if = "std::ops::Not::not")]
    pub use_tls: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skip_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretValueFromSource>,
    #[serde(default, rename = "caCert", skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<SecretValueFromSource>,
}

/// Core `v1` ObjectReference.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.sources.v1alpha1.ObjectReference")
)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
}

impl RedisStreamSourceSpec {
    /// The password's Secret key: `password`, else `dialOptions.password` (key `password`
    /// unless its `fieldPath` names one).
    pub fn password_ref(&self) -> Option<SecretValueFromSource> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let r = self.dial_options.as_ref()?.password.as_ref()?;
        Some(SecretValueFromSource {
            secret_key_ref: SecretKeyRef {
                name: r.name.clone()?,
                key: r.field_path.clone().unwrap_or_else(|| "password".into()),
            },
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.sources.v1alpha1.RabbitmqSourceSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct RabbitmqSourceSpec {
    #[serde(default)]
    pub rabbitmq_cluster_reference: RabbitmqClusterReference,
    #[serde(default)]
    pub rabbitmq_resources_config: RabbitmqResourcesConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    /// Accepted for compatibility; unused in embedded mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
}

/// The broker: Nimbus needs `connectionSecret` (keys `uri`, and `username`/`password` unless
/// the URI carries them; `port` overrides the URI's), as for a RabbitMQ outside the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "com.rabbitmq.v1beta1.RabbitmqClusterReference")
)]
#[serde(rename_all = "camelCase")]
pub struct RabbitmqClusterReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_secret: Option<LocalObjectReference>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.sources.v1alpha1.RabbitmqResourcesConfigSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct RabbitmqResourcesConfig {
    /// The queue exists already; otherwise Nimbus declares it (durable), bound to
    /// `exchangeName` when one is given.
    #[serde(default)]
    pub predeclared: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_name: Option<String>,
    #[serde(default)]
    pub queue_name: String,
    /// Messages in flight at once (the prefetch count; 1..1000, default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.sources.v1alpha1.RedisListSourceSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct RedisListSourceSpec {
    #[serde(default)]
    pub address: String,
    /// The list messages are pushed to (LPUSH); taken from its tail with BLMOVE into a
    /// processing list of the source's own.
    #[serde(default)]
    pub list: String,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.nimbus.sources.v1alpha1.NatsJetStreamSourceSpec")
)]
#[serde(rename_all = "camelCase")]
pub struct NatsJetStreamSourceSpec {
    /// `nats://host:port`.
    #[serde(default)]
    pub address: String,
    /// The stream; created (file storage, on `subject`) when missing.
    #[serde(default)]
    pub stream: String,
    /// The subject filter (default: all of the stream's subjects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The durable consumer's name (default: `nimbus-<namespace>-<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer: Option<String>,
    #[serde(default)]
    pub sink: Destination,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ce_overrides: Option<CloudEventOverrides>,
    /// A token for the server (`authorization { token }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<SecretValueFromSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliverySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallelism: Option<i64>,
}

/// A source's status (Knative's `SourceStatus`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "dev.knative.pkg.apis.duck.v1.SourceStatus")
)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Where events are sent: `http://<service host>` of the sink's Service, or its URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink_uri: Option<String>,
}

/// Retry settings resolved from a [`DeliverySpec`].
#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    /// Attempts in all (retries + 1).
    pub attempts: u32,
    pub linear: bool,
    pub delay: Duration,
    pub timeout: Option<Duration>,
}

impl DeliverySpec {
    /// The resolved retry settings (defaults for what is unset or, should validation have
    /// been skipped, invalid).
    pub fn retry(delivery: Option<&DeliverySpec>) -> Retry {
        let d = delivery.cloned().unwrap_or_default();
        Retry {
            attempts: d.retry.unwrap_or(3).clamp(0, 100) as u32 + 1,
            linear: d.backoff_policy.as_deref() == Some("linear"),
            delay: d
                .backoff_delay
                .as_deref()
                .and_then(|s| parse_delay(s).ok())
                .unwrap_or(Duration::from_secs(1)),
            timeout: d.timeout.as_deref().and_then(|s| parse_delay(s).ok()),
        }
    }
}

/// An ISO 8601 duration (`PT1S`, `PT0.2S`, `P1DT2H`), or a Go duration (`200ms`).
pub fn parse_delay(s: &str) -> Result<Duration, String> {
    let Some(rest) = s.strip_prefix('P') else {
        return crate::duration::parse_duration(s);
    };
    let bad = || format!("{s:?} is not an ISO 8601 duration such as PT0.5S or PT2M");
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut total = 0f64;
    let mut read = |part: &str, units: &[(char, f64)]| -> Result<(), String> {
        let mut num = String::new();
        for c in part.chars() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            let (_, secs) = units.iter().find(|(u, _)| *u == c).ok_or_else(bad)?;
            let n: f64 = num.parse().map_err(|_| bad())?;
            total += n * secs;
            num.clear();
        }
        if num.is_empty() { Ok(()) } else { Err(bad()) }
    };
    read(days, &[('W', 604_800.0), ('D', 86_400.0)])?;
    if let Some(t) = time {
        if t.is_empty() {
            return Err(bad());
        }
        read(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    if rest.is_empty() || !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Knative's sink rules, for every `Destination` Nimbus delivers to (sources' sinks and dead
/// letter sinks, schedules' events).
pub(crate) fn validate_destination(
    v: &mut Vec<FieldError>,
    path: &str,
    d: &Destination,
    required: bool,
) {
    match (&d.ref_, &d.uri) {
        (None, None) => {
            if required {
                v.push(FieldError::new(
                    path,
                    "a sink is required: set ref (apiVersion: serving.knative.dev/v1, kind: Service, name) or uri",
                ));
            }
        }
        (Some(r), uri) => {
            if let Some(uri) = uri
                && !uri.starts_with('/')
            {
                v.push(FieldError::new(
                    format!("{path}.uri"),
                    format!("{uri:?}: with ref, uri is a path on the Service (such as /events)"),
                ));
            }
            if r.api_version != crate::API_VERSION || r.kind != "Service" {
                v.push(FieldError::new(
                    format!("{path}.ref"),
                    format!(
                        "{}/{} is not a sink Nimbus can deliver to; use apiVersion: {}, kind: Service",
                        r.api_version,
                        r.kind,
                        crate::API_VERSION
                    ),
                ));
            }
            if let Err(e) = crate::names::check_dns_label(&r.name) {
                v.push(FieldError::new(format!("{path}.ref.name"), e));
            }
        }
        (None, Some(uri)) => {
            // Deliveries go out through a client without TLS (as asynchronous invocations').
            if !uri.starts_with("http://") || uri.len() <= "http://".len() {
                v.push(FieldError::new(
                    format!("{path}.uri"),
                    format!("{uri:?} is not an http:// URL (https sinks are not supported yet)"),
                ));
            }
        }
    }
}

fn validate_delivery(v: &mut Vec<FieldError>, path: &str, d: Option<&DeliverySpec>) {
    let Some(d) = d else { return };
    if let Some(r) = d.retry
        && !(0..=100).contains(&r)
    {
        v.push(FieldError::new(
            format!("{path}.retry"),
            format!("{r} is out of range; use 0 to 100"),
        ));
    }
    if let Some(p) = &d.backoff_policy
        && p != "exponential"
        && p != "linear"
    {
        v.push(FieldError::new(
            format!("{path}.backoffPolicy"),
            format!("{p:?} is not a back-off policy; use exponential or linear"),
        ));
    }
    for (field, value) in [("backoffDelay", &d.backoff_delay), ("timeout", &d.timeout)] {
        if let Some(s) = value
            && let Err(e) = parse_delay(s)
        {
            v.push(FieldError::new(format!("{path}.{field}"), e));
        }
    }
    if let Some(dls) = &d.dead_letter_sink {
        validate_destination(v, &format!("{path}.deadLetterSink"), dls, true);
    }
}

fn validate_parallelism(v: &mut Vec<FieldError>, path: &str, p: Option<i64>) {
    if let Some(p) = p
        && !(1..=MAX_PARALLELISM).contains(&p)
    {
        v.push(FieldError::new(
            path,
            format!("{p} is out of range; use 1 to {MAX_PARALLELISM}"),
        ));
    }
}

fn required(v: &mut Vec<FieldError>, path: &str, value: &str, what: &str) {
    if value.trim().is_empty() {
        v.push(FieldError::new(path, format!("{what} is required")));
    }
}

fn validate_secret(v: &mut Vec<FieldError>, path: &str, s: Option<&SecretValueFromSource>) {
    if let Some(s) = s {
        required(
            v,
            &format!("{path}.secretKeyRef.name"),
            &s.secret_key_ref.name,
            "the Secret's name",
        );
        required(
            v,
            &format!("{path}.secretKeyRef.key"),
            &s.secret_key_ref.key,
            "the key in the Secret",
        );
    }
}

fn validate_address(v: &mut Vec<FieldError>, path: &str, address: &str, schemes: &[&str]) {
    required(v, path, address, "the broker's address");
    if let Some((scheme, _)) = address.split_once("://")
        && !schemes.contains(&scheme)
    {
        v.push(FieldError::new(
            path,
            format!(
                "{scheme}:// is not supported here; use {}",
                schemes.join("://, ") + "://"
            ),
        ));
    }
}

impl RedisStreamSource {
    pub fn validate(&self, v: &mut Vec<FieldError>) {
        let s = &self.spec;
        validate_address(v, "spec.address", &s.address, &["redis"]);
        required(v, "spec.stream", &s.stream, "the stream's name");
        validate_destination(v, "spec.sink", &s.sink, true);
        validate_secret(v, "spec.password", s.password.as_ref());
        validate_delivery(v, "spec.delivery", s.delivery.as_ref());
        validate_parallelism(v, "spec.parallelism", s.parallelism);
        if let Some(c) = s.consumers {
            validate_parallelism(v, "spec.consumers", Some(i64::from(c)));
        }
        if let Some(o) = &s.dial_options {
            if o.use_tls || o.cert.is_some() || o.key.is_some() || o.ca_cert.is_some() {
                v.push(FieldError::new(
                    "spec.dialOptions",
                    "TLS to Redis is not supported yet; connect without useTLS, cert, key and caCert",
                ));
            }
            if o.password.as_ref().is_some_and(|p| p.name.is_none()) {
                v.push(FieldError::new(
                    "spec.dialOptions.password.name",
                    "the Secret's name is required",
                ));
            }
        }
    }
}

impl RedisListSource {
    pub fn validate(&self, v: &mut Vec<FieldError>) {
        let s = &self.spec;
        validate_address(v, "spec.address", &s.address, &["redis"]);
        required(v, "spec.list", &s.list, "the list's key");
        validate_destination(v, "spec.sink", &s.sink, true);
        validate_secret(v, "spec.password", s.password.as_ref());
        validate_delivery(v, "spec.delivery", s.delivery.as_ref());
        validate_parallelism(v, "spec.parallelism", s.parallelism);
    }
}

impl NatsJetStreamSource {
    pub fn validate(&self, v: &mut Vec<FieldError>) {
        let s = &self.spec;
        validate_address(v, "spec.address", &s.address, &["nats"]);
        required(v, "spec.stream", &s.stream, "the stream's name");
        if s.stream.contains(['.', '*', '>', ' ']) {
            v.push(FieldError::new(
                "spec.stream",
                "a stream name cannot hold '.', '*', '>' or spaces",
            ));
        }
        if let Some(c) = &s.consumer
            && (c.is_empty() || c.contains(['.', '*', '>', ' ']))
        {
            v.push(FieldError::new(
                "spec.consumer",
                "a consumer name is not empty and holds no '.', '*', '>' or spaces",
            ));
        }
        validate_destination(v, "spec.sink", &s.sink, true);
        validate_secret(v, "spec.token", s.token.as_ref());
        validate_delivery(v, "spec.delivery", s.delivery.as_ref());
        validate_parallelism(v, "spec.parallelism", s.parallelism);
    }
}

impl RabbitmqSource {
    pub fn validate(&self, v: &mut Vec<FieldError>) {
        let s = &self.spec;
        match &s.rabbitmq_cluster_reference.connection_secret {
            Some(secret) => required(
                v,
                "spec.rabbitmqClusterReference.connectionSecret.name",
                &secret.name,
                "the connection Secret's name",
            ),
            None => v.push(FieldError::new(
                "spec.rabbitmqClusterReference.connectionSecret",
                "Nimbus connects through a connection Secret (keys uri, username, password); \
                 a RabbitmqCluster by name needs the RabbitMQ operator, which embedded mode lacks",
            )),
        }
        let r = &s.rabbitmq_resources_config;
        required(
            v,
            "spec.rabbitmqResourcesConfig.queueName",
            &r.queue_name,
            "the queue's name",
        );
        validate_parallelism(v, "spec.rabbitmqResourcesConfig.parallelism", r.parallelism);
        validate_destination(v, "spec.sink", &s.sink, true);
        validate_delivery(v, "spec.delivery", s.delivery.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_as_iso_8601_and_go() {
        assert_eq!(parse_delay("PT0.2S"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_delay("PT1M30S"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_delay("P1DT1H"), Ok(Duration::from_secs(90_000)));
        assert_eq!(parse_delay("50ms"), Ok(Duration::from_millis(50)));
        for bad in ["P", "PT", "PT1X", "P1S", "PTS", "-1s"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn retry_defaults_and_settings() {
        let r = DeliverySpec::retry(None);
        assert_eq!(
            (r.attempts, r.linear, r.delay),
            (4, false, Duration::from_secs(1))
        );
        let d = DeliverySpec {
            retry: Some(1),
            backoff_policy: Some("linear".into()),
            backoff_delay: Some("PT0.1S".into()),
            ..Default::default()
        };
        let r = DeliverySpec::retry(Some(&d));
        assert_eq!(
            (r.attempts, r.linear, r.delay),
            (2, true, Duration::from_millis(100))
        );
    }

    #[test]
    fn knative_manifests_parse_unchanged() {
        let redis = serde_json::json!({
            "apiVersion": "sources.knative.dev/v1alpha1",
            "kind": "RedisStreamSource",
            "metadata": {"name": "s"},
            "spec": {
                "address": "redis://r:6379",
                "stream": "mystream",
                "group": "mygroup",
                "consumers": 2,
                "dialOptions": {"password": {"name": "redis-password"}},
                "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "event-display"}},
                "ceOverrides": {"extensions": {"team": "a"}},
            },
        });
        let crate::Object::RedisStreamSource(s) = crate::parse::decode_object(None, redis).unwrap()
        else {
            panic!("not a RedisStreamSource")
        };
        let p = s.spec.password_ref().unwrap().secret_key_ref;
        assert_eq!(
            (p.name.as_str(), p.key.as_str()),
            ("redis-password", "password")
        );
        let rabbit = serde_json::json!({
            "apiVersion": "sources.knative.dev/v1alpha1",
            "kind": "RabbitmqSource",
            "metadata": {"name": "r"},
            "spec": {
                "rabbitmqClusterReference": {"connectionSecret": {"name": "rabbit"}},
                "rabbitmqResourcesConfig": {"predeclared": false, "exchangeName": "ex", "queueName": "q", "parallelism": 10, "vhost": "/"},
                "delivery": {"retry": 5, "backoffPolicy": "linear", "backoffDelay": "PT0.05S"},
                "serviceAccountName": "sa",
                "sink": {"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "event-display", "namespace": "default"}},
            },
        });
        assert!(crate::parse::decode_object(None, rabbit).is_ok());
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = RedisStreamSource::default();
        s.spec.address = "http://x".into();
        s.spec.parallelism = Some(0);
        s.spec.delivery = Some(DeliverySpec {
            backoff_policy: Some("random".into()),
            ..Default::default()
        });
        let mut v = Vec::new();
        s.validate(&mut v);
        let paths: Vec<&str> = v.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.address",
                "spec.stream",
                "spec.sink",
                "spec.delivery.backoffPolicy",
                "spec.parallelism"
            ]
        );
        let mut r = RabbitmqSource::default();
        r.spec.sink.ref_ = Some(KReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "x".into(),
            namespace: None,
        });
        let mut v = Vec::new();
        r.validate(&mut v);
        let paths: Vec<&str> = v.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "spec.rabbitmqClusterReference.connectionSecret",
                "spec.rabbitmqResourcesConfig.queueName",
                "spec.sink.ref"
            ]
        );
    }
}
