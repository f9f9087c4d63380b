use super::*;
use crate::serving::Service;

const KNATIVE_SERVICE: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
  labels:
    app: hello
spec:
  template:
    metadata:
      name: hello-world
      annotations:
        autoscaling.knative.dev/min-scale: "1"
    spec:
      containerConcurrency: 10
      timeoutSeconds: 30
      serviceAccountName: default
      containers:
        - image: ghcr.io/knative/helloworld-go:latest
          ports:
            - containerPort: 8080
          env:
            - name: TARGET
              value: "World"
          resources:
            limits:
              memory: 128Mi
              cpu: "1"
          readinessProbe:
            httpGet:
              path: /healthz
  traffic:
    - latestRevision: true
      percent: 80
    - revisionName: hello-world
      percent: 20
      tag: old
"#;

fn one(text: &str) -> Object {
    let mut objs = parse_manifests("svc.yaml", text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objs.len(), 1);
    objs.remove(0)
}

fn errors(text: &str) -> Vec<FieldError> {
    match parse_manifests("svc.yaml", text) {
        Err(ParseError::Invalid { errors, .. }) => errors,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn knative_service_parses_unchanged() {
    let Object::Service(s) = one(KNATIVE_SERVICE) else {
        panic!("not a service")
    };
    assert_eq!(s.name(), "hello");
    let c = &s.spec.template.spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("ghcr.io/knative/helloworld-go:latest")
    );
    assert_eq!(c.name, "user-container", "defaulted");
    assert_eq!(s.spec.template.spec.container_concurrency, Some(10));
    assert_eq!(s.spec.traffic[1].tag.as_deref(), Some("old"));
    assert_eq!(s.spec.traffic[1].latest_revision, Some(false), "defaulted");
}

#[test]
fn multi_document_and_json() {
    let text = format!(
        "{KNATIVE_SERVICE}\n---\n{}",
        KNATIVE_SERVICE
            .replace("name: hello\n", "name: hello2\n")
            .replace("hello-world", "hello2-world")
    );
    assert_eq!(parse_manifests("x", &text).unwrap().len(), 2);
    let json = r#"{"apiVersion":"serving.knative.dev/v1","kind":"Service","metadata":{"name":"j"},
      "spec":{"template":{"spec":{"runtimeClassName":"process","containers":[{"command":["/bin/true"]}]}}}}"#;
    let Object::Service(s) = one(json) else {
        panic!()
    };
    assert_eq!(s.spec.traffic.len(), 1, "default traffic: latest 100%");
}

#[test]
fn malformed_yaml_has_line_and_column() {
    let err =
        parse_manifests("bad.yaml", "apiVersion: v1\nkind: [Service\nmetadata: {}\n").unwrap_err();
    match &err {
        ParseError::Syntax { line, .. } => assert!(*line >= 2, "{err}"),
        other => panic!("expected syntax error, got {other:?}"),
    }
    assert!(err.to_string().starts_with("bad.yaml:"), "{err}");
}

#[test]
fn wrong_type_reports_path_and_line() {
    let text = KNATIVE_SERVICE.replace("containerPort: 8080", "containerPort: eighty");
    let errs = errors(&text);
    assert_eq!(
        errs[0].path,
        "spec.template.spec.containers[0].ports[0].containerPort"
    );
    assert_eq!(errs[0].location.unwrap().line, 22, "{errs:?}");
}

#[test]
fn unknown_fields_are_reported_with_path_and_line() {
    let text = KNATIVE_SERVICE.replace(
        "          env:",
        "          imagePullPolicyy: Always\n          env:",
    );
    let errs = errors(&text);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(
        errs[0].path,
        "spec.template.spec.containers[0].imagePullPolicyy"
    );
    assert!(errs[0].message.contains("unknown field"));
    assert_eq!(errs[0].location.unwrap().line, 23);
    // an unknown key is unknown whatever its value, empty ones included (as in Kubernetes)...
    let text = KNATIVE_SERVICE.replace("  traffic:", "  trafic: []\n  traffic:");
    assert_eq!(errors(&text)[0].path, "spec.trafic");
    // ...while empty values of known fields (kubectl emits `resources: {}`) are fine
    let text = KNATIVE_SERVICE.replace("  traffic:", "  template2: null\n  traffic:");
    assert_eq!(errors(&text)[0].path, "spec.template2");
    let text = KNATIVE_SERVICE
        .replace(
            "          env:",
            "          volumeMounts: []\n          env:",
        )
        .replace(
            "  labels:",
            "  annotations: {}\n  creationTimestamp: null\n  labels:",
        );
    assert!(parse_manifests("x", &text).is_ok());
    let text = KNATIVE_SERVICE.replace("  traffic:", "  trafic: [1]\n  traffic:");
    assert_eq!(errors(&text)[0].path, "spec.trafic");
}

