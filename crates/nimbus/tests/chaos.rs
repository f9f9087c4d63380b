//! Issue #13, chaos: the server killed with SIGKILL under load, again and again, loses no write
//! it acknowledged, leaves no process or cgroup of its own behind, and serves again after a
//! restart; a data directory whose file system fills up refuses writes with a clear error,
//! keeps serving reads and traffic, and holds an intact database afterwards. Needs root and
//! cgroups (instances are found through their cgroups; the full disk is a small tmpfs);
//! skipped without them, except in CI.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use nimbus_testkit::api::{path, wait_until};
use nimbus_testkit::host::{self, Instances};
use nimbus_testkit::manifest::{self, host_of};
use nimbus_testkit::{Nimbus, RouterClient};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");
const WAIT: Duration = Duration::from_secs(120);
/// Clients sending requests through the router while the server is killed.
const LOAD_CLIENTS: usize = 8;

/// A Route named `name` sending everything to the `web` Configuration: a write that starts
/// no instance.
fn route(name: &str) -> Value {
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Route",
        "metadata": {"name": name},
        "spec": {"traffic": [{"configurationName": "web", "percent": 100}]},
    })
}

/// An API client that never panics: a killed server is expected here.
struct Api {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl Api {
    fn of(nimbus: &Nimbus) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            url: nimbus.api_url(),
            token: nimbus.token.clone(),
        }
    }

    /// POST an object; the status code, or `None` when no answer came.
    async fn create(&self, resource: &str, object: &Value) -> Option<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{}", self.url, path(resource, None)))
            .bearer_auth(&self.token)
            .json(object)
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Some((status, body))
    }
}

/// GET loops through the router until `stop`; counts the 200s.
fn start_load(
    nimbus: &Nimbus,
    stop: &Arc<AtomicBool>,
) -> (Arc<AtomicUsize>, Vec<tokio::task::JoinHandle<()>>) {
    let ok = Arc::new(AtomicUsize::new(0));
    let tasks = (0..LOAD_CLIENTS)
        .map(|_| {
            let (client, stop, ok) = (
                RouterClient::new(&nimbus.http_addr),
                stop.clone(),
                ok.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&host_of("web"), "/").await {
                        Ok(reply) if reply.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            })
        })
        .collect();
    (ok, tasks)
}

/// The database's own consistency check, on a stopped server's data directory.
fn integrity(data_dir: &Path) -> String {
    let db = rusqlite::Connection::open(data_dir.join("nimbus.db")).unwrap();
    db.query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap()
}

/// Three times: load through the router and a stream of API writes, SIGKILL in the middle,
/// restart. Every acknowledged write is there after each restart, the killed server's
/// instances and cgroups are gone, a new instance serves, and the database checks out.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_loses_no_acknowledged_write_and_leaves_no_orphans() {
    if !host::have_cgroups() {
        return;
    }
    let mut nimbus = Nimbus::start(Path::new(BIN)).expect("nimbus serve");
    let mut web = manifest::test_app("web", "a");
    manifest::annotate(&mut web, "autoscaling.knative.dev/min-scale", "1");
    nimbus.deploy(&web).await;
    let mut acknowledged: Vec<String> = Vec::new();
    // Kill after these many acknowledged writes of the round, so the kill lands mid-stream.
    for (round, writes_before_kill) in [5usize, 40, 120].into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let (served, load) = start_load(&nimbus, &stop);
        let api = Arc::new(Api::of(&nimbus));
        let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let writer = {
            let (api, acked, stop) = (api.clone(), acked.clone(), stop.clone());
            tokio::spawn(async move {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("w-{round}-{i}");
                    match api.create("routes", &route(&name)).await {
                        Some((201, _)) => acked.lock().unwrap().push(name),
                        Some((status, body)) => panic!("POST {name}: {status} {body}"),
                        None => break, // the server is gone
                    }
                }
            })
        };
        wait_until("writes acknowledged", WAIT, async || {
            let n = acked.lock().unwrap().len();
            if n >= writes_before_kill && served.load(Ordering::Relaxed) > 0 {
                Ok(())
            } else {
                Err(format!(
                    "{n} writes, {} requests served",
                    served.load(Ordering::Relaxed)
                ))
            }
        })
        .await;
        let before = Instances::of(nimbus.data_dir());
        assert!(!before.instances().is_empty(), "web has an instance");
        nimbus.kill();
        stop.store(true, Ordering::Relaxed);
        writer.await.unwrap();
        for task in load {
            task.await.unwrap();
        }
        acknowledged.extend(acked.lock().unwrap().drain(..));
        println!(
            "round {round}: killed after {} acknowledged writes, {} requests served",
            acknowledged.len(),
            served.load(Ordering::Relaxed)
        );

        nimbus
            .restart()
            .expect("nimbus serve on the same data directory");
        before.wait_gone(WAIT).await;
        let routes = nimbus.names("routes").await;
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|n| !routes.contains(n))
            .collect();
        assert!(lost.is_empty(), "acknowledged and lost: {lost:?}");
        let client = RouterClient::new(&nimbus.http_addr);
        client
            .get_until(&host_of("web"), "/", WAIT, |r| r.status == 200)
            .await
            .expect("the router serves web again");
        let after = Instances::of(nimbus.data_dir());
        let old: Vec<u32> = before.processes().iter().map(|p| p.pid).collect();
        assert!(
            after.instances().iter().any(|(p, _)| !old.contains(&p.pid)),
            "a new instance of web runs"
        );
    }
    nimbus.stop();
    assert_eq!(integrity(nimbus.data_dir()), "ok");
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs at {}", at.display());
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fill the file system of `dir` with one file until it refuses more.
fn fill(file: &Path) {
    use std::io::Write;
    let mut out = std::fs::File::create(file).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match out.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ENOSPC as i32) => break,
            Err(e) => panic!("filling {}: {e}", file.display()),
        }
    }
    // Smaller writes take what room is left between the chunks.
    while out.write(&[0u8; 512]).is_ok_and(|n| n > 0) {}
}

