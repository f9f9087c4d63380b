//! The limits the kernel reads back from a created cgroup are Kubernetes' values (the Knative
//! runtime contract), unset limits reset to the defaults, and nested names create and prune
//! their intermediate cgroups. Needs root and cgroups; skips otherwise (fails under `CI`).

mod support;

use nimbus_cgroup::{Controller, Limits};
use support::{fixture, is_v1, read};

const MI: u64 = 1024 * 1024;

#[test]
fn kubernetes_values_are_written() {
    let Some(fx) = fixture("values") else { return };
    let limits = Limits::from_kubernetes(Some(128 * MI), Some(1000), Some(125), Some(100));
    let cg = fx
        .cgroups
        .create("default/hello-00001/hello-00001-1", &limits)
        .unwrap();
    assert_eq!(
        cg.path(),
        format!("{}/default/hello-00001/hello-00001-1", fx.cgroups.parent())
    );
    assert_eq!(cg.absolute_path(), format!("/{}", cg.path()));
    if is_v1(&cg, Controller::Memory) {
        assert_eq!(
            read(&cg, Controller::Memory, "memory.limit_in_bytes"),
            "134217728"
        );
    } else {
        assert_eq!(read(&cg, Controller::Memory, "memory.max"), "134217728");
        assert_eq!(read(&cg, Controller::Memory, "memory.oom.group"), "1");
    }
    if is_v1(&cg, Controller::Cpu) {
        assert_eq!(read(&cg, Controller::Cpu, "cpu.cfs_quota_us"), "100000");
        assert_eq!(read(&cg, Controller::Cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&cg, Controller::Cpu, "cpu.shares"), "128");
    } else {
        assert_eq!(read(&cg, Controller::Cpu, "cpu.max"), "100000 100000");
        assert_eq!(read(&cg, Controller::Cpu, "cpu.weight"), "5");
    }
    assert_eq!(read(&cg, Controller::Pids, "pids.max"), "100");
    cg.remove().unwrap();
}

#[test]
fn reuse_resets_to_unlimited() {
    let Some(fx) = fixture("reuse") else { return };
    let limits = Limits::from_kubernetes(Some(64 * MI), Some(500), None, Some(50));
    // A crashed run leaves the cgroup behind with its limits.
    std::mem::forget(fx.cgroups.create("inst", &limits).unwrap());
    let cg = fx.cgroups.create("inst", &Limits::default()).unwrap();
    if is_v1(&cg, Controller::Memory) {
        let bytes: u64 = read(&cg, Controller::Memory, "memory.limit_in_bytes")
            .parse()
            .unwrap();
        assert!(bytes > 1 << 60, "memory still limited to {bytes}");
    } else {
        assert_eq!(read(&cg, Controller::Memory, "memory.max"), "max");
    }
    if is_v1(&cg, Controller::Cpu) {
        assert_eq!(read(&cg, Controller::Cpu, "cpu.cfs_quota_us"), "-1");
        assert_eq!(read(&cg, Controller::Cpu, "cpu.shares"), "1024");
    } else {
        assert_eq!(read(&cg, Controller::Cpu, "cpu.max"), "max 100000");
        assert_eq!(read(&cg, Controller::Cpu, "cpu.weight"), "100");
    }
    assert_eq!(read(&cg, Controller::Pids, "pids.max"), "max");
    assert_eq!(cg.oom_kills(), 0);
    assert_eq!(cg.pids_limit_hits(), 0);
}

#[test]
fn nested_names_create_and_prune_intermediates() {
    let Some(fx) = fixture("nested") else { return };
    let one = fx
        .cgroups
        .create("ns/rev/inst-1", &Limits::default())
        .unwrap();
    let two = fx
        .cgroups
        .create("ns/rev/inst-2", &Limits::default())
        .unwrap();
    let rev = one.dir(Controller::Pids).parent().unwrap().to_owned();
    let parent = rev.parent().unwrap().parent().unwrap().to_owned();
    one.remove().unwrap();
    assert!(rev.exists(), "the revision cgroup still holds inst-2");
    drop(two);
    assert!(
        !parent.join("ns").exists(),
        "empty intermediates are pruned"
    );
    assert!(parent.exists(), "the parent stays");
}

#[test]
fn bad_names_are_refused() {
    let Some(fx) = fixture("names") else { return };
    for bad in ["", "/abs", "a/../../escape", "a//b"] {
        let err = fx.cgroups.create(bad, &Limits::default()).unwrap_err();
        assert!(
            err.to_string().contains("invalid cgroup name"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn detecting_one_parent_from_many_threads_at_once_works_for_all() {
    // Runtimes of one process (the tests of a crate) detect the same parent concurrently; the
    // probe cgroup each makes and removes must not be another's.
    let Some(fx) = fixture("concurrent") else {
        return;
    };
    let parent = fx.cgroups.parent().to_owned();
    let detected: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| nimbus_cgroup::Cgroups::detect(&parent).map(|_| ())))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for result in detected {
        result.unwrap();
    }
}
