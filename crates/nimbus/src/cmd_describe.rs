//! `nimbus describe KIND NAME`: kubectl's describe layout for any kind — the object's
//! metadata, its conditions and the Events about it (de-duplicated ones once, with their
//! count and ages, as `kubectl describe` prints them) — and `nimbus get events`' table.

use anyhow::bail;
use nimbus_api::duration::short_age;
use nimbus_api::events::Event;
use nimbus_api::{Kind, Object};
use serde_json::Value;

use crate::ClientOpts;
use crate::client::{Client, display_name};
use crate::cmd_get::{parse_kind, render};

pub async fn run(opts: &ClientOpts, kind: &str, name: &str) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    let client = Client::new(opts).await?;
    let Some(obj) = client.get(kind, name).await? else {
        bail!(
            "{} \"{name}\" not found in namespace \"{}\"",
            display_name(kind, "").trim_end_matches('/'),
            opts.namespace
        );
    };
    let events = client.list(Kind::Event, false).await?;
    let now = chrono::Utc::now().timestamp();
    print!("{}", describe(&obj, &about(&obj, events), now));
    Ok(())
}

/// The events about `obj` (by kind, name and, when both have one, uid), oldest first.
fn about(obj: &Object, events: Vec<Object>) -> Vec<Event> {
    let uid = obj.metadata().uid.as_deref();
    let mut mine: Vec<Event> = events
        .into_iter()
        .filter_map(|o| match o {
            Object::Event(e) => Some(e),
            _ => None,
        })
        .filter(|e| {
            let r = &e.involved_object;
            r.kind.as_deref() == Some(obj.kind().as_str())
                && r.name.as_deref() == Some(obj.name())
                && (r.uid.is_none() || uid.is_none() || r.uid.as_deref() == uid)
        })
        .collect();
    mine.sort_by_key(|e| seconds(last(e)));
    mine
}

/// The whole description, at `now` (Unix seconds).
fn describe(obj: &Object, events: &[Event], now: i64) -> String {
    let json = obj.to_json();
    let meta = obj.metadata();
    let mut out = String::new();
    let line =
        |out: &mut String, k: &str, v: &str| out.push_str(&format!("{:<13}{v}\n", format!("{k}:")));
    line(&mut out, "Name", obj.name());
    line(&mut out, "Namespace", obj.namespace());
    line(&mut out, "Kind", obj.kind().as_str());
    line(&mut out, "API Version", obj.kind().api_version());
    line(&mut out, "Labels", &pairs(meta.labels.as_ref()));
    line(&mut out, "Annotations", &pairs(meta.annotations.as_ref()));
    let created = meta.creation_timestamp.as_ref().map(|t| t.0.to_string());
    line(
        &mut out,
        "Created",
        created.as_deref().unwrap_or("<unknown>"),
    );
    if let Some(url) = json.pointer("/status/url").and_then(Value::as_str) {
        line(&mut out, "URL", url);
    }
    out.push_str(&conditions(&json));
    out.push_str(&events_section(events, now));
    out
}

fn pairs(map: Option<&std::collections::BTreeMap<String, String>>) -> String {
    let text: Vec<String> = map
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if text.is_empty() {
        return "<none>".into();
    }
    text.join("\n             ")
}

fn conditions(json: &Value) -> String {
    let Some(list) = json.pointer("/status/conditions").and_then(Value::as_array) else {
        return String::new();
    };
    let text = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let mut rows = head(&["Type", "Status", "Reason", "Message"]).to_vec();
    rows.extend(list.iter().map(|c| {
        let cells = ["type", "status", "reason", "message"].map(|k| text(c, k));
        cells.to_vec()
    }));
    format!("Conditions:\n{}", indent(&render(&rows)))
}

/// kubectl describe's `Events:` section.
fn events_section(events: &[Event], now: i64) -> String {
    if events.is_empty() {
        return "Events:      <none>\n".into();
    }
    let mut rows = head(&["Type", "Reason", "Age", "From", "Message"]).to_vec();
    rows.extend(events.iter().map(|e| {
        vec![
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            age(e, now),
            from(e),
            e.message.clone().unwrap_or_default().trim().to_string(),
        ]
    }));
    format!("Events:\n{}", indent(&render(&rows)))
}

