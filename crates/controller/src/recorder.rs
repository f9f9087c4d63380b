//! The event recorder: the one place Nimbus writes Kubernetes Events, after client-go's
//! `EventRecorder` + `EventCorrelator` and kube-rs's `Recorder`.
//!
//! ```text
//!  reconcilers, scaler, runtimes ──record()──► bounded channel ──► writer task ──► Resources
//!      (never waits; a full channel drops      (rate limit per object, de-duplication,
//!       the note and counts it)                 one write per note: create or count bump)
//!                                              sweeper: delete events older than the TTL
//! ```
//!
//! - De-duplication: a note with the same object, type, reason, message and component as one
//!   written less than [`EventConfig::window`] ago bumps that event's `count`,
//!   `lastTimestamp` and `series` (`count`, `lastObservedTime`) instead of creating another.
//! - Rate limit: client-go's `EventSourceObjectSpamFilter`, a token bucket per object (burst
//!   25, one token back every 5 minutes); notes over it are dropped and counted.
//! - TTL: events whose last occurrence is older than [`EventConfig::ttl`] (the kube-apiserver's
//!   `--event-ttl`, 1 h) are deleted by a sweeper. On a cluster the kube-apiserver ages them out
//!   itself, so the operator runs no sweeper.
//!
//! Writing an event never blocks or fails the caller: [`Recorder::record`] is synchronous and
//! lossy, and write errors are logged by the writer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nimbus_api::events::{Event, TYPE_NORMAL, TYPE_WARNING};
use nimbus_api::k8s_openapi::api::core::v1::{EventSeries, EventSource, ObjectReference};
use nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use nimbus_api::k8s_openapi::jiff::Timestamp;
use nimbus_api::{Kind, Object, ObjectMeta};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::context::Clock;
use crate::resources::Resources;

/// The field manager of event writes.
pub const FIELD_MANAGER: &str = "nimbus-events";

/// How the recorder de-duplicates, limits and ages out events.
#[derive(Clone, Debug)]
pub struct EventConfig {
    /// `reportingComponent` and `source.component` of the events written.
    pub component: String,
    /// `reportingInstance` and `source.host` (the host name).
    pub instance: String,
    /// How long an event is kept after its last occurrence (`--event-ttl`).
    pub ttl: Duration,
    /// How long after its last occurrence a repeat still bumps an event's count.
    pub window: Duration,
    /// Notes an object may have in a burst.
    pub burst: u32,
    /// How long an object waits for one more token.
    pub refill: Duration,
    /// Notes waiting to be written; more are dropped.
    pub queue: usize,
    /// How often the sweeper looks for expired events; `None`: no sweeper (a cluster's
    /// kube-apiserver ages events out itself).
    pub sweep_every: Option<Duration>,
    /// Events remembered for de-duplication (client-go's LRU size).
    pub cache: usize,
}

impl Default for EventConfig {
    fn default() -> Self {
        Self {
            component: "nimbus".into(),
            instance: String::new(),
            ttl: Duration::from_secs(3600),
            window: Duration::from_secs(600),
            burst: 25,
            refill: Duration::from_secs(300),
            queue: 1024,
            sweep_every: Some(Duration::from_secs(60)),
            cache: 4096,
        }
    }
}

/// What happened to an object, before it becomes an Event.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    pub regarding: ObjectReference,
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// UpperCamelCase: `ScaledUp`, `Pulled`, `BackOff`.
    pub reason: String,
    /// What was done: `Scale`, `Pull`, `Start`.
    pub action: String,
    pub message: String,
}

/// Hands notes to the writer task. Cheap to clone; a disabled recorder drops everything.
#[derive(Clone, Default)]
pub struct Recorder {
    tx: Option<mpsc::Sender<Note>>,
    counts: Arc<Counts>,
}

/// What the recorder did not write.
#[derive(Debug, Default)]
pub struct Counts {
    /// Notes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Notes dropped by the per-object rate limit.
    pub rate_limited: AtomicU64,
    /// Writes the API refused or failed.
    pub failed: AtomicU64,
}

// === impl Recorder ===

