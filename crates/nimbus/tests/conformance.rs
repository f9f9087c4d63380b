//! Knative Serving's conformance behaviours (`test/conformance/api/v1` in knative/serving),
//! checked against the real binary: blue/green traffic with tags, error conditions on every
//! level, BYO revision names, label and annotation propagation, `generateName`, the runtime
//! contract, single concurrency, and the internal objects behind a Service. Services are host
//! processes running `nimbus-test-app`, so no registry or container runtime is needed (the
//! missing image comes from a registry that holds nothing).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::api::wait_until;
use nimbus_testkit::image::{EmptyRegistry, test_app_binary};
use nimbus_testkit::manifest::{self, hello, host_of};
use nimbus_testkit::traffic::{assert_split, tally};
use nimbus_testkit::{Nimbus, RouterClient, condition, host};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const WAIT: Duration = Duration::from_secs(60);

async fn start() -> (Nimbus, RouterClient) {
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let client = RouterClient::new(&nimbus.http_addr);
    (nimbus, client)
}

fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["labels"][key].as_str()
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

/// TestBlueGreenRoute, with the traffic moved twice more. Guards against a router split that
/// ignores or misweights percents, a tag host that reaches another revision than its own, and
/// a split that does not follow when the percents change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_traffic_moves_by_percent_and_tags_reach_their_revision() {
    let (nimbus, client) = start().await;
    let mut svc = manifest::test_app("bg", "blue");
    nimbus.deploy_expecting(&svc, "bg-00001").await;
    manifest::set_message(&mut svc, "green");
    nimbus.deploy_expecting(&svc, "bg-00002").await;
    let (blue, green) = (hello("blue"), hello("green"));
    for (to_blue, to_green) in [(50, 50), (10, 90), (100, 0)] {
        svc["spec"]["traffic"] = json!([
            {"tag": "blue", "revisionName": "bg-00001", "percent": to_blue},
            {"tag": "green", "revisionName": "bg-00002", "percent": to_green},
        ]);
        let status = nimbus.deploy_expecting(&svc, "bg-00002").await;
        let port = nimbus.http_port();
        for (i, tag) in ["blue", "green"].iter().enumerate() {
            assert_eq!(status["traffic"][i]["tag"], *tag, "{status:#}");
            let url = format!("http://{tag}-bg.default.localhost:{port}");
            assert_eq!(status["traffic"][i]["url"], url, "{status:#}");
        }
        let counts = tally(&client, &host_of("bg"), "/", 1000).await;
        assert_split(&counts, &[(&blue, to_blue), (&green, to_green)]);
        for (tag, body) in [("blue", &blue), ("green", &green)] {
            let counts = tally(&client, &format!("{tag}-bg.default.localhost"), "/", 100).await;
            assert_split(&counts, &[(body, 100)]);
        }
    }
}

/// The Ready condition of `resource/name`: (status, reason, message).
async fn ready_of(nimbus: &Nimbus, resource: &str, name: &str) -> (String, String, String) {
    let obj = nimbus.object(resource, name).await.unwrap_or_default();
    condition(&obj["status"], "Ready")
}

/// Wait until the Service, its Configuration, Route and latest created Revision are all
/// Ready=False with a reason and a message; returns their conditions by resource.
async fn wait_all_failed(nimbus: &Nimbus, name: &str) -> BTreeMap<String, (String, String)> {
    wait_until(&format!("{name} failed on every level"), WAIT, async || {
        let cfg = nimbus
            .object("configurations", name)
            .await
            .unwrap_or_default();
        let rev = cfg["status"]["latestCreatedRevisionName"]
            .as_str()
            .ok_or("no revision yet")?
            .to_string();
        let mut out = BTreeMap::new();
        for (resource, object) in [
            ("services", name),
            ("configurations", name),
            ("routes", name),
            ("revisions", rev.as_str()),
        ] {
            let (status, reason, message) = ready_of(nimbus, resource, object).await;
            if status != "False" || reason.is_empty() || message.is_empty() {
                return Err(format!(
                    "{resource}/{object}: {status} {reason:?} {message:?}"
                ));
            }
            out.insert(resource.to_string(), (reason, message));
        }
        Ok(out)
    })
    .await
}