/// `nimbus get events`: kubectl's LAST SEEN / TYPE / REASON / OBJECT / MESSAGE.
pub fn events_table(events: &[Object], now: i64) -> String {
    let mut rows = vec![
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
            .map(String::from)
            .to_vec(),
    ];
    let mut list: Vec<&Event> = events
        .iter()
        .filter_map(|o| match o {
            Object::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    list.sort_by_key(|e| seconds(last(e)));
    rows.extend(list.iter().map(|e| {
        let r = &e.involved_object;
        let kind = r.kind.as_deref().unwrap_or("").to_ascii_lowercase();
        vec![
            short_age(now - seconds(last(e))),
            e.type_.clone().unwrap_or_default(),
            e.reason.clone().unwrap_or_default(),
            format!("{kind}/{}", r.name.as_deref().unwrap_or("")),
            e.message.clone().unwrap_or_default().trim().to_string(),
        ]
    }));
    render(&rows)
}

/// `5m`, or `2m (x3 over 10m)` for a repeated event, as kubectl describe prints ages.
fn age(e: &Event, now: i64) -> String {
    let last_age = short_age(now - seconds(last(e)));
    match e.occurrences() {
        1 => last_age,
        n => format!(
            "{last_age} (x{n} over {})",
            short_age(now - seconds(first(e)))
        ),
    }
}

fn from(e: &Event) -> String {
    let source = e.source.as_ref().and_then(|s| s.component.clone());
    source
        .or_else(|| e.reporting_component.clone())
        .unwrap_or_default()
}

fn last(e: &Event) -> Option<nimbus_api::k8s_openapi::jiff::Timestamp> {
    let series = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref());
    series
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| first(e))
}

fn first(e: &Event) -> Option<nimbus_api::k8s_openapi::jiff::Timestamp> {
    e.first_timestamp
        .as_ref()
        .map(|t| t.0)
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

fn seconds(t: Option<nimbus_api::k8s_openapi::jiff::Timestamp>) -> i64 {
    t.map_or(0, |t| t.as_second())
}

/// The header row and kubectl's underline row.
fn head(names: &[&str]) -> [Vec<String>; 2] {
    let line = names.iter().map(|s| "-".repeat(s.len())).collect();
    [names.iter().map(|s| s.to_string()).collect(), line]
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {}\n", l.trim_end()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, reason: &str, count: i32) -> Event {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "involvedObject": {"kind": "Service", "name": "hello", "uid": "u1"},
            "reason": reason, "type": "Normal", "message": "why", "count": count,
            "source": {"component": "nimbus"},
            "firstTimestamp": "2026-12-08T00:00:00Z", "lastTimestamp": "2026-12-08T00:08:00Z"
        }))
        .unwrap()
    }

    #[test]
    fn describes_conditions_and_deduplicated_events() {
        let svc = Object::from_json(
            Kind::Service,
            json!({"metadata": {"name": "hello", "namespace": "default", "uid": "u1"},
                   "spec": {"template": {"spec": {"containers": [{"image": "x"}]}}},
                   "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
        .unwrap();
        let now = 1_796_688_000 + 600; // 2026-12-08T00:10:00Z
        let mut other = event("b", "ScaledUp", 1);
        other.involved_object.name = Some("other".into());
        let objects = vec![
            Object::Event(event("a", "ScaledUp", 3)),
            Object::Event(other),
        ];
        let events = about(&svc, objects);
        assert_eq!(events.len(), 1);
        let text = describe(&svc, &events, now);
        assert!(text.contains("Conditions:\n  Type"), "{text}");
        assert!(text.contains("Ready   True"), "{text}");
        assert!(
            text.contains("ScaledUp   2m (x3 over 10m)   nimbus   why"),
            "{text}"
        );
        let table = events_table(&[Object::Event(event("a", "Pulled", 1))], now);
        assert!(table.starts_with("LAST SEEN"), "{table}");
        assert!(table.contains("service/hello"), "{table}");
    }
}
