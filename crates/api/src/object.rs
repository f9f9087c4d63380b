//! One enum over the resource kinds, so stores, the API server and the CLI can handle any of
//! them without one copy of the same code per kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::core::{ConfigMap, Secret};
use crate::events::Event;
use crate::jobs::{Execution, Job, Schedule};
use crate::keda::{ScaledObject, TriggerAuthentication};
use crate::kingress::KIngress;
use crate::podautoscaler::PodAutoscaler;
use crate::serving::{Configuration, Revision, Route, Service};
use crate::sources::{
    NatsJetStreamSource, RabbitmqSource, RedisListSource, RedisStreamSource, SourceStatus,
};

/// The resource kinds Nimbus serves: Knative Serving's four public kinds, the two internal
/// ones its controllers hand state over with, and the core `v1` Secret and ConfigMap that
/// revisions read values from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Configuration,
    Revision,
    Route,
    /// `autoscaling.internal.knative.dev/v1alpha1` PodAutoscaler.
    PodAutoscaler,
    /// `networking.internal.knative.dev/v1alpha1` Ingress.
    Ingress,
    /// Core `v1` Secret.
    Secret,
    /// Core `v1` ConfigMap.
    ConfigMap,
    /// `run.nimbus.dev/v1` Job: the template of executions.
    Job,
    /// `run.nimbus.dev/v1` Execution: one run of a Job.
    Execution,
    /// `run.nimbus.dev/v1` Schedule: cron for Jobs and events.
    Schedule,
    /// KEDA's `keda.sh/v1alpha1` ScaledObject.
    ScaledObject,
    /// KEDA's `keda.sh/v1alpha1` TriggerAuthentication.
    TriggerAuthentication,
    /// `sources.knative.dev/v1alpha1` RedisStreamSource.
    RedisStreamSource,
    /// `sources.knative.dev/v1alpha1` RabbitmqSource.
    RabbitmqSource,
    /// `sources.nimbus.dev/v1alpha1` RedisListSource.
    RedisListSource,
    /// `sources.nimbus.dev/v1alpha1` NatsJetStreamSource.
    NatsJetStreamSource,
    /// Core `v1` Event (also served as `events.k8s.io/v1`).
    Event,
}

