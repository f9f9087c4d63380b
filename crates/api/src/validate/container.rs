//! Validation of the container fields a runtime enforces: `resources` quantities, the three
//! probes, and the user to run as.

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Errors;
use crate::quantity::{parse_bytes, parse_millis};

/// Resource names a runtime enforces; others (`ephemeral-storage`, extended resources) are
/// accepted and ignored, as a Kubernetes node without them would.
const MEMORY: &str = "memory";
const CPU: &str = "cpu";

pub(super) fn validate_runtime_fields(v: &mut Errors, path: &str, c: &Container) {
    validate_resources(v, path, c);
    let own = own_port(c);
    for (field, probe) in [
        ("readinessProbe", &c.readiness_probe),
        ("livenessProbe", &c.liveness_probe),
        ("startupProbe", &c.startup_probe),
    ] {
        if let Some(p) = probe {
            validate_probe(v, &format!("{path}.{field}"), field, p, &own);
        }
    }
    if let Some(sc) = &c.security_context {
        for (field, value) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
        ] {
            if let Some(id) = value
                && u32::try_from(id).is_err()
            {
                v.add(
                    format!("{path}.securityContext.{field}"),
                    format!("{id} is out of range; use 0 to {}", u32::MAX),
                );
            }
        }
    }
}

fn validate_resources(v: &mut Errors, path: &str, c: &Container) {
    let Some(r) = &c.resources else { return };
    let mut parsed = |which: &str, map: &Option<std::collections::BTreeMap<String, _>>| {
        let mut out = (None, None);
        for (name, q) in map.iter().flatten() {
            let q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity = q;
            let at = format!("{path}.resources.{which}.{name}");
            match name.as_str() {
                MEMORY => match parse_bytes(&q.0) {
                    Ok(b) => out.0 = Some(b),
                    Err(e) => v.add(at, e),
                },
                CPU => match parse_millis(&q.0) {
                    Ok(0) => v.add(at, "must be more than 0"),
                    Ok(m) => out.1 = Some(m),
                    Err(e) => v.add(at, e),
                },
                other => {
                    if let Err(e) = crate::names::check_qualified_name(other) {
                        v.add(
                            format!("{path}.resources.{which}"),
                            format!("resource name: {e}"),
                        );
                    }
                }
            }
        }
        out
    };
    let (mem_limit, cpu_limit) = parsed("limits", &r.limits);
    let (mem_request, cpu_request) = parsed("requests", &r.requests);
    if let Some(limit) = mem_limit
        && limit < 4 << 20
    {
        v.add(
            format!("{path}.resources.limits.memory"),
            format!("{limit} bytes is too small to start a process; give at least 4Mi"),
        );
    }
    for (name, request, limit) in [
        (MEMORY, mem_request, mem_limit),
        (CPU, cpu_request, cpu_limit),
    ] {
        if let (Some(request), Some(limit)) = (request, limit)
            && request > limit
        {
            v.add(
                format!("{path}.resources.requests.{name}"),
                format!("must be less than or equal to the {name} limit"),
            );
        }
    }
}

/// The serving port's number and name, which probes may address.
fn own_port(c: &Container) -> (Option<i32>, Option<String>) {
    let port = c.ports.as_deref().and_then(|p| p.first());
    (
        port.map(|p| p.container_port),
        port.and_then(|p| p.name.clone()),
    )
}

fn validate_probe(
    v: &mut Errors,
    path: &str,
    kind: &str,
    p: &Probe,
    own: &(Option<i32>, Option<String>),
) {
    let handlers = [
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.exec.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => v.add(path, "needs one handler: httpGet, tcpSocket or exec"),
        1 => {}
        _ => v.add(
            path,
            "may have only one handler of httpGet, tcpSocket and exec",
        ),
    }
    if p.grpc.is_some() {
        v.add(
            format!("{path}.grpc"),
            "is not supported; use httpGet, tcpSocket or exec",
        );
    }
    if let Some(http) = &p.http_get {
        check_port(v, &format!("{path}.httpGet.port"), &http.port, own);
        if let Some(scheme) = http.scheme.as_deref()
            && scheme != "HTTP"
        {
            v.add(
                format!("{path}.httpGet.scheme"),
                format!("{scheme:?} is not supported; use \"HTTP\""),
            );
        }
        if let Some(host) = http.host.as_deref().filter(|h| !h.is_empty()) {
            v.add(format!("{path}.httpGet.host"), format!("{host:?} is not supported: probes go to the instance; set a Host header in httpHeaders instead"));
        }
    }
    if let Some(tcp) = &p.tcp_socket {
        check_port(v, &format!("{path}.tcpSocket.port"), &tcp.port, own);
    }
    if let Some(exec) = &p.exec
        && exec.command.as_ref().is_none_or(|c| c.is_empty())
    {
        v.add(format!("{path}.exec.command"), "must name a command to run");
    }
    // Knative allows periodSeconds 0 on a readiness probe: "probe as fast as sensible".
    let min_period = if kind == "readinessProbe" { 0 } else { 1 };
    let fields = [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("periodSeconds", p.period_seconds, min_period),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("successThreshold", p.success_threshold, 1),
        ("failureThreshold", p.failure_threshold, 1),
    ];
    for (field, value, min) in fields {
        if let Some(n) = value
            && n < min
        {
            v.add(
                format!("{path}.{field}"),
                format!("{n} is too small; the minimum is {min}"),
            );
        }
    }
    if kind != "readinessProbe"
        && let Some(n) = p.success_threshold
        && n != 1
    {
        v.add(
            format!("{path}.successThreshold"),
            format!("must be 1 for a {kind} (is {n})"),
        );
    }
}

/// Probes reach the instance's serving port (by number, by its name, or `0`) or, with host
/// networking, another literal port.
fn check_port(v: &mut Errors, path: &str, port: &IntOrString, own: &(Option<i32>, Option<String>)) {
    match port {
        IntOrString::Int(p) if !(0..=65535).contains(p) => {
            v.add(path, format!("{p} is out of range 0-65535"));
        }
        IntOrString::Int(_) => {}
        IntOrString::String(name) if own.1.as_deref() == Some(name.as_str()) => {}
        IntOrString::String(name) => v.add(
            path,
            format!(
                "{name:?} is not the name of the container's port; use the port number or omit it"
            ),
        ),
    }
}
