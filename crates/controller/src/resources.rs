//! Resource access for reconcilers: get / list / create / update / update status / delete, plus a
//! stream of changed keys. The embedded store implements it here; a kube-rs client can later.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use nimbus_api::{Kind, Object};
use nimbus_store::{Store, StoreError};

use crate::manager::ObjectKey;

#[async_trait]
pub trait Resources: Send + Sync + 'static {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, StoreError>;
    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError>;
    async fn create(&self, obj: Object) -> Result<Object, StoreError>;
    /// Replace spec and metadata (no resourceVersion precondition unless the object carries one).
    async fn update(&self, obj: Object) -> Result<Object, StoreError>;
    async fn update_status(&self, obj: Object) -> Result<Object, StoreError>;
    async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), StoreError>;
    /// Keys of objects as they change (create, update, delete).
    fn watch(&self) -> BoxStream<'static, ObjectKey>;
}

/// [`Resources`] over the embedded SQLite store.
pub struct StoreResources(pub Arc<Store>);

#[async_trait]
impl Resources for StoreResources {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, StoreError> {
        self.0.get(kind, namespace, name)
    }
    async fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<Vec<Object>, StoreError> {
        Ok(self.0.list(kind, namespace)?.items)
    }
    async fn create(&self, obj: Object) -> Result<Object, StoreError> {
        self.0.create(obj)
    }
    async fn update(&self, obj: Object) -> Result<Object, StoreError> {
        self.0.update(obj)
    }
    async fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        self.0.update_status(obj)
    }
    async fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), StoreError> {
        match self.0.delete(kind, namespace, name) {
            Err(e) if e.is_not_found() => Ok(()),
            other => other.map(|_| ()),
        }
    }
    fn watch(&self) -> BoxStream<'static, ObjectKey> {
        use tokio::sync::broadcast::error::RecvError;
        futures::stream::unfold(self.0.watch(), |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => return Some((ObjectKey::of(&ev.object), rx)),
                    // Missed events are covered by the periodic resync.
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}
