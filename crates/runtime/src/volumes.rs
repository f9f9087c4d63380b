//! Secret and ConfigMap volumes: what an [`InstanceSpec`] says about them ([`Volume`],
//! [`VolumeMount`]) and the one function every runtime calls when it starts an instance,
//! [`materialize`], which writes the referenced objects' current values as files into a
//! directory of that instance and says what to bind where ([`Bind`]). As on Kubernetes, a new
//! instance sees the current values and a running one keeps those it started with; every
//! mount is read-only.
//!
//! The layout is the kubelet's: each key is a file named after it (or placed at its
//! `items[].path`), with `items[].mode`, else `defaultMode` (0644); directories are 0755. The
//! files belong to the server's user (root, for a root server) and are readable by the
//! instance's user through their mode. Names and paths were validated at apply time (keys are
//! `[-._a-zA-Z0-9]+`, paths relative without `..`); they are checked again here, so a bad one
//! fails the start rather than writing outside the directory.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use crate::InstanceSpec;
use crate::source::{ConfigError, ConfigSource, Objects, SourceKind};

/// Mode of a file whose volume names none (Kubernetes' `defaultMode` default).
pub const DEFAULT_MODE: u32 = 0o644;

/// Mode of the directories of a volume.
const DIR_MODE: u32 = 0o755;

/// A Secret or ConfigMap as a volume (`spec.volumes[]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Volume {
    pub name: String,
    pub source: SourceKind,
    /// The Secret's or ConfigMap's name.
    pub object: String,
    /// `items`: only these keys, each at its path; `None`: every key, at its own name.
    pub items: Option<Vec<KeyToPath>>,
    /// `defaultMode`: the permission bits of files whose item names none.
    pub default_mode: u32,
    /// A missing object (or item key) gives an empty volume (or no file) instead of failing.
    pub optional: bool,
}

/// One `items[]` entry: the file a key is written to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyToPath {
    pub key: String,
    /// Relative to the volume, without `..`.
    pub path: String,
    pub mode: Option<u32>,
}

/// Where a volume appears in the instance (`containers[0].volumeMounts[]`); always read-only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    /// The [`Volume::name`] it mounts.
    pub volume: String,
    /// Absolute, inside the instance.
    pub mount_path: PathBuf,
    /// `subPath`: mount only this part of the volume (relative, without `..`).
    pub sub_path: Option<String>,
}

/// One read-only bind mount an instance's runtime sets up: the host file or directory `host`
/// at `path` inside the instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind {
    pub host: PathBuf,
    pub path: PathBuf,
}

/// Write the instance's volumes into `dir` (created with its parents, or emptied first when it
/// exists) from
/// the current values of their objects, and return its mounts, parents before the paths
/// inside them. Nothing is written when the spec mounts no volume. A missing object or key
/// that is not optional fails, naming it and never a value.
pub fn materialize(
    spec: &InstanceSpec,
    source: Option<&dyn ConfigSource>,
    dir: &Path,
) -> Result<Vec<Bind>, ConfigError> {
    if spec.volume_mounts.is_empty() {
        return Ok(Vec::new());
    }
    let mut objects = Objects::new(source, &spec.revision.namespace)?;
    let io_error = |e: io::Error| {
        ConfigError::new(format!(
            "cannot write the instance's volumes in {}: {e}",
            dir.display()
        ))
    };
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(e)),
        _ => {}
    }
    if let Some(parent) = dir.parent() {
        // The instance's own directory, private to the server (its umask).
        fs::create_dir_all(parent).map_err(io_error)?;
    }
    make_dir(dir).map_err(io_error)?;
    for volume in &spec.volumes {
        let root = dir.join(relative(&volume.name, "volume name")?);
        make_dir(&root).map_err(io_error)?;
        write_volume(volume, &mut objects, &root)?;
    }
    let mut binds = Vec::with_capacity(spec.volume_mounts.len());
    for mount in &spec.volume_mounts {
        if !spec.volumes.iter().any(|v| v.name == mount.volume) {
            return Err(ConfigError::new(format!(
                "volume mount {}: no volume named {:?}",
                mount.mount_path.display(),
                mount.volume
            )));
        }
        let mut host = dir.join(relative(&mount.volume, "volume name")?);
        if let Some(sub) = &mount.sub_path {
            host.push(relative(sub, "subPath")?);
            // The kubelet creates a subPath the volume lacks, as a directory.
            if fs::symlink_metadata(&host).is_err() {
                make_dirs(dir, &host).map_err(io_error)?;
            }
        }
        binds.push(Bind {
            host,
            path: mount.mount_path.clone(),
        });
    }
    binds.sort_by_key(|b| b.path.components().count());
    Ok(binds)
}

