//! The programming of the data path: what the router must serve.
//!
//! This is Nimbus's counterpart of Knative's internal `networking.internal.knative.dev` Ingress:
//! the route controller turns each Route's resolved traffic into an [`Ingress`], and the router
//! serves exactly that. It holds no Kubernetes metadata because it is never stored; it is derived
//! state, rebuilt from Routes on every start.

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
    /// The revision's `timeoutSeconds`: the limit on time to the first response byte.
    pub timeout: Duration,
    /// The revision's `containerConcurrency`: the most requests one instance may have in flight
    /// (0 = unlimited). Excess requests wait in the router's queue.
    pub container_concurrency: u32,
}
