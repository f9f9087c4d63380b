//! The SQLite implementation of the store.

use std::path::Path;
use std::sync::Mutex;

use nimbus_api::{Kind, Object};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use tokio::sync::broadcast;

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
";

/// A handle to the store. All methods are synchronous and short (one small transaction); call
/// them from async code directly.
pub struct Store {
    conn: Mutex<Connection>,
    events: broadcast::Sender<WatchEvent>,
}

impl Store {
    /// Open (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::init(Connection::open(path)?)
    }

    /// A store that lives only in memory (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        let (events, _) = broadcast::channel(4096);
        Ok(Self {
            conn: Mutex::new(conn),
            events,
        })
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
        read(&conn, kind, namespace, name)
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
            items.push(decode(kind, &ns, &name, &body)?);
        }
        Ok(ObjectList {
            items,
            resource_version: current_rv(&conn)?,
        })
    }

    /// Create an object. Sets uid, resourceVersion, generation 1 and creationTimestamp; fills
    /// `metadata.name` from `generateName` when needed.
    pub fn create(&self, mut obj: Object) -> Result<Object, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let kind = obj.kind();
        let namespace = obj.namespace().to_string();
        ensure_name(&tx, &mut obj)?;
        let name = obj.name().to_string();
        if read(&tx, kind, &namespace, &name)?.is_some() {
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
        let event = write(&tx, EventType::Added, rv, obj)?;
        tx.commit()?;
        Ok(self.publish(event))
    }

    /// Replace an object's spec and metadata (status is kept as stored, as with a Kubernetes
    /// status subresource). If `metadata.resourceVersion` is set it must match the stored one.
    pub fn update(&self, obj: Object) -> Result<Object, StoreError> {
        self.modify(obj, |stored, mut new| {
            new.metadata_mut().generation = stored.metadata().generation;
            if spec_of(&new) != spec_of(stored) {
                let g = stored.metadata().generation.unwrap_or(0) + 1;
                new.metadata_mut().generation = Some(g);
            }
            copy_status(stored, &mut new);
            new
        })
    }

    /// Replace only an object's status. If `metadata.resourceVersion` is set it must match.
    pub fn update_status(&self, obj: Object) -> Result<Object, StoreError> {
        self.modify(obj, |stored, new| {
            let mut merged = stored.clone();
            copy_status(&new, &mut merged);
            merged
        })
    }

    fn modify(
        &self,
        obj: Object,
        merge: impl FnOnce(&Object, Object) -> Object,
    ) -> Result<Object, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let (kind, namespace, name) = (
            obj.kind(),
            obj.namespace().to_string(),
            obj.name().to_string(),
        );
        let stored = read(&tx, kind, &namespace, &name)?
            .ok_or_else(|| not_found(kind, &namespace, &name))?;
        check_precondition(&stored, obj.metadata().resource_version.as_deref())?;
        let mut new = merge(&stored, obj);
        let meta = new.metadata_mut();
        let old = stored.metadata();
        meta.namespace = old.namespace.clone();
        meta.uid = old.uid.clone();
        meta.creation_timestamp = old.creation_timestamp.clone();
        if new.to_json() == stored.to_json() {
            return Ok(stored); // no-op writes do not bump resourceVersion or wake watchers
        }
        let rv = next_rv(&tx)?;
        new.metadata_mut().resource_version = Some(rv.to_string());
        new.set_type_meta();
        let event = write(&tx, EventType::Modified, rv, new)?;
        tx.commit()?;
        Ok(self.publish(event))
    }

    /// Delete an object; returns its last state.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Object, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let mut obj =
            read(&tx, kind, namespace, name)?.ok_or_else(|| not_found(kind, namespace, name))?;
        tx.execute(
            "DELETE FROM objects WHERE kind = ?1 AND namespace = ?2 AND name = ?3",
            params![kind.as_str(), namespace, name],
        )?;
        let rv = next_rv(&tx)?;
        obj.metadata_mut().resource_version = Some(rv.to_string());
        let body = serde_json::to_string(&obj).map_err(|e| corrupt(kind, namespace, name, e))?;
        record_event(&tx, EventType::Deleted, rv, kind, &body)?;
        tx.commit()?;
        Ok(self.publish(WatchEvent {
            type_: EventType::Deleted,
            resource_version: rv,
            object: obj,
        }))
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
                object: decode(kind_v, "", "", &body)?,
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

fn copy_status(from: &Object, to: &mut Object) {
    match (from, to) {
        (Object::Service(f), Object::Service(t)) => t.status = f.status.clone(),
        (Object::Configuration(f), Object::Configuration(t)) => t.status = f.status.clone(),
        (Object::Revision(f), Object::Revision(t)) => t.status = f.status.clone(),
        (Object::Route(f), Object::Route(t)) => t.status = f.status.clone(),
        _ => {}
    }
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
        if read(tx, obj.kind(), obj.namespace(), &candidate)?.is_none() {
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

fn read(
    conn: &Connection,
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
    body.map(|b| decode(kind, namespace, name, &b)).transpose()
}

fn write(
    tx: &Transaction<'_>,
    type_: EventType,
    rv: u64,
    obj: Object,
) -> Result<WatchEvent, StoreError> {
    let (kind, ns, name) = (
        obj.kind(),
        obj.namespace().to_string(),
        obj.name().to_string(),
    );
    let body = serde_json::to_string(&obj).map_err(|e| corrupt(kind, &ns, &name, e))?;
    tx.execute(
        "INSERT INTO objects (kind, namespace, name, resource_version, body) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (kind, namespace, name) DO UPDATE SET resource_version = ?4, body = ?5",
        params![kind.as_str(), ns, name, rv as i64, body],
    )?;
    record_event(tx, type_, rv, kind, &body)?;
    Ok(WatchEvent {
        type_,
        resource_version: rv,
        object: obj,
    })
}

fn record_event(
    tx: &Transaction<'_>,
    type_: EventType,
    rv: u64,
    kind: Kind,
    body: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO events (resource_version, type, kind, body) VALUES (?1, ?2, ?3, ?4)",
        params![rv as i64, type_.as_str(), kind.as_str(), body],
    )?;
    if rv.is_multiple_of(1000) {
        tx.execute(
            "DELETE FROM events WHERE resource_version <= ?1",
            params![rv.saturating_sub(EVENT_HISTORY) as i64],
        )?;
    }
    Ok(())
}

fn decode(kind: Kind, namespace: &str, name: &str, body: &str) -> Result<Object, StoreError> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| corrupt(kind, namespace, name, e))?;
    Object::from_json(kind, value).map_err(|e| corrupt(kind, namespace, name, e))
}

fn corrupt(kind: Kind, namespace: &str, name: &str, e: impl std::fmt::Display) -> StoreError {
    corrupt_str(kind.as_str(), namespace, name, &e.to_string())
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
