//! One enum over the four resource kinds, so stores, the API server and the CLI can handle any of
//! them without four copies of the same code.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

use crate::serving::{Configuration, Revision, Route, Service};

/// The resource kinds Nimbus serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Configuration,
    Revision,
    Route,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Service,
        Kind::Configuration,
        Kind::Revision,
        Kind::Route,
    ];

    /// `Service`, `Configuration`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => Service::KIND,
            Kind::Configuration => Configuration::KIND,
            Kind::Revision => Revision::KIND,
            Kind::Route => Route::KIND,
        }
    }

    /// `services`, `configurations`, ...
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Service => Service::PLURAL,
            Kind::Configuration => Configuration::PLURAL,
            Kind::Revision => Revision::PLURAL,
            Kind::Route => Route::PLURAL,
        }
    }

    /// Accepts kind names, plurals, singulars and kubectl short names (`ksvc`, `rev`).
    pub fn parse(s: &str) -> Option<Kind> {
        match s.to_ascii_lowercase().as_str() {
            "service" | "services" | "ksvc" | "kservice" | "svc" => Some(Kind::Service),
            "configuration" | "configurations" | "config" | "cfg" => Some(Kind::Configuration),
            "revision" | "revisions" | "rev" => Some(Kind::Revision),
            "route" | "routes" | "rt" => Some(Kind::Route),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Any resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Object {
    Service(Service),
    Configuration(Configuration),
    Revision(Revision),
    Route(Route),
}

macro_rules! each {
    ($self:expr, $o:ident => $e:expr) => {
        match $self {
            Object::Service($o) => $e,
            Object::Configuration($o) => $e,
            Object::Revision($o) => $e,
            Object::Route($o) => $e,
        }
    };
}

impl Object {
    pub fn kind(&self) -> Kind {
        match self {
            Object::Service(_) => Kind::Service,
            Object::Configuration(_) => Kind::Configuration,
            Object::Revision(_) => Kind::Revision,
            Object::Route(_) => Kind::Route,
        }
    }

    pub fn metadata(&self) -> &ObjectMeta {
        each!(self, o => &o.metadata)
    }

    pub fn metadata_mut(&mut self) -> &mut ObjectMeta {
        each!(self, o => &mut o.metadata)
    }

    pub fn name(&self) -> &str {
        self.metadata().name.as_deref().unwrap_or("")
    }

    pub fn namespace(&self) -> &str {
        self.metadata().namespace.as_deref().unwrap_or("default")
    }

    /// Fill in `apiVersion` and `kind`.
    pub fn set_type_meta(&mut self) {
        let kind = self.kind().as_str().to_string();
        each!(self, o => {
            o.api_version = crate::API_VERSION.to_string();
            o.kind = kind;
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Deserialize a JSON value of a known kind.
    pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Object, serde_json::Error> {
        Ok(match kind {
            Kind::Service => Object::Service(serde_json::from_value(value)?),
            Kind::Configuration => Object::Configuration(serde_json::from_value(value)?),
            Kind::Revision => Object::Revision(serde_json::from_value(value)?),
            Kind::Route => Object::Route(serde_json::from_value(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_aliases() {
        assert_eq!(Kind::parse("ksvc"), Some(Kind::Service));
        assert_eq!(Kind::parse("Revisions"), Some(Kind::Revision));
        assert_eq!(Kind::parse("pods"), None);
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.plural()), Some(k));
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }
}
