//! Where an import reads members from: a directory, or a tar file indexed once (member →
//! offset and size, links resolved) so members can be read in any order without
//! re-reading the archive. A gzip-compressed tar is decompressed to a scratch file first.
//! Member names are archive paths; `..` and absolute names are refused.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead as _, BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::ImageError;
use crate::spec::Compression;

/// Largest JSON member read into memory (manifests and configs are kilobytes).
const SMALL_LIMIT: u64 = 16 << 20;
/// Links followed to resolve one member name.
const MAX_LINKS: usize = 16;

/// Members of an archive, by archive path.
pub(super) trait Source {
    fn has(&self, name: &str) -> bool;
    fn size(&self, name: &str) -> Option<u64>;
    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImageError>;
    /// Name of the archive, for errors.
    fn archive(&self) -> String;

    /// A member of at most 16 MiB, whole.
    fn read_small(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        if self.size(name).is_some_and(|s| s > SMALL_LIMIT) {
            return Err(ImageError::invalid_archive(
                self.archive(),
                format!("{name} is too large"),
            ));
        }
        let mut bytes = Vec::new();
        self.open(name)?.read_to_end(&mut bytes).map_err(|e| {
            ImageError::invalid_archive(self.archive(), format!("reading {name}: {e}"))
        })?;
        Ok(bytes)
    }
}

/// `a/./b/../c` → `a/c`; `None` if it climbs out or is absolute.
fn normalise(name: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_str()?),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(parts.join("/"))
}

fn missing(archive: String, name: &str) -> ImageError {
    ImageError::invalid_archive(archive, format!("it lacks {name}"))
}

/// An image layout or unpacked archive in a directory.
pub(super) struct DirSource {
    root: PathBuf,
}

impl DirSource {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        normalise(name).map(|n| self.root.join(n))
    }
}

impl Source for DirSource {
    fn has(&self, name: &str) -> bool {
        self.path(name).is_some_and(|p| p.is_file())
    }

    fn size(&self, name: &str) -> Option<u64> {
        std::fs::metadata(self.path(name)?).ok().map(|m| m.len())
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImageError> {
        let path = self
            .path(name)
            .ok_or_else(|| missing(self.archive(), name))?;
        match File::open(&path) {
            Ok(f) => Ok(Box::new(f)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(missing(self.archive(), name))
            }
            Err(e) => Err(ImageError::io(format!("reading {}", path.display()))(e)),
        }
    }

    fn archive(&self) -> String {
        self.root.display().to_string()
    }
}

/// One tar member: its bytes, or a link to another member.
enum Member {
    Data { offset: u64, size: u64 },
    Link(String),
}

/// A tar file with an index of its members.
pub(super) struct TarSource {
    path: PathBuf,
    label: String,
    members: HashMap<String, Member>,
    /// The decompressed copy of a gzip-compressed archive (deleted on drop).
    _scratch: Option<tempfile::TempPath>,
}

impl TarSource {
    /// Index the tar at `path`; a gzip-compressed one is decompressed into `scratch` first.
    pub fn open(path: &Path, scratch: &Path) -> Result<Self, ImageError> {
        let label = path.display().to_string();
        let invalid = |d: String| ImageError::invalid_archive(&label, d);
        let file = File::open(path).map_err(ImageError::io(format!("opening {label}")))?;
        let mut reader = BufReader::new(file);
        let head = reader
            .fill_buf()
            .map_err(ImageError::io(format!("reading {label}")))?;
        let (tar_path, scratch_file) = match Compression::sniff(head) {
            Compression::None => (path.to_path_buf(), None),
            Compression::Gzip => {
                let tmp =
                    decompress(reader, scratch).map_err(|e| invalid(format!("bad gzip: {e}")))?;
                (tmp.to_path_buf(), Some(tmp))
            }
            Compression::Zstd => {
                return Err(invalid("zstd-compressed archives are not supported".into()));
            }
        };
        let members = index(&tar_path).map_err(|e| invalid(format!("not a tar archive: {e}")))?;
        Ok(Self {
            path: tar_path,
            label,
            members,
            _scratch: scratch_file,
        })
    }

