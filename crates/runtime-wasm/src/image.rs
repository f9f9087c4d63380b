//! Where a revision's component lives: `image:` as an absolute path or a `file://` URL, and
//! reading it safely (issue #13): only a regular file, only under the directories the runtime
//! allows (resolved by the kernel beneath that directory, so no symlink or `..` leads out),
//! never more than the size limit. Without this a revision could make the server (root)
//! read `/dev/zero` until memory ran out, on every restart, or any host file.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use crate::error::LoadError;

/// The component file at `path`: under one of `dirs` when given, a regular file, at most
/// `max` bytes.
pub(crate) fn read_component(
    path: &Path,
    dirs: Option<&[PathBuf]>,
    max: u64,
) -> Result<Vec<u8>, LoadError> {
    let not_found = |source: std::io::Error| LoadError::ImageNotFound {
        path: path.to_owned(),
        source,
    };
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match dirs {
        None => rustix::fs::open(path, flags, Mode::empty()).map_err(|e| not_found(e.into()))?,
        Some(dirs) => {
            let Some((dir, rel)) = dirs
                .iter()
                .find_map(|d| Some((d, path.strip_prefix(d).ok()?)))
            else {
                return Err(LoadError::ImageNotAllowed {
                    path: path.to_owned(),
                    allowed: dirs.to_vec(),
                });
            };
            let dir_fd = rustix::fs::open(
                dir,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| not_found(e.into()))?;
            // BENEATH: `..` or a symlink leading out of the directory fails (EXDEV).
            let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&dir_fd, rel, flags, Mode::empty(), resolve) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::XDEV) => {
                    return Err(LoadError::ImageNotAllowed {
                        path: path.to_owned(),
                        allowed: dirs.to_vec(),
                    });
                }
                Err(e) => return Err(not_found(e.into())),
            }
        }
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| not_found(e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(LoadError::NotARegularFile {
            path: path.to_owned(),
        });
    }
    let size = stat.st_size.max(0) as u64;
    let too_large = |size| LoadError::ComponentTooLarge {
        path: path.to_owned(),
        size,
        maximum: max,
    };
    if size > max {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(not_found)?;
    if bytes.len() as u64 > max {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

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

    fn allowed(dir: &Path) -> Vec<PathBuf> {
        vec![dir.canonicalize().unwrap()]
    }

    /// Issue #13, 7: only regular files under the allowed directories, no way out through
    /// `..` or a symlink, nothing quoted, and a size cap.
    #[test]
    fn components_are_regular_files_under_the_allowed_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = allowed(tmp.path());
        let dir = &dirs[0];
        std::fs::write(dir.join("ok.wasm"), b"\0asm\x0d\0\x01\0").unwrap();
        assert_eq!(
            read_component(&dir.join("ok.wasm"), Some(&dirs), 1024)
                .unwrap()
                .len(),
            8
        );
        for outside in ["/dev/zero", "/etc/passwd"] {
            let err = read_component(Path::new(outside), Some(&dirs), 1024).unwrap_err();
            assert_eq!(err.reason(), "ImageNotAllowed", "{outside}: {err}");
        }
        let up = dir.join("../../../../../../../../etc/passwd");
        let err = read_component(&up, Some(&dirs), 1024).unwrap_err();
        assert_eq!(err.reason(), "ImageNotAllowed", "{err}");
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link.wasm")).unwrap();
        let err = read_component(&dir.join("link.wasm"), Some(&dirs), 1024).unwrap_err();
        assert_eq!(err.reason(), "ImageNotAllowed", "{err}");
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.wasm")).unwrap();
        let err = read_component(&dir.join("zero.wasm"), Some(&dirs), 1024).unwrap_err();
        assert_eq!(err.reason(), "ImageNotAllowed", "{err}");
        std::fs::create_dir(dir.join("sub.wasm")).unwrap();
        let err = read_component(&dir.join("sub.wasm"), Some(&dirs), 1024).unwrap_err();
        assert!(matches!(err, LoadError::NotARegularFile { .. }), "{err}");
        std::fs::write(dir.join("big.wasm"), vec![0u8; 2048]).unwrap();
        let err = read_component(&dir.join("big.wasm"), Some(&dirs), 1024).unwrap_err();
        assert_eq!(err.reason(), "ComponentTooLarge", "{err}");
        // A device is refused even where any path is allowed: it is not a regular file.
        let err = read_component(Path::new("/dev/zero"), None, 1024).unwrap_err();
        assert!(matches!(err, LoadError::NotARegularFile { .. }), "{err}");
    }
}
