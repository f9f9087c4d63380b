//! Guest stdout and stderr land in the instance's log file (`<data dir>/logs/<namespace>/
//! <revision>/<instance>.log`), streams kept apart, one record per line, the partial last line
//! written when the request ends; each instance has its own file and removing the revision
//! deletes them. With a WAT component, so no wasm32 toolchain is needed.

mod support;

use std::path::{Path, PathBuf};

use nimbus_logs::Stream;
use nimbus_runtime::{RevisionKey, Runtime};
use support::*;

/// What `print.wat` writes in one request, in order.
fn printed() -> Vec<(Stream, String)> {
    [
        (Stream::Stdout, "out one"),
        (Stream::Stderr, "err one"),
        (Stream::Stdout, "out two"),
        (Stream::Stdout, "no newline"),
    ]
    .map(|(stream, text)| (stream, text.to_owned()))
    .to_vec()
}

fn revision_dir(data_dir: &Path, revision: &RevisionKey) -> PathBuf {
    data_dir
        .join("logs")
        .join(&revision.namespace)
        .join(&revision.name)
}

/// `(instance, stream, text)` of every line of the revision's logs, oldest first.
fn lines(data_dir: &Path, revision: &RevisionKey) -> Vec<(String, Stream, String)> {
    nimbus_logs::read_revision(&revision_dir(data_dir, revision), None, None)
        .unwrap()
        .into_iter()
        .map(|l| (l.instance, l.stream, l.text))
        .collect()
}

fn of(instance: &str, lines: &[(String, Stream, String)]) -> Vec<(Stream, String)> {
    lines
        .iter()
        .filter(|l| l.0 == instance)
        .map(|l| (l.1, l.2.clone()))
        .collect()
}

#[tokio::test]
async fn guest_output_goes_to_its_instance_log_file() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("print-00001", &wat_fixture(dir.path(), "print"));
    let instance = serve_one(&runtime, &spec).await;
    assert!(
        !revision_dir(dir.path(), &spec.revision).exists(),
        "nothing is created before the guest prints"
    );
    let (status, _) = get(&instance, "/").await;
    assert_eq!(status, 500, "print.wat never answers");
    let file = revision_dir(dir.path(), &spec.revision).join("print-00001-1.log");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines().next().unwrap().ends_with("Z stdout F out one"),
        "CRI format: {text}"
    );
    assert_eq!(
        of("print-00001-1", &lines(dir.path(), &spec.revision)),
        printed()
    );
    runtime.shutdown().await;
    assert!(file.is_file(), "shutting down keeps the logs");
}

#[tokio::test]
async fn each_instance_has_its_own_file_and_removal_deletes_them() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let spec = spec("print-00001", &wat_fixture(dir.path(), "print"));
    runtime.set_desired(&spec, 2).await.unwrap();
    wait_ready(&runtime, &spec.revision, 2).await;
    let ready = runtime
        .endpoints()
        .get(&spec.revision)
        .unwrap()
        .ready
        .clone();
    for endpoint in &ready {
        get(&in_process(endpoint), "/").await;
    }
    let all = lines(dir.path(), &spec.revision);
    for endpoint in &ready {
        assert_eq!(of(&endpoint.id, &all), printed(), "{}", endpoint.id);
    }
    assert_eq!(all.len(), 2 * printed().len());

    // Another revision's removal leaves these alone; this one's deletes them.
    runtime
        .remove(&RevisionKey::new("default", "other-00001"))
        .await;
    assert!(revision_dir(dir.path(), &spec.revision).is_dir());
    runtime.remove(&spec.revision).await;
    assert!(!revision_dir(dir.path(), &spec.revision).exists());
    get(&in_process(&ready[0]), "/").await;
    assert!(
        !revision_dir(dir.path(), &spec.revision).exists(),
        "a request still running after removal writes nothing"
    );
    runtime.shutdown().await;
}

#[tokio::test]
async fn without_a_data_directory_output_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let image = wat_fixture(dir.path(), "print");
    let runtime = runtime_with(dir.path(), |c| c.data_dir = None);
    let instance = serve_one(&runtime, &spec("print-00001", &image)).await;
    assert_eq!(get(&instance, "/").await.0, 500);
    assert!(!dir.path().join("logs").exists());
    runtime.shutdown().await;
}