/// TestContainerExitingMsg and TestContainerErrorMsg, plus a RuntimeClass that does not exist
/// here. Guards against a failure that stays on the Revision (or is reported without reason or
/// message) instead of reaching the Configuration, Route and Service a user looks at.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_conditions_have_reasons_and_messages_on_every_level() {
    let (nimbus, _) = start().await;
    let registry = EmptyRegistry::start().unwrap();
    let image = format!("{}/missing/app:1", registry.addr);
    let mut exits = manifest::test_app("exits", "x");
    exits["spec"]["template"]["spec"]["containers"][0] =
        json!({"command": ["/bin/sh"], "args": ["-c", "echo boom >&2; exit 5"]});
    let mut missing = manifest::test_app("missing", "x");
    manifest::annotate(&mut missing, "nimbus.dev/runtime", "oci");
    missing["spec"]["template"]["spec"]["containers"][0] = json!({"image": image});
    let mut class = manifest::test_app("class", "x");
    class["spec"]["template"]["metadata"]["annotations"] = json!({});
    class["spec"]["template"]["spec"]["runtimeClassName"] = "gvisor".into();
    class["spec"]["template"]["spec"]["containers"][0] = json!({"image": "example.com/app:1"});
    for svc in [&exits, &missing, &class] {
        nimbus.apply_ok(&svc.to_string());
    }
    let cases = [
        ("exits", "ExitCode5", "boom"),
        ("missing", "ImageNotFound", image.as_str()),
        ("class", "RuntimeClassUnavailable", "gvisor"),
    ];
    for (name, reason, needle) in cases {
        let conds = wait_all_failed(&nimbus, name).await;
        let (rev_reason, rev_message) = &conds["revisions"];
        assert_eq!(rev_reason, reason, "{name}: {conds:#?}");
        assert!(rev_message.contains(needle), "{name}: {conds:#?}");
        let revision = format!("{name}-00001");
        for resource in ["configurations", "services"] {
            let (reason, message) = &conds[resource];
            assert_eq!(reason, "RevisionFailed", "{name} {resource}: {conds:#?}");
            assert!(
                message.contains(&revision) && message.contains(needle),
                "{name} {resource}: the message names the revision and why: {conds:#?}"
            );
        }
    }
}

/// TestServiceBYOName, with the rollback and name clashes Knative's configuration reconciler
/// handles. Guards against a chosen name being ignored, a rollback creating a revision or
/// serving the wrong code, and a name that already names another template (of this Service or
/// of another Configuration) being taken over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byo_revision_names_update_roll_back_and_refuse_a_clash() {
    let (nimbus, client) = start().await;
    let mut svc = manifest::test_app("byo", "one");
    svc["spec"]["template"]["metadata"]["name"] = "byo-one".into();
    nimbus.deploy_expecting(&svc, "byo-one").await;
    let one = svc.clone();
    svc["spec"]["template"]["metadata"]["name"] = "byo-x-two".into();
    manifest::set_message(&mut svc, "two");
    nimbus.deploy_expecting(&svc, "byo-x-two").await;
    client
        .get_until(&host_of("byo"), "/", WAIT, |r| {
            r.body.trim() == hello("two")
        })
        .await
        .unwrap();

    // Rollback by name: the first template again.
    let status = nimbus.deploy_expecting(&one, "byo-one").await;
    assert_eq!(status["latestCreatedRevisionName"], "byo-one");
    assert_eq!(nimbus.names("revisions").await, ["byo-one", "byo-x-two"]);
    let counts = tally(&client, &host_of("byo"), "/", 50).await;
    assert_split(&counts, &[(&hello("one"), 100)]);

    // The same name with another template is refused, and changes nothing.
    let mut clash = one.clone();
    manifest::set_message(&mut clash, "three");
    let out = nimbus.apply(&clash.to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a changed template kept its name");
    assert!(stderr.contains("spec.template.metadata.name"), "{stderr}");
    assert_eq!(
        nimbus.must("services", "byo").await["metadata"]["generation"],
        3
    );

    // Another Service's Configuration may not take a revision name that is already taken.
    let mut other = manifest::test_app("byo-x", "two");
    other["spec"]["template"]["metadata"]["name"] = "byo-x-two".into();
    nimbus.apply_ok(&other.to_string());
    let (_, reason, message) = wait_until("byo-x refused", WAIT, async || {
        let c = ready_of(&nimbus, "services", "byo-x").await;
        if c.0 == "False" {
            Ok(c)
        } else {
            Err(format!("{c:?}"))
        }
    })
    .await;
    assert_eq!(reason, "RevisionFailed");
    assert!(
        message.contains("\"byo-x-two\" already exists"),
        "{message}"
    );
    let taken = nimbus.must("revisions", "byo-x-two").await;
    assert_eq!(
        label(&taken, "serving.knative.dev/configuration"),
        Some("byo")
    );
}

