//! Finding the mounted cgroup filesystems: parses `/proc/self/mountinfo` (or `/proc/mounts`)
//! text into [`CgroupMount`]s. Pure parsing; reading the files is the caller's job.

use std::path::PathBuf;

/// One mounted cgroup filesystem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMount {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// `None` for cgroup v2; for v1, the mount options (controllers among them, e.g. `memory`,
    /// `cpu`, `cpuacct`, `name=systemd`).
    pub v1_options: Option<Vec<String>>,
}

impl CgroupMount {
    /// Whether this v1 hierarchy hosts `controller`.
    pub fn has_v1_controller(&self, controller: &str) -> bool {
        self.v1_options
            .as_ref()
            .is_some_and(|options| options.iter().any(|o| o == controller))
    }
}

/// The cgroup mounts in `/proc/self/mountinfo` text, in file order.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

/// The cgroup mounts in `/proc/mounts` text (the fallback when mountinfo is missing).
pub(crate) fn parse_mounts(text: &str) -> Vec<CgroupMount> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                [_source, mount_point, fs_type, options, ..] => {
                    cgroup_mount(mount_point, fs_type, options)
                }
                _ => None,
            }
        })
        .collect()
}

/// `36 25 0:32 / /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory`: the
/// mount point is field 5, then optional fields up to `-`, then type, source, super options.
fn parse_mountinfo_line(line: &str) -> Option<CgroupMount> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let separator = fields.iter().position(|f| *f == "-")?;
    let mount_point = fields.get(4)?;
    let fs_type = fields.get(separator + 1)?;
    let super_options = fields.get(separator + 3).copied().unwrap_or("");
    cgroup_mount(mount_point, fs_type, super_options)
}

fn cgroup_mount(mount_point: &str, fs_type: &str, options: &str) -> Option<CgroupMount> {
    let v1_options = match fs_type {
        "cgroup2" => None,
        "cgroup" => Some(options.split(',').map(str::to_owned).collect()),
        _ => return None,
    };
    Some(CgroupMount {
        mount_point: PathBuf::from(unescape(mount_point)),
        v1_options,
    })
}

/// The mount points (fifth field) of `/proc/self/mountinfo` text, escapes decoded. Public for
/// other crates that must know what is mounted (the container launcher's overlays).
pub fn mount_points(info: &str) -> impl Iterator<Item = String> + '_ {
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
}

/// Undo the kernel's octal escapes in mount paths (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let digits = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
";

    #[test]
    fn parses_hybrid_mountinfo() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 5);
        assert_eq!(
            mounts[0].mount_point,
            PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert!(mounts[0].has_v1_controller("cpu"));
        assert!(mounts[0].has_v1_controller("cpuacct"));
        assert!(!mounts[0].has_v1_controller("memory"));
        assert!(mounts[1].has_v1_controller("memory"));
        assert!(!mounts[3].has_v1_controller("systemd"));
        assert_eq!(mounts[4].v1_options, None);
        assert_eq!(
            mounts[4].mount_point,
            PathBuf::from("/sys/fs/cgroup/unified")
        );
    }

    #[test]
    fn parses_unified_mountinfo_with_optional_fields() {
        let text = "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 \
                    master:1 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n\
                    22 1 8:1 / / rw - ext4 /dev/sda1 rw\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(
            mounts,
            vec![CgroupMount {
                mount_point: PathBuf::from("/sys/fs/cgroup"),
                v1_options: None
            }]
        );
    }

    #[test]
    fn parses_proc_mounts() {
        let text = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n\
                    cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0\n\
                    proc /proc proc rw 0 0\n";
        let mounts = parse_mounts(text);
        assert_eq!(mounts.len(), 2);
        assert!(mounts[1].has_v1_controller("pids"));
    }

    #[test]
    fn unescapes_octal_sequences() {
        assert_eq!(unescape(r"/mnt/my\040cgroups"), "/mnt/my cgroups");
        assert_eq!(unescape(r"/a\134b"), r"/a\b");
        assert_eq!(unescape(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn ignores_malformed_lines() {
        assert!(parse_mountinfo("garbage\n1 2 3\n").is_empty());
        assert!(parse_mounts("short line\n").is_empty());
    }
}
