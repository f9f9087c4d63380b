//! Nimbus's resource model: Knative Serving's `serving.knative.dev/v1` types (and the two
//! internal kinds its controllers keep state in: PodAutoscaler and Ingress; and the core `v1`
//! Secret and ConfigMap revisions read values from), built on
//! k8s-openapi's `ObjectMeta` and `Container` so field names match Kubernetes exactly; parsing of
//! YAML/JSON manifests with precise locations; and validation with field paths.
//!
//! This crate does no I/O and knows nothing about storage, processes or HTTP. Everything here is a
//! pure function of its input, which is what lets the CLI, the API server and the controller share
//! one definition of "valid".

pub mod autoscaling;
pub mod budget;
pub mod conditions;
pub mod constants;
pub mod core;
pub mod cron;
pub mod defaults;
pub mod duration;
pub mod error;
pub mod events;
pub mod fields;
pub mod invocation;
pub mod jobs;
pub mod keda;
pub mod kingress;
pub mod names;
pub mod networking;
pub mod object;
pub mod parse;
pub mod podautoscaler;
pub mod printer;
pub mod quantity;
pub mod runtime;
#[cfg(feature = "schemars")]
pub mod schema;
pub mod serving;
pub mod sources;
pub mod validate;

pub use crate::core::{ConfigMap, Secret};
pub use conditions::{Condition, ConditionStatus};
pub use error::{FieldError, ParseError};
pub use events::Event;
pub use jobs::{Execution, Job, Schedule};
pub use keda::{ScaledObject, TriggerAuthentication};
pub use kingress::KIngress;
pub use object::{Kind, Object};
pub use podautoscaler::PodAutoscaler;
pub use serving::{
    Configuration, ConfigurationSpec, Revision, RevisionSpec, RevisionTemplateSpec, Route,
    RouteSpec, Service, ServiceSpec, TrafficTarget,
};

/// The Kubernetes types Nimbus builds on, re-exported so dependants use the same versions.
pub use k8s_openapi;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// `serving.knative.dev`
pub const GROUP: &str = "serving.knative.dev";
/// `serving.knative.dev/v1`
pub const API_VERSION: &str = "serving.knative.dev/v1";
