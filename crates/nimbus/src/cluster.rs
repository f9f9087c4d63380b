//! Kubernetes mode's two processes, wired like `nimbus serve` but against a cluster:
//!
//! - `nimbus operator`: the reconcilers (all but Ingress) over the cluster's API, revisions as
//!   Deployments, the autoscaler fed by the routers' load; leader-elected with a Lease, so only
//!   one replica acts. The leader also runs the event sources' consumers and KEDA's
//!   ScaledObjects (where their CRDs are Nimbus's) and sends schedules' events, all through the
//!   routers (`crate::cluster_delivery`). It answers `/healthz` and routers' `POST /activate/{ns}/{revision}`.
//! - `nimbus router`: the router/activator, programmed by the Ingress reconciler, sending
//!   requests to the ready pods of each revision (EndpointSlices); it serves `/healthz` and its
//!   per-revision load (`/stats`) on the admin port.
//!
//! Both run in the cluster (in-cluster config) or outside it with `--kubeconfig`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use nimbus_api::Kind;
use nimbus_api::runtime::Backend;
use nimbus_controller::{
    Context, Controller, ControllerConfig, NoLoad, Resources, Scaler, ScalerConfig,
};
use nimbus_invocations::Deliver;
use nimbus_kube::peers::{Activations, Peers, RouterLoad, RouterStats, StatsReport};
use nimbus_kube::{KubeResources, KubeRuntime};
use nimbus_router::{Router, RouterConfig};

use crate::cluster_delivery::{ClusterEvents, RouterDelivery};
use crate::serve::{bind, stopped};
use nimbus_runtime::{EndpointRegistry, RevisionKey, Runtime};

/// How to reach the cluster.
#[derive(clap::Args, Clone)]
pub struct ClusterOpts {
    /// A kubeconfig file (default: in-cluster, then KUBECONFIG, which may list several files,
    /// then ~/.kube/config).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Namespace of Nimbus's own objects (the leader Lease, the router and operator Services).
    #[arg(
        long = "system-namespace",
        env = "POD_NAMESPACE",
        default_value = "nimbus-system"
    )]
    pub system_namespace: String,
}

/// `nimbus operator`.
#[derive(clap::Args)]
pub struct OperatorArgs {
    #[command(flatten)]
    pub cluster: ClusterOpts,
    /// Address of `/healthz` and the routers' activation requests; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Domain of route hosts: <service>.<namespace>.<domain>.
    #[arg(long, default_value = "example.com")]
    pub domain: String,
    /// A router's admin URL to read load from (repeatable; default: the pods of Service
    /// `nimbus-router`, port `admin`).
    #[arg(long = "router")]
    pub routers: Vec<String>,
    /// How often the autoscaler decides (Knative: 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub autoscaler_tick: Duration,
    /// Run without leader election (only when exactly one operator runs).
    #[arg(long)]
    pub no_leader_election: bool,
    /// A router's data-plane URL to deliver events through (repeatable; default: the pods of
    /// Service `nimbus-router`, port `http`).
    #[arg(long = "router-http")]
    pub router_http: Vec<String>,
}

/// `nimbus router`.
#[derive(clap::Args)]
pub struct RouterArgs {
    #[command(flatten)]
    pub cluster: ClusterOpts,
    /// Data-plane address; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// Address of `/healthz` and `/stats`; port 0 picks one.
    #[arg(long, default_value = "0.0.0.0:9091")]
    pub admin_addr: SocketAddr,
    /// The operator's URL for activations (repeatable; default: the pods of Service
    /// `nimbus-operator`, port `metrics`).
    #[arg(long = "operator")]
    pub operators: Vec<String>,
    #[command(flatten)]
    pub traces: crate::traces::TraceArgs,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    nimbus_api::duration::parse_duration(s)
}

/// A kube-rs client for these options.
pub async fn client(opts: &ClusterOpts) -> anyhow::Result<kube::Client> {
    let client =
        nimbus_kube::kubeconfig::client(opts.kubeconfig.as_deref(), opts.context.as_deref());
    Ok(client.await?)
}

