//! `volumes` and `volumeMounts`, by Knative's rules for the volume kinds Nimbus mounts: Secret
//! and ConfigMap volumes, each mounted read-only at an absolute path that is not reserved,
//! every volume mounted, names unique. Other volume kinds are refused with what to use
//! instead; so are mount fields no runtime honours.

use std::collections::HashSet;
use std::path::{Component, Path};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Volume};
use serde_json::Value;

use super::Errors;
use crate::core::is_valid_key;
use crate::names::{check_dns_label, check_dns_subdomain};

/// Paths a volume may not be mounted at (Knative's `reservedPaths`): the runtime contract
/// gives them to the platform.
const RESERVED_PATHS: [&str; 6] = ["/", "/dev", "/dev/log", "/tmp", "/var", "/var/log"];

/// The volume sources Kubernetes knows besides Secret and ConfigMap, as JSON field names.
const OTHER_SOURCES: &[&str] = &[
    "projected",
    "emptyDir",
    "persistentVolumeClaim",
    "hostPath",
    "downwardAPI",
    "csi",
    "ephemeral",
    "image",
    "nfs",
    "iscsi",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

/// `spec.volumes` at `path` and the mounts of the container at `container`.
pub(super) fn validate_volumes(
    v: &mut Errors,
    path: &str,
    volumes: &[Volume],
    container: &str,
    c: &Container,
) {
    let mut names = HashSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match check_dns_label(&vol.name) {
            Err(e) => v.add(format!("{at}.name"), e),
            Ok(()) if !names.insert(vol.name.as_str()) => v.add(
                format!("{at}.name"),
                format!(
                    "{:?} names more than one volume; volume names must be unique",
                    vol.name
                ),
            ),
            Ok(()) => {}
        }
        validate_source(v, &at, vol);
    }
    let mut mounted = HashSet::new();
    let mut paths = HashSet::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let at = format!("{container}.volumeMounts[{i}]");
        if names.contains(m.name.as_str()) {
            mounted.insert(m.name.as_str());
        } else {
            v.add(
                format!("{at}.name"),
                format!("{:?} is not the name of a volume in {path}", m.name),
            );
        }
        validate_mount_path(v, &format!("{at}.mountPath"), &m.mount_path, &mut paths);
        if m.read_only != Some(true) {
            v.add(
                format!("{at}.readOnly"),
                "must be true: Secret and ConfigMap volumes are mounted read-only",
            );
        }
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            check_relative(v, &format!("{at}.subPath"), sub);
        }
        for (field, set) in [
            ("subPathExpr", m.sub_path_expr.is_some()),
            ("mountPropagation", m.mount_propagation.is_some()),
            ("recursiveReadOnly", m.recursive_read_only.is_some()),
        ] {
            if set {
                v.add(
                    format!("{at}.{field}"),
                    "is not supported by Nimbus; remove it",
                );
            }
        }
    }
    if let Some(devices) = &c.volume_devices
        && !devices.is_empty()
    {
        v.add(
            format!("{container}.volumeDevices"),
            "is not supported: Nimbus has no block devices to give; remove it",
        );
    }
    let mut unmounted: Vec<&str> = names.difference(&mounted).copied().collect();
    if !unmounted.is_empty() {
        unmounted.sort_unstable();
        v.add(
            path,
            format!(
                "volumes not mounted: {}; mount each in {container}.volumeMounts or remove it",
                unmounted.join(", ")
            ),
        );
    }
}

/// Exactly one source, a Secret or a ConfigMap.
fn validate_source(v: &mut Errors, at: &str, vol: &Volume) {
    let json = serde_json::to_value(vol).unwrap_or(Value::Null);
    let others: Vec<&str> = OTHER_SOURCES
        .iter()
        .copied()
        .filter(|f| json.get(f).is_some_and(|x| !x.is_null()))
        .collect();
    let ours = usize::from(vol.secret.is_some()) + usize::from(vol.config_map.is_some());
    if ours + others.len() > 1 {
        v.add(
            at,
            "may set only one volume source; use one volume per Secret or ConfigMap",
        );
        return;
    }
    if let Some(other) = others.first() {
        v.add(
            format!("{at}.{other}"),
            "is not a volume kind Nimbus mounts; use a secret or a configMap volume",
        );
        return;
    }
    if let Some(s) = &vol.secret {
        let at = format!("{at}.secret");
        match s.secret_name.as_deref() {
            None | Some("") => v.add(format!("{at}.secretName"), "is required"),
            Some(name) => {
                if let Err(e) = check_dns_subdomain(name) {
                    v.add(format!("{at}.secretName"), e);
                }
            }
        }
        validate_files(v, &at, s.default_mode, s.items.as_deref());
    } else if let Some(m) = &vol.config_map {
        let at = format!("{at}.configMap");
        match m.name.as_str() {
            "" => v.add(format!("{at}.name"), "is required"),
            name => {
                if let Err(e) = check_dns_subdomain(name) {
                    v.add(format!("{at}.name"), e);
                }
            }
        }
        validate_files(v, &at, m.default_mode, m.items.as_deref());
    } else {
        v.add(at, "needs a source: secret or configMap");
    }
}

