//! Nothing is left behind, checked on the host and not only in the API: deleting many
//! Services at once removes every object, instance process, instance cgroup and log
//! directory; and a server killed with SIGKILL in the middle of a rollout is restarted on its
//! data directory and resumes (same revisions, same PodAutoscaler scales, same split) while
//! killing what its predecessor left running. Needs root and cgroups (it finds instances
//! through their cgroups); skipped without them, except in CI.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::api::{path, wait_until};
use nimbus_testkit::host::{self, Instances, Process};
use nimbus_testkit::manifest::{self, hello, host_of};
use nimbus_testkit::traffic::{assert_split, tally};
use nimbus_testkit::{Nimbus, RouterClient, condition};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const WAIT: Duration = Duration::from_secs(120);
const RESOURCES: [&str; 6] = [
    "services",
    "configurations",
    "routes",
    "revisions",
    "podautoscalers",
    "ingresses",
];

/// The log directory of a revision's instances.
fn log_dir(nimbus: &Nimbus, revision: &str) -> std::path::PathBuf {
    nimbus.data_dir().join("logs/default").join(revision)
}

/// 30 Services deployed, then deleted with 30 concurrent DELETEs. Their instances ignore
/// SIGTERM, so stopping one takes the grace period and a Revision that went before its
/// instances stopped would be seen going while they still run. Guards against a cascade that
/// misses objects (a Revision, PodAutoscaler, Ingress, Route or Configuration left), a Revision
/// finalizer that lets the object go while its instances still run (or never goes), and
/// instance processes, cgroups (spares included) or log directories that outlive their
/// revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_thirty_services_at_once_leaves_nothing_behind() {
    if !host::have_cgroups() {
        return;
    }
    let nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let names: Vec<String> = (0..30).map(|i| format!("mass-{i:02}")).collect();
    let yaml: Vec<String> = names
        .iter()
        .map(|n| {
            let mut svc = manifest::test_app(n, n);
            let env = &mut svc["spec"]["template"]["spec"]["containers"][0]["env"];
            env.as_array_mut()
                .unwrap()
                .push(json!({"name": "IGNORE_SIGTERM", "value": "1"}));
            svc.to_string()
        })
        .collect();
    nimbus.apply_ok(&yaml.join("\n---\n"));
    for name in &names {
        nimbus.wait_service_ready(name, WAIT).await.unwrap();
    }
    assert!(
        host::parent_dir(nimbus.data_dir()).is_some(),
        "no cgroup parent {} for this server",
        host::cgroup_parent(nimbus.data_dir())
    );
    let before = wait_until("an instance per revision", WAIT, async || {
        let i = Instances::of(nimbus.data_dir());
        match i.instances().len() {
            30 => Ok(i),
            n => Err(format!("{n} instances")),
        }
    })
    .await;
    let revisions = nimbus.names("revisions").await;
    assert_eq!(revisions.len(), 30);
    for rev in &revisions {
        assert!(log_dir(&nimbus, rev).is_dir(), "no logs for {rev}");
    }

    let mut watch = nimbus.watch("revisions").await;
    delete_all(&nimbus, &names).await;
    let mut gone = Vec::new();
    while gone.len() < revisions.len() {
        let event = watch.next(WAIT).await.expect("a revision deleted in time");
        let name = event.object["metadata"]["name"]
            .as_str()
            .unwrap_or_default();
        if event.kind != "DELETED" {
            continue;
        }
        let running: Vec<u32> = before
            .instances()
            .into_iter()
            .filter(|(p, rev)| rev == name && p.alive())
            .map(|(p, _)| p.pid)
            .collect();
        assert!(running.is_empty(), "{name} went while {running:?} ran");
        gone.push(name.to_string());
    }
    wait_until("every object gone", WAIT, async || {
        let mut left = BTreeMap::new();
        for resource in RESOURCES {
            let names = nimbus.names(resource).await;
            if !names.is_empty() {
                left.insert(resource, names);
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    wait_until("nothing left on the host", WAIT, async || {
        leftovers(&nimbus, &before, &revisions)
    })
    .await;
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client.get(&host_of("mass-00"), "/").await.unwrap();
    assert_eq!(reply.status, 404, "{reply:?}");
}

/// DELETE every Service at once (concurrent requests); each must be accepted.
async fn delete_all(nimbus: &Nimbus, names: &[String]) {
    let deletes: Vec<_> = names
        .iter()
        .map(|n| {
            let url = nimbus.api_url() + &path("services", Some(n));
            let request = nimbus.api_client().delete(url);
            tokio::spawn(async move { request.send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for d in deletes {
        assert_eq!(d.await.unwrap().unwrap(), 200);
    }
}

/// What is left of the instances in `before` and of `revisions`' logs: processes, cgroups,
/// children of the server, log directories. `Err` describes them.
fn leftovers(nimbus: &Nimbus, before: &Instances, revisions: &[String]) -> Result<(), String> {
    let processes = before.alive();
    let cgroups: Vec<String> = Instances::of(nimbus.data_dir())
        .cgroups
        .iter()
        .map(|c| c.path.display().to_string())
        .collect();
    let children = host::children(nimbus.pid().expect("running"));
    let logs: Vec<&String> = revisions
        .iter()
        .filter(|r| log_dir(nimbus, r).exists())
        .collect();
    if processes.is_empty() && cgroups.is_empty() && children.is_empty() && logs.is_empty() {
        return Ok(());
    }
    Err(format!(
        "processes {processes:?}, cgroups {cgroups:?}, children {children:?}, logs of {logs:?}"
    ))
}

/// `status.desiredScale` of every PodAutoscaler.
async fn desired_scales(nimbus: &Nimbus) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for name in nimbus.names("podautoscalers").await {
        let pa = nimbus.must("podautoscalers", &name).await;
        out.insert(name, pa["status"]["desiredScale"].as_i64().unwrap_or(-1));
    }
    out
}

/// Wait until `revision`'s PodAutoscaler reports `desired`/`actual` scale.
async fn wait_scale(nimbus: &Nimbus, revision: &str, desired: i64, actual: i64) {
    wait_until(
        &format!("{revision} at {desired}/{actual}"),
        WAIT,
        async || {
            let pa = nimbus.must("podautoscalers", revision).await;
            let s = &pa["status"];
            match (s["desiredScale"].as_i64(), s["actualScale"].as_i64()) {
                (Some(d), Some(a)) if (d, a) == (desired, actual) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

/// Replace the template's annotations with `nimbus.dev/runtime: process` and `annotations`.
fn template_annotations(svc: &mut Value, annotations: Value) {
    let mut all = json!({"nimbus.dev/runtime": "process"});
    for (k, v) in annotations.as_object().unwrap() {
        all[k] = v.clone();
    }
    svc["spec"]["template"]["metadata"]["annotations"] = all;
}

/// A split (`roll-00001` 70% and idle at zero instances, `roll-00002` 30% with two) is being
/// served while `roll-00003` rolls out (slow to get ready) when `nimbus serve` is killed with
/// SIGKILL; it is started again on the same data directory. Guards against a restart that
/// loses or re-creates revisions, resets a PodAutoscaler to its initial scale (`roll-00001`
/// would get an instance again), forgets the routing (404s or another split), or leaves the
/// killed server's instances running, holding their ports and cgroups.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_server_killed_mid_rollout_resumes_it_and_leaves_no_orphans() {
    if !host::have_cgroups() {
        return;
    }
    let mut nimbus =
        Nimbus::start_with(Path::new(BIN), &["--autoscaler-tick", "250ms"]).expect("nimbus serve");
    let client = RouterClient::new(&nimbus.http_addr);
    let mut svc = manifest::test_app("roll", "a");
    template_annotations(
        &mut svc,
        json!({"autoscaling.knative.dev/window": "6s", "nimbus.dev/scale-to-zero-grace-period": "0s"}),
    );
    nimbus.deploy(&svc).await;
    manifest::set_message(&mut svc, "b");
    template_annotations(&mut svc, json!({"autoscaling.knative.dev/min-scale": "2"}));
    nimbus.deploy(&svc).await;
    svc["spec"]["traffic"] = json!([
        {"revisionName": "roll-00001", "percent": 70, "tag": "a"},
        {"revisionName": "roll-00002", "percent": 30, "tag": "b"},
    ]);
    nimbus.deploy(&svc).await;
    let split = [(hello("a"), 70), (hello("b"), 30)];
    let split: Vec<(&str, u32)> = split.iter().map(|(w, p)| (w.as_str(), *p)).collect();
    assert_split(&tally(&client, &host_of("roll"), "/", 1000).await, &split);
    wait_scale(&nimbus, "roll-00001", 0, 0).await;
    wait_scale(&nimbus, "roll-00002", 2, 2).await;

    // roll-00003 rolls out: its instance runs, but is not ready for a while (long enough that
    // the checks below see it not ready even on a loaded machine).
    svc["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "MESSAGE", "value": "c"}, {"name": "READY_DELAY_MS", "value": "20000"}]);
    svc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] =
        json!({"httpGet": {"path": "/ready"}});
    template_annotations(&mut svc, json!({}));
    nimbus.apply_ok(&svc.to_string());
    let before = wait_until("roll-00003 starting", WAIT, async || {
        let i = Instances::of(nimbus.data_dir());
        let revs: Vec<String> = i.instances().into_iter().map(|(_, r)| r).collect();
        let count = |r: &str| revs.iter().filter(|x| *x == r).count();
        match (
            count("roll-00001"),
            count("roll-00002"),
            count("roll-00003"),
        ) {
            (0, 2, 1) => Ok(i),
            other => Err(format!("instances of 1, 2, 3: {other:?}")),
        }
    })
    .await;
    let scales = wait_until("a PodAutoscaler per revision", WAIT, async || {
        let s = desired_scales(&nimbus).await;
        if s.len() == 3 && s.values().all(|d| *d >= 0) {
            Ok(s)
        } else {
            Err(format!("{s:?}"))
        }
    })
    .await;
    let revisions = nimbus.names("revisions").await;
    let rev3 = nimbus.must("revisions", "roll-00003").await;
    assert_ne!(
        condition(&rev3["status"], "Ready").0,
        "True",
        "roll-00003 is still rolling out"
    );

    println!(
        "killing the server with instances {:?} in cgroups {:?}",
        before.instances(),
        before.cgroups.iter().map(|c| &c.path).collect::<Vec<_>>()
    );
    nimbus.kill();
    let instances: Vec<Process> = before.instances().into_iter().map(|(p, _)| p).collect();
    assert!(
        instances.iter().all(Process::alive),
        "instances outlive a SIGKILLed server (nothing else kills them), so the next one must"
    );
    nimbus
        .restart()
        .expect("nimbus serve on the same data directory");
    let client = RouterClient::new(&nimbus.http_addr);
    let server = nimbus.pid().unwrap();
    // Every PodAutoscaler state from (close to) the start: a reset to the initial scale would
    // show here even if the revision went back to zero before the checks below.
    let mut autoscalers = nimbus.watch("podautoscalers").await;

    // Nothing of the killed server survives.
    before.wait_gone(WAIT).await;

    // The rollout resumes where it was.
    let rev3 = wait_until("roll-00003 ready", WAIT, async || {
        let r = nimbus.must("revisions", "roll-00003").await;
        let ready = condition(&r["status"], "Ready");
        if ready.0 == "True" {
            Ok(r)
        } else {
            Err(format!("{ready:?}"))
        }
    })
    .await;
    assert!(rev3["status"]["actualReplicas"].as_i64() >= Some(1));
    wait_scale(&nimbus, "roll-00002", 2, 2).await;
    assert_eq!(nimbus.names("revisions").await, revisions);
    assert_eq!(
        desired_scales(&nimbus).await,
        scales,
        "desired scales resumed, not reset"
    );
    for pa in autoscalers.drain() {
        let name = pa["metadata"]["name"].as_str().unwrap_or_default();
        let desired = pa["status"]["desiredScale"].as_i64();
        assert_eq!(
            desired,
            scales.get(name).copied(),
            "{name} since the restart: {pa:#}"
        );
    }
    let now = Instances::of(nimbus.data_dir());
    let strangers: Vec<u32> = now
        .processes()
        .into_iter()
        .filter(|p| !p.descends_from(server))
        .map(|p| p.pid)
        .collect();
    assert!(
        strangers.is_empty(),
        "processes in the server's cgroups that are not its own: {strangers:?}"
    );
    assert!(
        now.instances().iter().all(|(_, r)| r != "roll-00001"),
        "roll-00001 stays at zero"
    );
    for port in before.ports() {
        let holders: Vec<u32> = host::listeners(port)
            .into_iter()
            .filter(|pid| Process::of(*pid).is_none_or(|p| !p.descends_from(server)))
            .collect();
        assert!(
            holders.is_empty(),
            "port {port} of a killed server's instance is held by {holders:?}"
        );
    }

    // The router serves the same split, and each tag its revision.
    assert_split(&tally(&client, &host_of("roll"), "/", 1000).await, &split);
    for (tag, body) in [("a", hello("a")), ("b", hello("b"))] {
        let counts = tally(&client, &format!("{tag}-roll.default.localhost"), "/", 50).await;
        assert_split(&counts, &[(&body, 100)]);
    }
}
