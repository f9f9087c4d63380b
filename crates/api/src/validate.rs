//! Knative's validation rules, as pure functions returning every problem found (not just the
//! first), each with its field path and the allowed values.

use std::collections::HashSet;

mod container;
mod core;
mod immutable;
mod jobs;
mod keda;
mod security;
mod volumes;

pub use jobs::{CONCURRENCY_POLICIES, template_meta};
pub use security::CAPABILITIES;

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::constants::*;
use crate::duration::parse_duration;
use crate::error::FieldError;
use crate::names::check_dns_label;
use crate::object::Object;
use crate::runtime::{Backend, runtime_choice};
use crate::serving::{RevisionSpec, RevisionTemplateSpec, TrafficTarget};

/// Environment variables the runtime contract sets; a manifest may not (Knative's
/// `reservedEnvVars`).
pub const RESERVED_ENV: [&str; 4] = ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"];

/// Ports Knative reserves for its own components; a user container may not listen on them.
pub const RESERVED_PORTS: [i32; 5] = [8012, 8013, 8022, 9090, 9091];

/// Why Nimbus refuses `obj`, as one line (`path: why; path: why`), or `None` when it is
/// valid: for objects no admission webhook checked (a cluster's), reported in their status.
pub fn refusal(obj: &Object) -> Option<String> {
    let errors = validate(obj);
    (!errors.is_empty()).then(|| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        errors.join("; ")
    })
}

/// Validate any object. Empty when valid.
pub fn validate(obj: &Object) -> Vec<FieldError> {
    let mut v = Errors::default();
    validate_keys(&mut v, "metadata", obj.metadata());
    if obj.kind().is_core() {
        core::validate_meta(&mut v, obj.metadata());
        core::validate(&mut v, obj);
        return v.0;
    }
    validate_meta(&mut v, obj.metadata());
    let parent = obj.metadata().name.as_deref();
    match obj {
        Object::Service(s) => {
            if let Err(errors) = crate::invocation::AsyncPolicy::from_annotations(
                s.metadata.annotations.as_ref(),
                "metadata.annotations",
            ) {
                v.0.extend(errors);
            }
            if let Err(errors) = crate::budget::Budget::from_annotations(
                s.metadata.annotations.as_ref(),
                "metadata.annotations",
            ) {
                v.0.extend(errors);
            }
            validate_revision_names_fit(&mut v, parent, &s.spec.template);
            validate_template(&mut v, "spec.template", &s.spec.template, parent);
            validate_traffic(&mut v, "spec.traffic", &s.spec.traffic, parent, false);
        }
        Object::Configuration(c) => {
            validate_revision_names_fit(&mut v, parent, &c.spec.template);
            validate_template(&mut v, "spec.template", &c.spec.template, parent)
        }
        Object::Revision(r) => {
            validate_runtime_annotation(&mut v, "metadata.annotations", &r.metadata);
            validate_revision_spec(&mut v, "spec", &r.spec, &r.metadata);
        }
        Object::Route(r) => validate_traffic(&mut v, "spec.traffic", &r.spec.traffic, parent, true),
        // Written by Nimbus's own controllers; their specs are not user input.
        Object::PodAutoscaler(_) | Object::Ingress(_) => {}
        Object::Secret(_) | Object::ConfigMap(_) | Object::Event(_) => {}
        Object::Job(j) => jobs::validate_job(&mut v, j),
        Object::Execution(e) => jobs::validate_execution(&mut v, e),
        Object::Schedule(s) => jobs::validate_schedule(&mut v, s),
        Object::ScaledObject(so) => keda::validate_scaled_object(&mut v, so),
        Object::TriggerAuthentication(ta) => keda::validate_trigger_authentication(&mut v, ta),
        Object::RedisStreamSource(s) => s.validate(&mut v.0),
        Object::RabbitmqSource(s) => s.validate(&mut v.0),
        Object::RedisListSource(s) => s.validate(&mut v.0),
        Object::NatsJetStreamSource(s) => s.validate(&mut v.0),
    }
    v.0
}

