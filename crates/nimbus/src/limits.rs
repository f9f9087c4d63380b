//! Where this server's instance cgroups live: `nimbus/<digest of the data directory>`, so two
//! servers on one machine never touch each other's instances, and a restarted server finds (and
//! removes) what its crashed predecessor left.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The cgroup parent of the server using `data_dir`.
pub fn cgroup_parent(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("nimbus/{short}")
}

/// Kill and remove instance cgroups a previous run with this data directory left behind.
/// Silent when cgroups are unavailable (the runtimes say so once when they start).
pub fn clean_stale(data_dir: &Path) {
    let Ok(cgroups) = nimbus_cgroup::Cgroups::detect(&cgroup_parent(data_dir)) else {
        return;
    };
    if let Err(e) = cgroups.clean_stale() {
        tracing::warn!("cannot remove instance cgroups left by an earlier run: {e}");
    }
}

/// On a clean shutdown, after every instance stopped: remove this server's cgroup parent.
pub fn remove_parent(data_dir: &Path) {
    let Ok(cgroups) = nimbus_cgroup::Cgroups::detect(&cgroup_parent(data_dir)) else {
        return;
    };
    if let Err(e) = cgroups.remove_all() {
        tracing::warn!("cannot remove this server's cgroups: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_differ_per_data_directory() {
        let a = cgroup_parent(Path::new("/tmp/a"));
        assert!(
            a.starts_with("nimbus/") && a.len() == "nimbus/".len() + 12,
            "{a}"
        );
        assert_ne!(a, cgroup_parent(Path::new("/tmp/b")));
    }
}
