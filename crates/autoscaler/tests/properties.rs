//! Properties that hold for any spec and any sequence of samples, activations and decisions:
//! bounds, no scale-down in panic, no early scale to zero, bounded memory, and no panic or NaN
//! whatever the inputs (including times that go backwards).

mod support;

use std::time::Duration;

use nimbus_api::autoscaling::{Metric, ScalingSpec};
use nimbus_autoscaler::{Autoscaler, Decision, Sample};
use proptest::prelude::*;
use support::s;

/// One call on the autoscaler, `dt` milliseconds after (or, when `back`, before) the last.
#[derive(Clone, Debug)]
enum Op {
    Record {
        back: bool,
        dt: u64,
        concurrency: f64,
        requests: f64,
        period: u64,
    },
    Activate {
        dt: u64,
    },
    Decide {
        dt: u64,
        ready: u32,
        reachable: bool,
    },
}

/// Mostly ticks of up to 3 s, sometimes long jumps of up to 3 hours.
fn dt() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..3_000u64, 1 => 0..10_800_000u64]
}

/// Realistic demand: often zero, sometimes a burst.
fn demand() -> impl Strategy<Value = f64> + Clone {
    prop_oneof![3 => Just(0.0), 5 => 0.0..500.0f64, 1 => 500.0..100_000.0f64]
}

fn ops(value: impl Strategy<Value = f64> + Clone, max_back: u64) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => ((0..=max_back).prop_map(|b| b > 0), dt(), value.clone(), value, 0..5_000u64)
            .prop_map(|(back, dt, concurrency, requests, period)| Op::Record {
                back, dt, concurrency, requests, period,
            }),
        1 => dt().prop_map(|dt| Op::Activate { dt }),
        4 => (dt(), 0..40u32, prop::bool::weighted(0.9))
            .prop_map(|(dt, ready, reachable)| Op::Decide { dt, ready, reachable }),
    ];
    prop::collection::vec(op, 1..300)
}

/// Specs the API accepts.
fn valid_spec() -> impl Strategy<Value = ScalingSpec> {
    let durations = (6..3600u64, 0..120u64, 0..300u64, 0..120u64, 1.0..100.0f64);
    let numbers = (
        1.0..1000.0f64,
        0.01..=1.0f64,
        110.0..1000.0f64,
        1.01..2000.0f64,
        1.01..10.0f64,
    );
    let counts = (0..5u32, 0..50u32, 0..5u32, 1..5u32, prop::bool::ANY);
    (durations, numbers, counts, 1..700u64).prop_map(|(d, n, c, activation_timeout)| {
        let (window, delay, retention, grace, panic_pct) = d;
        let (target, utilization, threshold, up, down) = n;
        let (min, extra, initial, activation, rps) = c;
        ScalingSpec {
            metric: if rps {
                Metric::Rps
            } else {
                Metric::Concurrency
            },
            target,
            target_utilization: utilization,
            window: s(window),
            panic_window_percentage: panic_pct,
            panic_threshold_percentage: threshold,
            min_scale: min,
            max_scale: if extra == 0 { 0 } else { min.max(1) + extra },
            initial_scale: initial,
            activation_scale: activation,
            scale_down_delay: s(delay),
            scale_to_zero_retention: s(retention),
            scale_to_zero_grace: s(grace),
            target_burst_capacity: 200.0,
            max_scale_up_rate: up,
            max_scale_down_rate: down,
            container_concurrency: 0,
            activation_timeout: s(activation_timeout),
        }
    })
}

