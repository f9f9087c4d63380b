//! Helpers for integration tests that drive the real `nimbus` binary: start `nimbus serve` on
//! OS-chosen loopback ports with a fresh data directory, run CLI commands against it, send
//! requests through its router with a chosen `Host`, and wait for conditions with deadlines
//! (never fixed sleeps). Shared here so test files do not copy them.

pub mod api;
pub mod brokers;
pub mod host;
pub mod image;
pub mod kube;
pub mod manifest;
pub mod otlp;
pub mod prometheus;
pub mod runtime;
pub mod traffic;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running `nimbus serve`. Stopped (SIGTERM, then SIGKILL) on drop.
pub struct Nimbus {
    bin: PathBuf,
    child: Option<Child>,
    data_dir: PathBuf,
    /// The extra `serve` arguments, used again by [`Nimbus::restart`].
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
    pub http_addr: String,
    pub api_addr: String,
    /// The admin bearer token `nimbus serve` keeps in `<data_dir>/admin.token`.
    pub token: String,
    /// Lines nimbus printed on stdout during start-up.
    pub startup_output: Vec<String>,
    /// The kubeconfig [`Nimbus::kubectl`] uses, written on first use.
    kubeconfig: std::sync::OnceLock<PathBuf>,
}

/// `--process-user` as the test's own user unless `extra` chooses one: test programs live in
/// the checkout and in private temporary directories, which a root server's default instance
/// user (`nobody`) may not reach. The tests of that default choose it themselves.
fn own_user(extra: &[&str]) -> Vec<String> {
    if extra.iter().any(|a| a.starts_with("--process-user")) {
        return Vec::new();
    }
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    vec!["--process-user".to_owned(), format!("{uid}:{gid}")]
}

