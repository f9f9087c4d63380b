//! How the operator and the routers of one installation find and talk to each other.
//!
//! - Every router serves `GET /stats` on its admin port: its per-revision requests in flight
//!   and requests started. The operator's autoscaler sums them over every router
//!   ([`RouterStats`]): several router replicas are one data path.
//! - A router holding a request for a revision with no ready pod asks the operator to activate
//!   it: `POST /activate/{namespace}/{revision}` ([`Activations`]), answered at once; the
//!   autoscaler decides as it does for a local activation.
//!
//! Peers are given as URLs (out of the cluster, or in tests) or found as the ready endpoints of
//! a Service's EndpointSlices (`nimbus-router`'s port `admin`, `nimbus-operator`'s port
//! `metrics`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use nimbus_controller::{MetricsSource, RevisionLoad};
use nimbus_runtime::RevisionKey;
use serde::{Deserialize, Serialize};

/// One revision's load as a router reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterLoad {
    pub in_flight: u64,
    pub requests: u64,
}

/// A router's `/stats` answer: `namespace/revision` → load.
pub type StatsReport = HashMap<String, RouterLoad>;

/// Where peers are.
#[derive(Clone, Debug)]
pub enum Peers {
    /// Fixed base URLs (`http://10.0.0.5:9091`).
    Urls(Vec<String>),
    /// The ready endpoints of Service `name` in `namespace`, at its port named `port`.
    Service {
        namespace: String,
        name: String,
        port: String,
    },
}

impl Peers {
    /// The base URLs now.
    pub async fn urls(&self, client: &kube::Client) -> Vec<String> {
        match self {
            Peers::Urls(urls) => urls.clone(),
            Peers::Service {
                namespace,
                name,
                port,
            } => service_urls(client, namespace, name, port)
                .await
                .unwrap_or_default(),
        }
    }
}

async fn service_urls(
    client: &kube::Client,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Result<Vec<String>, kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let params = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut out = Vec::new();
    for slice in api.list(&params).await?.items {
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(port_name))
            .and_then(|p| p.port)
        else {
            continue;
        };
        for e in slice.endpoints.iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) != Some(true) {
                continue;
            }
            out.extend(e.addresses.iter().map(|a| format!("http://{a}:{port}")));
        }
    }
    Ok(out)
}

/// The routers' load, summed, refreshed in the background.
pub struct RouterStats {
    sums: Mutex<HashMap<RevisionKey, RevisionLoad>>,
}

impl RouterStats {
    /// Scrape `routers` every `interval` (the operator's autoscaler reads the sums).
    pub fn start(client: kube::Client, routers: Peers, interval: Duration) -> Arc<Self> {
        let stats = Arc::new(Self {
            sums: Mutex::default(),
        });
        let weak = Arc::downgrade(&stats);
        let http = reqwest::Client::builder()
            .timeout(interval.max(Duration::from_millis(500)))
            .build()
            .unwrap_or_default();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(stats) = weak.upgrade() else { return };
                let urls = routers.urls(&client).await;
                let reports =
                    futures::future::join_all(urls.iter().map(|u| scrape(&http, u))).await;
                stats.set(sum(reports.into_iter().flatten()));
            }
        });
        stats
    }

    fn set(&self, sums: HashMap<RevisionKey, RevisionLoad>) {
        *self.sums.lock().unwrap_or_else(|p| p.into_inner()) = sums;
    }
}

impl MetricsSource for RouterStats {
    fn load(&self, revision: &RevisionKey) -> Option<RevisionLoad> {
        self.sums
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(revision)
            .copied()
    }
}

async fn scrape(http: &reqwest::Client, base: &str) -> Option<StatsReport> {
    let resp = http.get(format!("{base}/stats")).send().await.ok()?;
    resp.json().await.ok()
}

/// Add up the routers' reports per revision.
pub fn sum(reports: impl IntoIterator<Item = StatsReport>) -> HashMap<RevisionKey, RevisionLoad> {
    let mut out: HashMap<RevisionKey, RevisionLoad> = HashMap::new();
    for report in reports {
        for (key, load) in report {
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            let total = out.entry(RevisionKey::new(ns, name)).or_default();
            total.in_flight += load.in_flight;
            total.requests_total += load.requests;
        }
    }
    out
}

/// A router's activation requests to the operator: sent from a task of their own, so the
/// request path only queues a key; repeated asks for one revision within `interval` are one.
pub struct Activations {
    tx: tokio::sync::mpsc::UnboundedSender<RevisionKey>,
}

impl Activations {
    pub fn start(client: kube::Client, operators: Peers, interval: Duration) -> Self {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RevisionKey>();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap_or_default();
        tokio::spawn(async move {
            let mut last: HashMap<RevisionKey, tokio::time::Instant> = HashMap::new();
            while let Some(key) = rx.recv().await {
                let now = tokio::time::Instant::now();
                if last
                    .get(&key)
                    .is_some_and(|t| now.duration_since(*t) < interval)
                {
                    continue;
                }
                last.insert(key.clone(), now);
                for base in operators.urls(&client).await {
                    let url = format!("{base}/activate/{}/{}", key.namespace, key.name);
                    if let Err(e) = http.post(&url).send().await {
                        tracing::warn!(revision = %key, %url, error = %e, "cannot ask the operator to activate");
                    }
                }
            }
        });
        Self { tx }
    }

    /// Ask for `revision` to be activated (cheap; called on the request path).
    pub fn activate(&self, revision: &RevisionKey) {
        let _ = self.tx.send(revision.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_of_several_routers_add_up() {
        let a = StatsReport::from([
            (
                "default/hello-00001".to_string(),
                RouterLoad {
                    in_flight: 2,
                    requests: 10,
                },
            ),
            ("bad-key".to_string(), RouterLoad::default()),
        ]);
        let b = StatsReport::from([(
            "default/hello-00001".to_string(),
            RouterLoad {
                in_flight: 3,
                requests: 5,
            },
        )]);
        let sums = sum([a, b]);
        let load = sums[&RevisionKey::new("default", "hello-00001")];
        assert_eq!((load.in_flight, load.requests_total), (5, 15));
        assert_eq!(sums.len(), 1);
    }
}
