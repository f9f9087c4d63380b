//! cgroup v2 delegation of controllers: a child cgroup only gets `memory.max`, `cpu.max` and
//! `pids.max` when every ancestor lists those controllers in its `cgroup.subtree_control`.
//! Only the missing ones are written, so ancestors managed by systemd are left as they are.

use std::path::Path;

use crate::{CgroupError, Controller, fsio};

/// Make sure the children of `dir` get `controllers`.
pub(crate) fn enable(dir: &Path, controllers: &[Controller]) -> Result<(), CgroupError> {
    let file = dir.join("cgroup.subtree_control");
    let current = fsio::read(&file)?;
    match missing(&current, controllers) {
        Some(change) => fsio::write_value(&file, &change),
        None => Ok(()),
    }
}

/// The `+name` line enabling what `subtree_control` lacks, or `None` if nothing is missing.
pub(crate) fn missing(subtree_control: &str, controllers: &[Controller]) -> Option<String> {
    let enabled: Vec<&str> = subtree_control.split_whitespace().collect();
    let change: Vec<String> = controllers
        .iter()
        .filter(|c| !enabled.contains(&c.name()))
        .map(|c| format!("+{c}"))
        .collect();
    (!change.is_empty()).then(|| change.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_missing_controllers_are_enabled() {
        let all = Controller::ALL;
        assert_eq!(missing("", &all).as_deref(), Some("+memory +cpu +pids"));
        assert_eq!(
            missing("cpuset cpu io memory\n", &all).as_deref(),
            Some("+pids")
        );
        assert_eq!(missing("cpu io memory pids\n", &all), None);
        assert_eq!(
            missing("memory", &[Controller::Cpu]).as_deref(),
            Some("+cpu")
        );
    }
}