pub async fn operator(args: OperatorArgs) -> anyhow::Result<()> {
    crate::serve::init_tracing();
    let client = client(&args.cluster).await?;
    let listener = bind(args.metrics_addr, "--metrics-addr").await?;
    println!(
        "nimbus operator: listening on http://{}",
        listener.local_addr()?
    );
    let routers = match args.routers.is_empty() {
        true => Peers::Service {
            namespace: args.cluster.system_namespace.clone(),
            name: "nimbus-router".into(),
            port: "admin".into(),
        },
        false => Peers::Urls(args.routers.clone()),
    };
    let stats = RouterStats::start(client.clone(), routers, Duration::from_millis(500));
    let scaler = Scaler::new(
        stats,
        ScalerConfig {
            tick: args.autoscaler_tick,
            ..Default::default()
        },
    );
    // Ready (and taking activations, which the scaler queues) while waiting for the Lease: a
    // rolling update's new pod must become Ready while the old one still leads.
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/activate/{namespace}/{revision}", post(activate))
        .with_state(scaler.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut leadership = Leadership::acquire(&client, &args).await?;
    let runtime = KubeRuntime::start(client.clone());
    runtime.ready().await;
    let runtimes: HashMap<Backend, Arc<dyn Runtime>> =
        [(Backend::Oci, runtime as Arc<dyn Runtime>)].into();
    let resources: Arc<dyn Resources> = Arc::new(KubeResources::new(client.clone()));
    let delivery = match args.router_http.is_empty() {
        true => Peers::Service {
            namespace: args.cluster.system_namespace.clone(),
            name: "nimbus-router".into(),
            port: "http".into(),
        },
        false => Peers::Urls(args.router_http.clone()),
    };
    let deliver: Arc<dyn Deliver> = RouterDelivery::new(client.clone(), delivery)?;
    // The kube-apiserver ages events out itself (`--event-ttl`): no sweeper here.
    let (recorder, _events) = nimbus_controller::Recorder::start(
        resources.clone(),
        Arc::new(nimbus_controller::SystemClock),
        nimbus_controller::EventConfig {
            component: "nimbus-operator".into(),
            instance: hostname(),
            sweep_every: None,
            ..nimbus_controller::EventConfig::default()
        },
    );
    let ctx = Context::new(
        Arc::clone(&resources),
        runtimes,
        None,
        ControllerConfig {
            domain: args.domain.clone(),
            url_port: None,
            // The cluster's garbage collector follows owner references.
            garbage_collector: false,
            kinds: Kind::knative().filter(|k| *k != Kind::Ingress).collect(),
            ..ControllerConfig::default()
        },
        scaler.clone(),
    )
    .with_event_sink(Arc::new(ClusterEvents {
        deliver: Arc::clone(&deliver),
        domain: args.domain.clone(),
    }))
    .with_recorder(recorder);
    // The optional kinds run here only where their CRDs are Nimbus's (else KEDA, or Knative
    // Eventing's sources, own them).
    let ours = optional_kinds(&client).await;
    let sources: Vec<Kind> = ours.iter().copied().filter(|k| k.is_source()).collect();
    if !sources.is_empty() {
        crate::sources::start(
            Arc::clone(&resources),
            sources,
            None,
            Arc::clone(&deliver),
            &args.domain,
        );
    }
    println!("nimbus operator: leading; reconciling");
    let stop = async {
        tokio::select! {
            _ = crate::serve::wait_for_signal() => {}
            _ = leadership.lost() => eprintln!("nimbus operator: lost the leader lease; stopping"),
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(Controller::new(ctx).run(stopped(stop_rx.clone())));
    let keda = ours.contains(&Kind::ScaledObject).then(|| {
        let keda = nimbus_keda::Keda::new(
            Arc::clone(&resources),
            scaler.clone(),
            nimbus_keda::KedaConfig::default(),
        );
        tokio::spawn(keda.run(stopped(stop_rx.clone())))
    });
    let scaling = tokio::spawn(scaler.run(stopped(stop_rx)));
    stop.await;
    let _ = stop_tx.send(true);
    let _ = controller.await;
    let _ = scaling.await;
    if let Some(keda) = keda {
        let _ = keda.await;
    }
    leadership.release().await;
    Ok(())
}

/// The optional kinds ([`Kind::is_optional_on_cluster`]) whose CRDs are Nimbus's here.
async fn optional_kinds(client: &kube::Client) -> Vec<Kind> {
    let mut ours = Vec::new();
    for kind in Kind::on_cluster().filter(|k| k.is_optional_on_cluster()) {
        let name = nimbus_kube::crds::crd_name(kind);
        match nimbus_kube::apply::is_ours(client, &name).await {
            Ok(true) => ours.push(kind),
            Ok(false) => println!(
                "nimbus operator: {name} is missing or not Nimbus's; leaving {kind} to its owner"
            ),
            Err(e) => eprintln!("nimbus operator: reading the CRD {name}: {e}; not running {kind}"),
        }
    }
    ours
}

async fn activate(
    State(scaler): State<Arc<Scaler>>,
    Path((namespace, revision)): Path<(String, String)>,
) -> StatusCode {
    scaler.activate(&RevisionKey::new(namespace, revision));
    StatusCode::ACCEPTED
}

/// This operator's hold on the Lease `nimbus-operator`.
struct Leadership {
    /// `true` while leading; `None` without leader election.
    leader: Option<tokio::sync::watch::Receiver<bool>>,
    task: Option<
        tokio::task::JoinHandle<kube_lease_manager::Result<kube_lease_manager::LeaseManager>>,
    >,
}

impl Leadership {
    /// Wait until this process holds the operator Lease (at once without leader election).
    async fn acquire(client: &kube::Client, args: &OperatorArgs) -> anyhow::Result<Self> {
        if args.no_leader_election {
            return Ok(Self {
                leader: None,
                task: None,
            });
        }
        let identity = std::env::var("POD_NAME")
            .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
        let manager =
            kube_lease_manager::LeaseManagerBuilder::new(client.clone(), "nimbus-operator")
                .with_namespace(args.cluster.system_namespace.clone())
                .with_identity(identity)
                .with_duration(15)
                .with_grace(5)
                .build()
                .await
                .context("setting up leader election (Lease nimbus-operator)")?;
        let (mut leader, task) = manager.watch().await;
        println!("nimbus operator: waiting for the leader lease");
        while !*leader.borrow_and_update() {
            leader.changed().await.context("leader election stopped")?;
        }
        Ok(Self {
            leader: Some(leader),
            task: Some(task),
        })
    }

    /// Resolves when the Lease is lost; never without leader election.
    async fn lost(&mut self) {
        let Some(leader) = self.leader.as_mut() else {
            return std::future::pending().await;
        };
        while *leader.borrow_and_update() {
            if leader.changed().await.is_err() {
                return;
            }
        }
    }

    /// Give the Lease up, so that another operator leads at once rather than after it expires.
    async fn release(mut self) {
        // Closing the channel makes the lease manager release the Lease and return.
        drop(self.leader.take());
        if let Some(task) = self.task.take() {
            match tokio::time::timeout(Duration::from_secs(5), task).await {
                Ok(Ok(Ok(_))) => eprintln!("nimbus operator: released the leader lease"),
                Ok(Ok(Err(e))) => eprintln!("nimbus operator: releasing the leader lease: {e}"),
                _ => eprintln!(
                    "nimbus operator: the leader lease was not released; it expires in 15s"
                ),
            }
        }
    }
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "nimbus".into())
}

pub async fn router(args: RouterArgs) -> anyhow::Result<()> {
    crate::serve::init_tracing();
    let client = client(&args.cluster).await?;
    let http = bind(args.http_addr, "--http-addr").await?;
    let admin = bind(args.admin_addr, "--admin-addr").await?;
    println!("nimbus router: listening on http://{}", http.local_addr()?);
    println!("nimbus router: admin on http://{}", admin.local_addr()?);
    let registry = EndpointRegistry::new();
    tokio::spawn(nimbus_kube::endpoints::follow(
        client.clone(),
        registry.clone(),
    ));
    let traces = crate::traces::start(&args.traces)?;
    let tracing = traces.as_ref().map(nimbus_traces::Traces::tracing);
    let router = Router::with_tracing(registry, RouterConfig::default(), tracing);
    let operators = match args.operators.is_empty() {
        true => Peers::Service {
            namespace: args.cluster.system_namespace.clone(),
            name: "nimbus-operator".into(),
            port: "metrics".into(),
        },
        false => Peers::Urls(args.operators.clone()),
    };
    let activations = Activations::start(client.clone(), operators, Duration::from_millis(200));
    router.set_activator(Arc::new(move |rev: &RevisionKey| activations.activate(rev)));
    let ctx = Context::new(
        Arc::new(KubeResources::new(client)),
        HashMap::new(),
        Some(Arc::new(crate::serve::RouterIngress(router.clone()))),
        ControllerConfig {
            garbage_collector: false,
            kinds: vec![Kind::Ingress],
            workers: 2,
            ..ControllerConfig::default()
        },
        Scaler::new(Arc::new(NoLoad), ScalerConfig::default()),
    );
    let app = axum::Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/stats", get(stats))
        .with_state(router.clone());
    tokio::spawn(async move { axum::serve(admin, app).await });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let controller = tokio::spawn(Controller::new(ctx).run(stopped(stop_rx.clone())));
    let serving = tokio::spawn({
        let router = router.clone();
        let stop = stopped(stop_rx);
        async move { router.serve(http, stop).await }
    });
    println!("nimbus router: ready");
    crate::serve::wait_for_signal().await;
    let _ = stop_tx.send(true);
    let _ = controller.await;
    let _ = tokio::time::timeout(Duration::from_secs(10), serving).await;
    crate::traces::shutdown(traces).await;
    Ok(())
}

/// The router's per-revision load, for the operator's autoscaler.
async fn stats(State(router): State<Router>) -> axum::Json<StatsReport> {
    let report = router
        .all_stats()
        .into_iter()
        .map(|(key, s)| {
            (
                key.to_string(),
                RouterLoad {
                    in_flight: s.in_flight,
                    requests: s.requests,
                },
            )
        })
        .collect();
    axum::Json(report)
}
