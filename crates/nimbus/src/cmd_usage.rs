//! `nimbus usage [SERVICE]`: metered usage and its cost per revision, from the API's
//! `/apis/usage.nimbus.dev/v1alpha1/usage`, as a table or JSON. A price file is applied here,
//! on the figures the server returns (the server knows only its presets and its own table).

use anyhow::{Context as _, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use http::Method;
use nimbus_usage::{PriceTable, Row, Window};
use serde_json::Value;

use crate::ClientOpts;
use crate::client::Client;

#[derive(clap::Args)]
pub struct UsageArgs {
    /// Only this service's revisions.
    pub service: Option<String>,
    /// From when: a duration before now (24h, 90m), an RFC 3339 time, or `month` (the start of
    /// this calendar month, UTC).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Until when (same forms; default: now).
    #[arg(long)]
    pub until: Option<String>,
    /// Output format: json (default: a table).
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    /// Price with a preset (cloud-run, lambda) or a YAML/JSON price file (default: the
    /// server's table, `nimbus serve --prices`).
    #[arg(long)]
    pub prices: Option<String>,
    /// Every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub async fn run(args: &UsageArgs) -> anyhow::Result<()> {
    let json_out = match args.output.as_deref() {
        None => false,
        Some("json") => true,
        Some(other) => bail!("-o {other}: use json (or no -o for a table)"),
    };
    let file_prices = match args.prices.as_deref() {
        Some(p) if PriceTable::preset(p).is_none() => {
            Some(PriceTable::resolve(p).context("--prices")?)
        }
        _ => None,
    };
    let client = Client::new(&args.client).await?;
    let body = client
        .request(Method::GET, &path(args, &client.namespace), None)
        .await?;
    let body = match &file_prices {
        Some(table) => reprice(&body, table)?,
        None => body,
    };
    match json_out {
        true => println!("{}", serde_json::to_string_pretty(&body)?),
        false => print!("{}", table(&body, args.all_namespaces)),
    }
    Ok(())
}

/// The API path with the query.
fn path(args: &UsageArgs, namespace: &str) -> String {
    let mut query = vec![("since", instant(&args.since))];
    if !args.all_namespaces {
        query.push(("namespace", namespace.to_owned()));
    }
    if let Some(service) = &args.service {
        query.push(("service", service.clone()));
    }
    if let Some(until) = &args.until {
        query.push(("until", instant(until)));
    }
    if let Some(p) = args
        .prices
        .as_deref()
        .filter(|p| PriceTable::preset(p).is_some())
    {
        query.push(("prices", p.to_owned()));
    }
    let query: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
            )
        })
        .collect();
    format!("{}?{}", nimbus_usage::api::PATH, query.join("&"))
}

/// `month` as the start of this month; anything else as given (the server parses it).
fn instant(value: &str) -> String {
    match value {
        "month" => nimbus_usage::month_start(Utc::now()).to_rfc3339_opts(SecondsFormat::Secs, true),
        other => other.to_owned(),
    }
}

/// The server's answer priced again with `table`.
fn reprice(body: &Value, table: &PriceTable) -> anyhow::Result<Value> {
    let rows: Vec<Row> = serde_json::from_value(body["rows"].clone()).context("the usage rows")?;
    let time = |field: &str| -> anyhow::Result<DateTime<Utc>> {
        let text = body[field].as_str().unwrap_or_default();
        Ok(DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("the answer's {field}"))?
            .with_timezone(&Utc))
    };
    let window = Window::new(time("since")?, time("until")?)?;
    Ok(nimbus_usage::api::render(window, table, &rows))
}

/// The kubectl-like table, with a total line when there is more than one row.
fn table(body: &Value, all_namespaces: bool) -> String {
    let currency = body["prices"]["currency"].as_str().unwrap_or("");
    let mut rows = vec![header(all_namespaces)];
    let items = body["rows"].as_array().cloned().unwrap_or_default();
    for r in &items {
        let mut row = vec![text(&r["service"]), text(&r["revision"])];
        row.extend(figures(r, currency));
        if all_namespaces {
            row.insert(0, text(&r["namespace"]));
        }
        rows.push(row);
    }
    if items.len() > 1 {
        let mut row = vec!["TOTAL".to_owned(), String::new()];
        row.extend(figures(&body["total"], currency));
        if all_namespaces {
            row.insert(0, String::new());
        }
        rows.push(row);
    }
    let mut out = match items.is_empty() {
        true => "No usage recorded in this window.\n".to_owned(),
        false => crate::cmd_get::render(&rows),
    };
    out.push_str(&format!(
        "{} to {}, priced with {}\n",
        text(&body["since"]),
        text(&body["until"]),
        text(&body["prices"]["name"])
    ));
    out
}

fn header(all_namespaces: bool) -> Vec<String> {
    let mut h: Vec<String> = [
        "SERVICE",
        "REVISION",
        "REQUESTS",
        "INSTANCE-S",
        "VCPU-S(ALLOC/USED)",
        "GIB-S(ALLOC/USED)",
        "COLD-STARTS",
        "COST",
    ]
    .map(String::from)
    .to_vec();
    if all_namespaces {
        h.insert(0, "NAMESPACE".into());
    }
    h
}

fn figures(r: &Value, currency: &str) -> Vec<String> {
    let n = |k: &str| r[k].as_f64().unwrap_or(0.0);
    vec![
        r["requests"].to_string(),
        format!("{:.1}", n("instanceSeconds")),
        format!(
            "{:.3}/{:.3}",
            n("vcpuSecondsAllocated"),
            n("vcpuSecondsUsed")
        ),
        format!("{:.3}/{:.3}", n("gibSecondsAllocated"), n("gibSecondsUsed")),
        r["coldStarts"].to_string(),
        format!("{:.6} {currency}", n("cost")),
    ]
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}
