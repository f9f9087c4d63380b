//! [`Autoscaler`]: one revision's Knative Pod Autoscaler state and its decision, step by step as
//! the crate documentation lists them. Pure: the caller passes the time and the observations.

use std::time::Duration;

use nimbus_api::autoscaling::{Metric, ScalingSpec};

use crate::delay::{MaxWindow, ceil_secs};
use crate::window::{Bucket, Buckets, Observed, SLACK, clean};

/// Windows are clamped to this range so memory stays bounded even for a hand-built spec
/// (the API accepts 6 s – 1 h).
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// See [`MIN_WINDOW`]. The scale-down delay is clamped to the same maximum.
const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// What the revision was asked to do over one period, as the router measured it.
///
/// Samples from different sources (several routers) add up; one source should not send
/// overlapping periods.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Average number of requests in flight across the whole revision (all its instances, plus
    /// any waiting at the activator) over the period.
    pub concurrency: f64,
    /// Requests started during the period.
    pub requests: f64,
    /// The length of the period, which ends at the `now` passed to [`Autoscaler::record`].
    pub period: Duration,
}

/// The result of one [`Autoscaler::decide`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// How many instances the revision should have.
    pub desired: u32,
    /// Whether the autoscaler is in panic mode (it will not scale down until it leaves it).
    pub panicking: bool,
    /// The metric averaged over the stable window (total for the revision, not per instance).
    pub stable_value: f64,
    /// The metric averaged over the panic window.
    pub panic_value: f64,
    /// Spare capacity beyond `target-burst-capacity`: `ready × capacity per instance −
    /// target-burst-capacity − panic_value`, rounded down; always −1 when
    /// `target-burst-capacity` is −1 and 0 when it is 0. Negative means the activator should
    /// stay in the request path to buffer bursts.
    pub excess_burst_capacity: f64,
}

impl Decision {
    /// Whether the activator should stay in the request path (excess burst capacity < 0).
    pub fn activator_in_path(&self) -> bool {
        self.excess_burst_capacity < 0.0
    }
}

/// One revision's autoscaler. See the crate documentation for the rules it applies.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    spec: ScalingSpec,
    window: Duration,
    buckets: Buckets,
    delay: MaxWindow,
    last_activity: Duration,
    pending_activation: bool,
    panic: Option<Panic>,
    last_desired: u32,
    /// Whether the revision has had `max(initial-scale, min-scale)` instances ready at once
    /// (Knative's `ScaleTargetInitialized`); until then `initial-scale` is a floor.
    initialized: bool,
    /// Since when the revision has wanted instances without having one ready.
    activating_since: Option<Duration>,
    /// After [`Autoscaler::resume`]: the resumed scale, held until this time.
    resumed: Option<(Duration, u32)>,
}

/// Panic-mode state: when demand was last over the threshold and the peaks seen since panic
/// began (the recommendation Knative holds, and the final answer Nimbus also holds).
#[derive(Clone, Copy, Debug)]
struct Panic {
    last_over: Duration,
    peak_recommendation: u32,
    peak_desired: u32,
}

/// The rate-limited instance counts the observed values call for.
#[derive(Clone, Copy, Debug)]
struct Recommendation {
    stable: u32,
    panic: u32,
    over_threshold: bool,
}

// === impl Autoscaler ===

impl Autoscaler {
    /// The autoscaler of a revision created at `now`. Creation counts as activity, and the
    /// revision starts at `initial-scale` instances (rule 7).
    pub fn new(spec: ScalingSpec, now: Duration) -> Self {
        let window = spec.window.clamp(MIN_WINDOW, MAX_WINDOW);
        let panic = panic_window(&spec).clamp(MIN_WINDOW, window);
        Self {
            buckets: Buckets::new(ceil_secs(window), ceil_secs(panic)),
            delay: MaxWindow::new(spec.scale_down_delay.min(MAX_WINDOW)),
            window,
            last_activity: now,
            pending_activation: false,
            panic: None,
            // A revision is created at its initial scale (Knative creates its Deployment so).
            last_desired: spec.initial_scale,
            initialized: spec.initial_scale == 0 && spec.min_scale == 0,
            activating_since: (spec.initial_scale > 0).then_some(now),
            resumed: None,
            spec,
        }
    }

