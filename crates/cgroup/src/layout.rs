//! Which hierarchy hosts each controller Nimbus needs. A controller mounted as a cgroup v1
//! hierarchy is used there (hybrid hosts keep memory, cpu and pids on v1); otherwise it must be
//! offered by a cgroup v2 mount's `cgroup.controllers`. Pure: the v2 lookup is passed in.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::mountinfo::CgroupMount;

/// A cgroup controller Nimbus sets limits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Controller {
    /// `memory`: the memory limit and OOM counting.
    Memory,
    /// `cpu`: CFS quota and weight.
    Cpu,
    /// `pids`: the process count limit.
    Pids,
}

/// Which cgroup interface a hierarchy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CgroupVersion {
    /// One hierarchy per controller (or group of controllers), `*.limit_in_bytes` style files.
    V1,
    /// The unified hierarchy, `memory.max` style files.
    V2,
}

/// One mounted hierarchy and the needed controllers it hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Hierarchy {
    /// The mount point, the root every cgroup path is relative to.
    pub root: PathBuf,
    pub version: CgroupVersion,
    /// The needed controllers found here, in [`Controller::ALL`] order.
    pub controllers: Vec<Controller>,
}

// === impl Controller ===

impl Controller {
    /// Every controller Nimbus needs.
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name for it.
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// === impl Hierarchy ===

impl Hierarchy {
    /// Whether `controller` is handled in this hierarchy.
    pub fn hosts(&self, controller: Controller) -> bool {
        self.controllers.contains(&controller)
    }
}

/// Assign each needed controller to a hierarchy. `v2_controllers` lists what a cgroup v2 mount
/// offers (its root `cgroup.controllers`). Errors say which controller is missing and why.
pub(crate) fn plan(
    mounts: &[CgroupMount],
    v2_controllers: &dyn Fn(&Path) -> Vec<String>,
) -> Result<Vec<Hierarchy>, String> {
    if mounts.is_empty() {
        return Err(
            "no cgroup filesystem is mounted (checked /proc/self/mountinfo); mount \
                    cgroup2 at /sys/fs/cgroup"
                .to_owned(),
        );
    }
    let mut hierarchies: Vec<Hierarchy> = Vec::new();
    for controller in Controller::ALL {
        let (root, version) = place(controller, mounts, v2_controllers)?;
        match hierarchies.iter_mut().find(|h| h.root == root) {
            Some(h) => h.controllers.push(controller),
            None => hierarchies.push(Hierarchy {
                root,
                version,
                controllers: vec![controller],
            }),
        }
    }
    Ok(hierarchies)
}

/// The mount hosting `controller`: a v1 hierarchy if there is one, else a v2 mount offering it.
fn place(
    controller: Controller,
    mounts: &[CgroupMount],
    v2_controllers: &dyn Fn(&Path) -> Vec<String>,
) -> Result<(PathBuf, CgroupVersion), String> {
    if let Some(m) = mounts
        .iter()
        .find(|m| m.has_v1_controller(controller.name()))
    {
        return Ok((m.mount_point.clone(), CgroupVersion::V1));
    }
    let mut offered = Vec::new();
    for m in mounts.iter().filter(|m| m.v1_options.is_none()) {
        let available = v2_controllers(&m.mount_point);
        if available.iter().any(|c| c == controller.name()) {
            return Ok((m.mount_point.clone(), CgroupVersion::V2));
        }
        offered.push(format!(
            "{} offers [{}]",
            m.mount_point.display(),
            available.join(" ")
        ));
    }
    Err(missing(controller, &offered))
}

fn missing(controller: Controller, offered: &[String]) -> String {
    let v2 = if offered.is_empty() {
        "no cgroup v2 hierarchy is mounted".to_owned()
    } else {
        format!("the cgroup v2 hierarchy {}", offered.join(", "))
    };
    format!(
        "the {controller} controller is not available: no cgroup v1 hierarchy has it and {v2}; \
         enable it in the kernel (or the container's cgroup delegation) to get {controller} limits"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse_mountinfo;

    fn offers(list: &'static str) -> impl Fn(&Path) -> Vec<String> {
        move |_| list.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn pure_v1_uses_one_hierarchy_per_controller() {
        let mounts = parse_mountinfo(
            "1 0 0:1 / /cg/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
             2 0 0:2 / /cg/memory rw - cgroup cgroup rw,memory\n\
             3 0 0:3 / /cg/pids rw - cgroup cgroup rw,pids\n\
             4 0 0:4 / /cg/unified rw - cgroup2 cgroup2 rw\n",
        );
        let plan = plan(&mounts, &offers("hugetlb")).unwrap();
        let roots: Vec<_> = plan.iter().map(|h| h.root.to_str().unwrap()).collect();
        assert_eq!(roots, ["/cg/memory", "/cg/cpu,cpuacct", "/cg/pids"]);
        assert!(plan.iter().all(|h| h.version == CgroupVersion::V1));
    }

    #[test]
    fn pure_v2_puts_everything_in_one_hierarchy() {
        let mounts = parse_mountinfo("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let plan = plan(&mounts, &offers("cpuset cpu io memory hugetlb pids rdma")).unwrap();
        assert_eq!(
            plan,
            vec![Hierarchy {
                root: PathBuf::from("/sys/fs/cgroup"),
                version: CgroupVersion::V2,
                controllers: Controller::ALL.to_vec(),
            }]
        );
    }

    #[test]
    fn hybrid_mixes_v1_and_v2() {
        let mounts = parse_mountinfo(
            "1 0 0:1 / /cg/memory rw - cgroup cgroup rw,memory\n\
             2 0 0:2 / /cg/unified rw - cgroup2 cgroup2 rw\n",
        );
        let plan = plan(&mounts, &offers("cpu pids")).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].version, CgroupVersion::V1);
        assert_eq!(plan[1].controllers, [Controller::Cpu, Controller::Pids]);
        assert_eq!(plan[1].version, CgroupVersion::V2);
    }

    #[test]
    fn names_the_missing_controller() {
        let mounts = parse_mountinfo("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let err = plan(&mounts, &offers("cpu memory")).unwrap_err();
        assert!(
            err.starts_with("the pids controller is not available"),
            "{err}"
        );
        assert!(err.contains("/sys/fs/cgroup offers [cpu memory]"), "{err}");
        assert!(
            plan(&[], &offers(""))
                .unwrap_err()
                .contains("no cgroup filesystem")
        );
    }
}
