//! The routing table: host → route → weighted revision targets, rebuilt whole on every change.
//!
//! The table is immutable once built; the router publishes a new one through an `ArcSwap`, so
//! requests read it without locks. Building is the only place that decides host conflicts and
//! keeps each revision's [`RevisionStats`] alive across rebuilds.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nimbus_api::networking::{Ingress, IngressRule};
use nimbus_runtime::{Endpoint, RevisionKey};

use crate::host::normalize_host;
use crate::split::{pick_weighted, random_roll, total_weight};
use crate::stats::RevisionStats;

/// An immutable snapshot of everything the router serves.
#[derive(Debug, Default)]
pub(crate) struct Table {
    hosts: HashMap<String, Arc<Route>>,
    stats: HashMap<RevisionKey, Arc<RevisionStats>>,
}

/// One ingress rule: the revisions its hosts' traffic splits over (never empty).
#[derive(Debug)]
pub(crate) struct Route {
    targets: Vec<Target>,
    weights: Vec<u32>,
    total: u32,
}

/// A revision that receives a share of a route's traffic.
#[derive(Debug)]
pub(crate) struct Target {
    pub revision: RevisionKey,
    /// Limit on the time to the instance's response headers.
    pub timeout: Duration,
    pub stats: Arc<RevisionStats>,
    next_instance: AtomicUsize,
}

// === impl Table ===

impl Table {
    /// Builds the table for `ingresses` (in a stable order: the first claim of a host wins),
    /// reusing the statistics of revisions `previous` already served. Returns the hosts that
    /// were claimed twice, for the caller to report.
    pub fn build<'a>(
        ingresses: impl IntoIterator<Item = &'a Ingress>,
        previous: &Table,
    ) -> (Table, Vec<String>) {
        let mut table = Table::default();
        let mut conflicts = Vec::new();
        for ingress in ingresses {
            // Validation guarantees splits; a rule without any could never be served.
            for rule in ingress.rules.iter().filter(|r| !r.splits.is_empty()) {
                let route = Arc::new(table.route_for(&ingress.namespace, rule, previous));
                for host in &rule.hosts {
                    match table.hosts.entry(normalize_host(host).into_owned()) {
                        Entry::Occupied(taken) => conflicts.push(taken.key().clone()),
                        Entry::Vacant(free) => {
                            free.insert(Arc::clone(&route));
                        }
                    }
                }
            }
        }
        (table, conflicts)
    }

    fn route_for(&mut self, namespace: &str, rule: &IngressRule, previous: &Table) -> Route {
        let targets: Vec<Target> = rule
            .splits
            .iter()
            .map(|split| {
                let revision = RevisionKey::new(namespace, split.revision.as_str());
                let stats = self.stats_for(&revision, previous);
                Target {
                    revision,
                    timeout: split.timeout,
                    stats,
                    next_instance: AtomicUsize::new(0),
                }
            })
            .collect();
        let weights: Vec<u32> = rule.splits.iter().map(|s| s.percent).collect();
        let total = total_weight(&weights);
        Route {
            targets,
            weights,
            total,
        }
    }

    fn stats_for(&mut self, revision: &RevisionKey, previous: &Table) -> Arc<RevisionStats> {
        let stats = self
            .stats
            .get(revision)
            .or_else(|| previous.stats.get(revision))
            .cloned()
            .unwrap_or_default();
        self.stats.insert(revision.clone(), Arc::clone(&stats));
        stats
    }

    /// The route serving a raw `Host` value (any case, with or without port).
    pub fn route(&self, raw_host: &str) -> Option<&Arc<Route>> {
        self.hosts.get(normalize_host(raw_host).as_ref())
    }

    /// The statistics of a revision some route sends traffic to.
    pub fn stats(&self, revision: &RevisionKey) -> Option<&Arc<RevisionStats>> {
        self.stats.get(revision)
    }

    /// Every revision some route sends traffic to, with its statistics.
    pub fn all_stats(&self) -> impl Iterator<Item = (&RevisionKey, &Arc<RevisionStats>)> {
        self.stats.iter()
    }
}

