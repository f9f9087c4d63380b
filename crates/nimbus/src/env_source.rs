//! The values instances' `env[].valueFrom` and `envFrom` read, from the store: the runtimes
//! ask at every instance start (`nimbus_runtime::env::EnvSource`), so a new instance sees a
//! Secret's current values and a running one keeps those it started with.

use std::collections::BTreeMap;
use std::sync::Arc;

use nimbus_api::{Kind, Object};
use nimbus_runtime::env::{EnvSource, SourceKind};
use nimbus_store::Store;

/// Secrets and ConfigMaps as the store holds them now (decrypted by the store).
pub struct StoreEnv(pub Arc<Store>);

impl EnvSource for StoreEnv {
    fn values(
        &self,
        namespace: &str,
        source: SourceKind,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
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

/// An object's values as text (bytes that are not UTF-8 are replaced, as an env var must be
/// text).
fn values(obj: Object) -> BTreeMap<String, String> {
    let text = |b: Vec<u8>| String::from_utf8_lossy(&b).into_owned();
    match obj {
        Object::Secret(s) => s.data.into_iter().map(|(k, v)| (k, text(v.0))).collect(),
        Object::ConfigMap(c) => {
            let binary = c.binary_data.into_iter().map(|(k, v)| (k, text(v.0)));
            c.data.into_iter().chain(binary).collect()
        }
        _ => BTreeMap::new(),
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
        let env = StoreEnv(store);
        let secret = env
            .values("default", SourceKind::Secret, "db")
            .unwrap()
            .unwrap();
        assert_eq!(secret["password"], "s3cr3t");
        let cm = env
            .values("default", SourceKind::ConfigMap, "cfg")
            .unwrap()
            .unwrap();
        assert_eq!(
            cm.into_iter().collect::<Vec<_>>(),
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            env.values("default", SourceKind::Secret, "cfg").unwrap(),
            None
        );
    }
}
