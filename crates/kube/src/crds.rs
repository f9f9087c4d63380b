//! The CustomResourceDefinitions of Nimbus's six kinds, made from the Rust types: Knative
//! Serving's `serving.knative.dev/v1` Service, Configuration, Revision and Route, and its
//! internal `autoscaling.internal.knative.dev/v1alpha1` PodAutoscaler and
//! `networking.internal.knative.dev/v1alpha1` Ingress.
//!
//! Names, short names and categories come from `nimbus_api::Kind`, printer columns from
//! `nimbus_api::printer` and schemas from `nimbus_api::schema` (made structural by
//! [`crate::structural`]): the facts the embedded API server serves, declared to a cluster.
//! Every kind has the `status` subresource; a Revision's `spec` is immutable through a CEL
//! rule, since Nimbus installs no admission webhook.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresourceStatus,
    CustomResourceSubresources, CustomResourceValidation, JSONSchemaProps, ValidationRule,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use nimbus_api::Kind;
use nimbus_api::printer::{self, PrinterColumn};
use nimbus_api::validate::REVISION_SPEC_IMMUTABLE;
use serde_json::{Map, Value, json};

use crate::install::labels;
use crate::structural::{self, SchemaError};

/// The CEL rule that keeps a Revision's spec as it was created.
pub const REVISION_IMMUTABLE_RULE: &str = "self == oldSelf";

/// The CRDs of every kind but the core ones ([`Kind::on_cluster`]), in [`Kind::ALL`] order
/// (Secrets and ConfigMaps are the cluster's own).
pub fn crds() -> Result<Vec<CustomResourceDefinition>, SchemaError> {
    let definitions = nimbus_api::schema::definitions();
    Kind::on_cluster()
        .map(|kind| crd(&definitions, kind))
        .collect()
}

/// `<plural>.<group>`, the CRD's name (`services.serving.knative.dev`).
pub fn crd_name(kind: Kind) -> String {
    format!("{}.{}", kind.plural(), kind.group())
}

/// One kind's CRD, its schema made from `definitions` (`nimbus_api::schema::definitions`).
pub fn crd(
    definitions: &Map<String, Value>,
    kind: Kind,
) -> Result<CustomResourceDefinition, SchemaError> {
    let mut schema = structural::kind_schema(definitions, kind)?;
    if kind == Kind::Revision {
        schema["properties"]["spec"]["x-kubernetes-validations"] = json!([immutable_rule()]);
    }
    let schema: JSONSchemaProps =
        serde_json::from_value(schema).map_err(|e| SchemaError::Unsupported {
            kind,
            message: e.to_string(),
        })?;
    Ok(CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(crd_name(kind)),
            labels: Some(labels(None)),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: kind.group().to_string(),
            names: names(kind),
            scope: "Namespaced".to_string(),
            versions: vec![version(kind, schema)],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    })
}

fn names(kind: Kind) -> CustomResourceDefinitionNames {
    let strings = |list: &[&str]| Some(list.iter().map(|s| s.to_string()).collect());
    CustomResourceDefinitionNames {
        kind: kind.as_str().to_string(),
        list_kind: Some(format!("{kind}List")),
        plural: kind.plural().to_string(),
        singular: Some(kind.as_str().to_ascii_lowercase()),
        short_names: strings(kind.short_names()),
        categories: strings(kind.categories()),
    }
}

fn version(kind: Kind, schema: JSONSchemaProps) -> CustomResourceDefinitionVersion {
    CustomResourceDefinitionVersion {
        name: kind.version().to_string(),
        served: true,
        storage: true,
        additional_printer_columns: Some(printer::columns(kind).iter().map(column).collect()),
        schema: Some(CustomResourceValidation {
            open_api_v3_schema: Some(schema),
        }),
        subresources: Some(CustomResourceSubresources {
            status: Some(CustomResourceSubresourceStatus(json!({}))),
            scale: None,
        }),
        ..CustomResourceDefinitionVersion::default()
    }
}

fn column(c: &PrinterColumn) -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: c.name.to_string(),
        type_: c.type_.to_string(),
        json_path: c.json_path(),
        description: Some(c.description.to_string()),
        ..CustomResourceColumnDefinition::default()
    }
}

/// `spec` never changes (CEL transition rule); the message is the embedded API server's.
fn immutable_rule() -> Value {
    let rule = ValidationRule {
        rule: REVISION_IMMUTABLE_RULE.to_string(),
        message: Some(format!(
            "Immutable fields changed. {REVISION_SPEC_IMMUTABLE}"
        )),
        ..ValidationRule::default()
    };
    serde_json::to_value(rule).unwrap_or_default()
}

#[cfg(test)]
#[path = "crds_tests.rs"]
mod tests;
