//! The polling loop over a real (in-memory) store and scaler, with the cron trigger (no
//! broker): floors on every routed revision, the ScaledObject's status, errors of one trigger
//! beside a working one, and floors removed when the ScaledObject goes.

use std::sync::Arc;

use nimbus_api::parse::parse_manifests;
use nimbus_api::{Kind, Object};
use nimbus_controller::{NoLoad, Scaler, ScalerConfig, StoreResources};
use nimbus_keda::{Keda, KedaConfig};
use nimbus_runtime::RevisionKey;
use nimbus_store::Store;
use serde_json::json;

fn object(yaml: &str) -> Object {
    parse_manifests("test.yaml", yaml).unwrap().remove(0)
}

/// Service `worker`, its status splitting traffic between two revisions.
fn service(store: &Store) {
    let created = store
        .create(object(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: worker\n  namespace: default\nspec:\n  template:\n    spec:\n      containers:\n      - image: x\n",
        ))
        .unwrap();
    let mut value = created.to_json();
    value["status"] = json!({
        "latestReadyRevisionName": "worker-00002",
        "traffic": [
            {"revisionName": "worker-00001", "percent": 40},
            {"revisionName": "worker-00002", "percent": 60},
            {"revisionName": "worker-00003", "percent": 0, "tag": "next"}
        ]
    });
    store
        .update_status(Object::from_json(Kind::Service, value).unwrap())
        .unwrap();
}

/// A cron trigger whose window holds now, and a redis trigger whose authentication is missing.
fn scaled_object() -> String {
    let now = chrono::Utc::now();
    let at = |m: i64| {
        (now + chrono::Duration::minutes(m))
            .format("%M %H")
            .to_string()
    };
    format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: so
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  triggers:
  - type: cron
    metadata:
      timezone: UTC
      start: {} * * *
      end: {} * * *
      desiredReplicas: "3"
  - type: redis
    metadata:
      address: 127.0.0.1:1
      listName: jobs
    authenticationRef:
      name: missing-auth
"#,
        at(-1),
        at(5)
    )
}

/// A store holding Service `worker`, a scaler, and the loop over them.
fn driver() -> (Arc<Store>, Arc<Scaler>, Arc<Keda>) {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let scaler = Scaler::new(Arc::new(NoLoad), ScalerConfig::default());
    let keda = Keda::new(
        Arc::new(StoreResources(store.clone())),
        scaler.clone(),
        KedaConfig::default(),
    );
    service(&store);
    (store, scaler, keda)
}

fn status(store: &Store) -> serde_json::Value {
    store
        .get(Kind::ScaledObject, "default", "so")
        .unwrap()
        .unwrap()
        .to_json()["status"]
        .clone()
}

fn condition(status: &serde_json::Value, type_: &str) -> serde_json::Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone()
}

#[tokio::test]
async fn floors_go_to_every_routed_revision_and_one_failing_trigger_is_reported() {
    let (store, scaler, keda) = driver();
    store.create(object(&scaled_object())).unwrap();
    keda.poll_due().await;

    let floor = |name: &str| scaler.floor(&RevisionKey::new("default", name));
    assert_eq!(
        (floor("worker-00001"), floor("worker-00002")),
        (3, 3),
        "every routed revision"
    );
    assert_eq!(floor("worker-00003"), 0, "a tag with no traffic share");
    let status = status(&store);
    assert_eq!(condition(&status, "Active")["status"], "True", "{status:#}");
    let ready = condition(&status, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "TriggerAuthenticationFailed");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "spec.triggers[1] (redis): TriggerAuthentication default/missing-auth does not exist"
        ),
        "{message}"
    );
    assert_eq!(
        status["externalMetricNames"][0]
            .as_str()
            .unwrap()
            .split('-')
            .take(2)
            .collect::<Vec<_>>(),
        ["s0", "cron"]
    );
    assert_eq!(status["triggersTypes"], "cron,redis");
    assert_eq!(status["authenticationsTypes"], "missing-auth");
    assert_eq!(status["scaleTargetKind"], "serving.knative.dev/v1.Service");

    store.delete(Kind::ScaledObject, "default", "so").unwrap();
    keda.poll_due().await;
    assert_eq!(
        (floor("worker-00001"), floor("worker-00002")),
        (0, 0),
        "ScaledObject gone"
    );
}

#[tokio::test]
async fn a_missing_service_is_reported_and_nothing_is_scaled() {
    let store = Arc::new(Store::open_in_memory().unwrap());
    let scaler = Scaler::new(Arc::new(NoLoad), ScalerConfig::default());
    let keda = Keda::new(
        Arc::new(StoreResources(store.clone())),
        scaler.clone(),
        KedaConfig::default(),
    );
    store.create(object(&scaled_object())).unwrap();
    keda.poll_due().await;
    let ready = condition(&status(&store), "Ready");
    assert_eq!(ready["reason"], "ScaleTargetNotFound");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("Service default/worker"),
        "{ready}"
    );
}

/// On a cluster no admission webhook refuses what Nimbus does not implement: the loop does,
/// in the status, and scales nothing.
#[tokio::test]
async fn a_scaled_object_nimbus_refuses_scales_nothing_and_says_why() {
    let (store, scaler, keda) = driver();
    // As a cluster stores it: past no validation of Nimbus's.
    let mut value = object(&scaled_object()).to_json();
    value["spec"]["fallback"] = json!({"failureThreshold": 3, "replicas": 6});
    let refused = Object::from_json(Kind::ScaledObject, value).unwrap();
    store.create(refused).unwrap();
    keda.poll_due().await;
    let floor = scaler.floor(&RevisionKey::new("default", "worker-00002"));
    assert_eq!(floor, 0, "nothing scaled");
    let ready = condition(&status(&store), "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ScaledObjectCheckFailed");
    assert!(
        ready["message"].as_str().unwrap().contains("spec.fallback"),
        "{ready}"
    );
}
