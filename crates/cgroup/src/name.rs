//! Checking cgroup names: a parent or instance name becomes a path below each hierarchy root,
//! so it must stay below it (no `..`, no empty parts) and be something the kernel accepts.

use crate::CgroupError;

/// The parent as a relative path (`nimbus`, `system.slice/nimbus`), with outer slashes trimmed.
/// Never empty: everything under the parent is killed by `clean_stale`.
pub(crate) fn parent(parent: &str) -> Result<String, CgroupError> {
    let trimmed = parent.trim_matches('/');
    if trimmed.is_empty() {
        return Err(invalid(
            parent,
            "the parent must name a cgroup below the root, e.g. \"nimbus\"",
        ));
    }
    relative(trimmed).map_err(|why| invalid(parent, why))?;
    Ok(trimmed.to_owned())
}

/// An instance name below the parent (`default/hello-00001/hello-00001-3`).
pub(crate) fn instance(name: &str) -> Result<(), CgroupError> {
    if name.starts_with('/') {
        return Err(invalid(
            name,
            "must be relative to the parent (no leading '/')",
        ));
    }
    relative(name).map_err(|why| invalid(name, why))
}

fn relative(path: &str) -> Result<(), &'static str> {
    if path.contains(['\0', '\n']) {
        return Err("contains a NUL or newline character");
    }
    for part in path.split('/') {
        match part {
            "" => return Err("has an empty path component"),
            "." | ".." => return Err("has a '.' or '..' path component"),
            _ => {}
        }
    }
    Ok(())
}

fn invalid(name: &str, why: &'static str) -> CgroupError {
    CgroupError::InvalidName {
        name: name.to_owned(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_are_trimmed_and_never_the_root() {
        assert_eq!(parent("nimbus").unwrap(), "nimbus");
        assert_eq!(
            parent("/system.slice/nimbus/").unwrap(),
            "system.slice/nimbus"
        );
        assert!(parent("").is_err());
        assert!(parent("/").is_err());
        assert!(parent("a/../b").is_err());
    }

    #[test]
    fn instance_names_stay_below_the_parent() {
        assert!(instance("default/hello-00001/hello-00001-3").is_ok());
        for bad in ["", "/abs", "a//b", "a/", "..", "a/./b", "a\nb"] {
            assert!(instance(bad).is_err(), "{bad:?} accepted");
        }
    }
}
