//! Secrets and ConfigMaps end to end (issue #13): the real kubectl creates, lists, reads,
//! applies and deletes them under `/api/v1`; their values are encrypted in the database and
//! redacted by `nimbus get`; a host-process service reads them through `env[].valueFrom` and
//! `envFrom` at every instance start (a running instance keeps its values, a new one sees the
//! current ones, no new revision); a missing reference fails the start with
//! `CreateContainerConfigError`, and no value appears in any status.

use std::path::{Path, PathBuf};

use std::time::Duration;

use nimbus_testkit::manifest::{host_of, test_app};
use nimbus_testkit::{Nimbus, RouterClient, row};
use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const SECRETS: &str = "/api/v1/namespaces/default/secrets";
const CONFIG_MAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Every byte of the database and its write-ahead log.
fn database_bytes(data_dir: &Path) -> Vec<u8> {
    ["nimbus.db", "nimbus.db-wal"]
        .iter()
        .flat_map(|f| std::fs::read(data_dir.join(f)).unwrap_or_default())
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

const CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  GREETING: hello
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_gets_applies_and_deletes_secrets_and_config_maps() {
    if !nimbus_testkit::kube::have_kubectl() {
        return;
    }
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");

    let out = nimbus.kubectl_ok(
        &[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cr3t",
        ],
        None,
    );
    assert!(out.contains("secret/db created"), "{out}");
    let table = nimbus.kubectl_ok(&["get", "secrets"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"]);
    assert_eq!(row(&table, "db")[1..3], ["Opaque", "1"]);
    // kubectl gets the real values, as from Kubernetes (the token holder is trusted).
    let yaml = nimbus.kubectl_ok(&["get", "secret", "db", "-o", "yaml"], None);
    assert!(yaml.contains("password: czNjcjN0"), "{yaml}");

    let out = nimbus.kubectl_ok(&["apply", "-f", "-"], Some(CONFIG_MAP));
    assert!(out.contains("configmap/cfg created"), "{out}");
    let changed = CONFIG_MAP.replace("GREETING: hello", "GREETING: hi\n  OTHER: x");
    let out = nimbus.kubectl_ok(&["apply", "-f", "-"], Some(&changed));
    assert!(out.contains("configmap/cfg configured"), "{out}");
    let table = nimbus.kubectl_ok(&["get", "cm"], None);
    assert_eq!(row(&table, "cfg")[1], "2");

    // `nimbus get` redacts unless asked.
    let redacted = nimbus.cli_ok(&["get", "secret", "db", "-o", "yaml"]);
    assert!(redacted.contains("<redacted: 6 bytes>"), "{redacted}");
    assert!(!redacted.contains("czNjcjN0"), "{redacted}");
    let shown = nimbus.cli_ok(&["get", "secret", "db", "-o", "json", "--show-secrets"]);
    assert!(shown.contains("czNjcjN0"), "{shown}");

    let bytes = database_bytes(nimbus.data_dir());
    assert!(contains(&bytes, "GREETING"), "the test reads the database");
    for value in ["s3cr3t", "czNjcjN0"] {
        assert!(!contains(&bytes, value), "{value} is in the database file");
    }

    let out = nimbus.kubectl_ok(&["delete", "secret", "db"], None);
    assert!(out.contains("secret \"db\" deleted"), "{out}");
    let out = nimbus.kubectl_ok(&["delete", "-f", "-"], Some(CONFIG_MAP));
    assert!(out.contains("configmap \"cfg\" deleted"), "{out}");
    let out = nimbus.kubectl(&["get", "secret", "db"], None);
    assert!(!out.status.success());
}

/// `test_app` reading PASSWORD from Secret `db`, MESSAGE literal, and Config Map `cfg` whole;
/// one instance kept running.
fn service_reading(name: &str, secret: &str) -> Value {
    let mut svc = test_app(name, "m");
    svc["spec"]["template"]["metadata"]["annotations"]["autoscaling.knative.dev/min-scale"] =
        json!("1");
    let c = &mut svc["spec"]["template"]["spec"]["containers"][0];
    c["env"].as_array_mut().unwrap().push(json!({
        "name": "PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": "password"}}
    }));
    c["envFrom"] = json!([{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]);
    svc
}

async fn create(nimbus: &Nimbus, path: &str, body: Value) {
    let (code, answer) = nimbus.send(Method::POST, path, Some(&body)).await;
    assert_eq!(code, 201, "{answer}");
}

async fn set_password(nimbus: &Nimbus, password: &str) {
    let patch = json!({"stringData": {"password": password}});
    let (code, answer) = nimbus
        .send(Method::PATCH, &format!("{SECRETS}/db"), Some(&patch))
        .await;
    assert_eq!(code, 200, "{answer}");
}

async fn env_of(client: &RouterClient, host: &str, wanted: &str) -> String {
    let reply = client
        .get_until(host, "/env", Duration::from_secs(60), |r| {
            r.status == 200 && r.body.lines().any(|l| l == wanted)
        })
        .await
        .unwrap_or_else(|e| panic!("no {wanted} in /env: {e}"));
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_read_secrets_and_config_maps_when_they_start() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
        "stringData": {"password": "first-s3cr3t"}});
    create(&nimbus, SECRETS, secret).await;
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"GREETING": "hello"}});
    create(&nimbus, CONFIG_MAPS, cm).await;
    nimbus.deploy(&service_reading("reader", "db")).await;
    let client = RouterClient::new(&nimbus.http_addr);
    let host = host_of("reader");

    let env = env_of(&client, &host, "PASSWORD=first-s3cr3t").await;
    assert!(env.lines().any(|l| l == "CFG_GREETING=hello"), "{env}");
    assert!(env.lines().any(|l| l == "MESSAGE=m"), "{env}");

    // The running instance keeps what it started with.
    set_password(&nimbus, "second-s3cr3t").await;
    let env = env_of(&client, &host, "PASSWORD=first-s3cr3t").await;
    assert!(!env.contains("second-s3cr3t"), "{env}");

    // A new instance (the old one exits and is restarted) reads the current value; no new
    // revision was made.
    let _ = client.get(&host, "/exit?code=1").await;
    env_of(&client, &host, "PASSWORD=second-s3cr3t").await;
    assert_eq!(nimbus.names("revisions").await, ["reader-00001"]);

    for (resource, name) in [("services", "reader"), ("revisions", "reader-00001")] {
        let text = nimbus.must(resource, name).await.to_string();
        assert!(!text.contains("s3cr3t"), "{resource}/{name}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_fails_the_start_with_create_container_config_error() {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
        "data": {"GREETING": "hello"}});
    create(&nimbus, CONFIG_MAPS, cm).await;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other"},
        "stringData": {"token": "t0p-s3cr3t"}});
    create(&nimbus, SECRETS, secret).await;
    nimbus.apply_ok(&service_reading("broken", "nope").to_string());
    let revision = nimbus_testkit::api::wait_until(
        "the revision fails with CreateContainerConfigError",
        Duration::from_secs(60),
        async || {
            let rev = nimbus.object("revisions", "broken-00001").await;
            let rev = rev.ok_or_else(|| "no revision yet".to_string())?;
            let (status, reason, message) = nimbus_testkit::condition(&rev["status"], "Ready");
            match (status.as_str(), reason.as_str()) {
                ("False", "CreateContainerConfigError") => Ok((rev, message)),
                _ => Err(format!("Ready={status} {reason}: {message}")),
            }
        },
    )
    .await;
    let (rev, message) = revision;
    assert!(message.contains("secret \"nope\" not found"), "{message}");
    // Fixed by creating the secret: the next start (with back-off) succeeds.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "nope"},
        "stringData": {"password": "late-s3cr3t"}});
    create(&nimbus, SECRETS, secret).await;
    nimbus
        .wait_service_ready("broken", Duration::from_secs(90))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let service = nimbus.must("services", "broken").await;
    for text in [rev.to_string(), service.to_string()] {
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    let logs = nimbus.data_dir().join("logs");
    for entry in walk(&logs) {
        let text = std::fs::read_to_string(&entry).unwrap_or_default();
        assert!(!text.contains("s3cr3t"), "{}: {text}", entry.display());
    }
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        match path.is_dir() {
            true => out.extend(walk(&path)),
            false => out.push(path),
        }
    }
    out
}
