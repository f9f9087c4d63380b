//! `kubectl get`'s server-side printing: objects as a `meta.k8s.io` `Table` when the client's
//! `Accept` asks for one (`application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! The columns are Knative's `additionalPrinterColumns` (`nimbus_api::printer`, which the CRDs a
//! cluster installs declare too), so `kubectl get ksvc` prints what it prints against a Knative
//! cluster. Each row carries the object as `PartialObjectMetadata`
//! (the default `includeObject=Metadata`), the whole object (`Object`) or nothing (`None`).

use http::HeaderMap;
use nimbus_api::printer::{self, PrinterColumn, Source};
use nimbus_api::{Kind, Object};
use serde_json::{Value, json};

use crate::event_table;
use crate::status::ApiError;
use crate::view::View;

/// How to answer a GET: plain objects, or a Table of a given `meta.k8s.io` version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Object,
    Table {
        /// `v1` or `v1beta1`.
        version: &'static str,
        include: Include,
    },
}

/// `includeObject`: what each row carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

// === impl Format ===

impl Format {
    /// The first media range of `Accept` this server can produce decides; none at all is a 406.
    pub fn negotiate(headers: &HeaderMap, include_object: Option<&str>) -> Result<Self, ApiError> {
        let accept = headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if accept.trim().is_empty() {
            return Ok(Format::Object);
        }
        for range in accept.split(',') {
            if let Some(format) = Self::of_range(range, include_object)? {
                return Ok(format);
            }
        }
        Err(ApiError::NotAcceptable(format!(
            "only the following media types are accepted: application/json, application/yaml, \
             application/json;as=Table;v=v1;g=meta.k8s.io (asked for {accept:?})"
        )))
    }

    fn of_range(range: &str, include_object: Option<&str>) -> Result<Option<Self>, ApiError> {
        let mut parts = range.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("");
        if !matches!(mime, "application/json" | "application/*" | "*/*") {
            return Ok(None);
        }
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
        match (param("as"), param("g"), param("v")) {
            (None, _, _) => Ok(Some(Format::Object)),
            (Some("Table"), Some("meta.k8s.io"), Some(v @ ("v1" | "v1beta1"))) => {
                let version = if v == "v1" { "v1" } else { "v1beta1" };
                let include = Include::parse(include_object)?;
                Ok(Some(Format::Table { version, include }))
            }
            _ => Ok(None),
        }
    }

    /// Render one object (a GET of a single resource, or a watch event).
    pub fn render(self, obj: &Object, view: View) -> Value {
        match self {
            Format::Object => view.json(obj),
            Format::Table { version, include } => {
                let rv = obj.metadata().resource_version.as_deref();
                table(obj.kind(), version, include, &[obj.to_json()], rv, None)
            }
        }
    }
}

// === impl Include ===

impl Include {
    fn parse(v: Option<&str>) -> Result<Self, ApiError> {
        match v {
            None | Some("") | Some("Metadata") => Ok(Include::Metadata),
            Some("None") => Ok(Include::None),
            Some("Object") => Ok(Include::Object),
            Some(other) => Err(ApiError::BadRequest(format!(
                "includeObject: Unsupported value: \"{other}\": supported values: \"Metadata\", \"None\", \"Object\""
            ))),
        }
    }

    fn row_object(self, obj: &Value) -> Option<Value> {
        match self {
            Include::None => None,
            Include::Object => Some(obj.clone()),
            Include::Metadata => Some(json!({
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
            })),
        }
    }
}

/// A `Table` of `items` (all of `kind`).
pub fn table(
    kind: Kind,
    version: &str,
    include: Include,
    items: &[Value],
    resource_version: Option<&str>,
    continue_token: Option<&str>,
) -> Value {
    let columns = columns(kind);
    let mut definitions: Vec<Value> = columns.iter().map(definition).collect();
    // Kubernetes prints AGE for the core kinds; KEDA's CRDs declare it too.
    let with_age = (kind.is_core() || kind.is_keda()) && kind != Kind::Event;
    if with_age {
        definitions.push(AGE.clone());
    }
    if kind == Kind::Event {
        definitions = event_table::definitions();
    }
    let now = chrono::Utc::now();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut cells: Vec<Value> = columns.iter().map(|c| c.cell(obj)).collect();
            if with_age {
                cells.push(age(obj, now));
            }
            if kind == Kind::Event {
                cells = event_table::cells(obj, now);
            }
            let mut row = json!({ "cells": cells });
            if let Some(o) = include.row_object(obj) {
                row["object"] = o;
            }
            row
        })
        .collect();
    let mut metadata = json!({});
    if let Some(rv) = resource_version {
        metadata["resourceVersion"] = json!(rv);
    }
    if let Some(c) = continue_token {
        metadata["continue"] = json!(c);
    }
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": metadata,
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

// === columns ===

/// The NAME column every kind has, then Knative's printer columns for the kind.
fn columns(kind: Kind) -> Vec<PrinterColumn> {
    let mut cols = vec![NAME];
    cols.extend_from_slice(printer::columns(kind));
    cols
}

const NAME: PrinterColumn = PrinterColumn {
    name: "Name",
    type_: "string",
    description: "Name must be unique within a namespace.",
    source: Source::Field(&["metadata", "name"]),
};

