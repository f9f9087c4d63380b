//! KEDA's trigger metadata, parsed into typed settings with KEDA's names and defaults (each
//! scaler's `keda:"name=..., default=..."` tags in kedacore/keda `pkg/scalers/*_scaler.go` and
//! <https://keda.sh/docs/latest/scalers/>). Pure: the values a TriggerAuthentication or the
//! target's environment supply are passed in.
//!
//! A parameter is looked up as KEDA does: the trigger's `metadata`, then `<name>FromEnv` (a
//! variable of the Service's container), then the TriggerAuthentication's parameters. When
//! those two are not known yet ([`Sources::pending`], at apply time) a missing parameter they
//! could supply is no error.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::FieldError;
use crate::keda::ScaleTriggers;

/// Where a trigger's parameters come from.
#[derive(Clone, Copy, Debug)]
pub struct Sources<'a> {
    pub metadata: &'a BTreeMap<String, String>,
    /// Resolved TriggerAuthentication parameters; `None`: not known yet.
    pub auth: Option<&'a BTreeMap<String, String>>,
    /// The target container's literal environment; `None`: not known yet.
    pub env: Option<&'a BTreeMap<String, String>>,
}

impl<'a> Sources<'a> {
    /// Only the metadata, the rest to be resolved later (apply-time validation).
    pub fn pending(metadata: &'a BTreeMap<String, String>) -> Self {
        Self {
            metadata,
            auth: None,
            env: None,
        }
    }

    fn is_pending(&self) -> bool {
        self.auth.is_none() || self.env.is_none()
    }
}

/// How a trigger's metric is compared with its target (the HPA's metric target types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricType {
    /// `AverageValue` (KEDA's default): instances = ceil(metric / target).
    AverageValue,
    /// `Value`: instances = ceil(current × metric / target).
    Value,
}

/// What a trigger measures.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// `redis`: the length of a list (LLEN).
    RedisList { conn: RedisConn, list: String },
    /// `redis-streams`: a stream's length, a group's pending entries or its lag.
    RedisStreams {
        conn: RedisConn,
        stream: String,
        measure: StreamMeasure,
    },
    /// `nats-jetstream`: a consumer's `num_pending + num_ack_pending` from the server's
    /// monitoring endpoint (`/jsz`), as KEDA reads it.
    NatsJetStream {
        /// `http://host:port/jsz?acc=...&consumers=true&config=true`
        url: String,
        account: String,
        stream: String,
        consumer: String,
    },
    /// `rabbitmq` over AMQP: a queue's ready messages (passive queue.declare).
    RabbitMq { url: String, queue: String },
    /// `cron`: `desiredReplicas` between `start` and `end` in `timezone`.
    Cron {
        timezone: chrono_tz::Tz,
        start: String,
        end: String,
        desired: u32,
    },
}

/// Which number of a Redis stream is the metric (KEDA's `scaleFactor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamMeasure {
    /// XLEN (no `consumerGroup`).
    Length,
    /// XPENDING's count of the group (`consumerGroup`, no `lagCount`).
    Pending,
    /// XINFO GROUPS' `lag` of the group (`consumerGroup` and `lagCount`).
    Lag,
}

/// A Redis server to connect to.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConn {
    /// `host:port`
    pub address: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub database: i64,
    /// The consumer group (streams).
    pub group: Option<String>,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConn")
            .field("address", &self.address)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .finish()
    }
}

/// A parsed trigger: what to measure, the target per instance and the activation threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Trigger {
    /// `redis`, `rabbitmq`, ...
    pub type_: String,
    pub source: Source,
    pub metric_type: MetricType,
    /// The target value per instance (`listLength`, `lagThreshold`, `value`, ...).
    pub target: f64,
    /// Active when the metric is above this (`activationListLength`, ...).
    pub activation: f64,
    /// KEDA's metric name: `s{index}-{type}-{detail}`.
    pub metric_name: String,
}

/// The trigger types Nimbus evaluates.
pub const TYPES: [&str; 5] = [
    "redis",
    "redis-streams",
    "nats-jetstream",
    "rabbitmq",
    "cron",
];

