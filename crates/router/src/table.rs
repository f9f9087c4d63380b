//! The routing table: host → route → weighted revision targets, rebuilt whole on every change.
//!
//! The table is immutable once built; the router publishes a new one through an `ArcSwap`, so
//! requests read it without locks. Building is the only place that decides host conflicts and
//! keeps each revision's [`Capacity`] (its statistics and per-instance in-flight counters)
//! alive across rebuilds — also, as "retired", for revisions no route names any more while
//! they still have requests in flight.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use nimbus_api::networking::{Ingress, IngressRule, RequestTimeouts};
use nimbus_runtime::RevisionKey;

use crate::capacity::Capacity;
use crate::host::normalize_host;
use crate::split::{pick_weighted, random_roll, total_weight};
use crate::stats::RevisionStats;

/// An immutable snapshot of everything the router serves.
#[derive(Debug, Default)]
pub(crate) struct Table {
    /// Looked up once per request: a fast (seeded) hash instead of SipHash.
    hosts: foldhash::HashMap<String, Arc<Route>>,
    revisions: HashMap<RevisionKey, Arc<Capacity>>,
    /// Revisions no route names any more that still had requests in flight at the rebuild.
    retired: HashMap<RevisionKey, Arc<Capacity>>,
}

/// One ingress rule: the revisions its hosts' traffic splits over (never empty).
#[derive(Debug)]
pub(crate) struct Route {
    /// The Route (Ingress) it came from: its namespace and name (a Service's name).
    pub namespace: String,
    pub name: String,
    targets: Vec<Target>,
    weights: Vec<u32>,
    total: u32,
}

/// A revision that receives a share of a route's traffic.
#[derive(Debug)]
pub(crate) struct Target {
    pub revision: RevisionKey,
    /// The revision's request timeouts: the whole request (waiting for capacity included), the
    /// response start and the gaps between response bytes.
    pub timeouts: RequestTimeouts,
    /// Most requests one instance may serve at once (0 = unlimited).
    pub container_concurrency: u32,
    /// The revision's counters and instance slots, shared by every route naming it.
    pub capacity: Arc<Capacity>,
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
                let route = Arc::new(table.route_for(ingress, rule, previous));
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
        table.retire_busy(previous);
        (table, conflicts)
    }

    /// Keeps the revisions of `previous` that are no longer routed but still busy.
    fn retire_busy(&mut self, previous: &Table) {
        for (revision, capacity) in previous.revisions.iter().chain(&previous.retired) {
            if !self.revisions.contains_key(revision) && capacity.stats.in_flight() > 0 {
                self.retired.insert(revision.clone(), Arc::clone(capacity));
            }
        }
    }

    fn route_for(&mut self, ingress: &Ingress, rule: &IngressRule, previous: &Table) -> Route {
        let namespace = ingress.namespace.as_str();
        let targets: Vec<Target> = rule
            .splits
            .iter()
            .map(|split| {
                let revision = RevisionKey::new(namespace, split.revision.as_str());
                let capacity = self.capacity_for(&revision, previous);
                Target {
                    revision,
                    timeouts: split.timeouts,
                    container_concurrency: split.container_concurrency,
                    capacity,
                }
            })
            .collect();
        let weights: Vec<u32> = rule.splits.iter().map(|s| s.percent).collect();
        let total = total_weight(&weights);
        Route {
            namespace: ingress.namespace.clone(),
            name: ingress.name.clone(),
            targets,
            weights,
            total,
        }
    }

    fn capacity_for(&mut self, revision: &RevisionKey, previous: &Table) -> Arc<Capacity> {
        let capacity = self
            .revisions
            .get(revision)
            .or_else(|| previous.revisions.get(revision))
            .or_else(|| previous.retired.get(revision))
            .cloned()
            .unwrap_or_else(|| Arc::new(Capacity::new(revision.clone(), Arc::default())));
        self.revisions
            .insert(revision.clone(), Arc::clone(&capacity));
        capacity
    }

    /// The route serving a raw `Host` value (any case, with or without port).
    pub fn route(&self, raw_host: &str) -> Option<&Arc<Route>> {
        self.hosts.get(normalize_host(raw_host).as_ref())
    }

    /// The statistics of a revision some route sends traffic to.
    pub fn stats(&self, revision: &RevisionKey) -> Option<&Arc<RevisionStats>> {
        self.revisions.get(revision).map(|c| &c.stats)
    }

    /// Every revision some route sends traffic to, with its statistics.
    pub fn all_stats(&self) -> impl Iterator<Item = (&RevisionKey, &Arc<RevisionStats>)> {
        self.revisions.iter().map(|(k, c)| (k, &c.stats))
    }

    /// Every revision that may have requests in flight: the routed ones and the retired ones.
    pub fn all_capacity(&self) -> impl Iterator<Item = &Arc<Capacity>> {
        self.revisions.values().chain(self.retired.values())
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

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::networking::IngressSplit;

    fn ingress(name: &str, hosts: &[&str], splits: &[(&str, u32)]) -> Ingress {
        let splits = splits
            .iter()
            .map(|(revision, percent)| IngressSplit {
                revision: revision.to_string(),
                percent: *percent,
                timeouts: RequestTimeouts::default(),
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
    fn busy_unrouted_revisions_are_retired_until_idle() {
        let ing = ingress("hello", &["h.localhost"], &[("hello-1", 100)]);
        let (first, _) = Table::build([&ing], &Table::default());
        let key = RevisionKey::new("default", "hello-1");
        let guard = first.stats(&key).unwrap().start();
        let (unrouted, _) = Table::build([], &first);
        assert_eq!(unrouted.all_capacity().count(), 1, "busy: still visible");
        let (back, _) = Table::build([&ing], &unrouted);
        let original = &first.revisions[&key];
        assert!(
            Arc::ptr_eq(&back.revisions[&key], original),
            "routed again: same counters"
        );
        let (unrouted, _) = Table::build([], &back);
        drop(guard);
        let (idle, _) = Table::build([], &unrouted);
        assert_eq!(idle.all_capacity().count(), 0, "idle: forgotten");
    }
}
