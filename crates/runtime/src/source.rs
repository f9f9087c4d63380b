//! Where an instance's Secret and ConfigMap values come from when it starts: the
//! [`ConfigSource`] (the store, in embedded mode), read through [`Objects`] so that one start
//! reads each object once however many references name it. Both consumers — environment
//! variables ([`crate::env`]) and mounted volumes ([`crate::volumes`]) — fail a start the way
//! the kubelet does, with a [`ConfigError`] that names objects and keys, never values.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// The reason a start fails when a reference cannot be resolved (the kubelet's).
pub const CONFIG_ERROR_REASON: &str = "CreateContainerConfigError";

/// Which kind of object a reference names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Secret,
    ConfigMap,
}

impl SourceKind {
    /// `Secret`, `ConfigMap`
    pub fn kind(self) -> &'static str {
        match self {
            SourceKind::Secret => "Secret",
            SourceKind::ConfigMap => "ConfigMap",
        }
    }

    /// `secret`, `configmap` (as the kubelet's "not found" messages say).
    pub(crate) fn lower(self) -> &'static str {
        match self {
            SourceKind::Secret => "secret",
            SourceKind::ConfigMap => "configmap",
        }
    }
}

/// An object's values by key: a Secret's `data`, a ConfigMap's `data` and `binaryData`.
pub type Values = BTreeMap<String, Vec<u8>>;

/// Where referenced values are read (the store, in embedded mode). Called at every instance
/// start, from async code and (Wasm) from a router thread scaling from zero: implementations
/// must be quick and must not block for long.
pub trait ConfigSource: Send + Sync + 'static {
    /// The values of the Secret or ConfigMap `name` in `namespace`, or `None` when it does not
    /// exist. An `Err` says why it could not be read, without values.
    fn values(
        &self,
        namespace: &str,
        source: SourceKind,
        name: &str,
    ) -> Result<Option<Values>, String>;
}

/// Why an instance's Secret or ConfigMap references could not be resolved: reported as the
/// start's failure, with [`CONFIG_ERROR_REASON`]. Never holds a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The objects one start reads, each read from the source once however many references name
/// it.
pub(crate) struct Objects<'a> {
    source: &'a dyn ConfigSource,
    pub namespace: &'a str,
    read: HashMap<(SourceKind, String), Option<Values>>,
}

impl<'a> Objects<'a> {
    /// `source`'s objects in `namespace`; without a source, any lookup fails.
    pub fn new(
        source: Option<&'a dyn ConfigSource>,
        namespace: &'a str,
    ) -> Result<Self, ConfigError> {
        let source = source
            .ok_or_else(|| ConfigError::new("this runtime cannot read Secrets or ConfigMaps"))?;
        Ok(Self {
            source,
            namespace,
            read: HashMap::new(),
        })
    }

    /// The values of one object; an optional one that is missing has none (`None` when
    /// `optional` and missing, so callers can tell "empty" from "absent" when they need to).
    pub fn lookup(
        &mut self,
        kind: SourceKind,
        name: &str,
        optional: bool,
    ) -> Result<Option<&Values>, ConfigError> {
        let found = match self.read.entry((kind, name.to_owned())) {
            Entry::Occupied(read) => read.into_mut(),
            Entry::Vacant(unread) => {
                let values = self
                    .source
                    .values(self.namespace, kind, name)
                    .map_err(|why| {
                        ConfigError::new(format!(
                            "{} \"{name}\" cannot be read: {why}",
                            kind.lower()
                        ))
                    })?;
                unread.insert(values)
            }
        };
        match found {
            Some(values) => Ok(Some(values)),
            None if optional => Ok(None),
            None => Err(ConfigError::new(format!(
                "{} \"{name}\" not found",
                kind.lower()
            ))),
        }
    }
}

#[cfg(test)]
pub(crate) mod fixed {
    //! A [`ConfigSource`] over fixed objects, for tests.
    use super::*;

    /// One object: its kind, name and `(key, value)`s.
    pub type Object = (SourceKind, &'static str, Vec<(&'static str, &'static str)>);

    /// Objects by kind and name.
    pub struct Fixed(pub Vec<Object>);

    impl ConfigSource for Fixed {
        fn values(
            &self,
            _: &str,
            source: SourceKind,
            name: &str,
        ) -> Result<Option<Values>, String> {
            let found = self.0.iter().find(|(k, n, _)| *k == source && *n == name);
            Ok(found.map(|(_, _, kv)| {
                kv.iter()
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect()
            }))
        }
    }
}
