//! Issue #13 end to end with the real binary: what a local user, a second server or an
//! anonymous client must not be able to do.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nimbus_testkit::{Nimbus, RouterClient};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Finding 11: a second server on a running server's data directory is refused before it
/// touches anything, naming the running one; the first keeps serving. Finding 3: the data
/// directory and what the server writes in it are private.
#[tokio::test(flavor = "multi_thread")]
async fn one_server_per_private_data_directory() {
    let nimbus = Nimbus::start_with(Path::new(BIN), &["--sample"]).unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let host = "hello.default.localhost";
    client
        .get_until(host, "/", Duration::from_secs(30), |r| r.status == 200)
        .await
        .unwrap();

    let mut second = Command::new(BIN)
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--api-addr",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(nimbus.data_dir())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for_exit(&mut second, Duration::from_secs(30));
    if exited.is_none() {
        let _ = second.kill();
        let _ = second.wait();
        panic!("a second server on the same data directory kept running");
    }
    let second = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    let pid = nimbus.pid().unwrap();
    assert!(
        stderr.contains(&format!("in use by another nimbus serve (pid {pid})")),
        "{stderr}"
    );
    let reply = client.get(host, "/").await.unwrap();
    assert_eq!(reply.status, 200, "the first server still serves");

    assert_eq!(mode(nimbus.data_dir()), 0o700);
    for written in ["nimbus.db", "admin.token"] {
        let m = mode(&nimbus.data_dir().join(written));
        assert_eq!(m & 0o077, 0, "{written} is {m:o}: readable by others");
    }
}

/// Finding 4: a revision whose instances print a secret and exit. The revision's status (for
/// the token holder) says why; an anonymous client through the router gets a 503 naming the
/// revision and a request id, never the output.
#[tokio::test(flavor = "multi_thread")]
async fn crash_output_never_reaches_anonymous_clients() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let yaml = nimbus_testkit::manifest::service(
        "leaky",
        &[],
        "runtimeClassName: process",
        "command: [\"/bin/sh\", \"-c\", \"echo DB_PASSWORD=hunter2; exit 3\"]",
    );
    nimbus.apply_ok(&yaml);
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client
        .get_until(
            "leaky.default.localhost",
            "/",
            Duration::from_secs(60),
            |r| r.status == 503 && r.body.contains("cannot start"),
        )
        .await
        .unwrap();
    assert!(!reply.body.contains("hunter2"), "{}", reply.body);
    assert!(reply.body.contains("leaky-00001"), "{}", reply.body);
    assert!(reply.body.contains("(request id "), "{}", reply.body);
    // The router learns of the failure from the runtime; the revision's status is written by
    // the controller a moment later.
    nimbus_testkit::api::wait_until(
        "the token holder sees why in the revision's status",
        Duration::from_secs(60),
        async || {
            let revision = nimbus
                .api_get("/apis/serving.knative.dev/v1/namespaces/default/revisions/leaky-00001")
                .await
                .map_err(|e| e.to_string())?
                .unwrap_or_default();
            let status = revision["status"].to_string();
            match status.contains("hunter2") {
                true => Ok(()),
                false => Err(status),
            }
        },
    )
    .await;
}

/// Finding 8: `/metrics` on the API port needs the token like every path but `/healthz`;
/// `--metrics-addr` opts in to an unauthenticated address for scrapers.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_token_unless_served_apart() {
    let nimbus = Nimbus::start_with(Path::new(BIN), &["--metrics-addr", "127.0.0.1:0"]).unwrap();
    let url = format!("{}/metrics", nimbus.api_url());
    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let with_token = nimbus.api_client().get(&url).send().await.unwrap();
    assert_eq!(with_token.status(), 200);
    let healthz = reqwest::get(format!("{}/healthz", nimbus.api_url()))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200, "health checks stay open");
    let line = nimbus
        .startup_output
        .iter()
        .find_map(|l| l.strip_prefix("nimbus: metrics (no token) on "))
        .expect("the metrics address is printed")
        .to_string();
    let scraped = reqwest::get(&line).await.unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("# EOF") || text.contains("# TYPE"), "{text}");
}