/// Why a Revision's spec may not change, as the API servers say it (the embedded one after the
/// changed fields, a cluster's CRD in its validation rule's message).
pub const REVISION_SPEC_IMMUTABLE: &str = "A Revision's spec never changes once created: change \
    the Service's or Configuration's spec.template instead, which creates a new Revision";

/// Rules that compare an update with the stored object. Knative's: a Revision's spec never
/// changes, and a user-chosen revision name (`spec.template.metadata.name`) names one immutable
/// template, so changing the template while keeping the name is refused.
pub fn validate_update(old: &Object, new: &Object) -> Vec<FieldError> {
    if new.kind().is_core() {
        return core::validate_update(old, new);
    }
    if let (Object::Revision(before), Object::Revision(after)) = (old, new)
        && before.spec != after.spec
    {
        let json = |spec: &RevisionSpec| serde_json::to_value(spec).unwrap_or_default();
        let changed = immutable::describe("spec", &json(&before.spec), &json(&after.spec));
        return vec![FieldError::new(
            "spec",
            format!("{changed}. {REVISION_SPEC_IMMUTABLE}"),
        )];
    }
    let template = |o: &Object| match o {
        Object::Service(s) => Some(s.spec.template.clone()),
        Object::Configuration(c) => Some(c.spec.template.clone()),
        _ => None,
    };
    let (Some(before), Some(after)) = (template(old), template(new)) else {
        return vec![];
    };
    match (&before.metadata.name, &after.metadata.name) {
        (Some(a), Some(b)) if a == b && before != after => vec![FieldError::new(
            "spec.template.metadata.name",
            format!(
                "{b:?} already names a revision with a different template; revisions are immutable, \
                 so change the name along with the template (or remove it to get generated names)"
            ),
        )],
        _ => vec![],
    }
}

/// Most bytes all annotations of an object may take (keys and values), as in Kubernetes.
const MAX_ANNOTATIONS_BYTES: usize = 256 << 10;

/// Label keys and values and annotation keys, by Kubernetes' rules (`path`: where `meta` is).
fn validate_keys(v: &mut Errors, path: &str, meta: &ObjectMeta) {
    for (key, value) in meta.labels.iter().flatten() {
        if let Err(e) = crate::names::check_qualified_name(key) {
            v.add(format!("{path}.labels"), format!("key: {e}"));
        }
        if let Err(e) = crate::names::check_label_value(value) {
            v.add(format!("{path}.labels[{key}]"), e);
        }
    }
    let annotations = meta.annotations.iter().flatten();
    let mut size = 0;
    for (key, value) in annotations {
        size += key.len() + value.len();
        if let Err(e) = crate::names::check_qualified_name(key) {
            v.add(format!("{path}.annotations"), format!("key: {e}"));
        }
    }
    if size > MAX_ANNOTATIONS_BYTES {
        v.add(
            format!("{path}.annotations"),
            format!("{size} bytes in all; at most {MAX_ANNOTATIONS_BYTES} are allowed"),
        );
    }
}

#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(path, message));
    }
}

fn validate_meta(v: &mut Errors, meta: &ObjectMeta) {
    match (&meta.name, &meta.generate_name) {
        (Some(name), _) => {
            if let Err(e) = check_dns_label(name) {
                v.add("metadata.name", e);
            }
        }
        (None, Some(prefix)) => {
            let probe = format!("{prefix}x");
            if let Err(e) = check_dns_label(&probe) {
                v.add("metadata.generateName", e);
            }
        }
        (None, None) => v.add(
            "metadata.name",
            "is required (or set metadata.generateName)",
        ),
    }
    if let Some(ns) = &meta.namespace
        && let Err(e) = check_dns_label(ns)
    {
        v.add("metadata.namespace", e);
    }
}

