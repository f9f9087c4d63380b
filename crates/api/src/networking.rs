//! The programming of the data path: what the router must serve.
//!
//! This is Nimbus's counterpart of Knative's internal `networking.internal.knative.dev` Ingress:
//! the route controller writes each Route's resolved traffic as a stored KIngress
//! (`crate::kingress`), and the Ingress reconciler derives this [`Ingress`] from it
//! (`nimbus_controller::ingress_program`) for the router to serve exactly that. It holds no
//! Kubernetes metadata: it is never stored itself.

use std::time::Duration;

/// Everything the router needs to serve one Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ingress {
    pub namespace: String,
    /// The Route's name (equal to the Service's name for routes owned by a Service).
    pub name: String,
    pub rules: Vec<IngressRule>,
}

/// One set of hosts and how their traffic splits over revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressRule {
    /// Lower-case host names without port, e.g. `hello.default.localhost`,
    /// `v1-hello.default.localhost`.
    pub hosts: Vec<String>,
    /// Non-empty; percents sum to 100.
    pub splits: Vec<IngressSplit>,
}

/// A share of a rule's traffic sent to one revision (in the Ingress's namespace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngressSplit {
    pub revision: String,
    pub percent: u32,
    /// The revision's request timeouts (Knative's `timeoutSeconds`, `responseStartTimeoutSeconds`, `idleTimeoutSeconds`), defaults applied.
    pub timeouts: RequestTimeouts,
    /// The revision's `containerConcurrency`: the most requests one instance may have in flight
    /// (0 = unlimited). Excess requests wait in the router's queue.
    pub container_concurrency: u32,
}

/// How long the router lets one request of a revision take, from Knative's three per-revision
/// fields with Knative's defaults applied. Knative enforces them in the activator and the
/// queue-proxy (`pkg/http/handler/timeout.go`); Nimbus's router is both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestTimeouts {
    /// The whole request, until the response body ends (`timeoutSeconds`).
    pub total: Duration,
    /// Until the response starts (`responseStartTimeoutSeconds`).
    pub response_start: Duration,
    /// Longest gap without response bytes; `None` = no limit (`idleTimeoutSeconds: 0`).
    pub idle: Option<Duration>,
}

// === impl RequestTimeouts ===

impl RequestTimeouts {
    /// From a revision spec, with Knative's defaults.
    pub fn of(spec: &crate::serving::RevisionSpec) -> Self {
        Self::from_seconds(
            spec.timeout_seconds,
            spec.response_start_timeout_seconds,
            spec.idle_timeout_seconds,
        )
    }

    /// From the three fields' values in seconds (absent = not set), as Knative defaults and
    /// reads them:
    ///
    /// - `timeoutSeconds` absent or 0 is `revision-timeout-seconds` (300;
    ///   `pkg/apis/serving/v1/revision_defaults.go`, `SetDefaults`).
    /// - `responseStartTimeoutSeconds` absent is `revision-response-start-timeout-seconds` (300)
    ///   when that is below the timeout, else no separate limit (`SetDefaults` sets the field
    ///   only "in case we have a non-zero default and the latter is not larger than the revision
    ///   timeout"); 0 (or less) is no separate limit (the timeout handler arms the timer only
    ///   for `revResponseStartTimeout > 0`, `pkg/http/handler/timeout.go`). Either way it never
    ///   outlasts the timeout, which ends the request first; here it is capped at it.
    /// - `idleTimeoutSeconds` absent or 0 (or less) is no limit (`revision-idle-timeout-seconds:
    ///   "0"  # infinite`, `config/core/configmaps/defaults.yaml`; the timer is armed only for
    ///   `revIdleTimeout > 0`).
    pub fn from_seconds(
        timeout: Option<i64>,
        response_start: Option<i64>,
        idle: Option<i64>,
    ) -> Self {
        use crate::constants::*;
        let total = positive(timeout).unwrap_or(secs(DEFAULT_TIMEOUT_SECONDS));
        let set_or_default = |value: Option<i64>, default: i64| match value {
            Some(_) => positive(value),
            None => knative_default(default, total),
        };
        let response_start = set_or_default(response_start, DEFAULT_RESPONSE_START_TIMEOUT_SECONDS);
        Self {
            total,
            response_start: response_start.map_or(total, |limit| limit.min(total)),
            idle: set_or_default(idle, DEFAULT_IDLE_TIMEOUT_SECONDS),
        }
    }
}