/// Parse trigger `index` (at field path `path`, e.g. `spec.triggers[0]`).
pub fn parse(
    path: &str,
    index: usize,
    trigger: &ScaleTriggers,
    sources: Sources<'_>,
) -> Result<Trigger, Vec<FieldError>> {
    let mut p = Params::new(path, sources);
    let metric_type = metric_type(&mut p, trigger.metric_type.as_deref());
    let parsed = match trigger.type_.as_str() {
        "redis" => redis_list(&mut p),
        "redis-streams" => redis_streams(&mut p),
        "nats-jetstream" => nats_jetstream(&mut p),
        "rabbitmq" => rabbitmq(&mut p),
        "cron" => cron(&mut p),
        other => {
            p.error(
                "type",
                format!(
                    "trigger type {other:?} is not supported by Nimbus; use one of {}",
                    TYPES.join(", ")
                ),
            );
            None
        }
    };
    match (parsed, p.errors.is_empty()) {
        (Some((source, target, activation, detail)), true) => Ok(Trigger {
            type_: trigger.type_.clone(),
            metric_name: metric_name(index, &trigger.type_, &detail),
            source,
            metric_type,
            target,
            activation,
        }),
        _ => Err(p.errors),
    }
}

/// KEDA's `GenerateMetricNameWithIndex(i, NormalizeString(name))`: `s0-redis-mylist`.
fn metric_name(index: usize, type_: &str, detail: &str) -> String {
    let raw = format!("{type_}-{detail}");
    let normalized: String = raw
        .chars()
        .map(|c| match c {
            '/' | '.' | ':' | '%' | '(' | ')' | '"' | '_' | ' ' => '-',
            c => c,
        })
        .collect();
    format!("s{index}-{normalized}")
}

fn metric_type(p: &mut Params<'_>, given: Option<&str>) -> MetricType {
    match given.unwrap_or("AverageValue") {
        "" | "AverageValue" => MetricType::AverageValue,
        "Value" => MetricType::Value,
        other => {
            p.errors.push(FieldError::new(
                format!("{}.metricType", p.path),
                format!(
                    "{other:?} is not a metric type for this trigger; use AverageValue (the \
                     default) or Value"
                ),
            ));
            MetricType::AverageValue
        }
    }
}

/// (what to measure, target, activation, detail for the metric name)
type Parsed = Option<(Source, f64, f64, String)>;

// === the triggers ===

fn redis_list(p: &mut Params<'_>) -> Parsed {
    let conn = redis_conn(p, None);
    let list = p.required("listName")?;
    let target = p.number("listLength", 5.0);
    let activation = p.number("activationListLength", 0.0);
    let conn = conn?;
    Some((
        Source::RedisList {
            conn,
            list: list.clone(),
        },
        target?,
        activation?,
        list,
    ))
}

fn redis_streams(p: &mut Params<'_>) -> Parsed {
    let group = p.optional("consumerGroup");
    let conn = redis_conn(p, group.clone());
    let stream = p.required("stream")?;
    let pending = p.number("pendingEntriesCount", 5.0);
    let length = p.number("streamLength", 5.0);
    let lag = p.number("lagCount", 0.0);
    let activation = p.number("activationLagCount", 0.0)?;
    // KEDA: a consumer group means pending entries, or its lag when `lagCount` is set;
    // no group means the stream's length.
    let (measure, target) = match (&group, lag?) {
        (Some(_), lag) if lag != 0.0 => (StreamMeasure::Lag, lag),
        (Some(_), _) => (StreamMeasure::Pending, pending?),
        (None, _) => (StreamMeasure::Length, length?),
    };
    let source = Source::RedisStreams {
        conn: conn?,
        stream: stream.clone(),
        measure,
    };
    Some((source, target, activation, stream))
}

fn redis_conn(p: &mut Params<'_>, group: Option<String>) -> Option<RedisConn> {
    for (name, why) in [
        ("addresses", "Redis Cluster is not supported"),
        ("hosts", "Redis Cluster is not supported"),
        ("sentinelMaster", "Redis Sentinel is not supported"),
    ] {
        if p.optional(name).is_some() {
            p.error(
                name,
                format!("{why}; give one server as address or host and port"),
            );
        }
    }
    if p.flag("enableTLS") == Some(true) || p.flag("tls") == Some(true) {
        p.error(
            "enableTLS",
            "TLS to Redis is not supported yet; use a plain connection",
        );
    }
    let address = match (p.optional("address"), p.optional("host")) {
        (Some(address), _) => Some(address),
        (None, Some(host)) => p.required("port").map(|port| format!("{host}:{port}")),
        (None, None) if p.sources.is_pending() => Some(String::new()),
        (None, None) => {
            p.error("address", "is required (or host and port)");
            None
        }
    };
    let database = p.number("databaseIndex", 0.0);
    Some(RedisConn {
        address: address?,
        username: p.optional("username"),
        password: p.optional("password"),
        database: database? as i64,
        group,
    })
}

