//! `nimbus install` against a real Kubernetes cluster (see `nimbus_testkit::kube` for how it
//! is found; skipped without one, failing under CI): the CRDs are Established, unchanged
//! Knative YAML is accepted and printed with Knative's columns, a Revision's spec is
//! immutable, a second install changes nothing, and the Nimbus image runs as a pod.
//!
//! The operator's and router's Deployments are created but not awaited here: they run
//! `nimbus operator` / `nimbus router`, tested with those commands.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use nimbus_testkit::kube::{Cluster, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

const CRDS: [&str; 6] = [
    "services.serving.knative.dev",
    "configurations.serving.knative.dev",
    "revisions.serving.knative.dev",
    "routes.serving.knative.dev",
    "podautoscalers.autoscaling.internal.knative.dev",
    "ingresses.networking.internal.knative.dev",
];

fn install(cluster: &Cluster, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("install")
        .args(extra)
        .arg("--kubeconfig")
        .arg(&cluster.kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .expect("running nimbus install")
}

fn install_ok(cluster: &Cluster) -> String {
    let out = install(cluster, &["--apply"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "nimbus install --apply: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What says each object the install manages was written: its `resourceVersion`, except for
/// Deployments, whose status kube-controller-manager keeps writing (a new resourceVersion each
/// time) while their pods start: theirs is the spec's `generation`.
fn versions(cluster: &Cluster) -> String {
    let get = |what: &str, namespaced: bool, field: &str| {
        let jsonpath =
            format!("jsonpath={{range .items[*]}}{{.kind}}/{{.metadata.name}}={{{field}}} {{end}}");
        let mut args = vec!["get", what];
        if namespaced {
            args.extend(["-n", "nimbus-system"]);
        } else {
            args.extend(["-l", "app.kubernetes.io/managed-by=nimbus"]);
        }
        args.extend(["-o", &jsonpath]);
        cluster.kubectl_ok(&args, None)
    };
    [
        get("crd", false, ".metadata.resourceVersion"),
        get(
            "services,serviceaccounts,roles,rolebindings",
            true,
            ".metadata.resourceVersion",
        ),
        get("deployments", true, ".metadata.generation"),
    ]
    .concat()
}

fn header(table: &str) -> Vec<&str> {
    table
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

const REVISION: &str = r#"apiVersion: serving.knative.dev/v1
kind: Revision
metadata:
  name: immutable-00001
spec:
  containers:
    - image: example.com/hello:1
"#;

#[test]
fn install_applies_the_crds_and_knative_yaml_works_with_kubectl() {
    let Some(cluster) = Cluster::find() else {
        return;
    };
    let first = install_ok(&cluster);
    crds_are_established(&cluster, &first);
    service_accounts_have_their_roles(&cluster);

    let before = versions(&cluster);
    let second = install_ok(&cluster);
    assert_eq!(second, first, "the same lines again");
    assert_eq!(
        versions(&cluster),
        before,
        "a second install writes nothing"
    );

    let ns = cluster.namespace("nimbus-install");
    knative_yaml_is_accepted_as_is(&cluster, &ns.name);
    a_revision_spec_never_changes(&cluster, &ns.name);
}

fn crds_are_established(cluster: &Cluster, install_output: &str) {
    for crd in CRDS {
        let line =
            format!("customresourcedefinition.apiextensions.k8s.io/{crd} serverside-applied");
        assert!(
            install_output.contains(&line),
            "{line} not in:\n{install_output}"
        );
        assert!(
            install_output.contains(&format!("{crd} condition met")),
            "{install_output}"
        );
        let jsonpath = "jsonpath={.status.conditions[?(@.type=='Established')].status}";
        let established = cluster.kubectl_ok(&["get", "crd", crd, "-o", jsonpath], None);
        assert_eq!(established, "True", "{crd}");
    }
    let router = "deployment.apps/nimbus-router serverside-applied";
    assert!(install_output.contains(router), "{install_output}");
}

/// What `kubectl auth can-i` answers for a service account of nimbus-system.
fn service_accounts_have_their_roles(cluster: &Cluster) {
    let operator = "nimbus-operator";
    let router = "nimbus-router";
    let ingresses = "ingresses.networking.internal.knative.dev";
    for (account, args, allowed) in [
        (
            operator,
            "update revisions.serving.knative.dev --subresource=status",
            "yes",
        ),
        (
            operator,
            "patch deployments.apps --subresource=scale",
            "yes",
        ),
        (
            operator,
            "create leases.coordination.k8s.io -n nimbus-system",
            "yes",
        ),
        (
            operator,
            "create leases.coordination.k8s.io -n default",
            "no",
        ),
        (
            router,
            &format!("update {ingresses} --subresource=status"),
            "yes",
        ),
        (router, &format!("update {ingresses}"), "no"),
    ] {
        let user = format!("--as=system:serviceaccount:nimbus-system:{account}");
        let mut argv = vec!["auth", "can-i", user.as_str()];
        argv.extend(args.split(' '));
        let out = cluster.kubectl(&argv, None);
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert_eq!(answer, allowed, "{account}: can-i {args}");
    }
}

/// `examples/hello-service.yaml`, unchanged, with Knative's columns and nothing pruned.
fn knative_yaml_is_accepted_as_is(cluster: &Cluster, ns: &str) {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-service.yaml");
    let example = example.to_str().unwrap();
    let applied = cluster.kubectl_ok(&["apply", "-n", ns, "-f", example], None);
    assert!(
        applied.contains("service.serving.knative.dev/hello created"),
        "{applied}"
    );
    let table = cluster.kubectl_ok(&["get", "ksvc", "-n", ns], None);
    let columns = [
        "NAME",
        "URL",
        "LATESTCREATED",
        "LATESTREADY",
        "READY",
        "REASON",
    ];
    assert_eq!(header(&table), columns, "{table}");
    assert!(
        table.lines().nth(1).unwrap_or("").starts_with("hello"),
        "{table}"
    );
    let jsonpath = "jsonpath={.spec.template.metadata.annotations.nimbus\\.dev/runtime} \
                    {.spec.template.spec.containers[0].args}";
    let stored = cluster.kubectl_ok(&["get", "ksvc", "hello", "-n", ns, "-o", jsonpath], None);
    assert_eq!(
        stored, r#"process ["sample-function"]"#,
        "nothing was pruned"
    );
    let all = cluster.kubectl_ok(&["get", "knative", "-n", ns, "-o", "name"], None);
    assert!(
        all.contains("service.serving.knative.dev/hello"),
        "the knative category: {all}"
    );
}

/// The CEL rule refuses a changed spec with the embedded API server's words; metadata may
/// change.
fn a_revision_spec_never_changes(cluster: &Cluster, ns: &str) {
    cluster.kubectl_ok(&["apply", "-n", ns, "-f", "-"], Some(REVISION));
    let table = cluster.kubectl_ok(&["get", "rev", "-n", ns], None);
    let columns = [
        "NAME",
        "CONFIG NAME",
        "GENERATION",
        "READY",
        "REASON",
        "ACTUAL REPLICAS",
        "DESIRED REPLICAS",
    ];
    assert_eq!(header(&table), columns, "{table}");
    let changed = REVISION.replace("hello:1", "hello:2");
    let out = cluster.kubectl(&["apply", "-n", ns, "-f", "-"], Some(&changed));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a changed spec was accepted");
    assert!(stderr.contains("Immutable fields changed"), "{stderr}");
    assert!(
        stderr.contains("A Revision's spec never changes once created"),
        "{stderr}"
    );
    let labelled = REVISION.replace(
        "  name: immutable-00001\n",
        "  name: immutable-00001\n  labels: {a: b}\n",
    );
    cluster.kubectl_ok(&["apply", "-n", ns, "-f", "-"], Some(&labelled));
}

#[test]
fn printed_manifests_are_kubectl_apply_able() {
    let Some(cluster) = Cluster::find() else {
        return;
    };
    let out = install(&cluster, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    let documents = yaml.lines().filter(|l| *l == "---").count();
    let dry = cluster.kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
            "-",
        ],
        Some(&yaml),
    );
    assert!(
        dry.contains("namespace/nimbus-system serverside-applied (server dry run)"),
        "{dry}"
    );
    assert!(
        dry.contains("service/nimbus-router serverside-applied (server dry run)"),
        "{dry}"
    );
    assert_eq!(
        dry.lines().count(),
        documents,
        "one object per document: {dry}"
    );
    // Client-side apply records each object in an annotation of at most 256 KiB.
    let client_side = cluster.kubectl_ok(&["apply", "--dry-run=server", "-f", "-"], Some(&yaml));
    let applied = client_side
        .lines()
        .filter(|l| l.ends_with("(server dry run)"));
    assert_eq!(applied.count(), documents, "{client_side}");
}

#[test]
fn the_nimbus_image_runs_as_a_pod() {
    let Some(cluster) = Cluster::find() else {
        return;
    };
    cluster.load_nimbus_image(std::path::Path::new(env!("CARGO_BIN_EXE_nimbus")));
    let ns = cluster.namespace("nimbus-image");
    let image = nimbus_kube::install::default_image();
    let pod = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: nimbus-version
spec:
  restartPolicy: Never
  securityContext:
    runAsNonRoot: true
    seccompProfile: {{type: RuntimeDefault}}
  containers:
    - name: nimbus
      image: {image}
      imagePullPolicy: Never
      args: ["--version"]
      securityContext:
        allowPrivilegeEscalation: false
        readOnlyRootFilesystem: true
        capabilities: {{drop: [ALL]}}
"#
    );
    cluster.kubectl_ok(&["apply", "-n", &ns.name, "-f", "-"], Some(&pod));
    let jsonpath = "jsonpath={.status.phase} {.status.containerStatuses[0].state.waiting.reason}";
    let phase = wait_for("the pod to finish", Duration::from_secs(60), || {
        let out = cluster.kubectl_ok(
            &[
                "get",
                "pod",
                "nimbus-version",
                "-n",
                &ns.name,
                "-o",
                jsonpath,
            ],
            None,
        );
        let done = out.starts_with("Succeeded")
            || out.starts_with("Failed")
            || out.contains("ErrImageNeverPull");
        done.then_some(out)
    });
    let logs = cluster.kubectl_ok(&["logs", "nimbus-version", "-n", &ns.name], None);
    assert!(phase.starts_with("Succeeded"), "{phase}: {logs}");
    assert_eq!(logs.trim(), format!("nimbus {}", env!("CARGO_PKG_VERSION")));
}