fn validate_template(v: &mut Errors, path: &str, t: &RevisionTemplateSpec, parent: Option<&str>) {
    validate_keys(v, &format!("{path}.metadata"), &t.metadata);
    if let (Some(name), Some(parent)) = (&t.metadata.name, parent) {
        if !name.starts_with(&format!("{parent}-")) {
            v.add(
                format!("{path}.metadata.name"),
                format!("{name:?} must start with \"{parent}-\" (revision names are prefixed by their service)"),
            );
        } else if let Err(e) = check_dns_label(name) {
            v.add(format!("{path}.metadata.name"), e);
        }
    }
    if let Some(annotations) = &t.metadata.annotations
        && let Some(d) = annotations.get(ANNOTATION_PROGRESS_DEADLINE)
        && let Err(e) = parse_duration(d)
    {
        v.add(
            format!("{path}.metadata.annotations[{ANNOTATION_PROGRESS_DEADLINE}]"),
            e,
        );
    }
    validate_runtime_annotation(v, &format!("{path}.metadata.annotations"), &t.metadata);
    validate_revision_spec(v, &format!("{path}.spec"), &t.spec, &t.metadata);
    let annotations_path = format!("{path}.metadata.annotations");
    let cc = t.spec.container_concurrency.unwrap_or(0);
    if let Err(errs) = crate::autoscaling::ScalingSpec::from_annotations(
        t.metadata.annotations.as_ref(),
        cc,
        &annotations_path,
    ) {
        v.0.extend(errs);
    }
}

/// The longest Service or Configuration name whose generated revision names
/// (`NAME-00001`) are still DNS labels of at most 63 characters.
pub const MAX_GENERATED_PARENT_NAME: usize = 63 - "-00001".len();

/// A Service or Configuration without a chosen revision name gets revisions named
/// `NAME-00001`: refuse a name that makes those longer than a label may be (issue #13: a
/// 63-character service name gave a 69-character revision name).
fn validate_revision_names_fit(v: &mut Errors, name: Option<&str>, t: &RevisionTemplateSpec) {
    if let Some(name) = name
        && t.metadata.name.is_none()
        && name.len() > MAX_GENERATED_PARENT_NAME
    {
        v.add(
            "metadata.name",
            format!(
                "{name:?} is {} characters long; its revisions are named \"{name}-00001\", which \
                 must fit in 63 characters, so at most {MAX_GENERATED_PARENT_NAME} are allowed \
                 (or name the revision in spec.template.metadata.name)",
                name.len()
            ),
        );
    }
}

/// The most processes `nimbus.dev/pids-limit` may allow (Linux's `pid_max` limit).
const MAX_PIDS_LIMIT: u64 = 4_194_304;

/// `nimbus.dev/runtime` names one of Nimbus's backends; `nimbus.dev/pids-limit` is a count.
fn validate_runtime_annotation(v: &mut Errors, path: &str, meta: &ObjectMeta) {
    if let Some(value) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_PIDS_LIMIT))
        && !value
            .parse::<u64>()
            .is_ok_and(|n| (1..=MAX_PIDS_LIMIT).contains(&n))
    {
        v.add(
            format!("{path}[{ANNOTATION_PIDS_LIMIT}]"),
            format!(
                "{value:?} is not a number of processes; give a whole number from 1 to \
                 {MAX_PIDS_LIMIT}"
            ),
        );
    }
    if let Some(value) = meta
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_RUNTIME))
        && Backend::parse(value).is_none()
    {
        v.add(
            format!("{path}[{ANNOTATION_RUNTIME}]"),
            format!("{value:?} is not a Nimbus backend; use \"{RUNTIME_PROCESS}\", \"{RUNTIME_OCI}\" or \"{RUNTIME_WASM}\""),
        );
    }
}

