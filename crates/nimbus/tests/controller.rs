//! The controller's Knative rules with the real binary: a crash of the newest revision does
//! not send traffic back to older code, re-applying an older named template rolls back to its
//! revision, Revision specs are immutable whichever client tries, and revision garbage
//! collection keeps exactly what Knative's `config-gc` keeps.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nimbus_testkit::api::{path, wait_until};
use nimbus_testkit::manifest::{self, hello, host_of};
use nimbus_testkit::traffic::{assert_split, tally, who};
use nimbus_testkit::{Nimbus, RouterClient, condition};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const WAIT: Duration = Duration::from_secs(60);

fn start(extra: &[&str]) -> (Nimbus, RouterClient) {
    let nimbus = Nimbus::start_with(Path::new(BIN), extra).expect("nimbus serve");
    let client = RouterClient::new(&nimbus.http_addr);
    (nimbus, client)
}

/// The pid of the instance that answers `/contract` on `host`.
async fn instance_pid(client: &RouterClient, host: &str) -> Result<u64, String> {
    let reply = client
        .get(host, "/contract")
        .await
        .map_err(|e| e.to_string())?;
    let c: Value = serde_json::from_str(&reply.body).map_err(|e| format!("{e}: {reply:?}"))?;
    c["pid"].as_u64().ok_or_else(|| format!("{c}"))
}

