//! Where a revision's component lives: `image:` as an absolute path or a `file://` URL. Pure.

use std::path::PathBuf;

use crate::error::LoadError;

/// The component file named by `image`.
pub(crate) fn component_path(image: Option<&str>) -> Result<PathBuf, LoadError> {
    let image = image.map(str::trim).filter(|i| !i.is_empty());
    let image = image.ok_or(LoadError::NoImage)?;
    let path = match image.strip_prefix("file://") {
        // `file:///abs/path` (empty host) or `file://localhost/abs/path`.
        Some(rest) => rest.strip_prefix("localhost").unwrap_or(rest),
        None => image,
    };
    if path.starts_with('/') {
        Ok(PathBuf::from(percent_decode(path)))
    } else {
        Err(LoadError::UnsupportedImage {
            image: image.to_owned(),
        })
    }
}

/// Decode `%XX` escapes (as in `file:///my%20dir/f.wasm`); malformed escapes stay as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(image: &str) -> Result<String, &'static str> {
        component_path(Some(image))
            .map(|p| p.to_string_lossy().into_owned())
            .map_err(|e| e.reason())
    }

    #[test]
    fn absolute_paths_and_file_urls() {
        assert_eq!(path("/srv/f.wasm"), Ok("/srv/f.wasm".into()));
        assert_eq!(path("file:///srv/f.wasm"), Ok("/srv/f.wasm".into()));
        assert_eq!(
            path("file://localhost/srv/f.wasm"),
            Ok("/srv/f.wasm".into())
        );
        assert_eq!(path("file:///my%20dir/f.wasm"), Ok("/my dir/f.wasm".into()));
        assert_eq!(path("/odd%zz.wasm"), Ok("/odd%zz.wasm".into()));
    }

    #[test]
    fn oci_references_and_relative_paths_are_unsupported() {
        assert_eq!(path("ghcr.io/acme/f:1.0"), Err("UnsupportedImage"));
        assert_eq!(path("f.wasm"), Err("UnsupportedImage"));
        assert_eq!(path("file://host/f.wasm"), Err("UnsupportedImage"));
        assert_eq!(path("  "), Err("UnsupportedImage"));
        assert!(matches!(component_path(None), Err(LoadError::NoImage)));
    }
}
