//! Knative's defaulting: values filled in before validation and storage, so what users read back
//! is what runs (`timeoutSeconds: 300`, `latestRevision: true`, the container name, ...).

use k8s_openapi::ByteString;

use crate::constants::DEFAULT_TIMEOUT_SECONDS;
use crate::core::{SECRET_TYPE_OPAQUE, Secret};
use crate::object::Object;
use crate::serving::{RevisionSpec, TrafficTarget};

/// Name given to the single container when the manifest leaves it out (Knative's default).
pub const DEFAULT_CONTAINER_NAME: &str = "user-container";

/// Apply defaults in place.
pub fn apply_defaults(obj: &mut Object) {
    match obj {
        Object::Service(s) => {
            default_revision_spec(&mut s.spec.template.spec);
            if s.spec.traffic.is_empty() {
                s.spec.traffic.push(TrafficTarget {
                    latest_revision: Some(true),
                    percent: Some(100),
                    ..Default::default()
                });
            }
            default_traffic(&mut s.spec.traffic);
        }
        Object::Configuration(c) => default_revision_spec(&mut c.spec.template.spec),
        Object::Revision(r) => default_revision_spec(&mut r.spec),
        Object::Route(r) => default_traffic(&mut r.spec.traffic),
        Object::Secret(s) => default_secret(s),
        Object::PodAutoscaler(_) | Object::Ingress(_) | Object::ConfigMap(_) => {}
        Object::RedisStreamSource(_)
        | Object::RabbitmqSource(_)
        | Object::RedisListSource(_)
        | Object::NatsJetStreamSource(_) => {}
    }
}

/// Kubernetes' rules: `stringData` is merged into `data` (winning over it) and never stored;
/// `type` is `Opaque` unless given.
fn default_secret(s: &mut Secret) {
    for (key, value) in std::mem::take(&mut s.string_data) {
        s.data.insert(key, ByteString(value.into_bytes()));
    }
    if s.type_.as_deref().is_none_or(str::is_empty) {
        s.type_ = Some(SECRET_TYPE_OPAQUE.to_string());
    }
}

fn default_revision_spec(spec: &mut RevisionSpec) {
    spec.timeout_seconds.get_or_insert(DEFAULT_TIMEOUT_SECONDS);
    if spec.timeout_seconds == Some(0) {
        spec.timeout_seconds = Some(DEFAULT_TIMEOUT_SECONDS);
    }
    spec.container_concurrency.get_or_insert(0);
    if let [c] = spec.containers.as_mut_slice()
        && c.name.is_empty()
    {
        c.name = DEFAULT_CONTAINER_NAME.to_string();
    }
}

fn default_traffic(traffic: &mut [TrafficTarget]) {
    for t in traffic {
        if t.revision_name.is_none() && t.latest_revision.is_none() {
            t.latest_revision = Some(true);
        }
        if t.revision_name.is_some() && t.latest_revision.is_none() {
            t.latest_revision = Some(false);
        }
    }
}
