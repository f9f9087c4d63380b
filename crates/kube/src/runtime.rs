//! [`Runtime`] on a cluster: a revision's instances are the pods of its Deployment.
//!
//! - `set_desired` makes the Deployment and Service on first use (from the Revision, which is
//!   read once: it is immutable) and afterwards only sets the Deployment's scale subresource,
//!   so the replica count is the autoscaler's alone.
//! - `status` answers from watch caches of the revisions' Deployments and pods: ready replicas,
//!   and a failure as Knative reports it (`ImagePullBackOff`, `ExitCode1`, `OOMKilled`,
//!   `Unschedulable`, with the pod's message).
//! - Every change to a revision's Deployment or pods is a [`RuntimeEvent`].
//! - `remove` deletes both and waits until the pods are gone (the Revision's finalizer waits
//!   for it).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use nimbus_api::constants::LABEL_REVISION;
use nimbus_api::{Kind, Revision};
use nimbus_runtime::{
    EndpointRegistry, InstanceSpec, RevisionKey, RevisionPhase, RevisionRuntimeStatus, Runtime,
    RuntimeError, RuntimeEvent,
};
use tokio::sync::broadcast;

use crate::resources::{api_resource, from_dynamic};
use crate::workload::{self, deployment_name};

/// Field manager of the scale changes.
const SCALER: &str = "nimbus-autoscaler";
/// How long `remove` waits for a revision's pods to go.
const REMOVE_PATIENCE: Duration = Duration::from_secs(120);

/// Revisions as Deployments.
pub struct KubeRuntime {
    client: kube::Client,
    deployments: Store<Deployment>,
    pods: Store<Pod>,
    /// Revisions whose Deployment and Service this process has made sure of.
    ensured: Mutex<HashSet<RevisionKey>>,
    ever_ready: Mutex<HashSet<RevisionKey>>,
    events: broadcast::Sender<RuntimeEvent>,
    endpoints: EndpointRegistry,
}

impl KubeRuntime {
    /// Start watching the revisions' Deployments and pods (in every namespace).
    pub fn start(client: kube::Client) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        let config = watcher::Config::default().labels(LABEL_REVISION);
        let (deployments, d_writer) = reflector::store();
        let (pods, p_writer) = reflector::store();
        let runtime = Arc::new(Self {
            client: client.clone(),
            deployments,
            pods,
            ensured: Mutex::default(),
            ever_ready: Mutex::default(),
            events: events.clone(),
            endpoints: EndpointRegistry::new(),
        });
        let d_api: Api<Deployment> = Api::all(client.clone());
        let p_api: Api<Pod> = Api::all(client);
        tokio::spawn(follow(
            reflector::reflector(d_writer, watcher(d_api, config.clone()).default_backoff()),
            events.clone(),
        ));
        tokio::spawn(follow(
            reflector::reflector(p_writer, watcher(p_api, config).default_backoff()),
            events,
        ));
        runtime
    }

    /// Wait until both caches have listed once.
    pub async fn ready(&self) {
        let _ = self.deployments.wait_until_ready().await;
        let _ = self.pods.wait_until_ready().await;
    }

    async fn ensure(&self, key: &RevisionKey, replicas: u32) -> Result<bool, RuntimeError> {
        if self.lock_ensured().contains(key) {
            return Ok(false);
        }
        let rev = self.revision(key).await?;
        let ns = &key.namespace;
        let services: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        create_unless_exists(&services, &workload::service(&rev), key).await?;
        let created =
            create_unless_exists(&deployments, &workload::deployment(&rev, replicas), key).await?;
        self.lock_ensured().insert(key.clone());
        Ok(created)
    }

    async fn revision(&self, key: &RevisionKey) -> Result<Revision, RuntimeError> {
        let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            &key.namespace,
            &api_resource(Kind::Revision),
        );
        let found = api.get(&key.name).await.map_err(|e| invalid(key, e))?;
        match from_dynamic(Kind::Revision, found).map_err(|e| invalid(key, e))? {
            nimbus_api::Object::Revision(r) => Ok(r),
            _ => unreachable!("read a Revision"),
        }
    }

    fn deployment(&self, key: &RevisionKey) -> Option<Arc<Deployment>> {
        self.deployments
            .get(&ObjectRef::new(&deployment_name(&key.name)).within(&key.namespace))
    }

    fn pods_of(&self, key: &RevisionKey) -> Vec<Arc<Pod>> {
        self.pods
            .state()
            .into_iter()
            .filter(|p| {
                p.metadata.namespace.as_deref() == Some(&key.namespace)
                    && p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_REVISION))
                        .is_some_and(|r| *r == key.name)
            })
            .collect()
    }

    fn lock_ensured(&self) -> std::sync::MutexGuard<'_, HashSet<RevisionKey>> {
        self.ensured.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Create `obj` unless an object of its name exists; whether it was created.
