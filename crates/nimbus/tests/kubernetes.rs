//! Kubernetes mode end to end, against a real cluster (`scripts/kube-cluster up`, or any
//! cluster named by `NIMBUS_KUBECONFIG`; skipped without one, failing under `CI`).
//!
//! The `nimbus` binary of this test run is loaded as the Nimbus image; `nimbus install
//! --apply --host-network` puts the CRDs, the operator and the router on the cluster (host
//! network: the test cluster has no kube-proxy, so pods reach the API server only as the
//! node does); Knative YAML goes in with kubectl; requests go to the in-cluster router on the
//! node's port.
//!
//! One test walks the whole story in order, because the operator is cluster-wide: the
//! example Service becomes Ready and serves; a second revision with an 80/20 split and a tag;
//! the runtime contract and single concurrency in pods; scale to zero and a request bringing
//! it back (the cold start is printed); crash-looping, unpullable and unschedulable pods
//! reported on the Revision; the CLI against the cluster; the operator pod deleted in the
//! middle of a rollout, and an operator out of the cluster (`--kubeconfig`) taking over the
//! Lease; `kubectl delete ksvc` removing every Deployment, Service and pod.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nimbus_kube::install::HOST_PORTS;
use nimbus_testkit::RouterClient;
use nimbus_testkit::kube::{Cluster, wait_for};
use nimbus_testkit::traffic::{assert_split, tally};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
/// Route hosts are `<service>.<namespace>.<domain>`.
const DOMAIN: &str = "example.com";

/// A `nimbus` child process, killed on drop, whose printed `http://ADDR` lines are known.
struct Process {
    child: Child,
    addrs: Vec<String>,
}

impl Process {
    /// Start `nimbus ARGS` and wait until it prints `ready_line`, collecting the addresses it
    /// printed before.
    fn start(args: &[&str], ready_line: &str) -> Self {
        let mut process = Self {
            child: Command::new(BIN)
                .args(args)
                .env("NIMBUS_LOG", "info")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("nimbus"),
            addrs: Vec::new(),
        };
        let stdout = process.child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let label = args[0].to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[nimbus {label}] {line}");
                let _ = tx.send(line);
            }
        });
        // A panic here drops `process`, which kills the child.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("nimbus {args:?} did not print {ready_line:?}"));
            if let Some(addr) = line.split("http://").nth(1) {
                process.addrs.push(addr.trim().to_string());
            }
            if line.contains(ready_line) {
                return process;
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An operator out of the cluster, as `make run` runs a controller under development.
fn operator_out_of_cluster(kubeconfig: &Path) -> Process {
    Process::start(
        &[
            "operator",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--metrics-addr",
            "127.0.0.1:0",
            "--router",
            &format!("http://127.0.0.1:{}", HOST_PORTS.router_admin),
            "--autoscaler-tick",
            "1s",
        ],
        "leading; reconciling",
    )
}

/// A Knative Service running the test-app image, with `extra` template annotations, spec
/// lines and traffic.
fn service(name: &str, ns: &str, image: &str, message: &str, extra: &Extra) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/window: 6s\n        nimbus.dev/scale-to-zero-grace-period: {grace}\n{annotations}    spec:\n{spec}      containers:\n        - image: {image}\n          imagePullPolicy: Never\n{container}          env:\n            - name: MESSAGE\n              value: \"{message}\"\n{traffic}",
        grace = extra.grace,
        annotations = extra.annotations,
        spec = extra.spec,
        container = extra.container,
        traffic = extra.traffic,
    )
}

struct Extra {
    grace: &'static str,
    annotations: &'static str,
    spec: &'static str,
    container: &'static str,
    traffic: &'static str,
}

impl Default for Extra {
    fn default() -> Self {
        Self {
            grace: "600s",
            annotations: "",
            spec: "",
            container: "",
            traffic: "",
        }
    }
}

fn wait_ready(cluster: &Cluster, ns: &str, name: &str) {
    wait_for(
        &format!("ksvc {name} Ready"),
        Duration::from_secs(180),
        || {
            let ready = cluster.jsonpath(ns,
                &["ksvc", name],
                "{.status.conditions[?(@.type==\"Ready\")].status}/{.status.observedGeneration}/{.metadata.generation}",
            );
            let parts: Vec<&str> = ready.split('/').collect();
            (parts.len() == 3 && parts[0] == "True" && parts[1] == parts[2]).then_some(())
        },
    );
}

