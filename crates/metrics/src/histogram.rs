//! A fixed-bucket histogram of durations recorded with relaxed atomics, and per-status-class
//! counters.
//!
//! Recording finds the bucket by a linear scan over at most a few dozen integer bounds and
//! does two relaxed `fetch_add`s (the bucket and the sum): cheap enough for every request on
//! the data path. A reader sums the buckets for the count, so a snapshot taken while others
//! record may see a bucket without its share of the sum, never a negative rate.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Bucket bounds, in seconds, for request latencies (0.5 ms … 60 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Bucket bounds, in seconds, for cold starts and their phases (1 ms … 5 min).
pub const COLD_START_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Bucket bounds, in seconds, for control-path work: reconciles, API requests, store writes
/// (0.1 ms … 10 s).
pub const SLOW_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A histogram of durations over fixed bounds (seconds), with a last `+Inf` bucket.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// `bounds` in whole microseconds, compared against each observation.
    micros: Box<[u64]>,
    /// One more than `bounds`: the last one is `+Inf`.
    buckets: Box<[AtomicU64]>,
    sum_micros: AtomicU64,
}

/// A point-in-time copy of a [`Histogram`], or the sum of several; renders as a Prometheus
/// histogram.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations in this bucket alone)`, the last bound `+Inf`.
    pub buckets: Vec<(f64, u64)>,
    /// The sum of the observations, in seconds.
    pub sum: f64,
    /// The number of observations.
    pub count: u64,
}

/// Responses counted by status class (`1xx` … `5xx`).
#[derive(Debug, Default)]
pub struct CodeCounters([AtomicU64; 5]);

// === impl Histogram ===

impl Histogram {
    /// An empty histogram over `bounds` (seconds, ascending).
    pub fn new(bounds: &'static [f64]) -> Self {
        // Rounded: 0.0005 × 1e6 is 499.99… in floating point.
        let micros = bounds.iter().map(|b| (b * 1e6).round() as u64).collect();
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            bounds,
            micros,
            buckets,
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn record(&self, value: Duration) {
        let micros = u64::try_from(value.as_micros()).unwrap_or(u64::MAX);
        let index = self
            .micros
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(self.micros.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The observations so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.buckets.iter())
            .map(|(bound, n)| (bound, n.load(Ordering::Relaxed)))
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            buckets,
        }
    }
}

// === impl HistogramSnapshot ===

impl HistogramSnapshot {
    /// Adds `other`'s observations (histograms over the same bounds; an empty snapshot takes
    /// the other's bounds).
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.iter().map(|&(b, _)| (b, 0)).collect();
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
            mine.1 += theirs.1;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

impl HistogramSnapshot {
    /// The observations made after `earlier` (a snapshot of the same histogram taken before);
    /// a bucket that went down (a reset) counts as empty.
    pub fn since(&self, earlier: &HistogramSnapshot) -> HistogramSnapshot {
        let buckets: Vec<(f64, u64)> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, &(bound, n))| {
                let before = earlier.buckets.get(i).map_or(0, |b| b.1);
                (bound, n.saturating_sub(before))
            })
            .collect();
        HistogramSnapshot {
            count: buckets.iter().map(|(_, n)| n).sum(),
            sum: (self.sum - earlier.sum).max(0.0),
            buckets,
        }
    }

    /// The `q`-quantile (0..=1) in seconds, estimated as Prometheus's `histogram_quantile`
    /// does: linearly within the bucket it falls in (the lowest from 0; one in the `+Inf`
    /// bucket is the highest finite bound). `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for &(upper, n) in &self.buckets {
            if n > 0 && (below + n) as f64 >= rank {
                if upper.is_infinite() {
                    return Some(lower);
                }
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * within);
            }
            below += n;
            if upper.is_finite() {
                lower = upper;
            }
        }
        Some(lower)
    }
}

