//! The launcher against the real runc (as root; otherwise these print `SKIPPED: …`, and fail
//! when `CI` is set): an image's program serves on the host's `$PORT`, the Knative runtime
//! contract holds inside, limits are the kubelet's, signals and exit statuses pass through,
//! and cleanup leaves no container, mount, bundle or cgroup behind.

mod support;

use nimbus_image::ImageConfig;
use nimbus_runtime::Resources;
use nimbus_runtime_process::Launcher;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use support::*;

const MIB: u64 = 1024 * 1024;

async fn contract(running: &Running) -> Value {
    let (status, body) = get(running.addr, "/contract")
        .await
        .expect("/contract answered");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("contract JSON")
}

/// Knative's runtime contract: /tmp, /dev, /proc/sys, resolv.conf.
fn assert_knative_contract(facts: &Value) {
    assert_eq!(facts["tmp_mode"], "1777");
    let dev = &facts["dev"];
    for name in ["null", "zero", "random", "urandom", "full", "tty"] {
        assert_eq!(dev[format!("/dev/{name}")], true, "/dev/{name}: {facts}");
    }
    for name in ["fd", "stdin", "stdout", "stderr"] {
        assert_eq!(dev[format!("/dev/{name}")], true, "/dev/{name}: {facts}");
    }
    assert_eq!(dev["/dev/console"], false);
    assert_eq!(facts["dev_fd_link"], "/proc/self/fd");
    assert_eq!(facts["proc_sys_writable"], false);
    assert_eq!(facts["resolv_conf"], true);
}

/// 128Mi memory, 1000m CPU limit, 125m CPU request and the default pids limit, as the
/// kubelet writes them (cgroup v2 or v1).
fn assert_kubelet_limits(cgroup: &Value) {
    let file = |path: &str| cgroup[path].as_str().unwrap_or_default().to_owned();
    if cgroup.get("/sys/fs/cgroup/memory.max").is_some() {
        assert_eq!(file("/sys/fs/cgroup/memory.max"), "134217728");
        assert_eq!(file("/sys/fs/cgroup/cpu.max"), "100000 100000");
        assert_eq!(file("/sys/fs/cgroup/cpu.weight"), "5");
        assert_eq!(file("/sys/fs/cgroup/pids.max"), "4096");
    } else {
        assert_eq!(
            file("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
            "134217728"
        );
        assert_eq!(file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), "100000");
        assert_eq!(file("/sys/fs/cgroup/cpu/cpu.cfs_period_us"), "100000");
        assert_eq!(file("/sys/fs/cgroup/cpu/cpu.shares"), "128");
        assert_eq!(file("/sys/fs/cgroup/pids/pids.max"), "4096");
    }
}

#[tokio::test]
async fn the_runtime_contract_holds_inside_a_container() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let cgroups = CgroupParent::new("contract");
    let mut spec = spec("contract-00001");
    spec.resources = Resources {
        memory_limit: Some(128 * MIB),
        cpu_limit_millis: Some(1000),
        cpu_request_millis: Some(125),
        ..Default::default()
    };
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("contract"), free_port());
    let ctx = fixture.context(&id, port, Some(cgroups.child("i1")));
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    running
        .wait_stdout(&format!("test-app listening on {}", running.addr.port()))
        .await;

    let facts = contract(&running).await;
    assert_eq!(facts["uid"], 1000, "the image's user `app`: {facts}");
    assert_eq!(facts["gid"], 1000);
    assert_eq!(facts["cwd"], "/app");
    assert_eq!(facts["hostname"], id.as_str());
    assert_knative_contract(&facts);
    assert_kubelet_limits(&facts["cgroup"]);
    // The limits are on the cgroup the supervisor named.
    let memory = cgroups
        .read("memory", "i1", "memory.limit_in_bytes")
        .or_else(|| cgroups.read("memory", "i1", "memory.max"));
    assert_eq!(memory.as_deref(), Some("134217728\n"));

    let (_, env) = get(running.addr, "/env").await.expect("/env");
    assert!(env.contains("FROM_IMAGE=yes"), "{env}");
    let ports: Vec<&str> = env.lines().filter(|l| l.starts_with("PORT=")).collect();
    assert_eq!(
        ports,
        [format!("PORT={}", running.addr.port())],
        "the instance's PORT wins: {env}"
    );
    assert!(env.contains("K_REVISION=hello-00001"), "{env}");
    assert!(env.contains("PATH=/bin"), "{env}");

    let (code, status) = exec(&launcher, &spec, &ctx, &["/bin/cat", "/proc/self/status"]);
    assert_eq!(code, 0);
    assert!(
        status.contains("Uid:\t1000\t"),
        "exec runs as the container's user: {status}"
    );

    // test-app is pid 1 without a SIGTERM handler: cleanup's `delete --force` kills it.
    launcher.cleanup(&ctx).await;
    assert_eq!(running.exit_code().await, 137);
    assert!(
        !fixture.dir.path().join("runc").join(&id).exists(),
        "runc state left"
    );
    assert!(!mounted_below(fixture.dir.path()), "a mount was left");
    assert!(!ctx.scratch.join("bundle").exists(), "bundle left");
    assert!(!cgroups.exists("i1"), "cgroup left");
}

