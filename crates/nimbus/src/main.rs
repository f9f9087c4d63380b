//! `nimbus`: the one binary. `serve` runs the embedded platform; every other command is a client
//! of its API. This file only parses the command line and dispatches.

mod client;
mod cluster;
mod cluster_delivery;
mod cmd_apply;
mod cmd_deploy;
mod cmd_describe;
mod cmd_export;
mod cmd_get;
mod cmd_image;
mod cmd_install;
mod cmd_invoke;
mod cmd_job;
mod cmd_logs;
mod cmd_usage;
mod config_source;
mod console;
mod datadir;
mod hygiene;
mod invocations;
mod kubeconfig;
mod limits;
mod metrics;
mod runtimes;
mod serve;
mod sources;
mod traces;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nimbus",
    version,
    about = "A serverless platform in one binary (Knative Serving API)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by client commands. How server and token are found: see `kubeconfig.rs`.
#[derive(clap::Args, Clone)]
pub struct ClientOpts {
    /// API server URL (as printed by `nimbus serve`); overrides the kubeconfig's
    /// [default: the kubeconfig context's server, else http://127.0.0.1:8081].
    #[arg(long, env = "NIMBUS_SERVER", global = true)]
    pub server: Option<String>,
    /// Bearer token; overrides the kubeconfig and the data directory's token file.
    #[arg(long, env = "NIMBUS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Kubeconfig file [default: $KUBECONFIG, else ~/.kube/config].
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context [default: its current-context].
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Data directory of a local `nimbus serve`, whose admin.token is used for a loopback
    /// server when no other token is given.
    #[arg(
        long,
        env = "NIMBUS_DATA_DIR",
        default_value = ".nimbus",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Namespace.
    #[arg(short = 'n', long, default_value = "default", global = true)]
    pub namespace: String,
}

