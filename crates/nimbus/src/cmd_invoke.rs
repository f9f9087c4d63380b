//! `nimbus invoke` (send a request to a service through the invocation queue: with `--async`,
//! return once it is stored, as Lambda's `Event` invocations; otherwise wait for its outcome
//! and print the response) and `nimbus invocations` (list, show, cancel).

use std::io::{Read as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use http::Method;
use serde_json::{Value, json};

use crate::ClientOpts;
use crate::client::Client;

const API: &str = "/apis/nimbus.dev/v1";

/// `nimbus invoke SERVICE [-d DATA] [-X METHOD] [--path P] [-H 'K: V'] [--async]`.
#[derive(clap::Args)]
pub struct InvokeArgs {
    /// The service to invoke.
    pub service: String,
    /// The request body; `@FILE` reads a file, `@-` standard input.
    #[arg(short = 'd', long)]
    pub data: Option<String>,
    /// The request method.
    #[arg(short = 'X', long, default_value = "POST")]
    pub method: String,
    /// The request's path and query.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// A request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Return as soon as the invocation is stored, printing its id, instead of waiting for
    /// its outcome.
    #[arg(long = "async")]
    pub asynchronous: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub async fn invoke(args: &InvokeArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client).await?;
    let body = read_data(args.data.as_deref())?;
    let mut headers = serde_json::Map::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            bail!("--header {h:?}: write it as \"Name: value\"");
        };
        headers.insert(name.trim().to_owned(), json!(value.trim()));
    }
    let request = json!({
        "service": args.service,
        "method": args.method,
        "path": args.path,
        "headers": headers,
        "bodyBase64": base64::engine::general_purpose::STANDARD.encode(&body),
    });
    let path = format!("{API}/namespaces/{}/invocations", client.namespace);
    let created = client.request(Method::POST, &path, Some(request)).await?;
    let id = created["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if args.asynchronous {
        println!("{id}");
        return Ok(());
    }
    let done = wait(&client, &id).await?;
    let status = &done["status"];
    let response = &status["response"];
    if let Some(text) = response["body"].as_str() {
        std::io::stdout().write_all(text.as_bytes())?;
    } else if let Some(b64) = response["bodyBase64"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD.decode(b64)?;
        std::io::stdout().write_all(&bytes)?;
    }
    match status["state"].as_str() {
        Some("Succeeded") => Ok(()),
        state => bail!(
            "invocation {id} {}: {}",
            state.unwrap_or("ended").to_lowercase(),
            status["error"].as_str().unwrap_or("no detail")
        ),
    }
}

/// Poll the invocation until it is no longer pending, telling about failed attempts.
async fn wait(client: &Client, id: &str) -> anyhow::Result<Value> {
    let path = format!("{API}/namespaces/{}/invocations/{id}", client.namespace);
    let mut told = 0;
    loop {
        let inv = client.request(Method::GET, &path, None).await?;
        let attempts = inv["status"]["attempts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for a in attempts.iter().skip(told) {
            if a["statusCode"]
                .as_u64()
                .is_none_or(|s| !(200..300).contains(&s))
            {
                let what = match (a["statusCode"].as_u64(), a["error"].as_str()) {
                    (Some(s), _) => format!("answered {s}"),
                    (None, Some(e)) => e.to_owned(),
                    (None, None) => "failed".into(),
                };
                eprintln!("attempt {} {what}", told + 1);
            }
            told += 1;
        }
        if inv["status"]["state"] != "Pending" {
            return Ok(inv);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_data(data: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match data {
        None => Ok(Vec::new()),
        Some("@-") => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            Ok(buf)
        }
        Some(d) if d.starts_with('@') => {
            std::fs::read(&d[1..]).with_context(|| format!("--data {d}: cannot read {}", &d[1..]))
        }
        Some(d) => Ok(d.as_bytes().to_vec()),
    }
}

/// `nimbus invocations [SERVICE] [--state S] [-A]`, `... get ID`, `... cancel ID`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InvocationsArgs {
    #[command(subcommand)]
    pub action: Option<Action>,
    /// Only this service's.
    pub service: Option<String>,
    /// Only those in this state: Pending, Succeeded, Failed (the dead-letter queue) or
    /// Cancelled.
    #[arg(long)]
    pub state: Option<String>,
    /// Across all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

#[derive(clap::Subcommand)]
pub enum Action {
    /// Show one invocation: its request, attempts and last response (YAML, or `-o json`).
    Get {
        id: String,
        #[arg(short = 'o', long)]
        output: Option<String>,
        #[command(flatten)]
        client: ClientOpts,
    },
    /// Cancel a pending invocation.
    Cancel {
        id: String,
        #[command(flatten)]
        client: ClientOpts,
    },
}

pub async fn invocations(args: &InvocationsArgs) -> anyhow::Result<()> {
    match &args.action {
        Some(Action::Get { id, output, client }) => {
            let client = Client::new(client).await?;
            let path = format!("{API}/namespaces/{}/invocations/{id}", client.namespace);
            let inv = client.request(Method::GET, &path, None).await?;
            match output.as_deref() {
                Some("json") => println!("{}", serde_json::to_string_pretty(&inv)?),
                None | Some("yaml") => print!("{}", serde_saphyr::to_string(&inv)?),
                Some(other) => bail!("-o {other}: use yaml or json"),
            }
            Ok(())
        }
        Some(Action::Cancel { id, client }) => {
            let client = Client::new(client).await?;
            let path = format!("{API}/namespaces/{}/invocations/{id}", client.namespace);
            client.request(Method::DELETE, &path, None).await?;
            println!("invocation {id} cancelled");
            Ok(())
        }
        None => list(args).await,
    }
}

async fn list(args: &InvocationsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client).await?;
    let mut path = match args.all_namespaces {
        true => format!("{API}/invocations?limit=500"),
        false => format!(
            "{API}/namespaces/{}/invocations?limit=500",
            client.namespace
        ),
    };
    if let Some(service) = &args.service {
        path.push_str(&format!("&service={service}"));
    }
    if let Some(state) = &args.state {
        path.push_str(&format!("&state={state}"));
    }
    let list = client.request(Method::GET, &path, None).await?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("No invocations found.");
        return Ok(());
    }
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "TARGET".into(),
        "STATE".into(),
        "ATTEMPTS".into(),
        "STATUS".into(),
        "CREATED".into(),
    ]];
    if args.all_namespaces {
        rows[0].insert(0, "NAMESPACE".into());
    }
    for i in &items {
        let mut row = vec![
            i["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            i["spec"]["target"].as_str().unwrap_or_default().to_owned(),
            i["status"]["state"].as_str().unwrap_or_default().to_owned(),
            i["status"]["attemptCount"].to_string(),
            i["status"]["response"]["statusCode"]
                .as_u64()
                .map_or("-".into(), |s| s.to_string()),
            i["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ];
        if args.all_namespaces {
            row.insert(
                0,
                i["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        rows.push(row);
    }
    print!("{}", crate::cmd_get::render(&rows));
    Ok(())
}
