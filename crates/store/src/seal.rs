//! Secrets encrypted at rest: a Secret's values (`data`, `stringData` should one ever be
//! stored, and the copy client-side `kubectl apply` keeps in the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation) are sealed with AES-256-GCM before its body reaches SQLite (the objects table and
//! the event history alike) and opened when it is read. Everything else about a Secret (its
//! name, labels, type) stays readable, as do all other kinds.
//!
//! The key is 32 random bytes in a file beside the database (`secrets.key`, mode 0600, made on
//! first use). Each seal uses a fresh random nonce, and the object's `kind/namespace/name` is
//! authenticated with it, so a sealed value moved to another object does not open. Errors name
//! the object, never a value.

use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, Key, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use nimbus_api::{Kind, Object};
use rand::RngCore;
use serde_json::{Map, Value};

use crate::StoreError;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "secrets.key";
/// The stored field that replaces a Secret's values: `v1:` and base64 of nonce ‖ ciphertext.
const SEALED: &str = "nimbus.dev/sealed";
const VERSION: &str = "v1:";
/// The fields of a Secret that hold values.
const VALUE_FIELDS: [&str; 2] = ["data", "stringData"];
/// Client-side `kubectl apply`'s copy of what it applied (a Secret's values included).
const LAST_APPLIED: &str = nimbus_api::fields::LAST_APPLIED;
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;

/// The key Secrets are sealed with. Its `Debug` does not show it.
#[derive(Clone)]
pub struct SecretsKey([u8; KEY_LEN]);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

// === impl SecretsKey ===

impl SecretsKey {
    /// A new random key (in-memory stores).
    pub fn random() -> Self {
        let mut key = [0u8; KEY_LEN];
        // ThreadRng: a CSPRNG seeded (and reseeded) from the OS.
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// The key in `path`, or a new random one written there (mode 0600) if there is none.
    /// A key readable by group or others, or not 32 bytes long, is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        let error = |e: io::Error| key_error(path, e.to_string());
        match std::fs::OpenOptions::new().read(true).open(path) {
            Ok(file) => Self::load(path, file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let key = Self::random();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(error)?;
                file.write_all(&key.0)
                    .and_then(|()| file.sync_all())
                    .map_err(error)?;
                tracing::info!(path = %path.display(), "made a new key to encrypt Secrets with");
                Ok(key)
            }
            Err(e) => Err(error(e)),
        }
    }

    fn load(path: &Path, mut file: std::fs::File) -> Result<Self, StoreError> {
        let error = |e: io::Error| key_error(path, e.to_string());
        let mode = file.metadata().map_err(error)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(key_error(
                path,
                format!(
                    "its mode is {:o}; only its owner may read it (chmod 600)",
                    mode & 0o777
                ),
            ));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(error)?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| {
            key_error(path, format!("it holds {} bytes, not {KEY_LEN}", b.len()))
        })?;
        Ok(Self(key))
    }
}

fn key_error(path: &Path, message: String) -> StoreError {
    StoreError::SecretsKey {
        path: PathBuf::from(path),
        message,
    }
}

/// Turns objects into stored bodies and back, sealing Secrets' values.
pub(crate) struct Sealer {
    cipher: Aes256Gcm,
}

// === impl Sealer ===

