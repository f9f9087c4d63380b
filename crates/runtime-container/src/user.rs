//! Who the container's process runs as, the way containerd decides it for Kubernetes:
//! `securityContext.runAsUser` (gid from the image's /etc/passwd entry for that uid, else 0)
//! ignoring the image's `User`; otherwise the image's `User` (`uid`, `uid:gid`, `name`,
//! `name:group`), names looked up in the image's /etc/passwd and /etc/group. `runAsGroup`
//! overrides the group either way. Supplementary groups are the /etc/group entries listing the
//! user by name. The parsing is pure; [`read_account_files`] is the only I/O and never follows a
//! symbolic link out of the root filesystem.

use std::path::{Component, Path};

/// The ids of the container's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups (those listing the user in /etc/group).
    pub additional_gids: Vec<u32>,
    /// Home directory from /etc/passwd, `/` when the user has no entry.
    pub home: String,
}

/// The image names a user or group its own files do not define.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("the image's user {0:?} is not in its /etc/passwd")]
    UnknownUser(String),
    #[error("the image's group {0:?} is not in its /etc/group")]
    UnknownGroup(String),
    /// Kubernetes' refusal, in its words.
    #[error(
        "container has runAsNonRoot and image will run as root: set securityContext.runAsUser \
         to a non-zero uid, or use an image whose USER is not root"
    )]
    RunsAsRoot,
}

/// The image's /etc/passwd and /etc/group (empty when absent).
#[derive(Clone, Debug, Default)]
pub struct AccountFiles {
    pub passwd: String,
    pub group: String,
}

/// What decides the process's ids.
#[derive(Clone, Copy, Debug, Default)]
pub struct UserRequest<'a> {
    /// The image config's `User`.
    pub image_user: Option<&'a str>,
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// `securityContext.runAsNonRoot`: refuse to run as uid 0.
    pub run_as_non_root: bool,
}

/// One /etc/passwd line.
struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

/// Resolve the ids; see the module docs for the rules.
pub fn resolve(request: UserRequest<'_>, files: &AccountFiles) -> Result<ResolvedUser, UserError> {
    let (uid, group_spec) = match request.run_as_user {
        Some(uid) => (uid, None),
        None => image_user(request.image_user.unwrap_or(""), files)?,
    };
    if request.run_as_non_root && uid == 0 {
        return Err(UserError::RunsAsRoot);
    }
    let entry = passwd_entries(&files.passwd).find(|p| p.uid == uid);
    let gid = match (request.run_as_group, group_spec) {
        (Some(gid), _) => gid,
        (None, Some(group)) => group_id(group, files)?,
        (None, None) => entry.as_ref().map_or(0, |p| p.gid),
    };
    let additional_gids = entry
        .as_ref()
        .map(|p| member_gids(p.name, gid, &files.group))
        .unwrap_or_default();
    let home = entry.map_or("/", |p| p.home).to_owned();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// The uid of the image's `user[:group]` and its group part, if any.
fn image_user<'a>(
    user: &'a str,
    files: &AccountFiles,
) -> Result<(u32, Option<&'a str>), UserError> {
    let (user, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (user, None),
    };
    if user.is_empty() {
        return Ok((0, group));
    }
    if let Ok(uid) = user.parse() {
        return Ok((uid, group));
    }
    passwd_entries(&files.passwd)
        .find(|p| p.name == user)
        .map(|p| (p.uid, group))
        .ok_or_else(|| UserError::UnknownUser(user.to_owned()))
}

/// A numeric gid, or a group name from /etc/group.
fn group_id(group: &str, files: &AccountFiles) -> Result<u32, UserError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    group_entries(&files.group)
        .find(|(name, _, _)| *name == group)
        .map(|(_, gid, _)| gid)
        .ok_or_else(|| UserError::UnknownGroup(group.to_owned()))
}

/// Gids of the groups listing `user` as a member, other than `primary`.
fn member_gids(user: &str, primary: u32, group: &str) -> Vec<u32> {
    group_entries(group)
        .filter(|(_, gid, members)| *gid != primary && members.split(',').any(|m| m == user))
        .map(|(_, gid, _)| gid)
        .collect()
}

/// Well-formed /etc/passwd lines (`name:x:uid:gid:gecos:home:shell`).
fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 6 || line.starts_with('#') {
            return None;
        }
        Some(Passwd {
            name: f[0],
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5],
        })
    })
}

/// Well-formed /etc/group lines as (name, gid, members).
fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, &str)> {
    text.lines().filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 3 || line.starts_with('#') {
            return None;
        }
        Some((f[0], f[2].parse().ok()?, f.get(3).copied().unwrap_or("")))
    })
}

