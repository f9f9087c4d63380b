//! Asynchronous invocation end to end (issue #14, Lambda's model) with the real binary: a
//! request with `Prefer: respond-async` is answered `202` with an id once stored, delivered
//! through the router (the revision scales from zero for it), retried on 5xx up to the
//! Service's `nimbus.dev/async-max-attempts`, and its record sent to the on-failure
//! destination; `nimbus invoke` waits for a result or (`--async`) returns the id;
//! `nimbus invocations` lists, shows and cancels. With 10,000 invocations queued, `kill -9`
//! of the server and a restart lose none (the function counts its deliveries).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::manifest::{annotate, host_of, test_app};
use nimbus_testkit::{Nimbus, RouterClient};
use reqwest::Method;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const PREFER: (&str, &str) = ("prefer", "respond-async");

async fn invocation(nimbus: &Nimbus, id: &str) -> Value {
    let path = format!("/apis/nimbus.dev/v1/namespaces/default/invocations/{id}");
    let (code, body) = nimbus.send(Method::GET, &path, None).await;
    assert_eq!(code, 200, "{body}");
    body
}

/// Poll the invocation until it is no longer pending.
async fn finished(nimbus: &Nimbus, id: &str) -> Value {
    nimbus_testkit::api::wait_until(
        "the invocation finishes",
        Duration::from_secs(120),
        async || {
            let inv = invocation(nimbus, id).await;
            match inv["status"]["state"].as_str() {
                Some("Pending") | None => Err(inv.to_string()),
                Some(_) => Ok(inv),
            }
        },
    )
    .await
}

