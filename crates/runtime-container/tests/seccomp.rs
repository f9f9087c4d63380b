//! The default seccomp filter against the real runc (as root; otherwise `SKIPPED: …`, and a
//! failure when `CI` is set): a container's program that asks for a new user namespace is
//! refused with EPERM, as under Docker; with `seccompProfile: Unconfined` the same succeeds.

mod support;

use nimbus_runtime::Seccomp;
use nimbus_runtime_process::Launcher;
use support::*;

/// Run `unshare -U /bin/true` as the image's user `app` with `seccomp`: exit code and output.
async fn unshare_user_namespace(seccomp: Seccomp, test: &str) -> (i32, String) {
    let fixture = Fixture::new();
    add_host_program(&fixture.rootfs, "/usr/bin/unshare");
    let mut spec = spec(&format!("{test}-00001"));
    spec.command = vec!["/usr/bin/unshare".into(), "-U".into(), "/bin/true".into()];
    spec.security.seccomp = seccomp;
    let launcher = fixture.launcher(fixture.config(), &spec, fixture.image(image_config()));
    let ctx = fixture.context(&instance_id(test), free_port(), None);
    let mut running = Running::start(&launcher, &spec, &ctx).await;
    let code = running.exit_code().await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await; // let stderr drain
    let output = running.output();
    launcher.cleanup(&ctx).await;
    (code, output)
}

#[tokio::test]
async fn the_default_filter_refuses_a_new_user_namespace_and_unconfined_allows_it() {
    if cannot_run().is_some() {
        return;
    }
    let (code, output) = unshare_user_namespace(Seccomp::RuntimeDefault, "seccomp-default").await;
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("Operation not permitted"), "{output}");

    let (code, output) = unshare_user_namespace(Seccomp::Unconfined, "seccomp-unconfined").await;
    assert_eq!(code, 0, "without a filter the kernel allows it: {output}");
}