impl Recorder {
    /// A recorder that writes nothing (tests, tools).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Start the writer (and the sweeper, when configured) on the current runtime.
    pub fn start(
        resources: Arc<dyn Resources>,
        clock: Arc<dyn Clock>,
        config: EventConfig,
    ) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let counts = Arc::new(Counts::default());
        let writer = Writer {
            resources,
            clock,
            config,
            seen: HashMap::new(),
            buckets: HashMap::new(),
            counts: counts.clone(),
            last_name: 0,
        };
        let task = tokio::spawn(writer.run(rx));
        let recorder = Self {
            tx: Some(tx),
            counts,
        };
        (recorder, task)
    }

    /// Queue `note`; never waits. A full queue drops it (counted in [`Counts::dropped`]).
    pub fn record(&self, note: Note) {
        let Some(tx) = &self.tx else { return };
        if tx.try_send(note).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("event queue full; an event was dropped");
        }
    }

    /// A `Normal` event about `about`.
    pub fn normal(&self, about: &Object, reason: &str, action: &str, message: String) {
        self.record(Note::about(about, TYPE_NORMAL, reason, action, message));
    }

    /// A `Warning` event about `about`.
    pub fn warning(&self, about: &Object, reason: &str, action: &str, message: String) {
        self.record(Note::about(about, TYPE_WARNING, reason, action, message));
    }

    /// What was not written so far.
    pub fn counts(&self) -> &Counts {
        &self.counts
    }
}

/// Instances' notices (OOM kills, liveness failures, restarts) as Events on their revision.
impl nimbus_runtime::InstanceNotices for Recorder {
    fn notice(
        &self,
        revision: &nimbus_runtime::RevisionKey,
        notice: nimbus_runtime::InstanceNotice,
    ) {
        let type_ = if notice.warning {
            TYPE_WARNING
        } else {
            TYPE_NORMAL
        };
        let (ns, name) = (&revision.namespace, &revision.name);
        let mut note = Note::named(
            Kind::Revision,
            ns,
            name,
            type_,
            &notice.reason,
            notice.message,
        );
        note.action = "Restart".into();
        self.record(note);
    }
}

// === impl Note ===

impl Note {
    /// A note about `obj`.
    pub fn about(
        obj: &Object,
        type_: &'static str,
        reason: &str,
        action: &str,
        message: String,
    ) -> Self {
        Self {
            regarding: reference(obj),
            type_,
            reason: reason.into(),
            action: action.into(),
            message,
        }
    }

    /// A note about the object of `kind` named `name` in `namespace`, when only its name is at
    /// hand (a runtime's revision).
    pub fn named(
        kind: Kind,
        namespace: &str,
        name: &str,
        type_: &'static str,
        reason: &str,
        message: String,
    ) -> Self {
        let regarding = ObjectReference {
            api_version: Some(kind.api_version().into()),
            kind: Some(kind.as_str().into()),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            ..ObjectReference::default()
        };
        Self {
            regarding,
            type_,
            reason: reason.into(),
            action: String::new(),
            message,
        }
    }
}

/// The reference an event keeps to `obj` (what `kubectl describe` selects on).
pub fn reference(obj: &Object) -> ObjectReference {
    let meta = obj.metadata();
    ObjectReference {
        api_version: Some(obj.kind().api_version().into()),
        kind: Some(obj.kind().as_str().into()),
        namespace: Some(obj.namespace().into()),
        name: meta.name.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        field_path: None,
    }
}

// === the writer ===

/// What makes two notes the same event (client-go's `getEventKey` without the time).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct NoteKey {
    namespace: String,
    kind: String,
    name: String,
    uid: String,
    type_: &'static str,
    reason: String,
    message: String,
}

/// An event written before.
#[derive(Clone, Debug)]
struct Seen {
    event: Event,
    last: Timestamp,
}

/// A token bucket per object.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Timestamp,
}

