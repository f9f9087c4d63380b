//! Well-known label and annotation keys, runtime class names and defaults. Documentation quotes
//! these constants; tests check the docs against them.

/// Label on Configurations, Routes and Revisions naming the owning Service.
pub const LABEL_SERVICE: &str = "serving.knative.dev/service";
/// Label on Revisions naming their Configuration.
pub const LABEL_CONFIGURATION: &str = "serving.knative.dev/configuration";
/// Label on Revisions: the Configuration generation that created them.
pub const LABEL_CONFIGURATION_GENERATION: &str = "serving.knative.dev/configurationGeneration";
/// Label on Revisions naming the Route(s) that send them traffic.
pub const LABEL_ROUTE: &str = "serving.knative.dev/route";
/// Annotation: who created the object.
pub const ANNOTATION_CREATOR: &str = "serving.knative.dev/creator";
/// Annotation: who last changed the object's spec.
pub const ANNOTATION_LAST_MODIFIER: &str = "serving.knative.dev/lastModifier";
/// Annotation (on the revision template): how long an instance may take to become ready.
pub const ANNOTATION_PROGRESS_DEADLINE: &str = "serving.knative.dev/progress-deadline";
/// Annotation (Nimbus extension, on the revision template): `"true"` passes the instance a
/// pre-bound listening socket as fd 3 (`LISTEN_FDS`), systemd socket-activation style.
pub const ANNOTATION_SOCKET_ACTIVATION: &str = "nimbus.dev/socket-activation";
/// Annotation (Nimbus extension, on the revision template): the most processes and threads an
/// instance may have (its cgroup's `pids.max`); default 4096.
pub const ANNOTATION_PIDS_LIMIT: &str = "nimbus.dev/pids-limit";
/// Annotation (Nimbus extension, on the revision template): comma-separated hosts (`host` or
/// `host:port`) a WebAssembly revision may send outbound HTTP requests to; none by default.
pub const ANNOTATION_ALLOWED_OUTBOUND_HOSTS: &str = "nimbus.dev/allowed-outbound-hosts";
/// Annotation on Routes/Services: `cluster-local` keeps it off the public domain.
pub const LABEL_VISIBILITY: &str = "networking.knative.dev/visibility";

/// `runtimeClassName` that selects the host-process runtime (Nimbus extension).
pub const RUNTIME_PROCESS: &str = "process";
/// `runtimeClassName` (or its absence with an `image`) selecting OCI containers.
pub const RUNTIME_OCI: &str = "oci";
/// `runtimeClassName` selecting WebAssembly components.
pub const RUNTIME_WASM: &str = "wasm";

/// Default `timeoutSeconds` (Knative: 300).
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 300;
/// Maximum `timeoutSeconds` (Knative: 600).
pub const MAX_TIMEOUT_SECONDS: i64 = 600;
/// Maximum `containerConcurrency` (Knative: 1000).
pub const MAX_CONTAINER_CONCURRENCY: i64 = 1000;
/// Default progress deadline for an instance to become ready, in seconds. Knative's is 600 s for
/// a whole Deployment; a local process that has not listened within a minute is broken.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u64 = 60;
/// Default domain for route hosts (`<service>.<namespace>.<domain>`).
pub const DEFAULT_DOMAIN: &str = "localhost";
/// Field manager / creator recorded when the caller is not identified.
pub const DEFAULT_USER: &str = "nimbus-admin";
