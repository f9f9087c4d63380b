//! The reconcilers' requests through `KubeResources`, against a mock API server (tower-test, as
//! kube-rs's own tests do): a Service's reconcile applies its Configuration and Route with
//! server-side apply and owner references, a Configuration's creates its Revision, a Revision's
//! adds its finalizer with a metadata-only patch. The mock keeps objects as an API server
//! does (resourceVersion, generation, status subresource) and refuses, as the CRD's CEL rule
//! does, any write that changes a stored Revision's spec.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response};
use kube::client::Body;
use nimbus_api::Kind;
use nimbus_controller::{
    Context, Controller, ControllerConfig, NoLoad, ObjectKey, Scaler, ScalerConfig,
};
use serde_json::{Value, json};

use crate::resources::{KubeResources, api_resource};

/// `(plural, namespace, name)`.
type Key = (String, String, String);

/// An API server's storage and the requests it saw (`VERB plural[/sub] name (detail)`).
#[derive(Default)]
struct Fake {
    objects: BTreeMap<Key, Value>,
    version: u64,
    log: Vec<String>,
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "code": code, "reason": reason, "message": message});
    (code, body)
}

fn labels_match(obj: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        obj["metadata"]["labels"][k].as_str() == Some(v)
    })
}

fn query_value<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

impl Fake {
    fn stamp(&mut self, obj: &mut Value) {
        self.version += 1;
        obj["metadata"]["resourceVersion"] = self.version.to_string().into();
    }

    fn create(&mut self, key: Key, mut obj: Value) -> (u16, Value) {
        if self.objects.contains_key(&key) {
            return status(409, "AlreadyExists", &format!("{} exists", key.2));
        }
        obj["metadata"]["uid"] = format!("uid-{}", key.2).into();
        obj["metadata"]["generation"] = 1.into();
        obj["metadata"]["namespace"] = key.1.clone().into();
        if let Some(map) = obj.as_object_mut() {
            map.remove("status");
        }
        self.stamp(&mut obj);
        self.objects.insert(key, obj.clone());
        (201, obj)
    }

