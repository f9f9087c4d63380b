//! WebAssembly revisions end to end: deploy the example component through the real binary, call
//! it through the router, roll out a second revision, split traffic between the two, and show a
//! trapping request is contained; the per-revision limits the manifest sets (memory,
//! timeout, containerConcurrency through the router, outbound hosts); and what the component
//! prints shown by `nimbus logs`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nimbus_testkit::{Nimbus, RouterClient, build_hello_wasm, condition};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const HOST: &str = "hw.default.localhost";

/// How long a service may take to become ready (the first one compiles the component).
const WAIT: Duration = Duration::from_secs(60);

/// The example component, built once per test binary; `None` (the test skips, after the
/// testkit printed why) without the wasm32-wasip2 target.
fn hello_wasm() -> Option<PathBuf> {
    build_hello_wasm(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("hello-wasm"))
}

/// A server with the service `hw` (the example, `TARGET=one`) ready, and a client of its router.
async fn serve_hw(wasm: &Path) -> (Nimbus, RouterClient) {
    let nimbus = start(wasm);
    assert!(nimbus.apply(&service(wasm, "one", "")).status.success());
    nimbus.wait_service_ready("hw", WAIT).await.unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    (nimbus, client)
}

/// A server that reads Wasm components from the directory `wasm` is in (`--wasm-dir`).
fn start(wasm: &Path) -> Nimbus {
    let dir = wasm.parent().unwrap().to_str().unwrap();
    Nimbus::start_with(Path::new(BIN), &["--wasm-dir", dir]).unwrap()
}

fn service(wasm: &Path, target: &str, traffic: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hw\nspec:\n  template:\n    spec:\n      runtimeClassName: wasm\n      containers:\n        - image: \"{}\"\n          env: [{{name: TARGET, value: \"{target}\"}}]\n{traffic}",
        wasm.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_revisions_split_and_contain_traps() {
    let Some(wasm) = hello_wasm() else {
        return;
    };
    let (nimbus, client) = serve_hw(&wasm).await;
    let wait = WAIT;
    let r = client.get(HOST, "/").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("one"), "{}", r.body);

    assert!(nimbus.apply(&service(&wasm, "two", "")).status.success());
    let svc = nimbus.wait_service_ready("hw", wait).await.unwrap();
    assert_eq!(svc["status"]["latestReadyRevisionName"], "hw-00002");
    let split = "  traffic:\n    - revisionName: hw-00001\n      percent: 50\n    - revisionName: hw-00002\n      percent: 50\n";
    assert!(nimbus.apply(&service(&wasm, "two", split)).status.success());
    nimbus.wait_service_ready("hw", wait).await.unwrap();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for _ in 0..200 {
        let r = client.get(HOST, "/").await.unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        let which = if r.body.contains("two") { "two" } else { "one" };
        *seen.entry(which).or_default() += 1;
    }
    assert!(
        seen.get("one").copied().unwrap_or(0) > 60 && seen.get("two").copied().unwrap_or(0) > 60,
        "{seen:?}"
    );

    let trap = client.get(HOST, "/trap").await.unwrap();
    assert_eq!(trap.status, 500, "{trap:?}");
    assert_eq!(
        client.get(HOST, "/").await.unwrap().status,
        200,
        "a trap does not affect the next request"
    );
    let table = nimbus.cli_ok(&["get", "revisions"]);
    assert!(
        table.contains("hw-00001") && table.contains("hw-00002"),
        "{table}"
    );
}

/// A Wasm service whose limits are set in its manifest; one instance (min = max scale 1).
fn limited_service(name: &str, wasm: &Path, memory: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  template:\n    metadata:\n      annotations:\n        autoscaling.knative.dev/min-scale: \"1\"\n        autoscaling.knative.dev/max-scale: \"1\"\n        nimbus.dev/allowed-outbound-hosts: \"127.0.0.1\"\n    spec:\n      runtimeClassName: wasm\n      containerConcurrency: 1\n      timeoutSeconds: 2\n      containers:\n        - image: \"{}\"\n          resources:\n            limits:\n              memory: {memory}\n",
        wasm.display()
    )
}