impl TypedMetric for HistogramSnapshot {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for HistogramSnapshot {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.sum,
            self.count,
            &self.buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

// === impl CodeCounters ===

impl CodeCounters {
    /// The classes' label values, in [`CodeCounters::snapshot`]'s order.
    pub const CLASSES: [&'static str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

    /// Counts one response with `status` (outside 100..=599: as a 5xx).
    pub fn record(&self, status: u16) {
        let class = usize::from(status / 100).wrapping_sub(1).min(4);
        self.0[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts per class, `1xx` first.
    pub fn snapshot(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::registry::{Registry, Unit};

    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&[0.001, 0.01]);
        h.record(Duration::from_micros(1000)); // on the bound: le="0.001"
        h.record(Duration::from_micros(1001));
        h.record(Duration::from_secs(5));
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(0.001, 1), (0.01, 1), (f64::INFINITY, 1)]);
        assert_eq!(s.count, 3);
        assert!((s.sum - 5.002001).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn bounds_are_exact_in_microseconds() {
        let h = Histogram::new(LATENCY_BUCKETS);
        h.record(Duration::from_micros(500));
        assert_eq!(h.snapshot().buckets[0], (0.0005, 1));
    }

    #[test]
    fn snapshots_merge_bucket_by_bucket() {
        let (a, b) = (
            Histogram::new(LATENCY_BUCKETS),
            Histogram::new(LATENCY_BUCKETS),
        );
        a.record(Duration::from_millis(3));
        b.record(Duration::from_millis(3));
        b.record(Duration::from_secs(100));
        let mut all = HistogramSnapshot::default();
        all.merge(&a.snapshot());
        all.merge(&b.snapshot());
        assert_eq!(all.count, 3);
        assert_eq!(all.buckets.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(all.buckets[3], (0.005, 2));
        assert_eq!(all.buckets.last(), Some(&(f64::INFINITY, 1)));
    }

    #[test]
    fn renders_cumulative_buckets_with_seconds_unit() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.record(Duration::from_millis(50));
        h.record(Duration::from_millis(500));
        let mut registry = Registry::with_prefix("nimbus");
        registry.register_with_unit("wait", "Waits", Unit::Seconds, h.snapshot());
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("# TYPE nimbus_wait_seconds histogram"),
            "{out}"
        );
        assert!(out.contains("nimbus_wait_seconds_count 2"), "{out}");
        assert!(
            out.contains("nimbus_wait_seconds_bucket{le=\"0.1\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("nimbus_wait_seconds_bucket{le=\"1.0\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("nimbus_wait_seconds_bucket{le=\"+Inf\"} 2"),
            "{out}"
        );
    }

    #[test]
    fn status_classes_count_out_of_range_codes_as_server_errors() {
        let c = CodeCounters::default();
        for status in [101, 200, 204, 302, 404, 503, 0, 999] {
            c.record(status);
        }
        assert_eq!(c.snapshot(), [1, 2, 1, 1, 3]);
    }

    #[test]
    fn quantiles_of_what_came_since_an_earlier_snapshot() {
        let h = Histogram::new(LATENCY_BUCKETS);
        h.record(Duration::from_secs(20));
        let earlier = h.snapshot();
        for _ in 0..90 {
            h.record(Duration::from_micros(700)); // the 0.5–1 ms bucket
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(200)); // the 0.1–0.25 s bucket
        }
        let recent = h.snapshot().since(&earlier);
        assert_eq!(recent.count, 100, "the 20 s one came before");
        let p50 = recent.quantile(0.5).unwrap();
        assert!((0.0005..=0.001).contains(&p50), "{p50}");
        let p99 = recent.quantile(0.99).unwrap();
        assert!((0.1..=0.25).contains(&p99), "{p99}");
        assert_eq!(HistogramSnapshot::default().quantile(0.5), None);
        assert_eq!(h.snapshot().since(&h.snapshot()).quantile(0.5), None);
    }
}
