//! Why a trigger could not be read: the `reason` and message of the ScaledObject's `Ready`
//! condition (KEDA's `ScaledObjectCheckFailed`-style reasons), so the user sees which trigger
//! failed and why without the others being stopped.

use std::time::Duration;

/// One trigger's failure.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// The metadata (with its TriggerAuthentication and environment) is not valid.
    #[error("{0}")]
    Metadata(String),
    /// The TriggerAuthentication, or a Secret/ConfigMap it names, is missing.
    #[error("{0}")]
    Auth(String),
    /// The broker could not be reached, refused the credentials or failed the command.
    #[error("{0}")]
    Broker(String),
    /// The stream, consumer, group or queue does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

impl TriggerError {
    /// The condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            TriggerError::Metadata(_) => "TriggerMetadataInvalid",
            TriggerError::Auth(_) => "TriggerAuthenticationFailed",
            TriggerError::Broker(_) => "TriggerError",
            TriggerError::NotFound(_) => "TriggerSourceNotFound",
            TriggerError::Timeout(_) => "TriggerTimeout",
        }
    }

    pub(crate) fn redis(e: redis::RedisError) -> Self {
        TriggerError::Broker(format!("redis: {e}"))
    }

    pub(crate) fn amqp(e: lapin::Error) -> Self {
        TriggerError::Broker(format!("rabbitmq: {e}"))
    }

    pub(crate) fn http(e: reqwest::Error) -> Self {
        TriggerError::Broker(format!("nats monitoring endpoint: {e}"))
    }
}