/// Remove the volumes of every instance under `instances` (`<namespace>/<instance>/volumes`,
/// as the runtimes write them): those a server that crashed left behind. Only for a server
/// that holds its data directory and has not started instances yet. Failures are logged.
pub fn sweep(instances: &Path) {
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        let entries = fs::read_dir(dir).into_iter().flatten().flatten();
        entries
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect()
    };
    for namespace in dirs(instances) {
        for instance in dirs(&namespace) {
            let volumes = instance.join("volumes");
            match fs::remove_dir_all(&volumes) {
                Ok(()) => {
                    tracing::info!(path = %volumes.display(), "removed a stale instance's volumes")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %volumes.display(), "cannot remove a stale instance's volumes: {e}")
                }
            }
        }
    }
}

/// Write one volume's files into `root`.
fn write_volume(
    volume: &Volume,
    objects: &mut Objects<'_>,
    root: &Path,
) -> Result<(), ConfigError> {
    let values = objects.lookup(volume.source, &volume.object, volume.optional)?;
    let Some(values) = values else {
        return Ok(()); // optional and missing: an empty volume
    };
    let write = |path: &str, value: &[u8], mode: u32| -> Result<(), ConfigError> {
        let file = root.join(relative(path, "path")?);
        write_file(root, &file, value, mode).map_err(|e| {
            ConfigError::new(format!(
                "cannot write {path:?} of volume {:?}: {e}",
                volume.name
            ))
        })
    };
    match &volume.items {
        None => {
            for (key, value) in values {
                write(key, value, volume.default_mode)?;
            }
        }
        Some(items) => {
            for item in items {
                match values.get(&item.key) {
                    Some(value) => {
                        write(&item.path, value, item.mode.unwrap_or(volume.default_mode))?
                    }
                    None if volume.optional => {}
                    None => {
                        return Err(ConfigError::new(format!(
                            "{} \"{}\" of volume {:?} has no key {}",
                            volume.source.lower(),
                            volume.object,
                            volume.name,
                            item.key
                        )));
                    }
                }
            }
        }
    }
    Ok(())
}

/// `path` as a relative path of plain names: no root, no `.` or `..`, not empty.
fn relative<'a>(path: &'a str, what: &str) -> Result<&'a Path, ConfigError> {
    let p = Path::new(path);
    let plain = !path.is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)));
    match plain {
        true => Ok(p),
        false => Err(ConfigError::new(format!(
            "{what} {path:?} must be a relative path without \"..\""
        ))),
    }
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        other => other?,
    }
    // Explicitly: the server's umask (077) would keep the instance's user out.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
}

/// `path`'s missing parents below `root` (which exists), then `path`, as directories.
fn make_dirs(root: &Path, path: &Path) -> io::Result<()> {
    let below = path.strip_prefix(root).map_err(io::Error::other)?;
    let mut at = root.to_path_buf();
    for part in below.components() {
        at.push(part);
        make_dir(&at)?;
    }
    Ok(())
}