/// `items` without repeats, in order.
fn distinct<const N: usize>(items: [&'static str; N]) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::Service,
        Kind::Configuration,
        Kind::Revision,
        Kind::Route,
        Kind::PodAutoscaler,
        Kind::Ingress,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Job,
        Kind::Execution,
        Kind::Schedule,
        Kind::ScaledObject,
        Kind::TriggerAuthentication,
        Kind::RedisStreamSource,
        Kind::RabbitmqSource,
        Kind::RedisListSource,
        Kind::NatsJetStreamSource,
        Kind::Event,
    ];

    /// `Service`, `Configuration`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => Service::KIND,
            Kind::Configuration => Configuration::KIND,
            Kind::Revision => Revision::KIND,
            Kind::Route => Route::KIND,
            Kind::PodAutoscaler => PodAutoscaler::KIND,
            Kind::Ingress => KIngress::KIND,
            Kind::Secret => Secret::KIND,
            Kind::ConfigMap => ConfigMap::KIND,
            Kind::Job => Job::KIND,
            Kind::Execution => Execution::KIND,
            Kind::Schedule => Schedule::KIND,
            Kind::ScaledObject => ScaledObject::KIND,
            Kind::TriggerAuthentication => TriggerAuthentication::KIND,
            Kind::RedisStreamSource => RedisStreamSource::KIND,
            Kind::RabbitmqSource => RabbitmqSource::KIND,
            Kind::RedisListSource => RedisListSource::KIND,
            Kind::NatsJetStreamSource => NatsJetStreamSource::KIND,
            Kind::Event => Event::KIND,
        }
    }

    /// `services`, `configurations`, ...
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Service => Service::PLURAL,
            Kind::Configuration => Configuration::PLURAL,
            Kind::Revision => Revision::PLURAL,
            Kind::Route => Route::PLURAL,
            Kind::PodAutoscaler => PodAutoscaler::PLURAL,
            Kind::Ingress => KIngress::PLURAL,
            Kind::Secret => Secret::PLURAL,
            Kind::ConfigMap => ConfigMap::PLURAL,
            Kind::Job => Job::PLURAL,
            Kind::Execution => Execution::PLURAL,
            Kind::Schedule => Schedule::PLURAL,
            Kind::ScaledObject => ScaledObject::PLURAL,
            Kind::TriggerAuthentication => TriggerAuthentication::PLURAL,
            Kind::RedisStreamSource => RedisStreamSource::PLURAL,
            Kind::RabbitmqSource => RabbitmqSource::PLURAL,
            Kind::RedisListSource => RedisListSource::PLURAL,
            Kind::NatsJetStreamSource => NatsJetStreamSource::PLURAL,
            Kind::Event => Event::PLURAL,
        }
    }

    /// The API group: `serving.knative.dev` for the public kinds, empty for the core kinds.
    pub fn group(self) -> &'static str {
        match self {
            Kind::PodAutoscaler => crate::podautoscaler::GROUP,
            Kind::Ingress => crate::kingress::GROUP,
            Kind::Secret | Kind::ConfigMap | Kind::Event => crate::core::GROUP,
            Kind::Job | Kind::Execution | Kind::Schedule => crate::jobs::GROUP,
            Kind::ScaledObject | Kind::TriggerAuthentication => crate::keda::GROUP,
            Kind::RedisStreamSource | Kind::RabbitmqSource => crate::sources::KNATIVE_GROUP,
            Kind::RedisListSource | Kind::NatsJetStreamSource => crate::sources::NIMBUS_GROUP,
            _ => crate::GROUP,
        }
    }

    /// `v1`, or `v1alpha1` for the internal kinds.
    pub fn version(self) -> &'static str {
        match self {
            Kind::PodAutoscaler | Kind::Ingress => "v1alpha1",
            Kind::ScaledObject | Kind::TriggerAuthentication => "v1alpha1",
            k if k.is_source() => "v1alpha1",
            _ => "v1",
        }
    }

    /// `group/version`.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::PodAutoscaler => crate::podautoscaler::API_VERSION,
            Kind::Ingress => crate::kingress::API_VERSION,
            Kind::Secret | Kind::ConfigMap | Kind::Event => crate::core::API_VERSION,
            Kind::Job | Kind::Execution | Kind::Schedule => crate::jobs::API_VERSION,
            Kind::ScaledObject | Kind::TriggerAuthentication => crate::keda::API_VERSION,
            Kind::RedisStreamSource | Kind::RabbitmqSource => crate::sources::KNATIVE_API_VERSION,
            Kind::RedisListSource | Kind::NatsJetStreamSource => crate::sources::NIMBUS_API_VERSION,
            _ => crate::API_VERSION,
        }
    }

    /// The named API groups (`/apis/{group}`) of all kinds, each once, in [`Kind::ALL`]
    /// order; the core group (`/api`) is not one of them.
    pub fn groups() -> Vec<&'static str> {
        let mut groups = distinct(Kind::ALL.map(Kind::group));
        groups.retain(|g| !g.is_empty());
        groups
    }

    /// The `group/version`s of all kinds, each once, in [`Kind::ALL`] order (each group
    /// serves one version).
    pub fn api_versions() -> Vec<&'static str> {
        distinct(Kind::ALL.map(Kind::api_version))
    }

    /// The kinds of one `group/version`.
    pub fn of_api_version(api_version: &str) -> impl Iterator<Item = Kind> + '_ {
        Kind::ALL
            .into_iter()
            .filter(move |k| k.api_version() == api_version)
    }

    /// kubectl short names (`ksvc`, `rev`, `kpa`, `king`, ...).
    pub fn short_names(self) -> &'static [&'static str] {
        match self {
            Kind::Service => &["kservice", "ksvc"],
            Kind::Configuration => &["config", "cfg"],
            Kind::Revision => &["rev"],
            Kind::Route => &["rt"],
            Kind::PodAutoscaler => &["kpa", "pa"],
            Kind::Ingress => &["kingress", "king"],
            Kind::Secret => &[],
            Kind::ConfigMap => &["cm"],
            Kind::Job => &["rj"],
            Kind::Execution => &["exec", "execs"],
            Kind::Schedule => &["sched"],
            Kind::ScaledObject => &["so"],
            Kind::TriggerAuthentication => &["ta", "triggerauth"],
            Kind::RedisStreamSource => &["redisstream"],
            Kind::RabbitmqSource => &["rmqsource"],
            Kind::RedisListSource => &["redislist"],
            Kind::NatsJetStreamSource => &["jetstreamsource"],
            Kind::Event => &["ev"],
        }
    }

    /// kubectl categories (`kubectl get knative`), as Knative's CRDs declare them.
    pub fn categories(self) -> &'static [&'static str] {
        match self {
            Kind::PodAutoscaler => &["knative-internal", "autoscaling"],
            Kind::Ingress => &["knative-internal", "networking"],
            Kind::Secret | Kind::ConfigMap | Kind::Event => &[],
            Kind::Job | Kind::Execution | Kind::Schedule => &["all", "nimbus", "jobs"],
            Kind::ScaledObject | Kind::TriggerAuthentication => &["keda"],
            // As Knative Eventing's source CRDs declare them.
            k if k.is_source() => &["all", "knative", "eventing", "sources", "importers"],
            _ => &["all", "knative", "serving"],
        }
    }

    /// The kind a `group`, `version` and resource `plural` name, as in a REST path
    /// (`/apis/{group}/{version}/.../{plural}`); `None` when that group-version has no such
    /// resource.
    pub fn of_resource(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.version() == version && k.plural() == plural)
    }

    /// Whether users write this kind (the internal kinds are written by Nimbus's controllers;
    /// users may read them, as on Knative).
    pub fn is_internal(self) -> bool {
        matches!(self, Kind::PodAutoscaler | Kind::Ingress)
    }

    /// Whether this is an event source kind (consumed by `nimbus-sources`).
    pub fn is_source(self) -> bool {
        matches!(
            self,
            Kind::RedisStreamSource
                | Kind::RabbitmqSource
                | Kind::RedisListSource
                | Kind::NatsJetStreamSource
        )
    }

    /// Whether this is a core `v1` kind (Secret, ConfigMap, Event): served under `/api/v1`,
    /// never a CRD, reconciled by no controller of Nimbus's.
    pub fn is_core(self) -> bool {
        matches!(self, Kind::Secret | Kind::ConfigMap | Kind::Event)
    }

    /// Whether this is one of KEDA's kinds (`keda.sh`): on a cluster KEDA itself installs
    /// and serves them; embedded, `nimbus-keda` evaluates them.
    pub fn is_keda(self) -> bool {
        matches!(self, Kind::ScaledObject | Kind::TriggerAuthentication)
    }

    /// The kinds Nimbus's controllers reconcile: all but the core kinds, KEDA's (evaluated by
    /// `nimbus-keda`) and the event sources (run by the source supervisor), in [`Kind::ALL`]
    /// order.
    pub fn knative() -> impl Iterator<Item = Kind> {
        Kind::ALL
            .into_iter()
            .filter(|k| !k.is_core() && !k.is_keda() && !k.is_source())
    }

    /// The kinds a cluster installs as CRDs: [`Kind::knative`]'s, the event sources' and
    /// KEDA's. The last two are optional there ([`Kind::is_optional_on_cluster`]).
    pub fn on_cluster() -> impl Iterator<Item = Kind> {
        Kind::ALL.into_iter().filter(|k| !k.is_core())
    }

    /// Whether a cluster may already have another controller for this kind (KEDA for
    /// `keda.sh`, Knative Eventing's Redis and RabbitMQ sources): `nimbus install` leaves such
    /// a CRD alone when it is not Nimbus's, and the operator then leaves the kind to its owner.
    pub fn is_optional_on_cluster(self) -> bool {
        self.is_keda() || self.is_source()
    }

    /// Accepts kind names, plurals, singulars and kubectl short names (`ksvc`, `rev`), and
    /// `plural.group` for the internal kinds (`ingresses.networking.internal.knative.dev`).
    pub fn parse(s: &str) -> Option<Kind> {
        let lower = s.to_ascii_lowercase();
        let found = match lower.as_str() {
            "service" | "services" | "ksvc" | "kservice" | "svc" => Some(Kind::Service),
            "configuration" | "configurations" | "config" | "cfg" => Some(Kind::Configuration),
            "revision" | "revisions" | "rev" => Some(Kind::Revision),
            "route" | "routes" | "rt" => Some(Kind::Route),
            "podautoscaler" | "podautoscalers" | "kpa" | "pa" => Some(Kind::PodAutoscaler),
            "kingress" | "king" | "ingress" | "ingresses" => Some(Kind::Ingress),
            "secret" | "secrets" => Some(Kind::Secret),
            "configmap" | "configmaps" | "cm" => Some(Kind::ConfigMap),
            "job" | "jobs" | "rj" => Some(Kind::Job),
            "execution" | "executions" | "exec" | "execs" => Some(Kind::Execution),
            "schedule" | "schedules" | "sched" => Some(Kind::Schedule),
            "scaledobject" | "scaledobjects" | "so" => Some(Kind::ScaledObject),
            "triggerauthentication" | "triggerauthentications" | "ta" | "triggerauth" => {
                Some(Kind::TriggerAuthentication)
            }
            "redisstreamsource" | "redisstreamsources" | "redisstream" => {
                Some(Kind::RedisStreamSource)
            }
            "rabbitmqsource" | "rabbitmqsources" | "rmqsource" => Some(Kind::RabbitmqSource),
            "redislistsource" | "redislistsources" | "redislist" => Some(Kind::RedisListSource),
            "natsjetstreamsource" | "natsjetstreamsources" | "jetstreamsource" => {
                Some(Kind::NatsJetStreamSource)
            }
            "event" | "events" | "ev" => Some(Kind::Event),
            _ => None,
        };
        found.or_else(|| {
            Kind::ALL.into_iter().find(|k| {
                let (plural, singular) = (k.plural(), k.as_str().to_ascii_lowercase());
                [plural, singular.as_str()]
                    .iter()
                    .any(|name| lower == format!("{name}.{}", k.group()))
            })
        })
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Service(Service),
    Configuration(Configuration),
    Revision(Revision),
    Route(Route),
    PodAutoscaler(PodAutoscaler),
    Ingress(KIngress),
    Secret(Secret),
    ConfigMap(ConfigMap),
    Job(Job),
    Execution(Execution),
    Schedule(Schedule),
    ScaledObject(ScaledObject),
    TriggerAuthentication(TriggerAuthentication),
    RedisStreamSource(RedisStreamSource),
    RabbitmqSource(RabbitmqSource),
    RedisListSource(RedisListSource),
    NatsJetStreamSource(NatsJetStreamSource),
    Event(Event),
}

