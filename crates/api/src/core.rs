//! The core `v1` kinds Nimbus serves besides Knative's: Secret and ConfigMap, the two objects
//! a revision's `env[].valueFrom`, `envFrom` and `volumes` read from.
//!
//! Field names follow Kubernetes exactly (`data` is base64 on the wire, `stringData` is a
//! write-only convenience merged into `data` by defaulting). A Secret's `Debug` never shows its
//! values, so a stray `{:?}` cannot log them.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The core group's name: empty (`apiVersion: v1`).
pub const GROUP: &str = "";
/// `v1`
pub const API_VERSION: &str = "v1";
/// A Secret's `type` when the manifest gives none.
pub const SECRET_TYPE_OPAQUE: &str = "Opaque";
/// The most a Secret or ConfigMap may hold, keys and values together (Kubernetes' limit).
pub const MAX_DATA_BYTES: usize = 1024 * 1024;

// === Secret ===

/// A Kubernetes Secret: named bytes a revision reads into its environment or files. Stored
/// encrypted; shown redacted by `nimbus get` unless asked.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(feature = "schemars", schemars(rename = "io.k8s.api.core.v1.Secret"))]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The values, base64-encoded on the wire. Keys are `[-._a-zA-Z0-9]+`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(schema_with = "byte_map"))]
    pub data: BTreeMap<String, ByteString>,
    /// Write-only values as plain strings, merged into `data` when written (they win over
    /// `data`'s for the same key); never returned.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
    /// What the data is for (`Opaque` by default); Nimbus does not interpret it.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// `true`: `data` and `type` can no longer change (delete and recreate instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl Secret {
    pub const KIND: &'static str = "Secret";
    pub const PLURAL: &'static str = "secrets";
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = |m: Vec<&String>| m.into_iter().cloned().collect::<Vec<_>>();
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("data_keys", &keys(self.data.keys().collect()))
            .field("string_data_keys", &keys(self.string_data.keys().collect()))
            .field("type", &self.type_)
            .field("immutable", &self.immutable)
            .finish()
    }
}

// === ConfigMap ===

/// A Kubernetes ConfigMap: named configuration values, text in `data` and bytes in
/// `binaryData` (each key in at most one of them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schemars", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "schemars",
    schemars(rename = "io.k8s.api.core.v1.ConfigMap")
)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// UTF-8 values. Keys are `[-._a-zA-Z0-9]+`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Binary values, base64-encoded on the wire.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "schemars", schemars(schema_with = "byte_map"))]
    pub binary_data: BTreeMap<String, ByteString>,
    /// `true`: `data` and `binaryData` can no longer change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

impl ConfigMap {
    pub const KIND: &'static str = "ConfigMap";
    pub const PLURAL: &'static str = "configmaps";
}

/// A map of base64 strings, as Kubernetes' OpenAPI describes `Secret.data`.
#[cfg(feature = "schemars")]
fn byte_map(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {"type": "string", "format": "byte"}
    })
}

/// Whether `key` may name a value of a Secret or ConfigMap: `[-._a-zA-Z0-9]+`, at most 253
/// characters, not `.` or `..` (it may become a file name).
pub fn is_valid_key(key: &str) -> bool {
    let chars = key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    chars && !key.is_empty() && key.len() <= 253 && key != "." && key != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_shows_keys_not_values() {
        let mut s = Secret::default();
        s.data
            .insert("password".into(), ByteString(b"s3cr3t".to_vec()));
        s.string_data.insert("token".into(), "t0k3n".into());
        let shown = format!("{s:?}");
        assert!(
            shown.contains("password") && shown.contains("token"),
            "{shown}"
        );
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("t0k3n"),
            "{shown}"
        );
    }

    #[test]
    fn secret_data_is_base64_on_the_wire() {
        let s: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
            "data": {"password": "czNjcjN0"}, "type": "Opaque"
        }))
        .unwrap();
        assert_eq!(s.data["password"].0, b"s3cr3t");
        assert_eq!(
            serde_json::to_value(&s).unwrap()["data"]["password"],
            "czNjcjN0"
        );
    }

    #[test]
    fn keys() {
        for ok in ["password", "tls.crt", "a-b_c.D9", ".env"] {
            assert!(is_valid_key(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"k".repeat(254)] {
            assert!(!is_valid_key(bad), "{bad}");
        }
    }
}