/// Finding 7: a Wasm revision's `image:` is read only as a regular file under the server's
/// `--wasm-dir` directories: `/dev/zero` (which exhausted memory on every restart) and
/// `/etc/passwd` are refused, and the status never quotes a file.
#[tokio::test(flavor = "multi_thread")]
async fn wasm_images_are_read_only_from_the_allowed_directories() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    for (name, image) in [("zero", "/dev/zero"), ("passwd", "file:///etc/passwd")] {
        let yaml = nimbus_testkit::manifest::service(
            name,
            &[("nimbus.dev/runtime", "wasm")],
            "",
            &format!("image: \"{image}\""),
        );
        nimbus.apply_ok(&yaml);
    }
    for name in ["zero", "passwd"] {
        let path =
            format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{name}-00001");
        let status = nimbus_testkit::api::wait_until(
            &format!("{name} refused"),
            Duration::from_secs(30),
            async || {
                let rev = nimbus
                    .api_get(&path)
                    .await
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let (status, reason, _) = nimbus_testkit::condition(&rev["status"], "Ready");
                match status.as_str() {
                    "False" => Ok((reason, rev["status"].to_string())),
                    _ => Err(rev["status"].to_string()),
                }
            },
        )
        .await;
        assert_eq!(status.0, "ImageNotAllowed", "{}", status.1);
        assert!(status.1.contains("--wasm-dir"), "{}", status.1);
        assert!(!status.1.contains("root:x:0"), "{}", status.1);
    }
}

/// Finding 5 (environment and descriptors): a host-process instance gets the runtime
/// contract, its manifest's env and a default PATH, nothing of the server's environment, and
/// no descriptor the server inherited. The server here is started by a shell that exports a
/// secret and leaves a file open on descriptor 7 without close-on-exec.
#[tokio::test(flavor = "multi_thread")]
async fn host_instances_inherit_nothing_of_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("server-only-marker");
    std::fs::write(&marker, "x").unwrap();
    let wrapper = dir.path().join("nimbus-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec 7<'{}'\nSERVER_SECRET=hunter2 exec '{BIN}' \"$@\"\n",
            marker.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nimbus = Nimbus::start(&wrapper).unwrap();
    let app = nimbus_testkit::image::test_app_binary();
    let yaml = nimbus_testkit::manifest::service(
        "bare",
        &[("autoscaling.knative.dev/min-scale", "1")],
        "runtimeClassName: process",
        &format!(
            "command: [\"{}\"]\nenv: [{{name: MINE, value: \"1\"}}]",
            app.display()
        ),
    );
    nimbus.apply_ok(&yaml);
    nimbus
        .wait_service_ready("bare", Duration::from_secs(60))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let env = client
        .get("bare.default.localhost", "/env")
        .await
        .unwrap()
        .body;
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    assert!(!env.contains("SERVER_SECRET"), "{env}");
    assert!(env.contains("MINE=1"), "{env}");
    assert!(env.contains("PORT="), "{env}");
    for name in &names {
        assert!(
            [
                "PATH",
                "PORT",
                "K_SERVICE",
                "K_CONFIGURATION",
                "K_REVISION",
                "MINE",
                "LISTEN_FDS",
                "LISTEN_PID",
                "LISTEN_FDNAMES"
            ]
            .contains(name),
            "{name} came from the server: {env}"
        );
    }
    let contract = client
        .get("bare.default.localhost", "/contract")
        .await
        .unwrap()
        .body;
    let report: serde_json::Value = serde_json::from_str(&contract).unwrap();
    let fds = report["fds"].as_array().unwrap();
    assert!(
        fds.iter()
            .all(|t| !t.as_str().unwrap().contains("server-only-marker")),
        "the server's descriptor 7 leaked: {fds:?}"
    );
}

