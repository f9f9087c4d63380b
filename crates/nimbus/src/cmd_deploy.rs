//! `nimbus deploy NAME --command PATH`: quick create/update of a host-process service, waiting
//! until it is ready (like `kn service create/update`).

use std::time::{Duration, Instant};

use anyhow::bail;
use nimbus_api::conditions::{ConditionStatus, get_condition};
use nimbus_api::constants::{ANNOTATION_RUNTIME, RUNTIME_PROCESS};
use nimbus_api::k8s_openapi::api::core::v1::{Container, EnvVar};
use nimbus_api::{Kind, Object, ObjectMeta, Service};

use crate::ClientOpts;
use crate::client::Client;

#[derive(clap::Args)]
pub struct DeployArgs {
    /// Service name.
    pub name: String,
    /// Program to run; it must listen on the port given in $PORT.
    #[arg(long)]
    pub command: String,
    /// An argument for the program (repeatable).
    #[arg(long = "arg", allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// Environment variable K=V (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Working directory of the process.
    #[arg(long)]
    pub working_dir: Option<String>,
    /// Return at once instead of waiting for the service to be ready.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for readiness, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
    #[command(flatten)]
    pub client: ClientOpts,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client).await?;
    let container = container(&args);
    let existing = client.get(Kind::Service, &args.name).await?;
    let verb = if existing.is_some() {
        "Updating"
    } else {
        "Creating"
    };
    println!(
        "{verb} service '{}' in namespace '{}':",
        args.name, args.client.namespace
    );
    let svc = match existing {
        Some(Object::Service(mut svc)) => {
            svc.spec.template.metadata.name = None;
            as_process(&mut svc);
            svc.spec.template.spec.containers = vec![container];
            client.replace(&Object::Service(svc)).await?
        }
        _ => {
            client
                .create(&Object::Service(new_service(&args, container)))
                .await?
        }
    };
    if args.no_wait {
        return Ok(());
    }
    wait_ready(
        &client,
        &args.name,
        svc.metadata().generation.unwrap_or(1),
        Duration::from_secs(args.timeout),
    )
    .await
}

fn container(args: &DeployArgs) -> Container {
    Container {
        name: nimbus_api::defaults::DEFAULT_CONTAINER_NAME.to_string(),
        command: Some(vec![args.command.clone()]),
        args: (!args.args.is_empty()).then(|| args.args.clone()),
        env: (!args.env.is_empty()).then(|| {
            args.env
                .iter()
                .map(|(k, v)| EnvVar {
                    name: k.clone(),
                    value: Some(v.clone()),
                    ..Default::default()
                })
                .collect()
        }),
        working_dir: args.working_dir.clone(),
        ..Default::default()
    }
}

fn new_service(args: &DeployArgs, container: Container) -> Service {
    let mut svc = Service {
        metadata: ObjectMeta {
            name: Some(args.name.clone()),
            namespace: Some(args.client.namespace.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    as_process(&mut svc);
    svc.spec.template.spec.containers = vec![container];
    svc
}

/// Run the service's revisions as host processes (`nimbus.dev/runtime: process`).
fn as_process(svc: &mut Service) {
    let template = &mut svc.spec.template;
    if template.spec.runtime_class_name.as_deref() == Some(RUNTIME_PROCESS) {
        template.spec.runtime_class_name = None; // the legacy spelling of the same choice
    }
    template
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_RUNTIME.to_string(), RUNTIME_PROCESS.to_string());
}

/// Poll until the service has observed `generation` and is Ready (or has failed).
async fn wait_ready(
    client: &Client,
    name: &str,
    generation: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last_reason = String::new();
    loop {
        let Some(Object::Service(svc)) = client.get(Kind::Service, name).await? else {
            bail!("service '{name}' disappeared while waiting for it");
        };
        let status = svc.status.clone().unwrap_or_default();
        let current = status.observed_generation == Some(generation);
        let ready = get_condition(&status.conditions, "Ready")
            .cloned()
            .unwrap_or_default();
        if current && ready.status == ConditionStatus::True {
            let rev = status.latest_ready_revision_name.unwrap_or_default();
            let url = status.url.unwrap_or_default();
            println!(
                "Service '{name}' is ready: latest revision '{rev}' ({:.1}s)",
                start.elapsed().as_secs_f64()
            );
            println!("{url}");
            return Ok(());
        }
        if current && ready.status == ConditionStatus::False {
            bail!(
                "service '{name}' is not ready: {}: {}",
                ready.reason.unwrap_or_default(),
                ready.message.unwrap_or_default()
            );
        }
        let reason = ready.reason.unwrap_or_default();
        if reason != last_reason && !reason.is_empty() {
            println!("  ... {reason}");
            last_reason = reason;
        }
        if start.elapsed() > timeout {
            bail!(
                "service '{name}' was not ready after {}s (last reason: {last_reason}); see `nimbus get revisions`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
