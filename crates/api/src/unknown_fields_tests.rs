//! Unknown-field detection at every level (issue #17): for every kind the API serves, an unknown
//! key injected at any object path of a valid example (inside arrays' items, `flatten`ed structs
//! and k8s-openapi's types) is refused under Strict naming exactly that path, and reported (for the
//! API server's `Warning:` header) with the object still decoded under Warn; and the walk itself
//! is checked against a value that has every property the served schema declares.

use serde_json::{Map, Value, json};

use super::*;

/// A valid example of every kind, as rich as validation lets it be.
fn examples() -> Vec<(Kind, &'static str)> {
    vec![
        (Kind::Service, SERVICE),
        (Kind::Configuration, CONFIGURATION),
        (Kind::Revision, REVISION),
        (Kind::Route, ROUTE),
        (Kind::PodAutoscaler, POD_AUTOSCALER),
        (Kind::Ingress, INGRESS),
        (Kind::Secret, SECRET),
        (Kind::ConfigMap, CONFIG_MAP),
        (Kind::Job, JOB),
        (Kind::Execution, EXECUTION),
        (Kind::Schedule, SCHEDULE),
        (Kind::ScaledObject, SCALED_OBJECT),
        (Kind::TriggerAuthentication, TRIGGER_AUTHENTICATION),
        (Kind::RedisStreamSource, REDIS_STREAM_SOURCE),
        (Kind::RabbitmqSource, RABBITMQ_SOURCE),
        (Kind::RedisListSource, REDIS_LIST_SOURCE),
        (Kind::NatsJetStreamSource, NATS_JET_STREAM_SOURCE),
        (Kind::Event, EVENT),
    ]
}

const SERVICE: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
  labels: {app: hello}
  annotations: {note: x}
  ownerReferences:
    - {apiVersion: v1, kind: ConfigMap, name: owner, uid: "1"}
spec:
  template:
    metadata:
      name: hello-world
      annotations:
        autoscaling.knative.dev/min-scale: "1"
    spec:
      containerConcurrency: 10
      timeoutSeconds: 30
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports:
            - containerPort: 8080
          env:
            - name: TARGET
              value: "World"
            - name: FROM
              valueFrom:
                configMapKeyRef: {name: cm, key: k}
          envFrom:
            - configMapRef: {name: cm}
          resources:
            limits: {memory: 128Mi, cpu: "1"}
            requests: {memory: 64Mi}
          readinessProbe:
            httpGet:
              path: /healthz
              httpHeaders:
                - {name: X, value: v}
          livenessProbe:
            tcpSocket: {port: 8080}
          volumeMounts:
            - {name: config, mountPath: /etc/config, readOnly: true}
      volumes:
        - name: config
          configMap:
            name: cm
            items:
              - {key: k, path: k.txt}
  traffic:
    - latestRevision: true
      percent: 80
    - revisionName: hello-world
      percent: 20
      tag: old
status:
  conditions:
    - {type: Ready, status: "True"}
  traffic:
    - {revisionName: hello-world, percent: 100}
"#;

const CONFIGURATION: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Configuration
metadata: {name: cfg}
spec:
  template:
    metadata:
      labels: {a: b}
    spec:
      containers:
        - image: example.com/app
          args: [serve]
"#;

const REVISION: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Revision
metadata: {name: cfg-00001}
spec:
  containerConcurrency: 1
  containers:
    - image: example.com/app
      ports: [{containerPort: 8080}]
      startupProbe:
        exec: {command: [/bin/true]}
"#;

const ROUTE: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Route
metadata: {name: r}
spec:
  traffic:
    - configurationName: cfg
      percent: 100
      tag: current
"#;

const POD_AUTOSCALER: &str = r#"
apiVersion: autoscaling.internal.knative.dev/v1alpha1
kind: PodAutoscaler
metadata:
  name: manual
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Revision
    name: manual-00001
  reachability: Unreachable
  protocolType: http1
"#;

