//! Bad input and faults against the real binary: each gets a clear error, nothing panics, the
//! store is unchanged by rejected requests, and other services keep serving.

use std::path::Path;
use std::time::Duration;

use nimbus_testkit::{Nimbus, RouterClient, condition};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

fn svc(name: &str, body: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  template:\n{body}"
    )
}

fn process_svc(name: &str, command: &str, args: &str, env: &str, annotations: &str) -> String {
    svc(
        name,
        &format!(
            "    metadata:\n      annotations: {{{annotations}}}\n    spec:\n      runtimeClassName: process\n      containers:\n        - command: [\"{command}\"]\n          args: [{args}]\n          env: [{env}]\n"
        ),
    )
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

async fn wait_failed(nimbus: &Nimbus, name: &str) -> (String, String, String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let svc = nimbus.service(name).await.unwrap();
        let c = condition(&svc["status"], "Ready");
        if c.0 == "False" {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never failed: {:#}",
            svc["status"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_manifests_are_rejected_with_locations_and_change_nothing() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let cases: &[(&str, String, &[&str])] = &[
        (
            "malformed YAML",
            "apiVersion: serving.knative.dev/v1\nkind: [Service\n".into(),
            &["<stdin>:", "malformed"],
        ),
        (
            "wrong type",
            process_svc("a", "/bin/true", "", "", "").replace(
                "runtimeClassName: process",
                "runtimeClassName: process\n      timeoutSeconds: soon",
            ),
            &["spec.template.spec.timeoutSeconds", "<stdin> (document 1):"],
        ),
        (
            "unknown field",
            process_svc("a", "/bin/true", "", "", "").replace(
                "        - command",
                "        - comand: [x]\n          command",
            ),
            &["spec.template.spec.containers[0].comand", "unknown field"],
        ),
        // issue #17: empty values of unknown keys are unknown fields too, at every level
        (
            "unknown empty field in the pod spec",
            process_svc("a", "/bin/true", "", "", "").replace(
                "      containers:",
                "      containerz: []\n      containers:",
            ),
            &[
                "spec.template.spec.containerz",
                "field not declared in schema",
                "<stdin> (document 1):",
            ],
        ),
        (
            "unknown empty field in a container",
            process_svc("a", "/bin/true", "", "", "")
                .replace("          env:", "          enviroment: []\n          env:"),
            &[
                "spec.template.spec.containers[0].enviroment",
                "field not declared in schema",
            ],
        ),
        (
            "percents",
            process_svc("a", "/bin/true", "", "", "")
                + "  traffic:\n    - latestRevision: true\n      percent: 90\n",
            &["spec.traffic", "sum to 90"],
        ),
        (
            "duplicate tags",
            process_svc("a", "/bin/true", "", "", "")
                + "  traffic:\n    - latestRevision: true\n      percent: 50\n      tag: x\n    - latestRevision: true\n      percent: 50\n      tag: x\n",
            &["spec.traffic[1].tag", "unique"],
        ),
        (
            "bad annotation",
            process_svc(
                "a",
                "/bin/true",
                "",
                "",
                "autoscaling.knative.dev/min-scale: \"-1\"",
            ),
            &["autoscaling.knative.dev/min-scale", "out of range"],
        ),
    ];
    for (what, yaml, needles) in cases {
        let out = nimbus.apply(yaml);
        let err = stderr_of(&out);
        assert!(!out.status.success(), "{what}: accepted");
        for n in *needles {
            assert!(err.contains(n), "{what}: {n:?} missing from: {err}");
        }
    }
    let list = nimbus
        .api_get("/apis/serving.knative.dev/v1/services")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "nothing stored");
    assert_eq!(list["metadata"]["resourceVersion"], "0", "store untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_processes_report_reasons_while_others_keep_serving() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    assert!(
        nimbus
            .apply(&process_svc("good", BIN, "sample-function", "", ""))
            .status
            .success()
    );
    nimbus
        .wait_service_ready("good", Duration::from_secs(30))
        .await
        .unwrap();

    nimbus.apply(&process_svc("missing", "/no/such/program", "", "", ""));
    nimbus.apply(&process_svc(
        "exits",
        BIN,
        "sample-function",
        "{name: EXIT_IMMEDIATELY, value: \"3\"}",
        "",
    ));
    nimbus.apply(&process_svc(
        "silent",
        "/bin/sleep",
        "\"1000\"",
        "",
        "serving.knative.dev/progress-deadline: 1s",
    ));

    let (_, reason, message) = wait_failed(&nimbus, "missing").await;
    assert_eq!(reason, "RevisionFailed", "{message}");
    assert!(message.contains("/no/such/program"), "{message}");
    let (_, _, message) = wait_failed(&nimbus, "exits").await;
    assert!(message.contains("exited with code 3"), "{message}");
    let (_, _, message) = wait_failed(&nimbus, "silent").await;
    assert!(
        message.contains("1s") || message.contains("listen"),
        "{message}"
    );

    // the revision itself carries the runtime's reason
    let rev = nimbus
        .api_get("/apis/serving.knative.dev/v1/namespaces/default/revisions/exits-00001")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        condition(&rev["status"], "Ready").1,
        "ExitCode3",
        "{:#}",
        rev["status"]
    );
    let table = nimbus.cli_ok(&["get", "revisions"]);
    assert!(table.contains("ExitCode3"), "{table}");

    // a request to a broken service gets 503 naming the revision; the good one still answers
    let r = client.get("exits.default.localhost", "/").await.unwrap();
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("exits-00001"), "{}", r.body);
    assert_eq!(
        client
            .get("good.default.localhost", "/")
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_faults_get_clear_answers() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    assert!(
        nimbus
            .apply(&process_svc("good", BIN, "sample-function", "", ""))
            .status
            .success()
    );
    nimbus
        .wait_service_ready("good", Duration::from_secs(30))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);

    // unknown host
    let r = client.get("nope.default.localhost", "/").await.unwrap();
    assert_eq!(r.status, 404);
    assert!(r.body.contains("nope.default.localhost"), "{}", r.body);

    // oversized header: refused, and the router keeps serving
    let http = reqwest::Client::new();
    let big = "x".repeat(200 * 1024);
    let resp = http
        .get(format!("http://{}/", nimbus.http_addr))
        .header("host", "good.default.localhost")
        .header("x-big", big)
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 431);
    }
    assert_eq!(
        client
            .get("good.default.localhost", "/")
            .await
            .unwrap()
            .status,
        200
    );

    // stale resourceVersion → 409 Conflict, object unchanged
    let url = format!(
        "{}/apis/serving.knative.dev/v1/namespaces/default/services/good",
        nimbus.api_url()
    );
    let mut svc = nimbus.service("good").await.unwrap();
    svc["metadata"]["resourceVersion"] = "1".into();
    svc["spec"]["template"]["spec"]["timeoutSeconds"] = 7.into();
    let resp = nimbus
        .api_client()
        .put(&url)
        .json(&svc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status["reason"], "Conflict");
    let now = nimbus.service("good").await.unwrap();
    assert_eq!(now["spec"]["template"]["spec"]["timeoutSeconds"], 300);
    assert_eq!(now["metadata"]["generation"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_revision_name_with_a_new_template_is_refused() {
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let named = |target: &str| {
        process_svc(
            "named",
            BIN,
            "sample-function",
            &format!("{{name: TARGET, value: {target}}}"),
            "",
        )
        .replace("    metadata:\n", "    metadata:\n      name: named-v1\n")
    };
    let out = nimbus.apply(&named("one"));
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = nimbus.apply(&named("two"));
    assert!(
        !out.status.success(),
        "a changed template under the same name was accepted"
    );
    let err = stderr_of(&out);
    assert!(
        err.contains("spec.template.metadata.name") && err.contains("immutable"),
        "{err}"
    );
    // a metadata-only change under the same name is fine
    let out = nimbus
        .apply(&named("one").replace("  name: named\n", "  name: named\n  labels: {team: x}\n"));
    assert!(out.status.success(), "{}", stderr_of(&out));
}