fn nats_jetstream(p: &mut Params<'_>) -> Parsed {
    if p.flag("useHttps") == Some(true) {
        p.error(
            "useHttps",
            "HTTPS to the monitoring endpoint is not supported yet",
        );
    }
    let endpoint = p.required_or_pending("natsServerMonitoringEndpoint");
    let account = p
        .optional("account")
        .or_else(|| p.optional("accountID"))
        .or_else(|| p.missing("account"));
    let stream = p.required("stream");
    let consumer = p.required("consumer");
    let target = p.number("lagThreshold", 10.0);
    let activation = p.number("activationLagThreshold", 0.0);
    let (endpoint, account, stream, consumer) = (endpoint?, account?, stream?, consumer?);
    let query = url_encode(&account);
    let url = format!("http://{endpoint}/jsz?acc={query}&consumers=true&config=true");
    let detail = stream.clone();
    let source = Source::NatsJetStream {
        url,
        account,
        stream,
        consumer,
    };
    Some((source, target?, activation?, detail))
}

fn rabbitmq(p: &mut Params<'_>) -> Parsed {
    let host = p.required_or_pending("host");
    let queue = p.required("queueName");
    for name in ["useRegex", "excludeUnacknowledged"] {
        if p.flag(name) == Some(true) {
            p.error(name, "needs RabbitMQ's management API (protocol http), which Nimbus does not read; use an amqp:// host");
        }
    }
    let protocol = p.optional("protocol").unwrap_or_else(|| "auto".into());
    let host = host?;
    let amqp = host.is_empty() || host.starts_with("amqp://") || host.starts_with("amqps://");
    if protocol == "http" || (protocol == "auto" && !amqp) {
        p.error("host", "Nimbus reads queues over AMQP only: give an amqp:// host (protocol auto or amqp); the management API (http) is not supported");
    }
    let (mode, target) = rabbitmq_mode(p)?;
    if mode != "QueueLength" {
        p.error("mode", format!("{mode} needs message rates from RabbitMQ's management API, which Nimbus does not read; use mode QueueLength"));
    }
    let activation = p.number("activationValue", 0.0)?;
    let url = rabbitmq_url(p, &host);
    let queue = queue?;
    Some((
        Source::RabbitMq {
            url,
            queue: queue.clone(),
        },
        target,
        activation,
        queue,
    ))
}

/// KEDA: `mode` + `value`, or the legacy `queueLength` (default 20).
fn rabbitmq_mode(p: &mut Params<'_>) -> Option<(String, f64)> {
    let mode = p.optional("mode");
    let value = p.number_opt("value");
    let legacy = p.number_opt("queueLength");
    match (mode, value, legacy) {
        (Some(_), _, Some(_)) => {
            p.error(
                "queueLength",
                "cannot be used with mode; use mode and value",
            );
            None
        }
        (Some(mode), Some(value), None) => Some((mode, value)),
        (Some(_), None, None) => {
            p.error("value", "is required with mode");
            None
        }
        (None, Some(_), _) => {
            p.error(
                "mode",
                "is required with value (QueueLength or MessageRate)",
            );
            None
        }
        (None, None, legacy) => Some(("QueueLength".into(), legacy.unwrap_or(20.0))),
    }
}

/// The AMQP URL with `vhostName` and the TriggerAuthentication's `username`/`password` in it.
fn rabbitmq_url(p: &mut Params<'_>, host: &str) -> String {
    let mut url = host.to_string();
    if let Some(vhost) = p.optional("vhostName") {
        let (scheme, rest) = url.split_once("://").unwrap_or(("amqp", &url));
        let authority = rest.split('/').next().unwrap_or(rest);
        url = format!("{scheme}://{authority}/{}", url_encode(&vhost));
    }
    if let (Some(user), Some(password)) = (p.optional("username"), p.optional("password"))
        && let Some((scheme, rest)) = url.split_once("://")
    {
        let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
        url = format!(
            "{scheme}://{}:{}@{rest}",
            url_encode(&user),
            url_encode(&password)
        );
    }
    url
}

fn cron(p: &mut Params<'_>) -> Parsed {
    let timezone = p.required("timezone").and_then(|tz| {
        chrono_tz::Tz::from_str(&tz)
            .map_err(|_| {
                p.error(
                    "timezone",
                    format!("{tz:?} is not an IANA time zone (e.g. Europe/Paris, UTC)"),
                )
            })
            .ok()
    });
    let start = p.required("start").and_then(|s| p.cron_expr("start", s));
    let end = p.required("end").and_then(|s| p.cron_expr("end", s));
    let desired = p.number_opt("desiredReplicas");
    let desired = match desired {
        Some(d) if d >= 1.0 && d.fract() == 0.0 => Some(d as u32),
        Some(_) => {
            p.error("desiredReplicas", "must be a whole number of at least 1");
            None
        }
        None => p.missing("desiredReplicas").map(|_| 0),
    };
    let (timezone, start, end, desired) = (timezone?, start?, end?, desired?);
    if start == end {
        p.error("end", "must differ from start");
    }
    let detail = format!("{}-{start}-{end}", timezone.name().replace('/', "-"));
    let source = Source::Cron {
        timezone,
        start,
        end,
        desired,
    };
    // The metric is desiredReplicas inside the window, 0 outside; one instance per unit.
    Some((source, 1.0, 0.0, detail))
}

