//! Asynchronous invocation settings of a Service (Lambda's model, as `nimbus.dev/async-*`
//! annotations on the Service's metadata), parsed and validated into an [`AsyncPolicy`] with
//! Lambda's defaults. Pure; the invocation queue (`nimbus-invocations`) applies it.
//!
//! | annotation | Lambda's setting | default |
//! |---|---|---|
//! | `nimbus.dev/async-max-attempts` | `MaximumRetryAttempts` + 1 (Lambda: 0-2 retries) | 3 |
//! | `nimbus.dev/async-max-event-age` | `MaximumEventAgeInSeconds` (Lambda: 60 s - 6 h) | 6h |
//! | `nimbus.dev/async-on-success` | `DestinationConfig.OnSuccess` | none |
//! | `nimbus.dev/async-on-failure` | `DestinationConfig.OnFailure` | none |
//!
//! A destination is `service:NAME` (a Service in the same namespace) or an `http://` URL
//! (`https://` is not supported yet); it receives Lambda's invocation record as a JSON `POST`. Failed
//! invocations also stay in the store (the dead-letter queue, `nimbus invocations --state
//! Failed`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::error::FieldError;
use crate::names::check_dns_label;

pub const ANNOTATION_MAX_ATTEMPTS: &str = "nimbus.dev/async-max-attempts";
pub const ANNOTATION_MAX_EVENT_AGE: &str = "nimbus.dev/async-max-event-age";
pub const ANNOTATION_ON_SUCCESS: &str = "nimbus.dev/async-on-success";
pub const ANNOTATION_ON_FAILURE: &str = "nimbus.dev/async-on-failure";

/// Lambda's default: two retries after the first attempt.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The most attempts an invocation may have.
pub const MAX_ATTEMPTS: u32 = 100;
/// Lambda's default and maximum event age.
pub const DEFAULT_MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
/// The longest event age Nimbus allows (a day; Lambda: 6 h).
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(24 * 3600);

/// Where an invocation's record goes when it succeeds or finally fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A Service in the invocation's namespace.
    Service(String),
    /// An `http://` URL.
    Url(String),
}

impl Destination {
    /// `service:NAME` or a URL.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Some(name) = value.strip_prefix("service:") {
            check_dns_label(name)?;
            return Ok(Self::Service(name.to_owned()));
        }
        let url = value.trim();
        if url.starts_with("https://") {
            return Err(format!(
                "{value:?}: https destinations are not supported yet; use an http:// URL or \
                 \"service:NAME\" (a Service in the same namespace)"
            ));
        }
        match url.strip_prefix("http://") {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(Self::Url(url.into())),
            _ => Err(format!(
                "{value:?} is not a destination; use \"service:NAME\" (a Service in the same \
                 namespace) or an http:// URL"
            )),
        }
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service(name) => write!(f, "service:{name}"),
            Self::Url(url) => f.write_str(url),
        }
    }
}

/// How a Service's asynchronous invocations are delivered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsyncPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// An invocation older than this is not attempted again (it fails as expired).
    pub max_event_age: Duration,
    pub on_success: Option<Destination>,
    pub on_failure: Option<Destination>,
}

impl Default for AsyncPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_event_age: DEFAULT_MAX_EVENT_AGE,
            on_success: None,
            on_failure: None,
        }
    }
}

impl AsyncPolicy {
    /// The policy the annotations at `path` (a Service's `metadata.annotations`) describe, or
    /// every problem with them.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
        path: &str,
    ) -> Result<Self, Vec<FieldError>> {
        let mut policy = Self::default();
        let mut errors = Vec::new();
        let empty = BTreeMap::new();
        let annotations = annotations.unwrap_or(&empty);
        let at = |key: &str| format!("{path}[{key}]");
        if let Some(v) = annotations.get(ANNOTATION_MAX_ATTEMPTS) {
            match v.trim().parse::<u32>() {
                Ok(n) if (1..=MAX_ATTEMPTS).contains(&n) => policy.max_attempts = n,
                _ => errors.push(FieldError::new(
                    at(ANNOTATION_MAX_ATTEMPTS),
                    format!("{v:?} is not a number of attempts; give 1 to {MAX_ATTEMPTS} (the first attempt included)"),
                )),
            }
        }
        if let Some(v) = annotations.get(ANNOTATION_MAX_EVENT_AGE) {
            match parse_duration(v) {
                Ok(d) if d >= Duration::from_secs(1) && d <= MAX_EVENT_AGE => {
                    policy.max_event_age = d
                }
                Ok(_) => errors.push(FieldError::new(
                    at(ANNOTATION_MAX_EVENT_AGE),
                    format!("{v:?} is out of range; give 1s to 24h"),
                )),
                Err(e) => errors.push(FieldError::new(at(ANNOTATION_MAX_EVENT_AGE), e)),
            }
        }
        for (key, slot) in [
            (ANNOTATION_ON_SUCCESS, &mut policy.on_success),
            (ANNOTATION_ON_FAILURE, &mut policy.on_failure),
        ] {
            if let Some(v) = annotations.get(key) {
                match Destination::parse(v) {
                    Ok(d) => *slot = Some(d),
                    Err(e) => errors.push(FieldError::new(at(key), e)),
                }
            }
        }
        match errors.is_empty() {
            true => Ok(policy),
            false => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<AsyncPolicy, Vec<String>> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AsyncPolicy::from_annotations(Some(&map), "metadata.annotations")
            .map_err(|e| e.into_iter().map(|e| e.path).collect())
    }

    #[test]
    fn lambdas_defaults_and_the_annotations() {
        assert_eq!(parse(&[]).unwrap(), AsyncPolicy::default());
        let p = parse(&[
            (ANNOTATION_MAX_ATTEMPTS, "1"),
            (ANNOTATION_MAX_EVENT_AGE, "90s"),
            (ANNOTATION_ON_SUCCESS, "service:audit"),
            (ANNOTATION_ON_FAILURE, "http://hooks.example.com/failed"),
        ])
        .unwrap();
        assert_eq!(p.max_attempts, 1);
        assert_eq!(p.max_event_age, Duration::from_secs(90));
        assert_eq!(p.on_success, Some(Destination::Service("audit".into())));
        assert_eq!(
            p.on_failure.unwrap().to_string(),
            "http://hooks.example.com/failed"
        );
        assert!(
            Destination::parse("https://x")
                .unwrap_err()
                .contains("not supported yet")
        );
    }

    #[test]
    fn every_bad_value_with_its_path() {
        let errors = parse(&[
            (ANNOTATION_MAX_ATTEMPTS, "0"),
            (ANNOTATION_MAX_EVENT_AGE, "2d"),
            (ANNOTATION_ON_SUCCESS, "service:Bad_Name"),
            (ANNOTATION_ON_FAILURE, "ftp://x"),
        ])
        .unwrap_err();
        assert_eq!(
            errors,
            [
                format!("metadata.annotations[{ANNOTATION_MAX_ATTEMPTS}]"),
                format!("metadata.annotations[{ANNOTATION_MAX_EVENT_AGE}]"),
                format!("metadata.annotations[{ANNOTATION_ON_SUCCESS}]"),
                format!("metadata.annotations[{ANNOTATION_ON_FAILURE}]"),
            ]
        );
    }
}