    /// The data of `name`, following links.
    fn locate(&self, name: &str) -> Option<(u64, u64)> {
        let mut name = normalise(name)?;
        for _ in 0..MAX_LINKS {
            match self.members.get(&name)? {
                Member::Data { offset, size } => return Some((*offset, *size)),
                Member::Link(target) => name = target.clone(),
            }
        }
        None
    }
}

impl Source for TarSource {
    fn has(&self, name: &str) -> bool {
        self.locate(name).is_some()
    }

    fn size(&self, name: &str) -> Option<u64> {
        self.locate(name).map(|(_, size)| size)
    }

    fn open(&self, name: &str) -> Result<Box<dyn Read + '_>, ImageError> {
        let (offset, size) = self
            .locate(name)
            .ok_or_else(|| missing(self.archive(), name))?;
        let mut file =
            File::open(&self.path).map_err(ImageError::io(format!("opening {}", self.label)))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(ImageError::io(format!("reading {}", self.label)))?;
        Ok(Box::new(BufReader::new(file.take(size))))
    }

    fn archive(&self) -> String {
        self.label.clone()
    }
}

fn decompress(reader: impl Read, scratch: &Path) -> std::io::Result<tempfile::TempPath> {
    let mut out = tempfile::Builder::new()
        .prefix("archive-")
        .tempfile_in(scratch)?;
    std::io::copy(&mut flate2::read::MultiGzDecoder::new(reader), &mut out)?;
    Ok(out.into_temp_path())
}

/// Every regular file and link of the tar at `path`.
fn index(path: &Path) -> std::io::Result<HashMap<String, Member>> {
    let mut archive = tar::Archive::new(File::open(path)?);
    let mut members = HashMap::new();
    for entry in archive.entries_with_seek()? {
        let entry = entry?;
        let raw = entry.path()?.to_string_lossy().into_owned();
        let Some(name) = normalise(&raw) else {
            continue; // an escaping name can never be asked for
        };
        let header = entry.header();
        let member = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Member::Data {
                offset: entry.raw_file_position(),
                size: entry.size(),
            },
            tar::EntryType::Symlink => {
                let target = link_target(&entry)?;
                let parent = Path::new(&name)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned());
                let joined = format!("{}/{target}", parent.unwrap_or_default());
                match normalise(&joined) {
                    Some(t) => Member::Link(t),
                    None => continue,
                }
            }
            tar::EntryType::Link => match normalise(&link_target(&entry)?) {
                Some(t) => Member::Link(t),
                None => continue,
            },
            _ => continue,
        };
        members.insert(name, member);
    }
    Ok(members)
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>) -> std::io::Result<String> {
    let target = entry
        .link_name()?
        .ok_or_else(|| std::io::Error::other("link without target"))?;
    Ok(target.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            match link {
                Some(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, name, target).unwrap();
                }
                None => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, name, *data).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn names_normalise_and_escapes_are_none() {
        assert_eq!(normalise("./a/b/../c").as_deref(), Some("a/c"));
        assert_eq!(normalise("../x"), None);
        assert_eq!(normalise("/etc/passwd"), None);
    }

    #[test]
    fn tar_members_are_found_through_links_and_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tar_with(&[
            ("./manifest.json", None, b"[]"),
            ("a/layer.tar", None, b"layer-bytes"),
            ("b/layer.tar", Some("../a/layer.tar"), b""),
        ]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        for (file, content) in [
            ("plain.tar", bytes.clone()),
            ("packed.tar.gz", gz.finish().unwrap()),
        ] {
            let path = dir.path().join(file);
            std::fs::write(&path, content).unwrap();
            let src = TarSource::open(&path, dir.path()).unwrap();
            assert_eq!(src.read_small("manifest.json").unwrap(), b"[]");
            assert_eq!(src.read_small("b/layer.tar").unwrap(), b"layer-bytes");
            assert_eq!(src.size("a/layer.tar"), Some(11));
            assert!(!src.has("c"));
            let err = src.open("c").err().unwrap();
            assert_eq!(err.reason(), "InvalidImageArchive");
        }
    }

    #[test]
    fn garbage_is_not_a_tar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        std::fs::write(&path, vec![b'x'; 3000]).unwrap();
        let err = TarSource::open(&path, dir.path()).err().unwrap();
        assert_eq!(err.reason(), "InvalidImageArchive");
    }
}
