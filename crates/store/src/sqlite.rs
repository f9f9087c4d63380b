//! The SQLite implementation of the store.

use std::path::Path;
use std::sync::Mutex;

use nimbus_api::{Kind, Object};
use nimbus_metrics::{Histogram, HistogramSnapshot, SLOW_BUCKETS};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::broadcast;

use crate::seal::{KEY_FILE, Sealer, SecretsKey};
use crate::{EventType, ObjectList, StoreError, WatchEvent};

/// How many past events are kept for watch resumption.
const EVENT_HISTORY: u64 = 10_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    resource_version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    resource_version INTEGER PRIMARY KEY,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO counters (name, value) VALUES ('resource_version', 0);
CREATE TABLE IF NOT EXISTS labels (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name, key)
);
CREATE INDEX IF NOT EXISTS labels_by_value ON labels (kind, key, value, namespace);
";

/// Objects of a kind with one label value, by the label index. CROSS JOIN makes SQLite walk
/// the index first (it would otherwise pick a scan of every object of the kind, probing the
/// labels by primary key for each).
const LIST_SELECTED: &str = "SELECT o.namespace, o.name, o.body FROM labels l
     CROSS JOIN objects o ON o.kind = l.kind AND o.namespace = l.namespace AND o.name = l.name
     WHERE l.kind = ?1 AND l.key = ?2 AND l.value = ?3 AND (?4 IS NULL OR l.namespace = ?4)
     ORDER BY o.namespace, o.name";

/// `PRAGMA user_version` of a store whose label index is complete.
const SCHEMA_VERSION: i64 = 1;

/// A handle to the store. All methods are synchronous and short (one small transaction); call
/// them from async code directly.
pub struct Store {
    conn: Mutex<Connection>,
    events: broadcast::Sender<WatchEvent>,
    /// How many past events are kept for watch resumption.
    history: u64,
    /// Encodes bodies, sealing Secrets' values.
    sealer: Sealer,
    /// How long write transactions take (waiting for the connection included), for `/metrics`.
    writes: Histogram,
}

/// Records one write's duration into the store's histogram when dropped (on every return).
struct WriteTimer<'a>(&'a Histogram, std::time::Instant);

impl Drop for WriteTimer<'_> {
    fn drop(&mut self) {
        self.0.record(self.1.elapsed());
    }
}

