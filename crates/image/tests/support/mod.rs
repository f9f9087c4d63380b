//! Fixtures for the image store's integration tests: an OCI layout of the test app built
//! on the spot, a store in a temporary directory, and checks that a failure stored nothing.

#![allow(dead_code)] // each test file uses its own subset

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nimbus_image::{ImageStore, Progress, StoreOptions};
use nimbus_testkit::image::{LayoutDigests, test_rootfs, write_oci_layout};

/// A temporary directory with `rootfs/`, `layout/` (holding `reference`) and `store/`.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub layout: PathBuf,
    pub digests: LayoutDigests,
}

impl Fixture {
    pub fn new(reference: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        test_rootfs(&rootfs).unwrap();
        let layout = dir.path().join("layout");
        let digests = write_oci_layout(&rootfs, &layout, reference, &app_config()).unwrap();
        Self {
            dir,
            layout,
            digests,
        }
    }

    pub fn store_root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn store(&self) -> ImageStore {
        self.store_with(StoreOptions::default())
    }

    pub fn store_with(&self, options: StoreOptions) -> ImageStore {
        ImageStore::open(self.store_root(), options).unwrap()
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The image config the fixture layouts carry.
pub fn app_config() -> serde_json::Value {
    serde_json::json!({
        "Entrypoint": ["/app/test-app"],
        "Cmd": ["serve"],
        "Env": ["PATH=/bin", "MESSAGE=from-image"],
        "WorkingDir": "/app",
        "User": "1000",
    })
}

/// Check the image config of the fixture came through.
pub fn assert_app_config(config: &nimbus_image::ImageConfig) {
    assert_eq!(config.entrypoint, vec!["/app/test-app"]);
    assert_eq!(config.cmd, vec!["serve"]);
    assert_eq!(config.env, vec!["PATH=/bin", "MESSAGE=from-image"]);
    assert_eq!(config.working_dir.as_deref(), Some("/app"));
    assert_eq!(config.user.as_deref(), Some("1000"));
}

/// Check an unpacked root filesystem holds the test app and a usable /tmp.
pub fn assert_rootfs(rootfs: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let app = std::fs::metadata(rootfs.join("app/test-app")).unwrap();
    assert!(
        app.permissions().mode() & 0o111 != 0,
        "the app is executable"
    );
    assert!(rootfs.join("bin/sh").is_file());
    let tmp = std::fs::metadata(rootfs.join("tmp")).unwrap();
    assert_eq!(tmp.permissions().mode() & 0o7777, 0o1777);
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("app:x:1000:1000"));
    if nimbus_testkit::image::is_root() {
        // The unpacked programs run: loader, libc and modes came through.
        let out = std::process::Command::new("chroot")
            .arg(rootfs)
            .args(["/bin/sh", "-c", "/bin/cat /etc/group && /bin/true"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

/// Assert the store at `root` holds nothing: no blob, reference, root filesystem or
/// leftover in tmp.
pub fn assert_nothing_stored(root: &Path) {
    for dir in ["blobs/sha256", "rootfs", "tmp"] {
        let entries: Vec<_> = std::fs::read_dir(root.join(dir))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(entries.is_empty(), "{dir} holds {entries:?}");
    }
    let refs = std::fs::read_to_string(root.join("refs.json")).unwrap_or_default();
    assert!(refs.is_empty() || refs.trim() == "{}", "refs.json: {refs}");
}

/// A [`Progress`] that keeps every message.
#[derive(Default)]
pub struct Recorder {
    pub messages: Mutex<Vec<String>>,
    pub layer_updates: Mutex<u64>,
}

impl Recorder {
    pub fn count(&self, needle: &str) -> usize {
        self.messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.contains(needle))
            .count()
    }
}

impl Progress for Recorder {
    fn layer(&self, _digest: &str, _done: u64, _total: Option<u64>) {
        *self.layer_updates.lock().unwrap() += 1;
    }

    fn message(&self, text: &str) {
        self.messages.lock().unwrap().push(text.to_string());
    }
}

/// Turn the fixture's layout into a multi-platform one: index.json gets a single entry,
/// `reference`, pointing at an image index that lists the fixture's manifest for this
/// machine (if `with_host`) and a copy of it for linux/s390x. Returns the index digest.
pub fn make_multi_platform(
    layout: &Path,
    digests: &LayoutDigests,
    reference: &str,
    with_host: bool,
) -> String {
    use nimbus_testkit::image::sha256;
    let read = |d: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(LayoutDigests::blob(layout, d)).unwrap()).unwrap()
    };
    let write = |v: &serde_json::Value| -> (String, usize) {
        let bytes = serde_json::to_vec(v).unwrap();
        let digest = sha256(&bytes);
        std::fs::write(LayoutDigests::blob(layout, &digest), &bytes).unwrap();
        (digest, bytes.len())
    };
    let mut config = read(&digests.config);
    config["architecture"] = "s390x".into();
    let (config_digest, config_size) = write(&config);
    let mut manifest = read(&digests.manifest);
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    let (other, other_size) = write(&manifest);
    let host_size = std::fs::metadata(LayoutDigests::blob(layout, &digests.manifest))
        .unwrap()
        .len();
    let entry = |digest: &str, size: u64, arch: &str| {
        serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"architecture": arch, "os": "linux"},
        })
    };
    let mut entries = vec![entry(&other, other_size as u64, "s390x")];
    if with_host {
        let arch = if cfg!(target_arch = "aarch64") {
            "arm64"
        } else {
            "amd64"
        };
        entries.push(entry(&digests.manifest, host_size, arch));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let (index_digest, index_size) = write(&index);
    let top = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": index_digest, "size": index_size,
        "annotations": {"org.opencontainers.image.ref.name": reference},
    }]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    index_digest
}
