//! The real kubectl, unmodified, against the real `nimbus serve`: discovery, OpenAPI, tables,
//! client- and server-side apply, wait, patch, watch, explain, delete, auth, and bad input
//! rejected the way Kubernetes rejects it. Skipped (with a message) when kubectl is not on the
//! PATH, except under `CI`, where that fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nimbus_testkit::{Nimbus, row};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

fn manifest(name: &str, target: &str, extra_spec: &str) -> String {
    format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  template:
    spec:
      runtimeClassName: process
      containers:
        - command: ["{BIN}"]
          args: ["sample-function"]
          env:
            - name: TARGET
              value: "{target}"
{extra_spec}"#
    )
}

/// kubectl with this server's kubeconfig, a private `$HOME` (discovery cache) and a timeout.
struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: PathBuf,
}

impl Kubectl {
    fn find() -> Option<PathBuf> {
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=60s")
            .args(args)
            .env("HOME", &self.home)
            .env_remove("KUBECONFIG");
        cmd
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let input = stdin.unwrap_or("").to_string();
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        child.wait_with_output().expect("kubectl output")
    }

    /// Run; it must succeed. Returns stdout.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let (stdout, stderr) = texts(&out);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed\nstdout: {stdout}\nstderr: {stderr}"
        );
        println!("$ kubectl {}\n{stdout}", args.join(" "));
        stdout
    }

    /// Run; it must fail. Returns stderr.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run(args, stdin);
        let (stdout, stderr) = texts(&out);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded\nstdout: {stdout}"
        );
        println!("$ kubectl {} (fails)\n{stderr}", args.join(" "));
        stderr
    }

    /// `kubectl get <args> -w` in the background; its stdout lines arrive on the channel.
    fn watch(&self, args: &[&str]) -> (Child, mpsc::Receiver<String>) {
        let mut child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("running kubectl get -w");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[kubectl -w] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (child, rx)
    }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Lines from a watch until one satisfies `ok`, or the deadline.