/// TestLabelPropagation, TestAnnotationPropagation and TestUpdateConfigurationMetadata.
/// Guards against Service metadata not reaching the Configuration and Route, metadata removed
/// from the Service staying on them, the controller wiping what another client put on the
/// Configuration, and Configuration metadata leaking onto Revisions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_annotations_propagate_and_their_removal_too() {
    let (nimbus, _) = start().await;
    let mut svc = manifest::test_app("meta", "one");
    svc["metadata"]["labels"] = json!({"team": "a", "juicy": "jamba"});
    svc["metadata"]["annotations"] = json!({"note": "x", "juicy": "jamba"});
    svc["spec"]["template"]["metadata"]["labels"] = json!({"tmpl": "t"});
    nimbus.deploy_expecting(&svc, "meta-00001").await;
    for resource in ["configurations", "routes"] {
        let o = nimbus.must(resource, "meta").await;
        for (key, value) in [
            ("team", "a"),
            ("juicy", "jamba"),
            ("serving.knative.dev/service", "meta"),
        ] {
            assert_eq!(
                label(&o, key),
                Some(value),
                "{resource}: {:#}",
                o["metadata"]
            );
        }
        for (key, value) in [("note", "x"), ("juicy", "jamba")] {
            assert_eq!(
                annotation(&o, key),
                Some(value),
                "{resource}: {:#}",
                o["metadata"]
            );
        }
        for key in [
            "serving.knative.dev/creator",
            "serving.knative.dev/lastModifier",
        ] {
            assert!(
                annotation(&o, key).is_some_and(|v| !v.is_empty()),
                "{resource}: {key}"
            );
        }
    }
    let rev = nimbus.must("revisions", "meta-00001").await;
    for (key, value) in [
        ("serving.knative.dev/service", "meta"),
        ("serving.knative.dev/configuration", "meta"),
        ("serving.knative.dev/configurationGeneration", "1"),
        ("tmpl", "t"),
    ] {
        assert_eq!(label(&rev, key), Some(value), "{:#}", rev["metadata"]);
    }
    // As in Knative, a Revision gets its template's metadata, not the Service's own.
    assert_eq!(label(&rev, "team"), None, "{:#}", rev["metadata"]);
    assert_eq!(annotation(&rev, "note"), None, "{:#}", rev["metadata"]);

    // Another client labels the Configuration: no new revision, and not on the revision.
    let patch =
        json!({"metadata": {"labels": {"other": "kept"}, "annotations": {"other-note": "kept"}}});
    let (code, body) = nimbus.merge_patch("configurations", "meta", &patch).await;
    assert_eq!(code, 200, "{body}");

    // The Service drops `juicy`, and gets a new template to wait for.
    svc["metadata"]["labels"] = json!({"team": "a"});
    svc["metadata"]["annotations"] = json!({"note": "x"});
    manifest::set_message(&mut svc, "two");
    nimbus.deploy_expecting(&svc, "meta-00002").await;
    for resource in ["configurations", "routes"] {
        let o = wait_until(&format!("juicy gone from {resource}"), WAIT, async || {
            let o = nimbus.must(resource, "meta").await;
            match (label(&o, "juicy"), annotation(&o, "juicy")) {
                (None, None) => Ok(o),
                _ => Err(format!("{:#}", o["metadata"])),
            }
        })
        .await;
        assert_eq!(label(&o, "team"), Some("a"), "{:#}", o["metadata"]);
        assert_eq!(annotation(&o, "note"), Some("x"), "{:#}", o["metadata"]);
    }
    let cfg = nimbus.must("configurations", "meta").await;
    assert_eq!(label(&cfg, "other"), Some("kept"), "{:#}", cfg["metadata"]);
    assert_eq!(
        annotation(&cfg, "other-note"),
        Some("kept"),
        "{:#}",
        cfg["metadata"]
    );
    assert_eq!(
        nimbus.names("revisions").await,
        ["meta-00001", "meta-00002"]
    );
    for name in ["meta-00001", "meta-00002"] {
        let rev = nimbus.must("revisions", name).await;
        assert_eq!(label(&rev, "other"), None, "{name}: {:#}", rev["metadata"]);
        assert_eq!(
            annotation(&rev, "other-note"),
            None,
            "{name}: {:#}",
            rev["metadata"]
        );
    }
}