fn host(name: &str, ns: &str) -> String {
    format!("{name}.{ns}.{DOMAIN}")
}

#[test]
fn the_kubernetes_example_runs_the_image_nimbus_install_deploys() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes/hello-service.yaml"),
    )
    .unwrap();
    let image = nimbus_kube::install::default_image();
    assert!(
        example.contains(&format!("- image: {image}\n")),
        "examples/kubernetes/hello-service.yaml should run {image}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_mode_end_to_end() {
    let Some(cluster) = Cluster::find() else {
        return;
    };
    let kubeconfig = cluster.kubeconfig.clone();
    cluster.install_nimbus(Path::new(BIN));
    let image = cluster.test_app_image();
    let client = RouterClient::new(&format!("127.0.0.1:{}", HOST_PORTS.router_http));
    let ns = cluster.namespace("nimbus-e2e");
    let ns = ns.name.as_str();

    // The example becomes Ready; requests through the in-cluster router reach its pods.
    let example =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes/hello-service.yaml");
    cluster.kubectl_ok(&["apply", "-n", ns, "-f", example.to_str().unwrap()], None);
    wait_ready(&cluster, ns, "hello");
    let reply = client
        .get_until(&host("hello", ns), "/", Duration::from_secs(60), |r| {
            r.status == 200
        })
        .await
        .unwrap();
    assert!(reply.body.contains("Hello World!"), "{}", reply.body);
    let deployments = cluster.jsonpath(ns, &["deployments"], "{.items[*].metadata.name}");
    assert_eq!(deployments, "hello-00001-deployment");
    let containers = cluster.jsonpath(ns, &["pods"], "{.items[*].spec.containers[*].name}");
    assert_eq!(
        containers, "user-container",
        "one container per pod: no sidecar"
    );

    jobs_run_as_batch_jobs(&cluster, ns, image, &kubeconfig);
    events_run_in_the_operator(&cluster, ns, image, &client).await;

    // The runtime contract inside a pod of a test-app Service.
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("split", ns, image, "v1", &Extra::default())),
    );
    wait_ready(&cluster, ns, "split");
    let env = client.get(&host("split", ns), "/env").await.unwrap().body;
    let contract: std::collections::HashMap<&str, &str> =
        env.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(contract.get("PORT"), Some(&"8080"), "{env}");
    assert_eq!(contract.get("K_SERVICE"), Some(&"split"), "{env}");
    assert_eq!(contract.get("K_CONFIGURATION"), Some(&"split"), "{env}");
    assert_eq!(contract.get("K_REVISION"), Some(&"split-00001"), "{env}");

    // A second revision with an 80/20 split and a tag, as in embedded mode.
    let split = Extra {
        traffic: "  traffic:\n    - revisionName: split-00001\n      percent: 20\n      tag: old\n    - latestRevision: true\n      percent: 80\n",
        ..Extra::default()
    };
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("split", ns, image, "v2", &split)),
    );
    wait_ready(&cluster, ns, "split");
    let counts = tally(&client, &host("split", ns), "/", 1000).await;
    assert_split(
        &counts,
        &[
            ("hello from test-app: v1", 20),
            ("hello from test-app: v2", 80),
        ],
    );
    let tagged = client
        .get(&format!("old-split.{ns}.{DOMAIN}"), "/")
        .await
        .unwrap();
    assert_eq!(tagged.body, "hello from test-app: v1\n");

    // containerConcurrency: 1 — a pod never sees two requests at once.
    let single = Extra {
        spec: "      containerConcurrency: 1\n",
        ..Extra::default()
    };
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("single", ns, image, "s", &single)),
    );
    wait_ready(&cluster, ns, "single");
    let overlaps = tally(&client, &host("single", ns), "/overlap?ms=30", 40).await;
    assert_eq!(overlaps.keys().collect::<Vec<_>>(), ["ok"], "{overlaps:?}");

    // Idle → the Deployment goes to 0 replicas; a request brings it back.
    let cold = Extra {
        grace: "0s",
        ..Extra::default()
    };
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("cold", ns, image, "cold", &cold)),
    );
    wait_ready(&cluster, ns, "cold");
    cluster.wait_at_zero(
        ns,
        "cold-00001-deployment",
        "serving.knative.dev/revision=cold-00001",
    );
    let started = Instant::now();
    let reply = client.get(&host("cold", ns), "/").await.unwrap();
    let cold_start = started.elapsed();
    assert_eq!(
        (reply.status, reply.body.as_str()),
        (200, "hello from test-app: cold\n")
    );
    println!(
        "cold start from zero on the cluster: {} ms",
        cold_start.as_millis()
    );

    // Pods that cannot run are reported on the Revision with Kubernetes' reason, as Knative
    // does: a crash loop, an image that is not there, a pod no node can take.
    let failures = [
        (
            "crash",
            image,
            "          command: [\"/bin/sh\", \"-c\", \"exit 3\"]\n",
            "ExitCode3",
        ),
        (
            "absent",
            "localhost/nimbus/absent:1",
            "",
            "ErrImageNeverPull",
        ),
        (
            "huge",
            image,
            "          resources:\n            requests:\n              cpu: \"4096\"\n",
            "Unschedulable",
        ),
    ];
    for (name, image, container, _) in failures {
        let extra = Extra {
            container,
            ..Extra::default()
        };
        cluster.kubectl_ok(
            &["apply", "-f", "-"],
            Some(&service(name, ns, image, "x", &extra)),
        );
    }
    for (name, _, _, expected) in failures {
        let reason = wait_for(
            &format!("{name}'s failure on its revision"),
            Duration::from_secs(120),
            || {
                let r = cluster.jsonpath(
                    ns,
                    &["rev", &format!("{name}-00001")],
                    "{.status.conditions[?(@.type==\"Ready\")].reason}",
                );
                (!r.is_empty() && r != "Deploying").then_some(r)
            },
        );
        assert_eq!(reason, expected, "{name}");
    }

    // The CLI works against the cluster, with the same tables.
    let get = Command::new(BIN)
        .args(["get", "ksvc", "-n", ns, "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&get.stdout);
    assert!(
        get.status.success(),
        "{}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("hello ") && l.contains("True")),
        "{table}"
    );
    let export = Command::new(BIN)
        .args(["export", "split", "-n", ns, "--kubeconfig"])
        .arg(&kubeconfig)
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let dry_run = cluster.kubectl(
        &["apply", "--dry-run=server", "-n", ns, "-f", "-"],
        Some(&String::from_utf8_lossy(&export.stdout)),
    );
    assert!(
        dry_run.status.success(),
        "the exported manifests are valid Kubernetes: {}",
        String::from_utf8_lossy(&dry_run.stderr)
    );

    // The operator pod deleted in the middle of a rollout: its replacement resumes it.
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("split", ns, image, "v3", &Extra::default())),
    );
    cluster.kubectl_ok(
        &[
            "delete",
            "pod",
            "-n",
            "nimbus-system",
            "-l",
            "app.kubernetes.io/name=nimbus-operator",
            "--wait=false",
        ],
        None,
    );
    wait_ready(&cluster, ns, "split");
    serves(&client, &host("split", ns), "hello from test-app: v3\n").await;

    // An operator out of the cluster (a controller under development) takes the Lease once
    // the in-cluster one is gone, and reconciles the same objects.
    scale_operator(&cluster, 0);
    let outside = operator_out_of_cluster(&kubeconfig);
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("split", ns, image, "v4", &Extra::default())),
    );
    wait_ready(&cluster, ns, "split");
    serves(&client, &host("split", ns), "hello from test-app: v4\n").await;
    drop(outside);
    scale_operator(&cluster, 1);

    // Deleting the Knative Service removes every Deployment, Service and pod it made.
    cluster.kubectl_ok(&["delete", "ksvc", "split", "-n", ns], None);
    wait_for("split's workloads gone", Duration::from_secs(180), || {
        let left = cluster.jsonpath(
            ns,
            &[
                "deployments,services,pods",
                "-l",
                "serving.knative.dev/service=split",
            ],
            "{.items[*].metadata.name}",
        );
        left.is_empty().then_some(())
    });
}

