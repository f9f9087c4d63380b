//! Importing images from files: OCI layouts (directory and tar), `docker save` archives
//! made by skopeo (plain and gzip), and the failures that must leave the store untouched.

mod support;

use std::io::Write as _;
use std::process::Command;

use nimbus_image::NoProgress;
use nimbus_testkit::image::{LayoutDigests, have_tools, skopeo_copy};

use support::*;

#[test]
fn oci_layout_directory_imports_and_is_found_locally() {
    let fx = Fixture::new("hello:1");
    let store = fx.store();
    let progress = Recorder::default();
    let images = store.import(&fx.layout, &progress).unwrap();
    assert_eq!(images.len(), 1);
    let image = &images[0];
    assert_eq!(image.reference, "docker.io/library/hello:1");
    assert_eq!(image.digest, fx.digests.manifest);
    assert_app_config(&image.config);
    assert_rootfs(&image.rootfs);
    assert!(*progress.layer_updates.lock().unwrap() > 0);

    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].reference, "docker.io/library/hello:1");
    assert!(listed[0].unpacked && listed[0].size > 0);

    // Stored: ensure answers without any registry, by tag and by digest.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let by_tag = rt.block_on(store.ensure("hello:1", &NoProgress)).unwrap();
    assert_eq!(by_tag.digest, image.digest);
    assert_eq!(by_tag.rootfs, image.rootfs);
    let pinned = format!("anything/else@{}", image.digest);
    assert_eq!(
        rt.block_on(store.ensure(&pinned, &NoProgress))
            .unwrap()
            .digest,
        image.digest
    );

    // Importing again changes nothing.
    let again = store.import(&fx.layout, &NoProgress).unwrap();
    assert_eq!(again[0].digest, image.digest);
    assert_eq!(store.list().unwrap().len(), 1);
}

#[test]
fn oci_layout_tar_imports() {
    let fx = Fixture::new("example.com/team/hello:2");
    let tarball = fx.path("layout.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tarball)
        .arg("-C")
        .arg(&fx.layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let images = fx.store().import(&tarball, &NoProgress).unwrap();
    assert_eq!(images[0].reference, "example.com/team/hello:2");
    assert_rootfs(&images[0].rootfs);
}

#[test]
fn a_bare_tag_is_stored_by_digest_only() {
    let fx = Fixture::new("latest");
    let store = fx.store();
    let progress = Recorder::default();
    let images = store.import(&fx.layout, &progress).unwrap();
    assert_eq!(images[0].reference, fx.digests.manifest);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(progress.count("stored by digest"), 1);
}

#[test]
fn docker_archive_from_skopeo_imports_plain_and_gzipped() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    let fx = Fixture::new("hello:1");
    let archive = fx.path("hello.tar");
    skopeo_copy(
        &format!("oci:{}:hello:1", fx.layout.display()),
        &format!("docker-archive:{}:hello:1", archive.display()),
        &[],
    )
    .unwrap();
    let store = fx.store();
    let images = store.import(&archive, &NoProgress).unwrap();
    assert_eq!(images.len(), 1);
    assert_eq!(images[0].reference, "docker.io/library/hello:1");
    assert_app_config(&images[0].config);
    assert_rootfs(&images[0].rootfs);

    let gz = fx.path("hello.tar.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&std::fs::read(&archive).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let other = tempfile::tempdir().unwrap();
    let store2 = nimbus_image::ImageStore::open(other.path(), Default::default()).unwrap();
    let again = store2.import(&gz, &NoProgress).unwrap();
    assert_eq!(
        again[0].digest, images[0].digest,
        "the same archive gives the same digest"
    );
}

#[test]
fn corrupt_archives_are_refused_and_store_nothing() {
    let fx = Fixture::new("hello:1");
    let store = fx.store();
    let garbage = fx.path("garbage.tar");
    std::fs::write(&garbage, vec![b'x'; 10_000]).unwrap();
    let empty_dir = fx.path("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let truncated = fx.path("truncated.tar");
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&truncated)
        .arg("-C")
        .arg(&fx.layout)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&truncated).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();

    for bad in [&garbage, &empty_dir, &truncated] {
        let err = store.import(bad, &NoProgress).unwrap_err();
        assert_eq!(
            err.reason(),
            "InvalidImageArchive",
            "{}: {err}",
            bad.display()
        );
        assert!(
            err.to_string().contains(&bad.display().to_string()),
            "{err}"
        );
        assert_nothing_stored(&fx.store_root());
    }
    let err = store
        .import(&fx.path("missing.tar"), &NoProgress)
        .unwrap_err();
    assert_eq!(err.reason(), "ImageStoreError", "{err}");
}

#[test]
fn a_tampered_blob_is_a_digest_mismatch_and_stores_nothing() {
    let fx = Fixture::new("hello:1");
    for digest in [&fx.digests.layer, &fx.digests.config] {
        let blob = LayoutDigests::blob(&fx.layout, digest);
        let original = std::fs::read(&blob).unwrap();
        let mut tampered = original.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 0xff;
        std::fs::write(&blob, &tampered).unwrap();
        let err = fx.store().import(&fx.layout, &NoProgress).unwrap_err();
        assert_eq!(err.reason(), "DigestMismatch", "{err}");
        assert!(err.to_string().contains(digest.as_str()), "{err}");
        assert_nothing_stored(&fx.store_root());
        std::fs::write(&blob, &original).unwrap();
    }
}

#[test]
fn a_tampered_docker_archive_layer_is_a_digest_mismatch() {
    if !have_tools(&["skopeo"]) {
        return;
    }
    let fx = Fixture::new("hello:1");
    let archive = fx.path("hello.tar");
    skopeo_copy(
        &format!("oci:{}:hello:1", fx.layout.display()),
        &format!("docker-archive:{}:hello:1", archive.display()),
        &[],
    )
    .unwrap();
    // Flip a byte inside the test app's bytes (far from any tar header).
    let mut bytes = std::fs::read(&archive).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    let err = fx.store().import(&archive, &NoProgress).unwrap_err();
    assert_eq!(err.reason(), "DigestMismatch", "{err}");
    assert_nothing_stored(&fx.store_root());
}

#[test]
fn a_multi_platform_layout_imports_this_machines_image() {
    let fx = Fixture::new("hello:1");
    make_multi_platform(&fx.layout, &fx.digests, "multi:1", true);
    let images = fx.store().import(&fx.layout, &NoProgress).unwrap();
    assert_eq!(images[0].reference, "docker.io/library/multi:1");
    assert_eq!(images[0].digest, fx.digests.manifest);
    assert_rootfs(&images[0].rootfs);
}

#[test]
fn a_layout_for_another_platform_is_unsupported() {
    let fx = Fixture::new("hello:1");
    make_multi_platform(&fx.layout, &fx.digests, "multi:1", false);
    let err = fx.store().import(&fx.layout, &NoProgress).unwrap_err();
    assert_eq!(err.reason(), "UnsupportedImage", "{err}");
    assert!(err.to_string().contains("linux/s390x"), "{err}");
    assert_nothing_stored(&fx.store_root());
}
