//! One test per rule in the crate documentation, with exact times. Revisions are created at
//! t = 1000 s; `Sim` records one 1 s sample and decides once per second.

mod support;

use nimbus_api::autoscaling::{Metric, ScalingSpec};
use nimbus_autoscaler::{Autoscaler, Sample};
use support::{Sim, desired, s, spec};

// === observing demand and the per-instance target ===

#[test]
fn steady_250_in_flight_at_target_100_and_70_percent_wants_4() {
    let mut sim = Sim::fixed(ScalingSpec::default(), 4);
    let d = sim.run(60, 250.0, 0.0).pop().unwrap();
    assert_eq!(d.desired, 4);
    assert_eq!((d.stable_value, d.panic_value), (250.0, 250.0));
    assert!(!d.panicking);
}

#[test]
fn from_one_instance_a_steady_250_settles_at_4() {
    let mut sim = Sim::new(ScalingSpec::default());
    let ds = sim.run(200, 250.0, 0.0);
    assert_eq!(ds.last().unwrap().desired, 4);
    assert!(!ds.last().unwrap().panicking);
}

#[test]
fn samples_longer_than_a_second_are_spread() {
    let mut a = Autoscaler::new(ScalingSpec::default(), s(0));
    for t in (10..=70).step_by(10) {
        let sample = Sample {
            concurrency: 140.0,
            requests: 0.0,
            period: s(10),
        };
        a.record(s(t), sample);
    }
    let d = a.decide(s(70), 2, true);
    assert_eq!((d.stable_value, d.desired), (140.0, 2));
}

#[test]
fn the_rps_metric_scales_on_requests_per_second() {
    let spec = spec(|x| {
        x.metric = Metric::Rps;
        x.target = 200.0;
    });
    let mut sim = Sim::fixed(spec, 5);
    let d = sim.run(60, 5000.0, 700.0).pop().unwrap();
    // 700 rps / (200 × 70%) = 5 instances; the 5000 in flight do not matter.
    assert_eq!((d.desired, d.stable_value), (5, 700.0));
    assert_eq!(d.excess_burst_capacity, 5.0 * 200.0 - 200.0 - 700.0);
}

// === rate limits ===

#[test]
fn scale_up_is_limited_by_max_scale_up_rate() {
    let spec = spec(|x| x.max_scale_up_rate = 2.0);
    assert_eq!(
        Sim::fixed(spec.clone(), 1).run(10, 1000.0, 0.0)[9].desired,
        2
    );
    assert_eq!(
        Sim::fixed(spec.clone(), 3).run(10, 1000.0, 0.0)[9].desired,
        6
    );
    let mut sim = Sim::new(spec);
    assert_eq!(desired(&sim.run(5, 1000.0, 0.0)), [2, 4, 8, 15, 15]);
}

#[test]
fn scale_down_is_limited_by_max_scale_down_rate() {
    let mut sim = Sim::fixed(ScalingSpec::default(), 10);
    assert_eq!(sim.run(60, 100.0, 0.0)[59].desired, 5, "floor(10 / 2)");
    let mut sim = Sim::fixed(spec(|x| x.max_scale_down_rate = 3.0), 10);
    assert_eq!(sim.run(60, 100.0, 0.0)[59].desired, 3, "floor(10 / 3)");
}

// === activation scale and cold start ===

#[test]
fn any_demand_wants_at_least_activation_scale() {
    let mut sim = Sim::fixed(spec(|x| x.activation_scale = 3), 1);
    assert_eq!(sim.run(10, 10.0, 0.0)[9].desired, 3);
}

#[test]
fn activation_from_zero_wants_activation_scale_until_an_instance_is_ready() {
    let spec = spec(|x| {
        x.window = s(6);
        x.scale_to_zero_grace = s(0);
        x.activation_scale = 3;
    });
    let mut sim = Sim::new(spec);
    assert_eq!(desired(&sim.idle(7)), [1, 1, 1, 1, 1, 0, 0]);
    sim.follow = false;
    sim.a.activate(s(sim.now));
    assert_eq!(sim.decide().desired, 3);
    assert_eq!(desired(&sim.idle(3)), [3, 3, 3], "still no instance ready");
    sim.ready = 1;
    assert_eq!(
        sim.step(10.0, 1.0).desired,
        3,
        "demand keeps activation scale"
    );
}

