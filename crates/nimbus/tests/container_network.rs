//! A network namespace per container, end to end with the real binary and runc (skipped,
//! saying why, without root, runc or skopeo, except in CI): two instances of a revision both
//! listen on the container port at addresses of their own and are served through the router;
//! a container cannot reach the server's loopback-only API port (the host's 127.0.0.1 is not
//! its loopback); with `nimbus.dev/host-network: "true"` it shares the host's network again;
//! with `--container-user-namespaces` its ids are an unprivileged range of the host's.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_testkit::image::import_test_image;
use nimbus_testkit::{Nimbus, RouterClient, manifest};

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

fn can_run() -> bool {
    nimbus_testkit::image::can_run_containers(&["runc", "skopeo", "bash"])
}

/// The test image plus bash (for `/dev/tcp`), imported into `nimbus` as `net/app:1`.
fn import_image(nimbus: &Nimbus) -> tempfile::TempDir {
    let config = serde_json::json!({
        "Entrypoint": ["/app/test-app"],
        "Env": ["PATH=/bin:/usr/bin"],
        "WorkingDir": "/app",
        "User": "app",
    });
    import_test_image(nimbus, "net/app:1", &config, |rootfs| {
        copy_program(rootfs, "/usr/bin/bash")
    })
}

/// Copy the host's `program` and the libraries `ldd` names for it into `rootfs`.
fn copy_program(rootfs: &Path, program: &str) {
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let libs = text.lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| path.to_owned())
    });
    for file in std::iter::once(program.to_owned()).chain(libs) {
        let to = rootfs.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&file, &to).unwrap();
    }
}

/// Apply a Service running the imported image with `scale` annotations and wait until it is
/// ready.
async fn deploy(nimbus: &Nimbus, name: &str, scale: &[(&str, &str)]) {
    nimbus.apply_ok(&manifest::service(name, scale, "", "image: net/app:1"));
    nimbus
        .wait_service_ready(name, Duration::from_secs(120))
        .await
        .unwrap();
}

fn host(name: &str) -> String {
    format!("{name}.default.localhost")
}

/// A value of `/env` (`NAME=value` lines).
fn var<'a>(env: &'a str, name: &str) -> Option<&'a str> {
    env.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_instances_share_the_container_port_at_their_own_addresses() {
    if !can_run() {
        return;
    }
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let _image = import_image(&nimbus);
    let scale = [
        ("autoscaling.knative.dev/min-scale", "2"),
        ("autoscaling.knative.dev/max-scale", "2"),
    ];
    deploy(&nimbus, "pair", &scale).await;
    let client = RouterClient::new(&nimbus.http_addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut hostnames = BTreeSet::new();
    while hostnames.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "only {hostnames:?} answered through the router"
        );
        let reply = client.get(&host("pair"), "/env").await.unwrap();
        if reply.status != 200 {
            continue;
        }
        assert_eq!(var(&reply.body, "PORT"), Some("8080"), "{}", reply.body);
        hostnames.insert(var(&reply.body, "HOSTNAME").unwrap_or_default().to_owned());
    }
    // Two live instances, each bound to 8080: only separate network namespaces allow that.
    assert_eq!(hostnames.len(), 2, "{hostnames:?}");
}

/// A Service whose container tries a TCP connection to `target` at start and says whether it
/// got through in its `/` answer (`MESSAGE`).
fn prober(name: &str, target: &str, annotations: &[(&str, &str)]) -> String {
    let (ip, port) = target.rsplit_once(':').unwrap();
    let script = format!(
        "if (exec 3<>/dev/tcp/{ip}/{port}) 2>/dev/null; then export MESSAGE=reached; \
         else export MESSAGE=unreachable; fi; exec /app/test-app"
    );
    let mut scale = vec![("autoscaling.knative.dev/min-scale", "1")];
    scale.extend_from_slice(annotations);
    let container = format!("image: net/app:1\ncommand: [/usr/bin/bash, -c, {script:?}]");
    manifest::service(name, &scale, "", &container)
}

