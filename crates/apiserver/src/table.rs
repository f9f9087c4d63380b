//! `kubectl get`'s server-side printing: objects as a `meta.k8s.io` `Table` when the client's
//! `Accept` asks for one (`application/json;as=Table;v=v1;g=meta.k8s.io`).
//!
//! The columns are Knative's `additionalPrinterColumns`, so `kubectl get ksvc` prints what it
//! prints against a Knative cluster. Each row carries the object as `PartialObjectMetadata`
//! (the default `includeObject=Metadata`), the whole object (`Object`) or nothing (`None`).

use http::HeaderMap;
use nimbus_api::Kind;
use nimbus_api::constants::{LABEL_CONFIGURATION, LABEL_CONFIGURATION_GENERATION};
use serde_json::{Value, json};

use crate::status::ApiError;

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

/// One column: its definition and how to read its cell from an object's JSON.
struct Column {
    name: &'static str,
    type_: &'static str,
    description: &'static str,
    cell: fn(&Value) -> Value,
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
    pub fn render(self, obj: Value, resource_version: Option<&str>) -> Value {
        match self {
            Format::Object => obj,
            Format::Table { version, include } => {
                let kind = kind_of_json(&obj);
                table(kind, version, include, &[obj], resource_version, None)
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
    let definitions: Vec<Value> = columns.iter().map(Column::definition).collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let cells: Vec<Value> = columns.iter().map(|c| (c.cell)(obj)).collect();
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

fn kind_of_json(obj: &Value) -> Kind {
    obj.get("kind")
        .and_then(Value::as_str)
        .and_then(Kind::parse)
        .unwrap_or(Kind::Service)
}

// === columns ===

/// Knative's printer columns for each kind, after NAME.
fn columns(kind: Kind) -> Vec<Column> {
    let mut cols = vec![Column {
        name: "Name",
        type_: "string",
        description: "Name must be unique within a namespace.",
        cell: |o| at(o, &["metadata", "name"]),
    }];
    cols.extend(match kind {
        Kind::Service => vec![URL, LATEST_CREATED, LATEST_READY, READY, REASON],
        Kind::Configuration => vec![LATEST_CREATED, LATEST_READY, READY, REASON],
        Kind::Revision => vec![
            CONFIG_NAME,
            GENERATION,
            READY,
            REASON,
            ACTUAL_REPLICAS,
            DESIRED_REPLICAS,
        ],
        Kind::Route => vec![URL, READY, REASON],
    });
    cols
}

const URL: Column = Column {
    name: "URL",
    type_: "string",
    description: "The URL where the resource is reachable (.status.url).",
    cell: |o| at(o, &["status", "url"]),
};
const LATEST_CREATED: Column = Column {
    name: "LatestCreated",
    type_: "string",
    description: "The latest revision created (.status.latestCreatedRevisionName).",
    cell: |o| at(o, &["status", "latestCreatedRevisionName"]),
};
const LATEST_READY: Column = Column {
    name: "LatestReady",
    type_: "string",
    description: "The latest revision ready to serve (.status.latestReadyRevisionName).",
    cell: |o| at(o, &["status", "latestReadyRevisionName"]),
};
const READY: Column = Column {
    name: "Ready",
    type_: "string",
    description: "The status of the Ready condition.",
    cell: |o| ready(o, "status"),
};
const REASON: Column = Column {
    name: "Reason",
    type_: "string",
    description: "The reason of the Ready condition.",
    cell: |o| ready(o, "reason"),
};
const CONFIG_NAME: Column = Column {
    name: "Config Name",
    type_: "string",
    description: "The Configuration that created this revision.",
    cell: |o| at(o, &["metadata", "labels", LABEL_CONFIGURATION]),
};
const GENERATION: Column = Column {
    name: "Generation",
    type_: "string",
    description: "The Configuration generation this revision was created from.",
    cell: |o| at(o, &["metadata", "labels", LABEL_CONFIGURATION_GENERATION]),
};
const ACTUAL_REPLICAS: Column = Column {
    name: "Actual Replicas",
    type_: "integer",
    description: "Instances running now (.status.actualReplicas).",
    cell: |o| at(o, &["status", "actualReplicas"]),
};
const DESIRED_REPLICAS: Column = Column {
    name: "Desired Replicas",
    type_: "integer",
    description: "Instances the autoscaler wants (.status.desiredReplicas).",
    cell: |o| at(o, &["status", "desiredReplicas"]),
};

// === impl Column ===

impl Column {
    fn definition(&self) -> Value {
        let format = if self.name == "Name" { "name" } else { "" };
        json!({
            "name": self.name,
            "type": self.type_,
            "format": format,
            "description": self.description,
            "priority": 0,
        })
    }
}

/// The value at `path`, or null (kubectl prints an empty cell).
fn at(obj: &Value, path: &[&str]) -> Value {
    path.iter()
        .try_fold(obj, |v, k| v.get(*k))
        .cloned()
        .unwrap_or(Value::Null)
}

/// A field of the `Ready` condition.
fn ready(obj: &Value, field: &str) -> Value {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c.get(field))
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let t = Format::Table {
            version: "v1",
            include: Include::None,
        }
        .render(rev, None);
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 7);
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["hello-00001", "hello", "1", null, null, 1, 1])
        );
        assert!(t["rows"][0].get("object").is_none());
    }
}