async fn create_unless_exists<K>(
    api: &Api<K>,
    obj: &K,
    key: &RevisionKey,
) -> Result<bool, RuntimeError>
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(invalid(key, e)),
    }
}

fn invalid(key: &RevisionKey, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::InvalidSpec {
        revision: key.clone(),
        message: e.to_string(),
    }
}

/// Drive a reflector, sending the revision of every changed object as an event.
async fn follow<K, S>(stream: S, events: broadcast::Sender<RuntimeEvent>)
where
    K: kube::Resource + Clone,
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream.applied_objects());
    while let Some(item) = stream.next().await {
        let Ok(obj) = item else { continue };
        let meta = obj.meta();
        if let (Some(ns), Some(rev)) = (
            meta.namespace.clone(),
            meta.labels
                .as_ref()
                .and_then(|l| l.get(LABEL_REVISION))
                .cloned(),
        ) {
            let _ = events.send(RuntimeEvent {
                revision: RevisionKey::new(ns, rev),
            });
        }
    }
}

#[async_trait]
impl Runtime for KubeRuntime {
    /// A task attempt as a `batch/v1` Job (see [`crate::tasks`]).
    async fn run_task(
        &self,
        spec: &InstanceSpec,
        task: nimbus_runtime::TaskRun,
    ) -> nimbus_runtime::TaskOutcome {
        crate::tasks::run(self.client.clone(), spec, task).await
    }

    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        let key = &spec.revision;
        if self.ensure(key, replicas).await? {
            return Ok(()); // created at that scale
        }
        let current = self
            .deployment(key)
            .and_then(|d| d.spec.replicas)
            .map(|r| r.max(0) as u32);
        if current == Some(replicas) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        api.patch_scale(
            &deployment_name(&key.name),
            &PatchParams::apply(SCALER),
            &Patch::Merge(&patch),
        )
        .await
        .map_err(|e| invalid(key, e))?;
        Ok(())
    }

    async fn remove(&self, revision: &RevisionKey) {
        self.lock_ensured().remove(revision);
        let ns = &revision.namespace;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        let services: Api<Service> = Api::namespaced(self.client.clone(), ns);
        let params = DeleteParams::background();
        let _ = deployments
            .delete(&deployment_name(&revision.name), &params)
            .await;
        let _ = services.delete(&revision.name, &params).await;
        let deadline = tokio::time::Instant::now() + REMOVE_PATIENCE;
        while !self.pods_of(revision).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        let deployment = self.deployment(revision)?;
        let status = deployment.status.clone().unwrap_or_default();
        let desired = deployment.spec.replicas.unwrap_or(0).max(0) as u32;
        let ready = status.ready_replicas.unwrap_or(0).max(0) as u32;
        let mut ever = self.ever_ready.lock().unwrap_or_else(|p| p.into_inner());
        if ready > 0 {
            ever.insert(revision.clone());
        }
        let pods = self.pods_of(revision);
        let failure = pod_failure(&pods);
        let phase = match (ready, failure) {
            (r, _) if r > 0 => RevisionPhase::Ready,
            (_, Some((reason, message))) => RevisionPhase::Failed { reason, message },
            // At zero after having run: nothing to wait for.
            _ if desired == 0 && pods.is_empty() && ever.contains(revision) => RevisionPhase::Ready,
            _ => RevisionPhase::Starting,
        };
        Some(RevisionRuntimeStatus {
            phase,
            desired,
            actual: status.replicas.unwrap_or(0).max(0) as u32,
            ready,
            ever_ready: ever.contains(revision),
        })
    }

    fn subscribe(&self) -> broadcast::Receiver<RuntimeEvent> {
        self.events.subscribe()
    }

    fn endpoints(&self) -> EndpointRegistry {
        self.endpoints.clone()
    }

    async fn shutdown(&self) {
        // The pods belong to the cluster, not to this process: they keep running.
    }
}

