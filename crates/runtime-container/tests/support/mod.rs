//! Helpers for the runc tests: whether they can run here, a test image and launcher, an
//! instance started the way the supervisor starts it (stdin null, stdout/stderr piped), plain
//! HTTP/1.1 GETs on loopback polled with deadlines, and per-test cgroup parents removed on drop.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_image::{Image, ImageConfig};
use nimbus_runtime::{InstanceSpec, RevisionKey};
use nimbus_runtime_container::{OciConfig, OciLauncher};
use nimbus_runtime_process::{LaunchContext, Launcher};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub const REFERENCE: &str = "test.local/test-app:1";

/// `None` when runc containers can run here; otherwise why not. With `CI` set, a reason to
/// skip is a failure instead.
pub fn cannot_run() -> Option<String> {
    let reason = if !nimbus_testkit::image::is_root() {
        Some("not root".to_owned())
    } else if std::process::Command::new("runc")
        .arg("--version")
        .output()
        .map_or(true, |o| !o.status.success())
    {
        Some("runc is not installed".to_owned())
    } else {
        None
    };
    if let Some(why) = &reason {
        assert!(
            std::env::var_os("CI").is_none(),
            "runc tests cannot run in CI: {why}"
        );
        eprintln!("SKIPPED: {why}");
    }
    reason
}

/// The test image's config: test-app as ENTRYPOINT, user `app`, working dir /app.
pub fn image_config() -> ImageConfig {
    ImageConfig {
        entrypoint: vec!["/app/test-app".into()],
        cmd: vec![],
        env: vec!["PATH=/bin".into(), "FROM_IMAGE=yes".into(), "PORT=1".into()],
        working_dir: Some("/app".into()),
        user: Some("app".into()),
    }
}

/// A test directory holding an unpacked test image and runc's state.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let rootfs = dir.path().join("image/rootfs");
        nimbus_testkit::image::test_rootfs(&rootfs).expect("test rootfs");
        Self { dir, rootfs }
    }

    pub fn config(&self) -> OciConfig {
        let mut config = OciConfig::new(self.dir.path().join("runc"));
        config.runc = PathBuf::from("runc");
        config
    }

    pub fn image(&self, config: ImageConfig) -> Image {
        Image {
            reference: REFERENCE.into(),
            digest: "sha256:0000".into(),
            config,
            rootfs: self.rootfs.clone(),
        }
    }

    /// A launcher that knows `spec`'s revision runs `image`.
    pub fn launcher(&self, config: OciConfig, spec: &InstanceSpec, image: Image) -> OciLauncher {
        let launcher = OciLauncher::without_store(config);
        launcher.with_image(spec.revision.clone(), REFERENCE, image);
        launcher
    }

    /// The instance context the supervisor would pass.
    pub fn context(&self, id: &str, port: u16, cgroup: Option<String>) -> LaunchContext {
        LaunchContext {
            id: id.to_owned(),
            port,
            env: vec![
                ("PORT".into(), port.to_string()),
                ("K_REVISION".into(), "hello-00001".into()),
            ],
            cgroup,
            scratch: self.dir.path().join("instances").join(id),
            mounts: vec![],
        }
    }
}

pub fn spec(revision: &str) -> InstanceSpec {
    InstanceSpec {
        revision: RevisionKey::new("default", revision),
        runtime_class: "oci".into(),
        image: Some(REFERENCE.into()),
        ..Default::default()
    }
}

/// A unique instance id for this test process.
pub fn instance_id(test: &str) -> String {
    format!("nt-{}-{test}", std::process::id())
}

/// A free TCP port on the host.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// A started instance: the runc process and what it printed so far. Dropping it (say, when
/// an assertion failed before cleanup) deletes the container and unmounts its rootfs.
pub struct Running {
    /// Where the instance serves: its own address on port 8080, or loopback `ctx.port` when it
    /// shares the host's network.
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
    pub stdout: Arc<Mutex<String>>,
    pub stderr: Arc<Mutex<String>>,
    id: String,
    state_root: PathBuf,
    /// Where the container's root is mounted.
    root: PathBuf,
}

impl Running {
    /// Start `launcher`'s command for `ctx` as the supervisor does.
    pub async fn start(launcher: &OciLauncher, spec: &InstanceSpec, ctx: &LaunchContext) -> Self {
        launcher.prepare(spec).await.expect("prepare");
        let mut cmd = launcher.command(spec, ctx).expect("command");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = tokio::process::Command::from(cmd)
            .spawn()
            .expect("spawn runc");
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let addr = launcher
            .address(ctx)
            .unwrap_or_else(|| ([127, 0, 0, 1], ctx.port).into());
        Self {
            addr,
            child,
            stdout,
            stderr,
            id: ctx.id.clone(),
            state_root: launcher.config().state_root.clone(),
            root: launcher.root_mount(ctx),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id().expect("running") as i32
    }

    pub fn output(&self) -> String {
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        format!("stdout:\n{out}\nstderr:\n{err}")
    }

    /// Wait (up to 10 s) for the runc process to exit; its exit code.
    pub async fn exit_code(&mut self) -> i32 {
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("runc did not exit; {}", self.output()))
            .expect("wait");
        status
            .code()
            .unwrap_or_else(|| panic!("runc died of a signal: {status}"))
    }