fn wait_line(rx: &mpsc::Receiver<String>, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if ok(&line) => return line,
            Ok(_) => continue,
            Err(e) => panic!("no matching watch line within {timeout:?}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_drives_nimbus() {
    let Some(bin) = Kubectl::find() else {
        nimbus_testkit::skip("kubectl is not on the PATH; install it to run this test");
        return;
    };
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let kubeconfig = nimbus.write_kubeconfig().expect("nimbus kubeconfig");
    let home = nimbus.data_dir().join("kubectl-home");
    std::fs::create_dir_all(&home).unwrap();
    let k = Kubectl {
        bin,
        kubeconfig,
        home,
    };
    let wait = "--timeout=60s";

    discovery(&k);
    let port = nimbus.http_port();

    // Client-side apply creates; wait; tables; YAML.
    let v1 = manifest("hello", "one", "");
    let out = k.ok(&["apply", "-f", "-"], Some(&v1));
    assert!(
        out.contains("service.serving.knative.dev/hello created"),
        "{out}"
    );
    let out = k.ok(&["wait", "--for=condition=Ready", "ksvc/hello", wait], None);
    assert!(
        out.contains("service.serving.knative.dev/hello condition met"),
        "{out}"
    );
    let table = k.ok(&["get", "ksvc"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "URL",
            "LATESTCREATED",
            "LATESTREADY",
            "READY",
            "REASON"
        ]
    );
    let url = format!("http://hello.default.localhost:{port}");
    assert_eq!(
        row(&table, "hello")[..5],
        ["hello", url.as_str(), "hello-00001", "hello-00001", "True"]
    );
    let yaml = k.ok(&["get", "ksvc", "hello", "-o", "yaml"], None);
    assert!(
        yaml.contains("kind: Service") && yaml.contains("latestReadyRevisionName: hello-00001"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("managedFields"),
        "kubectl hides managedFields: {yaml}"
    );
    let revs = k.ok(&["get", "revisions"], None);
    assert!(revs.starts_with("NAME"), "{revs}");
    assert!(
        revs.contains("CONFIG NAME") && revs.contains("DESIRED REPLICAS"),
        "{revs}"
    );
    assert_eq!(
        row(&revs, "hello-00001")[..4],
        ["hello-00001", "hello", "1", "True"]
    );
    let names = k.ok(&["get", "ksvc", "-l", "app=hello", "-o", "name"], None);
    assert_eq!(names.trim(), "service.serving.knative.dev/hello");
    assert_eq!(
        k.ok(&["get", "ksvc", "-l", "app=nope", "-o", "name"], None)
            .trim(),
        ""
    );

    // Re-applying is a no-op on the server (kubectl says "configured": its merge patch repeats
    // the containers list, which the server defaults); server-side apply then takes over the
    // fields client-side apply owned and changes the target.
    let rv = k.ok(
        &[
            "get",
            "ksvc",
            "hello",
            "-o",
            "jsonpath={.metadata.generation}",
        ],
        None,
    );
    k.ok(&["apply", "-f", "-"], Some(&v1));
    let again = k.ok(
        &[
            "get",
            "ksvc",
            "hello",
            "-o",
            "jsonpath={.metadata.generation}",
        ],
        None,
    );
    assert_eq!(rv, again);
    let out = k.ok(
        &["apply", "--server-side", "-f", "-"],
        Some(&manifest("hello", "two", "")),
    );
    assert!(
        out.contains("service.serving.knative.dev/hello serverside-applied"),
        "{out}"
    );
    k.ok(
        &[
            "wait",
            "--for=jsonpath={.status.latestReadyRevisionName}=hello-00002",
            "ksvc/hello",
            wait,
        ],
        None,
    );
    let managers = k.ok(
        &[
            "get",
            "ksvc",
            "hello",
            "-o",
            "jsonpath={.metadata.managedFields[*].manager}",
        ],
        None,
    );
    assert!(managers.contains("kubectl"), "{managers}");
    // Another manager changing the same field conflicts, as in Kubernetes; --force-conflicts wins.
    let other = manifest("hello", "three", "");
    let err = k.fails(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        Some(&other),
    );
    assert!(err.contains("conflict with \"kubectl\""), "{err}");
    assert!(err.contains(".spec.template.spec.containers"), "{err}");
    let out = k.ok(
        &[
            "apply",
            "--server-side",
            "--field-manager=other",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&other),
    );
    assert!(out.contains("serverside-applied"), "{out}");
    k.ok(
        &[
            "wait",
            "--for=jsonpath={.status.latestReadyRevisionName}=hello-00003",
            "ksvc/hello",
            wait,
        ],
        None,
    );
    let revs = k.ok(&["get", "rev", "--chunk-size=1", "-o", "name"], None);
    assert_eq!(revs.lines().count(), 3, "paged with limit/continue: {revs}");

    // `get -w` sees a merge patch of the traffic.
    let (mut watcher, lines) = k.watch(&["get", "ksvc", "-w"]);
    wait_line(&lines, Duration::from_secs(30), |l| l.starts_with("hello "));
    let traffic = r#"{"spec":{"traffic":[{"revisionName":"hello-00001","percent":50,"tag":"old"},{"latestRevision":true,"percent":50}]}}"#;
    let out = k.ok(
        &["patch", "ksvc", "hello", "--type", "merge", "-p", traffic],
        None,
    );
    assert!(
        out.contains("service.serving.knative.dev/hello patched"),
        "{out}"
    );
    wait_line(&lines, Duration::from_secs(30), |l| l.starts_with("hello "));
    let _ = watcher.kill();
    let _ = watcher.wait();
    let percents = k.ok(
        &[
            "get",
            "ksvc",
            "hello",
            "-o",
            "jsonpath={.spec.traffic[*].percent}",
        ],
        None,
    );
    assert_eq!(percents.trim(), "50 50");

    // explain reads the OpenAPI v3 generated from the Rust types.
    let out = k.ok(&["explain", "ksvc.spec.traffic"], None);
    assert!(
        out.contains("KIND:       Service") || out.contains("KIND:    Service"),
        "{out}"
    );
    assert!(
        out.contains("percent") && out.contains("revisionName") && out.contains("latestRevision"),
        "{out}"
    );

    bad_input(&k, &v1);
    revision_is_immutable(&k);
    internal_kinds(&k);

    // Without the token: refused.
    let err = k.fails(&["--token=wrong", "get", "ksvc"], None);
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );
    let resp = reqwest::get(format!("{}/apis", nimbus.api_url()))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        (status["kind"].as_str(), status["code"].as_u64()),
        (Some("Status"), Some(401))
    );
    let health = reqwest::get(format!("{}/healthz", nimbus.api_url()))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);

    // The nimbus CLI reads the same kubeconfig.
    let out = Command::new(BIN)
        .args(["get", "ksvc", "--kubeconfig"])
        .arg(&k.kubeconfig)
        .env_remove("NIMBUS_SERVER")
        .env_remove("NIMBUS_TOKEN")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));

    let out = k.ok(&["delete", "ksvc", "hello"], None);
    assert!(
        out.contains("service.serving.knative.dev \"hello\" deleted"),
        "{out}"
    );
    assert!(k.ok(&["get", "ksvc", "-o", "name"], None).trim().is_empty());
    assert!(
        k.fails(&["get", "ksvc", "hello"], None)
            .contains("NotFound")
    );
}

