//! [`Resources`] over a Kubernetes API server: the controller's reads and writes as kube-rs
//! requests against Nimbus's custom resources.
//!
//! - Objects travel as [`DynamicObject`]s of the kind's group, version and plural, converted
//!   from and to `nimbus_api::Object` through JSON. On read, Knative's defaults are applied (on
//!   a Knative cluster the defaulting webhook does that on write; Nimbus installs no webhook).
//! - `apply` is server-side apply with `force` under the given field manager; `replace` and
//!   `replace_status` carry the object's resourceVersion; `delete` carries a uid precondition
//!   and background propagation (the cluster's garbage collector deletes what it owned).
//! - `watch` is one kube-rs watcher per kind, merged. A watcher lists on start and after its
//!   watch expires (410 Gone), replaying objects the caller may already have seen; reconcilers
//!   are idempotent, so a repeated key costs one no-op reconcile. The resourceVersion passed
//!   in is therefore not needed: a Kubernetes watch cannot be resumed across kinds from one.

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
    Preconditions, PropagationPolicy,
};
use kube::runtime::watcher;
use nimbus_api::{Kind, Object};
use nimbus_controller::{Change, Listed, ResourceError, Resources, Selector};

/// [`Resources`] over a kube-rs client.
#[derive(Clone)]
pub struct KubeResources {
    client: kube::Client,
}

impl KubeResources {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn api(&self, kind: Kind, namespace: Option<&str>) -> Api<DynamicObject> {
        let resource = api_resource(kind);
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }
}

/// The custom resource of a kind, as kube-rs addresses it.
pub fn api_resource(kind: Kind) -> ApiResource {
    ApiResource {
        group: kind.group().to_string(),
        version: kind.version().to_string(),
        api_version: kind.api_version().to_string(),
        kind: kind.as_str().to_string(),
        plural: kind.plural().to_string(),
    }
}

#[async_trait]
impl Resources for KubeResources {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, ResourceError> {
        let found = self
            .api(kind, Some(namespace))
            .get_opt(name)
            .await
            .map_err(convert)?;
        found.map(|o| from_dynamic(kind, o)).transpose()
    }

    async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Selector<'_>,
    ) -> Result<Listed, ResourceError> {
        let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let params = ListParams::default().labels(&labels.join(","));
        let list = self
            .api(kind, namespace)
            .list(&params)
            .await
            .map_err(convert)?;
        let resource_version = list
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let items = list
            .items
            .into_iter()
            .map(|o| from_dynamic(kind, o))
            .collect::<Result<_, _>>()?;
        Ok(Listed {
            items,
            resource_version,
        })
    }

    async fn create(&self, obj: Object) -> Result<Object, ResourceError> {
        let kind = obj.kind();
        let api = self.api(kind, Some(obj.namespace()));
        let created = api
            .create(&PostParams::default(), &to_dynamic(&obj)?)
            .await
            .map_err(convert)?;
        from_dynamic(kind, created)
    }

    async fn apply(&self, obj: Object, manager: &str) -> Result<Object, ResourceError> {
        let kind = obj.kind();
        let mut body = obj.to_json();
        if let Some(map) = body.as_object_mut() {
            map.remove("status");
            if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for owned_by_server in ["resourceVersion", "uid", "managedFields", "generation"] {
                    meta.remove(owned_by_server);
                }
            }
        }
        let params = PatchParams::apply(manager).force();
        let applied = self
            .api(kind, Some(obj.namespace()))
            .patch(obj.name(), &params, &Patch::Apply(&body))
            .await
            .map_err(convert)?;
        from_dynamic(kind, applied)
    }

    async fn replace_meta(&self, obj: Object) -> Result<Object, ResourceError> {
        let kind = obj.kind();
        let patch = meta_patch(&obj)?;
        let patched = self
            .api(kind, Some(obj.namespace()))
            .patch(
                obj.name(),
                &PatchParams::default(),
                &Patch::Json::<()>(patch),
            )
            .await
            .map_err(convert)?;
        from_dynamic(kind, patched)
    }

    async fn replace_status(&self, obj: Object) -> Result<Object, ResourceError> {
        let kind = obj.kind();
        let replaced = self
            .api(kind, Some(obj.namespace()))
            .replace_status(obj.name(), &PostParams::default(), &to_dynamic(&obj)?)
            .await
            .map_err(convert)?;
        from_dynamic(kind, replaced)
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ResourceError> {
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match self.api(kind, Some(namespace)).delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(e) => match convert(e) {
                ResourceError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    fn watch(
        &self,
        kinds: &[Kind],
        _from: u64,
    ) -> BoxStream<'static, Result<Change, ResourceError>> {
        let streams = kinds.iter().map(|&kind| {
            let api = self.api(kind, None);
            watcher(api, watcher::Config::default())
                .filter_map(move |event| async move { change(kind, event) })
                .boxed()
        });
        futures::stream::select_all(streams).boxed()
    }
}

/// A watcher event as a [`Change`]; `None` for the markers around a (re)list. A watcher
/// error is transient (the watcher retries); it is logged, not passed on, so the caller does
/// not list again on top of the watcher's own recovery.
fn change(
    kind: Kind,
    event: Result<watcher::Event<DynamicObject>, watcher::Error>,
) -> Option<Result<Change, ResourceError>> {
    let (deleted, obj) = match event {
        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => (false, o),
        Ok(watcher::Event::Delete(o)) => (true, o),
        Ok(watcher::Event::Init | watcher::Event::InitDone) => return None,
        Err(e) => {
            tracing::warn!(%kind, error = %e, "watch failed; the watcher retries");
            return None;
        }
    };
    let resource_version = obj
        .metadata
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some(from_dynamic(kind, obj).map(|object| Change {
        deleted,
        object,
        resource_version,
    }))
}

/// A JSON patch (RFC 6902) setting the metadata [`Resources::replace_meta`] owns, guarded by
/// the object's resourceVersion: a patch that names a resourceVersion other than the stored
/// one is refused by the API server as a conflict. Nothing else is sent, so the stored spec
/// (as the user wrote it, without the defaults applied on read) stays byte for byte.
fn meta_patch(obj: &Object) -> Result<json_patch::Patch, ResourceError> {
    let meta = obj.metadata();
    let Some(version) = &meta.resource_version else {
        return Err(ResourceError::Invalid(format!(
            "{} {}/{}: a metadata write needs the resourceVersion it was read at",
            obj.kind(),
            obj.namespace(),
            obj.name()
        )));
    };
    let ops = serde_json::json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
        {"op": "add", "path": "/metadata/labels", "value": meta.labels.clone().unwrap_or_default()},
        {"op": "add", "path": "/metadata/annotations", "value": meta.annotations.clone().unwrap_or_default()},
        {"op": "add", "path": "/metadata/finalizers", "value": meta.finalizers.clone().unwrap_or_default()},
        {"op": "add", "path": "/metadata/ownerReferences", "value": meta.owner_references.clone().unwrap_or_default()},
    ]);
    serde_json::from_value(ops).map_err(|e| ResourceError::Invalid(e.to_string()))
}

