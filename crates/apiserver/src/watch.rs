//! Watch streams: newline-delimited `{"type":"ADDED|MODIFIED|DELETED","object":{...}}` events,
//! as `kubectl get -w` and kube-rs's watcher read them.
//!
//! The stream subscribes to the store's broadcast *before* reading the starting point (the current
//! objects, or the history after the given `resourceVersion`), then drops broadcast events it has
//! already sent, so nothing is lost or doubled in between. A watcher that falls behind catches up
//! from the store's history; when that history is gone it gets one `ERROR` event carrying a 410
//! `Expired` Status and the stream ends, telling the client to list again. The stream also ends
//! when the client goes away (the body is dropped) or after `timeoutSeconds`.
//!
//! With `allowWatchBookmarks=true` the stream also carries a `BOOKMARK` event (an object with
//! only `metadata.resourceVersion`) every [`ApiState::bookmark_interval`], so an idle watcher
//! can resume from a recent version; with `sendInitialEvents=true` the initial `ADDED` events
//! end with a bookmark annotated `k8s.io/initial-events-end: "true"`. When the client asked for
//! a `Table`, every event's object is a one-row Table.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt;
use nimbus_api::{Kind, Object};
use nimbus_store::{Store, StoreError, WatchEvent};
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::list::ListParams;
use crate::params::is_true;
use crate::selector::{FieldSelector, LabelSelector};
use crate::state::ApiState;
use crate::status::ApiError;
use crate::table::Format;
use crate::view::View;

/// Which objects a list or watch returns.
#[derive(Clone, Debug)]
pub struct WatchFilter {
    pub kind: Kind,
    /// `None`: all namespaces.
    pub namespace: Option<String>,
    pub selector: LabelSelector,
    pub fields: FieldSelector,
    /// The version objects are shown in.
    pub view: View,
}

impl WatchFilter {
    /// Whether `obj` is of this kind, in this namespace and matches the label selector.
    pub fn matches(&self, obj: &Object) -> bool {
        obj.kind() == self.kind
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == obj.namespace())
            && self.selector.matches(obj.metadata().labels.as_ref())
            && self.fields.matches(obj)
    }
}

/// Start a watch: a 200 response whose body streams events until the client leaves.
pub fn respond(
    state: &ApiState,
    filter: WatchFilter,
    params: &ListParams,
    format: Format,
) -> Result<Response, ApiError> {
    let initial = params.send_initial_events.as_deref().is_some_and(is_true);
    let start = match initial {
        true => None,
        false => start_version(params.resource_version.as_deref())?,
    };
    let timeout = timeout(params.timeout_seconds.as_deref())?;
    let bookmarks = params
        .allow_watch_bookmarks
        .as_deref()
        .is_some_and(is_true)
        .then_some(state.bookmark_interval);
    let options = Options {
        format,
        bookmarks,
        initial_events_end: initial && bookmarks.is_some(),
    };
    let cursor = Cursor::start(state.store.clone(), filter, start, options)?;
    let events = futures::stream::unfold(cursor, Cursor::next);
    let events = match timeout {
        Some(t) => events.take_until(tokio::time::sleep(t)).boxed(),
        None => events.boxed(),
    };
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(events.map(Ok::<Bytes, Infallible>)))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `None` (absent, empty or `0`): start with the current objects as `ADDED`.
fn start_version(rv: Option<&str>) -> Result<Option<u64>, ApiError> {
    match rv {
        None | Some("") | Some("0") => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid resourceVersion {s:?}"))),
    }
}

fn timeout(seconds: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(s) = seconds else { return Ok(None) };
    let secs: u64 = s
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds {s:?}")))?;
    Ok(Some(Duration::from_secs(secs)))
}

/// How a stream is written.
#[derive(Clone, Copy, Debug)]
struct Options {
    format: Format,
    /// `Some(interval)` when bookmarks were asked for.
    bookmarks: Option<Duration>,
    /// End the initial events with an `initial-events-end` bookmark.
    initial_events_end: bool,
}

/// Where a watch stream is: lines ready to send, and the broadcast to read next.
struct Cursor {
    store: Arc<Store>,
    filter: WatchFilter,
    options: Options,
    rx: broadcast::Receiver<WatchEvent>,
    /// Highest resourceVersion already accounted for; older broadcast events are skipped.
    seen: u64,
    pending: VecDeque<Bytes>,
    done: bool,
}

// === impl Cursor ===

impl Cursor {
    fn start(
        store: Arc<Store>,
        filter: WatchFilter,
        from: Option<u64>,
        options: Options,
    ) -> Result<Self, ApiError> {
        let rx = store.watch();
        let mut cursor = Self {
            store,
            filter,
            options,
            rx,
            seen: 0,
            pending: VecDeque::new(),
            done: false,
        };
        match from {
            None => {
                cursor.send_current()?;
                if cursor.options.initial_events_end {
                    cursor.bookmark(true);
                }
            }
            Some(rv) => {
                cursor.seen = rv;
                cursor.catch_up()?;
            }
        }
        Ok(cursor)
    }

    fn send_current(&mut self) -> Result<(), ApiError> {
        let listed = self
            .store
            .list(self.filter.kind, self.filter.namespace.as_deref())?;
        for obj in listed.items.iter().filter(|o| self.filter.matches(o)) {
            let object = self.render(obj);
            self.pending.push_back(line("ADDED", object));
        }
        self.seen = listed.resource_version;
        Ok(())
    }

    /// Replay history after `seen`; a `Gone` history ends the stream with an `ERROR` event.
    fn catch_up(&mut self) -> Result<(), ApiError> {
        match self.store.events_since(self.seen) {
            Ok(events) => events.into_iter().for_each(|e| self.accept(e)),
            Err(e @ StoreError::Gone { .. }) => {
                self.pending
                    .push_back(line("ERROR", ApiError::from(e).to_status()));
                self.done = true;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    fn accept(&mut self, event: WatchEvent) {
        if event.resource_version <= self.seen {
            return;
        }
        self.seen = event.resource_version;
        if self.filter.matches(&event.object) {
            let object = self.render(&event.object);
            self.pending.push_back(line(event.type_.as_str(), object));
        }
    }

    fn render(&self, obj: &Object) -> Value {
        self.options.format.render(obj, self.filter.view)
    }

    /// A `BOOKMARK` at the last resourceVersion sent.
    fn bookmark(&mut self, initial_events_end: bool) {
        let mut metadata = json!({ "resourceVersion": self.seen.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object = json!({
            "kind": self.filter.kind.as_str(),
            "apiVersion": self.filter.kind.api_version(),
            "metadata": metadata,
        });
        self.pending.push_back(line("BOOKMARK", object));
    }

    async fn next(mut self) -> Option<(Bytes, Self)> {
        loop {
            if let Some(bytes) = self.pending.pop_front() {
                return Some((bytes, self));
            }
            if self.done {
                return None;
            }
            let every = self.options.bookmarks;
            let tick = async move {
                match every {
                    Some(every) => tokio::time::sleep(every).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(event) => self.accept(event),
                    Err(RecvError::Lagged(_)) => self.recover(),
                    Err(RecvError::Closed) => return None,
                },
                () = tick => self.bookmark(false),
            }
        }
    }

    fn recover(&mut self) {
        if let Err(e) = self.catch_up() {
            self.pending.push_back(line("ERROR", e.to_status()));
            self.done = true;
        }
    }
}

fn line(type_: &str, object: Value) -> Bytes {
    let mut text = json!({ "type": type_, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}
