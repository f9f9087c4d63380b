//! Registry credentials in Docker's `config.json` format
//! (`{"auths": {"host:port": {"auth": base64("user:pass")}}}`): [`login`] writes them (mode
//! 0600, atomically, keeping any other keys), [`credentials`] finds those for a registry.
//! Keys are matched the way Docker writes them, with or without `https://` and a path, and
//! Docker Hub under any of its names.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::ImageError;

/// The file's shape; unknown keys are kept as they are.
#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

/// Store `username`/`password` for `registry` (`host[:port]`) in `auth_file`, creating it
/// (mode 0600) if missing and replacing it atomically.
pub fn login(
    auth_file: &Path,
    registry: &str,
    username: &str,
    password: &str,
) -> Result<(), ImageError> {
    let bad = |detail: &str| ImageError::AuthFile {
        path: auth_file.to_path_buf(),
        detail: detail.to_string(),
    };
    let key = normalise(registry);
    if key.is_empty() || key.contains('/') {
        return Err(bad("the registry must be a host[:port]"));
    }
    if username.is_empty() || username.contains(':') {
        return Err(bad("the username must be non-empty and contain no ':'"));
    }
    let mut file = read(auth_file)?.unwrap_or_default();
    file.auths.retain(|k, _| normalise(k) != key);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
    file.auths.insert(
        key,
        AuthEntry {
            auth: Some(auth),
            ..Default::default()
        },
    );
    write(auth_file, &file)
}

/// The username and password stored for `registry`, if any.
pub(crate) fn credentials(
    auth_file: &Path,
    registry: &str,
) -> Result<Option<(String, String)>, ImageError> {
    let Some(file) = read(auth_file)? else {
        return Ok(None);
    };
    let key = normalise(registry);
    let Some(entry) = file
        .auths
        .iter()
        .find(|(k, _)| normalise(k) == key)
        .map(|(_, e)| e)
    else {
        return Ok(None);
    };
    decode(entry)
        .map(Some)
        .map_err(|detail| ImageError::AuthFile {
            path: auth_file.to_path_buf(),
            detail: format!("entry for {registry}: {detail}"),
        })
}

fn decode(entry: &AuthEntry) -> Result<(String, String), String> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok((u.clone(), p.clone()));
    }
    let encoded = entry.auth.as_deref().ok_or("no \"auth\" value")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("\"auth\" is not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "\"auth\" is not UTF-8".to_string())?;
    let (user, pass) = text
        .split_once(':')
        .ok_or("\"auth\" is not user:password")?;
    Ok((user.to_string(), pass.to_string()))
}

/// `https://host:port/v1/` → `host:port`; Docker Hub's names → `docker.io`.
fn normalise(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or("").to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

fn read(path: &Path) -> Result<Option<AuthFile>, ImageError> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io(format!("reading {}", path.display()))(e)),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| ImageError::AuthFile {
            path: path.to_path_buf(),
            detail: format!("not valid JSON: {e}"),
        })
}

fn write(path: &Path, file: &AuthFile) -> Result<(), ImageError> {
    let context = || format!("writing {}", path.display());
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(ImageError::io(context()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".auth-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(ImageError::io(context()))?;
    let json = serde_json::to_vec_pretty(file).expect("JSON values serialise");
    tmp.write_all(&json).map_err(ImageError::io(context()))?;
    tmp.as_file()
        .sync_all()
        .map_err(ImageError::io(context()))?;
    tmp.persist(path)
        .map_err(|e| ImageError::io(context())(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_writes_a_private_file_that_credentials_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/auth.json");
        login(&path, "127.0.0.1:5000", "alice", "s3:cret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let got = credentials(&path, "127.0.0.1:5000").unwrap();
        assert_eq!(got, Some(("alice".into(), "s3:cret".into())));
        assert_eq!(credentials(&path, "other:5000").unwrap(), None);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("YWxpY2U6czM6Y3JldA=="), "{text}");
    }

    #[test]
    fn login_replaces_and_keeps_other_entries_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://index.docker.io/v1/":{"auth":"dTpw"},"r:1":{"auth":"YTpi"}},"credsStore":"x"}"#,
        )
        .unwrap();
        login(&path, "docker.io", "new", "pw").unwrap();
        assert_eq!(
            credentials(&path, "index.docker.io").unwrap(),
            Some(("new".into(), "pw".into()))
        );
        assert_eq!(
            credentials(&path, "r:1").unwrap(),
            Some(("a".into(), "b".into()))
        );
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("credsStore")
        );
    }

    #[test]
    fn missing_file_means_no_credentials_and_bad_file_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.json");
        assert_eq!(credentials(&path, "r:1").unwrap(), None);
        std::fs::write(&path, "{").unwrap();
        let err = credentials(&path, "r:1").unwrap_err();
        assert!(err.to_string().contains("not valid JSON"), "{err}");
        std::fs::write(&path, r#"{"auths":{"r:1":{"auth":"!!"}}}"#).unwrap();
        assert!(
            credentials(&path, "r:1")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
    }

    #[test]
    fn bad_login_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        assert!(login(&path, "", "u", "p").is_err());
        assert!(login(&path, "r:1", "a:b", "p").is_err());
        assert!(!path.exists());
    }

    #[test]
    fn keys_normalise() {
        assert_eq!(normalise("https://r.example:5000/v2/"), "r.example:5000");
        assert_eq!(normalise("registry-1.docker.io"), "docker.io");
        assert_eq!(normalise("127.0.0.1:5000"), "127.0.0.1:5000");
    }
}
