//! A container's capability set: Docker's default set without `NET_RAW`, changed by the
//! container's `securityContext.capabilities` as Kubernetes names them (`NET_ADMIN`, `ALL`).
//! Pure; no I/O.

use std::collections::HashSet;
use std::str::FromStr as _;

use nimbus_runtime::Security;
use oci_spec::runtime::{Capabilities, Capability};

/// Docker's default capability set without `NET_RAW` (raw sockets: forged packets and, on a
/// shared network, sniffing).
pub const CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability the runtime spec knows (what `add: [ALL]` grants).
const EVERY: &[Capability] = &[
    Capability::AuditControl,
    Capability::AuditRead,
    Capability::AuditWrite,
    Capability::BlockSuspend,
    Capability::Bpf,
    Capability::CheckpointRestore,
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::Kill,
    Capability::Lease,
    Capability::LinuxImmutable,
    Capability::MacAdmin,
    Capability::MacOverride,
    Capability::Mknod,
    Capability::NetAdmin,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetRaw,
    Capability::Perfmon,
    Capability::Setgid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::Setuid,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysChroot,
    Capability::SysModule,
    Capability::SysNice,
    Capability::SysPacct,
    Capability::SysPtrace,
    Capability::SysRawio,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Syslog,
    Capability::WakeAlarm,
];

/// The container's capabilities: [`CAPABILITIES`], less `capabilities_drop` (`ALL` empties
/// the set), plus `capabilities_add` (`ALL` grants every one). Validation refuses unknown
/// names; one that gets here anyway is skipped with a warning.
pub fn granted(security: &Security) -> Capabilities {
    let mut set: Capabilities = CAPABILITIES.iter().copied().collect();
    if has_all(&security.capabilities_drop) {
        set.clear();
    }
    for cap in parsed(&security.capabilities_drop) {
        set.remove(&cap);
    }
    if has_all(&security.capabilities_add) {
        set.extend(EVERY.iter().copied());
    }
    set.extend(parsed(&security.capabilities_add));
    set
}

fn has_all(names: &[String]) -> bool {
    names.iter().any(|n| n.eq_ignore_ascii_case("ALL"))
}

/// The named capabilities but `ALL`, with or without the `CAP_` prefix, in any case.
fn parsed(names: &[String]) -> HashSet<Capability> {
    names
        .iter()
        .filter(|n| !n.eq_ignore_ascii_case("ALL"))
        .filter_map(|name| {
            let upper = name.to_ascii_uppercase();
            let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
            let cap = Capability::from_str(bare).ok();
            if cap.is_none() {
                tracing::warn!(capability = %name, "unknown capability ignored");
            }
            cap
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn security(add: &[&str], drop: &[&str]) -> Security {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Security {
            capabilities_add: names(add),
            capabilities_drop: names(drop),
            ..Security::default()
        }
    }

    #[test]
    fn the_default_is_dockers_set_without_raw_sockets() {
        let caps = granted(&Security::default());
        assert_eq!(caps.len(), CAPABILITIES.len());
        assert!(!caps.contains(&Capability::NetRaw));
    }

    #[test]
    fn drop_removes_and_add_grants_by_kubernetes_names() {
        let caps = granted(&security(
            &["NET_ADMIN", "CAP_SYS_PTRACE"],
            &["CHOWN", "kill"],
        ));
        assert!(caps.contains(&Capability::NetAdmin));
        assert!(caps.contains(&Capability::SysPtrace));
        assert!(!caps.contains(&Capability::Chown));
        assert!(!caps.contains(&Capability::Kill));
        assert!(caps.contains(&Capability::Setuid));
    }

    #[test]
    fn drop_all_then_add_keeps_only_what_is_added() {
        let caps = granted(&security(&["NET_BIND_SERVICE"], &["ALL"]));
        assert_eq!(caps, [Capability::NetBindService].into_iter().collect());
        assert!(granted(&security(&[], &["ALL"])).is_empty());
    }

    #[test]
    fn add_all_grants_every_capability() {
        let caps = granted(&security(&["ALL"], &[]));
        assert_eq!(caps.len(), EVERY.len());
        assert!(caps.contains(&Capability::SysAdmin));
    }

    #[test]
    fn unknown_names_are_skipped() {
        let caps = granted(&security(&["NOT_A_CAP"], &["ALSO_NOT"]));
        assert_eq!(caps.len(), CAPABILITIES.len());
    }
}