#[test]
fn an_activation_never_served_gives_up_after_the_activation_timeout() {
    let spec = spec(|x| {
        x.window = s(6);
        x.scale_to_zero_grace = s(4);
        x.initial_scale = 0;
        x.activation_timeout = s(20);
    });
    let mut sim = Sim::fixed(spec, 0);
    assert_eq!(sim.decide().desired, 0, "initial-scale 0 starts at zero");
    sim.a.activate(s(sim.now));
    let ds = desired(&sim.idle(25)); // t = 1001..=1025; trying since t = 1001
    assert!(
        ds[..20].iter().all(|&d| d == 1),
        "idle since 1010, but still activating"
    );
    assert!(ds[20..].iter().all(|&d| d == 0), "t >= 1021: gave up");
    sim.a.activate(s(sim.now));
    assert_eq!(sim.decide().desired, 1, "a later request tries again");
}

#[test]
fn a_revision_that_never_got_ready_is_not_scaled_down_before_its_deadline() {
    let short = spec(|x| {
        x.window = s(6);
        x.scale_to_zero_grace = s(0);
        x.activation_timeout = s(70);
    });
    let mut sim = Sim::fixed(short, 0);
    let ds = desired(&sim.idle(75)); // created at t = 1000 at initial scale 1
    assert!(ds[..69].iter().all(|&d| d == 1), "t < 1070: still starting");
    assert!(ds[69..].iter().all(|&d| d == 0), "t >= 1070: gave up");
    let mut sim = Sim::fixed(spec(|x| x.window = s(6)), 0);
    sim.reachable = false;
    assert!(
        sim.idle(60).iter().all(|d| d.desired == 1),
        "unreachable too: it has not had a chance to run yet"
    );
}

// === panic mode ===

#[test]
fn a_burst_panics_and_nothing_scales_down_for_a_stable_window() {
    let mut sim = Sim::new(ScalingSpec::default());
    assert!(sim.run(60, 100.0, 0.0).iter().all(|d| d.desired == 2));
    let burst = sim.run(10, 1000.0, 0.0); // t = 1061..=1070
    assert!(!burst[0].panicking, "250 over the panic window is under 2x");
    assert!(burst[1].panicking, "400 over the panic window is 2.9x");
    assert_eq!(desired(&burst), [2, 6, 8, 10, 13, 15, 15, 15, 15, 15]);
    // The last decision over the threshold was at t = 1062; panic holds 15 until more than a
    // stable window after it.
    let after = sim.run(53, 100.0, 0.0); // t = 1071..=1123
    assert!(after[..52].iter().all(|d| d.panicking && d.desired == 15));
    assert!(!after[52].panicking);
    assert_eq!(
        after[52].desired, 7,
        "stable wants 3; the down rate allows floor(15 / 2)"
    );
}

#[test]
fn panic_compares_demand_not_rounded_instances() {
    let mut sim = Sim::fixed(ScalingSpec::default(), 1);
    // 100 / 70 = 1.43x one instance's target: Knative's rounded 2 would panic; Nimbus does not.
    assert!(sim.run(60, 100.0, 0.0).iter().all(|d| !d.panicking));
    let mut sim = Sim::fixed(ScalingSpec::default(), 1);
    assert!(sim.run(1, 141.0, 0.0)[0].panicking, "141 / 70 = 2.01x");
}

// === scale-down delay ===

#[test]
fn scale_down_delay_holds_the_peak() {
    let spec = spec(|x| {
        x.window = s(6);
        x.scale_down_delay = s(30);
        x.panic_threshold_percentage = 1000.0;
        x.max_scale_down_rate = 1000.0;
    });
    let mut sim = Sim::fixed(spec, 10);
    let ds = [sim.run(10, 700.0, 0.0), sim.run(40, 70.0, 0.0)].concat();
    // The last recommendation of 10 was at t = 1010; it is held while t < 1040.
    assert!(ds[..39].iter().all(|d| d.desired == 10));
    assert_eq!(
        ds[39].desired, 9,
        "t = 1040: the next highest, from t = 1011"
    );
    assert_eq!(ds[49].desired, 1);
}