/// Wait until `host` answers `body`.
async fn serves(client: &RouterClient, host: &str, body: &str) {
    let reply = client
        .get_until(host, "/", Duration::from_secs(60), |r| r.body == body)
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
}

/// Scale the in-cluster operator and wait for it.
fn scale_operator(cluster: &Cluster, replicas: u32) {
    cluster.kubectl_ok(
        &[
            "scale",
            "-n",
            "nimbus-system",
            "deployment/nimbus-operator",
            &format!("--replicas={replicas}"),
        ],
        None,
    );
    wait_for(
        &format!("{replicas} operator pods"),
        Duration::from_secs(120),
        || {
            let pods = cluster.kubectl(
                &[
                    "get",
                    "pods",
                    "-n",
                    "nimbus-system",
                    "-l",
                    "app.kubernetes.io/name=nimbus-operator",
                    "-o",
                    "name",
                ],
                None,
            );
            let n = String::from_utf8_lossy(&pods.stdout).lines().count();
            (n == replicas as usize).then_some(())
        },
    );
    if replicas > 0 {
        cluster.wait_installed();
    }
}

/// A Nimbus Job on the cluster: `nimbus job run --wait` (the CLI against the cluster) runs its
/// tasks as batch Jobs of one pod each, with the task variables, two at once, one retried.
fn jobs_run_as_batch_jobs(cluster: &Cluster, ns: &str, image: &str, kubeconfig: &Path) {
    let job = format!(
        "apiVersion: run.nimbus.dev/v1\nkind: Job\nmetadata:\n  name: report\n  namespace: {ns}\nspec:\n  template:\n    spec:\n      taskCount: 3\n      parallelism: 2\n      template:\n        spec:\n          maxRetries: 1\n          timeoutSeconds: 120\n          containers:\n            - image: {image}\n              imagePullPolicy: Never\n              args: [task]\n              env:\n                - name: FAIL_FIRST_ATTEMPT_OF\n                  value: \"1\"\n"
    );
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&job));
    let out = Command::new(BIN)
        .args(["job", "run", "report", "--wait", "-n", ns, "--kubeconfig"])
        .arg(kubeconfig)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "nimbus job run --wait: {stderr}");
    let execution = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let counts = cluster.jsonpath(
        ns,
        &["executions", &execution],
        "{.status.succeededCount} {.status.retriedCount}",
    );
    assert_eq!(counts, "3 1", "{stderr}");
    // Four attempts, each a batch Job owned by the Execution; the retried task's second pod
    // saw attempt 1.
    let jobs = cluster.jsonpath(
        ns,
        &[
            "jobs.batch",
            "-l",
            &format!("run.nimbus.dev/execution={execution}"),
        ],
        "{.items[*].metadata.name}",
    );
    let mut names: Vec<&str> = jobs.split_whitespace().collect();
    names.sort();
    let want: Vec<String> = ["0-0", "1-0", "1-1", "2-0"]
        .iter()
        .map(|s| format!("{execution}-{s}"))
        .collect();
    assert_eq!(names, want);
    let logs = cluster.kubectl_ok(&["logs", "-n", ns, &format!("job/{execution}-1-1")], None);
    assert!(
        logs.contains(&format!(
            "task index=1 count=3 attempt=1 job=report execution={execution}"
        )),
        "{logs}"
    );
    cluster.kubectl_ok(&["delete", "-n", ns, "jobs.run.nimbus.dev", "report"], None);
}