#[tokio::test]
async fn run_as_user_and_group_override_the_image_user() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let mut spec = spec("runas-00001");
    spec.run_as_user = Some(4242);
    spec.run_as_group = Some(4343);
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("runas"), free_port());
    let ctx = fixture.context(&id, port, None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    let facts = contract(&running).await;
    assert_eq!(
        (facts["uid"].as_u64(), facts["gid"].as_u64()),
        (Some(4242), Some(4343))
    );
    launcher.cleanup(&ctx).await;
    running.exit_code().await;
}

#[tokio::test]
async fn sigterm_reaches_the_program_and_its_exit_status_is_runcs() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let mut spec = spec("term-00001");
    spec.command = vec!["/bin/sh".into(), "-c".into()];
    spec.args = vec![
        "trap 'echo bye; exit 3' TERM; echo started; echo to-stderr >&2; \
         while :; do sleep 1 & wait $!; done"
            .into(),
    ];
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let id = instance_id("term");
    let ctx = fixture.context(&id, free_port(), None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    running.wait_stdout("started").await;
    kill(Pid::from_raw(running.pid()), Signal::SIGTERM).expect("SIGTERM runc");
    assert_eq!(running.exit_code().await, 3, "{}", running.output());
    running.wait_stdout("bye").await;
    running.wait_stderr("to-stderr").await;
    launcher.cleanup(&ctx).await;
    assert!(!fixture.dir.path().join("runc").join(&id).exists());
    assert!(!mounted_below(fixture.dir.path()));
}

#[tokio::test]
async fn an_oom_kill_exits_137_and_its_counter_stays_until_cleanup() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let cgroups = CgroupParent::new("oom");
    let mut spec = spec("oom-00001");
    spec.resources.memory_limit = Some(64 * MIB);
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("oom"), free_port());
    let ctx = fixture.context(&id, port, Some(cgroups.child("i1")));
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    let _ = get(running.addr, "/alloc?mb=256").await;
    assert_eq!(running.exit_code().await, 137, "{}", running.output());
    let oom = cgroups
        .read("memory", "i1", "memory.oom_control")
        .or_else(|| cgroups.read("memory", "i1", "memory.events"))
        .expect("the stopped container's cgroup is kept until cleanup");
    assert!(oom.lines().any(|l| l == "oom_kill 1"), "{oom}");
    launcher.cleanup(&ctx).await;
    assert!(!cgroups.exists("i1"));
}

#[tokio::test]
async fn the_pids_limit_stops_a_fork_bomb() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let cgroups = CgroupParent::new("pids");
    let mut spec = spec("pids-00001");
    spec.resources.pids_limit = Some(24);
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("pids"), free_port());
    let ctx = fixture.context(&id, port, Some(cgroups.child("i1")));
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&running).await;
    let (_, body) = get(running.addr, "/forkbomb")
        .await
        .expect("/forkbomb answered");
    let spawned: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("spawned ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer {body:?}"));
    assert!(spawned < 24, "{body}");
    wait_hello(&running).await;
    launcher.cleanup(&ctx).await;
    running.exit_code().await;
}

#[tokio::test]
async fn a_leftover_container_with_the_same_id_is_replaced() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let spec = spec("leftover-00001");
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let (id, port) = (instance_id("leftover"), free_port());
    let ctx = fixture.context(&id, port, None);
    let mut first = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&first).await;
    // A crash of the runc process leaves the container running, its state and its mount.
    kill(Pid::from_raw(first.pid()), Signal::SIGKILL).expect("SIGKILL runc");
    first.child.wait().await.expect("reaped");
    assert!(
        get(first.addr, "/").await.is_some(),
        "the container outlives runc"
    );

    let mut second = Running::start(&launcher, &spec, &ctx).await;
    wait_hello(&second).await;
    launcher.cleanup(&ctx).await;
    second.exit_code().await;
    assert!(
        get(second.addr, "/").await.is_none(),
        "nothing serves after cleanup"
    );
    assert!(!mounted_below(fixture.dir.path()));
}

