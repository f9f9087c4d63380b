//! Pure decisions over a revision's instances: its reported status and which instances to stop
//! when scaling down. No I/O, no clocks.

use nimbus_runtime::{RevisionPhase, RevisionRuntimeStatus};

use crate::failure::Failure;

/// What one instance is doing, as far as status is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Readiness {
    /// Starting, or failed and waiting to restart.
    NotReady,
    /// Published as an endpoint.
    Ready,
}

/// The facts a revision's status is computed from.
pub(crate) struct Observed<'a> {
    pub desired: u32,
    pub instances: &'a [Readiness],
    pub ever_ready: bool,
    /// The most recent failure since an instance was last ready.
    pub last_failure: Option<&'a Failure>,
}

/// The revision's status: `Ready` while any instance is ready; otherwise the latest failure;
/// otherwise `Ready` if it was scaled to zero after having been ready; otherwise `Starting`.
pub(crate) fn status(observed: &Observed<'_>) -> RevisionRuntimeStatus {
    let ready = count(observed.instances, Readiness::Ready);
    let phase = match (ready, observed.last_failure) {
        (1.., _) => RevisionPhase::Ready,
        (0, Some(failure)) => failure.phase(),
        (0, None) if observed.desired == 0 && observed.ever_ready => RevisionPhase::Ready,
        (0, None) => RevisionPhase::Starting,
    };
    RevisionRuntimeStatus {
        phase,
        desired: observed.desired,
        actual: u32::try_from(observed.instances.len()).unwrap_or(u32::MAX),
        ready,
        ever_ready: observed.ever_ready,
    }
}

fn count(instances: &[Readiness], which: Readiness) -> u32 {
    u32::try_from(instances.iter().filter(|r| **r == which).count()).unwrap_or(u32::MAX)
}

/// One instance as a scale-down sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub ordinal: u64,
    pub readiness: Readiness,
    /// Requests in flight to it, per the load probe (0 when not published or unknown).
    pub in_flight: usize,
}

/// Which `excess` instances to stop: the least busy first (a busy instance is never chosen
/// while an idle one is left), then those not ready (they serve nothing), then the newest.
pub(crate) fn victims(instances: &[Candidate], excess: usize) -> Vec<u64> {
    let mut order: Vec<_> = instances.to_vec();
    order.sort_by_key(|c| {
        let ready = c.readiness == Readiness::Ready;
        (c.in_flight, ready, std::cmp::Reverse(c.ordinal))
    });
    order.into_iter().take(excess).map(|c| c.ordinal).collect()
}

#[cfg(test)]
mod tests {
    use super::Readiness::*;
    use super::*;

    fn failure() -> Failure {
        Failure {
            reason: "ExitCode1".into(),
            message: "m".into(),
        }
    }

    fn phase(
        desired: u32,
        instances: &[Readiness],
        ever_ready: bool,
        failed: bool,
    ) -> RevisionPhase {
        let f = failure();
        let observed = Observed {
            desired,
            instances,
            ever_ready,
            last_failure: failed.then_some(&f),
        };
        status(&observed).phase
    }

    #[test]
    fn phases() {
        assert_eq!(phase(1, &[NotReady], false, false), RevisionPhase::Starting);
        assert_eq!(phase(1, &[Ready], true, false), RevisionPhase::Ready);
        assert_eq!(
            phase(2, &[Ready, NotReady], true, true),
            RevisionPhase::Ready
        );
        assert_eq!(phase(1, &[NotReady], true, true), failure().phase());
        assert_eq!(phase(0, &[], true, false), RevisionPhase::Ready);
        assert_eq!(phase(0, &[], false, false), RevisionPhase::Starting);
        assert_eq!(phase(0, &[], true, true), failure().phase());
    }

    #[test]
    fn counts() {
        let observed = Observed {
            desired: 3,
            instances: &[Ready, NotReady],
            ever_ready: true,
            last_failure: None,
        };
        let s = status(&observed);
        assert_eq!(
            (s.desired, s.actual, s.ready, s.ever_ready),
            (3, 2, 1, true)
        );
    }

    fn candidates(list: &[(u64, Readiness, usize)]) -> Vec<Candidate> {
        let candidate = |&(ordinal, readiness, in_flight)| Candidate {
            ordinal,
            readiness,
            in_flight,
        };
        list.iter().map(candidate).collect()
    }

    #[test]
    fn victims_prefer_unready_then_newest() {
        let instances = candidates(&[
            (1, Ready, 0),
            (2, NotReady, 0),
            (3, Ready, 0),
            (4, NotReady, 0),
        ]);
        assert_eq!(victims(&instances, 1), [4]);
        assert_eq!(victims(&instances, 3), [4, 2, 3]);
        assert_eq!(victims(&instances, 9), [4, 2, 3, 1]);
        assert!(victims(&instances, 0).is_empty());
    }

    #[test]
    fn victims_are_the_least_busy_first() {
        let instances = candidates(&[
            (1, Ready, 0),
            (2, Ready, 3),
            (3, Ready, 1),
            (4, NotReady, 0),
        ]);
        assert_eq!(victims(&instances, 1), [4]);
        assert_eq!(victims(&instances, 2), [4, 1]);
        assert_eq!(victims(&instances, 3), [4, 1, 3]);
        let busy_newest = candidates(&[(1, Ready, 0), (2, Ready, 5)]);
        assert_eq!(
            victims(&busy_newest, 1),
            [1],
            "never the busy one while one is idle"
        );
    }
}