/// A data directory on a 16 MiB tmpfs is filled to the last byte while a service runs:
/// writes are refused with 507 and a message that says what to do, nothing half-written
/// appears, reads and the router keep working, and once space is freed writes succeed again
/// and a restarted server finds exactly what was acknowledged in an intact database.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_data_directory_refuses_writes_clearly_and_corrupts_nothing() {
    if !nimbus_testkit::image::is_root() {
        nimbus_testkit::skip("mounting a small file system needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let _tmpfs = Tmpfs::mount(&data, "16m");
    let mut nimbus = Nimbus::start_in(Path::new(BIN), &data, &[]).expect("nimbus serve");
    let mut web = manifest::test_app("web", "a");
    manifest::annotate(&mut web, "autoscaling.knative.dev/min-scale", "1");
    nimbus.deploy(&web).await;
    let api = Api::of(&nimbus);
    assert_eq!(api.create("routes", &route("before")).await.unwrap().0, 201);

    let filler = data.join("filler");
    fill(&filler);
    // Writes may still land in room SQLite holds already (its write-ahead log is reused after
    // each checkpoint); they go on until one needs a new page of the file system.
    let mut refused = Vec::new();
    for i in 0..5000 {
        let name = format!("full-{i}");
        let (status, body) = api
            .create("routes", &route(&name))
            .await
            .expect("an answer");
        match status {
            201 => {}
            507 => {
                let message = body["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("full") && message.contains("free space"),
                    "{body}"
                );
                refused.push(name);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("POST {name} on a full disk: {other} {body}"),
        }
    }
    assert!(!refused.is_empty(), "a full disk refused no write");
    let routes = nimbus.names("routes").await;
    for name in &refused {
        assert!(!routes.contains(name), "{name} was refused but exists");
    }
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client.get(&host_of("web"), "/").await.unwrap();
    assert_eq!(
        reply.status, 200,
        "traffic is served on a full disk: {}",
        reply.body
    );

    for entry in std::fs::read_dir(&data).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("filler") {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let (status, body) = api.create("routes", &route("after")).await.unwrap();
    assert_eq!(status, 201, "{body}");
    nimbus.stop();
    assert_eq!(integrity(&data), "ok");
    nimbus
        .restart()
        .expect("nimbus serve after the disk was full");
    let routes = nimbus.names("routes").await;
    for name in ["before", "after"] {
        assert!(routes.contains(&name.to_owned()), "{name}: {routes:?}");
    }
    for name in &refused {
        assert!(
            !routes.contains(name),
            "{name} was refused but exists after a restart"
        );
    }
    nimbus
        .wait_service_ready("web", WAIT)
        .await
        .expect("web serves after a restart");
}
