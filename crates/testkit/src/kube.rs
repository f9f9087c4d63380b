//! A real Kubernetes cluster for Kubernetes-mode tests, and kubectl to drive it.
//!
//! The cluster is found, in this order: `NIMBUS_KUBECONFIG` (any cluster's kubeconfig); else
//! the one-node cluster `scripts/kube-cluster up` runs on this machine (its admin kubeconfig,
//! `scripts/kube-cluster kubeconfig`). Either must answer `/readyz`. kubectl is
//! `NIMBUS_KUBECTL`, else the kubectl the cluster script built at the cluster's version, else
//! `kubectl` on the PATH.
//!
//! ```text
//! pub fn kubeconfig() -> Option<PathBuf>                 // a reachable cluster's kubeconfig
//! pub fn kubectl_binary() -> PathBuf
//! pub fn have_kubectl() -> bool                        // false after skip() (fails under CI)
//! impl Cluster { pub fn find() -> Option<Cluster>        // None after skip() (fails under CI)
//!                pub fn kubectl(&self, args, stdin) -> Output; pub fn kubectl_ok(..) -> String
//!                pub fn namespace(&self, prefix) -> Namespace     // deleted on drop
//!                pub fn test_app_image(&self) -> &str; load_nimbus_image(&self, binary)
//!                pub fn load_rootfs_image(&self, name, rootfs, config)
//!                pub fn install_nimbus(&self, binary); pub fn wait_installed(&self)
//!                pub fn jsonpath(&self, ns, what, path) -> String
//!                pub fn wait_at_zero(&self, ns, deployment, selector) }
//! pub fn wait_for<T>(what, timeout, f: FnMut() -> Option<T>) -> T  // polls, panics at the deadline
//! ```

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A reachable cluster.
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    /// kubectl's discovery cache, this value's own: a CRD installed a moment ago is known
    /// at once (kubectl keeps the shared one for hours).
    cache: tempfile::TempDir,
}

/// A namespace made for one test, deleted (without waiting) on drop.
pub struct Namespace<'a> {
    cluster: &'a Cluster,
    pub name: String,
}

/// The repository's `scripts/kube-cluster`.
fn cluster_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kube-cluster")
}

/// One line of `scripts/kube-cluster ARG` (its `kubeconfig` path, its `env` exports).
fn cluster_script_output(arg: &str) -> Option<String> {
    let out = Command::new("bash")
        .arg(cluster_script())
        .arg(arg)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// kubectl: `NIMBUS_KUBECTL`, else the cluster script's, else `kubectl` on the PATH.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NIMBUS_KUBECTL") {
        return PathBuf::from(path);
    }
    let built = cluster_script_output("env").and_then(|env| {
        env.lines()
            .find_map(|l| l.strip_prefix("export NIMBUS_KUBECTL="))
            .map(PathBuf::from)
    });
    built
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kubectl"))
}

/// Whether [`kubectl_binary`] exists (a path, or a name on `PATH`); otherwise skips (fails
/// under CI).
pub fn have_kubectl() -> bool {
    let bin = kubectl_binary();
    let found = bin.is_file()
        || std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(&bin).is_file()));
    if !found {
        crate::skip("kubectl not found; set NIMBUS_KUBECTL to run this test");
    }
    found
}

/// The kubeconfig of a cluster that answers `/readyz` (see the module docs), or `None`.
pub fn kubeconfig() -> Option<PathBuf> {
    let path = match std::env::var_os("NIMBUS_KUBECONFIG") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(cluster_script_output("kubeconfig")?.trim()),
    };
    let cluster = Cluster::new(path);
    let ready = cluster.kubeconfig.is_file()
        && cluster
            .kubectl(&["get", "--raw", "/readyz", "--request-timeout=5s"], None)
            .status
            .success();
    ready.then_some(cluster.kubeconfig)
}

/// Poll `f` until it returns a value; panics naming `what` after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// === impl Cluster ===

impl Cluster {
    /// The cluster, or `None` after [`crate::skip`] says why (a failure under CI).
    pub fn find() -> Option<Self> {
        match kubeconfig() {
            Some(kubeconfig) => Some(Self::new(kubeconfig)),
            None => {
                crate::skip(
                    "no Kubernetes cluster: set NIMBUS_KUBECONFIG, or run `scripts/kube-cluster up` (as root)",
                );
                None
            }
        }
    }

