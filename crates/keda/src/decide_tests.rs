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

fn at(now: u64, last_active: Option<u64>) -> Clock {
    Clock {
        now: Duration::from_secs(now),
        last_active: last_active.map(Duration::from_secs),
        created: Duration::ZERO,
    }
}

#[test]
fn backlog_scales_from_zero_to_ceil_of_metric_over_target() {
    let out = decide(&bounds(0, 100), &[metric(12.0, 5.0, 0.0)], 0, at(10, None));
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
    assert_eq!(
        decide(&bounds(0, 100), &readings, 0, at(0, None)).desired,
        10
    );
    assert_eq!(decide(&bounds(0, 4), &readings, 0, at(0, None)).desired, 4);
}

#[test]
fn a_backlog_at_or_below_activation_keeps_zero() {
    let out = decide(&bounds(0, 100), &[metric(3.0, 5.0, 3.0)], 0, at(10, None));
    assert_eq!(
        out,
        Outcome {
            desired: 0,
            active: false
        }
    );
    let out = decide(&bounds(0, 100), &[metric(4.0, 5.0, 3.0)], 0, at(10, None));
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
        decide(&b, &idle, 3, at(200, Some(100))).desired,
        1,
        "cooling down: HPA's floor of 1"
    );
    assert_eq!(decide(&b, &idle, 1, at(399, Some(100))).desired, 1);
    assert_eq!(
        decide(&b, &idle, 1, at(400, Some(100))).desired,
        0,
        "cooldown passed"
    );
}

#[test]
fn min_replica_count_holds_and_idle_replica_count_replaces_it_when_idle() {
    let idle = [metric(0.0, 5.0, 0.0)];
    assert_eq!(decide(&bounds(2, 10), &idle, 0, at(1000, None)).desired, 2);
    let with_idle = Bounds {
        idle: Some(0),
        ..bounds(2, 10)
    };
    assert_eq!(decide(&with_idle, &idle, 2, at(1000, Some(0))).desired, 0);
    assert_eq!(decide(&with_idle, &idle, 2, at(100, Some(0))).desired, 2);
    let busy = [metric(1.0, 5.0, 0.0)];
    assert_eq!(decide(&with_idle, &busy, 0, at(1000, Some(0))).desired, 2);
}

#[test]
fn a_failed_trigger_holds_the_scale_unless_another_is_active() {
    let b = bounds(0, 100);
    let out = decide(
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
    let out = decide(
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
    assert_eq!(decide(&bounds(0, 100), &[r], 0, at(0, None)).desired, 2);
    assert_eq!(decide(&bounds(0, 100), &[r], 3, at(0, None)).desired, 6);
}

#[test]
fn initial_cooldown_delays_the_first_scale_to_zero() {
    let b = Bounds {
        initial_cooldown: Duration::from_secs(60),
        cooldown: Duration::ZERO,
        ..bounds(0, 10)
    };
    let idle = [metric(0.0, 5.0, 0.0)];
    assert_eq!(decide(&b, &idle, 1, at(30, None)).desired, 1);
    assert_eq!(decide(&b, &idle, 1, at(60, None)).desired, 0);
}

#[test]
fn bounds_take_kedas_defaults() {
    let b = Bounds::of(&Default::default());
    assert_eq!((b.min, b.max, b.idle), (0, 100, None));
    assert_eq!(b.cooldown, Duration::from_secs(300));
}
