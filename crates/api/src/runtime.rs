//! Which Nimbus backend runs a revision, kept apart from Kubernetes' `runtimeClassName`.
//!
//! On a cluster `runtimeClassName` names a Kubernetes RuntimeClass (gVisor, Kata, ...) and is
//! passed to the pod unchanged. Nimbus's own backend choice is the annotation
//! `nimbus.dev/runtime` on the revision template (`process`, `oci`, `wasm`). For manifests
//! written before that annotation existed, a `runtimeClassName` of `process`, `oci` or `wasm`
//! still selects that backend. Anything else in `runtimeClassName` is a real RuntimeClass: on a
//! cluster the kubelet honours it; in embedded mode no RuntimeClass exists, so the revision
//! reports `RuntimeClassUnavailable` (as a pod whose RuntimeClass is missing fails).

use std::collections::BTreeMap;

use crate::constants::{ANNOTATION_RUNTIME, RUNTIME_OCI, RUNTIME_PROCESS, RUNTIME_WASM};
use crate::serving::RevisionSpec;

/// A Nimbus backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A host process (`command` + `args`).
    Process,
    /// An OCI image under runc (the default, as in Knative).
    Oci,
    /// A WebAssembly component.
    Wasm,
}

impl Backend {
    pub const ALL: [Backend; 3] = [Backend::Process, Backend::Oci, Backend::Wasm];

    /// `process`, `oci`, `wasm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Process => RUNTIME_PROCESS,
            Backend::Oci => RUNTIME_OCI,
            Backend::Wasm => RUNTIME_WASM,
        }
    }

    /// The backend a name selects, if it is one of Nimbus's.
    pub fn parse(name: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.as_str() == name)
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a revision is to be run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeChoice {
    pub backend: Backend,
    /// A Kubernetes RuntimeClass the pod must run under (`runtimeClassName` that is not one of
    /// the legacy backend names).
    pub runtime_class: Option<String>,
}

/// The backend and RuntimeClass of a revision (template) with these annotations and spec.
/// Validation has already refused an unknown `nimbus.dev/runtime` value.
pub fn runtime_choice(
    annotations: Option<&BTreeMap<String, String>>,
    spec: &RevisionSpec,
) -> RuntimeChoice {
    let annotated = annotations
        .and_then(|a| a.get(ANNOTATION_RUNTIME))
        .and_then(|v| Backend::parse(v));
    let class = spec.runtime_class_name.as_deref();
    let legacy = class.and_then(Backend::parse);
    RuntimeChoice {
        backend: annotated.or(legacy).unwrap_or(Backend::Oci),
        runtime_class: class.filter(|_| legacy.is_none()).map(str::to_string),
    }
}

/// Knative's runtime contract env of a revision's instances, the same in every runtime and
/// both modes: `K_SERVICE`, `K_CONFIGURATION` (empty when the revision has no such owner) and
/// `K_REVISION`, in that order. Runtimes add `PORT`, which they choose.
pub fn contract_env(rev: &crate::Revision) -> [(&'static str, String); 3] {
    let label = |key: &str| {
        rev.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default()
    };
    [
        ("K_SERVICE", label(crate::constants::LABEL_SERVICE)),
        (
            "K_CONFIGURATION",
            label(crate::constants::LABEL_CONFIGURATION),
        ),
        ("K_REVISION", rev.name().to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(annotation: Option<&str>, class: Option<&str>) -> RuntimeChoice {
        let annotations =
            annotation.map(|v| BTreeMap::from([(ANNOTATION_RUNTIME.into(), v.into())]));
        let spec = RevisionSpec {
            runtime_class_name: class.map(str::to_string),
            ..Default::default()
        };
        runtime_choice(annotations.as_ref(), &spec)
    }

    #[test]
    fn the_annotation_chooses_and_runtime_class_keeps_its_kubernetes_meaning() {
        let c = choice(Some("wasm"), Some("gvisor"));
        assert_eq!(c.backend, Backend::Wasm);
        assert_eq!(c.runtime_class.as_deref(), Some("gvisor"));
        let c = choice(None, Some("kata"));
        assert_eq!(
            (c.backend, c.runtime_class.as_deref()),
            (Backend::Oci, Some("kata"))
        );
        assert_eq!(choice(None, None).backend, Backend::Oci);
    }

    #[test]
    fn legacy_runtime_class_names_still_select_a_backend() {
        for b in Backend::ALL {
            let c = choice(None, Some(b.as_str()));
            assert_eq!((c.backend, c.runtime_class), (b, None));
        }
        let c = choice(Some("oci"), Some("process"));
        assert_eq!(c.backend, Backend::Oci, "the annotation wins");
    }
}