/// Version, resources with short names and categories.
fn discovery(k: &Kubectl) {
    let version = k.ok(&["version", "-o", "json"], None);
    assert!(version.contains("\"serverVersion\""), "{version}");
    let resources = k.ok(&["api-resources", "--api-group=serving.knative.dev"], None);
    for (name, short) in [
        ("services", "kservice,ksvc"),
        ("revisions", "rev"),
        ("routes", "rt"),
        ("configurations", "config,cfg"),
    ] {
        let r = row(&resources, name);
        assert_eq!(r[1], short, "{resources}");
    }
    let all = k.ok(
        &["api-resources", "--categories=knative", "-o", "name"],
        None,
    );
    // Knative Serving's four kinds and the four event sources.
    assert_eq!(all.lines().count(), 8, "{all}");
    // Every group: NAME SHORTNAMES APIVERSION NAMESPACED KIND.
    let resources = k.ok(&["api-resources"], None);
    for (name, short, api_version, kind) in [
        (
            "services",
            "kservice,ksvc",
            "serving.knative.dev/v1",
            "Service",
        ),
        (
            "configurations",
            "config,cfg",
            "serving.knative.dev/v1",
            "Configuration",
        ),
        ("revisions", "rev", "serving.knative.dev/v1", "Revision"),
        ("routes", "rt", "serving.knative.dev/v1", "Route"),
        (
            "podautoscalers",
            "kpa,pa",
            "autoscaling.internal.knative.dev/v1alpha1",
            "PodAutoscaler",
        ),
        (
            "ingresses",
            "kingress,king",
            "networking.internal.knative.dev/v1alpha1",
            "Ingress",
        ),
        (
            "redisstreamsources",
            "redisstream",
            "sources.knative.dev/v1alpha1",
            "RedisStreamSource",
        ),
        (
            "rabbitmqsources",
            "rmqsource",
            "sources.knative.dev/v1alpha1",
            "RabbitmqSource",
        ),
        (
            "redislistsources",
            "redislist",
            "sources.nimbus.dev/v1alpha1",
            "RedisListSource",
        ),
        (
            "natsjetstreamsources",
            "jetstreamsource",
            "sources.nimbus.dev/v1alpha1",
            "NatsJetStreamSource",
        ),
    ] {
        assert_eq!(
            row(&resources, name),
            [name, short, api_version, "true", kind],
            "{resources}"
        );
    }
    // The header, Knative's six kinds, the core group's secrets, configmaps and events, and
    // KEDA's scaledobjects and triggerauthentications, the four sources, Nimbus's jobs,
    // executions and schedules, and events again as events.k8s.io/v1.
    assert_eq!(resources.lines().count(), 20, "{resources}");
    let events: Vec<&str> = resources
        .lines()
        .filter(|l| l.starts_with("events "))
        .collect();
    assert_eq!(events.len(), 2, "{resources}");
    assert!(
        events.iter().any(|l| l.contains("events.k8s.io/v1")),
        "{resources}"
    );
    assert_eq!(
        row(&resources, "scaledobjects"),
        [
            "scaledobjects",
            "so",
            "keda.sh/v1alpha1",
            "true",
            "ScaledObject"
        ]
    );
    assert_eq!(
        row(&resources, "configmaps"),
        ["configmaps", "cm", "v1", "true", "ConfigMap"]
    );
    let internal = k.ok(
        &[
            "api-resources",
            "--categories=knative-internal",
            "-o",
            "name",
        ],
        None,
    );
    assert_eq!(
        internal.lines().collect::<Vec<_>>(),
        [
            "podautoscalers.autoscaling.internal.knative.dev",
            "ingresses.networking.internal.knative.dev"
        ],
        "{internal}"
    );
}