// === impl Route ===

impl Route {
    /// Picks the target for one request, at random by the split's percents.
    pub fn pick_target(&self) -> &Target {
        if self.targets.len() == 1 {
            return &self.targets[0];
        }
        // `pick_weighted` returns an index below `weights.len()`, which is `targets.len()`.
        &self.targets[pick_weighted(&self.weights, random_roll(self.total))]
    }
}

// === impl Target ===

impl Target {
    /// Picks one of the revision's ready instances, round-robin.
    pub fn pick_instance<'e>(&self, ready: &'e [Endpoint]) -> Option<&'e Endpoint> {
        match ready.len() {
            0 => None,
            1 => ready.first(),
            n => ready.get(self.next_instance.fetch_add(1, Ordering::Relaxed) % n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::networking::IngressSplit;
    use nimbus_runtime::Protocol;

    fn ingress(name: &str, hosts: &[&str], splits: &[(&str, u32)]) -> Ingress {
        let splits = splits
            .iter()
            .map(|(revision, percent)| IngressSplit {
                revision: revision.to_string(),
                percent: *percent,
                timeout: Duration::from_secs(1),
                container_concurrency: 0,
            })
            .collect();
        let hosts = hosts.iter().map(|h| h.to_string()).collect();
        Ingress {
            namespace: "default".into(),
            name: name.into(),
            rules: vec![IngressRule { hosts, splits }],
        }
    }

    #[test]
    fn hosts_resolve_case_insensitively_and_without_port() {
        let ing = ingress("hello", &["hello.default.localhost"], &[("hello-1", 100)]);
        let (table, conflicts) = Table::build([&ing], &Table::default());
        assert!(conflicts.is_empty());
        assert!(table.route("HELLO.default.localhost:8080").is_some());
        assert!(table.route("other.default.localhost").is_none());
    }

    #[test]
    fn first_claim_of_a_host_wins() {
        let a = ingress("a", &["x.localhost"], &[("a-1", 100)]);
        let b = ingress("b", &["x.localhost"], &[("b-1", 100)]);
        let (table, conflicts) = Table::build([&a, &b], &Table::default());
        assert_eq!(conflicts, vec!["x.localhost".to_string()]);
        let target = table.route("x.localhost").unwrap().pick_target();
        assert_eq!(target.revision.name, "a-1");
    }

    #[test]
    fn stats_survive_a_rebuild() {
        let ing = ingress("hello", &["h.localhost"], &[("hello-1", 100)]);
        let (first, _) = Table::build([&ing], &Table::default());
        let key = RevisionKey::new("default", "hello-1");
        let _guard = first.stats(&key).unwrap().start();
        let (second, _) = Table::build([&ing], &first);
        assert_eq!(second.stats(&key).unwrap().in_flight(), 1);
        let (empty, _) = Table::build([], &second);
        assert!(empty.stats(&key).is_none());
    }

    #[test]
    fn instances_are_picked_round_robin() {
        let ing = ingress("hello", &["h.localhost"], &[("hello-1", 100)]);
        let (table, _) = Table::build([&ing], &Table::default());
        let target = table.route("h.localhost").unwrap().pick_target();
        let ready: Vec<Endpoint> = (1..=3)
            .map(|p| Endpoint {
                id: format!("i{p}"),
                addr: ([127, 0, 0, 1], p).into(),
                protocol: Protocol::Http1,
            })
            .collect();
        let picked: Vec<u16> = (0..6)
            .map(|_| target.pick_instance(&ready).unwrap().addr.port())
            .collect();
        assert_eq!(picked, vec![1, 2, 3, 1, 2, 3]);
        assert!(target.pick_instance(&[]).is_none());
    }
}