#[tokio::test]
async fn containers_never_write_to_the_image_rootfs() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let mut spec = spec("rootfs-00001");
    spec.run_as_user = Some(0); // so only the filesystem can refuse
    let write = ["/bin/sh", "-c", "echo x > /app/written"];
    let write_tmp = ["/bin/sh", "-c", "echo x > /tmp/written"];
    for overlay in [true, false] {
        let mut config = fixture.config();
        config.overlay = overlay;
        let launcher = fixture.launcher(config, &spec, fixture.image(image_config()));
        let (id, port) = (instance_id(&format!("rootfs-{overlay}")), free_port());
        let ctx = fixture.context(&id, port, None);
        let mut running = Running::start(&launcher, &spec, &ctx).await;
        wait_hello(&running).await;
        let (code, _) = exec(&launcher, &spec, &ctx, &write);
        assert_eq!(code == 0, overlay, "writing / with overlay={overlay}");
        assert_eq!(
            exec(&launcher, &spec, &ctx, &write_tmp).0,
            0,
            "/tmp is writable"
        );
        launcher.cleanup(&ctx).await;
        running.exit_code().await;
        assert!(
            !fixture.rootfs.join("app/written").exists(),
            "overlay={overlay}"
        );
        assert!(
            !fixture.rootfs.join("tmp/written").exists(),
            "overlay={overlay}"
        );
    }
}

#[tokio::test]
async fn an_image_without_a_program_needs_a_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = spec("nocmd-00001");
    let image = nimbus_image::Image {
        reference: REFERENCE.into(),
        digest: "sha256:0000".into(),
        config: ImageConfig::default(),
        rootfs: dir.path().to_owned(),
    };
    let launcher = nimbus_runtime_container::OciLauncher::without_store(
        nimbus_runtime_container::OciConfig::new(dir.path().join("runc")),
    );
    launcher.with_image(spec.revision.clone(), REFERENCE, image);
    let error = launcher.prepare(&spec).await.expect_err("no command");
    assert_eq!(error.reason, "NoCommand");
    assert!(
        error.message.contains("set `command` in the manifest"),
        "{}",
        error.message
    );
    let mut with_command = spec.clone();
    with_command.command = vec!["/bin/true".into()];
    launcher
        .prepare(&with_command)
        .await
        .expect("a command is enough");
}

#[tokio::test]
async fn an_unknown_image_user_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(rootfs.join("etc")).expect("etc");
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
    let spec = spec("nouser-00001");
    let config = ImageConfig {
        user: Some("ghost".into()),
        ..image_config()
    };
    let image = nimbus_image::Image {
        reference: REFERENCE.into(),
        digest: "sha256:0000".into(),
        config,
        rootfs,
    };
    let launcher = nimbus_runtime_container::OciLauncher::without_store(
        nimbus_runtime_container::OciConfig::new(dir.path().join("runc")),
    );
    launcher.with_image(spec.revision.clone(), REFERENCE, image);
    launcher.prepare(&spec).await.expect("prepare");
    let ctx = nimbus_runtime_process::LaunchContext {
        id: "nouser-1".into(),
        port: 1,
        env: vec![],
        cgroup: None,
        scratch: dir.path().join("scratch"),
        mounts: vec![],
    };
    let error = launcher.command(&spec, &ctx).expect_err("unknown user");
    assert_eq!(error.reason, "CreateContainerConfigError");
    assert!(error.message.contains("\"ghost\""), "{}", error.message);
    assert!(
        !dir.path().join("scratch/bundle").exists(),
        "nothing written"
    );
}

#[tokio::test]
async fn a_missing_program_fails_with_runcs_message_on_stderr() {
    if cannot_run().is_some() {
        return;
    }
    let fixture = Fixture::new();
    let mut spec = spec("missing-00001");
    spec.command = vec!["/app/not-there".into()];
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let id = instance_id("missing");
    let ctx = fixture.context(&id, free_port(), None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    assert_eq!(running.exit_code().await, 1, "{}", running.output());
    running
        .wait_stderr("stat /app/not-there: no such file or directory")
        .await;
    launcher.cleanup(&ctx).await;
    assert!(!fixture.dir.path().join("runc").join(&id).exists());
    assert!(!mounted_below(fixture.dir.path()));
}