/// The revision's `Ready` condition once it is `False`: (reason, message).
async fn wait_revision_failed(nimbus: &Nimbus, revision: &str) -> (String, String) {
    let path = format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rev = nimbus.api_get(&path).await.unwrap();
        let status = rev
            .as_ref()
            .map(|r| r["status"].clone())
            .unwrap_or_default();
        let (ready, reason, message) = condition(&status, "Ready");
        if ready == "False" {
            return (reason, message);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{revision} never failed: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_limits_come_from_the_manifest() {
    let Some(wasm) = hello_wasm() else {
        return;
    };
    let nimbus = start(&wasm);
    let wait = WAIT;
    let host = "lim.default.localhost";
    assert!(
        nimbus
            .apply(&limited_service("lim", &wasm, "16Mi"))
            .status
            .success()
    );
    nimbus.wait_service_ready("lim", wait).await.unwrap();
    let client = RouterClient::new(&nimbus.http_addr);

    // resources.limits.memory
    let alloc = client.get(host, "/alloc").await.unwrap();
    assert_eq!(alloc.status, 500, "{alloc:?}");
    assert!(
        alloc.body.contains("memory limit of 16 MiB"),
        "{}",
        alloc.body
    );

    // nimbus.dev/allowed-outbound-hosts: 127.0.0.1 (the router itself), not localhost
    let port = nimbus.http_port();
    let fetched = client
        .get(host, &format!("/fetch?127.0.0.1:{port}"))
        .await
        .unwrap();
    assert!(fetched.body.starts_with("fetched: "), "{fetched:?}");
    let denied = client
        .get(host, &format!("/fetch?localhost:{port}"))
        .await
        .unwrap();
    assert!(denied.body.contains("HttpRequestDenied"), "{denied:?}");

    // timeoutSeconds: 2 ends the loop; containerConcurrency: 1 makes the next request wait for it
    let started = std::time::Instant::now();
    let (looped, waited) = tokio::join!(client.get(host, "/loop"), async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = std::time::Instant::now();
        (client.get(host, "/").await.unwrap(), sent.elapsed())
    });
    let looped = looped.unwrap();
    assert_eq!(looped.status, 504, "{looped:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "{took:?}"
    );
    assert_eq!(waited.0.status, 200, "{:?}", waited.0);
    assert!(
        waited.1 >= Duration::from_millis(700),
        "waited for the looping request's instance: {:?}",
        waited.1
    );

    // more memory than the pool gives an instance fails the revision with both numbers
    assert!(
        nimbus
            .apply(&limited_service("huge", &wasm, "2Gi"))
            .status
            .success()
    );
    let (reason, message) = wait_revision_failed(&nimbus, "huge-00001").await;
    assert_eq!(reason, "MemoryLimitTooLarge", "{message}");
    assert!(message.contains("2147483648 bytes (2 GiB)"), "{message}");
    assert!(message.contains("1073741824 bytes (1 GiB)"), "{message}");
    assert_eq!(
        client.get(host, "/").await.unwrap().status,
        200,
        "lim unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_output_shows_in_nimbus_logs() {
    let Some(wasm) = hello_wasm() else {
        return;
    };
    let (nimbus, client) = serve_hw(&wasm).await;
    let wait = WAIT;
    let r = client.get(HOST, "/log?wasm-says-hi").await.unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "logged\n"), "{r:?}");

    // stdout, stderr and the partial last line, each prefixed with the instance
    let expected = [
        "wasm-says-hi",
        "wasm-says-hi on stderr",
        "wasm-says-hi without newline",
    ];
    let deadline = std::time::Instant::now() + wait;
    let out = loop {
        let out = nimbus.cli_ok(&["logs", "hw"]);
        let texts: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split_once(' ').map(|(_, text)| text))
            .collect();
        if expected.iter().all(|e| texts.contains(e)) {
            break out;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nimbus logs hw never showed {expected:?}:\n{out}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        out.lines()
            .filter(|l| l.contains("wasm-says-hi"))
            .all(|l| l.starts_with("hw-00001-")),
        "{out}"
    );

    // deleting the service deletes the revision's logs
    let logs = nimbus.data_dir().join("logs/default/hw-00001");
    assert!(logs.is_dir(), "{}", logs.display());
    nimbus.cli_ok(&["delete", "service", "hw"]);
    let deadline = std::time::Instant::now() + wait;
    while logs.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} kept",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