    fn new(kubeconfig: PathBuf) -> Self {
        Self {
            kubeconfig,
            kubectl: kubectl_binary(),
            cache: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// `kubectl --kubeconfig <this> ARGS`, with `stdin` on its standard input.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.kubectl.display()));
        let input = stdin.unwrap_or("").to_string();
        let mut pipe = child.stdin.take().expect("stdin");
        std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        child.wait_with_output().expect("kubectl's output")
    }

    /// kubectl that must succeed; returns its standard output.
    pub fn kubectl_ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Import a directory into the cluster's containerd as the image `name`
    /// (`localhost/...:tag`; pods use it with `imagePullPolicy: Never`), with `config` as the
    /// image config (`{"Entrypoint": [...]}`), through `scripts/kube-cluster`.
    pub fn load_rootfs_image(&self, name: &str, rootfs: &Path, config: &serde_json::Value) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tar = dir.path().join("image.tar");
        let run = |args: &[&std::ffi::OsStr]| {
            let out = Command::new("bash")
                .arg(cluster_script())
                .args(args)
                .output()
                .expect("running scripts/kube-cluster");
            assert!(
                out.status.success(),
                "scripts/kube-cluster {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let config = config.to_string();
        run(&[
            "pack-rootfs".as_ref(),
            name.as_ref(),
            rootfs.as_os_str(),
            tar.as_os_str(),
            config.as_ref(),
        ]);
        run(&["load-image".as_ref(), tar.as_os_str()]);
    }

    /// `examples/test-app` as the image `localhost/nimbus/test-app:1` in the cluster, loaded
    /// once per test process: its runtime-contract report (`/contract`) and misbehaviours
    /// work in pods as they do under runc.
    pub fn test_app_image(&self) -> &'static str {
        static LOADED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        const NAME: &str = "localhost/nimbus/test-app:1";
        LOADED.get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            crate::image::test_rootfs(dir.path()).expect("the test-app root filesystem");
            let config = serde_json::json!({"Entrypoint": ["/app/test-app"], "WorkingDir": "/"});
            self.load_rootfs_image(NAME, dir.path(), &config);
        });
        NAME
    }

    /// `binary` (a `nimbus` built by this test run, `CARGO_BIN_EXE_nimbus`), stripped, as the
    /// image `nimbus install` deploys (`localhost/nimbus/nimbus:<version>`), through
    /// `scripts/nimbus-image --binary ... --load`; once per test process.
    pub fn load_nimbus_image(&self, binary: &Path) {
        static LOADED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
        LOADED.get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let stripped = dir.path().join("nimbus");
            let strip = Command::new("strip")
                .arg("-o")
                .arg(&stripped)
                .arg(binary)
                .status()
                .expect("running strip (binutils)");
            assert!(strip.success(), "strip -o {stripped:?} {binary:?} failed");
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/nimbus-image");
            let out = Command::new("bash")
                .arg(script)
                .arg("--binary")
                .arg(&stripped)
                .arg("--out")
                .arg(dir.path().join("nimbus-image.tar"))
                .arg("--load")
                .output()
                .expect("running scripts/nimbus-image");
            assert!(
                out.status.success(),
                "scripts/nimbus-image --load: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        });
    }

    /// `binary` as the Nimbus image, installed with `nimbus install --apply --host-network`
    /// (the operator and router on node ports: this cluster has no kube-proxy), both
    /// Deployments restarted onto it (pods of an earlier run keep the binary they started
    /// with) and rolled out.
    pub fn install_nimbus(&self, binary: &Path) {
        self.load_nimbus_image(binary);
        let out = Command::new(binary)
            .args(["install", "--apply", "--host-network", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .output()
            .expect("running nimbus install");
        assert!(
            out.status.success(),
            "nimbus install --apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let deployments = ["deployment/nimbus-operator", "deployment/nimbus-router"];
        let mut restart = vec!["rollout", "restart", "-n", "nimbus-system"];
        restart.extend(deployments);
        self.kubectl_ok(&restart, None);
        self.wait_installed();
    }

    /// `kubectl rollout status` of the operator and router Deployments.
    pub fn wait_installed(&self) {
        for deployment in ["deployment/nimbus-operator", "deployment/nimbus-router"] {
            self.kubectl_ok(
                &[
                    "rollout",
                    "status",
                    "-n",
                    "nimbus-system",
                    deployment,
                    "--timeout=180s",
                ],
                None,
            );
        }
    }

    /// `kubectl get -n NS WHAT... -o jsonpath=PATH` (empty when kubectl fails).
    pub fn jsonpath(&self, ns: &str, what: &[&str], path: &str) -> String {
        let mut args = vec!["get", "-n", ns];
        args.extend_from_slice(what);
        let path = format!("jsonpath={path}");
        args.extend_from_slice(&["-o", &path]);
        String::from_utf8_lossy(&self.kubectl(&args, None).stdout).into_owned()
    }

    /// Wait until `deployment` wants 0 replicas and no pod matching `selector` is left.
    pub fn wait_at_zero(&self, ns: &str, deployment: &str, selector: &str) {
        wait_for(
            &format!("{deployment} at zero"),
            Duration::from_secs(180),
            || {
                let replicas = self.jsonpath(ns, &["deployment", deployment], "{.spec.replicas}");
                let pods =
                    self.jsonpath(ns, &["pods", "-l", selector], "{.items[*].metadata.name}");
                (replicas == "0" && pods.is_empty()).then_some(())
            },
        );
    }

    /// A new namespace `<prefix>-<pid>-<n>`, deleted on drop.
    pub fn namespace(&self, prefix: &str) -> Namespace<'_> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("{prefix}-{}-{n}", std::process::id());
        self.kubectl_ok(&["create", "namespace", &name], None);
        Namespace {
            cluster: self,
            name,
        }
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        let _ = self
            .cluster
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}
