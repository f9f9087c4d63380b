//! `nimbus logs` against the real binary: a process service's output shows up with instance
//! prefixes and timestamps, `--since` and `--tail` select lines, `-f` prints a line written after
//! it started (a stderr line, from the sample function's `/exit`), and an unknown service is a
//! clear error.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nimbus_testkit::{Nimbus, RouterClient};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const HOST: &str = "talker.default.localhost";
/// What the sample function prints on stdout once it listens.
const STARTED: &str = "listening on";

fn service_yaml() -> String {
    format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: talker
spec:
  template:
    spec:
      runtimeClassName: process
      containers:
        - command: ["{BIN}"]
          args: ["sample-function"]
"#
    )
}

/// Run `nimbus logs <args>` until its output satisfies `ok`, or fail after `timeout`.
fn logs_until(
    nimbus: &Nimbus,
    args: &[&str],
    timeout: Duration,
    ok: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + timeout;
    let args: Vec<&str> = ["logs"].iter().chain(args).copied().collect();
    loop {
        let out = nimbus.cli_ok(&args);
        if ok(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "nimbus {args:?} never matched; last output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `nimbus logs <args>` running in the background, its stdout lines on a channel.
struct Following {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Following {
    fn start(nimbus: &Nimbus, args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .arg("logs")
            .args(args)
            .env("NIMBUS_SERVER", nimbus.api_url())
            .env("NIMBUS_TOKEN", &nimbus.token)
            .env("KUBECONFIG", nimbus.data_dir().join("no-kubeconfig"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting nimbus logs -f");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait for a line containing `text`; returns it.
    fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.seen.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(e) => panic!("no line with {text:?} ({e}); got {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The time of a `--timestamps` line: `<instance> <RFC 3339> <text>`.
fn time_of(line: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let stamp = line.split(' ').nth(1).expect("a timestamp field");
    chrono::DateTime::parse_from_rfc3339(stamp).unwrap_or_else(|e| panic!("{e}: {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_show_filter_and_follow_instance_output() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let wait = Duration::from_secs(30);
    let out = nimbus.apply(&service_yaml());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    nimbus.wait_service_ready("talker", wait).await.unwrap();

    // 1. the start-up line, prefixed with the instance name (`<revision>-<ordinal>`)
    let out = logs_until(&nimbus, &["talker"], wait, |o| o.contains(STARTED));
    let line = out.lines().find(|l| l.contains(STARTED)).unwrap();
    assert!(line.starts_with("talker-00001-"), "{out}");
    let instance = line.split(' ').next().unwrap().to_string();

    // 2. --timestamps puts the RFC 3339 time after the instance; --tail picks the last lines
    let out = nimbus.cli_ok(&["logs", "talker", "--timestamps", "--tail", "1"]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let line = out.lines().next().unwrap();
    assert!(
        line.starts_with(&format!("{instance} ")) && line.contains(STARTED),
        "{out}"
    );
    let started_at = time_of(line);
    let by_revision = nimbus.cli_ok(&["logs", "talker", "--revision", "talker-00001"]);
    assert!(by_revision.contains(STARTED), "{by_revision}");

    // 3. --since: once the line is over a second old, `--since 1s` leaves it out
    let age = chrono::Utc::now().signed_duration_since(started_at);
    let wait_more = (chrono::Duration::milliseconds(1500) - age)
        .to_std()
        .unwrap_or_default();
    tokio::time::sleep(wait_more).await;
    let recent = nimbus.cli_ok(&["logs", "talker", "--since", "1s"]);
    assert!(!recent.contains(STARTED), "{recent}");
    let hour = nimbus.cli_ok(&["logs", "talker", "--since", "1h"]);
    assert!(hour.contains(STARTED), "{hour}");

    // 4. -f prints what is there, then a line written after it started (stderr, via /exit)
    let mut follow = Following::start(&nimbus, &["talker", "-f"]);
    follow.wait_for(STARTED, wait);
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client.get(HOST, "/exit?code=3").await.unwrap();
    assert_eq!(reply.status, 200, "{reply:?}");
    let exited = follow.wait_for("exiting with code 3", wait);
    assert!(exited.starts_with(&format!("{instance} ")), "{exited}");
    drop(follow);

    // 5. an unknown service is a clear error
    let out = nimbus.cli(&["logs", "nope"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("service \"nope\" not found") && stderr.contains("nimbus get services"),
        "{stderr}"
    );
    let out = nimbus.cli(&["logs", "talker", "--revision", "nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\"nope\" not found"), "{stderr}");
}
