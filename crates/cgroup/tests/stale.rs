//! After a crash, the next run's `clean_stale` kills what the old instances left running and
//! removes their cgroups, nested ones included. Needs root and cgroups; skips otherwise (fails
//! under `CI`).

mod support;

use std::os::unix::process::ExitStatusExt;

use nimbus_cgroup::{Cgroups, Limits};
use support::{fixture, parent_name, spawn_in};

#[test]
fn clean_stale_removes_leftovers() {
    let Some(fx) = fixture("stale") else { return };
    let limits = Limits::from_kubernetes(Some(64 << 20), None, None, Some(20));
    let a = fx.cgroups.create("default/rev/a", &limits).unwrap();
    let b = fx.cgroups.create("b", &limits).unwrap();
    let mut children = vec![
        spawn_in(&a, "exec sleep 60"),
        spawn_in(&b, "sleep 60 & wait"),
    ];
    let parent_dir = a.dir(nimbus_cgroup::Controller::Memory);
    let parent_dir = parent_dir.ancestors().nth(3).unwrap().to_owned();
    // The run crashes: nobody removes the cgroups.
    std::mem::forget(a);
    std::mem::forget(b);

    let restarted = Cgroups::detect(&parent_name("stale")).unwrap();
    restarted.clean_stale().unwrap();

    for child in &mut children {
        assert_eq!(child.wait().unwrap().signal(), Some(9));
    }
    let left: Vec<_> = std::fs::read_dir(&parent_dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    restarted.clean_stale().unwrap(); // nothing to do is fine
}