const INGRESS: &str = r#"
apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata: {name: hello}
spec:
  rules:
    - hosts: [hello.default.example.com]
      visibility: ExternalIP
      http:
        paths:
          - splits:
              - serviceName: hello-00001
                serviceNamespace: default
                percent: 100
"#;

const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata: {name: s}
type: Opaque
data: {a: eA==}
stringData: {b: v}
"#;

const CONFIG_MAP: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {a: x}
"#;

const JOB: &str = r#"
apiVersion: run.nimbus.dev/v1
kind: Job
metadata: {name: job}
spec:
  template:
    metadata:
      annotations:
        nimbus.dev/runtime: process
    spec:
      taskCount: 2
      parallelism: 1
      template:
        spec:
          maxRetries: 1
          timeoutSeconds: 60
          containers:
            - command: [/bin/sh, -c, "exit 0"]
              env: [{name: A, value: b}]
"#;

const EXECUTION: &str = r#"
apiVersion: run.nimbus.dev/v1
kind: Execution
metadata: {name: job-abc}
spec:
  taskCount: 1
  template:
    spec:
      maxRetries: 0
      containers:
        - image: example.com/task
"#;

const SCHEDULE: &str = r#"
apiVersion: run.nimbus.dev/v1
kind: Schedule
metadata: {name: ping}
spec:
  schedule: "*/1 * * * * *"
  timeZone: Europe/Berlin
  event:
    sink:
      uri: http://127.0.0.1:8080/
    data: '{"hello": "world"}'
"#;

const SCALED_OBJECT: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so}
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: hello
  minReplicaCount: 0
  maxReplicaCount: 10
  triggers:
    - type: redis
      metadata:
        address: 127.0.0.1:6379
        listName: jobs
        listLength: "5"
      authenticationRef: {name: auth}
"#;

const TRIGGER_AUTHENTICATION: &str = r#"
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata: {name: auth}
spec:
  secretTargetRef:
    - {parameter: password, name: redis-secret, key: redis_password}
"#;

const REDIS_STREAM_SOURCE: &str = r#"
apiVersion: sources.knative.dev/v1alpha1
kind: RedisStreamSource
metadata: {name: orders}
spec:
  address: redis://127.0.0.1:6379
  stream: orders
  group: nimbus
  delivery:
    retry: 3
    backoffDelay: PT3S
  sink:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: hello}
"#;

const RABBITMQ_SOURCE: &str = r#"
apiVersion: sources.knative.dev/v1alpha1
kind: RabbitmqSource
metadata: {name: work}
spec:
  rabbitmqClusterReference:
    connectionSecret: {name: rabbit}
  rabbitmqResourcesConfig:
    queueName: work
    parallelism: 4
  sink:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: hello}
"#;

const REDIS_LIST_SOURCE: &str = r#"
apiVersion: sources.nimbus.dev/v1alpha1
kind: RedisListSource
metadata: {name: tasks}
spec:
  address: redis://127.0.0.1:6379
  list: tasks
  password:
    secretKeyRef: {name: redis, key: password}
  sink:
    uri: http://127.0.0.1:8080/
"#;

const NATS_JET_STREAM_SOURCE: &str = r#"
apiVersion: sources.nimbus.dev/v1alpha1
kind: NatsJetStreamSource
metadata: {name: telemetry}
spec:
  address: nats://127.0.0.1:4222
  stream: TELEMETRY
  subject: telemetry.>
  parallelism: 2
  sink:
    ref: {apiVersion: serving.knative.dev/v1, kind: Service, name: hello}
"#;

const EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata: {name: hello.1800f2c3a1b2c3d4, namespace: default}
involvedObject:
  apiVersion: serving.knative.dev/v1
  kind: Service
  name: hello
  namespace: default
  uid: 6c0f8a52-0d1f-4c8e-9d8a-1f2e3d4c5b6a
reason: ScaledUp
message: "scaled hello-00001 from 1 to 3"
source: {component: nimbus-autoscaler, host: node-1}
firstTimestamp: "2026-12-08T01:00:00Z"
lastTimestamp: "2026-12-08T01:05:00Z"
count: 2
type: Normal
reportingComponent: nimbus-autoscaler
reportingInstance: node-1
"#;