/// Why the revision's pods cannot become ready, as Knative's revision reconciler says it:
/// a container waiting on its image, one that exited and was restarted (its last termination:
/// `ExitCode<N>`, `OOMKilled`), or a pod that cannot be scheduled. Pods being deleted are
/// not looked at: their containers exit because they were told to.
pub fn pod_failure(pods: &[Arc<Pod>]) -> Option<(String, String)> {
    const IMAGE: [&str; 5] = [
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
    ];
    let mut found = None;
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let status = pod.status.clone().unwrap_or_default();
        for c in status.container_statuses.iter().flatten() {
            let waiting = c.state.as_ref().and_then(|s| s.waiting.as_ref());
            if let Some(w) = waiting
                && w.reason.as_deref().is_some_and(|r| IMAGE.contains(&r))
            {
                return Some((
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                ));
            }
            let terminated = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
            if let Some(t) = terminated {
                let reason = match t.reason.as_deref() {
                    Some("OOMKilled") => "OOMKilled".to_string(),
                    _ => format!("ExitCode{}", t.exit_code),
                };
                let message = t.message.clone().unwrap_or_else(|| {
                    format!("Container {} exited with code {}", c.name, t.exit_code)
                });
                found.get_or_insert((reason, message));
            }
        }
        for cond in status.conditions.iter().flatten() {
            if cond.type_ == "PodScheduled"
                && cond.status == "False"
                && cond.reason.as_deref() == Some("Unschedulable")
            {
                found.get_or_insert((
                    "Unschedulable".into(),
                    cond.message.clone().unwrap_or_default(),
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(status: serde_json::Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": "p"}, "status": status}),
            )
            .unwrap(),
        )
    }

    #[test]
    fn pod_failures_read_as_knative_reports_them() {
        let pull = pod(
            serde_json::json!({"containerStatuses": [{"name": "user-container", "image": "x",
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"x\""}}}]}),
        );
        assert_eq!(
            pod_failure(&[pull]),
            Some((
                "ImagePullBackOff".into(),
                "Back-off pulling image \"x\"".into()
            ))
        );
        let crash = pod(
            serde_json::json!({"containerStatuses": [{"name": "user-container", "image": "x",
            "imageID": "", "ready": false, "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}),
        );
        assert_eq!(pod_failure(&[crash]).unwrap().0, "ExitCode1");
        let oom = pod(
            serde_json::json!({"containerStatuses": [{"name": "c", "image": "x",
            "imageID": "", "ready": false, "restartCount": 1,
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}),
        );
        assert_eq!(pod_failure(&[oom]).unwrap().0, "OOMKilled");
        let pending = pod(
            serde_json::json!({"conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/1 nodes are available"}]}),
        );
        assert_eq!(pod_failure(&[pending]).unwrap().0, "Unschedulable");
        assert_eq!(pod_failure(&[pod(serde_json::json!({}))]), None);
        let stopping: Arc<Pod> = Arc::new(
            serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "deletionTimestamp": "2026-12-07T06:09:31Z"},
            "status": {"containerStatuses": [{"name": "c", "image": "x", "imageID": "",
                "ready": false, "restartCount": 0,
                "lastState": {"terminated": {"exitCode": 2, "reason": "Error"}}}]}}))
            .unwrap(),
        );
        assert_eq!(
            pod_failure(&[stopping]),
            None,
            "told to stop: not a failure"
        );
    }
}
