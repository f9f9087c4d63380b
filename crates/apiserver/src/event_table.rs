//! The kube-apiserver's table of Events (`pkg/printers/internalversion/printers.go`'s
//! `printEvent`): what `kubectl get events` prints, LAST SEEN / TYPE / REASON / OBJECT /
//! MESSAGE, and with `-o wide` also SUBOBJECT, SOURCE, FIRST SEEN, COUNT and NAME.
//!
//! Rows are always rendered from the stored core `v1` shape, whichever version was asked.

use serde_json::{Value, json};

use crate::table::since;

/// (name, priority, description): the kube-apiserver's columns in its order; priority 1 are
/// shown by `-o wide` only.
const COLUMNS: [(&str, u8, &str); 10] = [
    (
        "Last Seen",
        0,
        "The time at which the most recent occurrence was recorded.",
    ),
    ("Type", 0, "Normal or Warning."),
    ("Reason", 0, "Why the action was taken, machine-readable."),
    ("Object", 0, "The object this event is about (kind/name)."),
    (
        "Subobject",
        1,
        "The part of the object (involvedObject.fieldPath).",
    ),
    ("Source", 1, "The component reporting this event."),
    ("Message", 0, "A human-readable description."),
    (
        "First Seen",
        1,
        "The time at which the event was first recorded.",
    ),
    ("Count", 1, "The number of times this event has occurred."),
    ("Name", 1, "Name must be unique within a namespace."),
];

/// The column definitions.
pub fn definitions() -> Vec<Value> {
    COLUMNS
        .iter()
        .map(|(name, priority, description)| {
            let format = if *name == "Name" { "name" } else { "" };
            let type_ = if *name == "Count" {
                "integer"
            } else {
                "string"
            };
            json!({"name": name, "type": type_, "format": format,
                   "description": description, "priority": priority})
        })
        .collect()
}

/// One row's cells, in [`COLUMNS`] order.
pub fn cells(event: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let text = |p: &str| event.pointer(p).and_then(Value::as_str);
    let first = text("/firstTimestamp").or_else(|| text("/eventTime"));
    let (last, count) = match event.get("series").filter(|s| s.is_object()) {
        Some(series) => (
            series.get("lastObservedTime").and_then(Value::as_str),
            series.get("count").and_then(Value::as_i64).unwrap_or(1),
        ),
        None => (
            text("/lastTimestamp").or(first),
            event
                .get("count")
                .and_then(Value::as_i64)
                .filter(|c| *c > 0)
                .unwrap_or(1),
        ),
    };
    let kind = text("/involvedObject/kind")
        .unwrap_or("")
        .to_ascii_lowercase();
    let object = match text("/involvedObject/name").filter(|n| !n.is_empty()) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    vec![
        json!(since(last, now)),
        json!(text("/type").unwrap_or("")),
        json!(text("/reason").unwrap_or("")),
        json!(object),
        json!(text("/involvedObject/fieldPath").unwrap_or("")),
        json!(source(event)),
        json!(text("/message").unwrap_or("").trim()),
        json!(since(first, now)),
        json!(count),
        json!(text("/metadata/name").unwrap_or("")),
    ]
}

/// `component, host` as kubectl prints a source; the reporting controller when there is none.
fn source(event: &Value) -> String {
    let text = |p: &str| {
        event
            .pointer(p)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    match (text("/source/component"), text("/source/host")) {
        (Some(c), Some(h)) => format!("{c}, {h}"),
        (Some(c), None) => c.to_string(),
        _ => match (text("/reportingComponent"), text("/reportingInstance")) {
            (Some(c), Some(i)) => format!("{c}, {i}"),
            (Some(c), None) => c.to_string(),
            _ => String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_as_kubectl_get_events_prints_them() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-08T01:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let ev = json!({
            "metadata": {"name": "hello.1"},
            "involvedObject": {"kind": "Service", "name": "hello"},
            "reason": "ScaledUp", "message": "scaled from 1 to 3 ", "type": "Normal",
            "source": {"component": "nimbus-autoscaler"},
            "firstTimestamp": "2026-12-08T00:50:00Z", "lastTimestamp": "2026-12-08T00:59:00Z",
            "count": 3
        });
        assert_eq!(
            cells(&ev, now),
            vec![
                json!("1m"),
                json!("Normal"),
                json!("ScaledUp"),
                json!("service/hello"),
                json!(""),
                json!("nimbus-autoscaler"),
                json!("scaled from 1 to 3"),
                json!("10m"),
                json!(3),
                json!("hello.1"),
            ]
        );
        assert_eq!(definitions().len(), cells(&ev, now).len());
        let series = json!({"involvedObject": {"kind": "Revision"},
            "eventTime": "2026-12-08T00:59:30.000000Z",
            "series": {"count": 7, "lastObservedTime": "2026-12-08T00:59:50.000000Z"}});
        let c = cells(&series, now);
        assert_eq!(
            (&c[0], &c[3], &c[7], &c[8]),
            (&json!("10s"), &json!("revision"), &json!("30s"), &json!(7))
        );
    }
}
