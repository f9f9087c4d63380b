//! Kubernetes-mode cold start: a request to a Knative Service scaled to zero on a real cluster,
//! through Nimbus's in-cluster router, until its first response byte — next to the same
//! image's pod started without Nimbus (a Deployment scaled 0 → 1 by hand), in the same run.
//!
//! ```text
//! sudo scripts/kube-cluster up
//! cargo build --release -p nimbus -p nimbus-bench
//! target/release/kube-coldstart --nimbus target/release/nimbus --runs 10
//! ```
//!
//! The cluster is `scripts/kube-cluster`'s or any named by `NIMBUS_KUBECONFIG`. The program
//! loads the given `nimbus` binary as the Nimbus image, runs `nimbus install --apply
//! --host-network` (the router on node port 31080), loads `examples/test-app` as an image and
//! creates, in a fresh namespace:
//!
//! - nimbus: a Knative Service of the test-app image (scale-to-zero grace 0 s, window 6 s).
//!   Each round waits until its Deployment is at 0 replicas with no pod left, then times one
//!   `GET /` through the router (`127.0.0.1:31080`, `Host: cold.<ns>.example.com`) until the
//!   first response byte: the router holds the request, asks the operator to activate, the
//!   autoscaler scales the Deployment through `deployments/scale`, the kubelet starts the pod,
//!   the EndpointSlice lists it, the router reaches its port (it tries a starting pod's port
//!   every 20 ms instead of waiting for the kubelet's readiness probe).
//! - pod floor: a plain Deployment of the same image and pod settings (no Nimbus object), at 0
//!   replicas. Each round scales it to 1 through the same `scale` subresource and polls the
//!   pod's IP (`GET /` every 5 ms, from as soon as the pod has an IP) until the first byte:
//!   what starting the pod costs with nothing in between, and no readiness gate. The time
//!   until Kubernetes marks that pod Ready (the same TCP probe) is reported too: a Service
//!   through kube-proxy could send nothing earlier.
//!
//! Rounds alternate the two and wait for idle CPUs first. Reported: median, p90 and min of
//! each, and the ratio of the Nimbus median to the pod floor's.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use nimbus_bench::http::first_byte;
use nimbus_bench::quiet::wait_for_idle;
use nimbus_bench::stats::{Summary, ms};
use nimbus_testkit::kube::Cluster;

struct Args {
    nimbus: PathBuf,
    runs: usize,
}

fn args() -> Args {
    let mut args = Args {
        nimbus: PathBuf::from("target/release/nimbus"),
        runs: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--nimbus" => args.nimbus = value.into(),
            "--runs" => {
                args.runs = value
                    .parse()
                    .unwrap_or_else(|_| usage("--runs takes a number"))
            }
            _ => usage(&format!("unknown flag {flag}")),
        }
    }
    args
}

fn usage(problem: &str) -> ! {
    eprintln!("kube-coldstart: {problem}\nusage: kube-coldstart [--nimbus PATH] [--runs N]");
    std::process::exit(2)
}