/// `kubectl edit`'s write, a replace of the whole object, cannot change a Revision's spec; its
/// labels still change.
fn revision_is_immutable(k: &Kubectl) {
    let json = k.ok(&["get", "rev", "hello-00001", "-o", "json"], None);
    let mut rev: serde_json::Value = serde_json::from_str(&json).unwrap();
    rev["spec"]["containers"][0]["env"][0]["value"] = "edited".into();
    let err = k.fails(&["replace", "-f", "-"], Some(&rev.to_string()));
    assert!(
        err.contains("The Revision \"hello-00001\" is invalid: spec: Forbidden: Immutable fields changed (-old +new): spec.containers[0].env[0].value"),
        "{err}"
    );
    let out = k.ok(&["label", "rev", "hello-00001", "edited=no"], None);
    assert!(
        out.contains("revision.serving.knative.dev/hello-00001 labeled"),
        "{out}"
    );
}

/// Knative's internal kinds: listed, applied, printed with their columns, explained, and read by
/// the nimbus CLI.
fn internal_kinds(k: &Kubectl) {
    k.ok(&["get", "kpa,kingress", "-A"], None);
    let pa = r#"apiVersion: autoscaling.internal.knative.dev/v1alpha1
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
    let out = k.ok(&["apply", "-f", "-"], Some(pa));
    assert!(
        out.contains("podautoscaler.autoscaling.internal.knative.dev/manual created"),
        "{out}"
    );
    let out = k.ok(&["apply", "--server-side", "-f", "-"], Some(pa));
    assert!(out.contains("serverside-applied"), "{out}");
    let table = k.ok(&["get", "kpa,kingress", "-A"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "DESIREDSCALE",
            "ACTUALSCALE",
            "READY",
            "REASON"
        ],
        "{table}"
    );
    assert!(
        table.contains("podautoscaler.autoscaling.internal.knative.dev/manual"),
        "{table}"
    );
    let explained = k.ok(&["explain", "kpa.spec"], None);
    assert!(
        explained.contains("KIND:       PodAutoscaler")
            && explained.contains("autoscaling.internal.knative.dev")
            && explained.contains("reachability")
            && explained.contains("scaleTargetRef"),
        "{explained}"
    );
    let explained = k.ok(&["explain", "kingress.spec.rules"], None);
    assert!(
        explained.contains("KIND:       Ingress") && explained.contains("hosts"),
        "{explained}"
    );
    let nimbus_get = |kind: &str| {
        let out = Command::new(BIN)
            .args(["get", kind, "--kubeconfig"])
            .arg(&k.kubeconfig)
            .env_remove("NIMBUS_SERVER")
            .env_remove("NIMBUS_TOKEN")
            .output()
            .unwrap();
        let (stdout, stderr) = texts(&out);
        assert!(out.status.success(), "nimbus get {kind}: {stderr}");
        println!("$ nimbus get {kind}\n{stdout}{stderr}");
        (stdout, stderr)
    };
    let (stdout, _) = nimbus_get("kpa");
    assert_eq!(
        row(&stdout, "NAME"),
        ["NAME", "DESIREDSCALE", "ACTUALSCALE", "READY", "REASON"]
    );
    row(&stdout, "manual");
    let (stdout, _) = nimbus_get("kingress");
    assert_eq!(row(&stdout, "NAME"), ["NAME", "READY", "REASON"]);
    let out = k.ok(&["delete", "kpa", "manual"], None);
    assert!(
        out.contains("podautoscaler.autoscaling.internal.knative.dev \"manual\" deleted"),
        "{out}"
    );
}