impl Store {
    /// Open (creating if needed) the store at `path`; Secrets are encrypted with the key in
    /// `secrets.key` beside it (made, mode 0600, if there is none).
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let key_path = path.with_file_name(KEY_FILE);
        let key = SecretsKey::load_or_create(&key_path)?;
        Self::init(Connection::open(path)?, &key)
    }

    /// A store that lives only in memory (tests), with a key of its own.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?, &SecretsKey::random())
    }

    fn init(conn: Connection, key: &SecretsKey) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            conn: Mutex::new(conn),
            events,
            history: EVENT_HISTORY,
            sealer: Sealer::new(key),
            writes: Histogram::new(SLOW_BUCKETS),
        })
    }

    /// Keep only about `events` past events for watch resumption (default 10,000; tests use
    /// fewer to reach the end of the history quickly).
    pub fn with_event_history(mut self, events: u64) -> Self {
        self.history = events.max(1);
        self
    }

    /// The database's size in bytes (`page_count × page_size`; the WAL not counted).
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(u64::try_from(pages.saturating_mul(size)).unwrap_or(0))
    }

    /// The durations of write transactions so far (create, update, status update, delete).
    pub fn write_latency(&self) -> HistogramSnapshot {
        self.writes.snapshot()
    }

    fn time_write(&self) -> WriteTimer<'_> {
        WriteTimer(&self.writes, std::time::Instant::now())
    }

    /// Receive every change from now on.
    pub fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.events.subscribe()
    }

    /// The store's current resourceVersion.
    pub fn resource_version(&self) -> Result<u64, StoreError> {
        let conn = self.lock();
        current_rv(&conn)
    }

    pub fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Object>, StoreError> {
        let conn = self.lock();
        read(&conn, &self.sealer, kind, namespace, name)
    }

    /// Like [`Store::get`] but a missing object is an error.
    pub fn must_get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        self.get(kind, namespace, name)?
            .ok_or_else(|| not_found(kind, namespace, name))
    }

    /// All objects of a kind, in one namespace or (None) all, ordered by namespace and name.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Result<ObjectList, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(
            "SELECT namespace, name, body FROM objects WHERE kind = ?1 AND (?2 IS NULL OR namespace = ?2)
             ORDER BY namespace, name",
        )?;
        let rows = stmt.query_map(params![kind.as_str(), namespace], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut items = Vec::new();
        for row in rows {
            let (ns, name, body) = row?;
            items.push(decode(&self.sealer, kind, &ns, &name, &body)?);
        }
        Ok(ObjectList {
            items,
            resource_version: current_rv(&conn)?,
        })
    }

    /// The objects of a kind whose labels have every `key = value` of `selector`, in one
    /// namespace or (None) all. Served from the label index: the cost is proportional to the
    /// objects that match, not to all objects of the kind.
    pub fn list_selected(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        selector: &[(&str, &str)],
    ) -> Result<ObjectList, StoreError> {
        let Some(((first_key, first_value), rest)) = selector.split_first() else {
            return self.list(kind, namespace);
        };
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(LIST_SELECTED)?;
        let rows = stmt.query_map(
            params![kind.as_str(), first_key, first_value, namespace],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
        let mut items = Vec::new();
        for row in rows {
            let (ns, name, body) = row?;
            let obj = decode(&self.sealer, kind, &ns, &name, &body)?;
            let labels = obj.metadata().labels.as_ref();
            let matches = rest
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(*k)).map(String::as_str) == Some(*v));
            if matches {
                items.push(obj);
            }
        }
        Ok(ObjectList {
            items,
            resource_version: current_rv(&conn)?,
        })
    }

    /// Create an object. Sets uid, resourceVersion, generation 1 and creationTimestamp; fills
    /// `metadata.name` from `generateName` when needed.
    pub fn create(&self, mut obj: Object) -> Result<Object, StoreError> {
        let _timer = self.time_write();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let kind = obj.kind();
        let namespace = obj.namespace().to_string();
        ensure_name(&tx, &mut obj)?;
        let name = obj.name().to_string();
        if exists(&tx, kind, &namespace, &name)? {
            return Err(StoreError::AlreadyExists {
                kind,
                namespace,
                name,
            });
        }
        let rv = next_rv(&tx)?;
        let meta = obj.metadata_mut();
        meta.namespace = Some(namespace);
        meta.uid = Some(uuid::Uuid::new_v4().to_string());
        meta.generation = Some(1);
        meta.creation_timestamp = Some(now_time());
        meta.resource_version = Some(rv.to_string());
        meta.deletion_timestamp = None;
        obj.set_type_meta();
        let event = write(&tx, &self.sealer, self.history, EventType::Added, rv, obj)?;
        tx.commit()?;
        Ok(self.publish(event))
    }

    /// Replace an object's spec and metadata (status is kept as stored, as with a Kubernetes
    /// status subresource). If `metadata.resourceVersion` is set it must match the stored one.
    ///
    /// Finalizers follow Kubernetes: `deletionTimestamp` cannot be set or cleared by an update,
    /// a deleting object takes no new finalizer, and an update that removes the last finalizer
    /// of a deleting object deletes it (the returned object is its last state).
    pub fn update(&self, obj: Object) -> Result<Object, StoreError> {
        self.modify(obj, |stored, mut new| {
            new.metadata_mut().generation = stored.metadata().generation;
            if spec_of(&new) != spec_of(stored) {
                let g = stored.metadata().generation.unwrap_or(0) + 1;
                new.metadata_mut().generation = Some(g);
            }
            new.copy_status_from(stored);
            new.metadata_mut().deletion_timestamp = stored.metadata().deletion_timestamp.clone();
            new
        })
    }

    /// Replace only an object's status. If `metadata.resourceVersion` is set it must match.
    pub fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        self.modify(obj, |stored, new| {
            let mut merged = stored.clone();
            merged.copy_status_from(&new);
            merged
        })
    }

    fn modify(
        &self,
        obj: Object,
        merge: impl FnOnce(&Object, Object) -> Object,
    ) -> Result<Object, StoreError> {
        let _timer = self.time_write();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (kind, namespace, name) = (
            obj.kind(),
            obj.namespace().to_string(),
            obj.name().to_string(),
        );
        let stored = read(&tx, &self.sealer, kind, &namespace, &name)?
            .ok_or_else(|| not_found(kind, &namespace, &name))?;
        check_precondition(&stored, obj.metadata().resource_version.as_deref())?;
        let mut new = merge(&stored, obj);
        let meta = new.metadata_mut();
        let old = stored.metadata();
        meta.namespace = old.namespace.clone();
        meta.uid = old.uid.clone();
        meta.creation_timestamp = old.creation_timestamp.clone();
        check_finalizers(&stored, &new)?;
        if new.to_json() == stored.to_json() {
            return Ok(stored); // no-op writes do not bump resourceVersion or wake watchers
        }
        let rv = next_rv(&tx)?;
        new.metadata_mut().resource_version = Some(rv.to_string());
        new.set_type_meta();
        let event = if new.is_deleting() && finalizers(&new).is_empty() {
            remove(&tx, &self.sealer, self.history, rv, new)?
        } else {
            write(
                &tx,
                &self.sealer,
                self.history,
                EventType::Modified,
                rv,
                new,
            )?
        };
        tx.commit()?;
        Ok(self.publish(event))
    }

    /// Delete an object; returns its last state. An object with finalizers is not removed:
    /// its `deletionTimestamp` is set (once) and it goes when its last finalizer is removed.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        self.delete_if(kind, namespace, name, None)
    }

    /// [`Store::delete`] with Kubernetes' uid precondition: when `uid` is given, only the object
    /// with that uid is deleted (a newer object of the same name is a conflict), so a garbage
    /// collector never removes an object that replaced the one it meant.
    pub fn delete_if(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<Object, StoreError> {
        let _timer = self.time_write();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut obj = read(&tx, &self.sealer, kind, namespace, name)?
            .ok_or_else(|| not_found(kind, namespace, name))?;
        if let Some(uid) = uid
            && obj.metadata().uid.as_deref() != Some(uid)
        {
            return Err(StoreError::Conflict {
                kind,
                name: name.to_string(),
                given: format!("uid {uid}"),
                current: 0,
            });
        }
        if obj.is_deleting() && !finalizers(&obj).is_empty() {
            return Ok(obj); // already waiting for its finalizers
        }
        let rv = next_rv(&tx)?;
        obj.metadata_mut().resource_version = Some(rv.to_string());
        let event = if finalizers(&obj).is_empty() {
            remove(&tx, &self.sealer, self.history, rv, obj)?
        } else {
            obj.metadata_mut().deletion_timestamp = Some(now_time());
            obj.metadata_mut().deletion_grace_period_seconds = Some(0);
            write(
                &tx,
                &self.sealer,
                self.history,
                EventType::Modified,
                rv,
                obj,
            )?
        };
        tx.commit()?;
        Ok(self.publish(event))
    }

    /// Events after `resource_version` still in the history (for resuming a watch).
    pub fn events_since(&self, resource_version: u64) -> Result<Vec<WatchEvent>, StoreError> {
        let conn = self.lock();
        let oldest: Option<i64> =
            conn.query_row("SELECT MIN(resource_version) FROM events", [], |r| r.get(0))?;
        let oldest = oldest.map(|v| v as u64);
        let current = current_rv(&conn)?;
        if let Some(oldest) = oldest
            && resource_version + 1 < oldest
            && resource_version < current
        {
            return Err(StoreError::Gone {
                requested: resource_version,
                oldest,
            });
        }
        let mut stmt = conn.prepare_cached(
            "SELECT resource_version, type, kind, body FROM events WHERE resource_version > ?1
             ORDER BY resource_version",
        )?;
        let rows = stmt.query_map(params![resource_version as i64], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (rv, t, kind, body) = row?;
            let kind_v =
                Kind::parse(&kind).ok_or_else(|| corrupt_str(&kind, "", "", "unknown kind"))?;
            let type_ = EventType::parse(&t)
                .ok_or_else(|| corrupt_str(&kind, "", "", "unknown event type"))?;
            out.push(WatchEvent {
                type_,
                resource_version: rv,
                object: decode(&self.sealer, kind_v, "", "", &body)?,
            });
        }
        Ok(out)
    }

    fn publish(&self, event: WatchEvent) -> Object {
        let obj = event.object.clone();
        let _ = self.events.send(event); // no receivers is fine
        obj
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back on drop), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// === helpers ===

fn now_time() -> nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    nimbus_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now_jiff())
}