/// `defaultMode` and `items`: valid keys, relative paths without `..`, each path once, modes
/// in 0-0777.
fn validate_files(
    v: &mut Errors,
    at: &str,
    default_mode: Option<i32>,
    items: Option<&[KeyToPath]>,
) {
    check_mode(v, &format!("{at}.defaultMode"), default_mode);
    let mut paths = HashSet::new();
    for (i, item) in items.unwrap_or_default().iter().enumerate() {
        let at = format!("{at}.items[{i}]");
        if !is_valid_key(&item.key) {
            v.add(
                format!("{at}.key"),
                format!("{:?} is not a valid key", item.key),
            );
        }
        if check_relative(v, &format!("{at}.path"), &item.path) && !paths.insert(&item.path) {
            v.add(
                format!("{at}.path"),
                format!("{:?} is used by more than one item", item.path),
            );
        }
        check_mode(v, &format!("{at}.mode"), item.mode);
    }
}

fn check_mode(v: &mut Errors, at: &str, mode: Option<i32>) {
    if let Some(m) = mode
        && !(0..=0o777).contains(&m)
    {
        v.add(
            at,
            format!("{m} is not a file mode; give a value from 0 to 0777 (octal) or 511 (decimal)"),
        );
    }
}

/// A relative path of plain names (no `..`, no leading `/`), as the kubelet requires.
fn check_relative(v: &mut Errors, at: &str, path: &str) -> bool {
    let plain = !path.is_empty()
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && path.split('/').all(|part| part != "..");
    if !plain {
        v.add(
            at,
            format!("{path:?} must be a relative path without \"..\" (e.g. \"config/app.toml\")"),
        );
    }
    plain
}

fn validate_mount_path(v: &mut Errors, at: &str, path: &str, seen: &mut HashSet<String>) {
    let p = Path::new(path);
    if !p.is_absolute() {
        v.add(at, format!("{path:?} must be an absolute path"));
        return;
    }
    if p.components().any(|c| c == Component::ParentDir) {
        v.add(at, format!("{path:?} must not contain \"..\""));
        return;
    }
    let clean: std::path::PathBuf = p.components().collect();
    let clean = clean.to_string_lossy().into_owned();
    if RESERVED_PATHS.contains(&clean.as_str()) {
        v.add(
            at,
            format!(
                "{path:?} is reserved (Knative keeps {} for the platform); mount elsewhere",
                RESERVED_PATHS.join(", ")
            ),
        );
    } else if !seen.insert(clean) {
        v.add(
            at,
            format!("{path:?} is the mount path of another volume mount"),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::error::FieldError;
    use crate::object::Object;

    fn service(spec: serde_json::Value) -> Result<Object, Vec<FieldError>> {
        crate::parse::decode_object(
            None,
            serde_json::json!({
                "apiVersion": "serving.knative.dev/v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"template": {"spec": spec}}
            }),
        )
    }

    fn errors(spec: serde_json::Value) -> Vec<(String, String)> {
        service(spec)
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.path, e.message))
            .collect()
    }

    #[test]
    fn secret_and_config_map_volumes_mounted_read_only() {
        let ok = service(serde_json::json!({
            "containers": [{"image": "x", "volumeMounts": [
                {"name": "db", "mountPath": "/etc/db", "readOnly": true},
                {"name": "cfg", "mountPath": "/etc/app/app.toml", "subPath": "app.toml", "readOnly": true}
            ]}],
            "volumes": [
                {"name": "db", "secret": {"secretName": "db", "defaultMode": 0o400}},
                {"name": "cfg", "configMap": {"name": "app", "items": [{"key": "a", "path": "app.toml"}]}}
            ]
        }));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn every_mistake_with_its_field_path() {
        let c = "spec.template.spec.containers[0]";
        let vols = "spec.template.spec.volumes";
        let got = errors(serde_json::json!({
            "containers": [{"image": "x", "volumeMounts": [
                {"name": "db", "mountPath": "etc/db", "readOnly": true},
                {"name": "nope", "mountPath": "/tmp", "readOnly": true},
                {"name": "cfg", "mountPath": "/etc/x", "subPath": "../up"},
                {"name": "cfg", "mountPath": "/etc/x/", "readOnly": true, "mountPropagation": "Bidirectional"}
            ]}],
            "volumes": [
                {"name": "db", "secret": {"secretName": "db", "defaultMode": 0o1777,
                    "items": [{"key": "a/b", "path": "/abs"}, {"key": "c", "path": "x"}, {"key": "d", "path": "x"}]}},
                {"name": "cfg", "configMap": {"name": ""}},
                {"name": "cfg", "emptyDir": {}},
                {"name": "unused", "secret": {"secretName": "u"}},
                {"name": "two", "secret": {"secretName": "u"}, "configMap": {"name": "v"}}
            ]
        }));
        let paths: Vec<&str> = got.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                format!("{vols}[0].secret.defaultMode"),
                format!("{vols}[0].secret.items[0].key"),
                format!("{vols}[0].secret.items[0].path"),
                format!("{vols}[0].secret.items[2].path"),
                format!("{vols}[1].configMap.name"),
                format!("{vols}[2].name"),
                format!("{vols}[2].emptyDir"),
                format!("{vols}[4]"),
                format!("{c}.volumeMounts[0].mountPath"),
                format!("{c}.volumeMounts[1].name"),
                format!("{c}.volumeMounts[1].mountPath"),
                format!("{c}.volumeMounts[2].readOnly"),
                format!("{c}.volumeMounts[2].subPath"),
                format!("{c}.volumeMounts[3].mountPath"),
                format!("{c}.volumeMounts[3].mountPropagation"),
                vols.to_string(),
            ],
            "{got:#?}"
        );
        let last = &got.last().unwrap().1;
        assert!(last.contains("two, unused"), "{last}");
    }
}
