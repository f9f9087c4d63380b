//! Container-image test support: the `nimbus-test-app` binary, a minimal root filesystem
//! holding it, an OCI image layout built from such a root filesystem, and a local
//! `docker-registry` on loopback. Never pulls anything from the internet.
//!
//! ```text
//! pub fn test_app_binary() -> PathBuf                       // built once per test process
//! pub fn test_rootfs(dir: &Path) -> io::Result<()>          // /app/test-app, /bin/{sh,cat,sleep,true}, libs, /etc, /tmp, /proc, /dev, /sys
//! pub fn is_root() -> bool
//! pub fn write_oci_layout(rootfs: &Path, layout: &Path, reference: &str, config: &serde_json::Value)
//!     -> io::Result<LayoutDigests>                          // one gzip layer; index.json gets ref.name = reference
//! pub fn have_tools(tools: &[&str]) -> bool                // false + "SKIPPED: …" (panics when $CI is set)
//! pub fn can_run_containers(tools: &[&str]) -> bool        // root and the tools, else the same
//! pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) -> anyhow::Result<()>
//! pub struct Registry { pub addr: String, .. }            // docker-registry on 127.0.0.1, killed on drop
//! impl Registry { pub fn start(htpasswd: Option<(&str, &str)>) -> anyhow::Result<Registry>;
//!                 pub fn push(&self, layout: &Path, reference: &str, repo_tag: &str, creds: Option<(&str, &str)>) -> anyhow::Result<()> }
//! pub struct EmptyRegistry { pub addr: String, .. }       // answers /v2/, and 404 MANIFEST_UNKNOWN to all else
//! ```

use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

/// The workspace root (two levels above this crate).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Build `nimbus-test-app` (debug) into `<workspace>/target/test-app` once per process and
/// return the binary's path. A separate target directory, because this runs inside
/// `cargo test`, which holds the lock on the main one.
pub fn test_app_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_package("nimbus-test-app")).clone()
}

/// The sample function (`nimbus-hello`), built like [`test_app_binary`], so tests that run it
/// never depend on what else `cargo test` happened to build.
pub fn hello_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_package("nimbus-hello")).clone()
}

/// Build the workspace package `package` (debug; its binary has the package's name) into
/// `<workspace>/target/test-app`.
fn build_package(package: &str) -> PathBuf {
    let root = workspace_root();
    let target_dir = root.join("target/test-app");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--quiet", "-p", package, "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .status()
        .expect("running cargo");
    assert!(status.success(), "building {package} failed");
    target_dir.join("debug").join(package)
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective uid).
pub fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Host programs copied into every test root filesystem, with their shared libraries.
const HOST_PROGRAMS: &[&str] = &["/bin/sh", "/bin/cat", "/bin/sleep", "/bin/true"];

/// Write a minimal root filesystem into `dir`: `/app/test-app`, `/bin/sh`, `/bin/cat`,
/// `/bin/sleep`, `/bin/true` from the host plus every shared library `ldd` lists for them (the
/// dynamic loader at its own path), `/etc/passwd` (root and `app`, uid 1000), `/etc/group`,
/// an empty `/tmp` (mode 1777) and empty `/proc`, `/dev`, `/sys`.
pub fn test_rootfs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let app = test_app_binary();
    copy_into(dir, &app, Path::new("/app/test-app"))?;
    for program in HOST_PROGRAMS {
        copy_into(dir, Path::new(program), Path::new(program))?;
    }
    let mut libs = shared_libraries(&app)?;
    for program in HOST_PROGRAMS {
        libs.extend(shared_libraries(Path::new(program))?);
    }
    libs.sort();
    libs.dedup();
    for lib in &libs {
        copy_into(dir, lib, lib)?;
    }
    std::fs::create_dir_all(dir.join("etc"))?;
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\napp:x:1000:\n")?;
    for empty in ["tmp", "proc", "dev", "sys"] {
        std::fs::create_dir_all(dir.join(empty))?;
    }
    std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
}

/// Copy host file `from` (following symlinks) to `inside` under `root`, keeping its mode.
fn copy_into(root: &Path, from: &Path, inside: &Path) -> io::Result<()> {
    let to = root.join(inside.strip_prefix("/").unwrap_or(inside));
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, &to).map(drop).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("copying {} to {}: {e}", from.display(), to.display()),
        )
    })
}

/// The absolute paths of the shared libraries `ldd` lists for `program`.
fn shared_libraries(program: &Path) -> io::Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(program).output()?;
    Ok(parse_ldd(&String::from_utf8_lossy(&out.stdout)))
}

