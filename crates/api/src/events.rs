//! Kubernetes Events: the core `v1` `Event` Nimbus stores, and its `events.k8s.io/v1` view.
//!
//! As the kube-apiserver does, one stored object is served through two versions: the core
//! `v1` shape is the storage shape, and [`to_events_v1`]/[`from_events_v1`] convert with the
//! kube-apiserver's field mapping (`pkg/apis/events/v1/conversion.go`):
//!
//! | core `v1` | `events.k8s.io/v1` |
//! |---|---|
//! | `involvedObject` | `regarding` |
//! | `message` | `note` |
//! | `source.component` / `source.host` | `deprecatedSource` |
//! | `firstTimestamp` / `lastTimestamp` / `count` | `deprecatedFirstTimestamp` / `deprecatedLastTimestamp` / `deprecatedCount` |
//! | `reason`, `type`, `action`, `related`, `eventTime`, `series`, `reportingComponent`, `reportingInstance` | `reason`, `type`, `action`, `related`, `eventTime`, `series`, `reportingController`, `reportingInstance` |
//!
//! No I/O: who writes events and how they are de-duplicated is `nimbus-events`' business.

use k8s_openapi::api::core::v1::{EventSeries, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `events.k8s.io`
pub const EVENTS_GROUP: &str = "events.k8s.io";
/// `events.k8s.io/v1`
pub const EVENTS_API_VERSION: &str = "events.k8s.io/v1";
/// `type: Normal`: information.
pub const TYPE_NORMAL: &str = "Normal";
/// `type: Warning`: something a user may have to act on.
pub const TYPE_WARNING: &str = "Warning";

/// The field selectors the kube-apiserver supports on core `v1` Events
/// (`pkg/registry/core/event/strategy.go`'s `ToSelectableFields`), besides `metadata.*`.
pub const FIELD_LABELS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// A core `v1` Event: something that happened to `involvedObject`, with the reason a user
/// can look up and a message saying why.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "io.k8s.api.core.v1.Event"))]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The object this event is about.
    #[serde(default)]
    pub involved_object: ObjectReference,
    /// A short UpperCamelCase reason (`ScaledUp`, `Pulled`, `BackOff`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What happened, for a human.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Who reported it (deprecated in favour of `reportingComponent`, still what kubectl shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<EventSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schemars", schemars(schema_with = "date_time"))]
    pub first_timestamp: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schemars", schemars(schema_with = "date_time"))]
    pub last_timestamp: Option<Time>,
    /// How many times it happened (de-duplicated events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<i32>,
    /// `Normal` or `Warning`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schemars", schemars(schema_with = "date_time"))]
    pub event_time: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<EventSeries>,
    /// What was done (`Scale`, `Pull`, `Start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related: Option<ObjectReference>,
    /// The controller that emitted it (`nimbus.dev/autoscaler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_component: Option<String>,
    /// Which instance of the controller (the host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reporting_instance: Option<String>,
}

impl Event {
    pub const KIND: &'static str = "Event";
    pub const PLURAL: &'static str = "events";

    /// The value a field selector names (`involvedObject.name`, `type`, `reason`, ...), or
    /// `None` when `path` is not one the kube-apiserver lets one select on.
    pub fn field(&self, path: &str) -> Option<String> {
        let r = &self.involved_object;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Some(match path {
            "involvedObject.kind" => s(&r.kind),
            "involvedObject.namespace" => s(&r.namespace),
            "involvedObject.name" => s(&r.name),
            "involvedObject.uid" => s(&r.uid),
            "involvedObject.apiVersion" => s(&r.api_version),
            "involvedObject.resourceVersion" => s(&r.resource_version),
            "involvedObject.fieldPath" => s(&r.field_path),
            "reason" => s(&self.reason),
            "reportingComponent" => s(&self.reporting_component),
            "source" => self
                .source
                .as_ref()
                .and_then(|x| x.component.clone())
                .unwrap_or_default(),
            "type" => s(&self.type_),
            _ => return None,
        })
    }

    /// The count, at least 1 (a series' count wins when larger).
    pub fn occurrences(&self) -> i32 {
        let series = self.series.as_ref().map_or(0, |s| s.count.unwrap_or(0));
        self.count.unwrap_or(1).max(series).max(1)
    }
}

