//! Equality-based label selectors (`a=b,c!=d,e,!f`), as in `kubectl get -l`, and field
//! selectors on `metadata.name` and `metadata.namespace` (what `kubectl wait` and
//! `kubectl delete --wait` send).
//!
//! Pure parsing and matching; set-based selectors (`a in (x,y)`) are rejected with a message
//! saying so rather than misread.

use std::collections::BTreeMap;

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

/// A parsed field selector: `metadata.name=x,metadata.namespace!=y`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    requirements: Vec<(MetaField, bool, String)>,
}

/// The fields a field selector may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum MetaField {
    Name,
    Namespace,
}

// === impl FieldSelector ===

impl FieldSelector {
    /// Parse `field=value`, `field==value` and `field!=value` terms; the empty string selects
    /// everything.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let requirements = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(parse_field_term)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether an object with this name and namespace is selected.
    pub fn matches(&self, name: &str, namespace: &str) -> bool {
        self.requirements.iter().all(|(field, equal, value)| {
            let actual = match field {
                MetaField::Name => name,
                MetaField::Namespace => namespace,
            };
            (actual == value) == *equal
        })
    }
}

fn parse_field_term(text: &str) -> Result<(MetaField, bool, String), SelectorError> {
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
        "metadata.name" => MetaField::Name,
        "metadata.namespace" => MetaField::Namespace,
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

    #[test]
    fn field_selectors_on_name_and_namespace() {
        let f = FieldSelector::parse("metadata.name=hello").unwrap();
        assert!(f.matches("hello", "default"));
        assert!(!f.matches("other", "default"));
        let f = FieldSelector::parse("metadata.namespace!=kube-system,metadata.name==a").unwrap();
        assert!(f.matches("a", "default"));
        assert!(!f.matches("a", "kube-system"));
        assert!(FieldSelector::parse("").unwrap().matches("x", "y"));
        assert!(FieldSelector::parse("spec.x=1").is_err());
        assert!(FieldSelector::parse("metadata.name").is_err());
    }

    #[test]
    fn rejects_set_based_and_empty_keys() {
        assert!(LabelSelector::parse("env in (a,b)").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert!(LabelSelector::parse("!").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }
}