#[test]
fn traffic_rules() {
    let text = KNATIVE_SERVICE.replace("percent: 20", "percent: 30");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.path == "spec.traffic" && e.message.contains("sum to 110")),
        "{errs:?}"
    );

    let text = KNATIVE_SERVICE.replace("      percent: 80", "      percent: 80\n      tag: old");
    let errs = errors(&text);
    assert!(
        errs.iter()
            .any(|e| e.path == "spec.traffic[1].tag" && e.message.contains("unique")),
        "{errs:?}"
    );

    let text = KNATIVE_SERVICE.replace("tag: old", "tag: Old_tag");
    assert_eq!(errors(&text)[0].path, "spec.traffic[1].tag");

    let text = KNATIVE_SERVICE.replace("percent: 20", "percent: 120");
    let errs = errors(&text);
    assert!(
        errs.iter().any(|e| e.path == "spec.traffic[1].percent"),
        "{errs:?}"
    );
}

#[test]
fn revision_name_prefix_and_ports() {
    let text = KNATIVE_SERVICE.replace("name: hello-world", "name: other-world");
    let errs = errors(&text);
    assert_eq!(errs[0].path, "spec.template.metadata.name");
    assert!(errs[0].message.contains("must start with \"hello-\""));

    let text = KNATIVE_SERVICE.replace(
        "            - containerPort: 8080",
        "            - containerPort: 8080\n            - containerPort: 8081",
    );
    assert_eq!(
        errors(&text)[0].path,
        "spec.template.spec.containers[0].ports"
    );

    let text = KNATIVE_SERVICE.replace(
        "- containerPort: 8080",
        "- containerPort: 8080\n              name: grpc",
    );
    assert_eq!(
        errors(&text)[0].path,
        "spec.template.spec.containers[0].ports[0].name"
    );
}

#[test]
fn api_version_and_kind_are_checked() {
    let errs = errors(&KNATIVE_SERVICE.replace("serving.knative.dev/v1", "apps/v1"));
    assert_eq!(errs[0].path, "apiVersion");
    let errs = errors(&KNATIVE_SERVICE.replace("kind: Service", "kind: Deployment"));
    assert_eq!(errs[0].path, "kind");
}

#[test]
fn process_runtime_needs_a_command() {
    let text = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: p}
spec:
  template:
    spec:
      runtimeClassName: process
      containers:
        - env: [{name: A, value: b}]
"#;
    let errs = errors(text);
    assert_eq!(errs[0].path, "spec.template.spec.containers[0].command");
}

#[test]
fn decode_object_checks_url_kind() {
    let v: serde_json::Value = serde_json::json!({"kind": "Route", "metadata": {"name": "r"}});
    let errs = decode_object(Some(Kind::Service), v).unwrap_err();
    assert_eq!(errs[0].path, "kind");
}

#[test]
fn list_documents_expand() {
    let text = format!(
        "apiVersion: v1\nkind: List\nitems:\n{}",
        KNATIVE_SERVICE
            .trim_start()
            .lines()
            .enumerate()
            .map(|(i, l)| if i == 0 {
                format!("- {l}\n")
            } else {
                format!("  {l}\n")
            })
            .collect::<String>()
    );
    let objs = parse_manifests("list.yaml", &text).unwrap();
    assert!(matches!(&objs[0], Object::Service(Service { .. })));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
        let _ = parse_manifests("fuzz", &s);
    }

    #[test]
    fn mutated_manifests_never_panic(cut in 0usize..900, insert in "[ :\\-\\[\\]{}a-z0-9\n]{0,12}") {
        let mut text = KNATIVE_SERVICE.to_string();
        let at = cut.min(text.len());
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        text.insert_str(at, &insert);
        let _ = parse_manifests("fuzz", &text);
    }
}

