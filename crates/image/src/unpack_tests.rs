//! Unit tests of layer application: file kinds, whiteouts, and hostile layers.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use tar::EntryType;

use super::*;

/// A tar built entry by entry, with names written raw (so hostile ones are possible).
struct Tar(tar::Builder<Vec<u8>>);

impl Tar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }

    fn add(
        mut self,
        name: &str,
        kind: EntryType,
        link: Option<&str>,
        data: &[u8],
        mode: u32,
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        self.0.append(&h, data).unwrap();
        self
    }

    fn file(self, name: &str, data: &str) -> Self {
        self.add(name, EntryType::Regular, None, data.as_bytes(), 0o644)
    }

    fn dir(self, name: &str) -> Self {
        self.add(name, EntryType::Directory, None, b"", 0o755)
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        self.add(name, EntryType::Symlink, Some(target), b"", 0o777)
    }

    fn bytes(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

fn apply(root: &Path, tar: Tar) -> Result<Stats, Fault> {
    apply_stream(root, std::io::Cursor::new(tar.bytes()))
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path)).unwrap()
}

#[test]
fn files_dirs_links_and_modes() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let tar = Tar::new()
        .dir("./etc/")
        .add("bin/run", EntryType::Regular, None, b"#!", 0o4755)
        .file("etc/passwd", "root")
        .symlink("etc/link", "/etc/passwd")
        .add("etc/hard", EntryType::Link, Some("etc/passwd"), b"", 0o644)
        .add("dev/null", EntryType::Char, None, b"", 0o666);
    let stats = apply(r, tar).unwrap();
    assert_eq!(stats.skipped, 1);
    assert_eq!(read(r, "etc/passwd"), "root");
    assert_eq!(read(r, "etc/hard"), "root");
    assert_eq!(
        std::fs::read_link(r.join("etc/link")).unwrap(),
        Path::new("/etc/passwd")
    );
    let meta = std::fs::metadata(r.join("bin/run")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(meta.mtime(), 1_600_000_000);
    if nimbus_testkit::image::is_root() {
        assert_eq!((meta.uid(), meta.gid()), (1000, 1000));
    }
    assert!(!r.join("dev/null").exists());
}

#[test]
fn whiteouts_remove_lower_entries() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    apply(
        r,
        Tar::new()
            .file("a/keep", "1")
            .file("a/gone", "2")
            .file("b/x", "3"),
    )
    .unwrap();
    apply(
        r,
        Tar::new()
            .file("a/.wh.gone", "")
            .file("b/new", "4")
            .file("b/.wh..wh..opq", ""),
    )
    .unwrap();
    assert_eq!(read(r, "a/keep"), "1");
    assert!(!r.join("a/gone").exists());
    assert!(!r.join("a/.wh.gone").exists());
    assert!(
        !r.join("b/x").exists(),
        "opaque whiteout clears lower entries"
    );
    assert_eq!(
        read(r, "b/new"),
        "4",
        "opaque whiteout keeps its own layer's entries"
    );
}

#[test]
fn whiteout_removes_a_directory_tree() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    apply(r, Tar::new().file("d/sub/f", "1")).unwrap();
    apply(r, Tar::new().file(".wh.d", "")).unwrap();
    assert!(!r.join("d").exists());
}

#[test]
fn escaping_paths_are_refused() {
    for name in ["../evil", "a/../../evil", "/abs"] {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("root");
        std::fs::create_dir(&inner).unwrap();
        let err = apply(&inner, Tar::new().file(name, "x")).unwrap_err();
        assert!(matches!(err, Fault::Corrupt(_)), "{name}: {err:?}");
        assert!(!root.path().join("evil").exists());
    }
}

#[test]
fn symlinks_cannot_carry_writes_outside() {
    let outside = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let out = outside.path().to_str().unwrap().to_string();
    let up = "../../../../../../../../..".to_string() + &out;
    apply(
        r,
        Tar::new()
            .symlink("abs", &out)
            .symlink("rel", &up)
            .symlink("file", &(out.clone() + "/f")),
    )
    .unwrap();
    apply(
        r,
        Tar::new()
            .file("abs/pwned", "x")
            .file("rel/pwned2", "y")
            .file("file", "z"),
    )
    .unwrap();
    let inside = out.trim_start_matches('/');
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert_eq!(
        read(r, &format!("{inside}/pwned")),
        "x",
        "followed inside the root instead"
    );
    assert_eq!(read(r, &format!("{inside}/pwned2")), "y");
    assert_eq!(
        read(r, "file"),
        "z",
        "the symlink was replaced, not written through"
    );
}

#[test]
fn hard_links_stay_inside() {
    let root = tempfile::tempdir().unwrap();
    let err = apply(
        root.path(),
        Tar::new().add("h", EntryType::Link, Some("../../etc/passwd"), b"", 0o644),
    )
    .unwrap_err();
    assert!(matches!(err, Fault::Corrupt(_)), "{err:?}");
    let err = apply(
        root.path(),
        Tar::new().add("h", EntryType::Link, Some("missing"), b"", 0o644),
    )
    .unwrap_err();
    assert!(matches!(err, Fault::Corrupt(_)), "{err:?}");
}