/// Anything at all, including values the API rejects.
fn wild_spec() -> impl Strategy<Value = ScalingSpec> {
    let f = || any::<f64>();
    let d = || {
        prop_oneof![
            Just(Duration::MAX),
            Just(Duration::ZERO),
            any::<u64>().prop_map(Duration::from_millis)
        ]
    };
    (
        (f(), f(), f(), f(), f(), f(), f()),
        (d(), d(), d(), d(), d()),
        any::<[u32; 5]>(),
        any::<bool>(),
    )
        .prop_map(|(n, ds, c, rps)| ScalingSpec {
            metric: if rps {
                Metric::Rps
            } else {
                Metric::Concurrency
            },
            target: n.0,
            target_utilization: n.1,
            panic_window_percentage: n.2,
            panic_threshold_percentage: n.3,
            target_burst_capacity: n.4,
            max_scale_up_rate: n.5,
            max_scale_down_rate: n.6,
            window: ds.0,
            scale_down_delay: ds.1,
            scale_to_zero_retention: ds.2,
            scale_to_zero_grace: ds.3,
            activation_timeout: ds.4,
            min_scale: c[0],
            max_scale: c[1],
            initial_scale: c[2],
            activation_scale: c[3],
            container_concurrency: c[4],
        })
}

/// Runs `ops` from t = 1000 s, calling `check` after every decision with the time and the
/// time of the last activity the model saw.
fn drive(
    spec: ScalingSpec,
    ops: &[Op],
    mut check: impl FnMut(&Autoscaler, &Op, Decision, Duration, Duration),
) {
    let mut now = s(1000);
    let mut last_activity = now;
    let mut a = Autoscaler::new(spec, now);
    for op in ops {
        match *op {
            Op::Record {
                back,
                dt,
                concurrency,
                requests,
                period,
            } => {
                now = step(now, back, dt);
                let active = |v: f64| v.is_finite() && v > 0.0;
                if active(concurrency) || active(requests) {
                    last_activity = last_activity.max(now);
                }
                let period = Duration::from_millis(period);
                a.record(
                    now,
                    Sample {
                        concurrency,
                        requests,
                        period,
                    },
                );
            }
            Op::Activate { dt } => {
                now = step(now, false, dt);
                last_activity = now;
                a.activate(now);
            }
            Op::Decide {
                dt,
                ready,
                reachable,
            } => {
                now = step(now, false, dt);
                let d = a.decide(now, ready, reachable);
                check(&a, op, d, now, last_activity);
            }
        }
        assert!(a.retained_buckets() <= a.max_retained_buckets());
    }
}

fn step(now: Duration, back: bool, dt: u64) -> Duration {
    let dt = Duration::from_millis(dt);
    if back {
        now.saturating_sub(dt)
    } else {
        now.saturating_add(dt)
    }
}

proptest! {
    #[test]
    fn desired_is_within_bounds_when_reachable(spec in valid_spec(), ops in ops(demand(), 0)) {
        let (min, max) = (spec.min_scale, spec.max_scale);
        drive(spec, &ops, |_, op, d, _, _| {
            if let Op::Decide { reachable: true, .. } = op {
                assert!(d.desired >= min, "{d:?} below min-scale {min}");
            }
            assert!(max == 0 || d.desired <= max, "{d:?} above max-scale {max}");
        });
    }

    #[test]
    fn never_scales_down_while_panicking(spec in valid_spec(), ops in ops(demand(), 2)) {
        let ops: Vec<Op> = ops
            .into_iter()
            .map(|op| match op {
                Op::Decide { dt, ready, .. } => Op::Decide { dt, ready, reachable: true },
                other => other,
            })
            .collect();
        let mut previous: Option<Decision> = None;
        drive(spec, &ops, |_, _, d, _, _| {
            if let Some(p) = previous.filter(|p| p.panicking && d.panicking) {
                assert!(d.desired >= p.desired, "{p:?} then {d:?}");
            }
            previous = Some(d);
        });
    }

    #[test]
    fn never_scales_to_zero_early(spec in valid_spec(), ops in ops(demand(), 0)) {
        check_never_scales_to_zero_early(spec, &ops);
    }

    #[test]
    fn memory_is_bounded(spec in valid_spec(), ops in ops(demand(), 3)) {
        let delay_secs = spec.scale_down_delay.as_secs() as usize;
        let window_secs = spec.window.as_secs() as usize;
        drive(spec, &ops, |a, _, _, _, _| {
            assert!(a.retained_buckets() <= window_secs + 2);
            assert!(a.retained_delay_entries() <= delay_secs);
        });
    }

    #[test]
    fn any_input_gives_a_number(spec in wild_spec(), ops in ops(any::<f64>(), 3)) {
        drive(spec, &ops, |_, _, d, _, _| {
            assert!(!d.stable_value.is_nan() && !d.panic_value.is_nan(), "{d:?}");
            assert!(d.stable_value.is_finite() && d.panic_value.is_finite(), "{d:?}");
            assert!(!d.excess_burst_capacity.is_nan(), "{d:?}");
        });
    }
}