const CONTAINER_FAULTS: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {name: hello}
spec:
  template:
    spec:
      containers:
        - image: example/hello
          ports: [{containerPort: 8080, name: http1}]
          resources:
            limits: {memory: 12Xi, cpu: "0"}
            requests: {memory: 1Gi}
          readinessProbe:
            httpGet: {path: /ready, port: admin}
            periodSeconds: 0
          livenessProbe:
            tcpSocket: {port: 8080}
            exec: {command: []}
            successThreshold: 2
          startupProbe:
            periodSeconds: 0
"#;

#[test]
fn resources_and_probes_are_validated_with_paths() {
    let errs = errors(CONTAINER_FAULTS);
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    let c = "spec.template.spec.containers[0]";
    for expected in [
        format!("{c}.resources.limits.memory"),
        format!("{c}.resources.limits.cpu"),
        format!("{c}.readinessProbe.httpGet.port"),
        format!("{c}.livenessProbe"),
        format!("{c}.livenessProbe.exec.command"),
        format!("{c}.livenessProbe.successThreshold"),
        format!("{c}.startupProbe"),
        format!("{c}.startupProbe.periodSeconds"),
    ] {
        assert!(
            paths.contains(&expected.as_str()),
            "{expected} missing in {paths:?}"
        );
    }
    assert!(
        !paths.contains(&format!("{c}.readinessProbe.periodSeconds").as_str()),
        "readiness may probe with period 0 (Knative)"
    );
    let memory = errs
        .iter()
        .find(|e| e.path.ends_with("limits.memory"))
        .unwrap();
    assert!(memory.message.contains("128Mi"), "{}", memory.message);
}

/// A Service whose template sets the three request timeouts.
fn with_timeouts(timeout: i64, response_start: i64, idle: i64) -> String {
    format!(
        r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata: {{name: t}}
spec:
  template:
    spec:
      timeoutSeconds: {timeout}
      responseStartTimeoutSeconds: {response_start}
      idleTimeoutSeconds: {idle}
      containers:
        - image: x
"#
    )
}

#[test]
fn request_timeouts_out_of_range_are_rejected_with_their_paths() {
    let errs = errors(&with_timeouts(601, -1, 601));
    let found: Vec<(&str, &str)> = errs
        .iter()
        .map(|e| (e.path.as_str(), e.message.as_str()))
        .collect();
    let spec = "spec.template.spec";
    assert_eq!(
        found,
        [
            (
                format!("{spec}.timeoutSeconds").as_str(),
                "601 is out of range; allowed 0 to 600 seconds"
            ),
            (
                format!("{spec}.responseStartTimeoutSeconds").as_str(),
                "-1 is out of range; allowed 0 to 600 seconds"
            ),
            (
                format!("{spec}.idleTimeoutSeconds").as_str(),
                "601 is out of range; allowed 0 to 600 seconds"
            ),
        ]
    );
}

#[test]
fn response_start_and_idle_may_exceed_timeout_seconds_as_in_knative() {
    // Knative's webhook checks only timeoutSeconds against its maximum
    // (pkg/apis/serving/v1/revision_validation.go, validateTimeoutSeconds); the two others
    // just never outlast it. A manifest Knative accepts is accepted here too.
    let Object::Service(s) = one(&with_timeouts(10, 20, 30)) else {
        panic!("not a service")
    };
    let timeouts = crate::networking::RequestTimeouts::of(&s.spec.template.spec);
    assert_eq!(timeouts.total, std::time::Duration::from_secs(10));
    assert_eq!(timeouts.response_start, std::time::Duration::from_secs(10));
    assert_eq!(timeouts.idle, Some(std::time::Duration::from_secs(30)));
}

/// Issue #13, 10: a 58-character service name would give 64-character revision names; a
/// pids limit must be a count.
#[test]
fn names_that_cannot_name_revisions_and_bad_pids_limits_are_refused() {
    let svc = |name: &str, annotation: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: {name}}}\nspec:\n  template:\n    metadata:\n      annotations: {{{annotation}}}\n    spec:\n      containers: [{{image: x.example/app}}]\n"
        )
    };
    let fits = "a".repeat(57);
    one(&svc(&fits, ""));
    let long = "a".repeat(58);
    let errs = errors(&svc(&long, ""));
    assert_eq!(errs[0].path, "metadata.name", "{errs:?}");
    assert!(errs[0].message.contains("at most 57"), "{errs:?}");
    for bad in ["\"0\"", "\"-1\"", "lots", "\"99999999\""] {
        let errs = errors(&svc("p", &format!("nimbus.dev/pids-limit: {bad}")));
        assert_eq!(
            errs[0].path, "spec.template.metadata.annotations[nimbus.dev/pids-limit]",
            "{bad}: {errs:?}"
        );
    }
    one(&svc("p", "nimbus.dev/pids-limit: \"100\""));
}

