//! Driving `nimbus serve` for the benchmark: start it, import an image into its store, create
//! idle services, wait for zero, time one request.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::http;

/// What a benchmark service runs.
pub enum Workload {
    /// A host binary (`runtimeClassName: process`, `command: [path]`).
    Process(PathBuf),
    /// An image reference, run under runc (no `runtimeClassName`: Nimbus's default, `oci`).
    Image(String),
    /// A WebAssembly component (`runtimeClassName: wasm`, `image: file://path`).
    Wasm(PathBuf),
}

impl Workload {
    fn pod_spec(&self) -> serde_json::Value {
        match self {
            Workload::Process(bin) => serde_json::json!({
                "runtimeClassName": "process",
                "containers": [{"command": [bin.display().to_string()]}],
            }),
            Workload::Image(reference) => serde_json::json!({
                "containers": [{"image": reference}],
            }),
            Workload::Wasm(component) => serde_json::json!({
                "runtimeClassName": "wasm",
                "containers": [{"image": format!("file://{}", component.display())}],
            }),
        }
    }
}

pub struct Server {
    child: Child,
    pub router: String,
    pub api: String,
    data_dir: PathBuf,
}

impl Server {
    /// Start `bin serve`; Wasm components are read from under `wasm_dir`.
    pub fn start(bin: &Path, wasm_dir: &Path) -> Result<Self, String> {
        let data_dir =
            std::env::temp_dir().join(format!("nimbus-coldstart-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let mut child = Command::new(bin)
            .args([
                "serve",
                "--http-addr",
                "127.0.0.1:0",
                "--api-addr",
                "127.0.0.1:0",
                "--autoscaler-tick",
                "500ms",
                "--data-dir",
            ])
            .arg(&data_dir)
            .arg("--wasm-dir")
            .arg(wasm_dir)
            .env("NIMBUS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let (mut router, mut api) = (String::new(), String::new());
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("nimbus: router listening on http://") {
                router = a.trim().to_string();
            }
            if let Some(a) = line.strip_prefix("nimbus: API listening on http://") {
                api = a.trim().to_string();
            }
            if line.starts_with("nimbus: ready") {
                break;
            }
        }
        if router.is_empty() || api.is_empty() {
            return Err("nimbus did not print its addresses".into());
        }
        // Keep reading: with the pipe closed, nimbus would die of EPIPE when it prints
        // "shutting down", before stopping its instances.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Self {
            child,
            router,
            api,
            data_dir,
        })
    }

    fn auth(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .ok()
            .map(|t| format!("Bearer {}", t.trim()))
    }

    pub fn api(&self, method: &str, path: &str, body: &str) -> Result<serde_json::Value, String> {
        let auth = self.auth();
        let mut headers = vec![("Content-Type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        let (status, _, body) = http::request(&self.api, method, path, &headers, body.as_bytes())
            .map_err(|e| e.to_string())?;
        if !(200..300).contains(&status) {
            return Err(format!("{method} {path}: HTTP {status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{method} {path}: {e}"))
    }

    /// The server's data directory (its image store is `images/` inside).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// `nimbus image import <layout> --data-dir <data dir>`: the CLI an operator would use.
    pub fn import_image(&self, bin: &Path, layout: &Path) -> Result<(), String> {
        let out = Command::new(bin)
            .arg("image")
            .arg("import")
            .arg(layout)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .env("NIMBUS_LOG", "warn")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "nimbus image import failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Create one idle-able service per name (stable window `window`, grace 0 s), all running
    /// `workload`.
    pub fn deploy_idle(
        &self,
        names: &[String],
        workload: &Workload,
        window: Duration,
        socket_activation: bool,
    ) -> Result<(), String> {
        for name in names {
            let mut annotations = serde_json::json!({
                "autoscaling.knative.dev/window": format!("{}s", window.as_secs()),
                "nimbus.dev/scale-to-zero-grace-period": "0s",
            });
            // Only host processes can take a pre-bound socket.
            if socket_activation && matches!(workload, Workload::Process(_)) {
                annotations["nimbus.dev/socket-activation"] = "true".into();
            }
            let svc = serde_json::json!({
                "apiVersion": "serving.knative.dev/v1",
                "kind": "Service",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"template": {
                    "metadata": {"annotations": annotations},
                    "spec": workload.pod_spec(),
                }}
            });
            self.api(
                "POST",
                "/apis/serving.knative.dev/v1/namespaces/default/services",
                &svc.to_string(),
            )?;
        }
        Ok(())
    }

    /// Create a service with a concurrency target, running `hello`.
    pub fn deploy_target(&self, name: &str, hello: &Path, target: u32) -> Result<(), String> {
        let svc = serde_json::json!({
            "apiVersion": "serving.knative.dev/v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"template": {
                "metadata": {"annotations": {"autoscaling.knative.dev/target": target.to_string()}},
                "spec": Workload::Process(hello.to_owned()).pod_spec(),
            }}
        });
        self.api(
            "POST",
            "/apis/serving.knative.dev/v1/namespaces/default/services",
            &svc.to_string(),
        )?;
        Ok(())
    }

    /// Wait until a revision reports at least `n` ready instances.
    pub fn wait_ready_replicas(
        &self,
        revision: &str,
        n: i64,
        timeout: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let path =
                format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}");
            if let Ok(rev) = self.api("GET", &path, "")
                && rev["status"]["actualReplicas"].as_i64().unwrap_or(0) >= n
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{revision} did not reach {n} ready instances in {timeout:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until every service's revision was ready once and is now at zero instances.
    pub fn wait_all_at_zero(&self, names: &[String], timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let revs = self.api(
                "GET",
                "/apis/serving.knative.dev/v1/namespaces/default/revisions",
                "",
            )?;
            let items = revs["items"].as_array().cloned().unwrap_or_default();
            let at_zero = items
                .iter()
                .filter(|r| {
                    let ready = r["status"]["conditions"].as_array().is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c["type"] == "Ready" && c["status"] == "True")
                    });
                    ready
                        && r["status"]["actualReplicas"] == 0
                        && r["status"]["desiredReplicas"] == 0
                })
                .count();
            if at_zero >= names.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {at_zero} of {} revisions reached zero in {timeout:?}",
                    names.len()
                ));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Wait until no container is left in the server's runc state (`<data-dir>/runc`).
    /// Revisions report zero instances as soon as scale-down begins, but a container whose
    /// program ignores SIGTERM (as pid 1, `nimbus-hello` does) is only killed and deleted
    /// when its termination grace period ends.
    pub fn wait_containers_gone(&self, timeout: Duration) -> Result<(), String> {
        let state = self.data_dir.join("runc");
        let deadline = Instant::now() + timeout;
        loop {
            let left = std::fs::read_dir(&state).map_or(0, |d| d.count());
            if left == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("{left} containers still exist after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// One request through the router to an idle service, timed to the first response byte.
    pub fn cold_request(&self, name: &str) -> Result<Duration, String> {
        let host = format!("{name}.default.localhost");
        let start = Instant::now();
        http::first_byte(&self.router, &host, "/").map_err(|e| e.to_string())?;
        Ok(start.elapsed())
    }

    pub fn stop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SIGTERM lets nimbus stop its instances; fall back to kill.
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        // Containers that ignore SIGTERM take their 10 s grace period to stop.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
