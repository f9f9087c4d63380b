//! Shared helpers for the autoscaler's integration tests: a tiny simulator that feeds one
//! sample a second and decides every second, with instances starting instantly unless told.

#![allow(dead_code)]

use std::time::Duration;

use nimbus_api::autoscaling::ScalingSpec;
use nimbus_autoscaler::{Autoscaler, Decision, Sample};

/// Seconds as a `Duration`.
pub fn s(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Knative's default spec with `f` applied.
pub fn spec(f: impl FnOnce(&mut ScalingSpec)) -> ScalingSpec {
    let mut spec = ScalingSpec::default();
    f(&mut spec);
    spec
}

/// A revision, its autoscaler and a clock in whole seconds.
pub struct Sim {
    pub a: Autoscaler,
    pub now: u64,
    pub ready: u32,
    pub reachable: bool,
    /// When true, `ready` becomes each decision's `desired` at once.
    pub follow: bool,
}

impl Sim {
    /// A revision created at t = 1000 s with one ready instance that follows decisions.
    pub fn new(spec: ScalingSpec) -> Self {
        Self {
            a: Autoscaler::new(spec, s(1000)),
            now: 1000,
            ready: 1,
            reachable: true,
            follow: true,
        }
    }

    /// Like [`Sim::new`] with `ready` fixed at `ready`.
    pub fn fixed(spec: ScalingSpec, ready: u32) -> Self {
        Self {
            ready,
            follow: false,
            ..Self::new(spec)
        }
    }

    /// One second: a 1 s sample of `concurrency` in flight and `rps` requests, then a decision.
    pub fn step(&mut self, concurrency: f64, rps: f64) -> Decision {
        self.now += 1;
        if concurrency > 0.0 || rps > 0.0 {
            let sample = Sample {
                concurrency,
                requests: rps,
                period: s(1),
            };
            self.a.record(s(self.now), sample);
        }
        self.decide()
    }

    /// `secs` seconds of steady traffic; returns every decision.
    pub fn run(&mut self, secs: u64, concurrency: f64, rps: f64) -> Vec<Decision> {
        (0..secs).map(|_| self.step(concurrency, rps)).collect()
    }

    /// `secs` seconds of no traffic (no samples); returns every decision.
    pub fn idle(&mut self, secs: u64) -> Vec<Decision> {
        self.run(secs, 0.0, 0.0)
    }

    /// Decide at the current time without advancing it.
    pub fn decide(&mut self) -> Decision {
        let d = self.a.decide(s(self.now), self.ready, self.reachable);
        if self.follow {
            self.ready = d.desired;
        }
        d
    }
}

/// The `desired` of each decision.
pub fn desired(ds: &[Decision]) -> Vec<u32> {
    ds.iter().map(|d| d.desired).collect()
}
