//! Credentials the kubectl way: the admin token `nimbus serve` keeps in its data directory, the
//! kubeconfig `nimbus kubeconfig` prints for it, and how client commands find their server and
//! token.
//!
//! Client commands resolve, in this order (first match wins):
//!
//! - **Server**: `--server` / `NIMBUS_SERVER`; else the server of the kubeconfig context;
//!   else `http://127.0.0.1:8081`.
//! - **Token**: `--token` / `NIMBUS_TOKEN`; else the kubeconfig context's user (`token` or
//!   `tokenFile`), but only when the server in use *is* that context's cluster server, so a
//!   cluster's credentials are never sent to another server; else, when the server is on
//!   loopback (`127.0.0.0/8`, `::1`, `localhost`), the token file `<data-dir>/admin.token`
//!   (`--data-dir` / `NIMBUS_DATA_DIR`, default `.nimbus`, as for `nimbus serve`); else none.
//! - **Kubeconfig**: `--kubeconfig FILE` (must exist); else the files listed in `KUBECONFIG`
//!   (colon-separated, missing ones skipped, the first definition of a name wins); else
//!   `~/.kube/config` if it exists. The context is `--context` or the file's `current-context`.
//!
//! For Nimbus's embedded API only `server`, `token` and `tokenFile` are read (it is plain HTTP
//! on loopback, and the CLI talks to it directly). A context whose user authenticates without a
//! token — client certificates, an exec plugin, an auth provider: a Kubernetes cluster's, in
//! Kubernetes mode — is used whole through kube-rs instead ([`Credentials::kube`]), with
//! every authentication a kubeconfig can name.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::Deserialize;

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "admin.token";
/// The default server, where `nimbus serve` listens by default.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8081";
/// Names used in the kubeconfig `nimbus kubeconfig` prints.
pub const CLUSTER: &str = "nimbus";
pub const USER: &str = "nimbus-admin";
pub const CONTEXT: &str = "nimbus";

/// Random bytes in a token (printed as twice as many hex digits).
const TOKEN_BYTES: usize = 32;

// === the admin token ===

/// `<data_dir>/admin.token`.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKEN_FILE)
}

/// The admin token of `data_dir`, created (random, mode 0600) on first use. A token file that
/// others can read is tightened to 0600 with a warning.
pub fn load_or_create_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = token_path(data_dir);
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path);
    match created {
        Ok(mut file) => {
            let token = random_token()?;
            file.write_all(format!("{token}\n").as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing the API token to {}", path.display()))?;
            Ok(token)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            tighten(&path)?;
            read_token(data_dir)
        }
        Err(e) => Err(e).with_context(|| format!("creating the API token {}", path.display())),
    }
}

/// The admin token stored in `data_dir`.
pub fn read_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = token_path(data_dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("reading the API token {}", path.display()))?;
    let token = text.trim().to_string();
    if token.is_empty() {
        bail!(
            "the API token file {} is empty; delete it and restart `nimbus serve` to make a new one",
            path.display()
        );
    }
    Ok(token)
}

fn tighten(path: &Path) -> anyhow::Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        eprintln!(
            "nimbus: warning: {} was readable by others (mode {:o}); setting it to 0600",
            path.display(),
            mode & 0o777
        );
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("restricting {}", path.display()))?;
    }
    Ok(())
}

fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for the API token")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

// === printing a kubeconfig ===

/// A kubeconfig with one cluster (`nimbus`, trusting the API's CA), one user (`nimbus-admin`,
/// with the token) and one context (`nimbus`, the current one).
pub fn render(server: &str, ca_data: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CLUSTER}
  cluster:
    server: {server}
    certificate-authority-data: {ca_data}
users:
- name: {USER}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CLUSTER}
    user: {USER}
    namespace: default
current-context: {CONTEXT}
preferences: {{}}
"
    )
}

/// The URL kubectl must use: `https://` (kubectl sends tokens only over TLS; the API port
/// speaks both).
pub fn https(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    format!("https://{}", rest.trim_end_matches('/'))
}

// === reading kubeconfigs ===

