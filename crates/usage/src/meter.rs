//! The meter: turns periodic readings (monotonic counters, instance counts, cgroup counters)
//! into per-minute, per-revision [`Figures`]. Pure: time is passed in, nothing is read here.
//!
//! Each step integrates the interval since the previous reading with what that reading said
//! (instances and memory are held constant over the interval; counters are differenced). A
//! counter that went backwards (the router or an instance restarted) counts from zero. A gap
//! longer than [`MAX_GAP`] (the server was suspended) is counted as [`MAX_GAP`].

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use nimbus_api::serving::Revision;

use crate::{Figures, RevisionId, Row, Window};

/// The longest interval one reading stands for.
pub const MAX_GAP: f64 = 60.0;
const GIB: f64 = (1u64 << 30) as f64;

/// What one instance of a revision is allocated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Allocation {
    pub vcpus: f64,
    pub gib: f64,
}

/// One revision's counters and instances at a reading.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionReading {
    pub id: RevisionId,
    /// Requests routed since the router started (monotonic).
    pub requests_total: u64,
    /// Cold starts since the router started (monotonic).
    pub cold_starts_total: u64,
    /// Ready instances now.
    pub ready_instances: u32,
    pub allocation: Allocation,
}

/// One instance cgroup's counters at a reading.
#[derive(Clone, Debug, PartialEq)]
pub struct CgroupReading {
    /// Unique for the cgroup's life (its path below the server's parent).
    pub name: String,
    pub namespace: String,
    pub revision: String,
    /// CPU time since the cgroup was made.
    pub cpu_usec: Option<u64>,
    /// Memory in use now.
    pub memory_bytes: Option<u64>,
}

/// Integrates readings into minute buckets until they are taken for a flush.
#[derive(Debug, Default)]
pub struct Meter {
    last: Option<DateTime<Utc>>,
    revisions: HashMap<(String, String), RevisionReading>,
    cgroups: HashMap<String, CgroupReading>,
    /// Which service each revision seen belongs to (cgroups name only the revision).
    ids: HashMap<(String, String), RevisionId>,
    pending: BTreeMap<(i64, RevisionId), Figures>,
}

// === impl Allocation ===

impl Allocation {
    /// What an instance gets when its container names neither limits nor requests: Cloud
    /// Run's defaults (1 vCPU, 512 MiB), so a price comparison has something to price.
    pub const DEFAULT: Allocation = Allocation {
        vcpus: 1.0,
        gib: 0.5,
    };

    /// A revision's per-instance allocation: each resource from its first container's limit,
    /// else its request, else [`Allocation::DEFAULT`].
    pub fn of_revision(rev: &Revision) -> Self {
        let resources = rev
            .spec
            .containers
            .first()
            .and_then(|c| c.resources.as_ref());
        let quantity = |name: &str| {
            let limits = resources.and_then(|r| r.limits.as_ref());
            let requests = resources.and_then(|r| r.requests.as_ref());
            limits
                .and_then(|l| l.get(name))
                .or_else(|| requests.and_then(|r| r.get(name)))
                .map(|q| q.0.clone())
        };
        let vcpus = quantity("cpu")
            .and_then(|q| nimbus_api::quantity::parse_millis(&q).ok())
            .map_or(Self::DEFAULT.vcpus, |m| m as f64 / 1000.0);
        let gib = quantity("memory")
            .and_then(|q| nimbus_api::quantity::parse_bytes(&q).ok())
            .map_or(Self::DEFAULT.gib, |b| b as f64 / GIB);
        Self { vcpus, gib }
    }
}

// === impl Meter ===

impl Meter {
    /// Integrate the interval since the last reading, attributing it to `now`'s minute.
    pub fn observe(
        &mut self,
        now: DateTime<Utc>,
        revisions: &[RevisionReading],
        cgroups: &[CgroupReading],
    ) {
        let dt = self.last.map_or(0.0, |last| {
            ((now - last).num_microseconds().unwrap_or(0) as f64 / 1e6).clamp(0.0, MAX_GAP)
        });
        self.last = Some(now);
        let minute = now.timestamp().div_euclid(60);
        for r in revisions {
            let key = (r.id.namespace.clone(), r.id.revision.clone());
            self.ids.insert(key.clone(), r.id.clone());
            let f = revision_step(self.revisions.get(&key), r, dt);
            self.add(minute, &r.id, f);
        }
        self.revisions = revisions
            .iter()
            .map(|r| ((r.id.namespace.clone(), r.id.revision.clone()), r.clone()))
            .collect();
        for c in cgroups {
            let key = (c.namespace.clone(), c.revision.clone());
            let Some(id) = self.ids.get(&key).cloned() else {
                continue;
            };
            let f = cgroup_step(self.cgroups.get(&c.name), c, dt);
            self.add(minute, &id, f);
        }
        self.cgroups = cgroups
            .iter()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
    }

    fn add(&mut self, minute: i64, id: &RevisionId, f: Figures) {
        if f != Figures::default() {
            self.pending
                .entry((minute, id.clone()))
                .or_default()
                .add(&f);
        }
    }

    /// Everything metered since the last take, by minute.
    pub fn take(&mut self) -> Vec<(i64, Row)> {
        std::mem::take(&mut self.pending)
            .into_iter()
            .map(|((minute, id), figures)| (minute, Row { id, figures }))
            .collect()
    }

    /// Return taken figures (their write failed) to be written with the next.
    pub fn put_back(&mut self, rows: Vec<(i64, Row)>) {
        for (minute, row) in rows {
            self.add(minute, &row.id, row.figures);
        }
    }

