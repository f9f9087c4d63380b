//! Equality-based label selectors (`a=b,c!=d,e,!f`), as in `kubectl get -l`.
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
    fn rejects_set_based_and_empty_keys() {
        assert!(LabelSelector::parse("env in (a,b)").is_err());
        assert!(LabelSelector::parse("=x").is_err());
        assert!(LabelSelector::parse("!").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }
}
