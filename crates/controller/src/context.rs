//! What every reconciler gets: access to resources, runtimes, the ingress, config and the clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use nimbus_api::networking::Ingress;
use nimbus_runtime::Runtime;

use crate::ingress::IngressSink;
use crate::resources::Resources;
use crate::scaler::Scaler;

/// Settings that shape what the controller produces.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Route hosts are `<name>.<namespace>.<domain>`.
    pub domain: String,
    /// Port appended to URLs in status (the router's HTTP port), if not 80.
    pub url_port: Option<u16>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            domain: nimbus_api::constants::DEFAULT_DOMAIN.to_string(),
            url_port: None,
        }
    }
}

/// Shared by all reconcilers.
pub struct Context {
    pub resources: Arc<dyn Resources>,
    /// Runtimes by `runtimeClassName`.
    pub runtimes: HashMap<String, Arc<dyn Runtime>>,
    pub ingress: Arc<dyn IngressSink>,
    pub config: ControllerConfig,
    /// Decides and applies instance counts.
    pub scaler: Arc<Scaler>,
    /// The last ingress programmed per route: observed state of the data path, used to keep
    /// serving the previous traffic while a new target is not ready (as Knative does).
    pub(crate) programmed: Mutex<HashMap<(String, String), Ingress>>,
}

impl Context {
    pub fn new(
        resources: Arc<dyn Resources>,
        runtimes: HashMap<String, Arc<dyn Runtime>>,
        ingress: Arc<dyn IngressSink>,
        config: ControllerConfig,
        scaler: Arc<Scaler>,
    ) -> Self {
        Self {
            resources,
            runtimes,
            ingress,
            config,
            scaler,
            programmed: Mutex::new(HashMap::new()),
        }
    }

    /// RFC 3339 timestamp for condition transitions.
    pub fn now(&self) -> String {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// `http://<host>[:port]`
    pub fn url_for(&self, host: &str) -> String {
        match self.config.url_port {
            Some(p) if p != 80 => format!("http://{host}:{p}"),
            _ => format!("http://{host}"),
        }
    }

    pub(crate) fn program(&self, ingress: Ingress) {
        let key = (ingress.namespace.clone(), ingress.name.clone());
        let mut programmed = self.programmed.lock().unwrap_or_else(|p| p.into_inner());
        if programmed.get(&key) != Some(&ingress) {
            self.ingress.apply(ingress.clone());
            programmed.insert(key, ingress);
        }
    }

    pub(crate) fn is_programmed(&self, namespace: &str, name: &str) -> bool {
        let programmed = self.programmed.lock().unwrap_or_else(|p| p.into_inner());
        programmed.contains_key(&(namespace.to_string(), name.to_string()))
    }

    pub(crate) fn unprogram(&self, namespace: &str, name: &str) {
        let mut programmed = self.programmed.lock().unwrap_or_else(|p| p.into_inner());
        if programmed
            .remove(&(namespace.to_string(), name.to_string()))
            .is_some()
        {
            self.ingress.remove(namespace, name);
        }
    }
}
