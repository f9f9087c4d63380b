//! WebAssembly revisions end to end: deploy the example component through the real binary, call
//! it through the router, roll out a second revision, split traffic between the two, and show a
//! trapping request is contained.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::{Nimbus, RouterClient, build_hello_wasm};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const HOST: &str = "hw.default.localhost";

fn service(wasm: &Path, target: &str, traffic: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: hw\nspec:\n  template:\n    spec:\n      runtimeClassName: wasm\n      containers:\n        - image: \"{}\"\n          env: [{{name: TARGET, value: \"{target}\"}}]\n{traffic}",
        wasm.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_revisions_split_and_contain_traps() {
    let Some(wasm) = build_hello_wasm(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("hello-wasm"))
    else {
        return;
    };
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let wait = Duration::from_secs(60);
    assert!(nimbus.apply(&service(&wasm, "one", "")).status.success());
    nimbus.wait_service_ready("hw", wait).await.unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
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