    /// The autoscaler of a revision that was already running at `desired` instances before
    /// the process that decides for it restarted (the count comes from the store). The restart
    /// counts as activity, its instances must get ready again (rule 8), `initial-scale` is
    /// considered reached, and `desired` is held for one stable window: the samples that led
    /// to it were lost with the old process, so no scale-down until a full window of new ones.
    pub fn resume(spec: ScalingSpec, now: Duration, desired: u32) -> Self {
        let mut a = Self::new(spec, now);
        a.last_desired = desired;
        a.initialized = true;
        a.activating_since = (desired > 0).then_some(now);
        a.resumed = Some((now.saturating_add(a.window), desired));
        a
    }

    /// This revision's autoscaler after its spec changed (its annotations were edited) while
    /// it ran at `desired`: as [`Autoscaler::resume`] (the samples are dropped with the old
    /// windows, so `desired` is held for one new window), except that what the revision has
    /// not done yet still holds: a revision that never reached its initial scale keeps it as a
    /// floor (Knative's `ScaleTargetInitialized`), and its activation clock keeps running.
    pub fn respec(&self, spec: ScalingSpec, now: Duration, desired: u32) -> Self {
        let mut a = Self::resume(spec, now, desired);
        a.initialized = self.initialized;
        a.activating_since = self.activating_since.or(a.activating_since);
        a.pending_activation = self.pending_activation;
        a
    }

    /// Whether the revision has reached its initial scale (Knative's
    /// `ScaleTargetInitialized`): until then it is not scaled below it.
    pub fn is_initialized(&self) -> bool {
        self.initialized
    }

    /// The spec this autoscaler applies.
    pub fn spec(&self) -> &ScalingSpec {
        &self.spec
    }

    /// Feed one [`Sample`] that ended at `now`. A sample with any concurrency or requests
    /// counts as activity at `now`. NaN, negative and infinite values count as 0, values above
    /// 10¹² are clamped, and parts of a sample older than the buckets still held are ignored.
    pub fn record(&mut self, now: Duration, sample: Sample) {
        let concurrency = clean(sample.concurrency);
        let requests = clean(sample.requests);
        if concurrency > 0.0 || requests > 0.0 {
            self.last_activity = self.last_activity.max(now);
        }
        self.buckets
            .record(now, concurrency, requests, sample.period);
    }

    /// The activator holds a request for this revision and no instance is ready: the next
    /// decisions want at least `activation-scale` instances until one is ready. Counts as
    /// activity.
    pub fn activate(&mut self, now: Duration) {
        self.pending_activation = true;
        self.last_activity = self.last_activity.max(now);
    }

    /// Decide how many instances the revision should have at `now`, given how many are `ready`
    /// and whether any route sends it traffic (`reachable`).
    pub fn decide(&mut self, now: Duration, ready: u32, reachable: bool) -> Decision {
        if ready > 0 {
            self.pending_activation = false;
            self.activating_since = None;
        }
        if ready >= self.spec.initial_scale.max(self.spec.min_scale) {
            self.initialized = true;
        }
        let observed = self.observe(now);
        let recommendation = self.recommend(observed, ready, reachable);
        let mut desired = self.panic_mode(now, recommendation);
        desired = self.delay.apply(now, desired);
        desired = self.floors(now, desired, ready, reachable);
        desired = self.hold_in_panic(desired);
        desired = self.bounds(desired, reachable);
        self.track_activation(now, desired, ready);
        self.last_desired = desired;
        Decision {
            desired,
            panicking: self.panic.is_some(),
            stable_value: observed.stable,
            panic_value: observed.panic,
            excess_burst_capacity: self.excess_burst_capacity(ready, observed.panic),
        }
    }