fn json_of(yaml: &str) -> Value {
    let docs: Vec<Spanned<Node>> = serde_saphyr::from_multiple(yaml).unwrap();
    let doc = docs.into_iter().next().unwrap();
    doc.value
        .into_json(String::new(), loc(&doc.referenced), &mut HashMap::new())
}

/// The path of every object (mapping) in `value`, `""` for the root, as field paths spell them.
fn object_paths(value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            out.push(path.to_string());
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                object_paths(v, &p, out);
            }
        }
        Value::Array(list) => {
            for (i, v) in list.iter().enumerate() {
                object_paths(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The value at `path` (as `object_paths` spells it).
fn at_path<'a>(mut at: &'a mut Value, path: &str) -> &'a mut Value {
    if !path.is_empty() {
        for part in path.split('.') {
            let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
            if !name.is_empty() {
                at = at.get_mut(name).unwrap();
            }
            for index in indexes.split('[').filter(|s| !s.is_empty()) {
                let i: usize = index.trim_end_matches(']').parse().unwrap();
                at = at.get_mut(i).unwrap();
            }
        }
    }
    at
}

/// `value` with `key: injected` added to the object at `path`.
fn inject(value: &Value, path: &str, key: &str, injected: Value) -> Value {
    let mut value = value.clone();
    at_path(&mut value, path)
        .as_object_mut()
        .unwrap()
        .insert(key.into(), injected);
    value
}

/// Label and annotation maps take any key: an injected key there is a label, not a field.
fn is_free_map(path: &str) -> bool {
    [
        "labels",
        "annotations",
        "data",
        "stringData",
        "limits",
        "requests",
        "metadata.data",
    ]
    .iter()
    .any(|m| path == *m || path.ends_with(&format!(".{m}")))
        || path.ends_with("triggers[0].metadata")
}

#[test]
fn every_kind_has_a_valid_example_without_unknown_fields() {
    let kinds: Vec<Kind> = examples().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        Kind::ALL,
        "one example per served kind, in Kind::ALL's order"
    );
    for (kind, yaml) in examples() {
        let value = json_of(yaml);
        let decoded = decode_object_lenient(Some(kind), value.clone())
            .unwrap_or_else(|e| panic!("{kind}: {e:?}"));
        assert_eq!(decoded.unknown_fields, [], "{kind}");
        assert_eq!(undeclared_fields(kind, &value), [], "{kind}");
        // what the server stores and serves back (defaults filled in) decodes again
        let stored = decoded.object.to_json();
        assert_eq!(undeclared_fields(kind, &stored), [], "{kind}: {stored:#}");
    }
}