/// A new file (never through a link: a name written twice is refused) with `mode`, in `root`.
fn write_file(root: &Path, file: &Path, value: &[u8], mode: u32) -> io::Result<()> {
    if let Some(parent) = file.parent() {
        make_dirs(root, parent)?;
    }
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o777)
        .open(file)?;
    f.write_all(value)?;
    // The umask applied to `mode` at creation; set it as asked.
    f.set_permissions(fs::Permissions::from_mode(mode & 0o777))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;
    use crate::source::fixed::Fixed;

    fn fixed() -> Fixed {
        Fixed(vec![
            (
                SourceKind::Secret,
                "db",
                vec![("password", "s3cr3t"), ("user", "app")],
            ),
            (SourceKind::ConfigMap, "cfg", vec![("app.toml", "a = 1")]),
        ])
    }

    fn spec(volumes: Vec<Volume>, mounts: Vec<(&str, &str, Option<&str>)>) -> InstanceSpec {
        InstanceSpec {
            revision: crate::RevisionKey::new("default", "r"),
            volumes,
            volume_mounts: mounts
                .into_iter()
                .map(|(volume, path, sub)| VolumeMount {
                    volume: volume.into(),
                    mount_path: path.into(),
                    sub_path: sub.map(Into::into),
                })
                .collect(),
            ..Default::default()
        }
    }

    fn volume(name: &str, source: SourceKind, object: &str) -> Volume {
        Volume {
            name: name.into(),
            source,
            object: object.into(),
            items: None,
            default_mode: DEFAULT_MODE,
            optional: false,
        }
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn keys_become_files_with_their_modes_and_mounts_are_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path().join("volumes");
        let mut secret = volume("creds", SourceKind::Secret, "db");
        secret.items = Some(vec![KeyToPath {
            key: "password".into(),
            path: "nested/pw".into(),
            mode: Some(0o400),
        }]);
        secret.default_mode = 0o440;
        let spec = spec(
            vec![secret, volume("cfg", SourceKind::ConfigMap, "cfg")],
            vec![
                ("cfg", "/etc/app/conf", None),
                ("creds", "/etc/app", Some("nested")),
            ],
        );
        let binds = materialize(&spec, Some(&fixed()), &vols).unwrap();
        assert_eq!(
            binds,
            [
                Bind {
                    host: vols.join("creds/nested"),
                    path: "/etc/app".into()
                },
                Bind {
                    host: vols.join("cfg"),
                    path: "/etc/app/conf".into()
                },
            ]
        );
        assert_eq!(fs::read(vols.join("creds/nested/pw")).unwrap(), b"s3cr3t");
        assert_eq!(mode(&vols.join("creds/nested/pw")), 0o400);
        assert_eq!(mode(&vols.join("creds/nested")), 0o755);
        // Only the listed key.
        assert!(!vols.join("creds/user").exists());
        assert_eq!(fs::read(vols.join("cfg/app.toml")).unwrap(), b"a = 1");
        assert_eq!(mode(&vols.join("cfg/app.toml")), 0o644);
        // A second start writes afresh (the old files are gone first).
        materialize(&spec, Some(&fixed()), &vols).unwrap();
    }

    #[test]
    fn sweep_removes_every_instances_volumes_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let instance = dir.path().join("default/r-1");
        fs::create_dir_all(instance.join("volumes/db")).unwrap();
        fs::write(instance.join("volumes/db/password"), "s3cr3t").unwrap();
        fs::create_dir_all(instance.join("bundle")).unwrap();
        sweep(dir.path());
        assert!(!instance.join("volumes").exists());
        assert!(instance.join("bundle").exists());
        sweep(&dir.path().join("absent"));
    }

    #[test]
    fn missing_objects_and_keys_fail_unless_optional_without_values() {
        let dir = tempfile::tempdir().unwrap();
        let vols = dir.path().join("v");
        let missing = spec(
            vec![volume("x", SourceKind::Secret, "nope")],
            vec![("x", "/x", None)],
        );
        let e = materialize(&missing, Some(&fixed()), &vols).unwrap_err();
        assert_eq!(e.message, "secret \"nope\" not found");
        let mut optional = missing.clone();
        optional.volumes[0].optional = true;
        assert_eq!(
            materialize(&optional, Some(&fixed()), &vols).unwrap().len(),
            1
        );
        assert_eq!(fs::read_dir(vols.join("x")).unwrap().count(), 0);

        let mut no_key = volume("db", SourceKind::Secret, "db");
        no_key.items = Some(vec![KeyToPath {
            key: "token".into(),
            path: "t".into(),
            mode: None,
        }]);
        let e = materialize(
            &spec(vec![no_key], vec![("db", "/db", None)]),
            Some(&fixed()),
            &vols,
        )
        .unwrap_err();
        assert_eq!(e.message, "secret \"db\" of volume \"db\" has no key token");
        assert!(!e.message.contains("s3cr3t"));
        // Without a source, a spec that mounts nothing still starts.
        assert_eq!(materialize(&spec(vec![], vec![]), None, &vols).unwrap(), []);
        assert!(materialize(&missing, None, &vols).is_err());
    }

    /// Validation refuses these; a spec that slipped through fails instead of escaping.
    #[test]
    fn paths_never_leave_the_volume() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a/../../b", "", "."] {
            let mut v = volume("db", SourceKind::Secret, "db");
            v.items = Some(vec![KeyToPath {
                key: "user".into(),
                path: bad.into(),
                mode: None,
            }]);
            let s = spec(vec![v], vec![("db", "/db", None)]);
            let e = materialize(&s, Some(&fixed()), &dir.path().join("v")).unwrap_err();
            assert!(e.message.contains("relative path"), "{bad}: {e}");
            let sub = spec(
                vec![volume("db", SourceKind::Secret, "db")],
                vec![("db", "/db", Some(bad))],
            );
            assert!(materialize(&sub, Some(&fixed()), &dir.path().join("v")).is_err());
        }
        assert!(!dir.path().join("x").exists() && !dir.path().join("b").exists());
    }
}
