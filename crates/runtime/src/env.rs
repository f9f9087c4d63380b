//! Environment variables that come from Secrets and ConfigMaps (`env[].valueFrom`,
//! `envFrom`): what an [`InstanceSpec`] says about them ([`EnvRefs`]), where their values are
//! read from ([`ConfigSource`], implemented over the store by the binary), and the one function
//! every runtime calls when it starts an instance, [`resolve`], so that new instances read the
//! current values while running ones keep those they started with — as on Kubernetes.
//!
//! The order is Kubernetes': the `envFrom` sources first (in order), then `env` in manifest
//! order with references resolved in place, then the runtime contract (the end of
//! [`InstanceSpec::env`]); a later variable of the same name replaces an earlier one where that
//! one stood. Errors name the object and key, never a value.

use crate::InstanceSpec;
use crate::source::Objects;
pub use crate::source::{CONFIG_ERROR_REASON, ConfigError, ConfigSource, SourceKind, Values};

/// One value of a Secret or ConfigMap (`secretKeyRef`, `configMapKeyRef`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRef {
    pub source: SourceKind,
    pub name: String,
    pub key: String,
    /// A missing object or key leaves the variable unset instead of failing the start.
    pub optional: bool,
}

/// Every value of a Secret or ConfigMap (`envFrom[]`), each key as a variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvFrom {
    pub source: SourceKind,
    pub name: String,
    /// Put before every key (`envFrom[].prefix`).
    pub prefix: String,
    pub optional: bool,
}

/// A variable of `env` whose value is a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvVarRef {
    pub name: String,
    /// How many of [`InstanceSpec::env`]'s entries come before it in the manifest: it is
    /// placed before `InstanceSpec::env[at]`.
    pub at: usize,
    pub value: KeyRef,
}

/// The references of an instance's environment (empty: `env` is all literal).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvRefs {
    /// `envFrom`, in manifest order.
    pub from: Vec<EnvFrom>,
    /// `env[].valueFrom`, in manifest order.
    pub vars: Vec<EnvVarRef>,
}

impl EnvRefs {
    pub fn is_empty(&self) -> bool {
        self.from.is_empty() && self.vars.is_empty()
    }
}

/// Variables an `envFrom` source may not set: the runtime contract's (validation refuses them
/// in `env`, but cannot know a Secret's keys).
const CONTRACT: [&str; 4] = ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];

/// The instance's environment with every reference resolved now, in Kubernetes' order (see
/// the module docs), each name once (a later value replaces an earlier one where it stood).
/// Without references this is `spec.env` so folded; with references and no `source` the
/// start fails.
pub fn resolve(
    spec: &InstanceSpec,
    source: Option<&dyn ConfigSource>,
) -> Result<Vec<(String, String)>, ConfigError> {
    if spec.env_refs.is_empty() {
        let mut env = Env::default();
        for (name, value) in &spec.env {
            env.set(name.clone(), value.clone());
        }
        return Ok(env.0);
    }
    let mut objects = Objects::new(source, &spec.revision.namespace)?;
    let mut env = Env::default();
    for from in &spec.env_refs.from {
        let values = objects.lookup(from.source, &from.name, from.optional)?;
        for (key, value) in values.into_iter().flatten() {
            let name = format!("{}{key}", from.prefix);
            if !CONTRACT.contains(&name.as_str()) {
                env.set(name, text(value));
            }
        }
    }
    let mut refs = spec.env_refs.vars.iter().peekable();
    for (i, (name, value)) in spec.env.iter().enumerate() {
        while let Some(r) = refs.next_if(|r| r.at <= i) {
            env.set_ref(&mut objects, r)?;
        }
        env.set(name.clone(), value.clone());
    }
    for r in refs {
        env.set_ref(&mut objects, r)?;
    }
    Ok(env.0)
}

/// Variables in order; setting one again replaces its value where it stands.
#[derive(Default)]
struct Env(Vec<(String, String)>);

