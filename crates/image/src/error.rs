//! [`ImageError`]: what went wrong with an image, worded for the user, with a stable
//! CamelCase [`reason`](ImageError::reason) for revision status conditions.

use std::path::PathBuf;

/// Why an image could not be stored or found.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference {reference:?}: {detail}")]
    InvalidName { reference: String, detail: String },

    #[error("image {reference} was not found in registry {registry}: {detail}")]
    NotFound {
        reference: String,
        registry: String,
        detail: String,
    },

    #[error(
        "registry {registry} is unavailable: {detail}; check the address and that the registry \
         is running (a registry without TLS must be listed as insecure)"
    )]
    Unavailable { registry: String, detail: String },

    #[error(
        "registry {registry} refused access to {reference}: {detail}; \
         run `nimbus registry login {registry}`"
    )]
    Unauthorized {
        reference: String,
        registry: String,
        detail: String,
    },

    #[error(
        "digest mismatch for {what}: expected {expected}, got {actual}; the content is \
         corrupt or was tampered with, and nothing was stored"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    #[error("{archive} is invalid: {detail}; nothing was stored")]
    InvalidArchive { archive: String, detail: String },

    #[error("image {reference} is not supported: {detail}")]
    Unsupported { reference: String, detail: String },

    #[error("image store: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("registry credentials file {path}: {detail}")]
    AuthFile { path: PathBuf, detail: String },
}

impl ImageError {
    /// A CamelCase reason for status conditions.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidName { .. } => "InvalidImageName",
            Self::NotFound { .. } => "ImageNotFound",
            Self::Unavailable { .. } => "RegistryUnavailable",
            Self::Unauthorized { .. } => "RegistryUnauthorized",
            Self::DigestMismatch { .. } => "DigestMismatch",
            Self::InvalidArchive { .. } => "InvalidImageArchive",
            Self::Unsupported { .. } => "UnsupportedImage",
            Self::Io { .. } | Self::AuthFile { .. } => "ImageStoreError",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. } | Self::Io { .. })
    }

    /// An [`ImageError::Io`] maker for `map_err`.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }

    pub(crate) fn invalid_archive(archive: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::InvalidArchive {
            archive: archive.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(reference: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Unsupported {
            reference: reference.into(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_says_how_to_log_in() {
        let e = ImageError::Unauthorized {
            reference: "r.example:5000/a:1".into(),
            registry: "r.example:5000".into(),
            detail: "401".into(),
        };
        assert_eq!(e.reason(), "RegistryUnauthorized");
        assert!(
            e.to_string()
                .contains("nimbus registry login r.example:5000")
        );
    }

    #[test]
    fn only_unavailable_and_io_are_transient() {
        let io = ImageError::io("x")(std::io::Error::other("disk"));
        assert!(io.is_transient());
        assert_eq!(io.reason(), "ImageStoreError");
        assert!(!ImageError::unsupported("a", "b").is_transient());
    }
}