/// The parts of a kubeconfig Nimbus reads; everything else is ignored, as kubectl's own format
/// has many fields Nimbus has no use for.
#[derive(Clone, Debug, Default, Deserialize)]
struct Kubeconfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(default, rename = "current-context")]
    current_context: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Clone, Debug, Deserialize)]
struct Cluster {
    server: String,
}

#[derive(Clone, Debug, Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: User,
}

#[derive(Clone, Debug, Default, Deserialize)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<PathBuf>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    exec: Option<serde_json::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Clone, Debug, Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: String,
}

/// What the client was told on its command line and in its environment.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// `--server` / `NIMBUS_SERVER`.
    pub server: Option<String>,
    /// `--token` / `NIMBUS_TOKEN`.
    pub token: Option<String>,
    /// `--kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// `KUBECONFIG`.
    pub kubeconfig_env: Option<String>,
    /// `$HOME`, for `~/.kube/config`.
    pub home: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
    /// `--data-dir` / `NIMBUS_DATA_DIR`.
    pub data_dir: PathBuf,
}

/// Where to send requests and with which token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub server: String,
    pub token: Option<String>,
    /// The kubeconfig context authenticates without a token (client certificates, an exec
    /// plugin): a Kubernetes cluster's, reached through kube-rs with the context as it is.
    pub kube: bool,
}

/// Resolve server and token as the module docs describe.
pub fn resolve(src: &Sources) -> anyhow::Result<Credentials> {
    let config = load(src)?;
    let context = config
        .as_ref()
        .map(|c| c.context(src.context.as_deref()))
        .transpose()?
        .flatten();
    if let (None, Some((cluster, user))) = (&src.server, &context)
        && user.needs_kube()
    {
        return Ok(Credentials {
            server: cluster.server.clone(),
            token: None,
            kube: true,
        });
    }
    let server = src
        .server
        .clone()
        .or_else(|| context.as_ref().map(|(cluster, _)| cluster.server.clone()))
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let server = plain_http(server.trim_end_matches('/'))?;
    let from_config = context
        .filter(|(cluster, _)| same_server(&cluster.server, &server))
        .map(|(_, user)| user.token())
        .transpose()?
        .flatten();
    let token = match (src.token.clone(), from_config) {
        (Some(t), _) | (None, Some(t)) => Some(t),
        (None, None) if is_loopback(&server) => read_token(&src.data_dir).ok(),
        (None, None) => None,
    };
    Ok(Credentials {
        server,
        token,
        kube: false,
    })
}

/// The merged kubeconfig, if any file applies.
fn load(src: &Sources) -> anyhow::Result<Option<Kubeconfig>> {
    if let Some(path) = &src.kubeconfig {
        return read_file(path).map(Some);
    }
    let paths: Vec<PathBuf> = match src.kubeconfig_env.as_deref().filter(|s| !s.is_empty()) {
        Some(list) => std::env::split_paths(list).filter(|p| p.exists()).collect(),
        None => src
            .home
            .iter()
            .map(|h| h.join(".kube").join("config"))
            .filter(|p| p.exists())
            .collect(),
    };
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        let next = read_file(&path)?;
        merged = Some(match merged {
            None => next,
            Some(first) => first.merge(next),
        });
    }
    match (merged, &src.context) {
        (None, Some(ctx)) => {
            bail!("context {ctx:?} given but no kubeconfig found (set --kubeconfig or KUBECONFIG)")
        }
        (m, _) => Ok(m),
    }
}

fn read_file(path: &Path) -> anyhow::Result<Kubeconfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(Kubeconfig::default());
    }
    serde_saphyr::from_str(&text)
        .with_context(|| format!("parsing the kubeconfig {}", path.display()))
}

// === impl Kubeconfig ===

impl Kubeconfig {
    /// kubectl's merge rule: the first file to define a name (or current-context) wins.
    fn merge(mut self, other: Kubeconfig) -> Kubeconfig {
        for c in other.clusters {
            if !self.clusters.iter().any(|x| x.name == c.name) {
                self.clusters.push(c);
            }
        }
        for u in other.users {
            if !self.users.iter().any(|x| x.name == u.name) {
                self.users.push(u);
            }
        }
        for c in other.contexts {
            if !self.contexts.iter().any(|x| x.name == c.name) {
                self.contexts.push(c);
            }
        }
        self.current_context = self.current_context.or(other.current_context);
        self
    }

