//! From a component file to a [`ProxyPre`] (a revision's `wasi:http` proxy) or a
//! [`CommandPre`] (a task's WASI command): compile (or load the precompiled artifact from the
//! on-disk cache), link against WASI + `wasi:http`, and check the world's export. Both kinds
//! share one cache.
//!
//! Cache layout: `<data_dir>/wasm-cache/<engine>/<sha256 of the file>.cwasm`, where `<engine>`
//! is a hash of the engine's precompile compatibility (wasmtime version, target, settings).
//! Artifacts are written to a temporary file and renamed into place, so readers never see a
//! partial one. Runs on a blocking thread: compiling takes seconds.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::error::{LoadError, chain};
use crate::host::Host;

/// Whether a load compiled the component or reused a cached artifact.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Compiled,
    Cached,
}

/// The compile cache directory of `engine` under `data_dir`.
pub(crate) fn cache_dir(engine: &Engine, data_dir: &Path) -> PathBuf {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    data_dir
        .join("wasm-cache")
        .join(format!("{:016x}", hasher.finish()))
}

/// Prepare the component read from `path` (`bytes`) for per-request instantiation.
pub(crate) fn load(
    linker: &Linker<Host>,
    path: &Path,
    bytes: &[u8],
    cache: Option<&Path>,
) -> Result<(ProxyPre<Host>, Source), LoadError> {
    let (component, source) = component(linker.engine(), path, bytes, cache)?;
    let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld {
        path: path.to_owned(),
        detail: chain(&e),
    };
    let pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
    let pre = ProxyPre::new(pre).map_err(wrong_world)?;
    Ok((pre, source))
}

/// Prepare the component read from `path` (`bytes`) to run as a task: a WASI command
/// (exporting `wasi:cli/run`).
pub(crate) fn load_command(
    linker: &Linker<Host>,
    path: &Path,
    bytes: &[u8],
    cache: Option<&Path>,
) -> Result<(CommandPre<Host>, Source), LoadError> {
    let (component, source) = component(linker.engine(), path, bytes, cache)?;
    let not_a_command = |e: wasmtime::Error| LoadError::NotACommand {
        path: path.to_owned(),
        detail: chain(&e),
    };
    let pre = linker.instantiate_pre(&component).map_err(not_a_command)?;
    let pre = CommandPre::new(pre).map_err(not_a_command)?;
    Ok((pre, source))
}

/// The compiled component of `bytes`: checked to be a component, then from the cache in
/// `cache` (written there when missing) or compiled in memory.
fn component(
    engine: &Engine,
    path: &Path,
    bytes: &[u8],
    cache: Option<&Path>,
) -> Result<(Component, Source), LoadError> {
    if is_core_module(bytes) {
        return Err(LoadError::NotAComponent {
            path: path.to_owned(),
        });
    }
    if !bytes.starts_with(b"\0asm") {
        // wasmtime's error would quote the file's first bytes: never show a file's contents.
        return Err(LoadError::InvalidComponent {
            path: path.to_owned(),
            detail: "the file does not start with the WebAssembly magic bytes".into(),
        });
    }
    match cache {
        Some(dir) => cached(engine, bytes, path, dir),
        None => Ok((compile(engine, bytes, path)?, Source::Compiled)),
    }
}

/// `\0asm` followed by version 1: a core module (a component has version `0d 00 01 00`).
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm\x01\0\0\0")
}

fn compile(engine: &Engine, bytes: &[u8], path: &Path) -> Result<Component, LoadError> {
    Component::new(engine, bytes).map_err(|e| invalid(path, &e))
}

fn invalid(path: &Path, e: &wasmtime::Error) -> LoadError {
    LoadError::InvalidComponent {
        path: path.to_owned(),
        detail: chain(e),
    }
}

/// Load the precompiled artifact for `bytes` from `dir`, or compile and store it.
fn cached(
    engine: &Engine,
    bytes: &[u8],
    path: &Path,
    dir: &Path,
) -> Result<(Component, Source), LoadError> {
    let artifact = dir.join(format!("{:x}.cwasm", Sha256::digest(bytes)));
    if artifact.is_file() {
        // SAFETY: `deserialize_file` trusts the file to be wasmtime's own precompiled output.
        // This file was: only `store` below writes into the cache, always bytes returned by
        // `Engine::precompile_component` of an engine whose precompile compatibility hash
        // names the directory (so the same wasmtime version, target and settings), and it
        // writes them to a temporary file renamed into place, so the file is never partial.
        // The cache lives in Nimbus's own data directory, which is as trusted as its binary.
        // wasmtime additionally checks the artifact's header against this engine.
        match unsafe { Component::deserialize_file(engine, &artifact) } {
            Ok(component) => return Ok((component, Source::Cached)),
            Err(e) => tracing::warn!(
                artifact = %artifact.display(),
                error = %chain(&e),
                "ignoring an unusable compile cache entry"
            ),
        }
    }
    let precompiled = engine
        .precompile_component(bytes)
        .map_err(|e| invalid(path, &e))?;
    if let Err(e) = store(dir, &artifact, &precompiled) {
        tracing::warn!(artifact = %artifact.display(), error = %e, "cannot write the compile cache");
    }
    // SAFETY: `precompiled` was produced just above by `precompile_component` of this very
    // engine, which is exactly what `deserialize` requires.
    let component =
        unsafe { Component::deserialize(engine, &precompiled) }.map_err(|e| invalid(path, &e))?;
    Ok((component, Source::Compiled))
}

/// Write `bytes` to `artifact` atomically (temporary file in the same directory, then rename).
fn store(dir: &Path, artifact: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        artifact.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, artifact).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_modules_are_told_apart_from_components() {
        assert!(is_core_module(b"\0asm\x01\0\0\0rest"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0rest"));
        assert!(!is_core_module(b"(component)"));
    }
}