async fn send_async(client: &RouterClient, host: &str, path: &str) -> String {
    let reply = client
        .send(Method::GET, host, path, &[PREFER], Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.headers["preference-applied"], "respond-async");
    let id = reply.headers["x-nimbus-invocation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(reply.body.trim(), format!("{{\"id\":\"{id}\"}}"));
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_requests_are_stored_delivered_retried_and_dead_lettered() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let mut svc = test_app("fn", "async");
    svc["metadata"]["annotations"] = serde_json::json!({
        "nimbus.dev/async-max-attempts": "2",
        "nimbus.dev/async-on-failure": "service:dead",
    });
    nimbus.deploy(&svc).await;
    nimbus.deploy(&test_app("dead", "letters")).await;
    let client = RouterClient::new(&nimbus.http_addr);
    let host = host_of("fn");

    // Stored, 202, then delivered: the function's answer is the token holder's to read.
    let ok = send_async(&client, &host, "/").await;
    let done = finished(&nimbus, &ok).await;
    assert_eq!(done["status"]["state"], "Succeeded", "{done}");
    assert_eq!(done["status"]["response"]["statusCode"], 200);
    assert_eq!(
        done["status"]["response"]["body"],
        "hello from test-app: async\n"
    );

    // 503 twice (the Service allows two attempts), then the record goes to `dead`.
    let failing = send_async(&client, &host, "/status?503").await;
    let failed = finished(&nimbus, &failing).await;
    assert_eq!(failed["status"]["state"], "Failed", "{failed}");
    assert_eq!(failed["status"]["attemptCount"], 2);
    assert!(
        failed["status"]["error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 2 attempts")
    );
    let list = |query: &'static str| {
        let nimbus = &nimbus;
        async move {
            let path = format!("/apis/nimbus.dev/v1/namespaces/default/invocations?{query}");
            let (code, body) = nimbus.send(Method::GET, &path, None).await;
            assert_eq!(code, 200, "{body}");
            body["items"].as_array().cloned().unwrap_or_default()
        }
    };
    let records = list("service=dead").await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["spec"]["cause"], failing.as_str());
    let record = finished(&nimbus, records[0]["metadata"]["name"].as_str().unwrap()).await;
    assert_eq!(record["status"]["state"], "Succeeded", "{record}");
    let dead = list("state=Failed").await;
    assert_eq!(dead.len(), 1, "the dead-letter queue: {dead:?}");

    // A 404 is not retried.
    let missing = send_async(&client, &host, "/status?404").await;
    let missing = finished(&nimbus, &missing).await;
    assert_eq!(missing["status"]["attemptCount"], 1, "{missing}");

    // Not for an unknown host, and not for anonymous readers of the API.
    let unknown = client
        .send(
            Method::GET,
            "nope.default.localhost",
            "/",
            &[PREFER],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let anonymous = reqwest::Client::new()
        .get(format!(
            "http://{}/apis/nimbus.dev/v1/namespaces/default/invocations/{ok}",
            nimbus.api_addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nimbus_invoke_waits_or_returns_the_id_and_invocations_are_listed_and_cancelled() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let mut svc = test_app("cli", "from the cli");
    annotate(&mut svc, "autoscaling.knative.dev/min-scale", "1");
    nimbus.deploy(&svc).await;

    let out = nimbus.cli_ok(&["invoke", "cli", "-X", "GET"]);
    assert_eq!(out, "hello from test-app: from the cli\n");
    let out = nimbus.cli(&["invoke", "cli", "-X", "GET", "--path", "/status?404"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("answered 404"), "{stderr}");

    let id = nimbus.cli_ok(&["invoke", "cli", "--async", "-d", "payload"]);
    let id = id.trim();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    finished(&nimbus, id).await;
    let table = nimbus.cli_ok(&["invocations", "cli"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "TARGET", "STATE", "ATTEMPTS", "STATUS", "CREATED"]
    );
    assert_eq!(table.lines().count(), 4, "{table}");
    let shown = nimbus.cli_ok(&["invocations", "get", id]);
    assert!(shown.contains("state: Succeeded"), "{shown}");
    assert!(shown.contains("bodyBytes: 7"), "{shown}");

    // A pending invocation (its service fails, the retry is minutes away) is cancelled.
    let mut slow = test_app("slow", "x");
    slow["metadata"]["annotations"] = serde_json::json!({"nimbus.dev/async-max-attempts": "10"});
    annotate(&mut slow, "autoscaling.knative.dev/min-scale", "1");
    nimbus.deploy(&slow).await;
    let client = RouterClient::new(&nimbus.http_addr);
    let pending = send_async(&client, &host_of("slow"), "/status?503").await;
    nimbus_testkit::api::wait_until("a first attempt", Duration::from_secs(60), async || {
        let inv = invocation(&nimbus, &pending).await;
        match inv["status"]["attemptCount"].as_u64() {
            Some(n) if n > 0 => Ok(()),
            _ => Err(inv.to_string()),
        }
    })
    .await;
    let out = nimbus.cli_ok(&["invocations", "cancel", &pending]);
    assert!(out.contains("cancelled"), "{out}");
    let out = nimbus.cli(&["invocations", "cancel", &pending]);
    assert!(!out.status.success(), "cancelled already");
    let cancelled = invocation(&nimbus, &pending).await;
    assert_eq!(cancelled["status"]["state"], "Cancelled");
}

/// Issue #14: nothing lost across `kill -9` with 10,000 invocations queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_queued_invocations_survive_kill_9() {
    const COUNT: usize = 10_000;
    let data = tempfile::tempdir().unwrap();
    let mut nimbus = Nimbus::start_in(Path::new(BIN), data.path(), &[]).expect("nimbus serve");
    // Where the function (running as another user) records what it was given.
    let records = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        records.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let file = records.path().join("delivered");
    // One request at a time on one instance: deliveries are slower than acceptances, so
    // thousands are still queued when the server is killed.
    let mut rec = test_app("rec", "r");
    rec["spec"]["template"]["spec"]["containerConcurrency"] = serde_json::json!(1);
    annotate(&mut rec, "autoscaling.knative.dev/max-scale", "1");
    nimbus.deploy(&rec).await;
    let client = RouterClient::new(&nimbus.http_addr);
    let host = host_of("rec");

    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for worker in 0..32 {
        let (client, host, file, accepted) =
            (client.clone(), host.clone(), file.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            for n in (worker..COUNT).step_by(32) {
                let path = format!("/record?{},{n}", file.display());
                let reply = client
                    .send(Method::GET, &host, &path, &[PREFER], Vec::new())
                    .await
                    .unwrap();
                assert_eq!(reply.status, 202, "{}", reply.body);
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let delivered_before = lines(&file).len();
    nimbus.kill();
    println!("{COUNT} accepted; {delivered_before} deliveries before kill -9");
    assert!(
        delivered_before < COUNT,
        "invocations must still be queued when the server is killed"
    );
    nimbus.restart().expect("restart");

    let deadline = std::time::Instant::now() + Duration::from_secs(600);
    loop {
        let got = lines(&file);
        let unique: HashSet<&String> = got.iter().collect();
        if unique.len() == COUNT {
            println!(
                "all {COUNT} delivered after the restart: {} deliveries, {} duplicates",
                got.len(),
                got.len() - COUNT
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {COUNT} delivered",
            unique.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expected: HashSet<String> = (0..COUNT).map(|n| n.to_string()).collect();
    let got: HashSet<String> = lines(&file).into_iter().collect();
    assert_eq!(got, expected);
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