    /// Store `next` over the stored object under `key`, as a write guarded by the
    /// resourceVersion `next` carries.
    fn update(&mut self, key: &Key, mut next: Value) -> (u16, Value) {
        let stored = &self.objects[key];
        if next["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
            return status(409, "Conflict", "the object has been modified");
        }
        if next["spec"] != stored["spec"] {
            if key.0 == "revisions" {
                return status(
                    422,
                    "Invalid",
                    "spec: Invalid value: a Revision is immutable",
                );
            }
            let generation = stored["metadata"]["generation"].as_i64().unwrap_or(0);
            next["metadata"]["generation"] = (generation + 1).into();
        }
        self.stamp(&mut next);
        self.objects.insert(key.clone(), next.clone());
        (200, next)
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        kind: &str,
        body: Value,
    ) -> (u16, Value) {
        let rest = path
            .trim_start_matches("/apis/")
            .trim_start_matches("/api/");
        let segments: Vec<&str> = rest.split('/').collect();
        // group/version/namespaces/ns/plural[/name[/sub]], or group/version/plural (all namespaces).
        let (namespace, plural, name, sub) = match segments.as_slice() {
            [_, _, "namespaces", ns, plural, tail @ ..] => (
                Some(*ns),
                *plural,
                tail.first().copied(),
                tail.get(1).copied(),
            ),
            [_, _, plural] => (None, *plural, None, None),
            _ => return status(404, "NotFound", path),
        };
        let resource = match sub {
            Some(sub) => format!("{plural}/{sub}"),
            None => plural.to_string(),
        };
        self.log.push(
            format!("{method} {resource} {} {kind}", name.unwrap_or("*"))
                .trim_end()
                .to_string(),
        );
        let ns = namespace.unwrap_or_default().to_string();
        let key = |name: &str| (plural.to_string(), ns.clone(), name.to_string());
        match (method.as_str(), name) {
            ("GET", None) => {
                let selector = query_value(query, "labelSelector")
                    .map(|s| s.replace("%3D", "=").replace("%2C", ","))
                    .unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((p, n, _), o)| {
                        p == plural
                            && (namespace.is_none() || *n == ns)
                            && labels_match(o, &selector)
                    })
                    .map(|(_, o)| o.clone())
                    .collect();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "List",
                    "metadata": {"resourceVersion": self.version.to_string()}, "items": items}),
                )
            }
            ("GET", Some(name)) => match self.objects.get(&key(name)) {
                Some(obj) => (200, obj.clone()),
                None => status(404, "NotFound", &format!("{name} not found")),
            },
            ("POST", None) => {
                let name = body["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.create(key(&name), body)
            }
            ("PATCH", Some(name)) if kind == "apply" => {
                let Some(stored) = self.objects.get(&key(name)).cloned() else {
                    return self.create(key(name), body);
                };
                // Server-side apply, as far as these objects go: the applier owns the spec,
                // labels, annotations and owner references it sends.
                let mut next = stored;
                next["spec"] = body["spec"].clone();
                for field in ["labels", "annotations", "ownerReferences"] {
                    if !body["metadata"][field].is_null() {
                        next["metadata"][field] = body["metadata"][field].clone();
                    }
                }
                self.update(&key(name), next)
            }
            ("PATCH", Some(name)) if kind == "json" => {
                let Some(mut next) = self.objects.get(&key(name)).cloned() else {
                    return status(404, "NotFound", name);
                };
                let patch: json_patch::Patch = serde_json::from_value(body).unwrap();
                if let Err(e) = json_patch::patch(&mut next, &patch) {
                    return status(422, "Invalid", &e.to_string());
                }
                self.update(&key(name), next)
            }
            ("PUT", Some(name)) if sub == Some("status") => {
                let Some(mut next) = self.objects.get(&key(name)).cloned() else {
                    return status(404, "NotFound", name);
                };
                next["metadata"]["resourceVersion"] = body["metadata"]["resourceVersion"].clone();
                next["status"] = body["status"].clone();
                self.update(&key(name), next)
            }
            _ => status(405, "MethodNotAllowed", path),
        }
    }
}

