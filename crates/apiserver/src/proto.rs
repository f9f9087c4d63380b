//! Kubernetes' protobuf encoding, read for the two core kinds only: kubectl's typed client
//! sends a Secret or ConfigMap it creates or replaces (`kubectl create secret generic`) as
//! `application/vnd.kubernetes.protobuf`, and there is no way to make it send JSON. Answers
//! stay JSON (kubectl accepts both).
//!
//! The body is the `k8s\0` magic, then a `runtime.Unknown` (`typeMeta`, `raw`), whose `raw` is
//! the object's message; this decodes it into the object's JSON, the form every other body
//! takes, for the same decoding and validation. Only the fields a client sets are read:
//! ObjectMeta's server-owned fields (timestamps, managed fields) are skipped.

use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// `Content-Type` of protobuf bodies.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

/// The JSON of a protobuf-encoded Secret or ConfigMap.
pub fn decode(body: &[u8]) -> Result<Value, ApiError> {
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("no k8s protobuf magic"))?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for field in Fields(unknown) {
        match field? {
            (1, Wire::Bytes(meta)) => {
                for f in Fields(meta) {
                    match f? {
                        (1, Wire::Bytes(v)) => api_version = text(v)?,
                        (2, Wire::Bytes(v)) => kind = text(v)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(v)) => raw = v,
            _ => {}
        }
    }
    let mut object = match kind.as_str() {
        "Secret" => secret(raw)?,
        "ConfigMap" => config_map(raw)?,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "protobuf bodies are accepted for Secrets and ConfigMaps only, not {other:?}; send JSON"
            )));
        }
    };
    object.insert("apiVersion".into(), api_version.into());
    object.insert("kind".into(), kind.into());
    Ok(Value::Object(object))
}

fn secret(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for field in Fields(raw) {
        match field? {
            (1, Wire::Bytes(v)) => set(&mut out, "metadata", object_meta(v)?),
            (2, Wire::Bytes(v)) => put_entry(&mut out, "data", v, base64)?,
            (3, Wire::Bytes(v)) if !v.is_empty() => set(&mut out, "type", text(v)?.into()),
            (4, Wire::Bytes(v)) => put_entry(&mut out, "stringData", v, string)?,
            (5, Wire::Varint(v)) => set(&mut out, "immutable", (v != 0).into()),
            _ => {}
        }
    }
    Ok(out)
}

fn config_map(raw: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let mut out = Map::new();
    for field in Fields(raw) {
        match field? {
            (1, Wire::Bytes(v)) => set(&mut out, "metadata", object_meta(v)?),
            (2, Wire::Bytes(v)) => put_entry(&mut out, "data", v, string)?,
            (3, Wire::Bytes(v)) => put_entry(&mut out, "binaryData", v, base64)?,
            (4, Wire::Varint(v)) => set(&mut out, "immutable", (v != 0).into()),
            _ => {}
        }
    }
    Ok(out)
}