/// Issue #13, 5: every securityContext field is honoured by the chosen runtime or refused with
/// its path, never accepted and ignored.
#[test]
fn security_context_fields_are_honoured_or_refused_per_runtime() {
    let svc = |runtime: &str, pod: &str, container: &str| {
        let program = match runtime {
            "process" => "command: [/bin/true]",
            _ => "image: example.com/app",
        };
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {{name: p}}\nspec:\n  template:\n    metadata:\n      annotations: {{nimbus.dev/runtime: {runtime}}}\n    spec:\n      securityContext: {{{pod}}}\n      containers:\n        - {program}\n          securityContext: {{{container}}}\n"
        )
    };
    let pod_path = "spec.template.spec.securityContext";
    let container_path = "spec.template.spec.containers[0].securityContext";
    // Knative's secure defaults, accepted everywhere: each runtime meets them.
    let restricted = "runAsNonRoot: true, allowPrivilegeEscalation: false, \
                      capabilities: {drop: [ALL]}, privileged: false";
    for runtime in ["process", "oci", "wasm"] {
        one(&svc(runtime, "", restricted));
        one(&svc(runtime, "", ""));
    }
    for runtime in ["process", "oci"] {
        one(&svc(
            runtime,
            "runAsUser: 1000, runAsGroup: 1000, supplementalGroups: [5]",
            "runAsUser: 7",
        ));
        one(&svc(runtime, "seccompProfile: {type: Unconfined}", ""));
    }
    one(&svc(
        "oci",
        "seccompProfile: {type: RuntimeDefault}",
        "capabilities: {add: [NET_ADMIN]}, readOnlyRootFilesystem: true, allowPrivilegeEscalation: true",
    ));
    one(&svc(
        "wasm",
        "seccompProfile: {type: RuntimeDefault}",
        "readOnlyRootFilesystem: true",
    ));
    let refused = [
        (
            "process",
            "",
            "capabilities: {add: [NET_ADMIN]}",
            "capabilities",
            "grants no capabilities",
        ),
        (
            "process",
            "",
            "allowPrivilegeEscalation: true",
            "allowPrivilegeEscalation",
            "no-new-privileges",
        ),
        (
            "process",
            "",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFilesystem",
            "read-only",
        ),
        (
            "process",
            "seccompProfile: {type: RuntimeDefault}",
            "",
            "seccompProfile",
            "does not filter",
        ),
        (
            "oci",
            "",
            "privileged: true",
            "privileged",
            "never runs privileged",
        ),
        (
            "oci",
            "",
            "seccompProfile: {type: Localhost, localhostProfile: x.json}",
            "seccompProfile",
            "Localhost",
        ),
        (
            "oci",
            "",
            "capabilities: {add: [CAP_NOPE]}",
            "capabilities.add[0]",
            "not a Linux capability",
        ),
        (
            "oci",
            "",
            "seLinuxOptions: {level: s0}",
            "seLinuxOptions",
            "SELinux",
        ),
        (
            "oci",
            "",
            "procMount: Unmasked",
            "procMount",
            "default masks",
        ),
        ("oci", "fsGroup: 5", "", "fsGroup", "group of volume files"),
        (
            "oci",
            "sysctls: [{name: net.core.somaxconn, value: '1024'}]",
            "",
            "sysctls",
            "sysctls",
        ),
        (
            "wasm",
            "",
            "runAsUser: 1000",
            "runAsUser",
            "no operating-system user",
        ),
        (
            "wasm",
            "supplementalGroups: [1]",
            "",
            "supplementalGroups",
            "no groups",
        ),
    ];
    for (runtime, pod, container, field, message) in refused {
        let errs = errors(&svc(runtime, pod, container));
        let path = if pod.is_empty() {
            container_path
        } else {
            pod_path
        };
        assert_eq!(errs.len(), 1, "{runtime} {pod} {container}: {errs:?}");
        assert_eq!(errs[0].path, format!("{path}.{field}"), "{errs:?}");
        assert!(errs[0].message.contains(message), "{runtime}: {errs:?}");
    }
}

