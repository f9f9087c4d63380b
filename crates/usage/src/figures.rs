//! What is metered: [`Figures`] per revision ([`RevisionId`]), summed into [`Row`]s.

use serde::{Deserialize, Serialize};

/// One revision, with the service it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RevisionId {
    pub namespace: String,
    /// The owning Service (`serving.knative.dev/service`); empty for a bare Configuration's.
    pub service: String,
    pub revision: String,
}

/// Usage over some time: sums, so two of them add up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Requests routed to the revision.
    pub requests: u64,
    /// Time ready instances ran, summed over instances.
    pub instance_seconds: f64,
    /// vCPUs allocated to those instances × time.
    pub vcpu_seconds_allocated: f64,
    /// CPU time the instances' cgroups used.
    pub vcpu_seconds_used: f64,
    /// GiB of memory allocated × time.
    pub gib_seconds_allocated: f64,
    /// GiB in use (cgroup memory accounting, sampled) × time.
    pub gib_seconds_used: f64,
    /// Requests that waited for the revision's first ready instance.
    pub cold_starts: u64,
}

/// One revision's totals over a query's window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    #[serde(flatten)]
    pub id: RevisionId,
    #[serde(flatten)]
    pub figures: Figures,
}

// === impl Figures ===

impl Figures {
    /// Adds `other` in.
    pub fn add(&mut self, other: &Figures) {
        self.requests += other.requests;
        self.instance_seconds += other.instance_seconds;
        self.vcpu_seconds_allocated += other.vcpu_seconds_allocated;
        self.vcpu_seconds_used += other.vcpu_seconds_used;
        self.gib_seconds_allocated += other.gib_seconds_allocated;
        self.gib_seconds_used += other.gib_seconds_used;
        self.cold_starts += other.cold_starts;
    }

    /// The sum of many.
    pub fn total<'a>(all: impl IntoIterator<Item = &'a Figures>) -> Figures {
        let mut sum = Figures::default();
        all.into_iter().for_each(|f| sum.add(f));
        sum
    }
}

/// Adds `more` into `rows` (matching revisions summed, others appended), sorted by id.
pub(crate) fn merge(rows: &mut Vec<Row>, more: Vec<Row>) {
    for row in more {
        match rows.iter_mut().find(|r| r.id == row.id) {
            Some(r) => r.figures.add(&row.figures),
            None => rows.push(row),
        }
    }
    rows.sort_by(|a, b| a.id.cmp(&b.id));
}