/// Whether `now` is inside a cron trigger's window: KEDA's rule, the next `end` comes
/// before the next `start`. `false` when an expression has no next occurrence.
pub fn cron_active(
    timezone: chrono_tz::Tz,
    start: &str,
    end: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> bool {
    let local = now.with_timezone(&timezone);
    let next = |expr: &str| {
        croner::Cron::from_str(expr)
            .ok()
            .and_then(|c| c.find_next_occurrence(&local, false).ok())
    };
    match (next(start), next(end)) {
        (Some(s), Some(e)) => e < s,
        _ => false,
    }
}

/// Percent-encoding of a URL component (RFC 3986 unreserved characters kept).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

// === parameter lookup ===

struct Params<'a> {
    path: String,
    sources: Sources<'a>,
    errors: Vec<FieldError>,
}

impl<'a> Params<'a> {
    fn new(path: &str, sources: Sources<'a>) -> Self {
        Self {
            path: path.to_string(),
            sources,
            errors: Vec::new(),
        }
    }

    fn error(&mut self, name: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(
            format!("{}.metadata.{name}", self.path),
            message,
        ));
    }

    /// `name` from the metadata, `<name>FromEnv`, or the TriggerAuthentication.
    fn optional(&mut self, name: &str) -> Option<String> {
        if let Some(v) = self.sources.metadata.get(name).filter(|v| !v.is_empty()) {
            return Some(v.clone());
        }
        let from_env = format!("{name}FromEnv");
        if let Some(var) = self.sources.metadata.get(&from_env) {
            match self.sources.env.map(|env| env.get(var)) {
                Some(Some(v)) => return Some(v.clone()),
                Some(None) => self.error(
                    &from_env,
                    format!("the Service's container has no variable {var:?} with a literal value"),
                ),
                None => return Some(String::new()),
            }
        }
        self.sources.auth.and_then(|a| a.get(name)).cloned()
    }

    fn missing(&mut self, name: &str) -> Option<String> {
        self.error(name, "is required");
        None
    }

    fn required(&mut self, name: &str) -> Option<String> {
        self.optional(name).or_else(|| self.missing(name))
    }

    /// Required, unless the TriggerAuthentication or environment may still supply it.
    fn required_or_pending(&mut self, name: &str) -> Option<String> {
        match self.optional(name) {
            Some(v) => Some(v),
            None if self.sources.is_pending() => Some(String::new()),
            None => self.missing(name),
        }
    }

    fn number_opt(&mut self, name: &str) -> Option<f64> {
        let raw = self.optional(name)?;
        match raw.trim().parse::<f64>() {
            Ok(n) if n.is_finite() && n >= 0.0 => Some(n),
            _ => {
                self.error(name, format!("{raw:?} is not a number of at least 0"));
                None
            }
        }
    }

    /// A number with KEDA's default; `None` (and an error) when given but not a number.
    fn number(&mut self, name: &str, default: f64) -> Option<f64> {
        let given = self.optional(name).is_some();
        match self.number_opt(name) {
            Some(n) => Some(n),
            None if given => None,
            None => Some(default),
        }
    }

    fn flag(&mut self, name: &str) -> Option<bool> {
        let raw = self.optional(name)?;
        match raw.to_ascii_lowercase().as_str() {
            "true" | "enable" => Some(true),
            "false" | "disable" | "" => Some(false),
            _ => {
                self.error(name, format!("{raw:?} is not true or false"));
                None
            }
        }
    }

    fn cron_expr(&mut self, name: &str, expr: String) -> Option<String> {
        match croner::Cron::from_str(&expr) {
            Ok(_) if expr.split_whitespace().count() == 5 => Some(expr),
            Ok(_) => {
                self.error(name, format!("{expr:?}: KEDA's cron takes five fields (minute hour day-of-month month day-of-week)"));
                None
            }
            Err(e) => {
                self.error(name, format!("{expr:?} is not a cron expression: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
#[path = "triggers_tests.rs"]
mod tests;