    /// Per-second buckets held for the windows: at most the stable window in whole seconds
    /// plus 2, however long the revision runs.
    pub fn retained_buckets(&self) -> usize {
        self.buckets.len()
    }

    /// Entries held for the scale-down delay: at most the delay in whole seconds.
    pub fn retained_delay_entries(&self) -> usize {
        self.delay.len()
    }

    /// The most buckets [`Autoscaler::retained_buckets`] can report for this spec.
    pub fn max_retained_buckets(&self) -> usize {
        usize::try_from(ceil_secs(self.window)).unwrap_or(usize::MAX) + SLACK
    }

    /// When the revision last saw activity (creation, a sample with demand, an activation).
    /// With [`Autoscaler::scale_to_zero_after`] it tells a caller when to decide again to
    /// catch the moment the revision may go to zero.
    pub fn last_activity(&self) -> Duration {
        self.last_activity
    }

    /// How long after its last activity the revision may go to zero:
    /// `window + max(scale-to-zero-grace-period, scale-to-zero-pod-retention-period)`.
    pub fn scale_to_zero_after(&self) -> Duration {
        let hold = self
            .spec
            .scale_to_zero_grace
            .max(self.spec.scale_to_zero_retention);
        self.window.saturating_add(hold)
    }

    fn observe(&self, now: Duration) -> Observed {
        let signal: fn(&Bucket) -> f64 = match self.spec.metric {
            Metric::Concurrency => |b| b.concurrency,
            Metric::Rps => |b| b.requests,
        };
        self.buckets.observe(now, signal)
    }

    /// Steps 1–3: instances per window, rate limits, activation scale, panic threshold.
    fn recommend(&self, observed: Observed, ready: u32, reachable: bool) -> Recommendation {
        let ready = f64::from(ready.max(1));
        let per_instance = self.per_instance_target();
        let most = (rate(self.spec.max_scale_up_rate) * ready).ceil();
        let least = if reachable {
            (ready / rate(self.spec.max_scale_down_rate)).floor()
        } else {
            0.0
        };
        let activation = self.spec.activation_scale;
        let instances = |value: f64| {
            let wanted = value / per_instance;
            let count = count(wanted.ceil().max(least).min(most));
            if wanted > 0.0 {
                count.max(activation)
            } else {
                count
            }
        };
        let panic_demand = observed.panic / per_instance;
        Recommendation {
            stable: instances(observed.stable),
            panic: instances(observed.panic),
            over_threshold: panic_demand / ready >= self.panic_threshold(),
        }
    }

    /// Step 4: enter, extend or leave panic mode; in panic, never recommend fewer than before.
    fn panic_mode(&mut self, now: Duration, r: Recommendation) -> u32 {
        match &mut self.panic {
            _ if !r.over_threshold => {}
            Some(p) => p.last_over = p.last_over.max(now),
            None => {
                self.panic = Some(Panic {
                    last_over: now,
                    peak_recommendation: 0,
                    peak_desired: 0,
                });
            }
        }
        if self
            .panic
            .is_some_and(|p| !r.over_threshold && now.saturating_sub(p.last_over) > self.window)
        {
            self.panic = None;
        }
        match &mut self.panic {
            Some(p) => {
                p.peak_recommendation = p.peak_recommendation.max(r.stable.max(r.panic));
                p.peak_recommendation
            }
            None => r.stable,
        }
    }

    /// Steps 6–8: activation from zero, initial scale, keeping the last instance, and never
    /// giving up on a revision that is still getting its first instance ready.
    fn floors(&self, now: Duration, mut desired: u32, ready: u32, reachable: bool) -> u32 {
        let idle = self.idle_long_enough(now);
        let timed_out = self.activation_timed_out(now);
        if self.pending_activation && !timed_out {
            desired = desired.max(self.spec.activation_scale);
        }
        if !self.initialized && reachable && !timed_out {
            desired = desired.max(self.spec.initial_scale);
        }
        if desired == 0 && !idle && (ready > 0 || self.last_desired > 0) {
            desired = 1;
        }
        if desired == 0 && self.activating_since.is_some() && !timed_out {
            desired = self.last_desired;
        }
        if let Some((until, resumed)) = self.resumed
            && now < until
            && !timed_out
        {
            desired = desired.max(resumed);
        }
        desired
    }