fn now_jiff() -> nimbus_api::k8s_openapi::jiff::Timestamp {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    nimbus_api::k8s_openapi::jiff::Timestamp::new(secs, 0).unwrap_or_default()
}

fn spec_of(obj: &Object) -> serde_json::Value {
    obj.to_json().get("spec").cloned().unwrap_or_default()
}

fn finalizers(obj: &Object) -> &[String] {
    obj.metadata().finalizers.as_deref().unwrap_or_default()
}

/// Kubernetes' rule: a deleting object may lose finalizers but gain none.
fn check_finalizers(stored: &Object, new: &Object) -> Result<(), StoreError> {
    if !stored.is_deleting() {
        return Ok(());
    }
    match finalizers(new)
        .iter()
        .find(|f| !finalizers(stored).contains(f))
    {
        Some(added) => Err(StoreError::Invalid {
            field: "metadata.finalizers".into(),
            message: format!(
                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers [{added:?}]"
            ),
        }),
        None => Ok(()),
    }
}

/// Build (or complete) the label index of a store written before it existed.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    let rows: Vec<(String, String, String, String)> = conn
        .prepare("SELECT kind, namespace, name, body FROM objects")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    for (kind, namespace, name, body) in rows {
        let labels = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.pointer("/metadata/labels").cloned());
        if let Some(serde_json::Value::Object(labels)) = labels {
            for (key, value) in labels {
                conn.execute(
                    "INSERT OR REPLACE INTO labels (kind, namespace, name, key, value) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![kind, namespace, name, key, value.as_str().unwrap_or_default()],
                )?;
            }
        }
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

