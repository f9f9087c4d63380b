//! Reconciler tests against the in-memory store, a fake runtime and a recording ingress.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::networking::Ingress;
use nimbus_api::parse::parse_manifests;
use nimbus_api::{Kind, Object};
use nimbus_runtime::*;
use nimbus_store::Store;

use crate::*;

#[derive(Default)]
struct FakeRuntime {
    desired: Mutex<HashMap<RevisionKey, u32>>,
    /// Revisions whose instances fail (reason, message).
    failing: Mutex<HashMap<String, (String, String)>>,
    removed: Mutex<Vec<RevisionKey>>,
    endpoints: EndpointRegistry,
    events: std::sync::OnceLock<tokio::sync::broadcast::Sender<RuntimeEvent>>,
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn set_desired(&self, spec: &InstanceSpec, replicas: u32) -> Result<(), RuntimeError> {
        self.desired
            .lock()
            .unwrap()
            .insert(spec.revision.clone(), replicas);
        Ok(())
    }
    async fn remove(&self, revision: &RevisionKey) {
        self.desired.lock().unwrap().remove(revision);
        self.removed.lock().unwrap().push(revision.clone());
    }
    fn status(&self, revision: &RevisionKey) -> Option<RevisionRuntimeStatus> {
        let desired = *self.desired.lock().unwrap().get(revision)?;
        let phase = match self.failing.lock().unwrap().get(&revision.name) {
            Some((r, m)) => RevisionPhase::Failed {
                reason: r.clone(),
                message: m.clone(),
            },
            None => RevisionPhase::Ready,
        };
        let ready = if matches!(phase, RevisionPhase::Ready) {
            desired
        } else {
            0
        };
        Some(RevisionRuntimeStatus {
            phase,
            desired,
            actual: desired,
            ready,
            ever_ready: ready > 0,
        })
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RuntimeEvent> {
        self.events
            .get_or_init(|| tokio::sync::broadcast::channel(16).0)
            .subscribe()
    }
    fn endpoints(&self) -> EndpointRegistry {
        self.endpoints.clone()
    }
    async fn shutdown(&self) {}
}

struct NoLoad;

impl MetricsSource for NoLoad {
    fn load(&self, _: &RevisionKey) -> Option<RevisionLoad> {
        None
    }
}

#[derive(Default)]
struct RecordingIngress(Mutex<HashMap<(String, String), Ingress>>);

impl IngressSink for RecordingIngress {
    fn apply(&self, ingress: Ingress) {
        self.0
            .lock()
            .unwrap()
            .insert((ingress.namespace.clone(), ingress.name.clone()), ingress);
    }
    fn remove(&self, namespace: &str, name: &str) {
        self.0
            .lock()
            .unwrap()
            .remove(&(namespace.to_string(), name.to_string()));
    }
}

struct Harness {
    store: Arc<Store>,
    runtime: Arc<FakeRuntime>,
    ingress: Arc<RecordingIngress>,
    controller: Controller,
}

fn harness() -> Harness {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let runtime = Arc::new(FakeRuntime::default());
    let ingress = Arc::new(RecordingIngress::default());
    let runtimes: HashMap<String, Arc<dyn Runtime>> =
        [("process".to_string(), runtime.clone() as Arc<dyn Runtime>)].into();
    let ctx = Context::new(
        Arc::new(StoreResources(store.clone())),
        runtimes,
        ingress.clone(),
        ControllerConfig {
            domain: "localhost".into(),
            url_port: Some(8080),
        },
        Scaler::new(Arc::new(NoLoad), ScalerConfig::default()),
    );
    Harness {
        store,
        runtime,
        ingress,
        controller: Controller::new(ctx),
    }
}

fn svc_yaml(name: &str, env: &str, extra: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n  labels: {{team: a}}\nspec:\n  template:\n    spec:\n      runtimeClassName: process\n      containers:\n        - command: [/bin/hello]\n          env: [{{name: TARGET, value: \"{env}\"}}]\n{extra}"
    )
}

impl Harness {
    async fn apply(&self, yaml: &str) {
        let obj = parse_manifests("t", yaml).unwrap().remove(0);
        match self
            .store
            .get(obj.kind(), obj.namespace(), obj.name())
            .unwrap()
        {
            Some(_) => self.store.update(obj).unwrap(),
            None => self.store.create(obj).unwrap(),
        };
        self.controller.settle(500).await.unwrap();
    }

    fn get(&self, kind: Kind, name: &str) -> Object {
        self.store.must_get(kind, "default", name).unwrap()
    }

    fn service(&self, name: &str) -> nimbus_api::Service {
        match self.get(Kind::Service, name) {
            Object::Service(s) => s,
            _ => unreachable!(),
        }
    }

    fn revisions(&self) -> Vec<String> {
        self.store
            .list(Kind::Revision, None)
            .unwrap()
            .items
            .iter()
            .map(|o| o.name().to_string())
            .collect()
    }
}

fn ready(conditions: &[nimbus_api::Condition]) -> ConditionStatus {
    get_condition(conditions, "Ready")
        .map(|c| c.status)
        .unwrap_or_default()
}

#[tokio::test]
async fn service_creates_configuration_route_revision_and_becomes_ready() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    let svc = h.service("hello");
    let status = svc.status.unwrap();
    assert_eq!(
        ready(&status.conditions),
        ConditionStatus::True,
        "{:#?}",
        status.conditions
    );
    assert_eq!(
        status.url.as_deref(),
        Some("http://hello.default.localhost:8080")
    );
    assert_eq!(
        status.latest_created_revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(
        status.latest_ready_revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.traffic[0].revision_name.as_deref(),
        Some("hello-00001")
    );
    assert_eq!(status.traffic[0].latest_revision, Some(true));
    // labels propagate
    let rev = h.get(Kind::Revision, "hello-00001");
    let labels = rev.metadata().labels.clone().unwrap();
    assert_eq!(labels["serving.knative.dev/service"], "hello");
    assert_eq!(labels["serving.knative.dev/configuration"], "hello");
    assert_eq!(labels["serving.knative.dev/configurationGeneration"], "1");
    let cfg_labels = h
        .get(Kind::Configuration, "hello")
        .metadata()
        .labels
        .clone()
        .unwrap();
    assert_eq!(cfg_labels["team"], "a");
    // ingress programmed
    let ing = h.ingress.0.lock().unwrap()[&("default".into(), "hello".into())].clone();
    assert_eq!(ing.rules[0].hosts, ["hello.default.localhost"]);
    assert_eq!(ing.rules[0].splits[0].revision, "hello-00001");
    assert_eq!(ing.rules[0].splits[0].percent, 100);
}

#[tokio::test]
async fn template_change_makes_a_new_revision_metadata_change_does_not() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.apply(&svc_yaml("hello", "a", "").replace("team: a", "team: b"))
        .await;
    assert_eq!(h.revisions(), ["hello-00001"]);
    assert_eq!(
        h.get(Kind::Configuration, "hello")
            .metadata()
            .labels
            .clone()
            .unwrap()["team"],
        "b"
    );
    h.apply(&svc_yaml("hello", "b", "")).await;
    assert_eq!(h.revisions(), ["hello-00001", "hello-00002"]);
    let status = h.service("hello").status.unwrap();
    assert_eq!(
        status.latest_ready_revision_name.as_deref(),
        Some("hello-00002")
    );
    // both keep running for now; the old one, unreachable, scales to zero once idle for the
    // stable window plus the grace period (covered by the scaler's paused-time tests)
    let desired = h.runtime.desired.lock().unwrap().clone();
    assert_eq!(desired[&RevisionKey::new("default", "hello-00001")], 1);
    assert_eq!(desired[&RevisionKey::new("default", "hello-00002")], 1);
}

#[tokio::test]
async fn traffic_split_and_tags() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    let split = "  traffic:\n    - revisionName: hello-00001\n      percent: 20\n      tag: old\n    - latestRevision: true\n      percent: 80\n";
    h.apply(&svc_yaml("hello", "b", split)).await;
    let status = h.service("hello").status.unwrap();
    assert_eq!(
        ready(&status.conditions),
        ConditionStatus::True,
        "{:#?}",
        status.conditions
    );
    assert_eq!(
        status.traffic[0].url.as_deref(),
        Some("http://old-hello.default.localhost:8080")
    );
    let ing = h.ingress.0.lock().unwrap()[&("default".into(), "hello".into())].clone();
    let main = &ing.rules[0];
    let mut splits: Vec<_> = main
        .splits
        .iter()
        .map(|s| (s.revision.as_str(), s.percent))
        .collect();
    splits.sort();
    assert_eq!(splits, [("hello-00001", 20), ("hello-00002", 80)]);
    assert_eq!(ing.rules[1].hosts, ["old-hello.default.localhost"]);
    let desired = h.runtime.desired.lock().unwrap().clone();
    assert_eq!(
        desired[&RevisionKey::new("default", "hello-00001")],
        1,
        "routed revisions run"
    );
}

#[tokio::test]
async fn failing_revision_reports_reason_and_keeps_old_traffic() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.runtime.failing.lock().unwrap().insert(
        "hello-00002".into(),
        (
            "ExitCode1".into(),
            "process exited with code 1: boom".into(),
        ),
    );
    h.apply(&svc_yaml("hello", "b", "")).await;
    let rev = match h.get(Kind::Revision, "hello-00002") {
        Object::Revision(r) => r,
        _ => unreachable!(),
    };
    let c = get_condition(&rev.status.as_ref().unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert_eq!(
        (c.status, c.reason.as_deref()),
        (ConditionStatus::False, Some("ExitCode1"))
    );
    let status = h.service("hello").status.unwrap();
    let sc = get_condition(&status.conditions, "Ready").unwrap();
    assert_eq!(sc.status, ConditionStatus::False);
    assert!(sc.message.as_deref().unwrap().contains("boom"), "{sc:?}");
    assert_eq!(
        status.latest_ready_revision_name.as_deref(),
        Some("hello-00001")
    );
    let ing = h.ingress.0.lock().unwrap()[&("default".into(), "hello".into())].clone();
    assert_eq!(
        ing.rules[0].splits[0].revision, "hello-00001",
        "old revision keeps serving"
    );
}

#[tokio::test]
async fn reused_revision_name_with_new_template_is_refused() {
    let h = harness();
    let named = |env: &str| {
        svc_yaml("hello", env, "").replace(
            "  template:\n",
            "  template:\n    metadata: {name: hello-v1}\n",
        )
    };
    h.apply(&named("a")).await;
    assert_eq!(h.revisions(), ["hello-v1"]);
    h.apply(&named("b")).await;
    assert_eq!(h.revisions(), ["hello-v1"]);
    let c = h.get(Kind::Configuration, "hello");
    let Object::Configuration(c) = c else {
        unreachable!()
    };
    let cond = get_condition(&c.status.unwrap().conditions, "Ready")
        .unwrap()
        .clone();
    assert_eq!(cond.reason.as_deref(), Some("RevisionNameTaken"));
}

#[tokio::test]
async fn deleting_a_service_deletes_everything_it_owns() {
    let h = harness();
    h.apply(&svc_yaml("hello", "a", "")).await;
    h.store.delete(Kind::Service, "default", "hello").unwrap();
    for k in [
        Kind::Service,
        Kind::Configuration,
        Kind::Route,
        Kind::Revision,
    ] {
        h.controller
            .reconcile(&ObjectKey::new(k, "default", "hello"))
            .await
            .unwrap();
    }
    h.controller.settle(100).await.unwrap();
    // configuration deleted → its cleanup deletes revisions → their cleanup stops instances
    h.controller
        .reconcile(&ObjectKey::new(Kind::Configuration, "default", "hello"))
        .await
        .unwrap();
    h.controller
        .reconcile(&ObjectKey::new(Kind::Revision, "default", "hello-00001"))
        .await
        .unwrap();
    assert!(h.store.list(Kind::Revision, None).unwrap().items.is_empty());
    assert!(h.store.list(Kind::Route, None).unwrap().items.is_empty());
    assert!(h.ingress.0.lock().unwrap().is_empty());
    assert!(
        h.runtime
            .removed
            .lock()
            .unwrap()
            .contains(&RevisionKey::new("default", "hello-00001"))
    );
}

#[tokio::test]
async fn unknown_runtime_class_is_reported() {
    let h = harness();
    h.apply(
        &svc_yaml("hello", "a", "")
            .replace("runtimeClassName: process", "runtimeClassName: wasm")
            .replace("- command: [/bin/hello]", "- image: hello.wasm"),
    )
    .await;
    let status = h.service("hello").status.unwrap();
    let c = get_condition(&status.conditions, "Ready").unwrap();
    assert_eq!(c.status, ConditionStatus::False);
    assert!(c.message.as_deref().unwrap().contains("wasm"), "{c:?}");
}