/// Unknown fields, wrong types, stale versions and malformed patches fail as in Kubernetes,
/// naming the field.
fn bad_input(k: &Kubectl, v1: &str) {
    let typo = manifest("typo", "x", "").replace("args:", "argz:");
    let err = k.fails(&["apply", "-f", "-"], Some(&typo));
    assert!(err.contains("The Service \"typo\" is invalid"), "{err}");
    assert!(
        err.contains("spec.template.spec.containers[0].argz"),
        "{err}"
    );
    assert!(k.fails(&["get", "ksvc", "typo"], None).contains("NotFound"));
    // issue #17: an unknown key with an empty value, below a container and in the pod spec,
    // refused under --validate=strict (the server's fieldValidation=Strict), warned under warn
    let empty = manifest("typo", "x", "").replace("args:", "enviroment: []\n          args:");
    let err = k.fails(&["apply", "--validate=strict", "-f", "-"], Some(&empty));
    assert!(
        err.contains("spec.template.spec.containers[0].enviroment"),
        "{err}"
    );
    let empty =
        manifest("typo", "x", "").replace("containers:", "containerz: []\n      containers:");
    let err = k.fails(&["apply", "--validate=strict", "-f", "-"], Some(&empty));
    assert!(err.contains("spec.template.spec.containerz"), "{err}");
    let out = k.run(
        &["apply", "--validate=warn", "--dry-run=server", "-f", "-"],
        Some(&empty),
    );
    let (stdout, stderr) = texts(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Warning: unknown field \"spec.template.spec.containerz\""),
        "{stdout}{stderr}"
    );
    assert!(k.fails(&["get", "ksvc", "typo"], None).contains("NotFound"));

    let wrong = manifest(
        "wrong",
        "x",
        "  traffic:\n    - latestRevision: true\n      percent: fifty\n",
    );
    let err = k.fails(&["apply", "-f", "-"], Some(&wrong));
    assert!(err.contains("spec.traffic[0].percent"), "{err}");

    let old = k.ok(&["get", "ksvc", "hello", "-o", "json"], None);
    k.ok(&["label", "ksvc", "hello", "touched=yes"], None);
    let err = k.fails(&["replace", "-f", "-"], Some(&old));
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );

    let err = k.fails(&["patch", "ksvc", "hello", "-p", r#"{"spec":{}}"#], None);
    assert!(
        err.contains("strategic-merge-patch+json is not supported"),
        "{err}"
    );
    let err = k.fails(
        &[
            "patch",
            "ksvc",
            "hello",
            "--type",
            "json",
            "-p",
            r#"[{"op":"frobnicate","path":"/spec"}]"#,
        ],
        None,
    );
    assert!(err.contains("BadRequest"), "{err}");
    let err = k.fails(
        &[
            "patch",
            "ksvc",
            "hello",
            "--type",
            "json",
            "-p",
            r#"[{"op":"test","path":"/spec/traffic","value":[]}]"#,
        ],
        None,
    );
    assert!(err.contains("Invalid") || err.contains("invalid"), "{err}");
    let err = k.fails(
        &[
            "patch",
            "ksvc",
            "hello",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"traffic":[{"percent":120}]}}"#,
        ],
        None,
    );
    assert!(
        err.contains("The Service \"hello\" is invalid") && err.contains("spec.traffic"),
        "{err}"
    );
    // Nothing above changed the service's spec.
    let _ = v1;
}
