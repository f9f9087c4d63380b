//! The container's process as Kubernetes derives it from the image: argv by the
//! `command`/`args` rules over ENTRYPOINT/CMD, the environment layered over the image's, and the
//! working directory. Pure functions; no I/O.

/// `PATH` when neither the image nor the manifest sets one (Docker's and runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// argv per Kubernetes ("Define a Command and Arguments for a Container"): `command` replaces
/// ENTRYPOINT and drops CMD; `args` replaces CMD; with neither, ENTRYPOINT followed by CMD.
/// Empty when nothing names a program.
pub fn argv(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
) -> Vec<String> {
    let (program, rest) = match (command.is_empty(), args.is_empty()) {
        (false, _) => (command, args),
        (true, false) => (entrypoint, args),
        (true, true) => (entrypoint, cmd),
    };
    program.iter().chain(rest).cloned().collect()
}

/// An ordered environment in which setting a variable again replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    vars: Vec<(String, String)>,
}

impl Environment {
    /// Set `name`, replacing an earlier value (the later layer wins).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => value.clone_into(v),
            None => self.vars.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Set `name` only if no layer has.
    pub fn set_default(&mut self, name: &str, value: &str) {
        if !self.contains(name) {
            self.set(name, value);
        }
    }

    /// Add image-style `K=V` entries (an entry without `=` sets an empty value).
    pub fn extend_pairs<'a>(&mut self, entries: impl IntoIterator<Item = &'a String>) {
        for entry in entries {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            if !name.is_empty() {
                self.set(name, value);
            }
        }
    }

    /// Add `(name, value)` pairs in order.
    pub fn extend<'a>(&mut self, vars: impl IntoIterator<Item = &'a (String, String)>) {
        for (name, value) in vars {
            self.set(name, value);
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.vars.iter().any(|(n, _)| n == name)
    }

    /// The `K=V` list for the runtime spec.
    pub fn into_pairs(self) -> Vec<String> {
        self.vars
            .into_iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect()
    }
}

/// The container's environment: `HOSTNAME`, then the image's `Env`, then the instance's (the
/// runtime contract and the manifest's `env`), later layers winning; `PATH` and `HOME` default
/// when no layer sets them.
pub fn environment(
    hostname: &str,
    home: &str,
    image_env: &[String],
    instance_env: &[(String, String)],
) -> Vec<String> {
    let mut env = Environment::default();
    env.set("HOSTNAME", hostname);
    env.extend_pairs(image_env);
    env.extend(instance_env);
    env.set_default("PATH", DEFAULT_PATH);
    env.set_default("HOME", home);
    env.into_pairs()
}

/// `workingDir` of the manifest, else the image's `WorkingDir`, else `/`.
pub fn working_dir(manifest: Option<&std::path::Path>, image: Option<&str>) -> String {
    match (manifest, image) {
        (Some(dir), _) => dir.to_string_lossy().into_owned(),
        (None, Some(dir)) if !dir.is_empty() => dir.to_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv_follows_kubernetes_rules() {
        let (ep, cmd) = (v(&["/ep", "-x"]), v(&["serve", "--fast"]));
        assert_eq!(
            argv(&ep, &cmd, &[], &[]),
            v(&["/ep", "-x", "serve", "--fast"])
        );
        assert_eq!(argv(&ep, &cmd, &v(&["/bin/sh"]), &[]), v(&["/bin/sh"]));
        assert_eq!(
            argv(&ep, &cmd, &[], &v(&["other"])),
            v(&["/ep", "-x", "other"])
        );
        assert_eq!(
            argv(&ep, &cmd, &v(&["/bin/sh", "-c"]), &v(&["true"])),
            v(&["/bin/sh", "-c", "true"])
        );
    }

    #[test]
    fn argv_is_empty_without_a_program() {
        assert!(argv(&[], &[], &[], &[]).is_empty());
        // CMD alone is the program when there is no ENTRYPOINT.
        assert_eq!(argv(&[], &v(&["/app"]), &[], &[]), v(&["/app"]));
        // args alone with no ENTRYPOINT: args are the whole argv, as in Kubernetes.
        assert_eq!(argv(&[], &v(&["/app"]), &[], &v(&["/x"])), v(&["/x"]));
    }

    #[test]
    fn later_layers_win_in_place() {
        let image = v(&["PATH=/img", "A=1", "B=2", "EMPTY"]);
        let instance = vec![("PORT".into(), "8080".into()), ("A".into(), "one".into())];
        let env = environment("h-1", "/", &image, &instance);
        assert_eq!(
            env,
            v(&[
                "HOSTNAME=h-1",
                "PATH=/img",
                "A=one",
                "B=2",
                "EMPTY=",
                "PORT=8080",
                "HOME=/"
            ])
        );
    }

    #[test]
    fn path_and_home_default_only_when_unset() {
        let env = environment("h", "/app", &[], &[("HOME".into(), "/mine".into())]);
        assert_eq!(
            env,
            v(&["HOSTNAME=h", "HOME=/mine", &format!("PATH={DEFAULT_PATH}")])
        );
    }

    #[test]
    fn working_dir_prefers_manifest_then_image() {
        assert_eq!(working_dir(Some(Path::new("/m")), Some("/i")), "/m");
        assert_eq!(working_dir(None, Some("/i")), "/i");
        assert_eq!(working_dir(None, Some("")), "/");
        assert_eq!(working_dir(None, None), "/");
    }
}
