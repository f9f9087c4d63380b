//! User namespaces against the real runc (as root; otherwise `SKIPPED: …`, and a failure when
//! `CI` is set): a container's root is root inside (`/proc/self/uid_map` shows the server's
//! range) and the range's first id outside (the host's view of its process), owns its `/`, and
//! still serves HTTP, on port 80 of a network namespace its user namespace owns; a volume's host files are readable when their mode lets anyone read them
//! and not otherwise, root or not; what it writes is stored with its mapped ids, the image
//! stays as it was, and cleanup leaves no mount. Ids the namespace lacks, the host's network and
//! a launcher without networks or overlays are refused.

mod support;

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;

use nimbus_runtime::volumes::Bind;
use nimbus_runtime_container::{HostIdRange, OciConfig, OciLauncher, UserNamespaces};
use nimbus_runtime_process::{LaunchContext, LaunchError, Launcher};
use support::*;

/// A range of this test process's own, so parallel runs do not share one.
fn range() -> HostIdRange {
    let slot = 0x2000 + std::process::id() % 0x1000;
    HostIdRange::new(slot * 0x1_0000).expect("a valid base")
}

/// `config` with user namespaces, container roots under the fixture's directory.
fn with_user_namespaces(fixture: &Fixture, mut config: OciConfig) -> OciConfig {
    config.user_namespaces = Some(UserNamespaces {
        range: range(),
        roots_dir: fixture.dir.path().join("roots"),
    });
    config
}

/// The pid on the host of container `id`'s first process, from `runc state`.
fn container_pid(state_root: &Path, id: &str) -> u32 {
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(state_root)
        .args(["state", id])
        .output()
        .expect("runc state");
    let state: serde_json::Value = serde_json::from_slice(&out.stdout).expect("state JSON");
    state["pid"].as_u64().expect("a pid") as u32
}

/// `uid_map`/`gid_map` text as its three numbers.
fn map_fields(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// A volume directory as the supervisor writes one: host root's, one file anyone may read and
/// one only the host's root may.
fn volume(dir: &Path) -> Bind {
    let host = dir.join("volume");
    std::fs::create_dir(&host).expect("volume dir");
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, mode) in [("public", 0o644), ("private", 0o600)] {
        let file = host.join(name);
        std::fs::write(&file, format!("{name} value\n")).expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    Bind {
        host,
        path: "/etc/volume".into(),
    }
}

#[tokio::test]
async fn root_inside_is_an_unprivileged_id_outside_and_still_serves() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let config = with_user_namespaces(&fixture, fixture.config());
    let mut spec = spec("userns-00001");
    spec.run_as_user = Some(0);
    // Below 1024: NET_BIND_SERVICE counts in a network namespace the user namespace owns.
    spec.container_port = Some(80);
    let launcher = fixture.launcher(config, &spec, fixture.image(image_config()));
    launcher
        .check()
        .expect("this host gives containers user namespaces");
    let (id, port) = (instance_id("userns"), free_port());
    let mut ctx = fixture.context(&id, port, None);
    ctx.mounts = vec![volume(fixture.dir.path())];
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    let base = range().base().to_string();

    // Inside: root, with the server's range as its map.
    let (status, body) = get(running.addr, "/contract").await.expect("/contract");
    assert_eq!(status, 200, "{body}");
    let facts: serde_json::Value = serde_json::from_str(&body).expect("contract JSON");
    assert_eq!(
        (facts["uid"].as_u64(), facts["gid"].as_u64()),
        (Some(0), Some(0))
    );
    for map in ["uid_map", "gid_map"] {
        let (code, text) = exec(
            &launcher,
            &spec,
            &ctx,
            &["/bin/cat", &format!("/proc/self/{map}")],
        );
        assert_eq!(code, 0);
        assert_eq!(
            map_fields(&text),
            ["0", base.as_str(), "65536"],
            "{map}: {text}"
        );
    }

    // Its network namespace is its own: sysfs shows its devices.
    let sysfs = ["/bin/cat", "/sys/class/net/eth0/ifindex"];
    assert_eq!(exec(&launcher, &spec, &ctx, &sysfs).0, 0, "eth0 in /sys");

    // Outside: the range's first id.
    let pid = container_pid(&launcher.config().state_root, &id);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let uid_line = format!("Uid:\t{base}\t{base}\t{base}\t{base}");
    assert!(status.lines().any(|l| l == uid_line), "{status}");
    let gid_line = format!("Gid:\t{base}\t{base}\t{base}\t{base}");
    assert!(status.lines().any(|l| l == gid_line), "{status}");

    // The image is seen through the mapping: root owns `/` and can write there; the file is
    // stored with the mapped id, beside the image, which is untouched.
    let write = [
        "/bin/sh",
        "-c",
        "echo x > /written && echo x > /app/written",
    ];
    assert_eq!(
        exec(&launcher, &spec, &ctx, &write).0,
        0,
        "root writes its own /"
    );
    let upper = ctx.scratch.join("bundle/upper");
    let written = std::fs::metadata(upper.join("written")).expect("written in the upper dir");
    assert_eq!(
        (written.uid(), written.gid()),
        (range().base(), range().base())
    );
    assert!(!fixture.rootfs.join("written").exists());
    assert_eq!(std::fs::metadata(&fixture.rootfs).expect("image").uid(), 0);

    // A volume's files are the host's: readable when anyone may read them, and not otherwise,
    // even by the container's root.
    let cat = |file: &str| exec(&launcher, &spec, &ctx, &["/bin/cat", file]);
    assert_eq!(cat("/etc/volume/public"), (0, "public value\n".to_owned()));
    assert_ne!(cat("/etc/volume/private").0, 0, "host root's 0600 file");

    let root = launcher.root_mount(&ctx);
    launcher.cleanup(&ctx).await;
    assert_eq!(running.exit_code().await, 137);
    assert!(!mounted_below(fixture.dir.path()), "a mount was left");
    assert!(!root.exists(), "the root's mount point was left");
    assert!(!ctx.scratch.join("bundle").exists(), "bundle left");
}