    /// Knative's activation timeout: the revision has wanted instances for the whole
    /// `activation_timeout` without one getting ready.
    fn activation_timed_out(&self, now: Duration) -> bool {
        self.activating_since
            .is_some_and(|since| now.saturating_sub(since) >= self.spec.activation_timeout)
    }

    /// Starts the activation clock when instances are wanted and none is ready; stops it when
    /// nothing is wanted (one is ready: stopped in `decide`). Reaching zero ends the initial
    /// scale too: a revision that gave up does not start over on its own.
    fn track_activation(&mut self, now: Duration, desired: u32, ready: u32) {
        match (desired, ready) {
            (0, _) => {
                self.activating_since = None;
                self.pending_activation = false;
                self.initialized = true;
            }
            (_, 0) => {
                self.activating_since.get_or_insert(now);
            }
            _ => {}
        }
    }

    /// Step 10: in panic mode the answer never goes down.
    fn hold_in_panic(&mut self, desired: u32) -> u32 {
        match &mut self.panic {
            Some(p) => {
                p.peak_desired = p.peak_desired.max(desired);
                p.peak_desired
            }
            None => desired,
        }
    }

    /// Step 11: `min-scale` (reachable revisions only), then `max-scale` (0 = unlimited).
    fn bounds(&self, mut desired: u32, reachable: bool) -> u32 {
        if reachable {
            desired = desired.max(self.spec.min_scale);
        }
        if self.spec.max_scale > 0 {
            desired = desired.min(self.spec.max_scale);
        }
        desired
    }

    fn idle_long_enough(&self, now: Duration) -> bool {
        now.saturating_sub(self.last_activity) >= self.scale_to_zero_after()
    }

    fn excess_burst_capacity(&self, ready: u32, panic_value: f64) -> f64 {
        let tbc = self.spec.target_burst_capacity;
        if tbc.is_nan() || tbc < 0.0 {
            return -1.0;
        }
        if tbc == 0.0 {
            return 0.0;
        }
        let per_instance = match (self.spec.metric, self.spec.container_concurrency) {
            (Metric::Concurrency, cc) if cc > 0 => f64::from(cc),
            _ => self.spec.target,
        };
        let excess = (f64::from(ready) * per_instance - tbc - panic_value).floor();
        if excess.is_nan() { -1.0 } else { excess }
    }

    /// `target × target-utilization`; a non-positive or NaN product counts as 1.
    fn per_instance_target(&self) -> f64 {
        let t = self.spec.target * self.spec.target_utilization;
        if t > 0.0 { t } else { 1.0 }
    }

    /// `panic-threshold-percentage / 100`; a non-positive or NaN value counts as the default 2.
    fn panic_threshold(&self) -> f64 {
        let t = self.spec.panic_threshold_percentage / 100.0;
        if t > 0.0 { t } else { 2.0 }
    }
}

/// The panic window, computed without [`ScalingSpec::panic_window`]'s panic on a negative or
/// NaN percentage (which counts as the default 10%).
fn panic_window(spec: &ScalingSpec) -> Duration {
    let pct = spec.panic_window_percentage;
    let pct = if pct > 0.0 && pct <= 100.0 { pct } else { 10.0 };
    let window = spec.window.clamp(MIN_WINDOW, MAX_WINDOW);
    window.mul_f64(pct / 100.0)
}

/// A scale rate: below 1 (or NaN) counts as 1, which means "no change allowed".
fn rate(r: f64) -> f64 {
    if r >= 1.0 { r } else { 1.0 }
}

/// An instance count from a float: saturating, NaN as 0.
fn count(v: f64) -> u32 {
    v as u32
}
