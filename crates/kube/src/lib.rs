//! Kubernetes mode: the same Knative objects, reconcilers, CLI and `kubectl` on a real
//! cluster, where Kubernetes is the distributed engine (scheduling, nodes, networking) and
//! Nimbus supplies revisions, routing, the activator and the autoscaler.
//!
//! This crate owns everything that talks to a Kubernetes API server through kube-rs: the
//! [`nimbus_controller::Resources`] implementation the controller runs on (`resources`), the
//! runtime that turns revisions into Deployments (`runtime`, `workload`), the routers'
//! endpoints (`endpoints`) and their conversation with the operator (`peers`), the cluster's
//! install manifests and CRDs (`install`, `crds`, `structural`, `apply`), finding the cluster
//! (`kubeconfig`), and the way out (`export`). It never decides anything itself: the
//! reconcilers are `nimbus-controller`'s.

pub mod apply;
pub mod crds;
pub mod endpoints;
pub mod export;
pub mod install;
pub mod kubeconfig;
pub mod peers;
pub mod resources;
pub mod runtime;
pub mod structural;
pub mod tasks;
pub mod workload;

pub use resources::KubeResources;

#[cfg(test)]
mod reconcile_tests;
pub use runtime::KubeRuntime;
