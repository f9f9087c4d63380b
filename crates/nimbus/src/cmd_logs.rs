//! `nimbus logs`: the output of a service's instances (or one revision's), read from the API's
//! `log` subresource and printed as it arrives; with `--follow` until interrupted.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use nimbus_api::Kind;

use crate::ClientOpts;
use crate::client::Client;

/// `nimbus logs SERVICE [--revision R] [-f] [--since 10m] [--tail N] [--timestamps]`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// The service whose instances' output to show (each line starts with the instance name).
    pub service: String,
    /// Only this revision of the service [default: all of its revisions, merged by time].
    #[arg(long)]
    pub revision: Option<String>,
    /// Keep printing new lines as they are written (interrupt to stop).
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines newer than this (`10s`, `5m`, `1h`, `1h30m`).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<Duration>,
    /// Only the last N lines of those selected (negative: all, as kubectl's -1).
    #[arg(long, allow_negative_numbers = true)]
    pub tail: Option<i64>,
    /// Print each line's time (RFC 3339, UTC) after the instance name.
    #[arg(long)]
    pub timestamps: bool,
    #[command(flatten)]
    pub client: ClientOpts,
}

pub async fn run(args: &LogsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client).await?;
    if client.get(Kind::Service, &args.service).await?.is_none() {
        bail!(
            "service \"{}\" not found in namespace \"{}\"; `nimbus get services` lists the services there",
            args.service,
            client.namespace
        );
    }
    let resp = client
        .get_stream(Kind::Service, &args.service, "log", &query(args))
        .await?;
    print_stream(resp).await
}

/// The API's query parameters for these options.
fn query(args: &LogsArgs) -> Vec<(&'static str, String)> {
    let mut query = Vec::new();
    if let Some(revision) = &args.revision {
        query.push(("revision", revision.clone()));
    }
    if args.follow {
        query.push(("follow", "true".into()));
    }
    if let Some(since) = args.since {
        query.push(("sinceSeconds", since_seconds(since).to_string()));
    }
    if let Some(tail) = args.tail.filter(|&n| n >= 0) {
        query.push(("tailLines", tail.to_string()));
    }
    if args.timestamps {
        query.push(("timestamps", "true".into()));
    }
    query
}

/// Whole seconds, rounded up (the API counts in seconds, as Kubernetes does).
fn since_seconds(since: Duration) -> u64 {
    since.as_secs() + u64::from(since.subsec_nanos() > 0)
}

fn parse_since(s: &str) -> Result<Duration, String> {
    let d = nimbus_api::duration::parse_duration(s)?;
    if d.is_zero() {
        return Err("must be more than 0 (e.g. 10s, 5m, 1h)".into());
    }
    Ok(d)
}

/// Copy the body to stdout chunk by chunk, flushing each, until it ends (or stdout is closed).
async fn print_stream(mut resp: reqwest::Response) -> anyhow::Result<()> {
    while let Some(chunk) = resp.chunk().await.context("reading the log stream")? {
        let mut out = std::io::stdout().lock();
        let written = out.write_all(&chunk).and_then(|()| out.flush());
        match written {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            other => other.context("writing to standard output")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        logs: LogsArgs,
    }

    fn parse(args: &[&str]) -> Result<LogsArgs, clap::Error> {
        let argv = std::iter::once("logs").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.logs)
    }

    #[test]
    fn options_become_query_parameters() {
        let args = parse(&[
            "hello",
            "-f",
            "--since",
            "1m30s",
            "--tail",
            "5",
            "--timestamps",
        ]);
        let q = query(&args.unwrap());
        let expected = [
            ("follow", "true"),
            ("sinceSeconds", "90"),
            ("tailLines", "5"),
            ("timestamps", "true"),
        ];
        let q: Vec<(&str, &str)> = q.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(q, expected);
        let args = parse(&[
            "hello",
            "--revision",
            "hello-00001",
            "--tail=-1",
            "--since=500ms",
        ]);
        let q = query(&args.unwrap());
        assert_eq!(
            q,
            [
                ("revision", "hello-00001".to_string()),
                ("sinceSeconds", "1".into())
            ]
        );
    }

    #[test]
    fn bad_since_is_refused() {
        for bad in ["0s", "ten minutes", "-5m"] {
            assert!(parse(&["hello", "--since", bad]).is_err(), "{bad}");
        }
    }
}
