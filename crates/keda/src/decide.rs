//! KEDA's and the HPA's scaling rule as a pure function of the triggers' readings and time
//! (time is passed in, never read here).
//!
//! - A trigger is *active* when its metric is above its activation threshold.
//! - Any active trigger: scale to at least `max(minReplicaCount, 1)`, to the HPA's count
//!   `max over triggers of ceil(metric / target)` (`AverageValue`; `Value`: `ceil(current ×
//!   metric / target)`), at most `maxReplicaCount`.
//! - No active trigger: once `cooldownPeriod` has passed since the last active poll, scale to
//!   `idleReplicaCount` (when set) or to zero (when `minReplicaCount` is 0); before that the
//!   HPA's count holds, so a draining backlog scales down step by step.
//! - The HPA scales down only to the largest count it recommended over the last 300 s (its
//!   default scale-down stabilization window); scale-ups are applied at once.
//! - A trigger that cannot be read makes no decision: while none is active and one failed the
//!   scale stays where it is (KEDA without `fallback`), so a broker outage never scales a
//!   working consumer to zero.

use std::time::Duration;

use nimbus_api::keda::triggers::MetricType;

/// A ScaledObject's bounds, KEDA's defaults applied.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    pub idle: Option<u32>,
    pub cooldown: Duration,
    pub initial_cooldown: Duration,
}

impl Bounds {
    /// The bounds of a ScaledObject's spec.
    pub fn of(spec: &nimbus_api::keda::ScaledObjectSpec) -> Self {
        let count = |n: i32| u32::try_from(n).unwrap_or(0);
        let secs = |n: i32| Duration::from_secs(u64::try_from(n).unwrap_or(0));
        Self {
            min: count(spec.min_replica_count()),
            max: count(spec.max_replica_count()),
            idle: spec.idle_replica_count.map(count),
            cooldown: secs(spec.cooldown_period()),
            initial_cooldown: secs(spec.initial_cooldown_period.unwrap_or(0)),
        }
    }
}

/// One trigger's poll.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    Metric {
        value: f64,
        target: f64,
        activation: f64,
        metric_type: MetricType,
    },
    /// The trigger could not be read (broker unreachable, bad credentials, bad metadata).
    Failed,
}

impl Reading {
    /// Above the activation threshold.
    pub fn is_active(&self) -> bool {
        matches!(self, Reading::Metric { value, activation, .. } if value > activation)
    }

    /// The HPA's instance count for this metric alone, `current` instances running.
    fn wanted(&self, current: u32) -> u32 {
        let Reading::Metric {
            value,
            target,
            metric_type,
            ..
        } = *self
        else {
            return 0;
        };
        let ratio = match target > 0.0 {
            true => value / target,
            false if value > 0.0 => f64::from(u32::MAX),
            false => 0.0,
        };
        let count = match metric_type {
            MetricType::AverageValue => ratio,
            MetricType::Value => f64::from(current.max(1)) * ratio,
        };
        count.ceil().min(f64::from(u32::MAX)) as u32
    }
}

/// What to do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The event-driven instance count (the revision's floor).
    pub desired: u32,
    /// A trigger is active (KEDA's `Active` condition).
    pub active: bool,
}

/// The times the rule depends on, all measured on one clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub now: Duration,
    /// When a trigger was last active; `None`: never since this ScaledObject was first seen.
    pub last_active: Option<Duration>,
    /// When the ScaledObject was first seen.
    pub created: Duration,
}

/// The event-driven scale for `readings`, `current` being the scale decided last time.
pub fn decide(
    bounds: &Bounds,
    readings: &[Reading],
    current: u32,
    clock: Clock,
    history: &mut Recommendations,
) -> Outcome {
    let active = readings.iter().any(Reading::is_active);
    let wanted = readings
        .iter()
        .map(|r| r.wanted(current))
        .max()
        .unwrap_or(0);
    let mut hpa = |floor: u32| {
        let count = wanted.clamp(floor.min(bounds.max), bounds.max);
        history.stabilize(clock.now, count)
    };
    let desired = if active {
        hpa(bounds.min.max(1))
    } else if readings.contains(&Reading::Failed) {
        current
    } else if cooled_down(bounds, clock) && (bounds.idle.is_some() || bounds.min == 0) {
        history.clear();
        bounds.idle.unwrap_or(0)
    } else if current == 0 && bounds.min == 0 {
        0
    } else {
        hpa(bounds.min.max(1))
    };
    Outcome { desired, active }
}

/// The HPA's default scale-down stabilization window
/// (`behavior.scaleDown.stabilizationWindowSeconds`, 300 s; scale-ups are not delayed).
pub const SCALE_DOWN_STABILIZATION: Duration = Duration::from_secs(300);

/// The HPA's recommendations of the last [`SCALE_DOWN_STABILIZATION`]: it scales down only to
/// the largest of them, so a backlog that dips for one poll does not remove instances.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recommendations(Vec<(Duration, u32)>);

impl Recommendations {
    /// Record `count` at `now`; the largest recommendation of the window.
    pub fn stabilize(&mut self, now: Duration, count: u32) -> u32 {
        self.0
            .retain(|(at, _)| now.saturating_sub(*at) < SCALE_DOWN_STABILIZATION);
        self.0.push((now, count));
        self.0.iter().map(|(_, c)| *c).max().unwrap_or(count)
    }

    /// Forget them (the revision went idle: the next activation starts afresh).
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

fn cooled_down(bounds: &Bounds, clock: Clock) -> bool {
    let since = |t: Duration| clock.now.saturating_sub(t);
    let after_last = clock
        .last_active
        .is_none_or(|t| since(t) >= bounds.cooldown);
    after_last && since(clock.created) >= bounds.initial_cooldown
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