async fn message(nimbus: &Nimbus, name: &str) -> String {
    nimbus
        .wait_service_ready(name, Duration::from_secs(120))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client.get(&host(name), "/").await.unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body.trim().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_container_cannot_reach_the_servers_loopback_unless_it_asks_for_the_host_network() {
    if !can_run() {
        return;
    }
    let nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let _image = import_image(&nimbus);
    assert!(
        nimbus.api_addr.starts_with("127.0.0.1:"),
        "{}",
        nimbus.api_addr
    );

    nimbus.apply_ok(&prober("isolated", &nimbus.api_addr, &[]));
    assert_eq!(
        message(&nimbus, "isolated").await,
        "hello from test-app: unreachable"
    );

    let host_network = [("nimbus.dev/host-network", "true")];
    nimbus.apply_ok(&prober("shared", &nimbus.api_addr, &host_network));
    assert_eq!(
        message(&nimbus, "shared").await,
        "hello from test-app: reached"
    );
}

/// The container addresses `pid` holds on the default bridge, per the shared records
/// (`/run/nimbus/ipam/nimbus0/<address>` holding `<pid> <start time> <veth>`).
fn addresses_held_by(pid: u32) -> Vec<(String, String)> {
    let dir = Path::new("/run/nimbus/ipam/nimbus0");
    let entries = std::fs::read_dir(dir).into_iter().flatten().flatten();
    entries
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path()).ok()?;
            let words: Vec<&str> = text.split_whitespace().collect();
            let name = entry.file_name().to_string_lossy().into_owned();
            (words.len() == 3 && words[0] == pid.to_string()).then(|| (name, words[2].to_owned()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_reclaims_the_addresses_a_crashed_one_held() {
    if !can_run() {
        return;
    }
    let mut nimbus = Nimbus::start(Path::new(BIN)).unwrap();
    let _image = import_image(&nimbus);
    let scale = [("autoscaling.knative.dev/min-scale", "1")];
    deploy(&nimbus, "crash", &scale).await;
    let old = nimbus.pid().unwrap();
    assert_eq!(addresses_held_by(old).len(), 1);

    nimbus.kill();
    assert_eq!(addresses_held_by(old).len(), 1, "a crash releases nothing");
    nimbus.restart().unwrap();
    nimbus
        .wait_service_ready("crash", Duration::from_secs(120))
        .await
        .unwrap();
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client
        .get_until(&host("crash"), "/", Duration::from_secs(60), |r| {
            r.status == 200
        })
        .await
        .unwrap();
    assert!(reply.body.contains("hello from test-app"), "{}", reply.body);
    assert_eq!(
        addresses_held_by(old),
        [],
        "the dead server's addresses are reclaimed"
    );
    let held = addresses_held_by(nimbus.pid().unwrap());
    assert_eq!(held.len(), 1, "{held:?}");
    let veth = &held[0].1;
    let link = std::process::Command::new("ip")
        .args(["link", "show", veth])
        .output()
        .unwrap();
    assert!(
        link.status.success(),
        "the new instance's veth {veth} exists"
    );
}

/// Issue #13: with `--container-user-namespaces`, a container's root is an unprivileged range
/// of host ids (the default base, 0x10000000), and it still serves through the router.
#[tokio::test(flavor = "multi_thread")]
async fn containers_run_in_user_namespaces_when_the_server_says_so() {
    if !can_run() {
        return;
    }
    let nimbus = Nimbus::start_with(Path::new(BIN), &["--container-user-namespaces"]).unwrap();
    let _image = import_image(&nimbus);
    let scale = [("autoscaling.knative.dev/min-scale", "1")];
    deploy(&nimbus, "mapped", &scale).await;
    let client = RouterClient::new(&nimbus.http_addr);
    let reply = client
        .get(&host("mapped"), "/file?/proc/self/uid_map")
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    let map: Vec<&str> = reply.body.split_whitespace().collect();
    assert_eq!(map, ["0", "268435456", "65536"], "{}", reply.body);
}
