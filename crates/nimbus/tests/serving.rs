//! The core scenario end to end with the real binary: apply a Knative Service, call it through
//! the router, roll out a new revision, split traffic, reach a tag, survive a restart, delete.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::{Nimbus, RouterClient};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const HOST: &str = "hello.default.localhost";

fn service_yaml(target: &str, traffic: &str) -> String {
    format!(
        r#"apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: hello
spec:
  template:
    spec:
      runtimeClassName: process
      containers:
        - command: ["{BIN}"]
          args: ["sample-function"]
          env:
            - name: TARGET
              value: "{target}"
{traffic}"#
    )
}

async fn split_counts(client: &RouterClient, n: usize) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client
            .get(HOST, "/")
            .await
            .expect("request through the router");
        assert_eq!(r.status, 200, "{r:?}");
        let rev = r
            .headers
            .get("x-revision")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("?")
            .to_string();
        *counts.entry(rev).or_insert(0) += 1;
    }
    counts
}

fn assert_share(counts: &HashMap<String, usize>, rev: &str, expected_pct: f64, n: usize) {
    let got = *counts.get(rev).unwrap_or(&0) as f64 * 100.0 / n as f64;
    assert!(
        (got - expected_pct).abs() <= 5.0,
        "{rev}: {got:.1}% of {n}, expected {expected_pct}% ±5; counts {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_update_split_tag_restart_delete() {
    assert!(Path::new(BIN).exists());
    let mut nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let wait = Duration::from_secs(30);

    // 1. apply and call through the router
    let out = nimbus.apply(&service_yaml("first", ""));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("service.serving.knative.dev/hello created")
    );
    let svc = nimbus.wait_service_ready("hello", wait).await.unwrap();
    assert_eq!(
        svc["status"]["url"],
        format!("http://{HOST}:{}", nimbus.http_port())
    );
    let client = RouterClient::new(&nimbus.http_addr);
    let r = client.get(HOST, "/").await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Hello first!"), "{}", r.body);
    assert!(r.body.contains("revision: hello-00001"), "{}", r.body);

    // 2. change env: a new revision, the old one kept
    nimbus.apply(&service_yaml("second", ""));
    let svc = nimbus.wait_service_ready("hello", wait).await.unwrap();
    assert_eq!(svc["status"]["latestReadyRevisionName"], "hello-00002");
    client
        .get_until(HOST, "/", wait, |r| r.body.contains("Hello second!"))
        .await
        .unwrap();
    let revs = nimbus.cli_ok(&["get", "revisions"]);
    assert!(
        revs.contains("hello-00001") && revs.contains("hello-00002"),
        "{revs}"
    );

    // 3. 80/20 by latestRevision and by name, with a tag on the old one
    let traffic = "  traffic:\n    - latestRevision: true\n      percent: 80\n    - revisionName: hello-00001\n      percent: 20\n      tag: old\n";
    nimbus.apply(&service_yaml("second", traffic));
    let svc = nimbus.wait_service_ready("hello", wait).await.unwrap();
    assert_eq!(
        svc["status"]["traffic"][1]["url"],
        format!("http://old-{HOST}:{}", nimbus.http_port())
    );
    let counts = split_counts(&client, 1000).await;
    assert_share(&counts, "hello-00002", 80.0, 1000);
    assert_share(&counts, "hello-00001", 20.0, 1000);

    // 4. the tag host reaches the tagged revision only
    for _ in 0..20 {
        let r = client.get(&format!("old-{HOST}"), "/").await.unwrap();
        assert!(r.body.contains("revision: hello-00001"), "{}", r.body);
    }

    // 5. both targets by revision name
    let traffic = "  traffic:\n    - revisionName: hello-00002\n      percent: 20\n    - revisionName: hello-00001\n      percent: 80\n";
    nimbus.apply(&service_yaml("second", traffic));
    nimbus.wait_service_ready("hello", wait).await.unwrap();
    let counts = split_counts(&client, 1000).await;
    assert_share(&counts, "hello-00001", 80.0, 1000);

    // 6. a restart keeps everything served
    nimbus.restart().unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    client
        .get_until(HOST, "/", wait, |r| r.status == 200)
        .await
        .unwrap();
    let counts = split_counts(&client, 200).await;
    assert!(
        counts.contains_key("hello-00001") && counts.contains_key("hello-00002"),
        "{counts:?}"
    );
    let revs = nimbus.cli_ok(&["get", "revisions"]);
    assert!(revs.contains("hello-00002"), "{revs}");

    // 7. delete: the host is gone, revisions are gone, instances stop
    let out = nimbus.cli_ok(&["delete", "service", "hello"]);
    assert!(out.contains("deleted"), "{out}");
    client
        .get_until(HOST, "/", wait, |r| r.status == 404)
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + wait;
    loop {
        let revs = nimbus
            .api_get("/apis/serving.knative.dev/v1/namespaces/default/revisions")
            .await
            .unwrap()
            .unwrap();
        if revs["items"].as_array().is_some_and(|a| a.is_empty()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revisions not deleted: {revs}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_sample_and_deploy_command() {
    let nimbus = Nimbus::start_with(Path::new(BIN), &["--sample"]).unwrap();
    let url_line = nimbus
        .startup_output
        .iter()
        .find(|l| l.contains("is ready at"))
        .expect("sample URL printed");
    assert!(
        url_line.contains(&format!("http://{HOST}:{}", nimbus.http_port())),
        "{url_line}"
    );
    let client = RouterClient::new(&nimbus.http_addr);
    let r = client.get(HOST, "/").await.unwrap();
    assert!(r.body.contains("Hello Nimbus!"), "{}", r.body);

    // `nimbus deploy` creates, then a re-deploy with another value makes a new revision
    let out = nimbus.cli_ok(&[
        "deploy",
        "echo",
        "--command",
        BIN,
        "--arg",
        "sample-function",
        "--env",
        "TARGET=one",
    ]);
    assert!(out.contains("is ready"), "{out}");
    let out = nimbus.cli_ok(&[
        "deploy",
        "echo",
        "--command",
        BIN,
        "--arg",
        "sample-function",
        "--env",
        "TARGET=two",
    ]);
    assert!(out.contains("echo-00002"), "{out}");
    let r = client
        .get_until(
            "echo.default.localhost",
            "/",
            Duration::from_secs(10),
            |r| r.body.contains("Hello two!"),
        )
        .await
        .unwrap();
    assert!(r.body.contains("revision: echo-00002"));
    let yaml = nimbus.cli_ok(&["get", "ksvc", "echo", "-o", "yaml"]);
    assert!(
        yaml.contains("latestReadyRevisionName: echo-00002"),
        "{yaml}"
    );
    let json = nimbus.cli_ok(&["get", "services", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 2);
}