impl Nimbus {
    /// Start `bin serve` on ports 0 with a new temporary data directory.
    pub fn start(bin: &Path) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().to_path_buf();
        let mut n = Self::start_in(bin, &data_dir, &[])?;
        n._tmp = Some(tmp);
        Ok(n)
    }

    /// Start with extra `serve` arguments (for example `--sample`).
    pub fn start_with(bin: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut n = Self::start_in(bin, tmp.path(), extra)?;
        n._tmp = Some(tmp);
        Ok(n)
    }

    /// Start with `data_dir` as the data directory (kept: the caller owns it).
    pub fn start_in(bin: &Path, data_dir: &Path, extra: &[&str]) -> anyhow::Result<Self> {
        install_crypto();
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--api-addr",
                "127.0.0.1:0",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(own_user(extra))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("[nimbus] {line}");
                let _ = tx.send(line);
            }
        });
        let mut n = Self {
            bin: bin.to_path_buf(),
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
            http_addr: String::new(),
            api_addr: String::new(),
            token: String::new(),
            startup_output: Vec::new(),
            kubeconfig: std::sync::OnceLock::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .context("nimbus did not report ready in time")?;
            if let Some(a) = line.strip_prefix("nimbus: router listening on http://") {
                n.http_addr = a.trim().to_string();
            }
            if let Some(a) = line.strip_prefix("nimbus: API listening on http://") {
                n.api_addr = a.trim().to_string();
            }
            let done = line.starts_with("nimbus: ready");
            n.startup_output.push(line);
            if done {
                break;
            }
        }
        let token_file = data_dir.join("admin.token");
        n.token = std::fs::read_to_string(&token_file)
            .with_context(|| format!("reading {}", token_file.display()))?
            .trim()
            .to_string();
        Ok(n)
    }

    /// Stop (SIGTERM and wait; nothing if it was killed) and start again on the same data
    /// directory with the same extra arguments (new ports).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let tmp = self._tmp.take();
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let mut next = Self::start_in(&self.bin, &self.data_dir, &extra)?;
        next._tmp = tmp;
        *self = next;
        Ok(())
    }

    /// The server's pid (`None` once stopped or killed).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL the server and reap it, as a crash would end it: it stops nothing of its own.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after 15 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The data directory `nimbus serve` runs with.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `nimbus kubeconfig` for this server, written to `<data_dir>/kubeconfig`; returns its path.
    pub fn write_kubeconfig(&self) -> anyhow::Result<PathBuf> {
        let out = Command::new(&self.bin)
            .arg("kubeconfig")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--server", &self.api_url()])
            .env_remove("NIMBUS_SERVER")
            .output()
            .context("running nimbus kubeconfig")?;
        if !out.status.success() {
            bail!(
                "nimbus kubeconfig failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let path = self.data_dir.join("kubeconfig");
        std::fs::write(&path, &out.stdout)?;
        Ok(path)
    }

    /// Run `kubectl <args>` against this server (its kubeconfig written by
    /// [`Nimbus::write_kubeconfig`], `$HOME` in the data directory for kubectl's cache), with
    /// `stdin` as its standard input. kubectl is [`kube::kubectl_binary`]'s (`NIMBUS_KUBECTL`,
    /// else the cluster script's, else the `PATH`'s); check for it first
    /// ([`kube::have_kubectl`]).
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write as _;
        let kubeconfig = self
            .kubeconfig
            .get_or_init(|| self.write_kubeconfig().expect("nimbus kubeconfig"));
        let mut child = Command::new(kube::kubectl_binary())
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--request-timeout=60s")
            .args(args)
            .env("HOME", &self.data_dir)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running kubectl");
        let input = stdin.unwrap_or_default().to_string();
        let mut pipe = child.stdin.take().expect("piped stdin");
        std::thread::spawn(move || pipe.write_all(input.as_bytes()));
        child.wait_with_output().expect("kubectl output")
    }

    /// [`Nimbus::kubectl`] that must succeed; returns its stdout.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// A `nimbus` command aimed at this server with its token, and isolated from the
    /// developer's own kubeconfig.
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("NIMBUS_SERVER", self.api_url())
            .env("NIMBUS_TOKEN", &self.token)
            .env("NIMBUS_DATA_DIR", &self.data_dir)
            .env("KUBECONFIG", self.data_dir.join("no-kubeconfig"));
        cmd
    }

    /// An HTTP client that sends this server's token.
    pub fn api_client(&self) -> reqwest::Client {
        install_crypto();
        let mut headers = reqwest::header::HeaderMap::new();
        let value = format!("Bearer {}", self.token)
            .parse()
            .expect("a hex token is a valid header value");
        headers.insert(reqwest::header::AUTHORIZATION, value);
        reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("HTTP client")
    }

    pub fn http_port(&self) -> u16 {
        self.http_addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Run a client command (`nimbus <args>`) against this server.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("running the nimbus CLI")
    }

    /// Run a client command and fail with its output unless it succeeds; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "nimbus {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `nimbus apply -f -` with `yaml` on standard input.
    pub fn apply(&self, yaml: &str) -> Output {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("running nimbus apply");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// `nimbus apply -f -` that must succeed; returns its stdout.
    pub fn apply_ok(&self, yaml: &str) -> String {
        let out = self.apply(yaml);
        assert!(
            out.status.success(),
            "nimbus apply failed: {}\n{yaml}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// GET a resource from the API as JSON (None on 404).
    pub async fn api_get(&self, path: &str) -> anyhow::Result<Option<serde_json::Value>> {
        let resp = self
            .api_client()
            .get(format!("{}{path}", self.api_url()))
            .send()
            .await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Ok(Some(resp.json().await?))
    }

    /// Start Nimbus (with `extra` serve flags), apply `yaml`, and wait until service `name` is
    /// ready; returns the server and a client for its router.
    pub async fn start_serving(
        bin: &Path,
        extra: &[&str],
        yaml: &str,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Self, RouterClient)> {
        let nimbus = Self::start_with(bin, extra)?;
        let out = nimbus.apply(yaml);
        if !out.status.success() {
            bail!("apply failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        nimbus.wait_service_ready(name, timeout).await?;
        let client = RouterClient::new(&nimbus.http_addr);
        Ok((nimbus, client))
    }

    /// A Knative Service's JSON from the API.
    pub async fn service(&self, name: &str) -> anyhow::Result<serde_json::Value> {
        self.api_get(&format!(
            "/apis/serving.knative.dev/v1/namespaces/default/services/{name}"
        ))
        .await?
        .with_context(|| format!("service {name} not found"))
    }

    /// A revision's (actual, desired) replicas from its status (-1 when not reported).
    pub async fn replicas(&self, revision: &str) -> anyhow::Result<(i64, i64)> {
        let path = format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}");
        let rev = self
            .api_get(&path)
            .await?
            .with_context(|| format!("revision {revision} not found"))?;
        let s = &rev["status"];
        Ok((
            s["actualReplicas"].as_i64().unwrap_or(-1),
            s["desiredReplicas"].as_i64().unwrap_or(-1),
        ))
    }

    /// Polls the revision's (actual, desired) replicas until `ok` holds for them; panics
    /// with the last ones after `timeout`.
    pub async fn wait_replicas(
        &self,
        revision: &str,
        timeout: Duration,
        ok: impl Fn(i64, i64) -> bool,
    ) -> (i64, i64) {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.replicas(revision).await.unwrap();
            if ok(r.0, r.1) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "{revision}: replicas {r:?} never satisfied the condition"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Wait until the service has observed its generation and is Ready=True (or fail with its
    /// last status once the deadline passes or it turns Ready=False).
    pub async fn wait_service_ready(
        &self,
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let svc = self.service(name).await?;
            let generation = svc["metadata"]["generation"].clone();
            let status = &svc["status"];
            let ready = ready_status(status);
            if status["observedGeneration"] == generation && ready == "True" {
                return Ok(svc);
            }
            if Instant::now() > deadline {
                bail!("service {name} not ready in {timeout:?}; status: {status:#}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for Nimbus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The whitespace-separated words of the line of a printed `table` whose first word is `name`
/// (panics naming the table when there is none).
pub fn row<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.first() == Some(&name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{table}"))
}

/// The `Ready` condition's status (`True`/`False`/`Unknown`, or empty) of a status JSON.
pub fn ready_status(status: &serde_json::Value) -> String {
    condition(status, "Ready").0
}

/// (status, reason, message) of a condition in a status JSON.
pub fn condition(status: &serde_json::Value, type_: &str) -> (String, String, String) {
    let empty = vec![];
    let conds = status["conditions"].as_array().unwrap_or(&empty);
    match conds.iter().find(|c| c["type"] == type_) {
        Some(c) => (
            c["status"].as_str().unwrap_or("").to_string(),
            c["reason"].as_str().unwrap_or("").to_string(),
            c["message"].as_str().unwrap_or("").to_string(),
        ),
        None => Default::default(),
    }
}

/// An HTTP client for the router: sends requests with a chosen Host header to `addr`.
#[derive(Clone)]
pub struct RouterClient {
    http: reqwest::Client,
    addr: String,
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// A response read chunk by chunk to its end, which may be abnormal (a body the router cut).
#[derive(Debug)]
pub struct Streamed {
    pub status: u16,
    /// What arrived of the body.
    pub body: String,
    /// How the body ended: `Err` with the error chain's text when it did not end cleanly.
    pub end: Result<(), String>,
}

impl RouterClient {
    pub fn new(addr: &str) -> Self {
        install_crypto();
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .expect("client");
        Self {
            http,
            addr: addr.to_string(),
        }
    }

    pub async fn get(&self, host: &str, path: &str) -> anyhow::Result<Reply> {
        self.send(reqwest::Method::GET, host, path, &[], Vec::new())
            .await
    }

    /// `method path` to `host` with `headers` and `body`.
    pub async fn send(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Reply> {
        let mut req = self
            .http
            .request(method, format!("http://{}{path}", self.addr))
            .header(reqwest::header::HOST, host)
            .body(body);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.text().await?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// GET whose body is read chunk by chunk, keeping what arrived before an abnormal end.
    pub async fn get_streamed(&self, host: &str, path: &str) -> anyhow::Result<Streamed> {
        let mut resp = self
            .http
            .get(format!("http://{}{path}", self.addr))
            .header(reqwest::header::HOST, host)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let mut body = Vec::new();
        let end = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("{:#}", anyhow::Error::from(e))),
            }
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        Ok(Streamed { status, body, end })
    }

    /// Retry GET until `ok(reply)` or the deadline; returns the last reply.
    pub async fn get_until(
        &self,
        host: &str,
        path: &str,
        timeout: Duration,
        ok: impl Fn(&Reply) -> bool,
    ) -> anyhow::Result<Reply> {
        let deadline = Instant::now() + timeout;
        loop {
            let reply = self.get(host, path).await;
            match reply {
                Ok(r) if ok(&r) => return Ok(r),
                Ok(r) if Instant::now() > deadline => {
                    bail!("condition not met before deadline; last reply: {r:?}")
                }
                Err(e) if Instant::now() > deadline => return Err(e),
                _ => tokio::time::sleep(Duration::from_millis(25)).await,
            }
        }
    }
}

/// Make ring the process's TLS provider: the workspace's reqwest is built without a default one
/// (as the `nimbus` binary does at start). Idempotent.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A test cannot run here because `why`: print `SKIPPED: why` so the caller can return early,
/// or, when the `CI` environment variable is set (CI installs everything), fail the test.
pub fn skip(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{why}; required when CI is set"
    );
    eprintln!("SKIPPED: {why}");
}

/// Build the example component `examples/hello-wasm` into `target_dir` (release,
/// wasm32-wasip2) and return the `.wasm` path; `None`, after printing why, when the
/// wasm32-wasip2 standard library is not installed (`rustup target add wasm32-wasip2`).
pub fn build_hello_wasm(target_dir: &Path) -> Option<PathBuf> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let lib = PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("lib/rustlib/wasm32-wasip2");
    if !lib.is_dir() {
        skip(&format!(
            "{} is missing; run `rustup target add wasm32-wasip2`",
            lib.display()
        ));
        return None;
    }
    let manifest =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/hello-wasm/Cargo.toml");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target_dir)
        .status()
        .expect("running cargo");
    assert!(status.success(), "building examples/hello-wasm failed");
    Some(target_dir.join("wasm32-wasip2/release/hello_wasm.wasm"))
}
