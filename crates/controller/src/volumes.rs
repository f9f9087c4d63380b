//! A revision's `volumes` and its container's `volumeMounts` → the runtime's [`Volume`]s and
//! [`VolumeMount`]s. Pure; validation allows only Secret and ConfigMap volumes, each mounted
//! read-only, so anything else is left out here. The values are read by the runtime at every
//! instance start (`nimbus_runtime::volumes::materialize`), never here.

use k8s_openapi::api::core::v1::{Container, KeyToPath as K8sKeyToPath};
use nimbus_api::Revision;
use nimbus_api::k8s_openapi;
use nimbus_runtime::env::SourceKind;
use nimbus_runtime::volumes::{DEFAULT_MODE, KeyToPath, Volume, VolumeMount};

/// The revision's volumes that can be mounted, and the container's mounts of them.
pub(crate) fn of(rev: &Revision, c: &Container) -> (Vec<Volume>, Vec<VolumeMount>) {
    let volumes = rev.spec.volumes.iter().flatten().filter_map(|v| {
        let (source, object, items, default_mode, optional) = match (&v.secret, &v.config_map) {
            (Some(s), _) => (
                SourceKind::Secret,
                s.secret_name.clone().unwrap_or_default(),
                &s.items,
                s.default_mode,
                s.optional,
            ),
            (None, Some(m)) => (
                SourceKind::ConfigMap,
                m.name.clone(),
                &m.items,
                m.default_mode,
                m.optional,
            ),
            (None, None) => return None,
        };
        Some(Volume {
            name: v.name.clone(),
            source,
            object,
            items: items.as_ref().map(|items| items.iter().map(item).collect()),
            default_mode: mode(default_mode).unwrap_or(DEFAULT_MODE),
            optional: optional.unwrap_or(false),
        })
    });
    let mounts = c.volume_mounts.iter().flatten().map(|m| VolumeMount {
        volume: m.name.clone(),
        mount_path: m.mount_path.clone().into(),
        sub_path: m.sub_path.clone().filter(|s| !s.is_empty()),
    });
    (volumes.collect(), mounts.collect())
}

fn item(k: &K8sKeyToPath) -> KeyToPath {
    KeyToPath {
        key: k.key.clone(),
        path: k.path.clone(),
        mode: mode(k.mode),
    }
}

/// A mode from the manifest (validated to 0-0777).
fn mode(m: Option<i32>) -> Option<u32> {
    m.and_then(|m| u32::try_from(m).ok()).map(|m| m & 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_and_config_map_volumes_with_their_mounts() {
        let rev: Revision = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "r"},
            "spec": {
                "containers": [{"image": "x", "volumeMounts": [
                    {"name": "db", "mountPath": "/etc/db", "readOnly": true},
                    {"name": "cfg", "mountPath": "/etc/app.toml", "subPath": "app.toml", "readOnly": true}
                ]}],
                "volumes": [
                    {"name": "db", "secret": {"secretName": "db", "defaultMode": 0o400, "optional": true}},
                    {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "a", "path": "app.toml", "mode": 0o600}]}},
                    {"name": "scratch", "emptyDir": {}}
                ]
            }
        }))
        .unwrap();
        let (volumes, mounts) = of(&rev, &rev.spec.containers[0]);
        assert_eq!(
            volumes,
            [
                Volume {
                    name: "db".into(),
                    source: SourceKind::Secret,
                    object: "db".into(),
                    items: None,
                    default_mode: 0o400,
                    optional: true,
                },
                Volume {
                    name: "cfg".into(),
                    source: SourceKind::ConfigMap,
                    object: "app".into(),
                    items: Some(vec![KeyToPath {
                        key: "a".into(),
                        path: "app.toml".into(),
                        mode: Some(0o600),
                    }]),
                    default_mode: DEFAULT_MODE,
                    optional: false,
                },
            ]
        );
        assert_eq!(mounts[1].sub_path.as_deref(), Some("app.toml"));
        assert_eq!(mounts[0].mount_path, std::path::Path::new("/etc/db"));
    }
}