/// Paths from `ldd` output: `name => /path (0x…)` and `/path (0x…)` lines; the vDSO (no
/// path) and "statically linked" yield nothing.
fn parse_ldd(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.trim(),
                None => line,
            };
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// The digests (`sha256:…`) of what [`write_oci_layout`] wrote, to find or tamper with them.
#[derive(Clone, Debug)]
pub struct LayoutDigests {
    pub manifest: String,
    pub config: String,
    pub layer: String,
}

impl LayoutDigests {
    /// The blob file of `digest` in `layout`.
    pub fn blob(layout: &Path, digest: &str) -> PathBuf {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }
}

/// Write an OCI image layout of `rootfs` into `layout`: one gzip layer, a config whose
/// `config` object is `config` (e.g. `{"Entrypoint": ["/app/test-app"], "Env": [...]}`),
/// a manifest, `oci-layout`, and `index.json` naming it `reference`
/// (`org.opencontainers.image.ref.name`, e.g. `hello:1`). An existing index.json gains
/// an entry, so one layout can hold several images.
pub fn write_oci_layout(
    rootfs: &Path,
    layout: &Path,
    reference: &str,
    config: &serde_json::Value,
) -> io::Result<LayoutDigests> {
    let tar = layer_tar(rootfs)?;
    let diff_id = sha256(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar)?;
    let layer = gz.finish()?;
    let config = serde_json::json!({
        "architecture": host_arch(),
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    });
    let config = serde_json::to_vec(&config)?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
    }))?;
    for blob in [&layer, &config, &manifest] {
        let path = LayoutDigests::blob(layout, &sha256(blob));
        std::fs::create_dir_all(path.parent().expect("blob paths have a parent"))?;
        std::fs::write(path, blob)?;
    }
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    add_to_index(layout, &manifest, reference)?;
    Ok(LayoutDigests {
        manifest: sha256(&manifest),
        config: sha256(&config),
        layer: sha256(&layer),
    })
}

/// The uncompressed layer: `rootfs` as it is (modes, owners, symlinks not followed).
fn layer_tar(rootfs: &Path) -> io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.append_dir_all(".", rootfs)?;
    builder.into_inner()
}

fn add_to_index(layout: &Path, manifest: &[u8], reference: &str) -> io::Result<()> {
    let path = layout.join("index.json");
    let mut index = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(_) => serde_json::json!({"schemaVersion": 2, "manifests": []}),
    };
    let mut entry = descriptor("application/vnd.oci.image.manifest.v1+json", manifest);
    entry["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": reference});
    index["manifests"]
        .as_array_mut()
        .ok_or_else(|| io::Error::other("index.json has no manifests array"))?
        .push(entry);
    std::fs::write(path, serde_json::to_vec(&index)?)
}

