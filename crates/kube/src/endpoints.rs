//! The ready pods of every revision, from the EndpointSlices of the revisions' Services, into
//! the router's [`EndpointRegistry`]: on a cluster the router sends requests straight to pod
//! IPs (no kube-proxy hop), the way it sends them to local instances in embedded mode.
//!
//! A pod of a revision labelled [`LABEL_READY_ON_ACCEPT`] (its readiness is the default TCP
//! check) is routable as soon as its port accepts a connection: the router connects to each
//! starting pod (listed, not ready, not terminating) every [`PROBE_EVERY`] and adds it the
//! moment it answers, instead of waiting up to a second for the kubelet's next probe to mark it
//! ready — the wait that dominated a cold start (bench/README.md). It leaves the list when the
//! slice drops it or marks it terminating.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use nimbus_api::constants::LABEL_REVISION;
use nimbus_runtime::{Endpoint, EndpointRegistry, Protocol, RevisionEndpoints, RevisionKey};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::workload::LABEL_READY_ON_ACCEPT;

/// How often a starting pod's port is tried.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// How long a pod that answered is routed to before the kubelet marks it ready; past that it
/// is left to the kubelet (a pod that accepted and then broke must not keep getting traffic).
const ANSWERED_GRACE: Duration = Duration::from_secs(5);

/// Label EndpointSlices carry naming their Service.
const LABEL_SERVICE_NAME: &str = "kubernetes.io/service-name";

/// Keep `registry` equal to the ready endpoints of every revision Service's EndpointSlices
/// (plus the starting pods that already answer, see the module docs), until the watch ends (it
/// retries on errors, so only when the client is gone).
pub async fn follow(client: kube::Client, registry: EndpointRegistry) {
    let api: Api<EndpointSlice> = Api::all(client);
    // Only revisions' Services' slices (they copy the Service's labels), not every Service's.
    let config = watcher::Config::default().labels(LABEL_REVISION);
    let mut slices: HashMap<(String, String), EndpointSlice> = HashMap::new();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut starting = Starting::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let touched = tokio::select! {
            _ = tick.tick() => starting.overdue(),
            event = events.next() => match event {
                Some(Ok(event)) => apply(&mut slices, event),
                Some(Err(_)) => continue,
                None => break,
            },
            Some((revision, endpoint)) = starting.reports.recv() => {
                vec![starting.answered(revision, &endpoint)]
            }
        };
        for revision in touched {
            let (mut ready, candidates) = revision_endpoints(&slices, &revision);
            starting.track(&revision, &candidates);
            ready.extend(
                candidates
                    .into_iter()
                    .filter(|e| starting.routable(&e.to_string())),
            );
            let endpoints = RevisionEndpoints {
                ready,
                failure: None,
            };
            registry.set(&revision, endpoints);
        }
    }
}

/// The starting pods being tried, and those that answered.
struct Starting {
    /// One connecting task per starting endpoint (by its display form).
    probes: HashMap<String, (RevisionKey, JoinHandle<()>)>,
    /// Endpoints that accepted a connection while still starting: their revisions and when.
    answering: HashMap<String, (RevisionKey, tokio::time::Instant)>,
    report: mpsc::UnboundedSender<(RevisionKey, Endpoint)>,
    reports: mpsc::UnboundedReceiver<(RevisionKey, Endpoint)>,
}

impl Default for Starting {
    fn default() -> Self {
        let (report, reports) = mpsc::unbounded_channel();
        Self {
            probes: HashMap::new(),
            answering: Default::default(),
            report,
            reports,
        }
    }
}

impl Starting {
    /// A probe reported that `endpoint` accepts: route to it from now; its revision.
    fn answered(&mut self, revision: RevisionKey, endpoint: &Endpoint) -> RevisionKey {
        let since = tokio::time::Instant::now();
        self.answering
            .insert(endpoint.to_string(), (revision.clone(), since));
        revision
    }

    /// Whether a starting endpoint answered recently enough to be routed to.
    fn routable(&self, key: &str) -> bool {
        self.answering
            .get(key)
            .is_some_and(|(_, since)| since.elapsed() < ANSWERED_GRACE)
    }

    /// Revisions with an answering endpoint past [`ANSWERED_GRACE`], to publish without it.
    /// Such an endpoint stays out (its probe entry stays, so it is not tried again) until the
    /// kubelet marks it ready or it goes.
    fn overdue(&mut self) -> Vec<RevisionKey> {
        let mut revisions: Vec<RevisionKey> = Vec::new();
        self.answering.retain(|_, (rev, since)| {
            let overdue = since.elapsed() >= ANSWERED_GRACE;
            if overdue && !revisions.contains(rev) {
                revisions.push(rev.clone());
            }
            !overdue
        });
        revisions
    }
    /// Try each of `candidates` (the revision's starting pods now) until it answers; forget
    /// the revision's pods that are no longer starting.
    fn track(&mut self, revision: &RevisionKey, candidates: &[Endpoint]) {
        let now: std::collections::HashSet<String> =
            candidates.iter().map(|e| e.to_string()).collect();
        self.probes.retain(|key, (rev, task)| {
            let keep = rev != revision || now.contains(key);
            if !keep {
                task.abort();
            }
            keep
        });
        self.answering
            .retain(|key, (rev, _)| rev != revision || now.contains(key));
        for endpoint in candidates {
            let key = endpoint.to_string();
            if self.probes.contains_key(&key) {
                continue;
            }
            let Some(addr) = endpoint.addr() else {
                continue;
            };
            let report = self.report.clone();
            let (rev, ep) = (revision.clone(), endpoint.clone());
            let task = tokio::spawn(async move {
                if wait_until_accepting(addr).await {
                    let _ = report.send((rev, ep));
                }
            });
            self.probes.insert(key, (revision.clone(), task));
        }
    }
}

