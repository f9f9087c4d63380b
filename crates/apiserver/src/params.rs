//! Query parameters of writes (`fieldManager`, `fieldValidation`, `force`, `dryRun`) and how
//! unknown fields are treated, as in Kubernetes' `CreateOptions`/`UpdateOptions`/`PatchOptions`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query};
use http::request::Parts;
use serde::Deserialize;

use crate::status::ApiError;

/// The query parameters of POST, PUT, PATCH and DELETE; others are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteParams {
    /// Who makes the change, recorded in `metadata.managedFields`; required for apply patches.
    pub field_manager: Option<String>,
    /// `Strict` (the default here), `Warn` or `Ignore`.
    pub field_validation: Option<String>,
    /// Apply patches only: take fields owned by other managers instead of failing.
    pub force: Option<String>,
    /// `All`: validate and answer, but store nothing.
    pub dry_run: Option<String>,
}

/// What to do with fields the types do not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldValidation {
    /// Reject the request (422 naming every unknown field). Nimbus's default, unlike Kubernetes'
    /// `Warn`: a misspelt field silently dropped is a bug the user finds much later.
    Strict,
    /// Drop them and say so in `Warning` headers.
    Warn,
    /// Drop them silently.
    Ignore,
}

// === impl WriteParams ===

impl WriteParams {
    /// `fieldValidation`, defaulting to [`FieldValidation::Strict`].
    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        match self.field_validation.as_deref() {
            None | Some("") | Some("Strict") => Ok(FieldValidation::Strict),
            Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            ))),
        }
    }

    /// The field manager, or the default one for this kind of request.
    pub fn manager_or(&self, default: &str) -> String {
        self.field_manager
            .clone()
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| default.to_string())
    }

    pub fn force(&self) -> bool {
        self.force.as_deref().is_some_and(is_true)
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.dry_run.as_deref() {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::BadRequest(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            ))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for WriteParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query: Result<Query<Self>, QueryRejection> =
            Query::from_request_parts(parts, state).await;
        query
            .map(|Query(p)| p)
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// Kubernetes' boolean query values (`true`, `1`, `t`, in any case).
pub fn is_true(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "t")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_defaults_to_strict_and_rejects_unknown_values() {
        let p = WriteParams::default();
        assert_eq!(p.field_validation().unwrap(), FieldValidation::Strict);
        let p = WriteParams {
            field_validation: Some("Warn".into()),
            ..Default::default()
        };
        assert_eq!(p.field_validation().unwrap(), FieldValidation::Warn);
        let p = WriteParams {
            field_validation: Some("warn".into()),
            ..Default::default()
        };
        assert!(p.field_validation().is_err());
    }

    #[test]
    fn force_dry_run_and_manager() {
        let p = WriteParams {
            force: Some("true".into()),
            dry_run: Some("All".into()),
            field_manager: Some(String::new()),
            ..Default::default()
        };
        assert!(p.force());
        assert!(p.dry_run().unwrap());
        assert_eq!(p.manager_or("x"), "x");
    }
}