/// The core kinds' last column, as Kubernetes prints it for Secrets and ConfigMaps.
static AGE: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| {
    json!({
        "name": "Age",
        "type": "string",
        "format": "",
        "description": "How long ago the object was created (metadata.creationTimestamp).",
        "priority": 0,
    })
});

/// `creationTimestamp` until `now`, as kubectl's short durations (`42s`, `5m`, `3h`, `2d`).
fn age(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Value {
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str);
    json!(since(created, now))
}

/// The time from RFC 3339 `time` until `now` as kubectl's short durations, or `<unknown>`.
pub(crate) fn since(time: Option<&str>, now: chrono::DateTime<chrono::Utc>) -> String {
    let created = time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let Some(created) = created else {
        return "<unknown>".into();
    };
    let secs = (now - created.with_timezone(&chrono::Utc)).num_seconds();
    nimbus_api::duration::short_age(secs)
}

fn definition(column: &PrinterColumn) -> Value {
    let format = if column.name == "Name" { "name" } else { "" };
    json!({
        "name": column.name,
        "type": column.type_,
        "format": format,
        "description": column.description,
        "priority": 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::constants::{LABEL_CONFIGURATION, LABEL_CONFIGURATION_GENERATION};

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, v.parse().unwrap());
        h
    }

    #[test]
    fn negotiates_kubectl_get_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(
            Format::negotiate(&h, None).unwrap(),
            Format::Table {
                version: "v1",
                include: Include::Metadata
            }
        );
        assert_eq!(
            Format::negotiate(&accept("application/json"), None).unwrap(),
            Format::Object
        );
        assert_eq!(
            Format::negotiate(&HeaderMap::new(), None).unwrap(),
            Format::Object
        );
        assert!(Format::negotiate(&accept("application/vnd.kubernetes.protobuf"), None).is_err());
        assert!(Format::negotiate(&h, Some("Everything")).is_err());
    }

    #[test]
    fn service_and_revision_rows() {
        let svc = json!({
            "kind": "Service",
            "metadata": {"name": "hello", "namespace": "default"},
            "status": {"url": "http://h", "latestCreatedRevisionName": "hello-00001",
                       "conditions": [{"type": "Ready", "status": "True"}]}
        });
        let t = table(
            Kind::Service,
            "v1",
            Include::Metadata,
            &[svc],
            Some("7"),
            None,
        );
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "URL",
                "LatestCreated",
                "LatestReady",
                "Ready",
                "Reason"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["hello", "http://h", "hello-00001", null, "True", null])
        );
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["metadata"]["resourceVersion"], "7");

        let rev = json!({"kind": "Revision", "metadata": {"name": "hello-00001", "labels": {
            LABEL_CONFIGURATION: "hello", LABEL_CONFIGURATION_GENERATION: "1"}},
            "status": {"actualReplicas": 1, "desiredReplicas": 1}});
        let rev = Object::from_json(Kind::Revision, rev).unwrap();
        let t = Format::Table {
            version: "v1",
            include: Include::None,
        }
        .render(&rev, View::Stored);
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 7);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["hello-00001", "hello", "1", null, null, 1, 1])
        );
        assert!(t["rows"][0].get("object").is_none());
    }

    #[test]
    fn secrets_print_type_data_and_age() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z").unwrap();
        let secret = json!({"kind": "Secret", "metadata": {"name": "db",
            "creationTimestamp": "2026-01-01T00:00:00Z"}, "type": "Opaque", "data": {"a": "eA=="}});
        assert_eq!(age(&secret, now.with_timezone(&chrono::Utc)), json!("10m"));
        let t = table(Kind::Secret, "v1", Include::None, &[secret], None, None);
        let names: Vec<&Value> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| &c["name"])
            .collect();
        assert_eq!(names, ["Name", "Type", "Data", "Age"]);
        assert_eq!(
            t["rows"][0]["cells"].as_array().unwrap()[..3],
            [json!("db"), json!("Opaque"), json!(1)]
        );
        let cm =
            json!({"kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"a": "1", "b": "2"}});
        let t = table(Kind::ConfigMap, "v1", Include::None, &[cm], None, None);
        assert_eq!(t["rows"][0]["cells"], json!(["cfg", 2, "<unknown>"]));
    }

    #[test]
    fn internal_kinds_have_knatives_printer_columns() {
        let names = |kind| -> Vec<&str> { columns(kind).iter().map(|c| c.name).collect() };
        assert_eq!(
            names(Kind::PodAutoscaler),
            ["Name", "DesiredScale", "ActualScale", "Ready", "Reason"]
        );
        assert_eq!(names(Kind::Ingress), ["Name", "Ready", "Reason"]);
        let pa = json!({"kind": "PodAutoscaler", "metadata": {"name": "hello-00001"},
            "status": {"desiredScale": 2, "actualScale": 1,
                       "conditions": [{"type": "Ready", "status": "False", "reason": "Queued"}]}});
        let t = table(Kind::PodAutoscaler, "v1", Include::None, &[pa], None, None);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["hello-00001", 2, 1, "False", "Queued"])
        );
    }
}
