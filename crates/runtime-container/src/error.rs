//! [`ContainerError`]: why an instance's container could not be prepared or started, each with
//! the CamelCase reason the revision's `Ready=False` condition shows (Kubernetes' own words
//! where it has them).

use std::path::PathBuf;

use nimbus_image::ImageError;
use nimbus_runtime_process::LaunchError;
use oci_spec::OciSpecError;

use crate::network::NetworkError;
use crate::user::UserError;
use crate::userns::UserNsError;

/// Why a container cannot be prepared or started.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Pulling, importing or unpacking the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),

    #[error("the container has no image: set `image` in the manifest")]
    NoImage,

    #[error(
        "image {reference} has no ENTRYPOINT or CMD and the container sets no command: set \
         `command` in the manifest or ENTRYPOINT/CMD in the image"
    )]
    NoCommand { reference: String },

    /// The image's `User` names an account its /etc/passwd or /etc/group lacks.
    #[error(transparent)]
    User(#[from] UserError),

    #[error("the image of revision {revision} was not prepared before starting an instance")]
    NotPrepared { revision: String },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("building the container's runtime spec: {0}")]
    Spec(#[from] OciSpecError),

    #[error("setting up the container's network: {0}")]
    Network(#[from] NetworkError),

    /// The container cannot have a user namespace (its ids, its network, or the host).
    #[error(transparent)]
    UserNamespace(#[from] UserNsError),
}

impl ContainerError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Image(e) => e.reason(),
            Self::NoImage => "InvalidImageName",
            Self::NoCommand { .. } => "NoCommand",
            Self::User(_) => "CreateContainerConfigError",
            Self::NotPrepared { .. } | Self::Io { .. } | Self::Spec(_) => "CreateContainerError",
            // The kubelet's word when the pod's network cannot be set up.
            Self::Network(_) => "FailedCreatePodSandBox",
            Self::UserNamespace(e) if e.is_config() => "CreateContainerConfigError",
            Self::UserNamespace(_) => "CreateContainerError",
        }
    }

    /// An [`ContainerError::Io`] maker for `map_err`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}

impl From<ContainerError> for LaunchError {
    fn from(e: ContainerError) -> Self {
        LaunchError::new(e.reason(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_messages_reach_the_launch_error() {
        let e: LaunchError = ContainerError::NoCommand {
            reference: "r/x:1".into(),
        }
        .into();
        assert_eq!(e.reason, "NoCommand");
        assert!(e.message.contains("set `command` in the manifest"));
        let e: LaunchError = ContainerError::User(UserError::UnknownUser("bob".into())).into();
        assert_eq!(e.reason, "CreateContainerConfigError");
        assert!(e.message.contains("\"bob\""));
        let e: LaunchError = ContainerError::from(UserNsError::HostNetwork).into();
        assert_eq!(e.reason, "CreateContainerConfigError");
        assert!(e.message.contains("nimbus.dev/host-network"));
        let e: LaunchError = ContainerError::from(UserNsError::NeedsNetwork).into();
        assert_eq!(e.reason, "CreateContainerError");
    }
}
