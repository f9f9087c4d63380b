//! The ready pods of every revision, from the EndpointSlices of the revisions' Services, into
//! the router's [`EndpointRegistry`]: on a cluster the router sends requests straight to pod
//! IPs (no kube-proxy hop), the way it sends them to local instances in embedded mode.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use nimbus_api::constants::LABEL_REVISION;
use nimbus_runtime::{Endpoint, EndpointRegistry, Protocol, RevisionEndpoints, RevisionKey};

/// Label EndpointSlices carry naming their Service.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Keep `registry` equal to the ready endpoints of every revision Service's EndpointSlices,
/// until the watch ends (it retries on errors, so only when the client is gone).
pub async fn follow(client: kube::Client, registry: EndpointRegistry) {
    let api: Api<EndpointSlice> = Api::all(client);
    let config = watcher::Config::default().labels(LABEL_SERVICE_NAME);
    let mut slices: HashMap<(String, String), EndpointSlice> = HashMap::new();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        let Ok(event) = event else { continue };
        let touched = apply(&mut slices, event);
        for revision in touched {
            registry.set(&revision, ready_endpoints(&slices, &revision));
        }
    }
}

/// Record a watch event; the revisions whose endpoints may have changed.
fn apply(
    slices: &mut HashMap<(String, String), EndpointSlice>,
    event: watcher::Event<EndpointSlice>,
) -> Vec<RevisionKey> {
    let key = |s: &EndpointSlice| {
        (
            s.metadata.namespace.clone().unwrap_or_default(),
            s.metadata.name.clone().unwrap_or_default(),
        )
    };
    match event {
        watcher::Event::Apply(s) | watcher::Event::InitApply(s) => {
            let revision = revision_of(&s);
            slices.insert(key(&s), s);
            revision.into_iter().collect()
        }
        watcher::Event::Delete(s) => {
            slices.remove(&key(&s));
            revision_of(&s).into_iter().collect()
        }
        watcher::Event::Init => Vec::new(),
        // After a relist, every revision may have lost or gained endpoints.
        watcher::Event::InitDone => slices.values().filter_map(revision_of).collect(),
    }
}

/// The revision a slice belongs to: its Service's name, when the Service is a revision's.
fn revision_of(slice: &EndpointSlice) -> Option<RevisionKey> {
    let labels = slice.metadata.labels.as_ref()?;
    let service = labels.get(LABEL_SERVICE_NAME)?;
    if let Some(rev) = labels.get(LABEL_REVISION)
        && rev != service
    {
        return None;
    }
    labels.get(LABEL_REVISION)?;
    Some(RevisionKey::new(
        slice.metadata.namespace.clone().unwrap_or_default(),
        service.clone(),
    ))
}

/// Every ready address of the revision's slices, at the slice's port.
pub fn ready_endpoints(
    slices: &HashMap<(String, String), EndpointSlice>,
    revision: &RevisionKey,
) -> RevisionEndpoints {
    let mut ready: BTreeMap<String, Endpoint> = BTreeMap::new();
    for slice in slices.values() {
        if revision_of(slice).as_ref() != Some(revision) {
            continue;
        }
        let Some(port) = slice
            .ports
            .iter()
            .flatten()
            .find_map(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in slice.endpoints.iter().flatten() {
            let is_ready = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false);
            let terminating = e
                .conditions
                .as_ref()
                .and_then(|c| c.terminating)
                .unwrap_or(false);
            if !is_ready || terminating {
                continue;
            }
            for address in &e.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else {
                    continue;
                };
                let id = e
                    .target_ref
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_else(|| address.clone());
                let endpoint = Endpoint::tcp(id, SocketAddr::new(ip, port), Protocol::Http1);
                ready.insert(endpoint.to_string(), endpoint);
            }
        }
    }
    RevisionEndpoints {
        ready: ready.into_values().collect(),
        failure: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &str, rev: &str, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default",
                "labels": {LABEL_SERVICE_NAME: rev, LABEL_REVISION: rev}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    #[test]
    fn only_ready_serving_addresses_of_the_revisions_slices_count() {
        let mut slices = HashMap::new();
        let a = slice(
            "hello-00001-abc",
            "hello-00001",
            serde_json::json!([
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "targetRef": {"kind": "Pod", "name": "pod-a"}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": true, "terminating": true}},
            ]),
        );
        let touched = apply(&mut slices, watcher::Event::Apply(a));
        let key = RevisionKey::new("default", "hello-00001");
        assert_eq!(touched, std::slice::from_ref(&key));
        let eps = ready_endpoints(&slices, &key);
        assert_eq!(eps.ready.len(), 1);
        assert_eq!(eps.ready[0].to_string(), "pod-a at 10.244.0.5:8080");
        let other = slice("svc-x", "other", serde_json::json!([]));
        let mut unlabelled = other.clone();
        unlabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .remove(LABEL_REVISION);
        assert!(
            revision_of(&unlabelled).is_none(),
            "not a revision's Service"
        );
    }
}