/// Knative's `SetDefaults` for `responseStartTimeoutSeconds` and `idleTimeoutSeconds`: the
/// configured default when it is not 0 and below the request's timeout, else unset (no limit of
/// its own).
fn knative_default(default: i64, total: Duration) -> Option<Duration> {
    positive(Some(default)).filter(|limit| *limit < total)
}

/// Knative's defaults: `timeoutSeconds: 300`, the response start within it, no idle limit.
impl Default for RequestTimeouts {
    fn default() -> Self {
        Self::from_seconds(None, None, None)
    }
}

fn positive(seconds: Option<i64>) -> Option<Duration> {
    seconds.filter(|s| *s > 0).map(secs)
}

fn secs(seconds: i64) -> Duration {
    Duration::from_secs(seconds.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::*;
    use crate::serving::RevisionSpec;

    // Knative refuses a config-defaults ConfigMap breaking these (`pkg/apis/config/defaults.go`,
    // `NewDefaultsConfigFromMap`); Nimbus's defaults are constants, so they are checked here.
    const _: () = assert!(DEFAULT_TIMEOUT_SECONDS <= MAX_TIMEOUT_SECONDS);
    const _: () = assert!(DEFAULT_RESPONSE_START_TIMEOUT_SECONDS <= DEFAULT_TIMEOUT_SECONDS);
    const _: () = assert!(DEFAULT_IDLE_TIMEOUT_SECONDS <= DEFAULT_TIMEOUT_SECONDS);

    fn of(timeout: Option<i64>, start: Option<i64>, idle: Option<i64>) -> RequestTimeouts {
        RequestTimeouts::of(&RevisionSpec {
            timeout_seconds: timeout,
            response_start_timeout_seconds: start,
            idle_timeout_seconds: idle,
            ..RevisionSpec::default()
        })
    }

    fn s(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    /// The README's "Request timeouts" section states these defaults; keep the two in step.
    #[test]
    fn the_readme_states_the_defaults() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("## Request timeouts")
            .expect("timeouts section");
        let section = &readme[start..];
        let section = &section[..section[3..].find("\n## ").map_or(section.len(), |e| e + 3)];
        for fact in [
            format!("max {MAX_TIMEOUT_SECONDS} | {DEFAULT_TIMEOUT_SECONDS} s |"),
            format!(
                "| {DEFAULT_RESPONSE_START_TIMEOUT_SECONDS} s, or `timeoutSeconds` when smaller"
            ),
            format!("| {DEFAULT_IDLE_TIMEOUT_SECONDS}: no limit |"),
        ] {
            assert!(
                section.contains(&fact),
                "README's timeouts section lacks {fact:?}"
            );
        }
    }

    #[test]
    fn knatives_defaults_when_nothing_is_set() {
        let expected = RequestTimeouts {
            total: s(300),
            response_start: s(300),
            idle: None,
        };
        assert_eq!(of(None, None, None), expected);
        assert_eq!(of(Some(0), None, Some(0)), expected);
        assert_eq!(RequestTimeouts::default(), expected);
    }

    #[test]
    fn the_default_response_start_applies_only_below_the_timeout() {
        // SetDefaults sets responseStartTimeoutSeconds = 300 only when timeoutSeconds > 300.
        assert_eq!(of(Some(600), None, None).response_start, s(300));
        assert_eq!(of(Some(30), None, None).response_start, s(30));
    }

    #[test]
    fn zero_response_start_means_the_timeout_alone() {
        assert_eq!(of(Some(600), Some(0), None).response_start, s(600));
    }

    #[test]
    fn set_values_are_taken_and_response_start_never_outlasts_the_timeout() {
        let t = of(Some(60), Some(10), Some(5));
        assert_eq!(
            (t.total, t.response_start, t.idle),
            (s(60), s(10), Some(s(5)))
        );
        assert_eq!(of(Some(60), Some(120), None).response_start, s(60));
        assert_eq!(of(Some(60), None, Some(120)).idle, Some(s(120)));
    }
}
