//! Equality-based label selectors (`a=b,c!=d,e,!f`), as in `kubectl get -l`, and field
//! selectors on `metadata.name` and `metadata.namespace` (what `kubectl wait` and
//! `kubectl delete --wait` send).
//!
//! Pure parsing and matching; set-based selectors (`a in (x,y)`) are rejected with a message
//! saying so rather than misread.

use std::collections::BTreeMap;

use nimbus_api::events::FIELD_LABELS;
use nimbus_api::{Kind, Object};

/// A parsed selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    NotExists(String),
}

/// Why a selector could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement {requirement:?} of labelSelector: {reason}")]
pub struct SelectorError {
    pub requirement: String,
    pub reason: &'static str,
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Parse a comma-separated list of requirements. The empty string selects everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let requirements = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Requirement::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let empty = BTreeMap::new();
        let labels = labels.unwrap_or(&empty);
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

// === impl Requirement ===

impl Requirement {
    fn parse(text: &str) -> Result<Self, SelectorError> {
        let err = |reason| SelectorError {
            requirement: text.to_string(),
            reason,
        };
        if text.contains(['(', ')']) || text.contains(" in ") || text.contains(" notin ") {
            return Err(err(
                "set-based requirements are not supported; use a=b, a!=b, a or !a",
            ));
        }
        let req = if let Some((k, v)) = text.split_once("!=") {
            Self::NotEquals(
                key(k).ok_or_else(|| err("empty key"))?,
                v.trim().to_string(),
            )
        } else if let Some((k, v)) = text.split_once("==").or_else(|| text.split_once('=')) {
            Self::Equals(
                key(k).ok_or_else(|| err("empty key"))?,
                v.trim().to_string(),
            )
        } else if let Some(k) = text.strip_prefix('!') {
            Self::NotExists(key(k).ok_or_else(|| err("empty key"))?)
        } else {
            Self::Exists(key(text).ok_or_else(|| err("empty key"))?)
        };
        Ok(req)
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::Equals(k, v) => labels.get(k) == Some(v),
            Self::NotEquals(k, v) => labels.get(k) != Some(v),
            Self::Exists(k) => labels.contains_key(k),
            Self::NotExists(k) => !labels.contains_key(k),
        }
    }
}

fn key(text: &str) -> Option<String> {
    let k = text.trim();
    (!k.is_empty() && !k.contains(['=', '!', ' '])).then(|| k.to_string())
}

/// A parsed field selector: `metadata.name=x,metadata.namespace!=y`; on Events also the
/// fields the kube-apiserver lets kubectl select on (`involvedObject.name=x,type=Warning`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(Field, bool, String)>,
}

/// The fields a field selector may name.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Field {
    Name,
    Namespace,
    /// An Event's selectable field, by its core `v1` path.
    Event(String),
}

// === impl FieldSelector ===

impl FieldSelector {
    /// Parse `field=value`, `field==value` and `field!=value` terms for objects of `kind`;
    /// the empty string selects everything.
    pub fn parse(kind: Kind, text: &str) -> Result<Self, SelectorError> {
        let requirements = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|term| parse_field_term(kind, term))
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether `obj` is selected.
    pub fn matches(&self, obj: &Object) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let actual = match (field, obj) {
                (Field::Name, _) => obj.name().to_string(),
                (Field::Namespace, _) => obj.namespace().to_string(),
                (Field::Event(path), Object::Event(e)) => e.field(path).unwrap_or_default(),
                (Field::Event(_), _) => String::new(),
            };
            (actual == *value) == *equal
        })
    }
}

