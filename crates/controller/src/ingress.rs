//! Where resolved routes go: the router implements this.

use nimbus_api::networking::Ingress;

/// Receives the data-path programming derived from Routes.
pub trait IngressSink: Send + Sync + 'static {
    /// Serve `ingress` from now on (replacing the previous version for the same route).
    fn apply(&self, ingress: Ingress);
    /// Stop serving the route.
    fn remove(&self, namespace: &str, name: &str);
}