/// Validate a revision spec found at `path` (`meta`: the revision's or template's metadata).
fn validate_revision_spec(v: &mut Errors, path: &str, spec: &RevisionSpec, meta: &ObjectMeta) {
    if let Some(rc) = spec.runtime_class_name.as_deref()
        && let Err(e) = crate::names::check_dns_subdomain(rc)
    {
        v.add(format!("{path}.runtimeClassName"), e);
    }
    let backend = runtime_choice(meta.annotations.as_ref(), spec).backend;
    match spec.containers.len() {
        0 => v.add(
            format!("{path}.containers"),
            "exactly one container is required",
        ),
        1 => {
            let container = format!("{path}.containers[0]");
            validate_container(v, &container, &spec.containers[0], backend);
            volumes::validate_volumes(
                v,
                &format!("{path}.volumes"),
                spec.volumes.as_deref().unwrap_or_default(),
                &container,
                &spec.containers[0],
            );
            security::validate_security(
                v,
                &format!("{path}.securityContext"),
                spec.security_context.as_ref(),
                &format!("{container}.securityContext"),
                &spec.containers[0],
                backend,
            );
        }
        n => v.add(
            format!("{path}.containers"),
            format!("has {n} containers; Nimbus supports exactly one"),
        ),
    }
    if let Some(cc) = spec.container_concurrency
        && !(0..=MAX_CONTAINER_CONCURRENCY).contains(&cc)
    {
        v.add(
            format!("{path}.containerConcurrency"),
            format!("{cc} is out of range; allowed 0 (unlimited) to {MAX_CONTAINER_CONCURRENCY}"),
        );
    }
    for (field, value) in [
        ("timeoutSeconds", spec.timeout_seconds),
        (
            "responseStartTimeoutSeconds",
            spec.response_start_timeout_seconds,
        ),
        ("idleTimeoutSeconds", spec.idle_timeout_seconds),
    ] {
        if let Some(t) = value
            && !(0..=MAX_TIMEOUT_SECONDS).contains(&t)
        {
            v.add(
                format!("{path}.{field}"),
                format!("{t} is out of range; allowed 0 to {MAX_TIMEOUT_SECONDS} seconds"),
            );
        }
    }
}

fn validate_container(v: &mut Errors, path: &str, c: &Container, backend: Backend) {
    let has_command = c.command.as_ref().is_some_and(|cmd| !cmd.is_empty());
    match backend {
        Backend::Process if !has_command => v.add(
            format!("{path}.command"),
            "is required for the process backend (nimbus.dev/runtime: process): give the program to run, e.g. [\"/usr/bin/python3\", \"-m\", \"http.server\"]",
        ),
        Backend::Process => {}
        _ if c.image.as_deref().unwrap_or("").is_empty() => v.add(
            format!("{path}.image"),
            "is required (or annotate the template with nimbus.dev/runtime: process and give a command to run a host process)",
        ),
        _ => {}
    }
    let ports = c.ports.as_deref().unwrap_or_default();
    if ports.len() > 1 {
        v.add(
            format!("{path}.ports"),
            format!("has {} ports; at most one is allowed", ports.len()),
        );
    }
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if let Some(name) = p.name.as_deref()
            && !["", "http1", "h2c"].contains(&name)
        {
            v.add(
                format!("{pp}.name"),
                format!("{name:?} is not allowed; use \"http1\" or \"h2c\""),
            );
        }
        if !(1..=65535).contains(&p.container_port) {
            v.add(
                format!("{pp}.containerPort"),
                format!("{} is out of range 1-65535", p.container_port),
            );
        } else if RESERVED_PORTS.contains(&p.container_port) {
            v.add(
                format!("{pp}.containerPort"),
                format!(
                    "{} is reserved by Knative; pick another port",
                    p.container_port
                ),
            );
        }
        if let Some(proto) = p.protocol.as_deref()
            && proto != "TCP"
        {
            v.add(
                format!("{pp}.protocol"),
                format!("{proto:?} is not allowed; only \"TCP\""),
            );
        }
    }
    container::validate_runtime_fields(v, path, c);
    for (i, e) in c.env.as_deref().unwrap_or_default().iter().enumerate() {
        if e.name.is_empty() {
            v.add(format!("{path}.env[{i}].name"), "must not be empty");
        }
        if RESERVED_ENV.contains(&e.name.as_str()) {
            v.add(
                format!("{path}.env[{i}].name"),
                format!(
                    "{:?} is a reserved environment variable (Knative's runtime contract sets it)",
                    e.name
                ),
            );
        }
        if let Some(from) = &e.value_from {
            core::validate_value_from(v, &format!("{path}.env[{i}]"), e.value.is_some(), from);
        }
    }
    for (i, e) in c.env_from.as_deref().unwrap_or_default().iter().enumerate() {
        core::validate_env_from(v, &format!("{path}.envFrom[{i}]"), e);
    }
}