/// TestServiceGenerateName. Guards against `metadata.generateName` being refused, producing
/// a name that is not the prefix plus name characters, or a Service that then does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_may_have_a_generated_name() {
    let (nimbus, client) = start().await;
    let mut svc = manifest::test_app("unused", "generated");
    svc["metadata"] = json!({"generateName": "gen-"});
    let path = nimbus_testkit::api::path("services", None);
    let (code, created) = nimbus.send(reqwest::Method::POST, &path, Some(&svc)).await;
    assert_eq!(code, 201, "{created}");
    let name = created["metadata"]["name"].as_str().unwrap().to_string();
    let suffix = name
        .strip_prefix("gen-")
        .unwrap_or_else(|| panic!("{name}"));
    assert!(
        !suffix.is_empty()
            && suffix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-'),
        "generated name {name:?}"
    );
    nimbus.wait_service_ready(&name, WAIT).await.unwrap();
    for resource in ["configurations", "routes"] {
        nimbus.must(resource, &name).await;
    }
    let reply = client.get(&host_of(&name), "/").await.unwrap();
    assert_eq!(reply.body.trim(), hello("generated"), "{reply:?}");
}

/// Knative's runtime contract (`docs/runtime-contract.md`) for a host process: `PORT` is where
/// it must listen, `K_SERVICE`, `K_CONFIGURATION`, `K_REVISION` name it, argv is `command` +
/// `args` verbatim, the working directory is `workingDir`; and manifests may not set the
/// reserved variables. Guards against a runtime that drops, renames or lets a manifest override
/// these.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_contract_reaches_the_process() {
    let (nimbus, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let workdir = std::fs::canonicalize(dir.path()).unwrap();
    let mut svc = manifest::test_app("contract", "c");
    let container = &mut svc["spec"]["template"]["spec"]["containers"][0];
    container["args"] = json!(["first", "two words", ""]);
    container["workingDir"] = workdir.to_string_lossy().into();
    container["env"] = json!([{"name": "MESSAGE", "value": "c"}, {"name": "FOO", "value": "bar"}]);
    nimbus.deploy_expecting(&svc, "contract-00001").await;

    let reply = client.get(&host_of("contract"), "/contract").await.unwrap();
    let c: Value = serde_json::from_str(&reply.body).unwrap_or_else(|e| panic!("{e}: {reply:?}"));
    let app = test_app_binary().to_string_lossy().into_owned();
    assert_eq!(c["argv"], json!([app, "first", "two words", ""]), "{c:#}");
    assert_eq!(c["cwd"], workdir.to_string_lossy().as_ref(), "{c:#}");

    let env: BTreeMap<String, String> = client
        .get(&host_of("contract"), "/env")
        .await
        .unwrap()
        .body
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    for (key, value) in [
        ("K_SERVICE", "contract"),
        ("K_CONFIGURATION", "contract"),
        ("K_REVISION", "contract-00001"),
        ("FOO", "bar"),
    ] {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "{key}: {env:#?}"
        );
    }
    let port: u16 = env["PORT"].parse().unwrap_or_else(|e| panic!("PORT: {e}"));
    let pid = c["pid"].as_u64().unwrap() as u32;
    assert!(
        host::listeners(port).contains(&pid),
        "the instance (pid {pid}) listens on its PORT {port}"
    );

    for reserved in ["PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"] {
        let mut bad = manifest::test_app("reserved", "x");
        let env = &mut bad["spec"]["template"]["spec"]["containers"][0]["env"];
        env.as_array_mut()
            .unwrap()
            .push(json!({"name": reserved, "value": "1"}));
        let out = nimbus.apply(&bad.to_string());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{reserved} was accepted");
        assert!(
            stderr.contains("spec.template.spec.containers[0].env[1].name")
                && stderr.contains("reserved"),
            "{reserved}: {stderr}"
        );
    }
    assert!(nimbus.object("services", "reserved").await.is_none());
}