#[test]
fn symlink_loops_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    apply(r, Tar::new().symlink("a", "b").symlink("b", "a")).unwrap();
    let err = apply(r, Tar::new().file("a/x", "1")).unwrap_err();
    assert!(matches!(err, Fault::Corrupt(_)), "{err:?}");
}

#[test]
fn gzip_layers_are_read_and_garbage_is_corrupt() {
    let root = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&Tar::new().file("hello", "hi").bytes())
        .unwrap();
    let bytes = gz.finish().unwrap();
    apply_stream(root.path(), std::io::Cursor::new(bytes.clone())).unwrap();
    assert_eq!(read(root.path(), "hello"), "hi");

    let truncated = &bytes[..bytes.len() / 2];
    let err = apply_stream(root.path(), truncated).unwrap_err();
    assert!(matches!(err, Fault::Corrupt(_)), "{err:?}");
    let err = apply_stream(
        root.path(),
        &b"this is not a tar at all, not even close......"[..].repeat(20)[..],
    )
    .unwrap_err();
    assert!(matches!(err, Fault::Corrupt(_)), "{err:?}");
}

#[test]
fn zstd_is_unsupported() {
    let root = tempfile::tempdir().unwrap();
    let err = apply_stream(root.path(), &[0x28, 0xb5, 0x2f, 0xfd, 0, 0][..]).unwrap_err();
    assert!(matches!(err, Fault::Unsupported(_)), "{err:?}");
    assert_eq!(err.into_error("layer").reason(), "UnsupportedImage");
}

/// Issue #13, 1: a directory's mode is set at the end of its layer; a later entry of the same
/// layer that turned the directory into a symlink to a host file must not carry the chmod
/// there (seen: a 0600 host file became 4777).
#[test]
fn a_directory_replaced_by_a_symlink_does_not_carry_its_mode_out() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, "s").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let tar = Tar::new()
        .add("d/", EntryType::Directory, None, b"", 0o4777)
        .symlink("d", secret.to_str().unwrap())
        .add("e/", EntryType::Directory, None, b"", 0o4777)
        .symlink(
            "e",
            &format!("../../../../../../../..{}", outside.path().display()),
        );
    let before = std::fs::metadata(outside.path())
        .unwrap()
        .permissions()
        .mode();
    apply(r, tar).unwrap();
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600, "the host file's mode is untouched");
    let after = std::fs::metadata(outside.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(after, before, "the host directory's mode is untouched");
    assert_eq!(
        std::fs::read_link(r.join("d")).unwrap(),
        secret,
        "the symlink is what the layer left"
    );
}

/// Issue #13, 2: whiteouts naming `.`, `..` or nothing would delete the directory that holds
/// them, or the one above the root.
#[test]
fn whiteouts_of_dot_names_are_refused() {
    for name in [".wh..", ".wh...", "a/.wh..", "a/.wh..."] {
        let outer = tempfile::tempdir().unwrap();
        let sibling = outer.path().join("sibling");
        std::fs::write(&sibling, "kept").unwrap();
        let root = outer.path().join("root");
        std::fs::create_dir(&root).unwrap();
        apply(&root, Tar::new().file("a/kept", "1")).unwrap();
        let err = apply(&root, Tar::new().file(name, "")).unwrap_err();
        assert!(matches!(err, Fault::Corrupt(_)), "{name}: {err:?}");
        assert!(sibling.exists(), "{name}: the root's sibling is kept");
        assert_eq!(read(&root, "a/kept"), "1", "{name}");
    }
}

/// The mode of a directory is set through a descriptor resolved inside the root: a
/// directory reached through a symlink in the root gets it, the host's never.
#[test]
fn directory_modes_apply_inside_the_root_only() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    apply(r, Tar::new().dir("real").symlink("etc", "/real")).unwrap();
    apply(
        r,
        Tar::new().add("etc/sub/", EntryType::Directory, None, b"", 0o700),
    )
    .unwrap();
    let mode = std::fs::metadata(r.join("real/sub"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o700);
}

/// A uid of u32::MAX (chown's "unchanged") is taken as root's; nothing panics.
#[test]
fn owner_ids_out_of_range_are_roots() {
    let root = tempfile::tempdir().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_path("f").unwrap();
    h.set_entry_type(EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(u64::from(u32::MAX));
    h.set_gid(u64::from(u32::MAX) + 5);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"x"[..]).unwrap();
    assert_eq!(
        owner(&h),
        (0, 0),
        "out of range and \"unchanged\" ids are root's"
    );
    let bytes = b.into_inner().unwrap();
    apply_stream(root.path(), std::io::Cursor::new(bytes)).unwrap();
    if nimbus_testkit::image::is_root() {
        let meta = std::fs::metadata(root.path().join("f")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (0, 0));
    }
}