/// The operator (host network, so it reaches a broker on the node's loopback) runs event
/// sources, KEDA's ScaledObjects and event schedules, delivering through the routers.
async fn events_run_in_the_operator(
    cluster: &Cluster,
    ns: &str,
    image: &str,
    client: &RouterClient,
) {
    let Some(redis) = nimbus_testkit::brokers::Broker::redis() else {
        return;
    };
    let address = format!("127.0.0.1:{}", redis.port);
    let mut conn = redis::Client::open(redis.url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // One pod keeps every event in a file that /file reads back.
    let one = Extra {
        annotations: "        autoscaling.knative.dev/min-scale: \"1\"\n        autoscaling.knative.dev/max-scale: \"1\"\n",
        ..Extra::default()
    };
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("sink", ns, image, "sink", &one)),
    );
    wait_ready(cluster, ns, "sink");
    let source = format!(
        "apiVersion: sources.nimbus.dev/v1alpha1\nkind: RedisListSource\nmetadata:\n  name: orders\n  namespace: {ns}\nspec:\n  address: {address}\n  list: orders\n  sink:\n    ref:\n      apiVersion: serving.knative.dev/v1\n      kind: Service\n      name: sink\n    uri: /event?/tmp/orders\n"
    );
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&source));
    for i in 0..5 {
        let _: i64 = redis::cmd("LPUSH")
            .arg("orders")
            .arg(format!("order-{i}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let events = wait_lines(client, ns, "/tmp/orders", 5).await;
    assert!(
        events.contains("dev.nimbus.sources.redislist"),
        "the list's elements arrive as CloudEvents: {events}"
    );
    let ready = cluster.jsonpath(
        ns,
        &["redislistsources", "orders"],
        "{.status.conditions[?(@.type==\"Ready\")].status} {.status.sinkUri}",
    );
    assert_eq!(
        ready,
        format!("True http://sink.{ns}.{DOMAIN}/event?/tmp/orders")
    );

    // A schedule's CloudEvent, every second.
    let schedule = format!(
        "apiVersion: run.nimbus.dev/v1\nkind: Schedule\nmetadata:\n  name: ping\n  namespace: {ns}\nspec:\n  schedule: \"* * * * * *\"\n  event:\n    sink:\n      ref:\n        apiVersion: serving.knative.dev/v1\n        kind: Service\n        name: sink\n      uri: /event?/tmp/pings\n"
    );
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&schedule));
    let pings = wait_lines(client, ns, "/tmp/pings", 2).await;
    assert!(pings.contains("dev.knative.sources.ping"), "{pings}");
    cluster.kubectl_ok(
        &["delete", "-n", ns, "schedules.run.nimbus.dev", "ping"],
        None,
    );

    // KEDA: a backlog on a list scales a Service at zero up, with no HTTP traffic.
    let worker = Extra {
        grace: "0s",
        ..Extra::default()
    };
    cluster.kubectl_ok(
        &["apply", "-f", "-"],
        Some(&service("worker", ns, image, "worker", &worker)),
    );
    wait_ready(cluster, ns, "worker");
    cluster.wait_at_zero(
        ns,
        "worker-00001-deployment",
        "serving.knative.dev/service=worker",
    );
    let scaled_object = format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: worker\n  namespace: {ns}\nspec:\n  scaleTargetRef:\n    apiVersion: serving.knative.dev/v1\n    kind: Service\n    name: worker\n  pollingInterval: 1\n  cooldownPeriod: 5\n  triggers:\n  - type: redis\n    metadata:\n      address: {address}\n      listName: jobs\n      listLength: \"2\"\n"
    );
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&scaled_object));
    for i in 0..4 {
        let _: i64 = redis::cmd("LPUSH")
            .arg("jobs")
            .arg(format!("job-{i}"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    wait_for(
        "KEDA scales worker to 2 on a backlog of 4",
        Duration::from_secs(90),
        || {
            let replicas = cluster.jsonpath(
                ns,
                &["deployment", "worker-00001-deployment"],
                "{.spec.replicas}",
            );
            (replicas == "2").then_some(())
        },
    );
    let active = cluster.jsonpath(
        ns,
        &["scaledobjects.keda.sh", "worker"],
        "{.status.conditions[?(@.type==\"Active\")].status}",
    );
    assert_eq!(active, "True");
    for kind in [
        "scaledobjects.keda.sh",
        "redislistsources.sources.nimbus.dev",
    ] {
        cluster.kubectl_ok(&["delete", "-n", ns, kind, "--all"], None);
    }
}

/// The lines of `file` in the sink's pod, once there are at least `n`.
async fn wait_lines(client: &RouterClient, ns: &str, file: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let got = client
            .get(&host("sink", ns), &format!("/file?{file}"))
            .await;
        if let Ok(r) = &got
            && r.status == 200
            && r.body.lines().count() >= n
        {
            return r.body.clone();
        }
        assert!(Instant::now() < deadline, "{n} lines in {file}: {got:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