/// GET `path` on `host` from `n` concurrent clients at once; returns the status codes.
async fn burst(client: &RouterClient, host: &str, path: &str, n: usize) -> Vec<u16> {
    let requests = (0..n).map(|_| {
        let (client, host, path) = (client.clone(), host.to_string(), path.to_string());
        tokio::spawn(async move { client.get(&host, &path).await.map_or(0, |r| r.status) })
    });
    let mut codes = Vec::new();
    for r in requests.collect::<Vec<_>>() {
        codes.push(r.await.unwrap());
    }
    codes
}

/// TestSingleConcurrency: with `containerConcurrency: 1` an instance never has two requests
/// at once, under a burst and under sustained concurrent load. The test app's `/overlap`
/// answers 500 when another request was inside with it; a Service without the limit shows that
/// it notices. Guards against a router (or activator queue) that lets a second request through
/// to a busy single-concurrency instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_concurrency_never_overlaps_requests() {
    let (nimbus, client) = start().await;
    let mut single = manifest::test_app("single", "s");
    single["spec"]["template"]["spec"]["containerConcurrency"] = 1.into();
    let mut many = manifest::test_app("many", "m");
    manifest::annotate(&mut many, "autoscaling.knative.dev/max-scale", "1");
    nimbus.deploy_expecting(&single, "single-00001").await;
    nimbus.deploy_expecting(&many, "many-00001").await;

    let codes = burst(&client, &host_of("many"), "/overlap?ms=300", 5).await;
    assert!(
        codes.contains(&500),
        "without the limit requests overlap: {codes:?}"
    );
    let codes = burst(&client, &host_of("single"), "/overlap?ms=300", 5).await;
    assert_eq!(codes, [200; 5], "a burst of 5 with containerConcurrency 1");

    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    let loops = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move {
            let mut codes = Vec::new();
            while tokio::time::Instant::now() < until {
                let r = client.get(&host_of("single"), "/overlap?ms=20").await;
                codes.push(r.map_or(0, |r| r.status));
            }
            codes
        })
    });
    let mut all = Vec::new();
    for l in loops.collect::<Vec<_>>() {
        all.extend(l.await.unwrap());
    }
    let bad: Vec<&u16> = all.iter().filter(|c| **c != 200).collect();
    assert!(
        bad.is_empty(),
        "{} of {} answers not 200: {bad:?}",
        bad.len(),
        all.len()
    );
    assert!(all.len() >= 50, "only {} requests completed", all.len());
}