/// The client-set fields of an ObjectMeta.
fn object_meta(raw: &[u8]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for field in Fields(raw) {
        match field? {
            (n @ (1 | 2 | 3 | 5 | 6), Wire::Bytes(v)) => {
                let name = [
                    "name",
                    "generateName",
                    "namespace",
                    "",
                    "uid",
                    "resourceVersion",
                ];
                // Go's protobuf writes unset strings as empty ones.
                if !v.is_empty() {
                    set(&mut out, name[n as usize - 1], text(v)?.into());
                }
            }
            (11, Wire::Bytes(v)) => put_entry(&mut out, "labels", v, string)?,
            (12, Wire::Bytes(v)) => put_entry(&mut out, "annotations", v, string)?,
            (13, Wire::Bytes(v)) => push(&mut out, "ownerReferences", owner_reference(v)?),
            (14, Wire::Bytes(v)) => push(&mut out, "finalizers", text(v)?.into()),
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

fn owner_reference(raw: &[u8]) -> Result<Value, ApiError> {
    let mut out = Map::new();
    for field in Fields(raw) {
        match field? {
            (1, Wire::Bytes(v)) => set(&mut out, "kind", text(v)?.into()),
            (3, Wire::Bytes(v)) => set(&mut out, "name", text(v)?.into()),
            (4, Wire::Bytes(v)) => set(&mut out, "uid", text(v)?.into()),
            (5, Wire::Bytes(v)) => set(&mut out, "apiVersion", text(v)?.into()),
            (6, Wire::Varint(v)) => set(&mut out, "controller", (v != 0).into()),
            (7, Wire::Varint(v)) => set(&mut out, "blockOwnerDeletion", (v != 0).into()),
            _ => {}
        }
    }
    Ok(Value::Object(out))
}

fn set(out: &mut Map<String, Value>, field: &str, value: Value) {
    out.insert(field.into(), value);
}

fn push(out: &mut Map<String, Value>, field: &str, value: Value) {
    let list = out.entry(field).or_insert_with(|| json!([]));
    if let Value::Array(list) = list {
        list.push(value);
    }
}

/// One `map<string, V>` entry (a message of key 1 and value 2) into `out[field]`.
fn put_entry(
    out: &mut Map<String, Value>,
    field: &str,
    entry: &[u8],
    value_of: fn(&[u8]) -> Result<Value, ApiError>,
) -> Result<(), ApiError> {
    let (mut key, mut value) = (String::new(), value_of(&[])?);
    for f in Fields(entry) {
        match f? {
            (1, Wire::Bytes(v)) => key = text(v)?,
            (2, Wire::Bytes(v)) => value = value_of(v)?,
            _ => {}
        }
    }
    let map = out.entry(field).or_insert_with(|| json!({}));
    if let Value::Object(map) = map {
        map.insert(key, value);
    }
    Ok(())
}

fn string(v: &[u8]) -> Result<Value, ApiError> {
    text(v).map(Value::from)
}

fn base64(v: &[u8]) -> Result<Value, ApiError> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::STANDARD.encode(v).into())
}

fn text(v: &[u8]) -> Result<String, ApiError> {
    String::from_utf8(v.to_vec()).map_err(|_| bad("a string field is not UTF-8"))
}

fn bad(why: &str) -> ApiError {
    ApiError::BadRequest(format!("malformed protobuf body: {why}"))
}

// === the wire format ===

/// A field's value: varints and length-delimited bytes are read, fixed widths skipped.
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

/// The fields of a message, in order: `(number, value)`.
struct Fields<'a>(&'a [u8]);

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Wire<'a>), ApiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        Some(self.field())
    }
}

impl<'a> Fields<'a> {
    fn field(&mut self) -> Result<(u64, Wire<'a>), ApiError> {
        let tag = self.varint()?;
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => self.skip(8)?,
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| bad("length"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => self.skip(4)?,
            _ => return Err(bad("unknown wire type")),
        };
        Ok((tag >> 3, wire))
    }

    fn varint(&mut self) -> Result<u64, ApiError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or_else(|| bad("truncated"))?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(bad("varint too long"))
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ApiError> {
        if self.0.len() < len {
            return Err(bad("truncated"));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn skip(&mut self, len: usize) -> Result<Wire<'a>, ApiError> {
        self.take(len).map(|_| Wire::Fixed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes_field(n: u64, v: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, v.len() as u8];
        out.extend_from_slice(v);
        out
    }

    fn entry(k: &str, v: &[u8]) -> Vec<u8> {
        [bytes_field(1, k.as_bytes()), bytes_field(2, v)].concat()
    }

    #[test]
    fn kubectl_create_secret_generic() {
        // What `kubectl create secret generic db --from-literal=password=s3cr3t` sends.
        let meta = [bytes_field(1, b"db"), bytes_field(11, &entry("app", b"x"))].concat();
        let secret = [
            bytes_field(1, &meta),
            bytes_field(2, &entry("password", b"s3cr3t")),
            bytes_field(3, b"Opaque"),
            vec![5 << 3, 1],
        ]
        .concat();
        let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"Secret")].concat();
        let unknown = [bytes_field(1, &type_meta), bytes_field(2, &secret)].concat();
        let body = [MAGIC, &unknown].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "immutable": true,
                "metadata": {"name": "db", "labels": {"app": "x"}},
                "data": {"password": "czNjcjN0"}})
        );
    }

    #[test]
    fn other_kinds_and_garbage_are_refused() {
        let type_meta = [bytes_field(1, b"v1"), bytes_field(2, b"Pod")].concat();
        let body = [MAGIC, &bytes_field(1, &type_meta)].concat();
        assert_eq!(
            decode(&body).unwrap_err().code(),
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert!(decode(b"{}").is_err());
        assert!(decode(&[MAGIC, &[0x0a, 0x7f]].concat()).is_err());
    }
}
