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

/// The cgroups of the server using `data_dir`, detected once for all its runtimes, with what a
/// crashed predecessor left there killed and removed. `None` (said once, as a warning) when
/// they are unavailable: instances then run without limits.
pub fn detect(data_dir: &Path) -> Option<nimbus_cgroup::Cgroups> {
    let cgroups = nimbus_cgroup::Cgroups::detect(&cgroup_parent(data_dir))
        .inspect_err(|e| tracing::warn!("instances run without resource limits: {e}"))
        .ok()?;
    if let Err(e) = cgroups.clean_stale() {
        tracing::warn!("cannot remove instance cgroups left by an earlier run: {e}");
    }
    Some(cgroups)
}

/// On a clean shutdown, after every instance stopped: remove the server's cgroup parent.
pub fn remove_parent(cgroups: &nimbus_cgroup::Cgroups) {
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
