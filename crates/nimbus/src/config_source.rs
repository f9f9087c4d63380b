//! The values instances' `env[].valueFrom`, `envFrom` and Secret and ConfigMap volumes read,
//! from the store: the runtimes ask at every instance start (`nimbus_runtime::env::ConfigSource`),
//! so a new instance sees a Secret's current values and a running one keeps those it started
//! with.

use std::sync::Arc;

use nimbus_api::{Kind, Object};
use nimbus_runtime::env::{ConfigSource, SourceKind, Values};
use nimbus_store::Store;

/// Secrets and ConfigMaps as the store holds them now (decrypted by the store).
pub struct StoreConfig(pub Arc<Store>);

impl ConfigSource for StoreConfig {
    fn values(
        &self,
        namespace: &str,
        source: SourceKind,
        name: &str,
    ) -> Result<Option<Values>, String> {
        let kind = match source {
            SourceKind::Secret => Kind::Secret,
            SourceKind::ConfigMap => Kind::ConfigMap,
        };
        // Store errors name the object, never its values.
        let found = self
            .0
            .get(kind, namespace, name)
            .map_err(|e| e.to_string())?;
        Ok(found.map(values))
    }
}

/// An object's values: a Secret's `data`, a ConfigMap's `data` and `binaryData`.
fn values(obj: Object) -> Values {
    match obj {
        Object::Secret(s) => s.data.into_iter().map(|(k, v)| (k, v.0)).collect(),
        Object::ConfigMap(c) => {
            let binary = c.binary_data.into_iter().map(|(k, v)| (k, v.0));
            c.data
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .chain(binary)
                .collect()
        }
        _ => Values::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_secrets_and_config_maps_from_the_store() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let objects = nimbus_api::parse::parse_manifests(
            "t",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData: {password: s3cr3t}\n---\n\
             apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: '1'}\nbinaryData: {b: Mg==}\n",
        )
        .unwrap();
        for o in objects {
            store.create(o).unwrap();
        }
        let env = StoreConfig(store);
        let secret = env
            .values("default", SourceKind::Secret, "db")
            .unwrap()
            .unwrap();
        assert_eq!(secret["password"], b"s3cr3t");
        let cm = env
            .values("default", SourceKind::ConfigMap, "cfg")
            .unwrap()
            .unwrap();
        assert_eq!(
            cm.into_iter().collect::<Vec<_>>(),
            [("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]
        );
        assert_eq!(
            env.values("default", SourceKind::Secret, "cfg").unwrap(),
            None
        );
    }
}
