//! The default seccomp filter of a container (`seccompProfile: RuntimeDefault`): the profile
//! Docker (moby's `profiles/seccomp/default.json`) and containerd (`contrib/seccomp`) ship,
//! written as data and turned into the runtime spec's `linux.seccomp` for one container's
//! final capability set, as both engines do: every system call not listed fails with `EPERM`;
//! `socket` is allowed for every family but `AF_VSOCK`; `personality` only for the Linux
//! personalities; `clone` only without namespace flags and `clone3` answers `ENOSYS` (so
//! libcs fall back to `clone`), unless the container holds `CAP_SYS_ADMIN`; and the groups
//! gated by a capability (`mount`, `unshare`, `setns`, … with `CAP_SYS_ADMIN`, `ptrace` with
//! `CAP_SYS_PTRACE`, …) are allowed only when the container holds it. `keyctl`, `add_key`,
//! `request_key`, `userfaultfd`, `kexec_*`, `bpf` without `CAP_BPF`/`CAP_SYS_ADMIN`,
//! `open_by_handle_at` without `CAP_DAC_READ_SEARCH` and the like are never allowed. System call
//! names the kernel or libseccomp does not know are skipped by runc. Pure; no I/O.

use nix::libc;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompArgBuilder, LinuxSeccompBuilder, LinuxSeccompOperator, LinuxSyscall,
    LinuxSyscallBuilder,
};

/// `EPERM`: what a system call outside the profile returns.
pub const EPERM: u32 = libc::EPERM as u32;
/// `ENOSYS`: what `clone3` returns without `CAP_SYS_ADMIN`.
const ENOSYS: u32 = libc::ENOSYS as u32;
/// `AF_VSOCK`: the socket family refused (host ↔ VM sockets).
const AF_VSOCK: u64 = libc::AF_VSOCK as u64;
/// The namespace flags of `clone`, none of which a `clone` may set without `CAP_SYS_ADMIN`
/// (`0x7E020000`).
pub const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u64;
/// The `personality` values allowed: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff` (a query).
const PERSONALITIES: &[u64] = &[0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Allowed for every container.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "inotify_add_watch",
    "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy",
    "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set",
    "io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup", "ipc",
    "kill", "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lchown32", "lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise", "map_shadow_stack",
    "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod",
    "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect", "mq_getsetattr",
    "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
    "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
    "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat",
    "_newselect", "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe",
    "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl",
    "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "recv", "recvfrom", "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages",
    "removexattr", "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq",
    "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
    "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
    "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
    "sched_rr_get_interval_time64", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg", "sendmsg",
    "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
    "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
    "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
    "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
    "setuid32", "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice",
    "stat", "stat64", "statfs", "statfs64", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask",
    "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork",
    "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
    // Allowed on kernels from 4.8 on (older ones let ptrace bypass seccomp).
    "process_vm_readv", "process_vm_writev", "ptrace",
];

/// Allowed only on x86 (64-bit and x32).
#[cfg(target_arch = "x86_64")]
const ARCH_ALLOWED: &[&str] = &["arch_prctl", "modify_ldt"];
/// Allowed only on ARM.
#[cfg(target_arch = "aarch64")]
const ARCH_ALLOWED: &[&str] = &[
    "arm_fadvise64_64",
    "arm_sync_file_range",
    "sync_file_range2",
    "breakpoint",
    "cacheflush",
    "set_tls",
];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_ALLOWED: &[&str] = &[];

