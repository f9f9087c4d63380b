//! Validation of `securityContext` (the container's and the pod's) against what the chosen
//! runtime enforces (issue #13): every field a manifest sets is either honoured by that runtime
//! or refused here with its path and the reason, never accepted and ignored. A field this
//! module does not know (a newer Kubernetes API) is refused the same way.
//!
//! What each runtime honours:
//! - **oci** (runc): the user and groups, `runAsNonRoot`, `allowPrivilegeEscalation`,
//!   `capabilities`, `readOnlyRootFilesystem`, `seccompProfile` `RuntimeDefault` or
//!   `Unconfined`, `privileged: false`, `procMount: Default`.
//! - **process** (host programs): the user and groups, `runAsNonRoot`; restrictions it always
//!   applies (`allowPrivilegeEscalation: false`, `capabilities.drop`, `privileged: false`,
//!   `seccompProfile: Unconfined`, which is what a host process has). It cannot grant
//!   capabilities, make the host's file system read-only or filter system calls.
//! - **wasm** (in-process components): no operating-system user or privileges exist, so
//!   restrictions are met by construction and anything that would name a user or grant a
//!   privilege is refused.
//!
//! In Kubernetes mode the fields pass through to the pod unchanged; the kubelet enforces them.

use k8s_openapi::api::core::v1::{Container, PodSecurityContext};
use serde_json::Value;

use super::Errors;
use crate::runtime::Backend;

/// Capability names `capabilities.add` may name (Linux's, as Kubernetes writes them).
pub const CAPABILITIES: &[&str] = &[
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// What the runtime does with one field's value.
enum Verdict {
    Honoured,
    Refused(String),
}
use Verdict::{Honoured, Refused};

/// Check the pod's (`pod_path`, e.g. `spec.template.spec.securityContext`) and the
/// container's (`container_path`) security contexts for `backend`.
pub(super) fn validate_security(
    v: &mut Errors,
    pod_path: &str,
    pod: Option<&PodSecurityContext>,
    container_path: &str,
    container: &Container,
    backend: Backend,
) {
    if let Some(pod) = pod {
        check_fields(v, pod_path, pod, |field, value| {
            pod_field(field, value, backend)
        });
    }
    if let Some(sc) = &container.security_context {
        check_fields(v, container_path, sc, |field, value| {
            container_field(field, value, backend)
        });
    }
}

/// Apply `verdict` to every field `context` sets (k8s-openapi serializes only the set ones).
fn check_fields<T: serde::Serialize>(
    v: &mut Errors,
    path: &str,
    context: &T,
    verdict: impl Fn(&str, &Value) -> Verdict,
) {
    let Ok(Value::Object(fields)) = serde_json::to_value(context) else {
        return;
    };
    for (field, value) in &fields {
        if value.is_null() {
            continue;
        }
        if let Refused(why) = verdict(field, value) {
            v.add(format!("{path}.{field}"), why);
        }
    }
    if let Some(Value::Object(caps)) = fields.get("capabilities") {
        for (i, name) in caps
            .get("add")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let name = name.as_str().unwrap_or_default();
            if !CAPABILITIES.contains(&name.trim_start_matches("CAP_")) {
                v.add(
                    format!("{path}.capabilities.add[{i}]"),
                    format!("{name:?} is not a Linux capability; write it as Kubernetes does, e.g. \"NET_ADMIN\""),
                );
            }
        }
    }
}

fn runtime_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Process => "the process runtime (nimbus.dev/runtime: process)",
        Backend::Oci => "the container runtime",
        Backend::Wasm => "the WebAssembly runtime (nimbus.dev/runtime: wasm)",
    }
}

/// A refusal: `what` cannot be done by `backend`, and what to do instead.
fn cannot(backend: Backend, what: &str, instead: &str) -> Verdict {
    Refused(format!("{} {what}; {instead}", runtime_name(backend)))
}

/// The fields both contexts share.
fn common_field(field: &str, value: &Value, backend: Backend) -> Option<Verdict> {
    Some(match field {
        "runAsUser" | "runAsGroup" if backend == Backend::Wasm => cannot(
            backend,
            "runs components inside the server, where there is no operating-system user",
            "remove it",
        ),
        "runAsUser" | "runAsGroup" | "runAsNonRoot" => Honoured,
        "seccompProfile" => seccomp(value, backend),
        "seLinuxOptions" | "appArmorProfile" | "windowsOptions" => cannot(
            backend,
            "does not apply SELinux, AppArmor or Windows options",
            "remove it (in Kubernetes mode the kubelet applies it)",
        ),
        _ => return None,
    })
}

