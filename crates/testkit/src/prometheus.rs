//! A real Prometheus server for tests (Debian's `prometheus` package): its own process on a
//! free loopback port, its TSDB in a temporary directory, scraping the given targets every
//! second. Never the system service: every test starts its own.
//!
//! ```text
//! let prom = Prometheus::start(&[Scrape::api(&nimbus)])?;   // None after skip() if not installed
//! let rows = prom.query("nimbus_revision_requests_total").await?;  // [(labels, value)]
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::image::find_tool;
use crate::{Nimbus, skip};

/// One scrape job.
pub struct Scrape {
    pub job: String,
    /// `host:port` of the target.
    pub target: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
}

/// A Prometheus process on 127.0.0.1. Killed on drop.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// One series of a query result: its labels and value.
pub type Sample = (serde_json::Map<String, Value>, f64);

// === impl Scrape ===

impl Scrape {
    /// The API port's `/metrics` of `nimbus`, with its bearer token.
    pub fn api(nimbus: &Nimbus) -> Self {
        let target = nimbus.api_url().trim_start_matches("http://").to_owned();
        Self {
            job: "nimbus".into(),
            target,
            token: Some(nimbus.token.clone()),
        }
    }
}

// === impl Prometheus ===

impl Prometheus {
    /// Starts Prometheus scraping `jobs` every second; `None` after [`skip`] when it is not
    /// installed (so this panics under `CI`).
    pub fn start(jobs: &[Scrape]) -> anyhow::Result<Option<Self>> {
        let Some(program) = find_tool("prometheus") else {
            skip("prometheus is not installed (Debian package prometheus)");
            return Ok(None);
        };
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, config_yaml(jobs))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(dir.path().join("prometheus.log"))?;
        let child = Command::new(program)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus")?;
        let prom = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        prom.wait_ready(Duration::from_secs(30))?;
        Ok(Some(prom))
    }

    fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let addr = self.url.trim_start_matches("http://");
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("prometheus did not listen on {addr}: {}", self.log())
    }

    /// What Prometheus logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// The instant vector `promql` evaluates to now (`/api/v1/query`).
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<Sample>> {
        let base = format!("{}/api/v1/query", self.url);
        let url = reqwest::Url::parse_with_params(&base, &[("query", promql)])?;
        let resp: Value = reqwest::Client::new().get(url).send().await?.json().await?;
        if resp["status"] != "success" {
            bail!("query {promql} failed: {resp}");
        }
        let rows = resp["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(rows.iter().filter_map(sample).collect())
    }

    /// Polls `promql` until `ok` holds for its result (Prometheus scrapes every second).
    pub async fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        ok: impl Fn(&[Sample]) -> bool,
    ) -> anyhow::Result<Vec<Sample>> {
        let deadline = Instant::now() + timeout;
        loop {
            let rows = self.query(promql).await?;
            if ok(&rows) {
                return Ok(rows);
            }
            if Instant::now() > deadline {
                bail!("{promql}: {rows:?} never met the condition");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sample(row: &Value) -> Option<Sample> {
    let labels = row["metric"].as_object()?.clone();
    let value = row["value"][1].as_str()?.parse().ok()?;
    Some((labels, value))
}

fn config_yaml(jobs: &[Scrape]) -> String {
    let mut out =
        String::from("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n");
    for job in jobs {
        out.push_str(&format!(
            "  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n",
            job.job, job.target
        ));
        if let Some(token) = &job.token {
            out.push_str(&format!(
                "    authorization:\n      credentials: '{token}'\n"
            ));
        }
    }
    out
}
