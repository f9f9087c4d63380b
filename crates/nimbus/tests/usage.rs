//! Cost metering and budgets end to end (issue #15) with the real binary: requests and
//! instance time of a deployed service show in `nimbus usage` (table and JSON) priced with a
//! price file, survive a `kill -9` once flushed to `<data-dir>/usage.db`, and a budget with
//! `cap-scale` trips, reports itself on the Service and caps the scale until it is raised.

use std::path::Path;
use std::time::Duration;

use nimbus_testkit::api::wait_until;
use nimbus_testkit::manifest::{annotate, host_of, test_app};
use nimbus_testkit::{Nimbus, RouterClient, condition};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const REQUESTS: u64 = 20;
/// One unit per vCPU-second and per request: costs are easy to check.
const PRICES: &str =
    "name: test\ncurrency: EUR\nvcpuSecond: 1\ngibSecond: 0\nmillionRequests: 1000000\n";

/// The test app with `cpu` allocated (a limit) and `min` instances kept.
fn service(name: &str, cpu: &str, min: &str) -> Value {
    let mut svc = test_app(name, "metered");
    annotate(&mut svc, "autoscaling.knative.dev/min-scale", min);
    svc["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"cpu": cpu, "memory": "128Mi"}});
    svc
}

fn usage_json(nimbus: &Nimbus, args: &[&str]) -> Value {
    let out = nimbus.cli_ok(&[&["usage", "-o", "json"], args].concat());
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Requests and instance-seconds flushed to the usage database (read with SQLite, as a crash
/// would leave it).
fn stored_totals(data_dir: &Path) -> (u64, f64) {
    let db = rusqlite::Connection::open(data_dir.join("usage.db")).unwrap();
    db.query_row(
        "SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(instance_seconds), 0) FROM usage",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, f64>(1)?)),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_metered_priced_and_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.yaml");
    std::fs::write(&prices, PRICES).unwrap();
    let data = dir.path().join("data");
    let extra = ["--usage-flush-interval", "1s"];
    let mut nimbus = Nimbus::start_in(Path::new(BIN), &data, &extra).expect("nimbus serve");
    nimbus.deploy(&service("fn", "500m", "1")).await;
    let client = RouterClient::new(&nimbus.http_addr);
    // The last request keeps the instance's CPU busy for 600 ms (half a CPU: ~300 ms used).
    for i in 1..=REQUESTS {
        let path = if i == REQUESTS { "/spin?ms=600" } else { "/" };
        let reply = client.get(&host_of("fn"), path).await.unwrap();
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let prices = prices.to_str().unwrap();
    let cgroups = nimbus_testkit::host::have_cgroups();

    // JSON: every request, some instance time, costs from the file.
    let body = wait_until(
        "usage shows the requests",
        Duration::from_secs(30),
        async || {
            let body = usage_json(&nimbus, &["fn", "--prices", prices]);
            let cpu_seen = !cgroups || body["total"]["vcpuSecondsUsed"].as_f64() >= Some(0.1);
            match body["total"]["requests"].as_u64() == Some(REQUESTS)
                && body["total"]["instanceSeconds"].as_f64() > Some(1.0)
                && cpu_seen
            {
                true => Ok(body),
                false => Err(body.to_string()),
            }
        },
    )
    .await;
    let row = &body["rows"][0];
    assert_eq!(
        (row["service"].as_str(), row["namespace"].as_str()),
        (Some("fn"), Some("default"))
    );
    assert_eq!(row["revision"], "fn-00001");
    let f = |k: &str| row[k].as_f64().unwrap();
    assert!(
        (f("vcpuSecondsAllocated") - 0.5 * f("instanceSeconds")).abs() < 1e-6,
        "{row}"
    );
    assert!(
        (f("gibSecondsAllocated") - 0.125 * f("instanceSeconds")).abs() < 1e-6,
        "{row}"
    );
    assert!(
        f("vcpuSecondsUsed") >= 0.0 && f("gibSecondsUsed") >= 0.0,
        "{row}"
    );
    if cgroups {
        assert!(f("gibSecondsUsed") > 0.0, "cgroup memory is metered: {row}");
        assert!(
            f("vcpuSecondsUsed") >= 0.1,
            "cgroup CPU time is metered: {row}"
        );
    }
    assert_eq!(
        row["coldStarts"].as_u64(),
        Some(0),
        "min-scale 1: no cold start"
    );
    let cost = REQUESTS as f64 + f("vcpuSecondsAllocated");
    assert!((f("cost") - cost).abs() < 1e-6, "{row}");
    assert_eq!(body["prices"]["currency"], "EUR");

    // The table: kubectl-like columns, the same figures.
    let table = nimbus.cli_ok(&["usage", "--prices", prices]);
    let header = table.lines().next().unwrap();
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        [
            "SERVICE",
            "REVISION",
            "REQUESTS",
            "INSTANCE-S",
            "VCPU-S(ALLOC/USED)",
            "GIB-S(ALLOC/USED)",
            "COLD-STARTS",
            "COST"
        ],
        "{table}"
    );
    let words = nimbus_testkit::row(&table, "fn");
    assert_eq!(
        (words[1], words[2], words[8]),
        ("fn-00001", "20", "EUR"),
        "{table}"
    );
    println!("{table}");
    println!("{}", nimbus.cli_ok(&["usage", "fn"]));

    // Flushed (every second here), then killed: what was flushed survives, and the server
    // resumes metering on top of it.
    let stored = wait_until(
        "requests and instance time are on disk",
        Duration::from_secs(20),
        async || match stored_totals(&data) {
            (REQUESTS, seconds) if seconds > 1.0 => Ok(seconds),
            other => Err(format!("stored (requests, instance-seconds): {other:?}")),
        },
    )
    .await;
    nimbus.kill();
    nimbus.restart().expect("nimbus serve again");
    let after = usage_json(&nimbus, &["fn", "--since", "1h"]);
    assert_eq!(
        after["total"]["requests"].as_u64(),
        Some(REQUESTS),
        "{after}"
    );
    assert!(
        after["total"]["instanceSeconds"].as_f64().unwrap() >= stored,
        "stored before the crash: {stored}; after: {after}"
    );

    // Presets price the same figures their way; a bad window is an error naming the flag.
    let lambda = usage_json(&nimbus, &["fn", "--prices", "lambda"]);
    assert_eq!(lambda["prices"]["name"], "lambda");
    let out = nimbus.cli(&["usage", "--since", "soon"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("since"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_trips_reports_and_caps_scale() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.yaml");
    std::fs::write(&prices, PRICES).unwrap();
    let prices = prices.to_str().unwrap().to_owned();
    let extra = ["--usage-flush-interval", "1s", "--prices", &prices];
    let nimbus = Nimbus::start_with(Path::new(BIN), &extra).expect("nimbus serve");

    // Annotations are checked at apply time, with their field paths.
    let mut bad = service("bad", "1", "1");
    bad["metadata"]["annotations"] = json!({"nimbus.dev/monthly-budget": "lots"});
    let out = nimbus.apply(&bad.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("metadata.annotations[nimbus.dev/monthly-budget]"),
        "{stderr}"
    );

    // Two instances of 1 vCPU at 1 EUR per vCPU-second spend a 5 EUR budget in seconds.
    let mut svc = service("spender", "1", "2");
    svc["metadata"]["annotations"] = json!({
        "nimbus.dev/monthly-budget": "5",
        "nimbus.dev/budget-action": "cap-scale",
    });
    nimbus.deploy(&svc).await;
    let tripped = wait_until("the budget trips", Duration::from_secs(60), async || {
        let svc = nimbus.service("spender").await.unwrap();
        match condition(&svc["status"], "WithinBudget") {
            (s, r, m) if s == "False" && r == "BudgetExceeded" => Ok(m),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert!(tripped.contains("scale capped at 1"), "{tripped}");
    // The crossing is an Event on the Service too (`kubectl describe ksvc spender`).
    let selector =
        "involvedObject.kind%3DService%2CinvolvedObject.name%3Dspender%2Creason%3DBudgetExceeded";
    let event = wait_until(
        "a BudgetExceeded event",
        Duration::from_secs(30),
        async || {
            let path = format!("/api/v1/namespaces/default/events?fieldSelector={selector}");
            let list = nimbus.api_get(&path).await.map_err(|e| e.to_string())?;
            let items = list.map(|l| l["items"].clone()).unwrap_or(Value::Null);
            items
                .as_array()
                .and_then(|a| a.first().cloned())
                .ok_or_else(|| format!("{items}"))
        },
    )
    .await;
    assert_eq!(event["type"], "Warning", "{event}");
    let revision = |want: u64| {
        let nimbus = &nimbus;
        async move {
            wait_until(
                &format!("{want} instance(s)"),
                Duration::from_secs(60),
                async || {
                    let rev = nimbus.must("revisions", "spender-00001").await;
                    let s = &rev["status"];
                    match (s["desiredReplicas"].as_u64(), s["actualReplicas"].as_u64()) {
                        (Some(d), Some(a)) if d == want && a == want => Ok(()),
                        other => Err(format!("{other:?}")),
                    }
                },
            )
            .await
        }
    };
    revision(1).await;

    // A larger budget lifts the cap: min-scale's two instances come back.
    let raise = json!({"metadata": {"annotations": {"nimbus.dev/monthly-budget": "1000000"}}});
    let (code, body) = nimbus.merge_patch("services", "spender", &raise).await;
    assert_eq!(code, 200, "{body}");
    revision(2).await;
    let svc = nimbus.service("spender").await.unwrap();
    assert_eq!(condition(&svc["status"], "WithinBudget").0, "True", "{svc}");
}