impl Env {
    fn set(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn set_ref(&mut self, objects: &mut Objects<'_>, r: &EnvVarRef) -> Result<(), ConfigError> {
        let (v, namespace) = (&r.value, objects.namespace);
        let values = objects.lookup(v.source, &v.name, v.optional)?;
        match values.and_then(|values| values.get(&v.key)) {
            Some(value) => self.set(r.name.clone(), text(value)),
            None if v.optional => {}
            None => {
                return Err(ConfigError::new(format!(
                    "couldn't find key {} in {} {namespace}/{}",
                    v.key,
                    v.source.kind(),
                    v.name
                )));
            }
        }
        Ok(())
    }
}

/// A value as an environment variable's text: bytes that are not UTF-8 are replaced.
fn text(value: &[u8]) -> String {
    String::from_utf8_lossy(value).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::source::fixed::Fixed;

    fn source() -> Fixed {
        Fixed(vec![
            (
                SourceKind::Secret,
                "db",
                vec![("password", "s3cr3t"), ("user", "app")],
            ),
            (
                SourceKind::ConfigMap,
                "cfg",
                vec![("MODE", "fast"), ("PORT", "1")],
            ),
        ])
    }

    fn key(source: SourceKind, name: &str, key: &str, optional: bool) -> KeyRef {
        KeyRef {
            source,
            name: name.into(),
            key: key.into(),
            optional,
        }
    }

    fn spec(refs: EnvRefs) -> InstanceSpec {
        let env = [("A", "1"), ("MODE", "manifest"), ("K_SERVICE", "s")];
        InstanceSpec {
            revision: crate::RevisionKey::new("default", "r"),
            env: env.map(|(n, v)| (n.to_string(), v.to_string())).to_vec(),
            env_refs: refs,
            ..Default::default()
        }
    }

    #[test]
    fn kubernetes_order_env_from_then_env_with_references_in_place() {
        let refs = EnvRefs {
            from: vec![EnvFrom {
                source: SourceKind::ConfigMap,
                name: "cfg".into(),
                prefix: String::new(),
                optional: false,
            }],
            vars: vec![
                EnvVarRef {
                    name: "PASSWORD".into(),
                    at: 1,
                    value: key(SourceKind::Secret, "db", "password", false),
                },
                EnvVarRef {
                    name: "MISSING".into(),
                    at: 2,
                    value: key(SourceKind::Secret, "nope", "x", true),
                },
            ],
        };
        let env = resolve(&spec(refs), Some(&source())).unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        // PORT from the config map is dropped; MODE from it is overridden where it stood.
        assert_eq!(
            pairs,
            [
                ("MODE", "manifest"),
                ("A", "1"),
                ("PASSWORD", "s3cr3t"),
                ("K_SERVICE", "s")
            ]
        );
    }

    #[test]
    fn missing_objects_and_keys_fail_like_the_kubelet_without_values() {
        let missing = |value: KeyRef| {
            let refs = EnvRefs {
                from: vec![],
                vars: vec![EnvVarRef {
                    name: "X".into(),
                    at: 0,
                    value,
                }],
            };
            resolve(&spec(refs), Some(&source())).unwrap_err().message
        };
        assert_eq!(
            missing(key(SourceKind::Secret, "nope", "password", false)),
            "secret \"nope\" not found"
        );
        assert_eq!(
            missing(key(SourceKind::Secret, "db", "pw", false)),
            "couldn't find key pw in Secret default/db"
        );
        assert_eq!(
            missing(key(SourceKind::ConfigMap, "none", "k", false)),
            "configmap \"none\" not found"
        );
        let from = EnvRefs {
            from: vec![EnvFrom {
                source: SourceKind::Secret,
                name: "db".into(),
                prefix: "DB_".into(),
                optional: false,
            }],
            vars: vec![],
        };
        let env = resolve(&spec(from.clone()), Some(&source())).unwrap();
        assert_eq!(env[0], ("DB_password".to_string(), "s3cr3t".to_string()));
        assert!(resolve(&spec(from), None).is_err());
        assert_eq!(
            resolve(&spec(EnvRefs::default()), None).unwrap(),
            spec(EnvRefs::default()).env
        );
    }

    /// Without references too, a name set twice is set once, to its later value, where it
    /// first stood.
    #[test]
    fn names_given_twice_fold_into_the_later_value() {
        let mut twice = spec(EnvRefs::default());
        twice.env.push(("A".into(), "2".into()));
        let env = resolve(&twice, None).unwrap();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [("A", "2"), ("MODE", "manifest"), ("K_SERVICE", "s")]
        );
    }

    /// Several references to one object read it once per start.
    #[test]
    fn each_object_is_read_once_per_start() {
        struct Counting(Fixed, std::sync::atomic::AtomicUsize);
        impl ConfigSource for Counting {
            fn values(
                &self,
                namespace: &str,
                source: SourceKind,
                name: &str,
            ) -> Result<Option<crate::source::Values>, String> {
                self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.0.values(namespace, source, name)
            }
        }
        let refs = EnvRefs {
            from: vec![EnvFrom {
                source: SourceKind::Secret,
                name: "db".into(),
                prefix: "DB_".into(),
                optional: false,
            }],
            vars: ["password", "user"]
                .map(|k| EnvVarRef {
                    name: k.to_uppercase(),
                    at: 0,
                    value: key(SourceKind::Secret, "db", k, false),
                })
                .to_vec(),
        };
        let counting = Counting(source(), Default::default());
        let env = resolve(&spec(refs), Some(&counting)).unwrap();
        assert!(env.contains(&("USER".to_string(), "app".to_string())));
        assert_eq!(counting.1.into_inner(), 1);
    }
}
