//! Well-known label and annotation keys, runtime class names and defaults. Documentation quotes
//! these constants; tests check the docs against them.

/// Label on Configurations, Routes and Revisions naming the owning Service.
pub const LABEL_SERVICE: &str = "serving.knative.dev/service";
/// Label on Revisions naming their Configuration.
pub const LABEL_CONFIGURATION: &str = "serving.knative.dev/configuration";
/// Label on Revisions: the Configuration generation that created them.
pub const LABEL_CONFIGURATION_GENERATION: &str = "serving.knative.dev/configurationGeneration";
/// Label on Ingresses (and Knative's cluster-local services) naming their Route.
pub const LABEL_ROUTE: &str = "serving.knative.dev/route";
/// Label on PodAutoscalers naming their Revision.
pub const LABEL_REVISION: &str = "serving.knative.dev/revision";
/// Label on PodAutoscalers: their Revision's uid.
pub const LABEL_REVISION_UID: &str = "serving.knative.dev/revisionUID";
/// Label on Revisions and Configurations set by the route reconciler: `active` when a Route
/// references them, `reserve` when none does any more, `pending` until a Route has looked.
pub const LABEL_ROUTING_STATE: &str = "serving.knative.dev/routingState";
/// `routingState` of an object some Route references.
pub const ROUTING_STATE_ACTIVE: &str = "active";
/// `routingState` of an object no Route references any more.
pub const ROUTING_STATE_RESERVE: &str = "reserve";
/// `routingState` of a new object no Route has looked at yet.
pub const ROUTING_STATE_PENDING: &str = "pending";
/// Annotation: when `routingState` last changed (RFC 3339); revision GC's "last active" time.
pub const ANNOTATION_ROUTING_STATE_MODIFIED: &str = "serving.knative.dev/routingStateModified";
/// Annotation: the Routes (comma-separated, sorted) that reference the object.
pub const ANNOTATION_ROUTES: &str = "serving.knative.dev/routes";
/// Annotation on a Revision: `"true"` keeps it from revision garbage collection.
pub const ANNOTATION_NO_GC: &str = "serving.knative.dev/no-gc";
/// Annotation (Nimbus extension, on the revision template): the backend that runs it,
/// `process`, `oci` or `wasm` (default `oci`). See `nimbus_api::runtime`.
pub const ANNOTATION_RUNTIME: &str = "nimbus.dev/runtime";
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
/// Annotation (Nimbus extension, on the revision template): `"true"` runs a container in the
/// host's network namespace instead of its own (its program must then listen on `$PORT`).
pub const ANNOTATION_HOST_NETWORK: &str = "nimbus.dev/host-network";
/// Annotation on Routes/Services: `cluster-local` keeps it off the public domain.
pub const LABEL_VISIBILITY: &str = "networking.knative.dev/visibility";

/// Backend name (`nimbus.dev/runtime`, or legacy `runtimeClassName`): host processes.
pub const RUNTIME_PROCESS: &str = "process";
/// Backend name: OCI containers (the default).
pub const RUNTIME_OCI: &str = "oci";
/// Backend name: WebAssembly components.
pub const RUNTIME_WASM: &str = "wasm";
/// Finalizer Nimbus puts on a Revision while its instances may still run: removed once the
/// runtime has stopped them all and forgotten the revision.
pub const FINALIZER_INSTANCES: &str = "nimbus.dev/instances";
/// Field manager of the controller's server-side applies.
pub const CONTROLLER_MANAGER: &str = "nimbus-controller";

/// Default `timeoutSeconds` (Knative: 300).
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 300;
/// Maximum `timeoutSeconds` (Knative: 600).
pub const MAX_TIMEOUT_SECONDS: i64 = 600;
/// Default `responseStartTimeoutSeconds` when below `timeoutSeconds` (Knative's
/// `revision-response-start-timeout-seconds`, which defaults to `revision-timeout-seconds`: 300).
pub const DEFAULT_RESPONSE_START_TIMEOUT_SECONDS: i64 = 300;
/// Default `idleTimeoutSeconds` (Knative's `revision-idle-timeout-seconds`: 0, no limit).
pub const DEFAULT_IDLE_TIMEOUT_SECONDS: i64 = 0;
/// Maximum `containerConcurrency` (Knative: 1000).
pub const MAX_CONTAINER_CONCURRENCY: i64 = 1000;
/// Default progress deadline for an instance to become ready, in seconds. Knative's is 600 s for
/// a whole Deployment; a local process that has not listened within a minute is broken.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u64 = 60;
/// Default domain for route hosts (`<service>.<namespace>.<domain>`).
pub const DEFAULT_DOMAIN: &str = "localhost";
/// Field manager / creator recorded when the caller is not identified.
pub const DEFAULT_USER: &str = "nimbus-admin";