/// Read `etc/passwd` and `etc/group` under `rootfs`. A missing file, or one reached through a
/// symbolic link (which would resolve against the host), counts as empty.
pub fn read_account_files(rootfs: &Path) -> AccountFiles {
    AccountFiles {
        passwd: read_inside(rootfs, Path::new("etc/passwd")),
        group: read_inside(rootfs, Path::new("etc/group")),
    }
}

fn read_inside(rootfs: &Path, relative: &Path) -> String {
    let mut path = rootfs.to_path_buf();
    for component in relative.components() {
        let Component::Normal(name) = component else {
            return String::new();
        };
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if !meta.file_type().is_symlink() => {}
            _ => return String::new(),
        }
    }
    std::fs::read_to_string(&path).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files() -> AccountFiles {
        AccountFiles {
            passwd: "root:x:0:0:root:/root:/bin/sh\n# comment\nbroken\n\
                     app:x:1000:1000::/app:/bin/sh\nweb:x:33:33::/var/www:/bin/false\n"
                .into(),
            group: "root:x:0:\napp:x:1000:\nstaff:x:50:app,web\nwww-data:x:33:\n".into(),
        }
    }

    fn resolve_image(user: &str) -> Result<ResolvedUser, UserError> {
        let request = UserRequest {
            image_user: Some(user),
            ..Default::default()
        };
        resolve(request, &files())
    }

    fn ids(user: &ResolvedUser) -> (u32, u32) {
        (user.uid, user.gid)
    }

    #[test]
    fn no_user_is_root() {
        let root = resolve(UserRequest::default(), &files()).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(ids(&resolve_image("").unwrap()), (0, 0));
    }

    #[test]
    fn names_and_numbers_resolve() {
        let app = resolve_image("app").unwrap();
        assert_eq!((app.uid, app.gid, app.home.as_str()), (1000, 1000, "/app"));
        assert_eq!(app.additional_gids, vec![50]);
        assert_eq!(ids(&resolve_image("1000").unwrap()), (1000, 1000));
        assert_eq!(ids(&resolve_image("1000:50").unwrap()), (1000, 50));
        assert_eq!(ids(&resolve_image("app:staff").unwrap()), (1000, 50));
        assert_eq!(ids(&resolve_image("web:").unwrap()), (33, 33));
    }

    #[test]
    fn a_uid_without_an_entry_gets_group_zero_and_home_root() {
        let user = resolve_image("4242").unwrap();
        assert_eq!((user.uid, user.gid, user.home.as_str()), (4242, 0, "/"));
        assert!(user.additional_gids.is_empty());
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve_image("nobody"),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            resolve_image("app:wheel"),
            Err(UserError::UnknownGroup("wheel".into()))
        );
    }

    #[test]
    fn run_as_user_ignores_the_image_user() {
        let request = UserRequest {
            image_user: Some("nobody"),
            run_as_user: Some(33),
            run_as_group: None,
            ..Default::default()
        };
        assert_eq!(ids(&resolve(request, &files()).unwrap()), (33, 33));
        let request = UserRequest {
            run_as_group: Some(7),
            ..request
        };
        assert_eq!(ids(&resolve(request, &files()).unwrap()), (33, 7));
    }

    #[test]
    fn run_as_group_overrides_the_image_group() {
        let request = UserRequest {
            image_user: Some("app:staff"),
            run_as_user: None,
            run_as_group: Some(9),
            ..Default::default()
        };
        assert_eq!(ids(&resolve(request, &files()).unwrap()), (1000, 9));
    }

    #[test]
    fn account_files_behind_symlinks_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/group"), "g:x:5:\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/passwd")).unwrap();
        let read = read_account_files(dir.path());
        assert_eq!(read.passwd, "");
        assert_eq!(read.group, "g:x:5:\n");
    }

    /// Issue #13: `runAsNonRoot` is enforced, as the kubelet does: an image running as root
    /// (no USER, `0`, or `root`) is refused unless `runAsUser` names another uid.
    #[test]
    fn run_as_non_root_refuses_uid_zero() {
        for image_user in [None, Some("0"), Some("root")] {
            let request = UserRequest {
                image_user,
                run_as_non_root: true,
                ..Default::default()
            };
            let err = resolve(request, &files()).unwrap_err();
            assert!(
                matches!(err, UserError::RunsAsRoot),
                "{image_user:?}: {err}"
            );
        }
        let request = UserRequest {
            image_user: None,
            run_as_user: Some(1000),
            run_as_non_root: true,
            ..Default::default()
        };
        assert_eq!(resolve(request, &files()).unwrap().uid, 1000);
        let request = UserRequest {
            image_user: Some("app"),
            run_as_non_root: true,
            ..Default::default()
        };
        assert_eq!(resolve(request, &files()).unwrap().uid, 1000);
    }
}