/// The only instance of the newest revision crashes (`/exit`) and is restarted. Knative's rule:
/// `latestReadyRevisionName` never moves to an older generation, so `latestRevision` traffic
/// waits for the new code instead of going back to the old one. Guards against a controller
/// that picks "the newest revision that is ready right now" (the old one, during the crash),
/// which every Configuration, Ingress and answer seen during the crash would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crash_of_the_newest_instance_keeps_traffic_on_the_new_code() {
    let (nimbus, client) = start(&[]);
    let mut svc = manifest::test_app("crash", "old");
    manifest::annotate(&mut svc, "autoscaling.knative.dev/min-scale", "1");
    manifest::annotate(&mut svc, "autoscaling.knative.dev/max-scale", "1");
    nimbus.deploy_expecting(&svc, "crash-00001").await;
    manifest::set_message(&mut svc, "new");
    nimbus.deploy_expecting(&svc, "crash-00002").await;
    let host = host_of("crash");
    client
        .get_until(&host, "/", WAIT, |r| r.body.trim() == hello("new"))
        .await
        .unwrap();
    let before = instance_pid(&client, &host).await.unwrap();

    let mut configurations = nimbus.watch("configurations").await;
    let mut ingresses = nimbus.watch("ingresses").await;
    let mut revisions = nimbus.watch("revisions").await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (client, host, stop) = (client.clone(), host.clone(), stop.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let r = client.get(&host, "/").await;
                seen.push(r.map_or_else(|e| e.to_string(), |r| who(&r)));
            }
            seen
        })
    };
    let _ = client.get(&host, "/exit?code=1").await; // answered by the crash itself
    let after = wait_until("a new instance", WAIT, async || {
        match instance_pid(&client, &host).await {
            Ok(pid) if pid != before => Ok(pid),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_ne!(before, after);
    stop.store(true, Ordering::SeqCst);
    let seen = traffic.await.unwrap();
    let mut answers = std::collections::BTreeMap::new();
    for s in &seen {
        *answers.entry(s.as_str()).or_insert(0) += 1;
    }
    println!("answers while the instance crashed and restarted: {answers:?}");
    let old: Vec<&String> = seen.iter().filter(|s| **s == hello("old")).collect();
    assert!(
        old.is_empty(),
        "the old revision answered during the crash: {seen:?}"
    );

    // The controller saw the crash (else this test proved nothing) and moved nothing.
    let crashed = revisions.drain().into_iter().any(|r| {
        r["metadata"]["name"] == "crash-00002" && condition(&r["status"], "Ready").0 != "True"
    });
    assert!(crashed, "crash-00002 never turned not-ready");
    for cfg in configurations.drain() {
        assert_eq!(
            cfg["status"]["latestReadyRevisionName"], "crash-00002",
            "{:#}",
            cfg["status"]
        );
    }
    for ing in ingresses.drain() {
        for rule in ing["spec"]["rules"].as_array().unwrap() {
            let splits = rule["http"]["paths"][0]["splits"].as_array().unwrap();
            assert_eq!(splits.len(), 1, "{ing:#}");
            assert_eq!(splits[0]["serviceName"], "crash-00002", "{ing:#}");
        }
    }
    let reply = client.get(&host, "/").await.unwrap();
    assert_eq!(reply.body.trim(), hello("new"));
}

/// Templates named `rb-a`, then `rb-b`, then `rb-a` again with the first spec: the third apply
/// is a rollback to the existing revision, as in Knative. Guards against a rollback that makes
/// a third revision (or a second PodAutoscaler), leaves `latestCreatedRevisionName` on `rb-b`,
/// or keeps serving b's code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapplying_an_older_named_template_rolls_back_to_its_revision() {
    let (nimbus, client) = start(&[]);
    let mut a = manifest::test_app("rb", "a");
    a["spec"]["template"]["metadata"]["name"] = "rb-a".into();
    let mut b = a.clone();
    b["spec"]["template"]["metadata"]["name"] = "rb-b".into();
    manifest::set_message(&mut b, "b");
    nimbus.deploy_expecting(&a, "rb-a").await;
    nimbus.deploy_expecting(&b, "rb-b").await;
    let counts = tally(&client, &host_of("rb"), "/", 50).await;
    assert_split(&counts, &[(&hello("b"), 100)]);

    let status = nimbus.deploy_expecting(&a, "rb-a").await;
    assert_eq!(status["latestCreatedRevisionName"], "rb-a", "{status:#}");
    assert_eq!(status["traffic"][0]["revisionName"], "rb-a", "{status:#}");
    let counts = tally(&client, &host_of("rb"), "/", 50).await;
    assert_split(&counts, &[(&hello("a"), 100)]);
    assert_eq!(nimbus.names("revisions").await, ["rb-a", "rb-b"]);
    assert_eq!(nimbus.names("podautoscalers").await, ["rb-a", "rb-b"]);
    let cfg = nimbus.must("configurations", "rb").await;
    assert_eq!(cfg["metadata"]["generation"], 3);
    assert_eq!(cfg["status"]["latestCreatedRevisionName"], "rb-a");
    wait_until("rb-b no longer routed", WAIT, async || {
        let b = nimbus.must("revisions", "rb-b").await;
        let a = nimbus.must("revisions", "rb-a").await;
        let state = |r: &Value| r["metadata"]["labels"]["serving.knative.dev/routingState"].clone();
        match (state(&a), state(&b)) {
            (a, b) if a == "active" && b == "reserve" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

/// A Revision manifest for `name`: the test app as a host process with env MESSAGE.
fn revision_yaml(name: &str, app: &str, message: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: {name}\n  \
         annotations: {{nimbus.dev/runtime: process}}\nspec:\n  containers:\n    - command: \
         [\"{app}\"]\n      env: [{{name: MESSAGE, value: {message}}}]\n"
    )
}

/// Revisions are immutable: a changed spec is refused with a Kubernetes `Status` (422
/// `Invalid`, cause on field `spec`) whether it comes as a PUT, from `nimbus apply` or from
/// `kubectl apply` (client- and server-side); a metadata change is accepted. Guards against
/// an API server that lets a running revision's spec change under it (its instances would no
/// longer match it) or refuses without naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_revision_spec_is_refused_with_a_status_naming_spec() {
    let (nimbus, _) = start(&[]);
    let svc = manifest::test_app("imm", "one");
    nimbus.deploy_expecting(&svc, "imm-00001").await;
    let rev = nimbus.must("revisions", "imm-00001").await;
    let url = path("revisions", Some("imm-00001"));

    let mut changed = rev.clone();
    changed["spec"]["containers"][0]["env"][0]["value"] = "two".into();
    let (code, status) = nimbus
        .send(reqwest::Method::PUT, &url, Some(&changed))
        .await;
    assert_eq!(code, 422, "{status:#}");
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("Invalid")),
        "{status:#}"
    );
    let causes = status["details"]["causes"].as_array().unwrap();
    assert!(causes.iter().any(|c| c["field"] == "spec"), "{status:#}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("immutable"),
        "{status:#}"
    );

    let mut relabelled = rev.clone();
    relabelled["metadata"]["labels"]["extra"] = "yes".into();
    let (code, body) = nimbus
        .send(reqwest::Method::PUT, &url, Some(&relabelled))
        .await;
    assert_eq!(code, 200, "a metadata change is allowed: {body:#}");

    let app = nimbus_testkit::image::test_app_binary();
    let yaml = revision_yaml("imm-00001", &app.to_string_lossy(), "three");
    let out = nimbus.apply(&yaml);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "nimbus apply changed a revision");
    assert!(
        stderr.contains("spec") && stderr.to_ascii_lowercase().contains("immutable"),
        "{stderr}"
    );

    if nimbus_testkit::kube::have_kubectl() {
        kubectl_apply_is_refused(&nimbus, &yaml);
    }
    let now = nimbus.must("revisions", "imm-00001").await;
    assert_eq!(now["spec"], rev["spec"], "the spec never changed");
}

fn kubectl_apply_is_refused(nimbus: &Nimbus, yaml: &str) {
    for extra in [&[][..], &["--server-side", "--force-conflicts"][..]] {
        let args: Vec<&str> = ["apply", "-f", "-"].iter().chain(extra).copied().collect();
        let out = nimbus.kubectl(&args, Some(yaml));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "kubectl {args:?} changed a revision");
        assert!(
            stderr.contains("The Revision \"imm-00001\" is invalid") && stderr.contains("spec"),
            "kubectl {args:?}: {stderr}"
        );
    }
}