#[test]
fn an_unknown_key_at_every_object_path_of_every_kind_is_refused_or_warned_with_its_path() {
    let mut checked = 0;
    for (kind, yaml) in examples() {
        let value = json_of(yaml);
        let mut paths = Vec::new();
        object_paths(&value, "", &mut paths);
        for path in paths.iter().filter(|p| !is_free_map(p)) {
            // empty values too: `containerz: []` is as unknown as `containerz: [x]`
            for injected in [
                json!([]),
                json!({}),
                json!(null),
                json!("x"),
                json!([{"a": 1}]),
            ] {
                let key = "nimbusTypo";
                let expected = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                let bad = inject(&value, path, key, injected.clone());
                // Strict: refused, naming exactly that path (and nothing else)
                let errors = decode_object(Some(kind), bad.clone())
                    .expect_err(&format!("{kind}: {expected}: {injected} accepted"));
                let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
                assert_eq!(paths, [expected.as_str()], "{kind}: {injected}: {errors:?}");
                assert!(
                    errors[0].message.contains("field not declared in schema"),
                    "{errors:?}"
                );
                // Warn/Ignore: decoded as if the key were not there, the key reported
                let decoded = decode_object_lenient(Some(kind), bad)
                    .unwrap_or_else(|e| panic!("{kind}: {expected}: {e:?}"));
                let warned: Vec<&str> = decoded
                    .unknown_fields
                    .iter()
                    .map(|e| e.path.as_str())
                    .collect();
                assert_eq!(warned, [expected.as_str()], "{kind}");
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "only {checked} injections");
}

#[test]
fn parse_manifests_names_the_line_of_an_unknown_empty_field() {
    let text = SERVICE.replace(
        "      containers:",
        "      containerz: []\n      containers:",
    );
    let err = parse_manifests("svc.yaml", &text).unwrap_err();
    let ParseError::Invalid { errors, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(errors[0].path, "spec.template.spec.containerz");
    assert_eq!(errors[0].location.unwrap().line, 20, "{errors:?}");
    let text = SERVICE.replace("          env:", "          enviroment: []\n          env:");
    let err = parse_manifests("svc.yaml", &text).unwrap_err();
    assert!(
        err.to_string()
            .contains("spec.template.spec.containers[0].enviroment"),
        "{err}"
    );
}

// === the walk against everything the served schema declares ===

/// A value with every property `schema` declares (maps with one entry, arrays with one item),
/// stopping at a definition already being expanded.
fn full_value(defs: &Map<String, Value>, schema: &Value, stack: &mut Vec<String>) -> Value {
    let Value::Object(map) = schema else {
        return json!("x");
    };
    if let Some(Value::String(r)) = map.get("$ref") {
        let name = r.trim_start_matches(crate::schema::REF_PREFIX).to_string();
        if stack.contains(&name) || stack.len() > 12 {
            return Value::Null;
        }
        stack.push(name.clone());
        let v = full_value(defs, &defs[&name], stack);
        stack.pop();
        return v;
    }
    let mut object = Map::new();
    let mut other = None;
    for key in ["allOf", "anyOf", "oneOf"] {
        for s in map.get(key).and_then(Value::as_array).into_iter().flatten() {
            match full_value(defs, s, stack) {
                Value::Object(m) => object.extend(m),
                Value::Null => {}
                v => other = Some(v),
            }
        }
    }
    if let Some(Value::Object(props)) = map.get("properties") {
        for (k, s) in props {
            let v = full_value(defs, s, stack);
            if !v.is_null() {
                object.insert(k.clone(), v);
            }
        }
    }
    if let Some(s @ Value::Object(_)) = map.get("additionalProperties") {
        let v = full_value(defs, s, stack);
        object.insert("some-key".into(), v);
    }
    if !object.is_empty() || map.get("type") == Some(&json!("object")) {
        return Value::Object(object);
    }
    if let Some(items) = map.get("items") {
        let v = full_value(defs, items, stack);
        return if v.is_null() { json!([]) } else { json!([v]) };
    }
    other.unwrap_or(json!("x"))
}

#[test]
fn the_walk_reaches_every_object_the_served_schema_declares() {
    let defs = crate::schema::definitions();
    let mut checked = 0;
    for kind in Kind::ALL {
        let root = crate::schema::definition_name(kind, kind.as_str());
        let full = full_value(&defs, &defs[&root], &mut Vec::new());
        assert_eq!(undeclared_fields(kind, &full), [], "{kind}");
        let mut paths = Vec::new();
        object_paths(&full, "", &mut paths);
        for path in paths {
            let bad = inject(&full, &path, "nimbusTypo", json!([]));
            let found: Vec<String> = undeclared_fields(kind, &bad)
                .into_iter()
                .map(|e| e.path)
                .collect();
            let expected = if path.is_empty() {
                "nimbusTypo".to_string()
            } else {
                format!("{path}.nimbusTypo")
            };
            // a map's keys (labels, resources' limits) and free-form JSON take any key
            if found.is_empty() {
                let object = at_path(&mut full.clone(), &path).clone();
                assert!(
                    object.get("some-key").is_some() || object == json!({}),
                    "{kind}: {expected} not reported"
                );
                continue;
            }
            assert_eq!(found, [expected], "{kind}");
            checked += 1;
        }
    }
    assert!(checked > 1000, "only {checked} paths");
}