/// The `events.k8s.io/v1` field a core `v1` field selector path names (`regarding.name` for
/// `involvedObject.name`, `note`... ), for selectors sent to the `events.k8s.io` view.
pub fn core_field_of_events_v1(path: &str) -> Option<String> {
    if let Some(rest) = path.strip_prefix("regarding.") {
        return Some(format!("involvedObject.{rest}"));
    }
    match path {
        "reason" | "type" | "reportingComponent" => Some(path.to_string()),
        "reportingController" => Some("reportingComponent".into()),
        "deprecatedSource" => Some("source".into()),
        _ => None,
    }
}

/// The stored core `v1` event as `events.k8s.io/v1` JSON.
pub fn to_events_v1(event: &Event) -> Value {
    let core = serde_json::to_value(event).unwrap_or(Value::Null);
    let Value::Object(mut core) = core else {
        return Value::Null;
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), EVENTS_API_VERSION.into());
    out.insert("kind".into(), Event::KIND.into());
    for (from, to) in V1_NAMES {
        if let Some(v) = core.remove(*from) {
            out.insert((*to).into(), v);
        }
    }
    // events.k8s.io requires eventTime; old core events without one show their first time.
    if !out.contains_key("eventTime") {
        let first = out.get("deprecatedFirstTimestamp").cloned();
        out.insert("eventTime".into(), first.unwrap_or(Value::Null));
    }
    Value::Object(out)
}

/// `events.k8s.io/v1` JSON as the stored core `v1` event.
pub fn from_events_v1(value: Value) -> Result<Event, serde_json::Error> {
    let Value::Object(mut v1) = value else {
        return serde_json::from_value(value);
    };
    let mut core = Map::new();
    for (to, from) in V1_NAMES {
        if let Some(v) = v1.remove(*from) {
            core.insert((*to).into(), v);
        }
    }
    core.insert("apiVersion".into(), "v1".into());
    core.insert("kind".into(), Event::KIND.into());
    serde_json::from_value(Value::Object(core))
}

/// (core `v1` name, `events.k8s.io/v1` name) of every field.
const V1_NAMES: &[(&str, &str)] = &[
    ("metadata", "metadata"),
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("related", "related"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
];

#[cfg(feature = "schemars")]
fn date_time(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "string", "format": "date-time"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "hello.1", "namespace": "default"},
            "involvedObject": {"kind": "Service", "name": "hello", "namespace": "default",
                               "apiVersion": "serving.knative.dev/v1", "uid": "u1"},
            "reason": "ScaledUp", "message": "from 1 to 3", "type": "Normal",
            "source": {"component": "nimbus-autoscaler"},
            "firstTimestamp": "2026-12-08T00:00:00Z", "lastTimestamp": "2026-12-08T00:05:00Z",
            "count": 4,
            "series": {"count": 4, "lastObservedTime": "2026-12-08T00:05:00.000000Z"},
            "eventTime": "2026-12-08T00:00:00.000000Z",
            "reportingComponent": "nimbus-autoscaler", "reportingInstance": "host-a",
            "action": "Scale"
        })
    }

    #[test]
    fn converts_to_events_v1_and_back_as_the_kube_apiserver_does() {
        let event: Event = serde_json::from_value(core()).unwrap();
        let v1 = to_events_v1(&event);
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "hello");
        assert_eq!(v1["note"], "from 1 to 3");
        assert_eq!(v1["deprecatedCount"], 4);
        assert_eq!(v1["series"]["count"], 4);
        assert_eq!(v1["reportingController"], "nimbus-autoscaler");
        assert_eq!(v1["deprecatedSource"]["component"], "nimbus-autoscaler");
        assert!(v1.get("involvedObject").is_none() && v1.get("message").is_none());
        let back = from_events_v1(v1).unwrap();
        assert_eq!(serde_json::to_value(&back).unwrap(), core());
    }

    #[test]
    fn selectable_fields() {
        let event: Event = serde_json::from_value(core()).unwrap();
        for path in FIELD_LABELS {
            assert!(event.field(path).is_some(), "{path}");
        }
        assert_eq!(event.field("involvedObject.uid").as_deref(), Some("u1"));
        assert_eq!(event.field("source").as_deref(), Some("nimbus-autoscaler"));
        assert_eq!(event.field("spec.x"), None);
        assert_eq!(
            core_field_of_events_v1("regarding.name").as_deref(),
            Some("involvedObject.name")
        );
        assert_eq!(event.occurrences(), 4);
    }
}