/// System calls allowed only to a container holding the capability.
#[rustfmt::skip]
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (Capability::SysAdmin, &[
        "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
        "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
        "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
        "umount2", "unshare",
    ]),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (Capability::SysModule, &["delete_module", "init_module", "finit_module"]),
    (Capability::SysPacct, &["acct"]),
    (Capability::SysPtrace, &[
        "kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev",
        "ptrace",
    ]),
    (Capability::SysRawio, &["iopl", "ioperm"]),
    (Capability::SysTime, &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (Capability::SysTtyConfig, &["vhangup"]),
    (Capability::SysNice, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// The architectures the filter covers: the host's and the ones its kernel also runs.
fn architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

/// The default filter for a container holding `caps` (its bounding set).
pub fn runtime_default(caps: &Capabilities) -> Result<LinuxSeccomp, OciSpecError> {
    let mut rules = vec![allow(ALLOWED.iter().chain(ARCH_ALLOWED).copied(), None)?];
    rules.push(allow(
        ["socket"],
        Some(vec![arg(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)?]),
    )?);
    for value in PERSONALITIES {
        let only = arg(0, *value, LinuxSeccompOperator::ScmpCmpEq)?;
        rules.push(allow(["personality"], Some(vec![only]))?);
    }
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(cap) {
            rules.push(allow(names.iter().copied(), None)?);
        }
    }
    if !caps.contains(&Capability::SysAdmin) {
        rules.extend(without_namespaces()?);
    }
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(EPERM)
        .architectures(architectures())
        .syscalls(rules)
        .build()
}

/// `clone` without namespace flags; `clone3` (whose flags a filter cannot read) fails with
/// `ENOSYS`, so libcs fall back to `clone`.
fn without_namespaces() -> Result<Vec<LinuxSyscall>, OciSpecError> {
    let no_flags = LinuxSeccompArgBuilder::default()
        .index(0usize)
        .value(CLONE_NAMESPACE_FLAGS)
        .value_two(0u64)
        .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
        .build()?;
    let clone3 = LinuxSyscallBuilder::default()
        .names(vec!["clone3".to_owned()])
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(ENOSYS)
        .build()?;
    Ok(vec![allow(["clone"], Some(vec![no_flags]))?, clone3])
}

fn allow<'a>(
    names: impl IntoIterator<Item = &'a str>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> Result<LinuxSyscall, OciSpecError> {
    let names = names.into_iter().map(str::to_owned).collect::<Vec<_>>();
    let mut rule = LinuxSyscallBuilder::default()
        .names(names)
        .action(LinuxSeccompAction::ScmpActAllow);
    if let Some(args) = args {
        rule = rule.args(args);
    }
    rule.build()
}

fn arg(
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
) -> Result<LinuxSeccompArg, OciSpecError> {
    LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op)
        .build()
}