    /// The cluster and user of the named (or current) context. A named context that does not
    /// exist is an error; no current context is not.
    fn context(&self, name: Option<&str>) -> anyhow::Result<Option<(Cluster, User)>> {
        let Some(wanted) = name
            .or(self.current_context.as_deref())
            .filter(|n| !n.is_empty())
        else {
            return Ok(None);
        };
        let Some(ctx) = self.contexts.iter().find(|c| c.name == wanted) else {
            bail!("context {wanted:?} is not in the kubeconfig");
        };
        let cluster = self
            .clusters
            .iter()
            .find(|c| c.name == ctx.context.cluster)
            .with_context(|| {
                format!(
                    "cluster {:?} of context {wanted:?} is not in the kubeconfig",
                    ctx.context.cluster
                )
            })?;
        let user = self
            .users
            .iter()
            .find(|u| u.name == ctx.context.user)
            .map(|u| u.user.clone())
            .unwrap_or_default();
        Ok(Some((cluster.cluster.clone(), user)))
    }
}

// === impl User ===

impl User {
    /// Whether this user authenticates without a token, as a Kubernetes cluster's admin does.
    fn needs_kube(&self) -> bool {
        self.token.as_ref().is_none_or(String::is_empty)
            && self.token_file.is_none()
            && (self.client_certificate_data.is_some()
                || self.client_certificate.is_some()
                || self.exec.is_some()
                || self.auth_provider.is_some())
    }

    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(t) = self.token.as_ref().filter(|t| !t.is_empty()) {
            return Ok(Some(t.clone()));
        }
        match &self.token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading tokenFile {}", path.display()))?;
                Ok(Some(text.trim().to_string()))
            }
            None => Ok(None),
        }
    }
}

/// The CLI speaks plain HTTP only: a loopback `https://` server is reached over `http://` on
/// the same port (Nimbus's API port speaks both); any other HTTPS server is not supported.
fn plain_http(server: &str) -> anyhow::Result<String> {
    match server.strip_prefix("https://") {
        Some(rest) if is_loopback(server) => Ok(format!("http://{rest}")),
        Some(_) => bail!(
            "{server}: the nimbus CLI does not speak HTTPS yet; use kubectl, or a loopback Nimbus server"
        ),
        None => Ok(server.to_string()),
    }
}

/// Whether two server URLs name the same host and port (the scheme may differ, see
/// [`plain_http`]).
fn same_server(a: &str, b: &str) -> bool {
    authority(a).eq_ignore_ascii_case(authority(b))
}

fn authority(server: &str) -> &str {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    rest.split('/').next().unwrap_or("")
}

