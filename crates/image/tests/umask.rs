//! Unpacking under the server's umask (077, issue #13): modes come from the image, and
//! directories the layers do not list get tar's 0755, so a container's non-root user can
//! still read its libraries. A separate test binary, since the umask is the process's.

use std::os::unix::fs::PermissionsExt as _;

#[test]
fn implicit_directories_are_0755_under_a_strict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("usr/lib/x86_64-linux-gnu/libgcc_s.so.1")
        .unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let layer = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(layer.path(), b.into_inner().unwrap()).unwrap();
    let root = tempfile::tempdir().unwrap();
    nimbus_image::apply_layer(root.path(), layer.path(), "layer").unwrap();
    let mode = |p: &str| {
        std::fs::metadata(root.path().join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("usr"), 0o755);
    assert_eq!(mode("usr/lib/x86_64-linux-gnu"), 0o755);
    assert_eq!(mode("usr/lib/x86_64-linux-gnu/libgcc_s.so.1"), 0o644);
}
