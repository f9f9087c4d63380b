//! Probe schedules, Kubernetes' rules: the startup probe runs first (after `initialDelaySeconds`,
//! every `periodSeconds`) until it passes once, or fails `failureThreshold` times in a row (the
//! instance is then restarted); liveness and readiness run while the instance serves — liveness
//! failing `failureThreshold` times in a row restarts the instance; readiness failing that often
//! takes it out of the endpoints until it passes `successThreshold` times in a row.
//!
//! Each schedule takes the check as a closure, so these rules are tested with paused time and
//! scripted results; the checks themselves are in [`crate::probe`].

use std::future::Future;

use nimbus_runtime::Probe;

/// Wait for the startup probe to pass once. `Err` after `failure_threshold` failures in a row.
pub(crate) async fn startup<F, Fut>(probe: &Probe, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        match check().await {
            Ok(()) => return Ok(()),
            Err(why) => {
                failures += 1;
                if failures >= probe.failure_threshold {
                    return Err(format!(
                        "startup probe failed {failures} times in a row: {why}"
                    ));
                }
            }
        }
        tokio::time::sleep(probe.period).await;
    }
}

/// Resolves (with the reason) once the liveness probe failed `failure_threshold` times in a row.
pub(crate) async fn liveness<F, Fut>(probe: &Probe, mut check: F) -> String
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    loop {
        match check().await {
            Ok(()) => failures = 0,
            Err(why) => {
                failures += 1;
                if failures >= probe.failure_threshold {
                    return format!("liveness probe failed {failures} times in a row: {why}");
                }
            }
        }
        tokio::time::sleep(probe.period).await;
    }
}

/// Run the readiness probe forever on an instance that is ready now, calling `changed(false,
/// why)` when it fails `failure_threshold` times in a row and `changed(true, "")` when it then
/// passes `success_threshold` times in a row. A period of 0 (Knative's "as fast as sensible")
/// checks every second once ready.
pub(crate) async fn readiness<F, Fut>(
    probe: &Probe,
    mut check: F,
    mut changed: impl FnMut(bool, &str),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let period = if probe.period.is_zero() {
        std::time::Duration::from_secs(1)
    } else {
        probe.period
    };
    let (mut ready, mut streak) = (true, 0);
    loop {
        tokio::time::sleep(period).await;
        let result = check().await;
        let passed = result.is_ok();
        if passed == ready {
            streak = 0;
            continue;
        }
        streak += 1;
        let needed = if ready {
            probe.failure_threshold
        } else {
            probe.success_threshold
        };
        if streak >= needed {
            ready = passed;
            streak = 0;
            changed(ready, result.err().as_deref().unwrap_or(""));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use nimbus_runtime::ProbeAction;
    use tokio::time::Instant;

    use super::*;

    fn probe(period: u64, failure_threshold: u32, success_threshold: u32) -> Probe {
        Probe {
            period: Duration::from_secs(period),
            failure_threshold,
            success_threshold,
            initial_delay: Duration::from_secs(5),
            ..Probe::new(ProbeAction::TcpSocket { port: None })
        }
    }

    /// When each check ran, since the test began.
    type Times = Arc<Mutex<Vec<Duration>>>;

    /// A check that returns the scripted results in order, then passes forever, recording when it ran.
    fn scripted(
        results: &[bool],
    ) -> (
        impl FnMut() -> std::future::Ready<Result<(), String>>,
        Times,
    ) {
        let mut script: VecDeque<bool> = results.iter().copied().collect();
        let times = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        let seen = Arc::clone(&times);
        let check = move || {
            seen.lock().unwrap().push(start.elapsed());
            let pass = script.pop_front().unwrap_or(true);
            std::future::ready(if pass { Ok(()) } else { Err("nope".into()) })
        };
        (check, times)
    }

    #[tokio::test(start_paused = true)]
    async fn startup_waits_the_delay_then_checks_each_period() {
        let (check, times) = scripted(&[false, false, true]);
        startup(&probe(2, 3, 1), check).await.unwrap();
        let secs: Vec<u64> = times.lock().unwrap().iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [5, 7, 9]);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gives_up_after_the_threshold() {
        let (check, _) = scripted(&[false, false, false]);
        let err = startup(&probe(1, 3, 1), check).await.unwrap_err();
        assert_eq!(err, "startup probe failed 3 times in a row: nope");
    }

    #[tokio::test(start_paused = true)]
    async fn liveness_needs_failures_in_a_row() {
        let (check, times) = scripted(&[false, true, false, false, false]);
        let why = liveness(&probe(10, 3, 1), check).await;
        assert!(why.starts_with("liveness probe failed 3 times"), "{why}");
        assert_eq!(
            times.lock().unwrap().len(),
            5,
            "the pass in between reset the count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_flips_after_thresholds() {
        let (check, _) = scripted(&[false, false, true, true, false, true, true]);
        let changes = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&changes);
        let p = probe(1, 2, 2);
        let watching = readiness(&p, check, move |ready, _| {
            seen.lock().unwrap().push((ready, Instant::now()))
        });
        let _ = tokio::time::timeout(Duration::from_secs(20), watching).await;
        let flips: Vec<bool> = changes.lock().unwrap().iter().map(|c| c.0).collect();
        // fail,fail → unready; pass,pass → ready; a single fail changes nothing.
        assert_eq!(flips, [false, true]);
    }
}