/// A Nimbus object as kube-rs sends it.
fn to_dynamic(obj: &Object) -> Result<DynamicObject, ResourceError> {
    let mut obj = obj.clone();
    obj.set_type_meta();
    serde_json::from_value(obj.to_json()).map_err(|e| {
        ResourceError::Invalid(format!(
            "{} {}/{} cannot be sent: {e}",
            obj.kind(),
            obj.namespace(),
            obj.name()
        ))
    })
}

/// An object read from the cluster, with Knative's defaults applied.
pub fn from_dynamic(kind: Kind, obj: DynamicObject) -> Result<Object, ResourceError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let value = serde_json::to_value(obj).map_err(|e| ResourceError::Invalid(e.to_string()))?;
    let mut decoded = Object::from_json(kind, value).map_err(|e| {
        ResourceError::Invalid(format!(
            "{kind} {name:?} in the cluster does not decode as Nimbus's {kind}: {e}"
        ))
    })?;
    nimbus_api::defaults::apply_defaults(&mut decoded);
    Ok(decoded)
}

/// A kube-rs error by what the caller should do about it.
fn convert(e: kube::Error) -> ResourceError {
    let kube::Error::Api(status) = &e else {
        return ResourceError::Unavailable(e.to_string());
    };
    let details = status.details.as_ref();
    let kind = details
        .and_then(|d| Kind::ALL.into_iter().find(|k| k.plural() == d.kind))
        .unwrap_or(Kind::Service);
    let name = details.map(|d| d.name.clone()).unwrap_or_default();
    match (status.code, status.reason.as_str()) {
        (404, _) => ResourceError::NotFound {
            kind,
            namespace: String::new(),
            name,
        },
        (409, "AlreadyExists") => ResourceError::AlreadyExists {
            kind,
            namespace: String::new(),
            name,
        },
        (409, _) => ResourceError::Conflict(status.message.clone()),
        (410, _) => ResourceError::Gone(0),
        (400 | 422, _) => ResourceError::Invalid(status.message.clone()),
        _ => ResourceError::Unavailable(status.message.clone()),
    }
}

#[cfg(test)]
#[path = "resources_tests.rs"]
mod tests;