/// A revision that has had instances (or wanted them) goes to zero only once it has been idle
/// for `window + max(grace, retention)`, or once it has wanted instances without any getting
/// ready for the whole activation timeout (Knative's activation timeout: then it gives up).
fn check_never_scales_to_zero_early(spec: ScalingSpec, ops: &[Op]) {
    let mut previous = spec.initial_scale;
    let timeout = spec.activation_timeout;
    let after = Autoscaler::new(spec.clone(), s(0)).scale_to_zero_after();
    let mut activating_since = (spec.initial_scale > 0).then_some(s(1000));
    drive(spec, ops, |_, op, d, now, last_activity| {
        let Op::Decide { ready, .. } = *op else {
            return;
        };
        if ready > 0 {
            activating_since = None;
        }
        let gave_up = activating_since.is_some_and(|since| now - since >= timeout);
        if d.desired == 0 && (previous > 0 || ready > 0) && !gave_up {
            assert!(
                now - last_activity >= after,
                "zero {:?} after activity",
                now - last_activity
            );
        }
        match (d.desired, ready) {
            (0, _) => activating_since = None,
            (_, 0) => {
                activating_since.get_or_insert(now);
            }
            _ => {}
        }
        previous = d.desired;
    });
}

/// The counterexample CI found on a clean clone (issue #11): an unreachable revision created at
/// initial scale 1 that never got an instance ready was scaled to zero 2.654 s after activity,
/// because the autoscaler forgot that a revision starts at its initial scale. By Knative's
/// rules it is still activating: it keeps its instance until the activation timeout.
#[test]
fn regression_unreachable_revision_at_initial_scale_is_not_zeroed_while_activating() {
    let spec = ScalingSpec {
        metric: Metric::Rps,
        target: 1.0,
        target_utilization: 0.01,
        window: s(6),
        panic_window_percentage: 1.0,
        panic_threshold_percentage: 110.0,
        min_scale: 0,
        max_scale: 0,
        initial_scale: 1,
        activation_scale: 1,
        scale_down_delay: Duration::ZERO,
        scale_to_zero_retention: Duration::ZERO,
        scale_to_zero_grace: Duration::ZERO,
        target_burst_capacity: 200.0,
        max_scale_up_rate: 1.01,
        max_scale_down_rate: 1.01,
        container_concurrency: 0,
        activation_timeout: s(90),
    };
    let ops = [
        Op::Record {
            back: false,
            dt: 3346,
            concurrency: 323.7,
            requests: 0.0,
            period: 0,
        },
        Op::Decide {
            dt: 2654,
            ready: 0,
            reachable: false,
        },
    ];
    check_never_scales_to_zero_early(spec.clone(), &ops);
    let mut a = Autoscaler::new(spec, s(1000));
    assert_eq!(a.decide(s(1006), 0, false).desired, 1, "still activating");
    assert_eq!(
        a.decide(s(1089), 0, false).desired,
        1,
        "just before the timeout"
    );
    assert_eq!(a.decide(s(1091), 0, false).desired, 0, "gave up after 90 s");
}

#[test]
fn a_year_of_samples_keeps_a_window_of_buckets() {
    let mut a = Autoscaler::new(ScalingSpec::default(), s(0));
    let sample = Sample {
        concurrency: 3.0,
        requests: 7.0,
        period: Duration::from_millis(700),
    };
    let mut t = Duration::ZERO;
    for i in 0..200_000u64 {
        t += Duration::from_millis(700 + i % 11 * 1000);
        a.record(t, sample);
        if i % 50 == 0 {
            a.decide(t, 1, true);
        }
    }
    assert!(a.retained_buckets() <= 62);
}