/// Knative's revision GC with the real binary: revisions are stale at once, and one
/// non-active revision is kept. Of six revisions, exactly these remain: the latest ready, one
/// reached by a tag, one pinned with `serving.knative.dev/no-gc`, and the newest non-active
/// one. Guards against GC deleting what is routed, pinned or latest, keeping more than the
/// policy allows, or deleting the wrong (newer) non-active revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_gc_keeps_latest_routed_pinned_and_newest_non_active() {
    let flags = [
        "--revision-gc-retain-since-create-time",
        "0s",
        "--revision-gc-retain-since-last-active-time",
        "0s",
        "--revision-gc-min-non-active",
        "1",
    ];
    let (nimbus, _) = start(&flags);
    let mut svc = manifest::test_app("gc", "1");
    let remaining = |want: &'static [&'static str]| {
        let nimbus = &nimbus;
        async move {
            let what = format!("revisions {want:?}");
            wait_until(&what, WAIT, async || {
                let names = nimbus.names("revisions").await;
                if names == want {
                    Ok(())
                } else {
                    Err(format!("{names:?}"))
                }
            })
            .await;
        }
    };
    nimbus.deploy_expecting(&svc, "gc-00001").await;
    manifest::set_message(&mut svc, "2");
    nimbus.deploy_expecting(&svc, "gc-00002").await;
    remaining(&["gc-00001", "gc-00002"]).await;

    let pin = json!({"metadata": {"annotations": {"serving.knative.dev/no-gc": "true"}}});
    let (code, body) = nimbus.merge_patch("revisions", "gc-00001", &pin).await;
    assert_eq!(code, 200, "{body:#}");
    manifest::set_message(&mut svc, "3");
    nimbus.deploy_expecting(&svc, "gc-00003").await;
    remaining(&["gc-00001", "gc-00002", "gc-00003"]).await;

    svc["spec"]["traffic"] = json!([
        {"latestRevision": true, "percent": 100},
        {"revisionName": "gc-00003", "percent": 0, "tag": "old"},
    ]);
    manifest::set_message(&mut svc, "4");
    nimbus.deploy_expecting(&svc, "gc-00004").await;
    remaining(&["gc-00001", "gc-00002", "gc-00003", "gc-00004"]).await;

    // gc-00002 and gc-00004 are non-active now: the older one goes.
    manifest::set_message(&mut svc, "5");
    nimbus.deploy_expecting(&svc, "gc-00005").await;
    remaining(&["gc-00001", "gc-00003", "gc-00004", "gc-00005"]).await;

    manifest::set_message(&mut svc, "6");
    nimbus.deploy_expecting(&svc, "gc-00006").await;
    remaining(&["gc-00001", "gc-00003", "gc-00005", "gc-00006"]).await;
    // Collected revisions take their PodAutoscalers with them.
    wait_until(
        "PodAutoscalers of the kept revisions only",
        WAIT,
        async || {
            let pas = nimbus.names("podautoscalers").await;
            if pas == ["gc-00001", "gc-00003", "gc-00005", "gc-00006"] {
                Ok(())
            } else {
                Err(format!("{pas:?}"))
            }
        },
    )
    .await;
}