#[test]
fn scale_down_delay_is_the_maximum_of_the_undelayed_answers() {
    let base = spec(|x| {
        x.window = s(6);
        x.panic_threshold_percentage = 1000.0;
        x.max_scale_down_rate = 1000.0;
    });
    let delayed = ScalingSpec {
        scale_down_delay: s(20),
        ..base.clone()
    };
    let (mut plain, mut held) = (Sim::fixed(base, 10), Sim::fixed(delayed, 10));
    let pattern = [(10, 700.0), (30, 70.0), (5, 350.0), (3, 0.0), (12, 140.0)];
    let mut history = Vec::new();
    for (secs, concurrency) in pattern {
        for _ in 0..secs {
            history.push(plain.step(concurrency, 0.0).desired);
            let want = *history.iter().rev().take(20).max().unwrap();
            assert_eq!(
                held.step(concurrency, 0.0).desired,
                want,
                "t = {}",
                held.now
            );
        }
    }
}

// === initial scale ===

#[test]
fn initial_scale_holds_until_it_is_reached() {
    let mut sim = Sim::fixed(spec(|x| x.initial_scale = 3), 1);
    assert!(
        sim.idle(200).iter().all(|d| d.desired == 3),
        "only 1 of 3 ever ready"
    );
    sim.ready = 3;
    assert!(
        sim.decide().desired < 3,
        "reached: no demand, so it may scale down"
    );
    assert!(sim.idle(100).iter().all(|d| d.desired < 3));
}

#[test]
fn initial_scale_is_ignored_by_an_unreachable_revision() {
    let mut sim = Sim::fixed(spec(|x| x.initial_scale = 3), 1);
    sim.reachable = false;
    assert_eq!(
        sim.idle(1)[0].desired,
        1,
        "its one instance is kept until idle"
    );
}

/// Knative's initial-scale rule with a short window and no grace (#16): a revision whose
/// first instance takes long to get ready is not scaled to zero meanwhile, however idle, until
/// the activation timeout (progress deadline 60 s + 30 s) gives up on it.
#[test]
fn a_revision_never_ready_is_not_scaled_down_with_a_short_window_and_no_grace() {
    let mut sim = Sim::fixed(
        spec(|x| {
            x.window = s(6);
            x.scale_to_zero_grace = s(0);
            x.scale_to_zero_retention = s(0);
        }),
        0,
    );
    let ds = desired(&sim.idle(89));
    assert!(ds.iter().all(|&d| d == 1), "none ready for 89 s: {ds:?}");
    sim.ready = 1;
    sim.follow = true;
    assert_eq!(
        sim.idle(8).last().unwrap().desired,
        0,
        "ready once, then idle"
    );
}

/// An edited spec (new windows) resets the samples, not what the revision has yet to reach.
#[test]
fn a_changed_spec_keeps_the_initial_scale_floor_of_a_revision_never_ready() {
    let three = spec(|x| {
        x.initial_scale = 3;
        x.window = s(6);
    });
    let a = Autoscaler::new(three.clone(), s(0));
    let mut edited = three;
    edited.window = s(8);
    let mut b = a.respec(edited, s(5), 3);
    assert!(!b.is_initialized());
    for t in 6..=80 {
        assert_eq!(
            b.decide(s(t), 1, true).desired,
            3,
            "t = {t}: only 1 of 3 ever ready"
        );
    }
}

#[test]
fn initial_scale_zero_starts_at_zero() {
    let mut sim = Sim::fixed(spec(|x| x.initial_scale = 0), 0);
    assert!(sim.idle(5).iter().all(|d| d.desired == 0));
}

// === scale to zero ===

#[test]
fn after_traffic_stops_one_instance_stays_until_window_plus_grace() {
    let mut sim = Sim::new(ScalingSpec::default());
    sim.run(60, 100.0, 0.0); // the last sample ends at t = 1060
    let ds = desired(&sim.idle(100)); // t = 1061..=1160
    assert!(ds[..89].iter().all(|&d| d >= 1), "t < 1150");
    assert_eq!(ds[88], 1);
    assert!(
        ds[89..].iter().all(|&d| d == 0),
        "t >= 1150 = 1060 + 60 + 30"
    );
}