fn main() {
    let args = args();
    let Some(cluster) = Cluster::find() else {
        eprintln!(
            "kube-coldstart: no cluster (run `sudo scripts/kube-cluster up` or set NIMBUS_KUBECONFIG)"
        );
        std::process::exit(1);
    };
    if !args.nimbus.is_file() {
        usage(&format!(
            "{} is not a file: build it with `cargo build --release -p nimbus`",
            args.nimbus.display()
        ));
    }
    cluster.install_nimbus(&args.nimbus);
    let image = cluster.test_app_image();
    let ns = cluster.namespace("bench-cold");
    let ns = ns.name.clone();
    cluster.kubectl_ok(&["apply", "-f", "-"], Some(&knative_service(&ns, image)));
    cluster.kubectl_ok(
        &[
            "wait",
            "-n",
            &ns,
            "ksvc/cold",
            "--for=condition=Ready",
            "--timeout=180s",
        ],
        None,
    );

    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let client = runtime.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&cluster.kubeconfig).expect("the kubeconfig"),
            &Default::default(),
        )
        .await
        .expect("a client config");
        kube::Client::try_from(config).expect("a client")
    });
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pods: Api<Pod> = Api::namespaced(client, &ns);
    runtime
        .block_on(deployments.create(&PostParams::default(), &plain_deployment(image)))
        .expect("creating the plain Deployment");

    let host = format!("cold.{ns}.example.com");
    let router = format!("127.0.0.1:{}", nimbus_kube::install::HOST_PORTS.router_http);
    let (mut nimbus, mut floor, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.runs {
        cluster.wait_at_zero(
            &ns,
            "cold-00001-deployment",
            "serving.knative.dev/revision=cold-00001",
        );
        wait_for_idle(0.9, Duration::from_secs(20));
        let started = Instant::now();
        first_byte(&router, &host, "/").expect("a response through the router");
        nimbus.push(started.elapsed());

        cluster.wait_at_zero(&ns, "plain", "app=plain");
        wait_for_idle(0.9, Duration::from_secs(20));
        let (answered, became_ready) = runtime.block_on(start_plain(&deployments, &pods));
        floor.push(answered);
        ready.push(became_ready);
        runtime
            .block_on(scale(&deployments, "plain", 0))
            .expect("scaling the plain Deployment to 0");
        println!(
            "round {round}: nimbus {}, pod answers {}, pod Ready {}",
            ms(nimbus[round - 1]),
            ms(answered),
            ms(became_ready)
        );
    }

    let nimbus = Summary::of(&nimbus).expect("runs");
    let floor = Summary::of(&floor).expect("runs");
    let ready = Summary::of(&ready).expect("runs");
    println!("\n| row | runs | median | p90 | min | × pod floor |");
    println!("|---|---|---|---|---|---|");
    for (name, s) in [
        (
            "pod floor: Deployment 0 → 1 by hand, first byte on the pod IP",
            floor,
        ),
        ("pod Ready (the same pod, as Kubernetes marks it)", ready),
        (
            "nimbus: request through the router to a revision at zero",
            nimbus,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} | {} | {:.2} |",
            s.runs,
            ms(s.median),
            ms(s.p90),
            ms(s.min),
            s.ratio_to(&floor)
        );
    }
}

fn knative_service(ns: &str, image: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata: {{name: cold, namespace: {ns}}}
spec:
  template:
    metadata:
      annotations:
        autoscaling.knative.dev/window: 6s
        nimbus.dev/scale-to-zero-grace-period: 0s
    spec:
      containers:
        - image: {image}
          imagePullPolicy: Never
"
    )
}

/// The pod Nimbus would run for the same container, as a plain Deployment at 0 replicas.
fn plain_deployment(image: &str) -> Deployment {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "plain"},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": {"app": "plain"}},
            "template": {
                "metadata": {"labels": {"app": "plain"}},
                "spec": {
                    "enableServiceLinks": false,
                    "containers": [{
                        "name": "user-container",
                        "image": image,
                        "imagePullPolicy": "Never",
                        "ports": [{"name": "user-port", "containerPort": 8080}],
                        "env": [{"name": "PORT", "value": "8080"}],
                        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1,
                            "successThreshold": 1},
                    }],
                },
            },
        },
    }))
    .expect("a Deployment")
}

async fn scale(deployments: &Api<Deployment>, name: &str, replicas: i32) -> kube::Result<()> {
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    deployments
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Scale `plain` to 1; the time until its pod answers on its IP, and until it is Ready.
async fn start_plain(deployments: &Api<Deployment>, pods: &Api<Pod>) -> (Duration, Duration) {
    let started = Instant::now();
    scale(deployments, "plain", 1)
        .await
        .expect("scaling the plain Deployment to 1");
    let selector = ListParams::default().labels("app=plain");
    let mut answered = None;
    let mut ready = None;
    let mut ip = None;
    let deadline = started + Duration::from_secs(120);
    while answered.is_none() || ready.is_none() {
        assert!(
            Instant::now() < deadline,
            "the plain pod did not start in 120 s"
        );
        if ip.is_none() || ready.is_none() {
            let listed = pods.list(&selector).await.expect("listing pods");
            let pod = listed
                .items
                .iter()
                .find(|p| p.metadata.deletion_timestamp.is_none());
            let status = pod.and_then(|p| p.status.as_ref());
            ip = ip.or_else(|| status.and_then(|s| s.pod_ip.clone()));
            let is_ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if is_ready && ready.is_none() {
                ready = Some(started.elapsed());
            }
        }
        if let (Some(ip), None) = (&ip, answered) {
            let addr = format!("{ip}:8080");
            let reached = tokio::task::spawn_blocking(move || first_byte(&addr, "plain", "/"))
                .await
                .expect("the probe thread");
            if reached.is_ok() {
                answered = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (answered.unwrap(), ready.unwrap())
}