fn parse_field_term(kind: Kind, text: &str) -> Result<(Field, bool, String), SelectorError> {
    let err = |reason| SelectorError {
        requirement: text.to_string(),
        reason,
    };
    let (field, equal, value) = if let Some((f, v)) = text.split_once("!=") {
        (f, false, v)
    } else if let Some((f, v)) = text.split_once("==").or_else(|| text.split_once('=')) {
        (f, true, v)
    } else {
        return Err(err("expected field=value or field!=value"));
    };
    let field = match field.trim() {
        "metadata.name" => Field::Name,
        "metadata.namespace" => Field::Namespace,
        f if kind == Kind::Event && FIELD_LABELS.contains(&f) => Field::Event(f.to_string()),
        _ if kind == Kind::Event => {
            return Err(err(
                "field label not supported; use metadata.name, metadata.namespace, \
                 involvedObject.{kind,namespace,name,uid,apiVersion,resourceVersion,fieldPath}, \
                 reason, reportingComponent, source or type",
            ));
        }
        _ => {
            return Err(err(
                "field label not supported; use metadata.name or metadata.namespace",
            ));
        }
    };
    Ok((field, equal, value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap()
    }

    #[test]
    fn equality_inequality_existence() {
        let l = labels(&[("app", "hello"), ("tier", "web")]);
        assert!(sel("app=hello").matches(Some(&l)));
        assert!(sel("app==hello,tier").matches(Some(&l)));
        assert!(!sel("app=other").matches(Some(&l)));
        assert!(sel("app!=other").matches(Some(&l)));
        assert!(!sel("tier!=web").matches(Some(&l)));
        assert!(sel("!missing").matches(Some(&l)));
        assert!(!sel("!app").matches(Some(&l)));
        assert!(!sel("missing").matches(Some(&l)));
    }

    #[test]
    fn empty_selects_all_and_no_labels_is_empty_map() {
        assert!(sel("").matches(None));
        assert!(sel(" , ").matches(None));
        assert!(sel("a!=b").matches(None));
        assert!(!sel("a").matches(None));
    }

    fn object(kind: Kind, name: &str, namespace: &str, rest: serde_json::Value) -> Object {
        let mut v = serde_json::json!({"metadata": {"name": name, "namespace": namespace}});
        if let (Some(o), Some(r)) = (v.as_object_mut(), rest.as_object()) {
            o.extend(r.clone());
        }
        Object::from_json(kind, v).unwrap()
    }

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let cm = |name, ns| object(Kind::ConfigMap, name, ns, serde_json::json!({}));
        let parse = |s| FieldSelector::parse(Kind::ConfigMap, s);
        let f = parse("metadata.name=hello").unwrap();
        assert!(f.matches(&cm("hello", "default")));
        assert!(!f.matches(&cm("other", "default")));
        let f = parse("metadata.namespace!=kube-system,metadata.name==a").unwrap();
        assert!(f.matches(&cm("a", "default")));
        assert!(!f.matches(&cm("a", "kube-system")));
        assert!(parse("").unwrap().matches(&cm("x", "y")));
        assert!(parse("spec.x=1").is_err());
        assert!(parse("metadata.name").is_err());
        assert!(parse("involvedObject.name=x").is_err());
    }

    #[test]
    fn field_selectors_kubectl_describe_sends_for_events() {
        let about = serde_json::json!({"involvedObject": {
            "kind": "Service", "name": "hello", "namespace": "default", "uid": "u1"},
            "type": "Warning", "reason": "RevisionFailed"});
        let ev = object(Kind::Event, "hello.1", "default", about);
        let parse = |s| FieldSelector::parse(Kind::Event, s).unwrap();
        let describe = "involvedObject.name=hello,involvedObject.namespace=default,\
                        involvedObject.kind=Service,involvedObject.uid=u1";
        assert!(parse(describe).matches(&ev));
        assert!(parse("type=Warning,reason=RevisionFailed").matches(&ev));
        assert!(!parse("involvedObject.kind=Revision").matches(&ev));
        assert!(parse("type!=Normal").matches(&ev));
        assert!(FieldSelector::parse(Kind::Event, "note=x").is_err());
    }

    #[test]
    fn rejects_set_based_and_empty_keys() {
        assert!(LabelSelector::parse("env in (a,b)").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert!(LabelSelector::parse("!").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }
}
