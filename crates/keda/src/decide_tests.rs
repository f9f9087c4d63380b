use super::*;

fn bounds(min: u32, max: u32) -> Bounds {
    Bounds {
        min,
        max,
        idle: None,
        cooldown: Duration::from_secs(300),
        initial_cooldown: Duration::ZERO,
    }
}

fn metric(value: f64, target: f64, activation: f64) -> Reading {
    Reading::Metric {
        value,
        target,
        activation,
        metric_type: MetricType::AverageValue,
    }
}

/// One decision with no earlier recommendations.
fn once(bounds: &Bounds, readings: &[Reading], current: u32, clock: Clock) -> Outcome {
    decide(
        bounds,
        readings,
        current,
        clock,
        &mut Recommendations::default(),
    )
}

fn at(now: u64, last_active: Option<u64>) -> Clock {
    Clock {
        now: Duration::from_secs(now),
        last_active: last_active.map(Duration::from_secs),
        created: Duration::ZERO,
    }
}

#[test]
fn backlog_scales_from_zero_to_ceil_of_metric_over_target() {
    let out = once(&bounds(0, 100), &[metric(12.0, 5.0, 0.0)], 0, at(10, None));
    assert_eq!(
        out,
        Outcome {
            desired: 3,
            active: true
        }
    );
}

#[test]
fn the_largest_trigger_wins_and_max_replica_count_caps() {
    let readings = [metric(12.0, 5.0, 0.0), metric(100.0, 10.0, 0.0)];
    assert_eq!(once(&bounds(0, 100), &readings, 0, at(0, None)).desired, 10);
    assert_eq!(once(&bounds(0, 4), &readings, 0, at(0, None)).desired, 4);
}

#[test]
fn a_backlog_at_or_below_activation_keeps_zero() {
    let out = once(&bounds(0, 100), &[metric(3.0, 5.0, 3.0)], 0, at(10, None));
    assert_eq!(
        out,
        Outcome {
            desired: 0,
            active: false
        }
    );
    let out = once(&bounds(0, 100), &[metric(4.0, 5.0, 3.0)], 0, at(10, None));
    assert_eq!(
        out,
        Outcome {
            desired: 1,
            active: true
        }
    );
}

#[test]
fn scale_to_zero_waits_for_the_cooldown_after_the_last_active_poll() {
    let b = bounds(0, 100);
    let idle = [metric(0.0, 5.0, 0.0)];
    assert_eq!(
        once(&b, &idle, 3, at(200, Some(100))).desired,
        1,
        "cooling down: HPA's floor of 1"
    );
    assert_eq!(once(&b, &idle, 1, at(399, Some(100))).desired, 1);
    assert_eq!(
        once(&b, &idle, 1, at(400, Some(100))).desired,
        0,
        "cooldown passed"
    );
}

#[test]
fn min_replica_count_holds_and_idle_replica_count_replaces_it_when_idle() {
    let idle = [metric(0.0, 5.0, 0.0)];
    assert_eq!(once(&bounds(2, 10), &idle, 0, at(1000, None)).desired, 2);
    let with_idle = Bounds {
        idle: Some(0),
        ..bounds(2, 10)
    };
    assert_eq!(once(&with_idle, &idle, 2, at(1000, Some(0))).desired, 0);
    assert_eq!(once(&with_idle, &idle, 2, at(100, Some(0))).desired, 2);
    let busy = [metric(1.0, 5.0, 0.0)];
    assert_eq!(once(&with_idle, &busy, 0, at(1000, Some(0))).desired, 2);
}

#[test]
fn a_failed_trigger_holds_the_scale_unless_another_is_active() {
    let b = bounds(0, 100);
    let out = once(
        &b,
        &[Reading::Failed, metric(0.0, 5.0, 0.0)],
        4,
        at(1000, None),
    );
    assert_eq!(
        out,
        Outcome {
            desired: 4,
            active: false
        }
    );
    let out = once(
        &b,
        &[Reading::Failed, metric(30.0, 5.0, 0.0)],
        4,
        at(1000, None),
    );
    assert_eq!(out.desired, 6);
}

#[test]
fn value_metrics_scale_with_the_current_count() {
    let r = Reading::Metric {
        value: 20.0,
        target: 10.0,
        activation: 0.0,
        metric_type: MetricType::Value,
    };
    assert_eq!(once(&bounds(0, 100), &[r], 0, at(0, None)).desired, 2);
    assert_eq!(once(&bounds(0, 100), &[r], 3, at(0, None)).desired, 6);
}

#[test]
fn initial_cooldown_delays_the_first_scale_to_zero() {
    let b = Bounds {
        initial_cooldown: Duration::from_secs(60),
        cooldown: Duration::ZERO,
        ..bounds(0, 10)
    };
    let idle = [metric(0.0, 5.0, 0.0)];
    assert_eq!(once(&b, &idle, 1, at(30, None)).desired, 1);
    assert_eq!(once(&b, &idle, 1, at(60, None)).desired, 0);
}

#[test]
fn bounds_take_kedas_defaults() {
    let b = Bounds::of(&Default::default());
    assert_eq!((b.min, b.max, b.idle), (0, 100, None));
    assert_eq!(b.cooldown, Duration::from_secs(300));
}

#[test]
fn scale_down_waits_for_the_stabilization_window_scale_up_does_not() {
    let b = bounds(0, 100);
    let mut history = Recommendations::default();
    let mut poll = |value: f64, now: u64, current: u32| {
        let clock = at(now, Some(now));
        decide(&b, &[metric(value, 5.0, 0.0)], current, clock, &mut history).desired
    };
    assert_eq!(poll(50.0, 0, 0), 10);
    assert_eq!(
        poll(10.0, 100, 10),
        10,
        "within 300 s of the recommendation of 10"
    );
    assert_eq!(poll(60.0, 200, 10), 12, "up at once");
    assert_eq!(poll(10.0, 499, 12), 12);
    assert_eq!(
        poll(10.0, 500, 12),
        2,
        "300 s after the last larger recommendation"
    );
}

#[test]
fn going_idle_forgets_the_recommendations() {
    let b = Bounds {
        cooldown: Duration::ZERO,
        ..bounds(0, 100)
    };
    let mut history = Recommendations::default();
    let busy = decide(&b, &[metric(50.0, 5.0, 0.0)], 0, at(0, None), &mut history);
    assert_eq!(busy.desired, 10);
    let idle = decide(
        &b,
        &[metric(0.0, 5.0, 0.0)],
        10,
        at(10, Some(0)),
        &mut history,
    );
    assert_eq!(idle.desired, 0);
    let again = decide(
        &b,
        &[metric(1.0, 5.0, 0.0)],
        0,
        at(20, Some(0)),
        &mut history,
    );
    assert_eq!(again.desired, 1, "not the 10 recommended before going idle");
}