/// Whether the URL's host is this machine, as an HTTP client would connect: parsed as a URL
/// (WHATWG), so `http://127.0.0.1:8081@evil.example` (userinfo) or `http://evil.example?@127.0.0.1`
/// is the other host, never loopback (issue #13: the token was sent there).
fn is_loopback(server: &str) -> bool {
    let with_scheme = match server.contains("://") {
        true => server.to_string(),
        false => format!("http://{server}"),
    };
    let Ok(url) = reqwest::Url::parse(&with_scheme) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(dir: &Path) -> Sources {
        Sources {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn token_is_created_once_private_and_reused() {
        let dir = tempdir();
        let t = load_or_create_token(&dir).unwrap();
        assert_eq!(t.len(), 2 * TOKEN_BYTES);
        let mode = std::fs::metadata(token_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_create_token(&dir).unwrap(), t);
        std::fs::set_permissions(token_path(&dir), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(load_or_create_token(&dir).unwrap(), t);
        let mode = std::fs::metadata(token_path(&dir))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn printed_kubeconfig_reads_back() {
        let dir = tempdir();
        let path = write(
            &dir,
            "config",
            &render("https://127.0.0.1:9", "Q0E=", "tok"),
        );
        let src = Sources {
            kubeconfig: Some(path),
            ..sources(&dir)
        };
        let creds = resolve(&src).unwrap();
        assert_eq!(
            creds,
            Credentials {
                server: "http://127.0.0.1:9".into(),
                token: Some("tok".into()),
                kube: false,
            }
        );
    }

    #[test]
    fn flags_win_and_kubeconfig_tokens_stay_with_their_server() {
        let dir = tempdir();
        let path = write(
            &dir,
            "config",
            &render("https://10.0.0.1:6443", "Q0E=", "cluster-secret"),
        );
        let src = Sources {
            kubeconfig_env: Some(format!("{}:/nonexistent", path.display())),
            server: Some("http://127.0.0.1:8081/".into()),
            ..sources(&dir)
        };
        // Another server: the cluster's token is not sent; no local token file either.
        assert_eq!(
            resolve(&src).unwrap(),
            Credentials {
                server: "http://127.0.0.1:8081".into(),
                token: None,
                kube: false,
            }
        );
        std::fs::write(token_path(&dir), "local\n").unwrap();
        assert_eq!(resolve(&src).unwrap().token.as_deref(), Some("local"));
        let src = Sources {
            token: Some("flag".into()),
            ..src
        };
        assert_eq!(resolve(&src).unwrap().token.as_deref(), Some("flag"));
    }

    #[test]
    fn contexts_and_merging() {
        let dir = tempdir();
        let a = write(&dir, "a", &render("https://127.0.0.1:1", "Q0E=", "one"));
        let b = write(
            &dir,
            "b",
            "clusters:\n- name: other\n  cluster:\n    server: http://127.0.0.1:2\nusers:\n- name: u\n  user:\n    token: two\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: u\ncurrent-context: other\n",
        );
        let env = format!("{}:{}", a.display(), b.display());
        let src = Sources {
            kubeconfig_env: Some(env),
            ..sources(&dir)
        };
        assert_eq!(
            resolve(&src).unwrap().token.as_deref(),
            Some("one"),
            "first current-context wins"
        );
        let src = Sources {
            context: Some("other".into()),
            ..src
        };
        assert_eq!(
            resolve(&src).unwrap(),
            Credentials {
                server: "http://127.0.0.1:2".into(),
                token: Some("two".into()),
                kube: false,
            }
        );
        let src = Sources {
            context: Some("missing".into()),
            ..src
        };
        assert!(resolve(&src).is_err());
    }

    #[test]
    fn a_cluster_context_without_a_token_is_used_through_kube_rs() {
        let dir = tempdir();
        let path = write(
            &dir,
            "config",
            "clusters:\n- name: k\n  cluster:\n    server: https://127.0.0.1:6443\nusers:\n- name: admin\n  user:\n    client-certificate-data: Q0E=\n    client-key-data: Q0E=\ncontexts:\n- name: k\n  context:\n    cluster: k\n    user: admin\ncurrent-context: k\n",
        );
        let src = Sources {
            kubeconfig: Some(path),
            ..sources(&dir)
        };
        let creds = resolve(&src).unwrap();
        assert!(creds.kube, "{creds:?}");
        assert_eq!(
            creds.server, "https://127.0.0.1:6443",
            "not turned into plain HTTP"
        );
        let flagged = Sources {
            server: Some("http://127.0.0.1:8081".into()),
            ..src
        };
        assert!(
            !resolve(&flagged).unwrap().kube,
            "--server means Nimbus's API"
        );
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("http://127.0.0.1:8081"));
        assert!(is_loopback("http://localhost"));
        assert!(is_loopback("http://[::1]:80/x"));
        assert!(!is_loopback("https://10.1.2.3:6443"));
        assert!(!is_loopback("http://example.com"));
        // Issue #13, 10: userinfo, queries and fragments do not make another host loopback.
        assert!(!is_loopback("http://127.0.0.1:8081@evil.example"));
        assert!(!is_loopback("http://127.0.0.1@evil.example:8081/"));
        assert!(!is_loopback("http://evil.example?@127.0.0.1"));
        assert!(!is_loopback("http://evil.example#@127.0.0.1"));
        assert!(!is_loopback("http://localhost.evil.example"));
        assert!(is_loopback("127.0.0.1:8081"));
    }

    /// A fresh directory, removed when dropped.
    struct TempDir(PathBuf);

    impl std::ops::Deref for TempDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tempdir() -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("nimbus-kubeconfig-{}", random_token().unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}
