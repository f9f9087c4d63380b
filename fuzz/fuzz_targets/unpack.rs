//! The OCI layer unpacker (`nimbus_image::apply_layer`): layers applied one after another to
//! a fresh root directory, with whiteouts, opaque directories, symlinks and hard links, plain or
//! gzip-compressed — or a single layer of raw bytes, for the tar and gzip readers.
//!
//! Property: besides never panicking, nothing outside the root is created, changed, linked or
//! removed. The runs work in `run/` of a private directory on tmpfs: `run/root` is the root
//! (made afresh for each input), `run/outside` an empty directory and `run/secret` a file next
//! to it, which the generated links aim at (`../outside`, their absolute paths, `/`); after
//! every layer `run/` must hold exactly those, unchanged, and the private directory nothing but
//! `run/` and the layer blob.

#![no_main]

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

/// A private directory for this process, made once.
static BASE: LazyLock<PathBuf> = LazyLock::new(|| {
    let tmp = Path::new("/dev/shm");
    let tmp = if tmp.is_dir() {
        tmp.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    remove_stale(&tmp);
    let base = tmp.join(format!("{PREFIX}{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir(&base).expect("making the fuzz directory");
    base
});

const PREFIX: &str = "nimbus-fuzz-unpack-";

/// Remove the directories of earlier runs whose process is gone (libFuzzer exits without
/// unwinding, so nothing cleans up at exit).
fn remove_stale(tmp: &Path) {
    for entry in fs::read_dir(tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|n| n.strip_prefix(PREFIX));
        if pid.is_some_and(|pid| !Path::new("/proc").join(pid).exists()) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

const SECRET: &[u8] = b"not for layers\n";

#[derive(Arbitrary, Debug)]
enum Input {
    /// Layers built from entries whose names and link targets come from a small alphabet.
    Layers(Vec<Layer>),
    /// One layer of raw bytes.
    Raw(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct Layer {
    gzip: bool,
    entries: Vec<Entry>,
}

#[derive(Arbitrary, Debug)]
struct Entry {
    path: Name,
    kind: Kind,
    mode: u16,
    uid: u8,
    data: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
enum Kind {
    File,
    Dir,
    Symlink(Name),
    HardLink(Name),
    Fifo,
    CharDevice,
}

/// A path: optionally absolute, of a few components.
#[derive(Arbitrary, Debug)]
struct Name {
    absolute: bool,
    parts: Vec<Part>,
}

#[derive(Arbitrary, Debug)]
enum Part {
    A,
    B,
    C,
    Dot,
    DotDot,
    Empty,
    WhiteoutA,
    WhiteoutB,
    WhiteoutDotDot,
    Opaque,
    Outside,
    Secret,
    /// The absolute path of `run/outside` or `run/secret` (only sensible first).
    HostOutside,
    HostSecret,
    Other(String),
}

/// `run/`, with `outside/` and `secret` made once, and how they look.
static RUN: LazyLock<(PathBuf, Snapshot)> = LazyLock::new(|| {
    let run = BASE.join("run");
    fs::create_dir(&run).expect("making run/");
    fs::create_dir(run.join("outside")).expect("making run/outside");
    fs::write(run.join("secret"), SECRET).expect("making run/secret");
    let snapshot = Snapshot::take(&run);
    (run, snapshot)
});

fuzz_target!(|input: Input| {
    let (run, before) = &*RUN;
    let root = run.join("root");
    fs::create_dir(&root).expect("making run/root");
    let root_before = inode(&root);
    let blobs: Vec<Vec<u8>> = match input {
        Input::Raw(bytes) => vec![bytes],
        Input::Layers(layers) => layers.iter().map(|l| l.build(run)).collect(),
    };
    let blob = BASE.join("blob");
    for bytes in blobs {
        fs::write(&blob, bytes).expect("writing the layer");
        let _ = nimbus_image::apply_layer(&root, &blob, "the fuzz layer");
        check_nothing_escaped(run, before);
        assert_eq!(inode(&root), root_before, "the root itself changed");
    }
    remove(&root);
});

/// What `run/` holds besides the root, to compare after each layer.
#[derive(Debug, PartialEq)]
struct Snapshot {
    names: Vec<std::ffi::OsString>,
    outside: (u32, u32, u32, usize),
    secret: (u32, u32, u32, u64, Vec<u8>),
}

impl Snapshot {
    fn take(run: &Path) -> Snapshot {
        let mut names: Vec<_> = fs::read_dir(run)
            .expect("listing run/")
            .map(|e| e.expect("listing run/").file_name())
            .filter(|name| name != "root")
            .collect();
        names.sort();
        let dir = fs::symlink_metadata(run.join("outside")).expect("run/outside");
        assert!(dir.is_dir(), "run/outside was replaced");
        let inside = fs::read_dir(run.join("outside"))
            .expect("listing run/outside")
            .count();
        let file = fs::symlink_metadata(run.join("secret")).expect("run/secret");
        assert!(file.is_file(), "run/secret was replaced");
        let text = fs::read(run.join("secret")).expect("reading run/secret");
        Snapshot {
            names,
            outside: (dir.mode(), dir.uid(), dir.gid(), inside),
            secret: (file.mode(), file.uid(), file.gid(), file.nlink(), text),
        }
    }
}

/// A directory's identity, type, mode and owner (not following a symlink).
fn inode(path: &Path) -> (u64, u32, u32, u32) {
    let meta = fs::symlink_metadata(path).expect("the root");
    (meta.ino(), meta.mode(), meta.uid(), meta.gid())
}

fn check_nothing_escaped(run: &Path, before: &Snapshot) {
    let mut names: Vec<String> = fs::read_dir(&*BASE)
        .expect("listing the fuzz directory")
        .map(|e| {
            e.expect("listing")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(names, ["blob", "run"], "something was made next to run/");
    assert_eq!(
        &Snapshot::take(run),
        before,
        "something outside the root changed"
    );
}

/// Remove `dir`, first making every directory in it writable if need be (a layer may leave
/// directories of mode 000, which only root could remove as they are).
fn remove(dir: &Path) {
    if fs::remove_dir_all(dir).is_ok() {
        return;
    }
    fn open_up(dir: &Path) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
    open_up(dir);
    fs::remove_dir_all(dir).expect("removing run/root");
}

// === building layers ===

impl Layer {
    fn build(&self, run: &Path) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            if let Some(header) = entry.header(run) {
                tar.append(&header, entry.data.as_slice())
                    .expect("writing to memory");
            }
        }
        let tar = tar.into_inner().expect("writing to memory");
        if !self.gzip {
            return tar;
        }
        gzip_stored(&tar)
    }
}

/// `data` as a gzip member of stored (uncompressed) deflate blocks: the unpacker's gzip path
/// without compressing in the harness, which would cost more than the unpacking. The raw
/// inputs cover compressed streams.
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    let mut blocks = data.chunks(0xffff).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let len = block.len() as u16;
        out.push(u8::from(blocks.peek().is_none()));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    let mut crc = flate2::Crc::new();
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

impl Entry {
    /// A GNU header naming the entry byte for byte (`tar::Builder` would refuse `..`), or
    /// `None` when a name does not fit its field.
    fn header(&self, run: &Path) -> Option<tar::Header> {
        let mut header = tar::Header::new_gnu();
        let (kind, link) = match &self.kind {
            Kind::File => (tar::EntryType::Regular, None),
            Kind::Dir => (tar::EntryType::Directory, None),
            Kind::Symlink(to) => (tar::EntryType::Symlink, Some(to.bytes(run))),
            Kind::HardLink(to) => (tar::EntryType::Link, Some(to.bytes(run))),
            Kind::Fifo => (tar::EntryType::Fifo, None),
            Kind::CharDevice => (tar::EntryType::Char, None),
        };
        header.set_entry_type(kind);
        let gnu = header.as_gnu_mut()?;
        put(&mut gnu.name, &self.path.bytes(run))?;
        if let Some(link) = link {
            put(&mut gnu.linkname, &link)?;
        }
        header.set_mode(u32::from(self.mode));
        header.set_uid(u64::from(self.uid));
        header.set_gid(u64::from(self.uid));
        let size = match kind {
            tar::EntryType::Regular => self.data.len() as u64,
            _ => 0,
        };
        header.set_size(size);
        header.set_cksum();
        Some(header)
    }
}

/// Copy `bytes` into a NUL-padded header field, if they fit.
fn put(field: &mut [u8], bytes: &[u8]) -> Option<()> {
    let slot = field.get_mut(..bytes.len())?;
    slot.copy_from_slice(bytes);
    Some(())
}

impl Name {
    fn bytes(&self, run: &Path) -> Vec<u8> {
        let parts: Vec<String> = self.parts.iter().map(|p| p.text(run)).collect();
        let joined = parts.join("/");
        match self.absolute {
            true => format!("/{joined}").into_bytes(),
            false => joined.into_bytes(),
        }
    }
}

impl Part {
    fn text(&self, run: &Path) -> String {
        let host = |name: &str| run.join(name).to_string_lossy().into_owned();
        match self {
            Part::A => "a".into(),
            Part::B => "b".into(),
            Part::C => "c".into(),
            Part::Dot => ".".into(),
            Part::DotDot => "..".into(),
            Part::Empty => String::new(),
            Part::WhiteoutA => ".wh.a".into(),
            Part::WhiteoutB => ".wh.b".into(),
            Part::WhiteoutDotDot => ".wh...".into(),
            Part::Opaque => ".wh..wh..opq".into(),
            Part::Outside => "outside".into(),
            Part::Secret => "secret".into(),
            Part::HostOutside => host("outside"),
            Part::HostSecret => host("secret"),
            Part::Other(s) => s.replace('\0', ""),
        }
    }
}
