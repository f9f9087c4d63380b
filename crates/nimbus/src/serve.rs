//! `nimbus serve`: the embedded platform. Opens the store, binds the router and API ports,
//! wires controller ⇄ runtime ⇄ router, and runs until SIGINT/SIGTERM, then stops every instance.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use nimbus_api::conditions::is_ready;
use nimbus_api::networking::Ingress;
use nimbus_api::{Kind, Object};
use nimbus_controller::{
    Context, Controller, ControllerConfig, IngressSink, MetricsSource, RevisionLoad, Scaler,
    ScalerConfig, StoreResources,
};
use nimbus_router::{Router, RouterConfig};
use nimbus_runtime::RevisionKey;
use nimbus_store::Store;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where state (nimbus.db) and instance logs live.
    #[arg(long, default_value = ".nimbus")]
    pub data_dir: PathBuf,
    /// Router (data plane) address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// Control-plane API address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub api_addr: SocketAddr,
    /// Also serve `GET /metrics` here without the API token, for Prometheus scrapers (the API
    /// port's `/metrics` needs the token). Off unless given.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// A directory Wasm components may be read from (repeatable): a revision's `image:` must
    /// name a regular file under one of them.
    #[arg(long = "wasm-dir", default_value = ".")]
    pub wasm_dirs: Vec<PathBuf>,
    /// The user host-process instances run as when their manifest names none
    /// (`securityContext.runAsUser`): a user name or `UID[:GID]`. Only a server running as root
    /// can switch users; otherwise instances run as the server's user.
    #[arg(long, default_value = "nobody", value_parser = parse_user)]
    pub process_user: (u32, u32),
    /// Domain of route hosts: <service>.<namespace>.<domain>.
    #[arg(long, default_value = nimbus_api::constants::DEFAULT_DOMAIN)]
    pub domain: String,
    /// Deploy the sample function as service "hello" and print its URL.
    #[arg(long)]
    pub sample: bool,
    /// A registry (host:port) to pull from over plain HTTP; loopback registries always are.
    #[arg(long = "insecure-registry")]
    pub insecure_registry: Vec<String>,
    /// How often the autoscaler decides (Knative: 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub autoscaler_tick: Duration,
    /// How long a Kubernetes Event is kept after it last happened (the kube-apiserver's
    /// `--event-ttl`).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub event_ttl: Duration,
    /// Revision GC (Knative's config-gc `retain-since-create-time`): a non-active revision is
    /// kept at least this long after it was created; `disabled` turns the rule off.
    #[arg(long, default_value = "48h", value_parser = parse_optional_duration)]
    pub revision_gc_retain_since_create_time: Disableable<Duration>,
    /// Revision GC (`retain-since-last-active-time`): kept at least this long after it last
    /// received traffic; `disabled` turns the rule off.
    #[arg(long, default_value = "15h", value_parser = parse_optional_duration)]
    pub revision_gc_retain_since_last_active_time: Disableable<Duration>,
    /// Revision GC (`min-non-active-revisions`): non-active revisions always kept per service.
    #[arg(long, default_value_t = 20)]
    pub revision_gc_min_non_active: usize,
    /// Revision GC (`max-non-active-revisions`): beyond this many non-active revisions the
    /// oldest go whatever their age; `disabled` for no maximum.
    #[arg(long, default_value = "1000", value_parser = parse_optional_count)]
    pub revision_gc_max_non_active: Disableable<usize>,
    /// The host bridge containers get their own network on (created on first use, shared by
    /// every server of the host).
    #[arg(long, default_value = "nimbus0")]
    pub container_bridge: String,
    /// The bridge's IPv4 subnet: the bridge takes the first address, each container another.
    /// It must not overlap a route of the host.
    #[arg(long, default_value = "10.87.0.0/16")]
    pub container_subnet: nimbus_runtime_container::Subnet,
    /// Run every container in the host's network namespace, on a loopback port (what a
    /// revision asks for with the annotation `nimbus.dev/host-network: "true"`).
    #[arg(long)]
    pub container_host_network: bool,
    /// Run every container in a user namespace of its own: its ids 0-65535 are the host ids
    /// from --container-userns-base on, so its root is an unprivileged user on the host.
    /// Checked at startup (kernel, idmapped mounts); needs containers' own networks.
    #[arg(long)]
    pub container_user_namespaces: bool,
    /// With --container-user-namespaces: the host id of a container's root, a multiple of 65536
    /// (decimal or 0x…); give each server of a host its own.
    #[arg(long, default_value = "0x10000000")]
    pub container_userns_base: nimbus_runtime_container::HostIdRange,
    /// The price table usage and budgets are priced with: a preset (cloud-run, lambda) or a
    /// YAML/JSON file (see `nimbus usage --help`).
    #[arg(long, default_value = "cloud-run")]
    pub prices: String,
    /// How often metered usage is written to <data-dir>/usage.db (and budgets checked): at
    /// most this much is lost if the server is killed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub usage_flush_interval: Duration,
    #[command(flatten)]
    pub traces: crate::traces::TraceArgs,
}

