//! Waiting for idle CPUs before a measurement, as the project's benchmarking guide asks: read
//! `/proc/stat` twice, `SAMPLE` apart, until the idle share reaches a threshold.

use std::time::{Duration, Instant};

const SAMPLE: Duration = Duration::from_millis(250);

/// Wait until at least `threshold` (0..1) of the CPU time was idle over one sample, for at most
/// `max_wait`. Returns whether that level was reached; `true` when `/proc/stat` is unreadable.
pub fn wait_for_idle(threshold: f64, max_wait: Duration) -> bool {
    let deadline = Instant::now() + max_wait;
    loop {
        let Some(idle) = idle_share(SAMPLE) else {
            return true;
        };
        if idle >= threshold {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// The idle share of all CPUs over `window`.
fn idle_share(window: Duration) -> Option<f64> {
    let (idle0, total0) = cpu_times()?;
    std::thread::sleep(window);
    let (idle1, total1) = cpu_times()?;
    let total = total1.saturating_sub(total0);
    (total > 0).then(|| idle1.saturating_sub(idle0) as f64 / total as f64)
}

/// (idle + iowait, total) ticks from the `cpu` line of `/proc/stat`.
fn cpu_times() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((idle, ticks.iter().take(8).sum()))
}