#[derive(Subcommand)]
enum Command {
    /// Run the embedded platform: API server, controller, router and runtimes in one process.
    Serve(serve::ServeArgs),
    /// Create or update resources from a YAML/JSON file (`-` for standard input).
    Apply {
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show resources as a table, or one resource as YAML/JSON.
    Get {
        /// services (ksvc), configurations, revisions (rev), routes, secrets or configmaps (cm).
        kind: String,
        name: Option<String>,
        /// Output format: yaml or json (default: a table).
        #[arg(short = 'o', long)]
        output: Option<String>,
        /// List across all namespaces.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Print Secrets' values in `-o yaml|json` (redacted by default).
        #[arg(long)]
        show_secrets: bool,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Show a resource's details, conditions and the Events about it (like kubectl describe).
    Describe {
        /// services (ksvc), revisions (rev), routes, configurations, ...
        kind: String,
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Delete a resource (deleting a service deletes its revisions and stops its instances).
    Delete {
        kind: String,
        name: String,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Create or update a host-process service from a command line (like `kn service create`).
    Deploy(cmd_deploy::DeployArgs),
    /// Show the output of a service's instances, each line prefixed with the instance's name.
    Logs(cmd_logs::LogsArgs),
    /// Invoke a service through the invocation queue: wait for its response, or with
    /// `--async` return its id once stored (retried on 408/429/5xx like Lambda's async calls).
    Invoke(cmd_invoke::InvokeArgs),
    /// List asynchronous invocations (`get ID` shows one, `cancel ID` cancels a pending one).
    Invocations(cmd_invoke::InvocationsArgs),
    /// Jobs (run to completion): `run JOB [--wait]`, `executions JOB`, `tasks EXECUTION`,
    /// `cancel EXECUTION`, `logs EXECUTION [--task N]`.
    Job {
        #[command(subcommand)]
        command: cmd_job::JobCommand,
    },
    /// Print a kubeconfig for the admin token of a data directory (for kubectl and the CLI).
    Kubeconfig {
        /// The data directory of `nimbus serve`.
        #[arg(long, env = "NIMBUS_DATA_DIR", default_value = ".nimbus")]
        data_dir: PathBuf,
        /// The API server URL (as printed by `nimbus serve`); written with `https://`, as
        /// kubectl sends tokens only over TLS and the API port speaks both.
        #[arg(long, env = "NIMBUS_SERVER", default_value = kubeconfig::DEFAULT_SERVER)]
        server: String,
    },
    /// Container images in the local store: import, pull, list.
    Image {
        #[command(subcommand)]
        command: cmd_image::ImageCommand,
        /// The data directory of `nimbus serve` (its images/ holds the store).
        #[arg(
            long,
            env = "NIMBUS_DATA_DIR",
            default_value = ".nimbus",
            global = true
        )]
        data_dir: PathBuf,
    },
    /// Registry credentials used for pulls.
    Registry {
        #[command(subcommand)]
        command: RegistryCommand,
        /// The data directory of `nimbus serve`.
        #[arg(
            long,
            env = "NIMBUS_DATA_DIR",
            default_value = ".nimbus",
            global = true
        )]
        data_dir: PathBuf,
    },
    /// Print a service as plain Kubernetes manifests (Deployments, Services, HPAs, an Ingress):
    /// the way out of Nimbus.
    Export {
        name: String,
        /// Output format: yaml (default) or json.
        #[arg(short = 'o', long)]
        output: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Usage and cost per service and revision: requests, instance-, vCPU- and GiB-seconds
    /// (allocated/used), cold starts, priced with a preset or a price file.
    Usage(cmd_usage::UsageArgs),
    /// Kubernetes mode: run the reconcilers and the autoscaler against a cluster.
    Operator(cluster::OperatorArgs),
    /// Kubernetes mode: run the router/activator against a cluster.
    Router(cluster::RouterArgs),
    /// Kubernetes mode: print the cluster's install manifests (CRDs, RBAC, the operator and
    /// the router), or apply them with --apply.
    Install(cmd_install::InstallArgs),
    /// Run the sample function (used by `serve --sample`, tests and benchmarks).
    #[command(hide = true)]
    SampleFunction,
}

#[derive(Subcommand)]
enum RegistryCommand {
    /// Save credentials for a registry (Docker's config.json format, mode 0600).
    Login {
        /// Registry host[:port], e.g. ghcr.io or 127.0.0.1:5000.
        registry: String,
        #[arg(short, long)]
        username: String,
        /// The password (prefer --password-stdin: arguments show in `ps`).
        #[arg(short, long)]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
    },
}

fn main() -> ExitCode {
    // `nimbus serve` starts its instance stubs as `nimbus <STUB_ARG> <revision>` (hidden): they
    // must run before anything else, and never return.
    if nimbus_runtime_process::stub_requested() {
        nimbus_runtime_process::run_instance_stub();
    }
    let cli = Cli::parse();
    // HTTPS clients (the CLI's, image pulls) use ring, like the API's TLS; the tree's reqwest
    // is built without a default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Apply { file, client } => cmd_apply::run(&client, &file).await,
        Command::Get {
            kind,
            name,
            output,
            all_namespaces,
            show_secrets,
            client,
        } => {
            let output = cmd_get::Output::parse(output.as_deref(), show_secrets);
            cmd_get::run(&client, &kind, name.as_deref(), output, all_namespaces).await
        }
        Command::Delete { kind, name, client } => cmd_get::delete(&client, &kind, &name).await,
        Command::Describe { kind, name, client } => cmd_describe::run(&client, &kind, &name).await,
        Command::Deploy(args) => cmd_deploy::run(args).await,
        Command::Image { command, data_dir } => cmd_image::run(&data_dir, command).await,
        Command::Registry {
            command:
                RegistryCommand::Login {
                    registry,
                    username,
                    password,
                    password_stdin,
                },
            data_dir,
        } => cmd_image::login(&data_dir, &registry, &username, password, password_stdin),
        Command::Logs(args) => cmd_logs::run(&args).await,
        Command::Invoke(args) => cmd_invoke::invoke(&args).await,
        Command::Invocations(args) => cmd_invoke::invocations(&args).await,
        Command::Job { command } => cmd_job::run(&command).await,
        Command::Kubeconfig { data_dir, server } => {
            let hint = "has `nimbus serve --data-dir` run with this directory?";
            let token = kubeconfig::read_token(&data_dir).context(hint)?;
            let ca = nimbus_apiserver::tls::ca_data(&data_dir).context(hint)?;
            let server = kubeconfig::https(&server);
            print!("{}", kubeconfig::render(&server, &ca, &token));
            Ok(())
        }
        Command::Export {
            name,
            output,
            client,
        } => cmd_export::run(&client, &name, output.as_deref()).await,
        Command::Usage(args) => cmd_usage::run(&args).await,
        Command::Operator(args) => cluster::operator(args).await,
        Command::Router(args) => cluster::router(args).await,
        Command::Install(args) => cmd_install::run(args).await,
        Command::SampleFunction => Ok(nimbus_hello::run().await?),
    }
}
