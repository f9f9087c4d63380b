//! The operator's and the router's permissions: a ServiceAccount, a ClusterRole and its
//! ClusterRoleBinding each, and the operator's Role for leader-election Leases in
//! `nimbus-system`.
//!
//! - Operator: every verb on the six Nimbus kinds with their `status` and `finalizers`
//!   subresources; Deployments (and `deployments/scale`) and Services it owns per revision;
//!   batch Jobs, one per attempt of a task of an Execution;
//!   Pods, EndpointSlices, ConfigMaps and Secrets to read; CRDs to get (whether KEDA's and
//!   the event sources' kinds are Nimbus's to run); Events to report with.
//! - Router: Ingresses to read and their `status` to write; Revisions, EndpointSlices,
//!   Services and Pods to read.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use nimbus_api::Kind;

use super::{Manifest, NAMESPACE, OPERATOR, ROUTER, meta};

/// Read access.
const READ: &[&str] = &["get", "list", "watch"];
/// Everything a controller does to objects it owns.
const WRITE: &[&str] = &[
    "get", "list", "watch", "create", "update", "patch", "delete",
];
/// A subresource written with `replace` or a patch.
const SUBRESOURCE: &[&str] = &["get", "update", "patch"];

/// Both components' ServiceAccounts, ClusterRoles and bindings, and the operator's Lease Role.
pub(super) fn manifests() -> Vec<Manifest> {
    let mut out = Vec::new();
    for (name, rules) in [(OPERATOR, operator_rules()), (ROUTER, router_rules())] {
        out.push(Manifest::of(&service_account(name)));
        out.push(Manifest::of(&cluster_role(name, rules)));
        out.push(Manifest::of(&cluster_role_binding(name)));
    }
    out.push(Manifest::of(&lease_role()));
    out.push(Manifest::of(&lease_role_binding()));
    out
}

/// What the operator may do cluster-wide.
pub fn operator_rules() -> Vec<PolicyRule> {
    let mut rules = Vec::new();
    for group in Kind::groups() {
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| k.group() == group)
            .collect();
        let plurals: Vec<String> = kinds.iter().map(|k| k.plural().to_string()).collect();
        let subresources: Vec<String> = kinds
            .iter()
            .flat_map(|k| ["status", "finalizers"].map(|s| format!("{}/{s}", k.plural())))
            .collect();
        rules.push(rule(group, &plurals, WRITE));
        rules.push(rule(group, &subresources, SUBRESOURCE));
    }
    rules.extend([
        rule("apps", &["deployments"], WRITE),
        rule("apps", &["deployments/scale"], SUBRESOURCE),
        // A Job's task attempts (see `crate::tasks`).
        rule("batch", &["jobs"], WRITE),
        rule("", &["services"], WRITE),
        rule("", &["pods", "configmaps", "secrets"], READ),
        rule("discovery.k8s.io", &["endpointslices"], READ),
        // Which optional kinds are Nimbus's to run (KEDA's, the event sources').
        rule(
            "apiextensions.k8s.io",
            &["customresourcedefinitions"],
            &["get"],
        ),
        rule(
            "",
            &["events"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule(
            "events.k8s.io",
            &["events"],
            &["get", "list", "watch", "create", "patch"],
        ),
    ]);
    rules
}

/// What the router may do cluster-wide.
pub fn router_rules() -> Vec<PolicyRule> {
    let ingresses = Kind::Ingress.plural();
    vec![
        rule(Kind::Ingress.group(), &[ingresses], READ),
        rule(
            Kind::Ingress.group(),
            &[format!("{ingresses}/status")],
            SUBRESOURCE,
        ),
        rule(Kind::Revision.group(), &[Kind::Revision.plural()], READ),
        rule("discovery.k8s.io", &["endpointslices"], READ),
        rule("", &["services", "pods"], READ),
    ]
}

/// The operator's leader election: Leases in its own namespace.
fn lease_rules() -> Vec<PolicyRule> {
    vec![rule("coordination.k8s.io", &["leases"], WRITE)]
}

fn rule(group: &str, resources: &[impl AsRef<str>], verbs: &[&str]) -> PolicyRule {
    let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(resources.iter().map(|r| r.as_ref().to_string()).collect()),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

fn component(name: &str) -> &str {
    name.strip_prefix("nimbus-").unwrap_or(name)
}

fn service_account(name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(name, true, Some(component(name))),
        ..ServiceAccount::default()
    }
}

fn cluster_role(name: &str, rules: Vec<PolicyRule>) -> ClusterRole {
    ClusterRole {
        metadata: meta(name, false, Some(component(name))),
        rules: Some(rules),
        ..ClusterRole::default()
    }
}

fn cluster_role_binding(name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(name, false, Some(component(name))),
        role_ref: role_ref("ClusterRole", name),
        subjects: Some(vec![subject(name)]),
    }
}

fn lease_role() -> Role {
    Role {
        metadata: meta(OPERATOR, true, Some(component(OPERATOR))),
        rules: Some(lease_rules()),
    }
}

fn lease_role_binding() -> RoleBinding {
    RoleBinding {
        metadata: meta(OPERATOR, true, Some(component(OPERATOR))),
        role_ref: role_ref("Role", OPERATOR),
        subjects: Some(vec![subject(OPERATOR)]),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".to_string()),
        kind: kind.to_string(),
        name: name.to_string(),
    }
}

fn subject(service_account: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".to_string(),
        name: service_account.to_string(),
        namespace: Some(NAMESPACE.to_string()),
        ..Subject::default()
    }
}

#[cfg(test)]
#[path = "rbac_tests.rs"]
mod tests;
