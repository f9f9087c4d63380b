//! A container's `envFrom` and `env[].valueFrom` → [`EnvRefs`]: which Secret and ConfigMap
//! values an instance's environment takes, and where each goes. Pure; the values are read by
//! the runtime at every instance start (`nimbus_runtime::env::resolve`), never here.

use k8s_openapi::api::core::v1::{Container, EnvVarSource};
use nimbus_api::k8s_openapi;
use nimbus_runtime::env::{EnvFrom, EnvRefs, EnvVarRef, KeyRef, SourceKind};

/// The references of `c`'s environment. Validation allows only Secret and ConfigMap
/// references; anything else is left out.
pub(crate) fn of(c: &Container) -> EnvRefs {
    let from = c.env_from.iter().flatten().filter_map(|e| {
        let (source, name, optional) = match (&e.secret_ref, &e.config_map_ref) {
            (Some(s), _) => (SourceKind::Secret, &s.name, s.optional),
            (None, Some(m)) => (SourceKind::ConfigMap, &m.name, m.optional),
            (None, None) => return None,
        };
        Some(EnvFrom {
            source,
            name: name.clone(),
            prefix: e.prefix.clone().unwrap_or_default(),
            optional: optional.unwrap_or(false),
        })
    });
    let mut literal = 0;
    let mut vars = Vec::new();
    for e in c.env.iter().flatten() {
        match e.value_from.as_ref().and_then(key_ref) {
            Some(value) => vars.push(EnvVarRef {
                name: e.name.clone(),
                at: literal,
                value,
            }),
            None if is_literal(e) => literal += 1,
            None => {}
        }
    }
    EnvRefs {
        from: from.collect(),
        vars,
    }
}

/// Whether `env[]` entry is a literal (it goes into `InstanceSpec::env`).
pub(crate) fn is_literal(e: &k8s_openapi::api::core::v1::EnvVar) -> bool {
    e.value_from.is_none()
}

fn key_ref(from: &EnvVarSource) -> Option<KeyRef> {
    if let Some(s) = &from.secret_key_ref {
        return Some(KeyRef {
            source: SourceKind::Secret,
            name: s.name.clone(),
            key: s.key.clone(),
            optional: s.optional.unwrap_or(false),
        });
    }
    let m = from.config_map_key_ref.as_ref()?;
    Some(KeyRef {
        source: SourceKind::ConfigMap,
        name: m.name.clone(),
        key: m.key.clone(),
        optional: m.optional.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_keep_their_place_among_literals() {
        let c: Container = serde_json::from_value(serde_json::json!({
            "name": "c",
            "env": [
                {"name": "A", "value": "1"},
                {"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "B", "value": "2"},
                {"name": "M", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "m", "optional": true}}}
            ],
            "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}, {"secretRef": {"name": "db", "optional": true}}]
        }))
        .unwrap();
        let refs = of(&c);
        assert_eq!(
            refs.vars
                .iter()
                .map(|v| (v.name.as_str(), v.at))
                .collect::<Vec<_>>(),
            [("P", 1), ("M", 2)]
        );
        assert_eq!(refs.vars[1].value.source, SourceKind::ConfigMap);
        assert!(refs.vars[1].value.optional && !refs.vars[0].value.optional);
        assert_eq!(refs.from.len(), 2);
        assert_eq!(refs.from[0].prefix, "CFG_");
        assert_eq!(refs.from[1].source, SourceKind::Secret);
        assert!(refs.from[1].optional);
    }
}
