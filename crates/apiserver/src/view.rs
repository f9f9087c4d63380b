//! Which version of a stored kind a request sees. Every kind is seen as it is stored but
//! Events, which the kube-apiserver also serves as `events.k8s.io/v1` (the same objects,
//! converted field by field: `regarding` for `involvedObject`, `note` for `message`, ...; see
//! `nimbus_api::events`). Nimbus serves that view for get, list, watch, create and delete;
//! updates go through the stored `v1` version.

use nimbus_api::events::{self, EVENTS_API_VERSION, EVENTS_GROUP};
use nimbus_api::{Kind, Object};
use serde_json::Value;

use crate::status::ApiError;

/// The version a request's path names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum View {
    /// The kind's own (stored) version.
    #[default]
    Stored,
    /// `events.k8s.io/v1` Events.
    EventsV1,
}

// === impl View ===

impl View {
    /// The kind and view a REST path's group, version and plural name.
    pub fn resolve(group: &str, version: &str, plural: &str) -> Option<(Kind, View)> {
        if (group, version, plural) == (EVENTS_GROUP, "v1", Kind::Event.plural()) {
            return Some((Kind::Event, View::EventsV1));
        }
        Kind::of_resource(group, version, plural).map(|k| (k, View::Stored))
    }

    /// `obj` as this view shows it.
    pub fn json(self, obj: &Object) -> Value {
        match (self, obj) {
            (View::EventsV1, Object::Event(e)) => events::to_events_v1(e),
            _ => obj.to_json(),
        }
    }

    /// The `apiVersion` of this view of `kind`.
    pub fn api_version(self, kind: Kind) -> &'static str {
        match self {
            View::EventsV1 => EVENTS_API_VERSION,
            View::Stored => kind.api_version(),
        }
    }

    /// A submitted body in this view as the stored version's JSON.
    pub fn to_stored(self, value: Value) -> Result<Value, ApiError> {
        match self {
            View::Stored => Ok(value),
            View::EventsV1 => {
                let event = events::from_events_v1(value).map_err(|e| {
                    ApiError::BadRequest(format!("not an events.k8s.io/v1 Event: {e}"))
                })?;
                Ok(serde_json::to_value(event).unwrap_or(Value::Null))
            }
        }
    }

    /// A field selector in this view's field names as the stored version's
    /// (`regarding.name=x` → `involvedObject.name=x`); names without a counterpart are kept,
    /// so parsing reports them.
    pub fn field_selector(self, text: &str) -> String {
        if self == View::Stored {
            return text.to_string();
        }
        let term = |t: &str| {
            let at = t.find(['=', '!']).unwrap_or(t.len());
            let (field, rest) = t.split_at(at);
            let field =
                events::core_field_of_events_v1(field.trim()).unwrap_or_else(|| field.to_string());
            format!("{field}{rest}")
        };
        text.split(',').map(term).collect::<Vec<_>>().join(",")
    }

    /// Refuse what this view does not serve.
    pub fn check_update(self) -> Result<(), ApiError> {
        match self {
            View::Stored => Ok(()),
            View::EventsV1 => Err(ApiError::BadRequest(
                "events.k8s.io/v1 Events are served for get, list, watch, create and delete; \
                 update or patch them through /api/v1 (the same objects)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_both_versions_of_events() {
        assert_eq!(
            View::resolve("events.k8s.io", "v1", "events"),
            Some((Kind::Event, View::EventsV1))
        );
        assert_eq!(
            View::resolve("", "v1", "events"),
            Some((Kind::Event, View::Stored))
        );
        assert_eq!(View::resolve("events.k8s.io", "v1", "secrets"), None);
        assert_eq!(
            View::EventsV1.field_selector("regarding.name=a,type!=Normal,metadata.name==x"),
            "involvedObject.name=a,type!=Normal,metadata.name==x"
        );
    }
}
