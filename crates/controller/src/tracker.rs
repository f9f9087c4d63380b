//! Which objects a reconcile read, so a change to one of them wakes exactly the objects that
//! depend on it (Knative's `tracker`): a Route tracks the Configurations and Revisions its
//! traffic names. This replaces waking every Route of a namespace on every Revision change, so
//! the cost of a change is proportional to the objects that refer to it.
//!
//! The index is derived state: after a restart every Route is reconciled once (the initial
//! list) and tracks again.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use crate::ObjectKey;

#[derive(Default)]
pub struct Tracker {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// observer → what it read
    reads: HashMap<ObjectKey, HashSet<ObjectKey>>,
    /// read object → its observers
    observers: HashMap<ObjectKey, HashSet<ObjectKey>>,
}

impl Tracker {
    /// `observer` now depends on exactly `reads` (replacing what it tracked before).
    pub fn set(&self, observer: &ObjectKey, reads: impl IntoIterator<Item = ObjectKey>) {
        let mut s = self.lock();
        let reads: HashSet<ObjectKey> = reads.into_iter().collect();
        if let Some(old) = s.reads.remove(observer) {
            for r in old {
                if let Some(set) = s.observers.get_mut(&r) {
                    set.remove(observer);
                    if set.is_empty() {
                        s.observers.remove(&r);
                    }
                }
            }
        }
        for r in &reads {
            s.observers
                .entry(r.clone())
                .or_default()
                .insert(observer.clone());
        }
        if !reads.is_empty() {
            s.reads.insert(observer.clone(), reads);
        }
    }

    /// `observer` is gone: it depends on nothing.
    pub fn forget(&self, observer: &ObjectKey) {
        self.set(observer, []);
    }

    /// What `observer` read last, if it has been tracked since this process started.
    pub fn reads(&self, observer: &ObjectKey) -> Option<Vec<ObjectKey>> {
        let s = self.lock();
        s.reads
            .get(observer)
            .map(|set| set.iter().cloned().collect())
    }

    /// The objects that read `object`.
    pub fn observers(&self, object: &ObjectKey) -> Vec<ObjectKey> {
        let s = self.lock();
        s.observers
            .get(object)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::Kind;

    #[test]
    fn observers_follow_the_latest_reads() {
        let t = Tracker::default();
        let route = ObjectKey::new(Kind::Route, "default", "r");
        let v1 = ObjectKey::new(Kind::Revision, "default", "v1");
        let v2 = ObjectKey::new(Kind::Revision, "default", "v2");
        t.set(&route, [v1.clone()]);
        assert_eq!(t.observers(&v1), std::slice::from_ref(&route));
        t.set(&route, [v2.clone()]);
        assert!(t.observers(&v1).is_empty());
        assert_eq!(t.observers(&v2), std::slice::from_ref(&route));
        t.forget(&route);
        assert!(t.observers(&v2).is_empty());
    }
}
