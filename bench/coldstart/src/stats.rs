//! Summaries of timing samples and the table rows printed from them.

use std::time::Duration;

/// Median, p90 and minimum of a set of samples.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    pub runs: usize,
    pub median: Duration,
    pub p90: Duration,
    pub min: Duration,
}

impl Summary {
    /// `None` for no samples.
    pub fn of(samples: &[Duration]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort();
        Some(Self {
            runs: sorted.len(),
            median: percentile(&sorted, 0.5),
            p90: percentile(&sorted, 0.9),
            min: *sorted.first()?,
        })
    }

    /// The ratio of the two medians, `self / floor`.
    pub fn ratio_to(&self, floor: &Summary) -> f64 {
        self.median.as_secs_f64() / floor.median.as_secs_f64()
    }
}

/// Nearest-rank percentile of sorted samples (`p` in 0..=1).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

/// `1.234 ms`
pub fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