#[tokio::test]
async fn the_image_user_runs_as_its_mapped_id() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let config = with_user_namespaces(&fixture, fixture.config());
    let spec = spec("userns-app-00001");
    let launcher = fixture.launcher(config, &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("userns-app"), free_port());
    let ctx = fixture.context(&id, port, None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    let (_, status) = exec(&launcher, &spec, &ctx, &["/bin/cat", "/proc/self/status"]);
    assert!(
        status.contains("Uid:\t1000\t"),
        "the image's user `app`: {status}"
    );
    let pid = container_pid(&launcher.config().state_root, &id);
    let host = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let mapped = range().host_id(1000).expect("mapped");
    assert!(host.contains(&format!("Uid:\t{mapped}\t")), "{host}");
    launcher.cleanup(&ctx).await;
    running.exit_code().await;
    assert!(!mounted_below(fixture.dir.path()));
}

#[tokio::test]
async fn ids_outside_the_namespace_are_refused() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let config = with_user_namespaces(&fixture, fixture.config());
    let mut spec = spec("userns-big-00001");
    spec.run_as_user = Some(70_000);
    let launcher = fixture.launcher(config, &spec, fixture.image(image_config()));
    launcher.prepare(&spec).await.expect("prepare");
    let ctx = fixture.context(&instance_id("userns-big"), free_port(), None);
    let error = launcher.command(&spec, &ctx).expect_err("uid 70000");
    assert_eq!(error.reason, "CreateContainerConfigError");
    assert!(
        error.message.contains("the user id 70000"),
        "{}",
        error.message
    );
    assert!(!ctx.scratch.join("bundle").exists(), "nothing written");
    launcher.cleanup(&ctx).await;
}

/// A launcher with user namespaces for `spec`, whose image is an empty directory: enough for
/// what is refused before anything is made.
fn bare_launcher(
    dir: &Path,
    spec: &nimbus_runtime::InstanceSpec,
    tweak: impl FnOnce(&mut OciConfig),
) -> OciLauncher {
    let mut config = OciConfig::new(dir.join("runc"));
    config.user_namespaces = Some(UserNamespaces {
        range: range(),
        roots_dir: dir.join("roots"),
    });
    tweak(&mut config);
    let launcher = OciLauncher::without_store(config);
    let image = nimbus_image::Image {
        reference: REFERENCE.into(),
        digest: "sha256:0000".into(),
        config: image_config(),
        rootfs: dir.to_owned(),
    };
    launcher.with_image(spec.revision.clone(), REFERENCE, image);
    launcher
}

/// The error of starting `spec` with `launcher`, and of its startup check.
async fn refusals(
    launcher: &OciLauncher,
    spec: &nimbus_runtime::InstanceSpec,
    dir: &Path,
) -> (LaunchError, Option<String>) {
    launcher.prepare(spec).await.expect("prepare");
    let ctx = LaunchContext {
        id: "userns-refused-1".into(),
        port: 1,
        env: vec![],
        cgroup: None,
        scratch: dir.join("scratch"),
        mounts: vec![],
    };
    let error = launcher.command(spec, &ctx).expect_err("refused");
    assert!(!dir.join("scratch").exists(), "nothing written");
    (error, launcher.check().err().map(|e| e.to_string()))
}

#[tokio::test]
async fn what_user_namespaces_cannot_go_with_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut host = spec("userns-host-00001");
    host.security.host_network = true;
    let launcher = bare_launcher(dir.path(), &host, |_| {});
    let (error, _) = refusals(&launcher, &host, dir.path()).await;
    assert_eq!(error.reason, "CreateContainerConfigError");
    assert!(
        error.message.contains("nimbus.dev/host-network"),
        "{}",
        error.message
    );

    let plain = spec("userns-plain-00001");
    let launcher = bare_launcher(dir.path(), &plain, |c| c.network = None);
    let (error, check) = refusals(&launcher, &plain, dir.path()).await;
    assert_eq!(error.reason, "CreateContainerError");
    for message in [error.message, check.expect("refused at startup")] {
        assert!(
            message.contains("without --container-host-network"),
            "{message}"
        );
    }

    let launcher = bare_launcher(dir.path(), &plain, |c| c.overlay = false);
    let (error, check) = refusals(&launcher, &plain, dir.path()).await;
    for message in [error.message, check.expect("refused at startup")] {
        assert!(message.contains("turn overlays on"), "{message}");
    }
}