/// A host program that answers every request with its own `/proc/self/status`.
const STATUS_SERVER: &str = "import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = open('/proc/self/status', 'rb').read()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()
";

/// The value of `field` in a `/proc/<pid>/status` text, whitespace-separated.
fn status_field(status: &str, field: &str) -> Vec<String> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    line.split_whitespace().map(str::to_owned).collect()
}

/// Finding 5 (privileges): a root server runs host programs as an unprivileged user (`nobody`
/// unless `--process-user` says otherwise), as `runAsUser`/`runAsGroup`/`supplementalGroups`
/// when the manifest names them, always with no-new-privileges and without capabilities, and
/// refuses root under `runAsNonRoot`.
#[tokio::test(flavor = "multi_thread")]
async fn host_programs_run_unprivileged_as_the_manifest_says() {
    if !nimbus_testkit::image::is_root() {
        nimbus_testkit::skip("switching users needs a root server");
        return;
    }
    if !nimbus_testkit::image::have_tools(&["python3"]) {
        return;
    }
    let nimbus = Nimbus::start_with(Path::new(BIN), &["--process-user", "nobody"]).unwrap();
    let command = format!(
        "command: [python3, -c, {}]",
        serde_json::to_string(STATUS_SERVER).unwrap()
    );
    let min_scale = [("autoscaling.knative.dev/min-scale", "1")];
    let services = [
        (
            "plain",
            "runtimeClassName: process".to_owned(),
            command.clone(),
        ),
        (
            "chosen",
            "runtimeClassName: process\nsecurityContext: {supplementalGroups: [77, 78]}".to_owned(),
            format!(
                "{command}\nsecurityContext: {{runAsUser: 4242, runAsGroup: 4343, allowPrivilegeEscalation: false, capabilities: {{drop: [ALL]}}}}"
            ),
        ),
        (
            "rooted",
            "runtimeClassName: process".to_owned(),
            format!("{command}\nsecurityContext: {{runAsUser: 0, runAsNonRoot: true}}"),
        ),
    ];
    for (name, spec, container) in &services {
        let yaml = nimbus_testkit::manifest::service(name, &min_scale, spec, container);
        nimbus.apply_ok(&yaml);
    }
    let client = RouterClient::new(&nimbus.http_addr);
    let mut statuses = Vec::new();
    for name in ["plain", "chosen"] {
        nimbus
            .wait_service_ready(name, Duration::from_secs(60))
            .await
            .unwrap();
        let reply = client
            .get(&format!("{name}.default.localhost"), "/")
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{name}: {}", reply.body);
        statuses.push(reply.body);
    }
    let (plain, chosen) = (&statuses[0], &statuses[1]);
    assert_eq!(status_field(plain, "Uid"), ["65534"; 4], "{plain}");
    assert_eq!(status_field(plain, "Gid"), ["65534"; 4], "{plain}");
    assert!(status_field(plain, "Groups").is_empty(), "{plain}");
    assert_eq!(status_field(chosen, "Uid"), ["4242"; 4], "{chosen}");
    assert_eq!(status_field(chosen, "Gid"), ["4343"; 4], "{chosen}");
    assert_eq!(status_field(chosen, "Groups"), ["77", "78"], "{chosen}");
    for status in [plain, chosen] {
        assert_eq!(status_field(status, "NoNewPrivs"), ["1"], "{status}");
        for caps in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            assert_eq!(
                status_field(status, caps),
                ["0000000000000000"],
                "{caps}: {status}"
            );
        }
    }
    let path = "/apis/serving.knative.dev/v1/namespaces/default/revisions/rooted-00001";
    let message =
        nimbus_testkit::api::wait_until("rooted refused", Duration::from_secs(60), async || {
            let rev = nimbus.api_get(path).await.unwrap().unwrap_or_default();
            match nimbus_testkit::condition(&rev["status"], "Ready") {
                (_, reason, message) if reason == "CreateContainerConfigError" => Ok(message),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
    assert!(message.contains("runAsNonRoot"), "{message}");
}
