//! Processes in instance cgroups: joining between fork and exec, `add_pid`, the memory limit
//! ending in an OOM kill that `oom_kills` counts, the pids limit stopping a fork loop, and
//! `kill_all`/`remove`/drop leaving nothing behind. Needs root and cgroups; skips otherwise
//! (fails under `CI`).

mod support;

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use nimbus_cgroup::Limits;
use support::{dirs, fixture, gone, lists_process, spawn_in, wait_for};

const MI: u64 = 1024 * 1024;

#[test]
fn child_joins_before_exec_and_kill_all_empties_it() {
    let Some(fx) = fixture("join") else { return };
    let cg = fx.cgroups.create("inst", &Limits::default()).unwrap();
    // The background sleep daemonises out of sh's reach; kill_all still finds it.
    let mut child = spawn_in(&cg, "sleep 60 & exec sleep 60");
    let pid = child.id();
    assert!(cg.procs().contains(&pid), "{:?} lacks {pid}", cg.procs());
    assert!(
        lists_process(&cg, pid),
        "/proc/{pid}/cgroup does not name {}",
        cg.path()
    );
    cg.kill_all();
    let status = wait_for(&mut child, Duration::from_secs(5)).expect("child killed");
    assert_eq!(status.signal(), Some(9));
    assert!(cg.procs().is_empty(), "left: {:?}", cg.procs());
    let dirs = dirs(&cg);
    cg.remove().unwrap();
    assert!(gone(&dirs), "cgroup directories remain: {dirs:?}");
}

#[test]
fn add_pid_moves_a_running_process() {
    let Some(fx) = fixture("addpid") else { return };
    let cg = fx.cgroups.create("inst", &Limits::default()).unwrap();
    let mut child = Command::new("sleep").arg("60").spawn().unwrap();
    cg.add_pid(child.id()).unwrap();
    assert!(lists_process(&cg, child.id()));
    let dirs = dirs(&cg);
    drop(cg); // kills and removes
    assert_eq!(child.wait().unwrap().signal(), Some(9));
    assert!(gone(&dirs));
}

#[test]
fn memory_hog_is_oom_killed_and_counted() {
    let Some(fx) = fixture("oom") else { return };
    let limits = Limits {
        memory_max: Some(32 * MI),
        ..Limits::default()
    };
    let cg = fx.cgroups.create("hog", &limits).unwrap();
    assert_eq!(cg.oom_kills(), 0);
    // tail keeps the whole (newline-free) input in memory.
    let mut child = spawn_in(&cg, "exec tail /dev/zero");
    let status = wait_for(&mut child, Duration::from_secs(60));
    if status.is_none() {
        cg.kill_all();
        let _ = child.wait();
        panic!("the memory hog was not OOM-killed within 60 s");
    }
    assert_eq!(status.unwrap().signal(), Some(9), "{status:?}");
    assert!(cg.oom_kills() >= 1, "oom_kills = {}", cg.oom_kills());
    cg.remove().unwrap();
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(fx) = fixture("pids") else { return };
    let limits = Limits {
        pids_max: Some(10),
        ..Limits::default()
    };
    let cg = fx.cgroups.create("bomb", &limits).unwrap();
    let script = "i=0; while [ $i -lt 30 ]; do sleep 60 & i=$((i+1)); done; wait";
    let mut child = spawn_in(&cg, script);
    // Poll rather than wait for the shell: dash gives up at the first failed fork, bash retries.
    let deadline = Instant::now() + Duration::from_secs(20);
    while cg.pids_limit_hits() == 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    assert!(cg.pids_limit_hits() >= 1, "pids.max was never hit");
    assert!(cg.pids_current().unwrap() <= 10);
    // Removing the cgroup kills the shell and the sleeps it did start.
    let dirs = dirs(&cg);
    cg.remove().unwrap();
    let _ = child.wait();
    assert!(gone(&dirs));
}