macro_rules! each {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            Object::Service($o) => $e,
            Object::Configuration($o) => $e,
            Object::Revision($o) => $e,
            Object::Route($o) => $e,
            Object::PodAutoscaler($o) => $e,
            Object::Ingress($o) => $e,
            Object::Secret($o) => $e,
            Object::ConfigMap($o) => $e,
            Object::Job($o) => $e,
            Object::Execution($o) => $e,
            Object::Schedule($o) => $e,
            Object::ScaledObject($o) => $e,
            Object::TriggerAuthentication($o) => $e,
            Object::RedisStreamSource($o) => $e,
            Object::RabbitmqSource($o) => $e,
            Object::RedisListSource($o) => $e,
            Object::NatsJetStreamSource($o) => $e,
            Object::Event($o) => $e,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Service(_) => Kind::Service,
            Object::Configuration(_) => Kind::Configuration,
            Object::Revision(_) => Kind::Revision,
            Object::Route(_) => Kind::Route,
            Object::PodAutoscaler(_) => Kind::PodAutoscaler,
            Object::Ingress(_) => Kind::Ingress,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Job(_) => Kind::Job,
            Object::Execution(_) => Kind::Execution,
            Object::Schedule(_) => Kind::Schedule,
            Object::ScaledObject(_) => Kind::ScaledObject,
            Object::TriggerAuthentication(_) => Kind::TriggerAuthentication,
            Object::RedisStreamSource(_) => Kind::RedisStreamSource,
            Object::RabbitmqSource(_) => Kind::RabbitmqSource,
            Object::RedisListSource(_) => Kind::RedisListSource,
            Object::NatsJetStreamSource(_) => Kind::NatsJetStreamSource,
            Object::Event(_) => Kind::Event,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or("default")
    }

    /// Fill in `apiVersion` and `kind`.
    pub fn set_type_meta(&mut self) {
        let (kind, api_version) = (self.kind().as_str(), self.kind().api_version());
        each!(self, o => {
            o.api_version = api_version.to_string();
            o.kind = kind.to_string();
        })
    }

    /// The object's `generation` (0 when unset).
    pub fn generation(&self) -> i64 {
        self.metadata().generation.unwrap_or(0)
    }

    /// Take `other`'s status (same kind; otherwise nothing changes). The status subresource's
    /// rule: spec writes keep the stored status, status writes keep the stored rest.
    pub fn copy_status_from(&mut self, other: &Object) {
        match (self, other) {
            (Object::Service(t), Object::Service(f)) => t.status = f.status.clone(),
            (Object::Configuration(t), Object::Configuration(f)) => t.status = f.status.clone(),
            (Object::Revision(t), Object::Revision(f)) => t.status = f.status.clone(),
            (Object::Route(t), Object::Route(f)) => t.status = f.status.clone(),
            (Object::PodAutoscaler(t), Object::PodAutoscaler(f)) => t.status = f.status.clone(),
            (Object::Ingress(t), Object::Ingress(f)) => t.status = f.status.clone(),
            (Object::Job(t), Object::Job(f)) => t.status = f.status.clone(),
            (Object::Execution(t), Object::Execution(f)) => t.status = f.status.clone(),
            (Object::Schedule(t), Object::Schedule(f)) => t.status = f.status.clone(),
            (Object::ScaledObject(t), Object::ScaledObject(f)) => t.status = f.status.clone(),
            (Object::TriggerAuthentication(t), Object::TriggerAuthentication(f)) => {
                t.status = f.status.clone()
            }
            (Object::RedisStreamSource(t), Object::RedisStreamSource(f)) => {
                t.status = f.status.clone()
            }
            (Object::RabbitmqSource(t), Object::RabbitmqSource(f)) => t.status = f.status.clone(),
            (Object::RedisListSource(t), Object::RedisListSource(f)) => t.status = f.status.clone(),
            (Object::NatsJetStreamSource(t), Object::NatsJetStreamSource(f)) => {
                t.status = f.status.clone()
            }
            _ => {}
        }
    }

    /// An event source's status (`None` for other kinds, or before it has one).
    pub fn source_status(&self) -> Option<&SourceStatus> {
        match self {
            Object::RedisStreamSource(o) => o.status.as_ref(),
            Object::RabbitmqSource(o) => o.status.as_ref(),
            Object::RedisListSource(o) => o.status.as_ref(),
            Object::NatsJetStreamSource(o) => o.status.as_ref(),
            _ => None,
        }
    }

    /// Set an event source's status (nothing for other kinds).
    pub fn set_source_status(&mut self, status: SourceStatus) {
        match self {
            Object::RedisStreamSource(o) => o.status = Some(status),
            Object::RabbitmqSource(o) => o.status = Some(status),
            Object::RedisListSource(o) => o.status = Some(status),
            Object::NatsJetStreamSource(o) => o.status = Some(status),
            _ => {}
        }
    }

    /// Drop the status (what a user sends never sets it).
    pub fn clear_status(&mut self) {
        match self {
            Object::Service(o) => o.status = None,
            Object::Configuration(o) => o.status = None,
            Object::Revision(o) => o.status = None,
            Object::Route(o) => o.status = None,
            Object::PodAutoscaler(o) => o.status = None,
            Object::Ingress(o) => o.status = None,
            Object::Job(o) => o.status = None,
            Object::Execution(o) => o.status = None,
            Object::Schedule(o) => o.status = None,
            Object::ScaledObject(o) => o.status = None,
            Object::TriggerAuthentication(o) => o.status = None,
            Object::RedisStreamSource(o) => o.status = None,
            Object::RabbitmqSource(o) => o.status = None,
            Object::RedisListSource(o) => o.status = None,
            Object::NatsJetStreamSource(o) => o.status = None,
            Object::Secret(_) | Object::ConfigMap(_) | Object::Event(_) => {}
        }
    }

    /// Whether deletion has been requested and waits for finalizers.
    pub fn is_deleting(&self) -> bool {
        self.metadata().deletion_timestamp.is_some()
    }

    /// Whether `finalizer` is on the object.
    pub fn has_finalizer(&self, finalizer: &str) -> bool {
        self.metadata()
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|x| x == finalizer))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Deserialize a JSON value of a known kind.
    pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            Kind::Service => Object::Service(serde_json::from_value(value)?),
            Kind::Configuration => Object::Configuration(serde_json::from_value(value)?),
            Kind::Revision => Object::Revision(serde_json::from_value(value)?),
            Kind::Route => Object::Route(serde_json::from_value(value)?),
            Kind::PodAutoscaler => Object::PodAutoscaler(serde_json::from_value(value)?),
            Kind::Ingress => Object::Ingress(serde_json::from_value(value)?),
            Kind::Secret => Object::Secret(serde_json::from_value(value)?),
            Kind::ConfigMap => Object::ConfigMap(serde_json::from_value(value)?),
            Kind::Job => Object::Job(serde_json::from_value(value)?),
            Kind::Execution => Object::Execution(serde_json::from_value(value)?),
            Kind::Schedule => Object::Schedule(serde_json::from_value(value)?),
            Kind::ScaledObject => Object::ScaledObject(serde_json::from_value(value)?),
            Kind::TriggerAuthentication => {
                Object::TriggerAuthentication(serde_json::from_value(value)?)
            }
            Kind::RedisStreamSource => Object::RedisStreamSource(serde_json::from_value(value)?),
            Kind::RabbitmqSource => Object::RabbitmqSource(serde_json::from_value(value)?),
            Kind::RedisListSource => Object::RedisListSource(serde_json::from_value(value)?),
            Kind::NatsJetStreamSource => {
                Object::NatsJetStreamSource(serde_json::from_value(value)?)
            }
            Kind::Event => Object::Event(serde_json::from_value(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_aliases() {
        assert_eq!(Kind::parse("ksvc"), Some(Kind::Service));
        assert_eq!(Kind::parse("Revisions"), Some(Kind::Revision));
        assert_eq!(Kind::parse("pods"), None);
        assert_eq!(
            Kind::of_resource("serving.knative.dev", "v1", "ingresses"),
            None
        );
        assert_eq!(Kind::parse("kpa"), Some(Kind::PodAutoscaler));
        assert_eq!(Kind::parse("cm"), Some(Kind::ConfigMap));
        assert_eq!(Kind::of_resource("", "v1", "secrets"), Some(Kind::Secret));
        assert_eq!(Kind::Secret.api_version(), "v1");
        assert!(Kind::knative().all(|k| !k.is_core()));
        assert_eq!(Kind::knative().count(), 9);
        assert_eq!(Kind::parse("executions"), Some(Kind::Execution));
        assert_eq!(Kind::Job.api_version(), "run.nimbus.dev/v1");
        assert_eq!(
            Kind::parse("ingresses.networking.internal.knative.dev"),
            Some(Kind::Ingress)
        );
        for k in Kind::ALL {
            assert_eq!(
                Kind::of_resource(k.group(), k.version(), k.plural()),
                Some(k)
            );
            assert_eq!(Kind::parse(k.plural()), Some(k));
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
