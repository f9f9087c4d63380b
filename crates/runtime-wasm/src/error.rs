//! Why a revision's component cannot be served, worded for the user: each variant has a
//! CamelCase reason (reported as `Ready=False` with that reason) and a message naming the image
//! or the manifest field at fault.

use std::path::PathBuf;

use crate::limits::human_bytes;

/// A component that could not be loaded. [`LoadError::reason`] is what the revision's `Ready`
/// condition shows.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The spec names no image at all.
    #[error("the wasm runtime needs `image:` naming a .wasm component file")]
    NoImage,
    /// The image is not a local file reference (for example an OCI reference).
    #[error(
        "image {image:?} is not a local component: give an absolute path or a file:// URL to a \
         .wasm file (OCI artifacts are not supported yet)"
    )]
    UnsupportedImage { image: String },
    /// The file does not exist or cannot be read.
    #[error("cannot read component {}: {source}", path.display())]
    ImageNotFound {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The path is outside every directory components may be read from.
    #[error(
        "image {} is outside the directories Wasm components may be read from ({}); put the \
         component there, or start nimbus serve with --wasm-dir naming its directory",
        path.display(),
        allowed.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    ImageNotAllowed {
        path: PathBuf,
        allowed: Vec<PathBuf>,
    },
    /// The path names something other than a regular file (a device, a FIFO, a directory).
    #[error("image {} is not a regular file; name a .wasm component file", path.display())]
    NotARegularFile { path: PathBuf },
    /// The file is larger than the runtime reads.
    #[error(
        "component {} is {size} bytes, more than the {maximum} bytes a component may have",
        path.display()
    )]
    ComponentTooLarge {
        path: PathBuf,
        size: u64,
        maximum: u64,
    },
    /// The file is a core WebAssembly module, not a component.
    #[error(
        "{} is a core WebAssembly module, not a component; build for wasm32-wasip2 (or wrap it \
         with `wasm-tools component new`)",
        path.display()
    )]
    NotAComponent { path: PathBuf },
    /// The file is not valid WebAssembly, or it failed to compile.
    #[error("{} is not a valid WebAssembly component: {detail}", path.display())]
    InvalidComponent { path: PathBuf, detail: String },
    /// The component is valid but imports something the runtime does not provide, or does not
    /// export `wasi:http/incoming-handler`.
    #[error(
        "{} does not target the wasi:http/proxy world (it must export \
         wasi:http/incoming-handler@0.2 and import only WASI 0.2 interfaces): {detail}",
        path.display()
    )]
    WrongWorld { path: PathBuf, detail: String },
    /// A task's component is valid but is not a WASI command: it does not export
    /// `wasi:cli/run` (an HTTP component, say), or imports something the runtime does not
    /// provide.
    #[error(
        "{} is not a WASI command: a task needs a command component (a program with \
         `fn main`, built for wasm32-wasip2, exporting wasi:cli/run@0.2 and importing only \
         WASI 0.2 interfaces): {detail}",
        path.display()
    )]
    NotACommand { path: PathBuf, detail: String },
    /// The revision's `resources.limits.memory` is more than the pooling allocator gives one
    /// instance. Checked before anything is compiled.
    #[error(
        "resources.limits.memory asks for {requested} bytes ({}), more than the Wasm runtime's \
         per-instance maximum of {maximum} bytes ({}); lower resources.limits.memory to at most \
         {maximum} (or raise the runtime's max_memory_bytes)",
        human_bytes(*requested),
        human_bytes(*maximum as u64)
    )]
    MemoryLimitTooLarge { requested: u64, maximum: usize },
    /// The compile cache could not be written (the component itself is fine).
    #[error("cannot write the compiled component to {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The compile task did not finish (it panicked or the runtime is shutting down).
    #[error("compiling the component was interrupted")]
    Interrupted,
}

impl LoadError {
    /// The CamelCase reason shown in the revision's conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NoImage | Self::UnsupportedImage { .. } => "UnsupportedImage",
            Self::ImageNotFound { .. } => "ImageNotFound",
            Self::ImageNotAllowed { .. } => "ImageNotAllowed",
            Self::NotARegularFile { .. } => "UnsupportedImage",
            Self::ComponentTooLarge { .. } => "ComponentTooLarge",
            Self::NotAComponent { .. } | Self::InvalidComponent { .. } => "InvalidComponent",
            Self::WrongWorld { .. } | Self::NotACommand { .. } => "WrongWorld",
            Self::MemoryLimitTooLarge { .. } => "MemoryLimitTooLarge",
            Self::Cache { .. } => "CompileCacheError",
            Self::Interrupted => "CompileInterrupted",
        }
    }
}

/// `error: cause: cause…` on one line (wasmtime errors keep their detail in the chain).
pub(crate) fn chain(error: &wasmtime::Error) -> String {
    format!("{error:#}")
}