/// A client whose requests `fake` answers, until the client is dropped.
fn serve(fake: Arc<Mutex<Fake>>) -> kube::Client {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    tokio::spawn(async move {
        while let Some((req, send)) = handle.next_request().await {
            let method = req.method().clone();
            let path = req.uri().path().to_string();
            let query = req.uri().query().unwrap_or_default().to_string();
            let kind = match req
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap())
            {
                Some("application/apply-patch+yaml") => "apply",
                Some("application/json-patch+json") => "json",
                _ => "",
            };
            let bytes = http_body_util::BodyExt::collect(req.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let (code, answer) = fake
                .lock()
                .unwrap()
                .handle(&method, &path, &query, kind, body);
            let response = Response::builder()
                .status(code)
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    kube::Client::new(service, "default")
}

fn controller(client: kube::Client) -> Controller {
    let config = ControllerConfig {
        garbage_collector: false,
        ..ControllerConfig::default()
    };
    let scaler = Scaler::new(Arc::new(NoLoad), ScalerConfig::default());
    let resources = Arc::new(KubeResources::new(client));
    Controller::new(Context::new(
        resources,
        Default::default(),
        None,
        config,
        scaler,
    ))
}

/// Put `obj` into the fake as a user's `kubectl apply` would: as written, no defaults.
fn user_writes(fake: &Mutex<Fake>, kind: Kind, obj: Value) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    let key = (api_resource(kind).plural, "default".to_string(), name);
    let (code, _) = fake.lock().unwrap().create(key, obj);
    assert_eq!(code, 201);
}

fn stored(fake: &Mutex<Fake>, plural: &str, name: &str) -> Value {
    let key = (plural.to_string(), "default".to_string(), name.to_string());
    fake.lock().unwrap().objects[&key].clone()
}

fn take_log(fake: &Mutex<Fake>) -> Vec<String> {
    std::mem::take(&mut fake.lock().unwrap().log)
}

fn service() -> Value {
    json!({"apiVersion": "serving.knative.dev/v1", "kind": "Service",
        "metadata": {"name": "hello"},
        "spec": {"template": {"spec": {"containers": [{"image": "example.com/hello"}]}}}})
}

#[tokio::test]
async fn a_service_becomes_a_configuration_a_route_and_a_revision_by_apply_create_and_patch() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let controller = controller(serve(fake.clone()));
    user_writes(&fake, Kind::Service, service());

    controller
        .reconcile(&ObjectKey::new(Kind::Service, "default", "hello"))
        .await
        .unwrap();
    let log = take_log(&fake);
    for expected in [
        "GET services hello",
        "PATCH configurations hello apply",
        "PATCH routes hello apply",
        "PUT services/status hello",
    ] {
        assert!(
            log.iter().any(|l| l == expected),
            "{expected:?} not in {log:#?}"
        );
    }
    assert!(
        !log.iter()
            .any(|l| l.starts_with("PUT") && !l.contains("/status")),
        "a reconciler never replaces a whole object: {log:#?}"
    );
    let config = stored(&fake, "configurations", "hello");
    let owner = &config["metadata"]["ownerReferences"][0];
    assert_eq!(owner["uid"], "uid-hello");
    assert_eq!(owner["kind"], "Service");
    assert_eq!(owner["controller"], true);
    assert_eq!(
        config["spec"]["template"]["spec"]["containers"][0]["image"],
        "example.com/hello"
    );

    controller
        .reconcile(&ObjectKey::new(Kind::Configuration, "default", "hello"))
        .await
        .unwrap();
    let log = take_log(&fake);
    assert!(log.iter().any(|l| l == "POST revisions *"), "{log:#?}");
    assert!(
        log.iter().any(|l| l == "PUT configurations/status hello"),
        "{log:#?}"
    );
    let revision = stored(&fake, "revisions", "hello-00001");
    assert_eq!(
        revision["metadata"]["labels"]["serving.knative.dev/configuration"],
        "hello"
    );
    assert_eq!(
        revision["metadata"]["ownerReferences"][0]["kind"],
        "Configuration"
    );
    let config = stored(&fake, "configurations", "hello");
    assert_eq!(config["status"]["latestCreatedRevisionName"], "hello-00001");
}

/// A Revision written by hand (no defaults in the stored spec) gets its finalizer: the write
/// is a metadata patch, not the defaulted object read back, which the CEL rule would refuse.
#[tokio::test]
async fn a_revision_written_without_defaults_gets_its_finalizer_and_status() {
    let fake = Arc::new(Mutex::new(Fake::default()));
    let controller = controller(serve(fake.clone()));
    let revision = json!({"apiVersion": "serving.knative.dev/v1", "kind": "Revision",
        "metadata": {"name": "bare"},
        "spec": {"containers": [{"image": "example.com/hello"}]}});
    user_writes(&fake, Kind::Revision, revision);
    let before = stored(&fake, "revisions", "bare");
    controller
        .reconcile(&ObjectKey::new(Kind::Revision, "default", "bare"))
        .await
        .unwrap();
    let log = take_log(&fake);
    assert!(
        log.iter().any(|l| l == "PATCH revisions bare json"),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l == "PUT revisions/status bare"),
        "{log:#?}"
    );
    let after = stored(&fake, "revisions", "bare");
    assert_eq!(
        after["spec"], before["spec"],
        "the stored spec is the user's"
    );
    assert_eq!(after["metadata"]["generation"], 1);
    assert_eq!(
        after["metadata"]["finalizers"],
        json!([nimbus_api::constants::FINALIZER_INSTANCES])
    );
    // No runtime serves it here: the reason says so, as on a cluster without the backend.
    let ready = after["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "False", "{ready}");
}