    /// Per-revision sums of what is pending in `window`, filtered like a query.
    pub fn pending(
        &self,
        window: Window,
        namespace: Option<&str>,
        service: Option<&str>,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        let selected = self.pending.iter().filter(|((minute, id), _)| {
            window.contains(*minute)
                && namespace.is_none_or(|ns| ns == id.namespace)
                && service.is_none_or(|s| s == id.service)
        });
        for ((_, id), f) in selected {
            crate::figures::merge(
                &mut rows,
                vec![Row {
                    id: id.clone(),
                    figures: *f,
                }],
            );
        }
        rows
    }
}

/// A counter's increase; a counter that went backwards was reset and counts from zero.
fn increase(before: u64, now: u64) -> u64 {
    if now >= before { now - before } else { now }
}

/// A revision's figures for the interval `dt` ending at reading `now`.
fn revision_step(before: Option<&RevisionReading>, now: &RevisionReading, dt: f64) -> Figures {
    let (requests, cold_starts) =
        before.map_or((0, 0), |b| (b.requests_total, b.cold_starts_total));
    let mut f = Figures {
        requests: increase(requests, now.requests_total),
        cold_starts: increase(cold_starts, now.cold_starts_total),
        ..Figures::default()
    };
    if let Some(b) = before {
        let instance_seconds = f64::from(b.ready_instances) * dt;
        f.instance_seconds = instance_seconds;
        f.vcpu_seconds_allocated = instance_seconds * b.allocation.vcpus;
        f.gib_seconds_allocated = instance_seconds * b.allocation.gib;
    }
    f
}

/// An instance cgroup's used CPU and memory for the interval `dt` ending at reading `now`.
fn cgroup_step(before: Option<&CgroupReading>, now: &CgroupReading, dt: f64) -> Figures {
    let cpu_before = before.and_then(|b| b.cpu_usec).unwrap_or(0);
    let cpu = now.cpu_usec.map_or(0, |c| increase(cpu_before, c));
    let memory = before.and_then(|b| b.memory_bytes).unwrap_or(0);
    Figures {
        vcpu_seconds_used: cpu as f64 / 1e6,
        gib_seconds_used: memory as f64 / GIB * dt,
        ..Figures::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn id() -> RevisionId {
        RevisionId {
            namespace: "default".into(),
            service: "hello".into(),
            revision: "hello-00001".into(),
        }
    }

    fn reading(requests: u64, instances: u32) -> RevisionReading {
        RevisionReading {
            id: id(),
            requests_total: requests,
            cold_starts_total: u64::from(requests > 0),
            ready_instances: instances,
            allocation: Allocation {
                vcpus: 0.5,
                gib: 0.25,
            },
        }
    }

    fn cgroup(cpu_usec: u64, memory_bytes: u64) -> CgroupReading {
        CgroupReading {
            name: "p-0/default/hello-00001-1".into(),
            namespace: "default".into(),
            revision: "hello-00001".into(),
            cpu_usec: Some(cpu_usec),
            memory_bytes: Some(memory_bytes),
        }
    }

    fn total(meter: &mut Meter) -> Figures {
        Figures::total(meter.take().iter().map(|(_, r)| &r.figures))
    }

    #[test]
    fn instances_integrate_over_time_and_counters_are_differenced() {
        let mut m = Meter::default();
        m.observe(at(0), &[reading(3, 2)], &[]);
        m.observe(at(10), &[reading(5, 1)], &[]);
        m.observe(at(15), &[reading(5, 0)], &[]);
        let f = total(&mut m);
        assert_eq!(
            f.requests, 5,
            "the requests before the first reading count too"
        );
        assert_eq!(f.cold_starts, 1);
        assert_eq!(f.instance_seconds, 2.0 * 10.0 + 1.0 * 5.0);
        assert_eq!(f.vcpu_seconds_allocated, 25.0 * 0.5);
        assert_eq!(f.gib_seconds_allocated, 25.0 * 0.25);
    }

    #[test]
    fn cgroups_add_used_cpu_and_memory_time() {
        let mut m = Meter::default();
        m.observe(at(0), &[reading(0, 1)], &[cgroup(1_000_000, 1 << 29)]);
        m.observe(at(4), &[reading(0, 1)], &[cgroup(1_500_000, 1 << 30)]);
        m.observe(at(6), &[reading(0, 1)], &[]);
        let f = total(&mut m);
        assert_eq!(f.vcpu_seconds_used, 1.5);
        assert_eq!(f.gib_seconds_used, 0.5 * 4.0);
    }

    #[test]
    fn resets_and_gaps_do_not_inflate() {
        let mut m = Meter::default();
        m.observe(at(0), &[reading(100, 1)], &[]);
        m.observe(at(3600), &[reading(4, 1)], &[]);
        let f = total(&mut m);
        assert_eq!(f.requests, 104, "a reset counter counts from zero");
        assert_eq!(f.instance_seconds, MAX_GAP);
    }

    #[test]
    fn figures_land_in_the_minute_of_the_reading_and_can_be_put_back() {
        let mut m = Meter::default();
        m.observe(at(0), &[reading(1, 1)], &[]);
        m.observe(at(70), &[reading(2, 1)], &[]);
        let taken = m.take();
        let minutes: Vec<i64> = taken.iter().map(|(minute, _)| *minute).collect();
        assert_eq!(
            minutes,
            vec![at(0).timestamp() / 60, at(70).timestamp() / 60]
        );
        m.put_back(taken);
        let w = Window::new(at(0), at(120)).unwrap();
        let rows = m.pending(w, Some("default"), Some("hello"));
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].figures.requests, 2);
        assert!(m.pending(w, Some("other"), None).is_empty());
    }
}