/// What the filter does with one system call, judged from the rules as libseccomp would for
/// arguments `args` (tests and diagnostics; `None`: allowed).
#[cfg(test)]
fn verdict(filter: &LinuxSeccomp, name: &str, args: &[u64]) -> Option<u32> {
    let rules = filter.syscalls().as_deref().unwrap_or_default();
    let mut answer = filter.default_errno_ret();
    for rule in rules.iter().filter(|r| r.names().iter().any(|n| n == name)) {
        let matches = rule.args().iter().flatten().all(|a| {
            let v = args.get(a.index()).copied().unwrap_or(0);
            match a.op() {
                LinuxSeccompOperator::ScmpCmpEq => v == a.value(),
                LinuxSeccompOperator::ScmpCmpNe => v != a.value(),
                LinuxSeccompOperator::ScmpCmpMaskedEq => {
                    v & a.value() == a.value_two().unwrap_or(0)
                }
                _ => false,
            }
        });
        if !matches {
            continue;
        }
        match rule.action() {
            LinuxSeccompAction::ScmpActAllow => return None,
            _ => answer = rule.errno_ret(),
        }
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps;
    use nimbus_runtime::Security;

    const CLONE_NEWUSER: u64 = 0x1000_0000;
    const CLONE_THREAD_FLAGS: u64 = 0x003d_0f00;
    const AF_INET: u64 = 2;

    fn default_filter() -> LinuxSeccomp {
        runtime_default(&caps::granted(&Security::default())).unwrap()
    }

    fn with_caps(add: &[&str]) -> LinuxSeccomp {
        let security = Security {
            capabilities_add: add.iter().map(|s| s.to_string()).collect(),
            ..Security::default()
        };
        runtime_default(&caps::granted(&security)).unwrap()
    }

    #[test]
    fn everything_unlisted_fails_with_eperm_on_the_hosts_architectures() {
        let filter = default_filter();
        assert_eq!(filter.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(filter.default_errno_ret(), Some(EPERM));
        let arches = filter.architectures().clone().unwrap();
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            arches,
            [Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
        );
        assert!(!arches.is_empty());
    }

    #[test]
    fn ordinary_calls_are_allowed() {
        let filter = default_filter();
        for name in [
            "read", "write", "openat", "mmap", "execve", "futex", "chown", "setuid",
        ] {
            assert_eq!(verdict(&filter, name, &[]), None, "{name}");
        }
        assert_eq!(verdict(&filter, "socket", &[AF_INET]), None);
        assert_eq!(verdict(&filter, "clone", &[CLONE_THREAD_FLAGS]), None);
        assert_eq!(verdict(&filter, "personality", &[0xffff_ffff]), None);
    }

    #[test]
    fn keyrings_namespaces_and_mounts_are_refused_with_the_default_capabilities() {
        let filter = default_filter();
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "mount",
            "umount2",
            "unshare",
            "setns",
        ] {
            assert_eq!(verdict(&filter, name, &[]), Some(EPERM), "{name}");
        }
        for name in [
            "bpf",
            "kexec_file_load",
            "kexec_load",
            "userfaultfd",
            "reboot",
        ] {
            assert_eq!(verdict(&filter, name, &[]), Some(EPERM), "{name}");
        }
        assert_eq!(verdict(&filter, "open_by_handle_at", &[]), Some(EPERM));
        assert_eq!(verdict(&filter, "clone", &[CLONE_NEWUSER]), Some(EPERM));
        assert_eq!(verdict(&filter, "clone3", &[]), Some(ENOSYS));
        assert_eq!(verdict(&filter, "socket", &[AF_VSOCK]), Some(EPERM));
        assert_eq!(verdict(&filter, "personality", &[0x0040_0000]), Some(EPERM));
    }

    #[test]
    fn chroot_follows_the_capability() {
        assert_eq!(verdict(&default_filter(), "chroot", &[]), None);
        let security = Security {
            capabilities_drop: vec!["SYS_CHROOT".into()],
            ..Security::default()
        };
        let dropped = runtime_default(&caps::granted(&security)).unwrap();
        assert_eq!(verdict(&dropped, "chroot", &[]), Some(EPERM));
    }

    #[test]
    fn added_capabilities_open_their_groups() {
        let admin = with_caps(&["SYS_ADMIN"]);
        for name in ["mount", "unshare", "setns", "clone3"] {
            assert_eq!(verdict(&admin, name, &[]), None, "{name}");
        }
        assert_eq!(verdict(&admin, "clone", &[CLONE_NEWUSER]), None);
        assert_eq!(verdict(&admin, "keyctl", &[]), Some(EPERM));
        let ptrace = with_caps(&["SYS_PTRACE"]);
        assert_eq!(verdict(&ptrace, "kcmp", &[]), None);
        assert_eq!(verdict(&default_filter(), "kcmp", &[]), Some(EPERM));
        let time = with_caps(&["SYS_TIME"]);
        assert_eq!(verdict(&time, "settimeofday", &[]), None);
        assert_eq!(verdict(&default_filter(), "settimeofday", &[]), Some(EPERM));
    }

    #[test]
    fn the_filter_serializes_as_the_oci_config_expects() {
        let json = serde_json::to_value(default_filter()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        let clone = json["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["names"] == serde_json::json!(["clone"]))
            .unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], CLONE_NAMESPACE_FLAGS);
        assert_eq!(CLONE_NAMESPACE_FLAGS, 0x7E02_0000);
    }
}