/// The columns of the row of `table` whose first column is `name`.
fn row(table: &str, name: &str) -> Option<Vec<String>> {
    table
        .lines()
        .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .find(|w| w.first().map(String::as_str) == Some(name))
}

/// `nimbus get kpa` and `nimbus get kingress` show the PodAutoscaler and Ingress behind a
/// Service (as `kubectl get kpa,kingress` does on Knative), owned by the Revision and Route,
/// and they go with the Service. Guards against the internal objects missing, carrying the
/// wrong target or hosts, or outliving their owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_kpa_and_kingress_show_the_internal_objects() {
    let (nimbus, _) = start().await;
    let mut svc = manifest::test_app("inner", "i");
    svc["spec"]["traffic"] = json!([{"latestRevision": true, "percent": 100, "tag": "now"}]);
    nimbus.deploy_expecting(&svc, "inner-00001").await;

    let kpa = wait_until("the PodAutoscaler at 1/1", WAIT, async || {
        let table = nimbus.cli_ok(&["get", "kpa"]);
        let r = row(&table, "inner-00001").unwrap_or_default();
        if r.get(1..4).is_some_and(|c| c == ["1", "1", "True"]) {
            Ok(table)
        } else {
            Err(table)
        }
    })
    .await;
    assert!(kpa.starts_with("NAME"), "{kpa}");
    let pa: Value =
        serde_json::from_str(&nimbus.cli_ok(&["get", "kpa", "inner-00001", "-o", "json"])).unwrap();
    assert_eq!(
        pa["spec"]["scaleTargetRef"]["name"], "inner-00001",
        "{pa:#}"
    );
    assert_eq!(pa["spec"]["reachability"], "Reachable", "{pa:#}");
    assert_eq!(
        pa["metadata"]["ownerReferences"][0]["kind"], "Revision",
        "{pa:#}"
    );
    assert_eq!(
        pa["metadata"]["ownerReferences"][0]["controller"], true,
        "{pa:#}"
    );

    let table = nimbus.cli_ok(&["get", "kingress"]);
    let r = row(&table, "inner").unwrap_or_default();
    assert_eq!(r.get(1).map(String::as_str), Some("True"), "{table}");
    let ing: Value =
        serde_json::from_str(&nimbus.cli_ok(&["get", "kingress", "inner", "-o", "json"])).unwrap();
    let rules = &ing["spec"]["rules"];
    assert_eq!(
        rules[0]["hosts"],
        json!(["inner.default.localhost"]),
        "{ing:#}"
    );
    assert_eq!(
        rules[1]["hosts"],
        json!(["now-inner.default.localhost"]),
        "{ing:#}"
    );
    for rule in [&rules[0], &rules[1]] {
        let split = &rule["http"]["paths"][0]["splits"][0];
        assert_eq!(
            (split["serviceName"].as_str(), split["percent"].as_i64()),
            (Some("inner-00001"), Some(100)),
            "{ing:#}"
        );
    }
    assert_eq!(
        ing["metadata"]["ownerReferences"][0]["kind"], "Route",
        "{ing:#}"
    );

    if nimbus_testkit::kube::have_kubectl() {
        let out = nimbus.kubectl(&["get", "kpa,kingress"], None);
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in [
            "podautoscaler.autoscaling.internal.knative.dev/inner-00001",
            "ingress.networking.internal.knative.dev/inner",
        ] {
            assert!(table.contains(name), "kubectl get kpa,kingress: {table}");
        }
    }

    nimbus.cli_ok(&["delete", "service", "inner"]);
    wait_until("the internal objects gone", WAIT, async || {
        let left = [
            nimbus.names("podautoscalers").await,
            nimbus.names("ingresses").await,
        ];
        if left.iter().all(Vec::is_empty) {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
}