/// A setting that may be `disabled` (Knative's config-gc word); `None` when it is.
#[derive(Clone, Copy, Debug)]
pub struct Disableable<T>(pub Option<T>);

impl ServeArgs {
    /// How containers are networked (`None`: the host's network for all).
    fn container_network(&self) -> Option<nimbus_runtime_container::NetworkConfig> {
        let config = nimbus_runtime_container::NetworkConfig::new(
            &self.container_bridge,
            self.container_subnet,
        );
        (!self.container_host_network).then_some(config)
    }

    /// Whether and how containers get user namespaces.
    fn container_user_namespaces(&self) -> Option<nimbus_runtime_container::UserNamespaces> {
        let userns = nimbus_runtime_container::UserNamespaces {
            range: self.container_userns_base,
            ..Default::default()
        };
        self.container_user_namespaces.then_some(userns)
    }

    fn revision_gc(&self) -> nimbus_controller::RevisionGcConfig {
        nimbus_controller::RevisionGcConfig {
            retain_since_create_time: self.revision_gc_retain_since_create_time.0,
            retain_since_last_active_time: self.revision_gc_retain_since_last_active_time.0,
            min_non_active: self.revision_gc_min_non_active,
            max_non_active: self.revision_gc_max_non_active.0,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    nimbus_api::duration::parse_duration(s)
}

/// `NAME` (from the host's user database) or `UID[:GID]` (the gid defaults to the user's
/// primary group, else the uid's number).
fn parse_user(s: &str) -> Result<(u32, u32), String> {
    use nix::unistd::{Uid, User};
    let (user, group) = match s.split_once(':') {
        Some((user, group)) => (user, Some(group)),
        None => (s, None),
    };
    let (uid, entry) = match user.parse::<u32>() {
        Ok(uid) => (uid, User::from_uid(Uid::from_raw(uid)).ok().flatten()),
        Err(_) => {
            let entry = User::from_name(user)
                .ok()
                .flatten()
                .ok_or_else(|| format!("no user {user:?} on this host; give UID[:GID]"))?;
            (entry.uid.as_raw(), Some(entry))
        }
    };
    let gid = match group {
        Some(group) => group
            .parse()
            .map_err(|_| format!("{group:?} is not a group id; give UID[:GID]"))?,
        None => entry.map_or(uid, |e| e.gid.as_raw()),
    };
    Ok((uid, gid))
}

/// A duration, or `disabled` (Knative's word for an unset GC rule).
fn parse_optional_duration(s: &str) -> Result<Disableable<Duration>, String> {
    match s {
        "disabled" => Ok(Disableable(None)),
        other => parse_duration(other).map(|d| Disableable(Some(d))),
    }
}

/// A count, or `disabled`.
fn parse_optional_count(s: &str) -> Result<Disableable<usize>, String> {
    match s {
        "disabled" => Ok(Disableable(None)),
        other => other
            .parse()
            .map(|n| Disableable(Some(n)))
            .map_err(|e| format!("{other:?} is not a count or \"disabled\": {e}")),
    }
}

/// The router's per-revision counters as the autoscaler's metrics.
struct RouterMetrics(Router);

impl MetricsSource for RouterMetrics {
    fn load(&self, revision: &RevisionKey) -> Option<RevisionLoad> {
        let s = self.0.stats(revision)?.snapshot();
        Some(RevisionLoad {
            in_flight: s.in_flight,
            requests_total: s.requests,
        })
    }
}

/// The router as the controller's ingress sink.
pub(crate) struct RouterIngress(pub(crate) Router);

impl IngressSink for RouterIngress {
    fn apply(&self, ingress: Ingress) {
        self.0.apply(ingress);
    }
    fn remove(&self, namespace: &str, name: &str) {
        self.0.remove(namespace, name);
    }
    fn programmed(&self) -> Vec<(String, String)> {
        self.0.programmed()
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    crate::hygiene::close_inherited_descriptors_on_exec()
        .context("marking inherited descriptors close-on-exec")?;
    // Before anything else touches the directory (stale cgroups, the database).
    let data_dir = crate::datadir::DataDir::lock(&args.data_dir)?;
    // Volume files of instances a crashed server left behind hold Secret values.
    nimbus_runtime::volumes::sweep(&args.data_dir.join("instances"));
    let wasm_dirs = args
        .wasm_dirs
        .iter()
        .map(|d| {
            d.canonicalize()
                .with_context(|| format!("--wasm-dir {}: no such directory", d.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let db = args.data_dir.join("nimbus.db");
    let store =
        Arc::new(Store::open(&db).with_context(|| format!("opening the store {}", db.display()))?);
    let http = bind(args.http_addr, "--http-addr").await?;
    let api = bind(args.api_addr, "--api-addr").await?;
    let (http_addr, api_addr) = (http.local_addr()?, api.local_addr()?);

    let runtimes = crate::runtimes::Runtimes::start(
        &args.data_dir,
        args.insecure_registry.clone(),
        wasm_dirs,
        args.process_user,
        args.container_network(),
        args.container_user_namespaces(),
    )?;
    runtimes.set_config_source(Arc::new(crate::config_source::StoreConfig(store.clone())));
    let traces = crate::traces::start(&args.traces)?;
    let tracing = traces.as_ref().map(nimbus_traces::Traces::tracing);
    let router = Router::with_tracing(runtimes.registry.clone(), RouterConfig::default(), tracing);
    let scaler = Scaler::new(
        Arc::new(RouterMetrics(router.clone())),
        ScalerConfig {
            tick: args.autoscaler_tick,
            ..Default::default()
        },
    );
    // Scale-downs wait for the router to finish an instance's in-flight requests.
    runtimes.set_load_probe(Arc::new(router.clone()));
    let activations = scaler.clone();
    router.set_activator(Arc::new(move |rev: &RevisionKey| activations.activate(rev)));
    let (invocations, deliver) =
        crate::invocations::start(&args.data_dir, store.clone(), router.clone(), &args.domain)?;
    let resources: Arc<dyn nimbus_controller::Resources> = Arc::new(StoreResources(store.clone()));
    crate::sources::start(
        Arc::clone(&resources),
        Kind::ALL.into_iter().filter(|k| k.is_source()).collect(),
        Some(Arc::clone(invocations.queue())),
        deliver,
        &args.domain,
    );
    let resources: Arc<dyn nimbus_controller::Resources> = Arc::new(StoreResources(store.clone()));
    let (recorder, _events) = nimbus_controller::Recorder::start(
        resources.clone(),
        Arc::new(nimbus_controller::SystemClock),
        nimbus_controller::EventConfig {
            instance: crate::cluster::hostname(),
            ttl: args.event_ttl,
            ..nimbus_controller::EventConfig::default()
        },
    );
    runtimes.set_notices(Arc::new(recorder.clone()));
    let ctx = Context::new(
        resources,
        runtimes.by_backend(),
        Some(Arc::new(RouterIngress(router.clone()))),
        ControllerConfig {
            domain: args.domain.clone(),
            url_port: Some(http_addr.port()),
            revision_gc: args.revision_gc(),
            ..ControllerConfig::default()
        },
        scaler.clone(),
    )
    .with_event_sink(Arc::new(crate::invocations::ScheduledEvents(
        invocations.clone(),
    )))
    .with_recorder(recorder.clone());
    let controller = Controller::new(ctx);
    let (stop_tx, stop_rx) = watch::channel(false);
    // Cost metering and budgets (nimbus-usage); budget crossings become Events.
    let prices = nimbus_usage::PriceTable::resolve(&args.prices).context("--prices")?;
    let (usage, usage_task) = crate::usage::start(
        &args.data_dir,
        prices,
        nimbus_usage::sampler::SamplerConfig {
            flush_every: args.usage_flush_interval,
            ..Default::default()
        },
        crate::usage::Wiring {
            store: store.clone(),
            router: router.clone(),
            registry: runtimes.registry.clone(),
            cgroups: runtimes.cgroups.clone(),
            scaler: scaler.clone(),
            notifier: Arc::new(crate::usage::BudgetEvents {
                recorder,
                store: store.clone(),
            }),
        },
        stopped(stop_rx.clone()),
    )?;
    let token = crate::kubeconfig::load_or_create_token(&args.data_dir)?;
    let tls = nimbus_apiserver::TlsIdentity::load_or_create(&args.data_dir, api_addr)?;
    let api_state = nimbus_apiserver::ApiState::new(store.clone())
        .with_token(token)
        .with_logs_root(nimbus_logs::logs_root(&args.data_dir));
    let api_metrics = Arc::new(nimbus_apiserver::ApiMetrics::default());
    let metrics = crate::metrics::routes(crate::metrics::Sources {
        router: router.clone(),
        scaler: scaler.clone(),
        controller: controller.clone(),
        api: api_metrics.clone(),
        store: store.clone(),
    });
    let history = crate::console::history();
    let api_app = nimbus_apiserver::app(api_state.clone());
    let app = nimbus_apiserver::with_metrics(api_app, api_metrics)
        .merge(crate::console::routes(history.clone(), api_state.clone()))
        .merge(nimbus_apiserver::authenticated(
            metrics.clone(),
            api_state.clone(),
        ))
        .merge(nimbus_apiserver::authenticated(
            nimbus_invocations::api::routes(invocations),
            api_state.clone(),
        ))
        .merge(nimbus_apiserver::authenticated(
            nimbus_usage::api::routes(usage),
            api_state,
        ));
    // Opt-in: /metrics without the token, on an address of its own (for scrapers).
    let metrics_listener = match args.metrics_addr {
        Some(addr) => Some(bind(addr, "--metrics-addr").await?),
        None => None,
    };

    let router_task = tokio::spawn({
        let router = router.clone();
        let stop = stopped(stop_rx.clone());
        async move { router.serve(http, stop).await }
    });
    let api_stop = stopped(stop_rx.clone());
    let api_task =
        tokio::spawn(
            async move { nimbus_apiserver::serve_with_tls(api, app, &tls, api_stop).await },
        );
    if let Some(listener) = metrics_listener {
        println!(
            "nimbus: metrics (no token) on http://{}/metrics",
            listener.local_addr()?
        );
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            let served = axum::serve(listener, metrics)
                .with_graceful_shutdown(stop)
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let controller_task = tokio::spawn(controller.run(stopped(stop_rx.clone())));
    let scaler_task = tokio::spawn(scaler.clone().run(stopped(stop_rx.clone())));
    crate::console::sample(
        history,
        router.clone(),
        scaler.clone(),
        stopped(stop_rx.clone()),
    );
    // KEDA's ScaledObjects: event-driven floors for the scaler (nimbus-keda).
    let keda = nimbus_keda::Keda::new(
        Arc::new(StoreResources(store.clone())),
        scaler.clone(),
        nimbus_keda::KedaConfig::default(),
    );
    let keda_task = tokio::spawn(keda.run(stopped(stop_rx.clone())));

    println!("nimbus: router listening on http://{http_addr}");
    println!("nimbus: API listening on http://{api_addr}");
    println!("nimbus: web console on http://{api_addr}/console/ (log in with the API token)");
    println!("nimbus: data in {}", args.data_dir.display());
    println!(
        "nimbus: API token in {} (HTTPS for kubectl on the same port: nimbus kubeconfig --data-dir {} --server https://{api_addr} > kubeconfig)",
        crate::kubeconfig::token_path(&args.data_dir).display(),
        args.data_dir.display()
    );
    if args.sample {
        deploy_sample(&store, args.process_user).await?;
        wait_and_print(&store, "hello").await;
    }
    println!("nimbus: ready (Ctrl-C to stop)");

    wait_for_signal().await;
    println!("nimbus: shutting down");
    let _ = stop_tx.send(true);
    let _ = controller_task.await;
    let _ = scaler_task.await;
    let _ = keda_task.await;
    let _ = usage_task.await;
    runtimes.shutdown().await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let _ = router_task.await;
        let _ = api_task.await;
    })
    .await;
    crate::traces::shutdown(traces).await;
    // The lock is released only now that every instance is stopped.
    drop(data_dir);
    Ok(())
}

/// Resolves once `true` is sent on the stop channel `rx` belongs to (or it is gone): the
/// shutdown future each task of a server gets.
pub(crate) async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// A listener on `addr` (given by `flag`), with an error that says what to do.
pub(crate) async fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({flag}); is another nimbus running? use port 0 to pick a free one"))
}

pub(crate) fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIMBUS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

pub(crate) async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// The sample function as a Knative Service: this very binary, run as `nimbus sample-function`.
/// A root server runs it as `process_user` like any host process, unless that user cannot
/// reach this binary (a checkout under root's home): then as the binary's owner, said once.
fn sample_service(process_user: (u32, u32)) -> anyhow::Result<Object> {
    let exe =
        std::env::current_exe().context("finding the nimbus binary for the sample function")?;
    let security = match crate::hygiene::executable_by(&exe, process_user) {
        Ok(true) => String::new(),
        _ if !nix::unistd::geteuid().is_root() => String::new(),
        _ => {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(&exe).map_or(0, |m| m.uid());
            println!(
                "nimbus: the sample function runs as uid {owner}, the owner of {}: uid {} (--process-user) cannot reach it",
                exe.display(),
                process_user.0
            );
            format!("\n          securityContext: {{runAsUser: {owner}}}")
        }
    };
    let yaml = format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
  namespace: default
spec:
  template:
    metadata:
      annotations:
        nimbus.dev/runtime: process
    spec:
      containers:
        - command: [{exe:?}]
          args: [sample-function]{security}
          env:
            - name: TARGET
              value: Nimbus
"#
    );
    Ok(nimbus_api::parse::parse_manifests("sample", &yaml)?.remove(0))
}

async fn deploy_sample(store: &Store, process_user: (u32, u32)) -> anyhow::Result<()> {
    let svc = sample_service(process_user)?;
    match store.get(Kind::Service, "default", "hello")? {
        Some(_) => store.update(svc)?,
        None => store.create(svc)?,
    };
    Ok(())
}

async fn wait_and_print(store: &Store, name: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < deadline {
        if let Ok(Some(Object::Service(svc))) = store.get(Kind::Service, "default", name)
            && let Some(status) = &svc.status
            && status.observed_generation == svc.metadata.generation
            && is_ready(&status.conditions)
        {
            let url = status.url.clone().unwrap_or_default();
            println!("nimbus: sample function \"{name}\" is ready at {url}");
            println!("nimbus: try: curl {url}/");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("nimbus: sample function \"{name}\" is not ready yet; see `nimbus get revisions`");
}
