//! `/contract`: facts about the environment the program runs in, as one JSON object, for the
//! runtime-contract tests. Fields: `uid`, `gid` (real ids from /proc/self/status), `tmp_mode`
//! (octal string such as "1777"), `dev` (path → exists, for the usual /dev entries),
//! `dev_fd_link` (readlink of /dev/fd, or null), `proc_sys_writable`, `resolv_conf`,
//! `cgroup` (file → trimmed content, for the limit files that exist), `cwd`, `hostname`, `argv`
//! (array of strings, argv\[0\] first), `pid`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

const DEV_ENTRIES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/random",
    "/dev/urandom",
    "/dev/full",
    "/dev/tty",
    "/dev/console",
    "/dev/fd",
    "/dev/stdin",
    "/dev/stdout",
    "/dev/stderr",
];

const CGROUP_FILES: &[&str] = &[
    "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    "/sys/fs/cgroup/memory.max",
    "/sys/fs/cgroup/cpu/cpu.cfs_quota_us",
    "/sys/fs/cgroup/cpu/cpu.cfs_period_us",
    "/sys/fs/cgroup/cpu.max",
    "/sys/fs/cgroup/cpu/cpu.shares",
    "/sys/fs/cgroup/cpu.weight",
    "/sys/fs/cgroup/pids/pids.max",
    "/sys/fs/cgroup/pids.max",
];

/// The report as a JSON object.
pub fn report() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let fields = [
        ("uid", id_field(&status, "Uid:")),
        ("gid", id_field(&status, "Gid:")),
        ("tmp_mode", tmp_mode()),
        ("dev", dev()),
        ("dev_fd_link", dev_fd_link()),
        ("proc_sys_writable", proc_sys_writable().to_string()),
        (
            "resolv_conf",
            Path::new("/etc/resolv.conf").exists().to_string(),
        ),
        ("cgroup", cgroup()),
        ("cwd", cwd()),
        ("hostname", hostname()),
        ("argv", argv()),
        ("pid", std::process::id().to_string()),
        ("fds", fds()),
    ];
    object(fields.iter().map(|(k, v)| (k.to_string(), v.clone())))
}

/// The real id on a `Uid:`/`Gid:` line of /proc/self/status, or `null`.
fn id_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<u32>().ok())
        .map_or("null".into(), |v| v.to_string())
}

fn tmp_mode() -> String {
    match std::fs::metadata("/tmp") {
        Ok(m) => string(&format!("{:o}", m.permissions().mode() & 0o7777)),
        Err(_) => "null".into(),
    }
}

fn dev() -> String {
    object(
        DEV_ENTRIES
            .iter()
            .map(|p| (p.to_string(), Path::new(p).exists().to_string())),
    )
}

fn dev_fd_link() -> String {
    match std::fs::read_link("/dev/fd") {
        Ok(t) => string(&t.to_string_lossy()),
        Err(_) => "null".into(),
    }
}

fn proc_sys_writable() -> bool {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/proc/sys/kernel/hostname")
        .is_ok()
}

fn cgroup() -> String {
    object(CGROUP_FILES.iter().filter_map(|p| {
        let text = std::fs::read_to_string(p).ok()?;
        Some((p.to_string(), string(text.trim())))
    }))
}

/// What each open descriptor refers to (`/proc/self/fd/N` targets), as a JSON array: a
/// descriptor leaked from the server would show here.
fn fds() -> String {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return "null".into();
    };
    let targets: Vec<String> = dir
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| string(&t.to_string_lossy()))
        .collect();
    format!("[{}]", targets.join(","))
}

fn cwd() -> String {
    match std::env::current_dir() {
        Ok(d) => string(&d.to_string_lossy()),
        Err(_) => "null".into(),
    }
}

fn hostname() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    string(name.trim())
}

fn argv() -> String {
    let args: Vec<String> = std::env::args_os()
        .map(|a| string(&a.to_string_lossy()))
        .collect();
    format!("[{}]", args.join(","))
}

/// A JSON object from keys and already-encoded values.
fn object(fields: impl Iterator<Item = (String, String)>) -> String {
    let body: Vec<String> = fields.map(|(k, v)| format!("{}:{v}", string(&k))).collect();
    format!("{{{}}}", body.join(","))
}

/// A JSON string literal.
fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
    }

    #[test]
    fn ids_come_from_status_lines() {
        let status = "Name:\tx\nUid:\t1000\t1000\t1000\t1000\nGid:\t5\t5\t5\t5\n";
        assert_eq!(id_field(status, "Uid:"), "1000");
        assert_eq!(id_field(status, "Gid:"), "5");
        assert_eq!(id_field("", "Uid:"), "null");
    }

    #[test]
    fn report_is_an_object_with_every_field() {
        let r = report();
        assert!(r.starts_with('{') && r.ends_with('}'));
        for key in [
            "uid", "gid", "tmp_mode", "dev", "cgroup", "cwd", "hostname", "argv", "pid", "fds",
        ] {
            assert!(r.contains(&format!("\"{key}\":")), "{key} missing in {r}");
        }
    }
}
