//! The web console in a real browser: `nimbus serve` with one process service that printed a
//! hostile log line and served a few requests, then `console-tests/console.test.mjs` drives
//! Debian's chromium through Playwright: a wrong token is refused, the services list, the
//! service (URL, Ready, traffic 100%, instances, the log line as text, a traffic change made
//! through the API shown without a reload) and its revision (instances, requests, the chart),
//! usage, logging out, then Events and usage answered from their API contracts by the browser
//! (hostile text stays text); it writes screenshots of the main
//! pages (to `$NIMBUS_CONSOLE_SCREENSHOTS`, else under the target directory; the README's
//! are in `docs/console/`). Needs `chromium`, `node` and `npm ci` in `console-tests/`: skipped
//! without them on a developer's machine, a failure under CI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_testkit::api::wait_until;
use nimbus_testkit::{Nimbus, skip};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const SERVICE: &str = "greeter";
/// Printed by the instance before it starts the sample function: markup and a script that
/// must show as text and never run.
const HOSTILE: &str = "<img src=x onerror=window.__pwned=1> & <b>not bold</b>";

fn service_yaml() -> String {
    format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: {SERVICE}
spec:
  template:
    metadata:
      annotations:
        # The browser asserts a live instance: no scale to zero however slow the run.
        autoscaling.knative.dev/min-scale: "1"
    spec:
      runtimeClassName: process
      containers:
        - command: ["/bin/sh"]
          args: ["-c", "echo '{HOSTILE}'; exec \"$0\" sample-function", "{BIN}"]
"#
    )
}

fn tests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../console-tests")
}

fn chromium() -> PathBuf {
    std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tools() -> Option<String> {
    if !chromium().exists() {
        return Some(format!(
            "no browser at {} (apt-get install chromium)",
            chromium().display()
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("no node on PATH (apt-get install nodejs npm)".into());
    }
    if !tests_dir().join("node_modules/playwright-core").exists() {
        return Some("playwright-core is not installed (npm ci in console-tests/)".into());
    }
    None
}

fn screenshots_dir() -> PathBuf {
    std::env::var_os("NIMBUS_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots"))
}

/// The console's files need no token; the history it charts does, and has the requests.
async fn check_the_api_side(nimbus: &Nimbus) {
    let anonymous = reqwest::Client::new();
    let page = anonymous
        .get(format!("{}/console/", nimbus.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    let history = format!(
        "{}/apis/nimbus.dev/v1/namespaces/default/revisions/{SERVICE}-00001/history",
        nimbus.api_url()
    );
    let refused = anonymous.get(&history).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let client = nimbus.api_client();
    let sample = wait_until("a history sample with the requests", WAIT, async || {
        let v: serde_json::Value = match client.get(&history).send().await {
            Ok(res) => res.json().await.map_err(|e| e.to_string())?,
            Err(e) => return Err(e.to_string()),
        };
        let last = v["samples"].as_array().and_then(|s| s.last().cloned());
        match last {
            Some(s)
                if s["requests"].as_u64() >= Some(REQUESTS) && s["ready"].as_u64() >= Some(1) =>
            {
                Ok(s)
            }
            _ => Err(v.to_string()),
        }
    })
    .await;
    assert_eq!(sample["desired"], 1, "{sample}");
}

/// Run the browser script against `nimbus`; panics with its output when it fails.
async fn drive_the_browser(nimbus: &Nimbus) {
    let out = tokio::process::Command::new("node")
        .arg("console.test.mjs")
        .current_dir(tests_dir())
        .env("NIMBUS_API", nimbus.api_url())
        .env("NIMBUS_TOKEN", &nimbus.token)
        .env("NIMBUS_SERVICE", SERVICE)
        .env("NIMBUS_LOG_LINE", HOSTILE)
        .env("NIMBUS_SCREENSHOTS", screenshots_dir())
        .env("CHROMIUM", chromium())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), out)
        .await
        .expect("the browser test finished within 3 minutes")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
}

const WAIT: Duration = Duration::from_secs(30);
const REQUESTS: u64 = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_deployed_service_in_a_real_browser() {
    if let Some(why) = missing_tools() {
        return skip(&why);
    }
    let (nimbus, client) =
        Nimbus::start_serving(Path::new(BIN), &[], &service_yaml(), SERVICE, WAIT)
            .await
            .unwrap();
    let host = format!("{SERVICE}.default.localhost");
    for _ in 0..REQUESTS {
        let reply = client.get(&host, "/").await.unwrap();
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    check_the_api_side(&nimbus).await;
    drive_the_browser(&nimbus).await;
}