struct Writer {
    resources: Arc<dyn Resources>,
    clock: Arc<dyn Clock>,
    config: EventConfig,
    seen: HashMap<NoteKey, Seen>,
    buckets: HashMap<(String, String, String), Bucket>,
    counts: Arc<Counts>,
    /// The time part of the last name given.
    last_name: i128,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Note>) {
        let mut sweep = self.config.sweep_every.map(|every| {
            let mut t = tokio::time::interval(every);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            tokio::select! {
                note = rx.recv() => match note {
                    Some(note) => self.handle(note).await,
                    None => return,
                },
                _ = tick(&mut sweep) => self.sweep().await,
            }
        }
    }

    /// Write `note`; a note about an object of a Service (its Revisions, Route,
    /// Configuration: the `serving.knative.dev/service` label) is also written on the Service,
    /// naming the object, so `kubectl describe ksvc` shows why its revisions changed.
    async fn handle(&mut self, mut note: Note) {
        if note.regarding.kind.as_deref() == Some(Kind::Service.as_str()) {
            return self.write(note).await;
        }
        let service = match self.fill_uid(&mut note).await {
            Some(obj) => service_of(&obj, &note),
            None => None,
        };
        self.write(note).await;
        if let Some(mut also) = service
            && self.fill_uid(&mut also).await.is_some()
        {
            self.write(also).await;
        }
    }

    /// Complete the note's reference from the object (its uid); the object, when it exists.
    async fn fill_uid(&self, note: &mut Note) -> Option<Object> {
        let r = &mut note.regarding;
        let kind = Kind::parse(r.kind.as_deref()?)?;
        let (ns, name) = (r.namespace.as_deref()?, r.name.as_deref()?);
        let obj = self.resources.get(kind, ns, name).await.ok().flatten()?;
        if r.uid.is_none() {
            r.uid.clone_from(&obj.metadata().uid);
        }
        Some(obj)
    }

    async fn write(&mut self, note: Note) {
        let now = self.clock.now();
        if !self.allow(&note, now) {
            self.counts.rate_limited.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let key = NoteKey::of(&note);
        let window = self.config.window.as_secs_f64();
        let event = match self.seen.get(&key) {
            Some(s) if seconds(s.last, now) < window => repeat(&s.event, now),
            _ => self.first(&note, now),
        };
        match self
            .resources
            .apply(Object::Event(event), FIELD_MANAGER)
            .await
        {
            Ok(Object::Event(written)) => {
                self.remember(key, written, now);
            }
            Ok(_) => {}
            Err(e) => {
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, reason = %note.reason, "cannot write an event");
                self.seen.remove(&key);
            }
        }
    }

    /// Take a token of the object's bucket.
    fn allow(&mut self, note: &Note, now: Timestamp) -> bool {
        let r = &note.regarding;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        let key = (s(&r.namespace), s(&r.kind), s(&r.name));
        let burst = f64::from(self.config.burst.max(1));
        let per_second = 1.0 / self.config.refill.as_secs_f64().max(0.001);
        let bucket = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        bucket.tokens = (bucket.tokens + seconds(bucket.at, now) * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// A new event for `note`: `{object}.{nanoseconds in hex}`, as client-go names them (kept
    /// increasing, so two notes in one clock tick get two names).
    fn first(&mut self, note: &Note, now: Timestamp) -> Event {
        let r = &note.regarding;
        let object = r.name.clone().unwrap_or_default();
        self.last_name = now.as_nanosecond().max(self.last_name + 1);
        let name = format!("{object}.{:x}", self.last_name);
        let source = EventSource {
            component: Some(self.config.component.clone()),
            host: Some(self.config.instance.clone()).filter(|h| !h.is_empty()),
        };
        Event {
            api_version: "v1".into(),
            kind: Event::KIND.into(),
            metadata: ObjectMeta {
                name: Some(name),
                namespace: r.namespace.clone(),
                ..ObjectMeta::default()
            },
            involved_object: r.clone(),
            reason: Some(note.reason.clone()),
            message: Some(note.message.clone()),
            source: Some(source),
            first_timestamp: Some(Time(second(now))),
            last_timestamp: Some(Time(second(now))),
            count: Some(1),
            type_: Some(note.type_.into()),
            event_time: Some(MicroTime(now)),
            series: None,
            // The kube-apiserver requires an action on events with an eventTime.
            action: Some(if note.action.is_empty() {
                note.reason.clone()
            } else {
                note.action.clone()
            }),
            related: None,
            reporting_component: Some(self.config.component.clone()),
            reporting_instance: Some(self.config.instance.clone()).filter(|i| !i.is_empty()),
        }
    }

    fn remember(&mut self, key: NoteKey, event: Event, now: Timestamp) {
        if self.seen.len() >= self.config.cache && !self.seen.contains_key(&key) {
            let window = self.config.window.as_secs_f64();
            self.seen.retain(|_, s| seconds(s.last, now) < window);
            if let Some(oldest) = self.oldest() {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(key, Seen { event, last: now });
    }

    fn oldest(&self) -> Option<NoteKey> {
        let by_time = self.seen.iter().min_by_key(|(_, s)| s.last);
        by_time.map(|(k, _)| k.clone())
    }

    /// Delete the events whose last occurrence is older than the TTL; forget idle buckets.
    async fn sweep(&mut self) {
        let now = self.clock.now();
        let ttl = self.config.ttl.as_secs_f64();
        let listed = match self.resources.list(Kind::Event, None, &[]).await {
            Ok(listed) => listed,
            Err(e) => return tracing::warn!(error = %e, "cannot list events to age them out"),
        };
        for obj in &listed.items {
            let Object::Event(e) = obj else { continue };
            if last_seen(e).is_some_and(|t| seconds(t, now) < ttl) {
                continue;
            }
            let meta = &e.metadata;
            let (ns, name) = (obj.namespace(), meta.name.as_deref().unwrap_or(""));
            if let Err(err) = self
                .resources
                .delete(Kind::Event, ns, name, meta.uid.as_deref())
                .await
            {
                tracing::warn!(error = %err, event = name, "cannot delete an expired event");
            }
        }
        self.seen.retain(|_, s| seconds(s.last, now) < ttl);
        let refill = self.config.refill.as_secs_f64() * f64::from(self.config.burst.max(1));
        self.buckets.retain(|_, b| seconds(b.at, now) < refill);
    }
}

impl NoteKey {
    fn of(note: &Note) -> Self {
        let r = &note.regarding;
        let s = |v: &Option<String>| v.clone().unwrap_or_default();
        Self {
            namespace: s(&r.namespace),
            kind: s(&r.kind),
            name: s(&r.name),
            uid: s(&r.uid),
            type_: note.type_,
            reason: note.reason.clone(),
            message: note.message.clone(),
        }
    }
}

/// The same note about the Service `obj` belongs to, naming the object.
fn service_of(obj: &Object, note: &Note) -> Option<Note> {
    let labels = obj.metadata().labels.as_ref()?;
    let service = labels.get(nimbus_api::constants::LABEL_SERVICE)?;
    let kind = obj.kind().as_str().to_ascii_lowercase();
    let mut also = Note::named(
        Kind::Service,
        obj.namespace(),
        service,
        note.type_,
        &note.reason,
        format!("{kind} {}: {}", obj.name(), note.message),
    );
    also.action.clone_from(&note.action);
    Some(also)
}

/// `event` seen once more at `now`.
fn repeat(event: &Event, now: Timestamp) -> Event {
    let mut next = event.clone();
    let count = event.occurrences() + 1;
    next.count = Some(count);
    next.last_timestamp = Some(Time(second(now)));
    next.series = Some(EventSeries {
        count: Some(count),
        last_observed_time: Some(MicroTime(now)),
    });
    // Only what names it: a stale resourceVersion or uid would make the apply a conflict.
    next.metadata = ObjectMeta {
        name: event.metadata.name.clone(),
        namespace: event.metadata.namespace.clone(),
        ..ObjectMeta::default()
    };
    next
}

/// When an event last happened: its series, else `lastTimestamp`, `eventTime`, creation.
pub fn last_seen(e: &Event) -> Option<Timestamp> {
    let series = e
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref());
    series
        .map(|t| t.0)
        .or_else(|| e.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| e.event_time.as_ref().map(|t| t.0))
        .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_nanosecond() - from.as_nanosecond()) as f64 / 1e9
}

/// `t` to the second (`Time` fields carry seconds only).
fn second(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "recorder_tests.rs"]
mod tests;