/// Found by the `manifest` fuzz target (fuzz/regressions/manifest): keys of a thousand
/// characters were accepted, and the object written as JSON could not be read back. Label and
/// annotation keys and resource names are qualified names, as in Kubernetes.
#[test]
fn label_annotation_and_resource_keys_are_qualified_names() {
    let svc = |labels: &str, annotations: &str, resource: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: p\n  labels: {{{labels}}}\n  annotations: {{{annotations}}}\nspec:\n  template:\n    metadata:\n      labels: {{{labels}}}\n    spec:\n      containers:\n        - image: example.com/app\n          resources: {{limits: {{{resource}: \"1\"}}}}\n"
        )
    };
    one(&svc(
        "app.kubernetes.io/name: x",
        "example.com/note: note",
        "nvidia.com/gpu",
    ));
    let long = "k".repeat(1024);
    let errs = errors(&svc(&format!("{long}: x"), "a: b", "cpu"));
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["metadata.labels", "spec.template.metadata.labels"],
        "{errs:?}"
    );
    let errs = errors(&svc("a: b", &format!("{long}: x"), "cpu"));
    assert_eq!(errs[0].path, "metadata.annotations", "{errs:?}");
    let errs = errors(&svc("a: b", "a: b", &"r".repeat(1023)));
    assert_eq!(
        errs[0].path, "spec.template.spec.containers[0].resources.limits",
        "{errs:?}"
    );
    let errs =
        errors(&svc("a: b", "a: b", "cpu").replace("labels: {a: b}", "labels: {a: \"-bad\"}"));
    assert_eq!(errs[0].path, "metadata.labels[a]", "{errs:?}");
    // The core kinds share the rule.
    let secret =
        format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: s, labels: {{{long}: x}}}}\n");
    assert_eq!(errors(&secret)[0].path, "metadata.labels");
}

// === KEDA's kinds ===

#[test]
fn keda_scaled_object_from_kedas_docs_gets_kedas_defaults() {
    let yaml = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: redis-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  triggers:
  - type: redis
    metadata:
      address: localhost:6379
      listName: mylist
      listLength: "5"
      activationListLength: "5"
      enableTLS: "false"
      databaseIndex: "0"
"#;
    let obj = one(yaml);
    let Object::ScaledObject(so) = obj else {
        panic!("{obj:?}")
    };
    assert_eq!(so.spec.polling_interval, Some(30));
    assert_eq!(so.spec.cooldown_period, Some(300));
    assert_eq!(so.spec.min_replica_count, Some(0));
    assert_eq!(so.spec.max_replica_count, Some(100));
}

#[test]
fn keda_scaled_object_refusals_name_their_fields() {
    let yaml = r#"
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: so
spec:
  scaleTargetRef:
    kind: Deployment
    name: my-deployment
  minReplicaCount: 5
  maxReplicaCount: 2
  idleReplicaCount: 7
  fallback:
    failureThreshold: 3
    replicas: 6
  advanced:
    horizontalPodAutoscalerConfig:
      name: x
  triggers:
  - type: rabbitmq
    metadata:
      queueName: q
      mode: MessageRate
      value: "100"
"#;
    let errors: Vec<String> = errors(yaml).into_iter().map(|e| e.path).collect();
    for path in [
        "spec.scaleTargetRef",
        "spec.minReplicaCount",
        "spec.idleReplicaCount",
        "spec.fallback",
        "spec.advanced.horizontalPodAutoscalerConfig",
        "spec.triggers[0].metadata.mode",
    ] {
        assert!(errors.iter().any(|p| p == path), "{path} not in {errors:?}");
    }
}

#[test]
fn keda_trigger_authentication_env_is_refused_secrets_accepted() {
    let yaml = r#"
apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-trigger-auth-redis-secret
spec:
  secretTargetRef:
  - parameter: password
    name: redis-secret
    key: redis_password
  env:
  - parameter: host
    name: RABBITMQ_HOST
"#;
    let paths: Vec<String> = errors(yaml).into_iter().map(|e| e.path).collect();
    assert_eq!(paths, ["spec.env"]);
}
