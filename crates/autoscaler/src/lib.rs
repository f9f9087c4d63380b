//! The Knative Pod Autoscaler (KPA) decision for one revision, as a pure state machine.
//!
//! This crate owns the arithmetic of "how many instances should this revision have now". It
//! must never do I/O, spawn tasks or read a clock: the caller passes the time as a
//! [`std::time::Duration`] since any epoch of its monotonic clock, the observations as
//! [`Sample`]s, and how many instances are ready. That keeps every rule below testable to the
//! second. The controller owns one [`Autoscaler`] per revision, feeds it the router's samples
//! and calls [`Autoscaler::decide`] on its tick (Knative ticks every 2 s).
//!
//! ```
//! use std::time::Duration;
//! use nimbus_api::autoscaling::ScalingSpec;
//! use nimbus_autoscaler::{Autoscaler, Sample};
//!
//! let s = Duration::from_secs;
//! let mut a = Autoscaler::new(ScalingSpec::default(), s(0));
//! for t in 1..=60 {
//!     a.record(s(t), Sample { concurrency: 250.0, requests: 500.0, period: s(1) });
//! }
//! // 250 in flight, target 100 at 70% utilization: ceil(250 / 70) = 4 instances.
//! assert_eq!(a.decide(s(60), 4, true).desired, 4);
//! ```
//!
//! # The rules
//!
//! Every setting comes from a `ScalingSpec` parsed from the revision template's
//! `autoscaling.knative.dev/<key>` annotations; the key is named with each rule. Numbers are
//! Knative's defaults.
//!
//! ## Observing demand
//! - **Metric** (`metric`: `concurrency` or `rps`). Concurrency is the average number of
//!   requests in flight across the revision; rps is requests started per second.
//! - **Buckets.** Samples are spread over the whole seconds they cover (concurrency by the time
//!   each second overlaps the sample, requests in proportion) and summed per second. A second
//!   without samples counts as a second without demand, so the caller need not report idle
//!   periods. Only the seconds the stable window needs are kept.
//! - **Stable value** (`window`, 60 s, 6 s – 1 h): the metric averaged over the whole seconds of
//!   the window that ended at the last whole second before `now`. The second in progress is
//!   not counted until it is complete.
//! - **Panic value** (`panic-window-percentage`, 10 %, so 6 s): the same over the panic window
//!   (at least 1 s).
//! - **Partial windows.** While a window has not yet seen a full window of data (a new
//!   revision, or after a whole window with no samples at all), it is averaged over the seconds
//!   since its first sample, as Knative does, so a burst after a long silence is seen at its
//!   full size at once.
//!
//! ## Deciding (each [`Autoscaler::decide`], in this order)
//! 1. **Per-instance target** (`target`, 100 concurrency / 200 rps;
//!    `target-utilization-percentage`, 70): `target × utilization`. Stable instances =
//!    ⌈stable value / per-instance target⌉, panic instances likewise.
//! 2. **Rate limits** (Knative's `max-scale-up-rate` 1000 and `max-scale-down-rate` 2): both
//!    counts are kept within `[⌊ready / down-rate⌋, ⌈up-rate × ready⌉]`, where `ready` counts as
//!    at least 1. An unreachable revision has no lower rate limit.
//! 3. **Activation scale** (`activation-scale`, 1): a count whose demand is above zero is at
//!    least `activation-scale`.
//! 4. **Panic mode** (`panic-threshold-percentage`, 200): panic starts, or is extended, when the
//!    panic-window demand (panic value / per-instance target, *not* rounded up) divided by
//!    `max(ready, 1)` is at least the threshold / 100. It ends at the first decision that is not
//!    over the threshold more than one stable window after the last one that was. Outside panic
//!    the recommendation is the stable count; in panic it is the highest of
//!    `max(stable, panic)` seen since panic began. (Knative compares the *rounded-up* panic
//!    count, which makes a single instance panic at just over its target; Nimbus compares the
//!    demand itself, so 200 % means "twice the capacity of the ready instances".)
//! 5. **Scale-down delay** (`scale-down-delay`, 0 s, at most 1 h): the recommendation is the
//!    highest recommended in the last `scale-down-delay` (whole seconds, rounded up), so
//!    instances are only removed after demand has stayed low that long.
//! 6. **Cold start**: after [`Autoscaler::activate`] (the activator holds a request and no
//!    instance is ready) the answer is at least `activation-scale` until an instance is ready.
//! 7. **Initial scale** (`initial-scale`, 1): a revision starts at `initial-scale` and, while
//!    it is reachable, wants at least that many instances until `max(initial-scale,
//!    min-scale)` of them have been ready at once (Knative's `ScaleTargetInitialized`). An
//!    unreachable revision ignores it, as in Knative.
//! 8. **Activation** (Knative's activation timeout: the progress deadline,
//!    `serving.knative.dev/progress-deadline`, plus 30 s): while the revision wants instances
//!    and none is ready (it was just created, activated from zero, or lost its last ready
//!    instance) it is never scaled to zero, reachable or not, until it has been trying for the
//!    whole activation timeout; then rules 6 and 7 let go and it may go to zero (a request
//!    that arrives later starts a new attempt). A revision that never got ready is therefore
//!    never scaled down before its deadline. An autoscaler made by [`Autoscaler::resume`]
//!    (after a restart, from the scale the store recorded) holds that scale for one stable
//!    window the same way.
//! 9. **Scale to zero** (`scale-to-zero-pod-retention-period`, 0 s; the per-revision
//!    `nimbus.dev/scale-to-zero-grace-period`, 30 s, which is global in Knative): once the
//!    revision has had an instance (one is ready, or the last answer was above zero), the answer
//!    is at least 1 until the revision has been idle for
//!    `window + max(grace period, retention period)`. Idle means no sample with requests or
//!    concurrency, no activation and not being created. Knative marks a revision inactive one
//!    stable window after its traffic stops and removes the last pod once it has been inactive
//!    for the grace period and the retention period; this is the same moment.
//! 10. **No scale-down in panic**: while panicking the answer never goes below the highest
//!     answer since panic began (this also covers floors from rules 5–8 expiring mid-panic).
//! 11. **Bounds** (`min-scale`, 0; `max-scale`, 0 = unlimited): at least `min-scale` if the
//!     revision is reachable (some route sends it traffic), then at most `max-scale`. An
//!     unreachable revision ignores `min-scale` and goes to zero under rule 9; one that has
//!     been idle long enough goes to zero at once.
//!
//! The [`Decision`] also carries the **excess burst capacity** (`target-burst-capacity`, 200):
//! `⌊ready × per-instance capacity − target-burst-capacity − panic value⌋`, where the capacity
//! is `containerConcurrency` (or `target` when it is 0) for the concurrency metric and `target`
//! for rps. It is 0 when `target-burst-capacity` is 0 and −1 when it is −1. Negative means the
//! activator should stay in the request path.
//!
//! Out-of-range inputs never panic or produce NaN: windows are clamped to 1 s – 1 h, sample
//! values are cleaned (see [`Autoscaler::record`]), and times that go backwards are tolerated
//! (late samples for seconds no longer held are dropped).

mod autoscaler;
mod delay;
mod window;

pub use autoscaler::{Autoscaler, Decision, Sample};