fn check_precondition(stored: &Object, given: Option<&str>) -> Result<(), StoreError> {
    let Some(given) = given.filter(|g| !g.is_empty()) else {
        return Ok(());
    };
    let current: u64 = stored
        .metadata()
        .resource_version
        .as_deref()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if given.parse::<u64>().ok() != Some(current) {
        return Err(StoreError::Conflict {
            kind: stored.kind(),
            name: stored.name().to_string(),
            given: given.to_string(),
            current,
        });
    }
    Ok(())
}

fn ensure_name(tx: &Transaction<'_>, obj: &mut Object) -> Result<(), StoreError> {
    if !obj.name().is_empty() {
        return Ok(());
    }
    let Some(prefix) = obj.metadata().generate_name.clone() else {
        return Err(StoreError::Invalid {
            field: "metadata.name".into(),
            message: "is required (or set metadata.generateName)".into(),
        });
    };
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    for _ in 0..16 {
        let mut rng = rand::rng();
        let suffix: String = (0..5)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        let candidate = format!("{prefix}{suffix}");
        if !exists(tx, obj.kind(), obj.namespace(), &candidate)? {
            obj.metadata_mut().name = Some(candidate);
            return Ok(());
        }
    }
    Err(StoreError::Invalid {
        field: "metadata.generateName".into(),
        message: "could not find a free name; use a longer prefix".into(),
    })
}

