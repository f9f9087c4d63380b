//! Errors users see when a manifest is wrong: what, where (source, line, column, field path) and
//! what is allowed.

use std::fmt;

/// A position in a manifest (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Field path in Kubernetes notation, e.g. `spec.traffic[1].percent`.
    pub path: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// Where the field is in the source, when the parser knows.
    pub location: Option<Location>,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            location: None,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Joins field errors one per line, prefixed with their source location when known.
pub struct FieldErrorsDisplay<'a> {
    pub source: &'a str,
    pub errors: &'a [FieldError],
}

impl fmt::Display for FieldErrorsDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match e.location {
                Some(l) => write!(f, "{}:{}:{}: {e}", self.source, l.line, l.column)?,
                None => write!(f, "{}: {e}", self.source)?,
            }
        }
        Ok(())
    }
}

/// Why a manifest could not be turned into valid objects.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text is not well-formed YAML/JSON.
    #[error("{source_name}:{line}:{column}: malformed YAML/JSON: {message}")]
    Syntax {
        source_name: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A document is well-formed but has wrong fields or values.
    #[error("{}", FieldErrorsDisplay { source: &format!("{source_name} (document {})", document + 1), errors })]
    Invalid {
        source_name: String,
        document: usize,
        errors: Vec<FieldError>,
    },
}

impl ParseError {
    /// The field errors, if this is a validation error.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Invalid { errors, .. } => errors,
            Self::Syntax { .. } => &[],
        }
    }
}