fn descriptor(media_type: &str, bytes: &[u8]) -> serde_json::Value {
    serde_json::json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The path of `tool` on `$PATH` (or in /usr/sbin, /sbin, where Debian puts runc).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Whether all `tools` are installed. If not, prints `SKIPPED: …` and returns false, so a
/// test can return early, unless `$CI` is set, in which case it panics: CI installs them.
/// Whether container tests can run here: as root, with `tools` installed (otherwise they skip
/// saying why, or fail under CI).
pub fn can_run_containers(tools: &[&str]) -> bool {
    if !is_root() {
        crate::skip("containers need root");
        return false;
    }
    have_tools(tools)
}

pub fn have_tools(tools: &[&str]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    crate::skip(&format!(
        "{} not installed (Debian packages docker-registry skopeo runc)",
        missing.join(", ")
    ));
    false
}

/// `skopeo copy --insecure-policy [extra…] from to`.
pub fn skopeo_copy(from: &str, to: &str, extra: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("skopeo")
        .args(["copy", "--insecure-policy", "--quiet"])
        .args(extra)
        .args([from, to])
        .output()
        .context("running skopeo")?;
    if !out.status.success() {
        bail!(
            "skopeo copy {from} {to} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The test app's image — [`test_rootfs`] (changed by `customize`, e.g. to add programs),
/// with image config `config` — imported into `nimbus` with `nimbus image import` as
/// `reference` (a Docker reference such as `net/app:1`). Returns the directory holding its
/// files, to keep until the test ends.
pub fn import_test_image(
    nimbus: &crate::Nimbus,
    reference: &str,
    config: &serde_json::Value,
    customize: impl FnOnce(&Path),
) -> tempfile::TempDir {
    const LAYOUT_REF: &str = "test.local/imported:1";
    let dir = tempfile::tempdir().expect("temporary directory");
    let rootfs = dir.path().join("rootfs");
    test_rootfs(&rootfs).expect("test rootfs");
    customize(&rootfs);
    let layout = dir.path().join("layout");
    write_oci_layout(&rootfs, &layout, LAYOUT_REF, config).expect("OCI layout");
    let archive = dir.path().join("image.tar");
    skopeo_copy(
        &format!("oci:{}:{LAYOUT_REF}", layout.display()),
        &format!("docker-archive:{}:{reference}", archive.display()),
        &[],
    )
    .expect("skopeo copy");
    nimbus.cli_ok(&["image", "import", archive.to_str().expect("UTF-8 path")]);
    dir
}

/// A Docker registry (Debian's `docker-registry`, distribution 2.x) on 127.0.0.1 with
/// storage in a temporary directory. Killed on drop.
pub struct Registry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Start a registry; with `htpasswd`, it requires that user and password (basic auth).
    pub fn start(htpasswd: Option<(&str, &str)>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        std::fs::write(&config, registry_config(dir.path(), &addr, htpasswd)?)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child =
            Command::new(find_tool("docker-registry").context("docker-registry is not installed")?)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting docker-registry")?;
        let mut registry = Self { addr, child, dir };
        registry.wait_up(Duration::from_secs(30))?;
        Ok(registry)
    }

    /// Poll `GET /v2/` until the registry answers (200, or 401 with auth).
    fn wait_up(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("docker-registry exited with {status}: {}", self.log());
            }
            if http_status(&self.addr, "/v2/").is_ok_and(|s| s == 200 || s == 401) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry not up on {} in {timeout:?}: {}",
                    self.addr,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The registry's storage directory (blobs under `docker/registry/v2/blobs`).
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// What the registry logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Push `reference` of OCI layout `layout` as `<addr>/<repo_tag>` with skopeo.
    pub fn push(
        &self,
        layout: &Path,
        reference: &str,
        repo_tag: &str,
        creds: Option<(&str, &str)>,
    ) -> anyhow::Result<()> {
        let from = format!("oci:{}:{reference}", layout.display());
        let to = format!("docker://{}/{repo_tag}", self.addr);
        let creds = creds.map(|(u, p)| format!("--dest-creds={u}:{p}"));
        let mut extra = vec!["--dest-tls-verify=false"];
        extra.extend(creds.as_deref());
        skopeo_copy(&from, &to, &extra)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry_config(
    dir: &Path,
    addr: &str,
    htpasswd: Option<(&str, &str)>,
) -> anyhow::Result<String> {
    let mut config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
         http:\n  addr: {addr}\n",
        dir.join("data").display()
    );
    if let Some((user, password)) = htpasswd {
        let hash = bcrypt::hash(password, 4)?;
        let file = dir.join("htpasswd");
        std::fs::write(&file, format!("{user}:{hash}\n"))?;
        config.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: nimbus-test\n    path: {}\n",
            file.display()
        ));
    }
    Ok(config)
}

/// A registry on 127.0.0.1 that holds no image: `GET /v2/` answers 200 and every other request
/// 404 with the distribution API's `MANIFEST_UNKNOWN` error, as a registry does for an image
/// that is not there. Needs no tools. Stopped on drop.
pub struct EmptyRegistry {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl EmptyRegistry {
    pub fn start() -> io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let _ = answer_empty(stream);
            }
        });
        Ok(Self { addr, stop })
    }
}

impl Drop for EmptyRegistry {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = std::net::TcpStream::connect(&self.addr);
    }
}

/// One request, one answer, then close.
fn answer_empty(mut stream: std::net::TcpStream) -> io::Result<()> {
    use std::io::BufRead as _;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = io::BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut header = String::new();
    while reader.read_line(&mut header)? > 2 {
        header.clear();
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = match path.trim_end_matches('/') {
        "/v2" => ("200 OK", "{}".to_string()),
        _ => (
            "404 Not Found",
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#
                .to_string(),
        ),
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n\
         Docker-Distribution-API-Version: registry/2.0\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The status code of `GET path` on `addr` (plain HTTP/1.1, one request).
fn http_status(addr: &str, path: &str) -> io::Result<u16> {
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    text.get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("not an HTTP response: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_lines_are_parsed() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(text),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2")
            ]
        );
        assert!(parse_ldd("\tstatically linked\n").is_empty());
    }

    #[test]
    fn rootfs_runs_the_app_and_shell() {
        let dir = tempfile::tempdir().unwrap();
        test_rootfs(dir.path()).unwrap();
        if !is_root() {
            crate::skip("chroot needs root");
            return;
        }
        let out = Command::new("chroot")
            .arg(dir.path())
            .args([
                "/bin/sh",
                "-c",
                "cat /etc/passwd && /bin/true && test -x /app/test-app",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("app:x:1000"));
    }
}