fn current_rv(conn: &Connection) -> Result<u64, StoreError> {
    let v: i64 = conn.query_row(
        "SELECT value FROM counters WHERE name = 'resource_version'",
        [],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}

fn next_rv(tx: &Transaction<'_>) -> Result<u64, StoreError> {
    let v: i64 = tx.query_row(
        "UPDATE counters SET value = value + 1 WHERE name = 'resource_version' RETURNING value",
        [],
        |r| r.get(0),
    )?;
    Ok(v as u64)
}

fn exists(conn: &Connection, kind: Kind, namespace: &str, name: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3")?
        .query_row(params![kind.as_str(), namespace, name], |r| r.get(0))
        .optional()?;
    Ok(found.is_some())
}

fn read(
    conn: &Connection,
    sealer: &Sealer,
    kind: Kind,
    namespace: &str,
    name: &str,
) -> Result<Option<Object>, StoreError> {
    let body: Option<String> = conn
        .prepare_cached(
            "SELECT body FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        )?
        .query_row(params![kind.as_str(), namespace, name], |r| r.get(0))
        .optional()?;
    body.map(|b| decode(sealer, kind, namespace, name, &b))
        .transpose()
}

fn write(
    tx: &Transaction<'_>,
    sealer: &Sealer,
    history: u64,
    type_: EventType,
    rv: u64,
    obj: Object,
) -> Result<WatchEvent, StoreError> {
    let (kind, ns, name) = (
        obj.kind(),
        obj.namespace().to_string(),
        obj.name().to_string(),
    );
    let body = sealer.encode(&obj)?;
    tx.execute(
        "INSERT INTO objects (kind, namespace, name, resource_version, body) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, namespace, name) DO UPDATE SET resource_version = ?4, body = ?5",
        params![kind.as_str(), ns, name, rv as i64, body],
    )?;
    index_labels(tx, &obj)?;
    record_event(tx, type_, rv, kind, &body, history)?;
    Ok(WatchEvent {
        type_,
        resource_version: rv,
        object: obj,
    })
}

/// Remove an object (its row and labels) at `rv`; the event carries its last state.
fn remove(
    tx: &Transaction<'_>,
    sealer: &Sealer,
    history: u64,
    rv: u64,
    mut obj: Object,
) -> Result<WatchEvent, StoreError> {
    let (kind, ns, name) = (
        obj.kind(),
        obj.namespace().to_string(),
        obj.name().to_string(),
    );
    tx.execute(
        "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![kind.as_str(), ns, name],
    )?;
    tx.execute(
        "DELETE FROM labels WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![kind.as_str(), ns, name],
    )?;
    obj.metadata_mut().resource_version = Some(rv.to_string());
    let body = sealer.encode(&obj)?;
    record_event(tx, EventType::Deleted, rv, kind, &body, history)?;
    Ok(WatchEvent {
        type_: EventType::Deleted,
        resource_version: rv,
        object: obj,
    })
}

/// Make the label index hold exactly `obj`'s labels.
fn index_labels(tx: &Transaction<'_>, obj: &Object) -> Result<(), StoreError> {
    let (kind, ns, name) = (obj.kind().as_str(), obj.namespace(), obj.name());
    tx.execute(
        "DELETE FROM labels WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
        params![kind, ns, name],
    )?;
    for (key, value) in obj.metadata().labels.iter().flatten() {
        tx.execute(
            "INSERT INTO labels (kind, namespace, name, key, value) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![kind, ns, name, key, value],
        )?;
    }
    Ok(())
}

fn record_event(
    tx: &Transaction<'_>,
    type_: EventType,
    rv: u64,
    kind: Kind,
    body: &str,
    history: u64,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (resource_version, type, kind, body) VALUES (?1, ?2, ?3, ?4)",
        params![rv as i64, type_.as_str(), kind.as_str(), body],
    )?;
    if rv.is_multiple_of(history.div_ceil(10)) {
        tx.execute(
            "DELETE FROM events WHERE resource_version <= ?1",
            params![rv.saturating_sub(history) as i64],
        )?;
    }
    Ok(())
}

fn decode(
    sealer: &Sealer,
    kind: Kind,
    namespace: &str,
    name: &str,
    body: &str,
) -> Result<Object, StoreError> {
    sealer.decode(kind, body).map_err(|e| match e {
        // Name the row when the body could not say which object it is.
        StoreError::Corrupt { message, .. } if !name.is_empty() => {
            corrupt_str(kind.as_str(), namespace, name, &message)
        }
        other => other,
    })
}

fn corrupt_str(kind: &str, namespace: &str, name: &str, message: &str) -> StoreError {
    StoreError::Corrupt {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
        message: message.to_string(),
    }
}

fn not_found(kind: Kind, namespace: &str, name: &str) -> StoreError {
    StoreError::NotFound {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