/// Connect to `addr` every [`PROBE_EVERY`] until it accepts (`true`), for at most ten
/// minutes (a Deployment's progress deadline).
async fn wait_until_accepting(addr: SocketAddr) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while tokio::time::Instant::now() < deadline {
        let attempt = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr));
        if let Ok(Ok(_)) = attempt.await {
            return true;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
    false
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
        // After a relist, every revision may have lost or gained endpoints (each once).
        watcher::Event::InitDone => {
            let revisions: std::collections::BTreeSet<RevisionKey> =
                slices.values().filter_map(revision_of).collect();
            revisions.into_iter().collect()
        }
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

/// The revision's endpoints in one pass over its slices: the ready addresses, and the starting
/// ones (listed, not ready, not terminating) when its Service says a pod is ready once its
/// port accepts ([`LABEL_READY_ON_ACCEPT`]; none otherwise). Each at the slice's port.
fn revision_endpoints(
    slices: &HashMap<(String, String), EndpointSlice>,
    revision: &RevisionKey,
) -> (Vec<Endpoint>, Vec<Endpoint>) {
    let mut ready: BTreeMap<String, Endpoint> = BTreeMap::new();
    let mut starting: BTreeMap<String, Endpoint> = BTreeMap::new();
    for slice in slices.values() {
        if revision_of(slice).as_ref() != Some(revision) {
            continue;
        }
        let Some(port) = slice_port(slice) else {
            continue;
        };
        let ready_on_accept = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(LABEL_READY_ON_ACCEPT))
            .is_some_and(|v| v == "true");
        for e in slice.endpoints.iter().flatten() {
            let conditions = e.conditions.as_ref();
            let is_ready = conditions.and_then(|c| c.ready).unwrap_or(false);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            let into = match (terminating, is_ready) {
                (true, _) => continue,
                (false, true) => &mut ready,
                (false, false) if ready_on_accept => &mut starting,
                (false, false) => continue,
            };
            for endpoint in endpoints_of(e, port) {
                into.insert(endpoint.to_string(), endpoint);
            }
        }
    }
    (
        ready.into_values().collect(),
        starting.into_values().collect(),
    )
}

/// The port of a slice's (single) port entry.
fn slice_port(slice: &EndpointSlice) -> Option<u16> {
    slice
        .ports
        .iter()
        .flatten()
        .find_map(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
}

/// One endpoint per address of `e`, named by its pod.
fn endpoints_of(
    e: &k8s_openapi::api::discovery::v1::Endpoint,
    port: u16,
) -> impl Iterator<Item = Endpoint> + '_ {
    e.addresses.iter().filter_map(move |address| {
        let ip = address.parse::<IpAddr>().ok()?;
        let id = e
            .target_ref
            .as_ref()
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| address.clone());
        Some(Endpoint::tcp(
            id,
            SocketAddr::new(ip, port),
            Protocol::Http1,
        ))
    })
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
        let (ready, _) = revision_endpoints(&slices, &key);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].to_string(), "pod-a at 10.244.0.5:8080");
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

    fn labelled(mut s: EndpointSlice) -> EndpointSlice {
        s.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(LABEL_READY_ON_ACCEPT.into(), "true".into());
        s
    }

    #[test]
    fn starting_pods_count_only_where_ready_means_accepting() {
        let endpoints = serde_json::json!([
            {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
            {"addresses": ["10.244.0.6"], "conditions": {"ready": false}, "targetRef": {"kind": "Pod", "name": "pod-b"}},
            {"addresses": ["10.244.0.7"], "conditions": {"ready": false, "terminating": true}},
        ]);
        let key = RevisionKey::new("default", "hello-00001");
        let mut slices = HashMap::new();
        apply(
            &mut slices,
            watcher::Event::Apply(slice("s", "hello-00001", endpoints.clone())),
        );
        assert!(
            revision_endpoints(&slices, &key).1.is_empty(),
            "not labelled"
        );
        apply(
            &mut slices,
            watcher::Event::Apply(labelled(slice("s", "hello-00001", endpoints))),
        );
        let (ready, starting) = revision_endpoints(&slices, &key);
        assert_eq!(ready.len(), 1);
        assert_eq!(starting.len(), 1);
        assert_eq!(starting[0].to_string(), "pod-b at 10.244.0.6:8080");
    }

    /// A starting pod is reported the moment its port accepts, and forgotten once it is no
    /// longer starting.
    #[tokio::test]
    async fn a_starting_pod_is_reported_when_it_accepts() {
        // Bound but not listening: connections are refused, and no other test can take the
        // port before it opens.
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let addr = socket.local_addr().unwrap().as_socket().unwrap();
        let key = RevisionKey::new("default", "hello-00001");
        let pod = Endpoint::tcp("pod-a", addr, Protocol::Http1);
        let mut starting = Starting::default();
        starting.track(&key, std::slice::from_ref(&pod));
        // The port opens a little later, as a starting program's does.
        tokio::time::sleep(PROBE_EVERY * 3).await;
        socket.listen(8).unwrap();
        let (revision, endpoint) =
            tokio::time::timeout(Duration::from_secs(10), starting.reports.recv())
                .await
                .expect("reported")
                .unwrap();
        assert_eq!(
            (revision.clone(), endpoint.to_string()),
            (key.clone(), pod.to_string())
        );
        assert!(
            !starting.routable(&pod.to_string()),
            "not before the report is taken"
        );
        assert_eq!(starting.answered(revision, &endpoint), key);
        assert!(starting.routable(&pod.to_string()));
        starting.track(&key, &[]);
        assert!(starting.probes.is_empty() && starting.answering.is_empty());
    }
}