fn pod_field(field: &str, value: &Value, backend: Backend) -> Verdict {
    if let Some(verdict) = common_field(field, value, backend) {
        return verdict;
    }
    match field {
        "supplementalGroups" if backend == Backend::Wasm => cannot(
            backend,
            "runs components inside the server, where there are no groups",
            "remove it",
        ),
        "supplementalGroups" => Honoured,
        "supplementalGroupsPolicy" if value == "Merge" => Honoured,
        "fsGroup" | "fsGroupChangePolicy" => cannot(
            backend,
            "does not change the group of volume files",
            "remove it and make the files readable with the volume's defaultMode or items[].mode",
        ),
        "sysctls" => cannot(
            backend,
            "does not set namespaced sysctls",
            "remove it (in Kubernetes mode the kubelet sets them)",
        ),
        _ => unknown(field),
    }
}

fn container_field(field: &str, value: &Value, backend: Backend) -> Verdict {
    if let Some(verdict) = common_field(field, value, backend) {
        return verdict;
    }
    let is = |expected: bool| value.as_bool() == Some(expected);
    match (field, backend) {
        ("privileged", _) if is(false) => Honoured,
        ("privileged", _) => cannot(
            backend,
            "never runs privileged instances",
            "remove it, or set it to false",
        ),
        ("allowPrivilegeEscalation", Backend::Oci) => Honoured,
        ("allowPrivilegeEscalation", _) if is(false) => Honoured,
        ("allowPrivilegeEscalation", _) => cannot(
            backend,
            "always runs programs with no-new-privileges (a setuid binary on the host must not \
             make function code root)",
            "remove it, or run the program from an image (the oci runtime)",
        ),
        ("capabilities", Backend::Oci) => Honoured,
        ("capabilities", _)
            if value
                .get("add")
                .is_none_or(|a| a.as_array().is_some_and(Vec::is_empty)) =>
        {
            Honoured
        }
        ("capabilities", _) => cannot(
            backend,
            "grants no capabilities (host programs run without any)",
            "remove capabilities.add, or run the program from an image (the oci runtime)",
        ),
        ("readOnlyRootFilesystem", Backend::Oci) => Honoured,
        ("readOnlyRootFilesystem", Backend::Wasm) => Honoured, // components see no root file system
        ("readOnlyRootFilesystem", _) if is(false) => Honoured,
        ("readOnlyRootFilesystem", _) => cannot(
            backend,
            "runs programs on the host's file system, which it cannot make read-only",
            "remove it, or run the program from an image (the oci runtime)",
        ),
        ("procMount", _) if value == "Default" => Honoured,
        ("procMount", _) => cannot(
            backend,
            "mounts /proc only with its default masks",
            "remove it, or use \"Default\"",
        ),
        _ => unknown(field),
    }
}

fn seccomp(value: &Value, backend: Backend) -> Verdict {
    match (value.get("type").and_then(Value::as_str), backend) {
        (Some("RuntimeDefault" | "Unconfined"), Backend::Oci) => Honoured,
        // A component makes no system calls of its own.
        (Some("RuntimeDefault" | "Unconfined"), Backend::Wasm) => Honoured,
        (Some("Unconfined"), Backend::Process) => Honoured,
        (Some("RuntimeDefault"), Backend::Process) => cannot(
            backend,
            "does not filter the system calls of host programs",
            "remove it, or run the program from an image (the oci runtime applies the default \
             profile)",
        ),
        (Some("Localhost"), _) => cannot(
            backend,
            "has no profiles on the node (Localhost)",
            "use \"RuntimeDefault\" or \"Unconfined\"",
        ),
        (other, _) => Refused(format!(
            "type {other:?} is not a seccomp profile type; use \"RuntimeDefault\" or \"Unconfined\""
        )),
    }
}

fn unknown(field: &str) -> Verdict {
    Refused(format!(
        "{field} is not a securityContext field Nimbus enforces; remove it (in Kubernetes mode \
         the kubelet handles it)"
    ))
}