impl Sealer {
    pub(crate) fn new(key: &SecretsKey) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key.0)),
        }
    }

    /// The body to store for `obj`: its JSON, a Secret's values sealed.
    pub(crate) fn encode(&self, obj: &Object) -> Result<String, StoreError> {
        let (kind, ns, name) = (obj.kind(), obj.namespace(), obj.name());
        let mut value = serde_json::to_value(obj).map_err(|e| corrupt(kind, ns, name, e))?;
        if kind == Kind::Secret
            && let Value::Object(map) = &mut value
        {
            self.seal(map, &aad(kind, ns, name))
                .map_err(|message| corrupt(kind, ns, name, message))?;
        }
        serde_json::to_string(&value).map_err(|e| corrupt(kind, ns, name, e))
    }

    /// The object a stored body holds, a Secret's values opened.
    pub(crate) fn decode(&self, kind: Kind, body: &str) -> Result<Object, StoreError> {
        let mut value: Value = serde_json::from_str(body).map_err(|e| corrupt(kind, "", "", e))?;
        let (ns, name) = names(&value);
        if let Value::Object(map) = &mut value
            && map.contains_key(SEALED)
        {
            self.open(map, &aad(kind, &ns, &name))
                .map_err(|message| corrupt(kind, &ns, &name, message))?;
        }
        Object::from_json(kind, value).map_err(|e| corrupt(kind, &ns, &name, e))
    }

    fn seal(&self, map: &mut Map<String, Value>, aad: &str) -> Result<(), &'static str> {
        let mut values: Map<String, Value> = VALUE_FIELDS
            .iter()
            .filter_map(|f| map.remove(*f).map(|v| (f.to_string(), v)))
            .collect();
        let annotations = map
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"));
        if let Some(Value::Object(annotations)) = annotations
            && let Some(applied) = annotations.remove(LAST_APPLIED)
        {
            values.insert(LAST_APPLIED.into(), applied);
        }
        if values.is_empty() {
            return Ok(());
        }
        let plaintext = Value::Object(values).to_string();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let payload = Payload {
            msg: plaintext.as_bytes(),
            aad: aad.as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), payload)
            .map_err(|_| "cannot encrypt its values")?;
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        map.insert(
            SEALED.into(),
            Value::from(format!("{VERSION}{}", STANDARD.encode(bytes))),
        );
        Ok(())
    }

    fn open(&self, map: &mut Map<String, Value>, aad: &str) -> Result<(), String> {
        let sealed = map.remove(SEALED);
        let text = sealed.as_ref().and_then(Value::as_str).unwrap_or("");
        let encoded = text
            .strip_prefix(VERSION)
            .ok_or("its values are sealed in an unknown format")?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| "its sealed values are not base64")?;
        if bytes.len() < NONCE_LEN {
            return Err("its sealed values are truncated".into());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: ciphertext,
            aad: aad.as_bytes(),
        };
        let plaintext = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| format!("its values do not decrypt with the key in {KEY_FILE} (a different key, or the data was altered)"))?;
        let mut values: Map<String, Value> = serde_json::from_slice(&plaintext)
            .map_err(|_| "its decrypted values are not a JSON object")?;
        if let Some(applied) = values.remove(LAST_APPLIED) {
            let metadata = map
                .entry("metadata")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(metadata) = metadata {
                let annotations = metadata
                    .entry("annotations")
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(annotations) = annotations {
                    annotations.insert(LAST_APPLIED.into(), applied);
                }
            }
        }
        map.extend(values);
        Ok(())
    }
}

/// What a sealed value is bound to: `Secret/<namespace>/<name>`.
fn aad(kind: Kind, namespace: &str, name: &str) -> String {
    format!("{kind}/{namespace}/{name}")
}

/// `metadata.namespace` and `metadata.name` of a stored body.
fn names(value: &Value) -> (String, String) {
    let field = |f: &str| {
        value
            .pointer(&format!("/metadata/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (field("namespace"), field("name"))
}

fn corrupt(kind: Kind, namespace: &str, name: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str, password: &str) -> Object {
        let value = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": "default"}, "stringData": {"password": password}});
        nimbus_api::parse::decode_object(None, value).unwrap()
    }

    #[test]
    fn secrets_values_are_sealed_and_open_again() {
        let sealer = Sealer::new(&SecretsKey::random());
        let obj = secret("db", "s3cr3t");
        let body = sealer.encode(&obj).unwrap();
        assert!(
            !body.contains("s3cr3t") && !body.contains("czNjcjN0"),
            "{body}"
        );
        assert!(
            body.contains("\"name\":\"db\"") && body.contains(SEALED),
            "{body}"
        );
        assert_eq!(sealer.decode(Kind::Secret, &body).unwrap(), obj);
    }

    #[test]
    fn kubectl_apply_copy_is_sealed_too() {
        let sealer = Sealer::new(&SecretsKey::random());
        let mut obj = secret("db", "s3cr3t");
        let applied = r#"{"stringData":{"password":"s3cr3t"}}"#.to_string();
        let annotations = [
            (LAST_APPLIED.to_string(), applied),
            ("a".into(), "b".into()),
        ];
        obj.metadata_mut().annotations = Some(annotations.into());
        let body = sealer.encode(&obj).unwrap();
        assert!(!body.contains("s3cr3t"), "{body}");
        assert!(body.contains("\"a\":\"b\""), "{body}");
        assert_eq!(sealer.decode(Kind::Secret, &body).unwrap(), obj);
    }

    #[test]
    fn a_sealed_value_opens_only_for_its_object_and_key() {
        let sealer = Sealer::new(&SecretsKey::random());
        let body = sealer.encode(&secret("db", "s3cr3t")).unwrap();
        let moved = body.replace("\"name\":\"db\"", "\"name\":\"other\"");
        let error = sealer.decode(Kind::Secret, &moved).unwrap_err().to_string();
        assert!(
            error.contains("Secret default/other") && !error.contains("s3cr3t"),
            "{error}"
        );
        let other_key = Sealer::new(&SecretsKey::random());
        assert!(other_key.decode(Kind::Secret, &body).is_err());
    }

    #[test]
    fn the_key_file_is_made_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        let key = SecretsKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(SecretsKey::load_or_create(&path).unwrap().0, key.0);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = SecretsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }
}
