//! [`Resources`] over the embedded SQLite store, with a Kubernetes API server's semantics:
//! server-side apply through the same field-ownership rules the API server uses for kubectl
//! (`nimbus_api::fields`), resourceVersion preconditions, uid-guarded deletes, label-selector
//! lists from the store's label index, and watches that resume from a resourceVersion through
//! the store's event history instead of dropping what they missed.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use nimbus_api::fields::{self, Entry, FieldSet};
use nimbus_api::{Kind, Object};
use nimbus_store::{EventType, Store, StoreError, WatchEvent};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::resources::{Change, Listed, ResourceError, Resources, Selector};

/// How often an apply is tried when another write comes between its read and its write.
const APPLY_ATTEMPTS: usize = 5;

/// [`Resources`] over the embedded store.
#[derive(Clone)]
pub struct StoreResources(pub Arc<Store>);

#[async_trait]
impl Resources for StoreResources {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, ResourceError> {
        self.0.get(kind, namespace, name).map_err(convert)
    }

    async fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: Selector<'_>,
    ) -> Result<Listed, ResourceError> {
        let list = self
            .0
            .list_selected(kind, namespace, selector)
            .map_err(convert)?;
        Ok(Listed {
            items: list.items,
            resource_version: list.resource_version,
        })
    }

    async fn create(&self, obj: Object) -> Result<Object, ResourceError> {
        self.0.create(obj).map_err(convert)
    }

    async fn apply(&self, obj: Object, manager: &str) -> Result<Object, ResourceError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match self
                .0
                .get(obj.kind(), obj.namespace(), obj.name())
                .map_err(convert)?
            {
                None => self.0.create(applied_new(&obj, manager)),
                Some(live) => match applied_over(&live, &obj, manager)? {
                    None => return Ok(live),
                    Some(next) => self.0.update(next),
                },
            };
            match result.map_err(convert) {
                Err(e) if e.retry() == crate::Retry::Immediately && attempt < APPLY_ATTEMPTS => {
                    continue;
                }
                other => return other,
            }
        }
    }

    async fn replace_meta(&self, obj: Object) -> Result<Object, ResourceError> {
        let Some(mut stored) = self
            .0
            .get(obj.kind(), obj.namespace(), obj.name())
            .map_err(convert)?
        else {
            return Err(ResourceError::NotFound {
                kind: obj.kind(),
                namespace: obj.namespace().to_string(),
                name: obj.name().to_string(),
            });
        };
        let from = obj.metadata();
        let to = stored.metadata_mut();
        // The precondition is the caller's: the store refuses a stale one as a conflict.
        to.resource_version.clone_from(&from.resource_version);
        to.labels.clone_from(&from.labels);
        to.annotations.clone_from(&from.annotations);
        to.finalizers.clone_from(&from.finalizers);
        to.owner_references.clone_from(&from.owner_references);
        self.0.update(stored).map_err(convert)
    }

    async fn replace_status(&self, obj: Object) -> Result<Object, ResourceError> {
        self.0.update_status(obj).map_err(convert)
    }

    async fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ResourceError> {
        match self.0.delete_if(kind, namespace, name, uid) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()).map_err(convert),
        }
    }

    fn watch(
        &self,
        kinds: &[Kind],
        resource_version: u64,
    ) -> BoxStream<'static, Result<Change, ResourceError>> {
        let kinds = kinds.to_vec();
        let state = Resume {
            store: self.0.clone(),
            live: self.0.watch(),
            last: resource_version,
            backlog: None,
            done: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })
        .filter(move |c| {
            let keep = c
                .as_ref()
                .map_or(true, |c| kinds.contains(&c.object.kind()));
            futures::future::ready(keep)
        })
        .boxed()
    }
}

/// A watch that resumes: history first, then live events; after falling behind the live
/// channel it reads the history again from the last event it delivered.
struct Resume {
    store: Arc<Store>,
    live: tokio::sync::broadcast::Receiver<WatchEvent>,
    /// The resourceVersion of the last event delivered.
    last: u64,
    backlog: Option<std::vec::IntoIter<WatchEvent>>,
    done: bool,
}