#[test]
fn the_grace_period_is_per_revision() {
    let mut sim = Sim::new(spec(|x| x.scale_to_zero_grace = s(0)));
    sim.run(60, 100.0, 0.0);
    let ds = desired(&sim.idle(61));
    assert_eq!((ds[58], ds[59]), (1, 0), "zero at t = 1060 + 60");
}

#[test]
fn the_retention_period_keeps_the_last_instance_longer() {
    let mut sim = Sim::new(spec(|x| x.scale_to_zero_retention = s(120)));
    sim.run(60, 100.0, 0.0);
    let ds = desired(&sim.idle(200));
    assert_eq!(
        (ds[178], ds[179]),
        (1, 0),
        "zero at t = 1060 + 60 + max(30, 120)"
    );
    let mut sim = Sim::new(spec(|x| x.scale_to_zero_retention = s(10)));
    sim.run(60, 100.0, 0.0);
    let ds = desired(&sim.idle(100));
    assert_eq!(
        (ds[88], ds[89]),
        (1, 0),
        "a retention shorter than grace changes nothing"
    );
}

// === bounds and reachability ===

#[test]
fn min_scale_keeps_instances_of_a_reachable_revision() {
    let mut sim = Sim::new(spec(|x| x.min_scale = 3));
    assert!(sim.idle(500).iter().all(|d| d.desired == 3));
    sim.reachable = false;
    assert_eq!(
        sim.decide().desired,
        0,
        "idle and unreachable: straight to zero"
    );
}

#[test]
fn max_scale_caps() {
    let mut sim = Sim::new(spec(|x| x.max_scale = 5));
    let ds = sim.run(60, 1000.0, 0.0);
    assert!(ds.iter().all(|d| d.desired <= 5));
    assert_eq!(ds[59].desired, 5);
}

#[test]
fn an_unreachable_revision_goes_to_zero_once_idle() {
    let mut sim = Sim::new(spec(|x| x.min_scale = 2));
    sim.run(30, 100.0, 0.0); // the last sample ends at t = 1030
    sim.reachable = false;
    let ds = desired(&sim.idle(100)); // t = 1031..=1130
    assert!(ds[..89].iter().all(|&d| d >= 1), "t < 1120");
    assert!(
        ds[89..].iter().all(|&d| d == 0),
        "t >= 1120 = 1030 + 60 + 30"
    );
}

// === excess burst capacity ===

#[test]
fn excess_burst_capacity() {
    let run = |f: fn(&mut ScalingSpec)| {
        let mut sim = Sim::fixed(spec(f), 3);
        sim.run(10, 50.0, 0.0).pop().unwrap()
    };
    let d = run(|_| {});
    assert_eq!(d.excess_burst_capacity, 3.0 * 100.0 - 200.0 - 50.0);
    assert!(!d.activator_in_path());
    let d = run(|x| x.container_concurrency = 10);
    assert_eq!(d.excess_burst_capacity, 3.0 * 10.0 - 200.0 - 50.0);
    assert!(d.activator_in_path());
    assert_eq!(
        run(|x| x.target_burst_capacity = 0.0).excess_burst_capacity,
        0.0
    );
    assert_eq!(
        run(|x| x.target_burst_capacity = -1.0).excess_burst_capacity,
        -1.0
    );
}

// === resuming after a restart ===

#[test]
fn a_resumed_revision_holds_its_scale_for_a_window_then_follows_demand() {
    let spec = spec(|x| x.window = s(6));
    let mut a = Autoscaler::resume(spec, s(1000), 3);
    let d = |a: &mut Autoscaler, t: u64, ready: u32| a.decide(s(t), ready, true).desired;
    assert_eq!(d(&mut a, 1000, 0), 3, "instances start again");
    assert_eq!(
        d(&mut a, 1003, 3),
        3,
        "no scale-down before a full window of samples"
    );
    assert!(d(&mut a, 1007, 3) < 3, "then idle demand scales it down");
}