fn validate_traffic(
    v: &mut Errors,
    path: &str,
    traffic: &[TrafficTarget],
    parent: Option<&str>,
    is_route: bool,
) {
    if traffic.is_empty() {
        return;
    }
    let mut sum: i64 = 0;
    let mut tags = HashSet::new();
    for (i, t) in traffic.iter().enumerate() {
        let tp = format!("{path}[{i}]");
        validate_target_ref(v, &tp, t, is_route);
        match t.percent {
            Some(p) if !(0..=100).contains(&p) => v.add(
                format!("{tp}.percent"),
                format!("{p} is out of range 0-100"),
            ),
            Some(p) => sum += p,
            None => {}
        }
        if let Some(tag) = &t.tag {
            if !tags.insert(tag.as_str()) {
                v.add(
                    format!("{tp}.tag"),
                    format!("{tag:?} is used by more than one traffic target; tags must be unique"),
                );
            } else if let Err(e) = check_dns_label(tag) {
                v.add(format!("{tp}.tag"), e);
            } else if let Some(name) = parent
                && tag.len() + name.len() + 1 > 63
            {
                v.add(
                    format!("{tp}.tag"),
                    format!("\"{tag}-{name}\" (the tag's host label) is longer than 63 characters"),
                );
            }
        }
        if t.url.is_some() {
            v.add(
                format!("{tp}.url"),
                "is set by Nimbus in status.traffic; remove it from spec",
            );
        }
    }
    if sum != 100 {
        v.add(
            path,
            format!("traffic percents sum to {sum}; they must sum to 100"),
        );
    }
}

fn validate_target_ref(v: &mut Errors, tp: &str, t: &TrafficTarget, is_route: bool) {
    let latest = t.latest_revision == Some(true);
    match (&t.revision_name, &t.configuration_name, latest) {
        (Some(_), _, true) => v.add(
            format!("{tp}.revisionName"),
            "may not be set when latestRevision is true",
        ),
        (Some(_), Some(_), false) => v.add(
            format!("{tp}.configurationName"),
            "may not be set together with revisionName",
        ),
        (None, Some(_), _) if !is_route => v.add(
            format!("{tp}.configurationName"),
            "is not allowed on a Service; use latestRevision: true",
        ),
        (None, Some(_), false) if t.latest_revision == Some(false) => v.add(
            format!("{tp}.latestRevision"),
            "must be true (or unset) with configurationName",
        ),
        (None, None, false) if t.latest_revision == Some(false) => v.add(
            format!("{tp}.revisionName"),
            "is required when latestRevision is false",
        ),
        (None, None, false) => v.add(
            tp,
            "names no revision: set revisionName or latestRevision: true",
        ),
        _ => {}
    }
    if let Some(name) = &t.revision_name
        && let Err(e) = check_dns_label(name)
    {
        v.add(format!("{tp}.revisionName"), e);
    }
}
