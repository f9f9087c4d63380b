//! The container side of the cold-start benchmark: whether runc containers can run here, an OCI
//! image of the sample binary, and the runc floor — Nimbus's own [`OciLauncher`] driven
//! directly, so the floor runs the exact bundle and `runc run` command an instance gets, with no
//! supervisor, router or autoscaler around it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_image::{ImageStore, StoreOptions};
use nimbus_runtime::{InstanceSpec, RevisionKey};
use nimbus_runtime_container::{OciConfig, OciLauncher};
use nimbus_runtime_process::{LaunchContext, Launcher};

use crate::{floor, http};

/// Why runc containers cannot run here, or `None` when they can.
pub fn unavailable() -> Option<String> {
    if !nimbus_testkit::image::is_root() {
        return Some("not running as root".into());
    }
    match Command::new("runc").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!("`runc --version` failed ({})", out.status)),
        Err(e) => Some(format!("runc is not installed ({e})")),
    }
}

/// Write an OCI image layout into `dir/layout` whose only layer is a minimal root filesystem:
/// `hello` at `/hello` (the entrypoint), the shared libraries `ldd` lists for it at their host
/// paths (the dynamic loader included), and empty `/proc`, `/dev`, `/sys`, `/etc`, `/tmp`.
pub fn write_image(hello: &Path, dir: &Path, reference: &str) -> Result<PathBuf, String> {
    let rootfs = dir.join("rootfs");
    copy_into(&rootfs, hello, Path::new("/hello"))?;
    for lib in shared_libraries(hello)? {
        copy_into(&rootfs, &lib, &lib)?;
    }
    for empty in ["proc", "dev", "sys", "etc", "tmp"] {
        std::fs::create_dir_all(rootfs.join(empty)).map_err(|e| e.to_string())?;
    }
    let layout = dir.join("layout");
    let config = serde_json::json!({"Entrypoint": ["/hello"]});
    nimbus_testkit::image::write_oci_layout(&rootfs, &layout, reference, &config)
        .map_err(|e| format!("writing the OCI layout: {e}"))?;
    Ok(layout)
}

/// The absolute paths in `ldd`'s output for `program` (the vDSO has none).
fn shared_libraries(program: &Path) -> Result<Vec<PathBuf>, String> {
    let out = Command::new("ldd")
        .arg(program)
        .output()
        .map_err(|e| format!("running ldd: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            let path = line.split_once("=>").map_or(line, |(_, rest)| rest).trim();
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// Copy host file `from` (following symlinks) to `inside` under `root`, keeping its mode.
fn copy_into(root: &Path, from: &Path, inside: &Path) -> Result<(), String> {
    let to = root.join(inside.strip_prefix("/").unwrap_or(inside));
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::copy(from, &to)
        .map(drop)
        .map_err(|e| format!("copying {} to {}: {e}", from.display(), to.display()))
}

/// One runc floor run: the time to build the bundle (overlay mount + config.json), and the
/// time from the start of that until the first response byte.
#[derive(Clone, Copy, Debug)]
pub struct RuncRun {
    pub bundle: Duration,
    pub total: Duration,
}

/// Nimbus's container launcher over the bench server's image store, with its own runc state
/// and scratch directories under `dir`.
pub struct RuncFloor {
    rt: tokio::runtime::Runtime,
    launcher: OciLauncher,
    spec: InstanceSpec,
    dir: PathBuf,
    runs: usize,
}

impl RuncFloor {
    /// A launcher for `reference` from the store at `store_dir`, prepared (image unpacked).
    pub fn new(store_dir: &Path, reference: &str, dir: &Path) -> Result<Self, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let store = ImageStore::open(store_dir, StoreOptions::default())
            .map_err(|e| format!("opening {}: {e}", store_dir.display()))?;
        let launcher = OciLauncher::new(Arc::new(store), OciConfig::new(dir.join("runc")));
        let spec = InstanceSpec {
            revision: RevisionKey::new("default", "runc-floor-00001"),
            runtime_class: "oci".into(),
            image: Some(reference.into()),
            ..Default::default()
        };
        rt.block_on(launcher.prepare(&spec))
            .map_err(|e| format!("preparing {reference}: {e}"))?;
        Ok(Self {
            rt,
            launcher,
            spec,
            dir: dir.to_owned(),
            runs: 0,
        })
    }

    /// Build a bundle, `runc run` it and poll until the first response byte; then delete the
    /// container and its bundle (not timed).
    pub fn run(&mut self) -> Result<RuncRun, String> {
        self.runs += 1;
        let port = http::free_port().map_err(|e| e.to_string())?;
        let ctx = self.context(port);
        let start = Instant::now();
        let result = self.start_and_poll(&ctx, start);
        self.rt.block_on(self.launcher.cleanup(&ctx));
        let _ = std::fs::remove_dir_all(&ctx.scratch);
        result
    }

    fn start_and_poll(&self, ctx: &LaunchContext, start: Instant) -> Result<RuncRun, String> {
        let mut cmd = self
            .launcher
            .command(&self.spec, ctx)
            .map_err(|e| format!("building the bundle: {e}"))?;
        let bundle = start.elapsed();
        let child = floor::quiet(&mut cmd)
            .spawn()
            .map_err(|e| format!("spawning runc: {e}"))?;
        let _runc = floor::KillOnDrop(child);
        let total = floor::poll_first_byte(ctx.port, start)?;
        Ok(RuncRun { bundle, total })
    }

    /// The context the supervisor would pass, minus a cgroup: runc then makes its default one.
    fn context(&self, port: u16) -> LaunchContext {
        let id = format!("runc-floor-{}-{}", std::process::id(), self.runs);
        LaunchContext {
            env: vec![
                ("PORT".into(), port.to_string()),
                ("K_SERVICE".into(), "runc-floor".into()),
                ("K_CONFIGURATION".into(), "runc-floor".into()),
                ("K_REVISION".into(), self.spec.revision.name.clone()),
            ],
            scratch: self.dir.join("instances").join(&id),
            id,
            port,
            cgroup: None,
            mounts: vec![],
        }
    }
}
