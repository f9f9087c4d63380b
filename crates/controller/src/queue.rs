//! The work queue: client-go's semantics. A key is queued at most once however often it is
//! added; a key being reconciled is never handed to a second worker, and if it changes meanwhile
//! it is queued again when the first worker is done. So several workers run at once, and one
//! object's reconciles are still strictly one after another.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::ObjectKey;

#[derive(Default)]
pub(crate) struct WorkQueue {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    order: VecDeque<ObjectKey>,
    /// Keys waiting to be reconciled (queued, or to be queued when their worker is done).
    dirty: HashSet<ObjectKey>,
    processing: HashSet<ObjectKey>,
}

impl WorkQueue {
    /// Queue `key` unless it already waits.
    pub(crate) fn add(&self, key: ObjectKey) {
        let mut s = self.lock();
        if !s.dirty.insert(key.clone()) {
            return;
        }
        if !s.processing.contains(&key) {
            s.order.push_back(key);
            drop(s);
            self.ready.notify_one();
        }
    }

    /// The next key to reconcile, now, if any. The caller must call [`WorkQueue::done`].
    pub(crate) fn try_get(&self) -> Option<ObjectKey> {
        let mut s = self.lock();
        let key = s.order.pop_front()?;
        s.dirty.remove(&key);
        s.processing.insert(key.clone());
        Some(key)
    }

    /// The next key to reconcile, waiting for one.
    pub(crate) async fn get(&self) -> ObjectKey {
        loop {
            let notified = self.ready.notified();
            if let Some(key) = self.try_get() {
                return key;
            }
            notified.await;
        }
    }

    /// The worker is done with `key`; queue it again if it changed meanwhile.
    pub(crate) fn done(&self, key: &ObjectKey) {
        let mut s = self.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.order.push_back(key.clone());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// Keys waiting (not counting those being reconciled).
    pub(crate) fn len(&self) -> usize {
        self.lock().order.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_api::Kind;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Service, "default", name)
    }

    #[test]
    fn a_key_is_queued_once_and_never_handed_out_twice_at_once() {
        let q = WorkQueue::default();
        q.add(key("a"));
        q.add(key("a"));
        q.add(key("b"));
        assert_eq!(q.len(), 2);
        let a = q.try_get().unwrap();
        q.add(key("a")); // changed while being reconciled
        assert_eq!(q.try_get(), Some(key("b")));
        assert_eq!(q.try_get(), None, "a is busy");
        q.done(&a);
        assert_eq!(q.try_get(), Some(key("a")), "queued again when done");
        q.done(&key("a"));
        q.done(&key("b"));
        assert_eq!(q.try_get(), None);
    }

    #[tokio::test]
    async fn get_waits_for_a_key() {
        let q = std::sync::Arc::new(WorkQueue::default());
        let waiter = tokio::spawn({
            let q = q.clone();
            async move { q.get().await }
        });
        tokio::task::yield_now().await;
        q.add(key("a"));
        assert_eq!(waiter.await.unwrap(), key("a"));
    }
}