impl Resume {
    async fn next(&mut self) -> Option<Result<Change, ResourceError>> {
        if self.done {
            return None;
        }
        loop {
            if self.backlog.is_none() {
                match self.store.events_since(self.last) {
                    Ok(events) => self.backlog = Some(events.into_iter()),
                    Err(e) => {
                        self.done = true;
                        return Some(Err(convert(e)));
                    }
                }
            }
            if let Some(event) = self.backlog.as_mut().and_then(Iterator::next) {
                if event.resource_version > self.last {
                    return Some(Ok(self.deliver(event)));
                }
                continue;
            }
            match self.live.recv().await {
                Ok(event) if event.resource_version <= self.last => continue,
                Ok(event) => return Some(Ok(self.deliver(event))),
                // Missed live events are still in the store's history: read it again.
                Err(RecvError::Lagged(_)) => self.backlog = None,
                Err(RecvError::Closed) => return None,
            }
        }
    }

    fn deliver(&mut self, event: WatchEvent) -> Change {
        self.last = event.resource_version;
        Change {
            deleted: event.type_ == EventType::Deleted,
            resource_version: event.resource_version,
            object: event.object,
        }
    }
}

/// A new object applied by `manager`: exactly `obj`, owning the fields it sets.
fn applied_new(obj: &Object, manager: &str) -> Object {
    let config = obj.to_json();
    let entries = fields::settle_apply(
        &Value::Null,
        &config,
        &config,
        Vec::new(),
        manager,
        true,
        &FieldSet::new(),
        &now(),
    )
    .unwrap_or_default();
    with_entries(obj.clone(), &entries)
}

/// `live` after `manager` applies `obj`, or `None` when nothing would change.
fn applied_over(
    live: &Object,
    obj: &Object,
    manager: &str,
) -> Result<Option<Object>, ResourceError> {
    let live_json = live.to_json();
    let config = obj.to_json();
    let entries = Entry::read_all(&live_json);
    let mut merged = fields::merge_applied(&live_json, &config, &entries, manager);
    if let Some(owners) = config.pointer("/metadata/ownerReferences") {
        merged["metadata"]["ownerReferences"] = owners.clone();
    }
    let entries = fields::settle_apply(
        &live_json,
        &merged,
        &config,
        entries,
        manager,
        true,
        &FieldSet::new(),
        &now(),
    )
    .unwrap_or_default();
    let next = Object::from_json(live.kind(), merged).map_err(|e| {
        ResourceError::Invalid(format!(
            "{} {}/{}: the applied object does not decode: {e}",
            live.kind(),
            live.namespace(),
            live.name()
        ))
    })?;
    let next = with_entries(next, &entries);
    Ok((!same_apart_from_times(&next, live)).then_some(next))
}

/// Whether two objects differ only in the managed-fields timestamps an apply refreshes.
fn same_apart_from_times(a: &Object, b: &Object) -> bool {
    let strip = |o: &Object| {
        let mut v = o.to_json();
        if let Some(Value::Array(list)) = v.pointer_mut("/metadata/managedFields") {
            for e in list {
                if let Value::Object(m) = e {
                    m.remove("time");
                }
            }
        }
        v
    };
    strip(a) == strip(b)
}

fn with_entries(obj: Object, entries: &[Entry]) -> Object {
    let kind = obj.kind();
    let mut v = obj.to_json();
    Entry::write_all(&mut v, entries);
    Object::from_json(kind, v).unwrap_or(obj)
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    nimbus_api::k8s_openapi::jiff::Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn convert(e: StoreError) -> ResourceError {
    match e {
        StoreError::NotFound {
            kind,
            namespace,
            name,
        } => ResourceError::NotFound {
            kind,
            namespace,
            name,
        },
        StoreError::AlreadyExists {
            kind,
            namespace,
            name,
        } => ResourceError::AlreadyExists {
            kind,
            namespace,
            name,
        },
        e @ StoreError::Conflict { .. } => ResourceError::Conflict(e.to_string()),
        StoreError::Gone { requested, .. } => ResourceError::Gone(requested),
        e @ (StoreError::Invalid { .. } | StoreError::Corrupt { .. }) => {
            ResourceError::Invalid(e.to_string())
        }
        e @ (StoreError::Sqlite(_) | StoreError::Full(_) | StoreError::SecretsKey { .. }) => {
            ResourceError::Unavailable(e.to_string())
        }
    }
}

#[cfg(test)]
#[path = "store_resources_tests.rs"]
mod tests;