    /// Poll until stdout contains `text` (deadline 10 s).
    pub async fn wait_stdout(&self, text: &str) {
        self.wait_for(&self.stdout, text).await;
    }

    /// Poll until stderr contains `text` (deadline 10 s).
    pub async fn wait_stderr(&self, text: &str) {
        self.wait_for(&self.stderr, text).await;
    }

    async fn wait_for(&self, stream: &Mutex<String>, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stream.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} in output; {}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.state_root.join(&self.id).exists() {
            let _ = std::process::Command::new("runc")
                .arg("--root")
                .arg(&self.state_root)
                .args(["delete", "--force", &self.id])
                .output();
        }
        if nimbus_runtime_container::is_mount_point(&self.root) {
            let _ = nix::mount::umount2(&self.root, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn collect(stream: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut sink = sink.lock().unwrap();
            sink.push_str(&line);
            sink.push('\n');
        }
    });
    text
}

/// GET `path` at `addr`: status code and body, or `None` if nothing answered.
pub async fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.ok()?;
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()?
}

/// Poll `/` until the instance says hello (deadline 10 s).
pub async fn wait_hello(running: &Running) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some((200, body)) = get(running.addr, "/").await {
            assert!(
                body.contains("hello from test-app"),
                "unexpected body {body:?}"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "instance never answered; {}",
            running.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Run `argv` in the container through the launcher's exec command: (exit code, stdout).
pub fn exec(
    launcher: &OciLauncher,
    spec: &InstanceSpec,
    ctx: &LaunchContext,
    argv: &[&str],
) -> (i32, String) {
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let out = launcher
        .exec(spec, ctx, &argv)
        .stdin(Stdio::null())
        .output()
        .expect("runc exec");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Whether anything is mounted at or below `dir`, per /proc/self/mountinfo.
pub fn mounted_below(dir: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let dir = dir.to_string_lossy();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| point.starts_with(&*dir))
}

/// A cgroup parent for one test (`nimbus-test-<pid>-<name>`), removed from every hierarchy on
/// drop.
pub struct CgroupParent {
    pub name: String,
}

impl CgroupParent {
    pub fn new(test: &str) -> Self {
        Self {
            name: format!("nimbus-test-{}-{test}", std::process::id()),
        }
    }

    /// An instance cgroup path under this parent.
    pub fn child(&self, leaf: &str) -> String {
        format!("{}/{leaf}", self.name)
    }

    /// `file` of instance cgroup `leaf` in `controller`'s hierarchy (v1) or the unified one.
    pub fn read(&self, controller: &str, leaf: &str, file: &str) -> Option<String> {
        let v1 = Path::new("/sys/fs/cgroup")
            .join(controller)
            .join(&self.name)
            .join(leaf);
        let v2 = Path::new("/sys/fs/cgroup").join(&self.name).join(leaf);
        std::fs::read_to_string(v1.join(file))
            .or_else(|_| std::fs::read_to_string(v2.join(file)))
            .ok()
    }

    /// Whether `leaf` still exists in any hierarchy.
    pub fn exists(&self, leaf: &str) -> bool {
        self.dirs().iter().any(|dir| dir.join(leaf).exists())
    }

    fn dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(&self.name)];
        if let Ok(entries) = std::fs::read_dir(root) {
            dirs.extend(entries.flatten().map(|e| e.path().join(&self.name)));
        }
        dirs.into_iter().filter(|d| d.is_dir()).collect()
    }
}

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for dir in self.dirs() {
            if let Ok(children) = std::fs::read_dir(&dir) {
                for child in children.flatten().filter(|c| c.path().is_dir()) {
                    let _ = std::fs::remove_dir(child.path());
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// Copy the host's `program` (an absolute path) and the shared libraries it needs into
/// `rootfs`, at the same paths.
pub fn add_host_program(rootfs: &Path, program: &str) {
    let out = std::process::Command::new("ldd")
        .arg(program)
        .output()
        .expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout);
    let libs = text.lines().filter_map(|line| {
        let path = line.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then(|| path.to_owned())
    });
    for file in std::iter::once(program.to_owned()).chain(libs) {
        let to = rootfs.join(file.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("a parent")).expect("mkdir");
        std::fs::copy(&file, &to).unwrap_or_else(|e| panic!("copying {file}: {e}"));
    }
}
