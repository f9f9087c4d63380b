//! The durable queue: one SQLite database (`<data-dir>/invocations.db`, WAL, `synchronous =
//! FULL`), apart from the object store so that its write rate never slows the API. Every
//! write goes through one writer thread that commits whatever is waiting in one transaction
//! (group commit): an enqueue is answered only once its transaction is on disk, so a `202`
//! is never sent for a request a crash could lose, and a burst of them costs one `fsync`.
//!
//! Reads (what is due, listings) use a connection of their own; WAL lets them run beside the
//! writer. An invocation stays `Pending` until an attempt's outcome is written: a server that
//! crashes mid-attempt attempts it again after the restart (at least once).

use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};
use tokio::sync::oneshot;

use crate::model::{Attempt, Invocation, State};

/// Why the queue could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the invocation database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("a stored invocation cannot be read: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("writing invocations failed: {0}")]
    Write(String),
    #[error("cannot start the invocation writer: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the invocation queue is closed (the server is stopping)")]
    Closed,
}

/// How long finished invocations are kept: succeeded and cancelled ones a day, failed ones
/// (the dead-letter queue) four days, SQS's default message retention.
const KEEP_FINISHED: Duration = Duration::from_secs(24 * 3600);
const KEEP_FAILED: Duration = Duration::from_secs(4 * 24 * 3600);

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS invocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    state TEXT NOT NULL,
    next_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invocations_due ON invocations (state, next_ms);
CREATE INDEX IF NOT EXISTS invocations_by_service ON invocations (namespace, service, seq);
CREATE INDEX IF NOT EXISTS invocations_by_state ON invocations (namespace, service, state);
";

/// The outcome of one attempt, to be written.
#[derive(Debug)]
pub struct Outcome {
    pub id: String,
    /// `Pending` (to be attempted again at `next_ms`), `Succeeded` or `Failed`.
    pub state: State,
    pub next_ms: i64,
    /// The attempt made (`None`: the invocation expired before one, or was throttled).
    pub attempt: Option<Attempt>,
    /// The platform (or the function, with 429) had no room: counted apart from attempts.
    pub throttled: bool,
    /// When the outcome was decided.
    pub at_ms: i64,
    /// The response of the attempt, when it got one.
    pub response: Option<crate::model::StoredResponse>,
    pub error: Option<String>,
    /// Invocations the outcome starts (its destination's), written in the same transaction.
    pub then: Vec<Invocation>,
}

enum Op {
    Enqueue(Vec<Invocation>, oneshot::Sender<Result<(), String>>),
    Finish(Box<Outcome>, oneshot::Sender<Result<bool, String>>),
    Cancel(
        String,
        String,
        oneshot::Sender<Result<Option<(State, bool)>, String>>,
    ),
    Prune(i64),
}

/// The queue's handle. Cheap to share behind an `Arc`.
pub struct Queue {
    writes: Mutex<mpsc::Sender<Op>>,
    reads: Mutex<Connection>,
}

impl Queue {
    /// Open (creating if needed) the queue at `path`.
    pub fn open(path: &Path) -> Result<Self, QueueError> {
        let writer = connect(path)?;
        writer.execute_batch(SCHEMA)?;
        let reads = connect(path)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("nimbus-invocations-writer".into())
            .spawn(move || write_loop(writer, rx))?;
        Ok(Self {
            writes: Mutex::new(tx),
            reads: Mutex::new(reads),
        })
    }

    fn send(&self, op: Op) -> Result<(), QueueError> {
        let writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.send(op).map_err(|_| QueueError::Closed)
    }

    /// Store `invocations` durably; returns once they are on disk.
    pub async fn enqueue(&self, invocations: Vec<Invocation>) -> Result<(), QueueError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Enqueue(invocations, tx))?;
        answer(rx.await)
    }

    /// Write an attempt's outcome (and start what it starts). `false` when the invocation was
    /// no longer pending (cancelled meanwhile): its state is kept, the attempt still recorded.
    pub async fn finish(&self, outcome: Outcome) -> Result<bool, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Finish(Box::new(outcome), tx))?;
        answer(rx.await)
    }

    /// Cancel a pending invocation. Returns its state afterwards and whether this call
    /// cancelled it (`None`: no such invocation).
    pub async fn cancel(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Option<(State, bool)>, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.send(Op::Cancel(namespace.into(), id.into(), tx))?;
        answer(rx.await)
    }

    /// Forget finished invocations past their retention (see [`KEEP_FINISHED`]).
    pub fn prune(&self, now_ms: i64) {
        let _ = self.send(Op::Prune(now_ms));
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, QueueError>,
    ) -> Result<T, QueueError> {
        let conn = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    /// The ids of pending invocations due at `now_ms`, oldest due first, at most `limit`,
    /// skipping those `busy` names (attempts under way). Bodies are not read: the caller
    /// takes each one it will attempt with [`Queue::take_due`].
    pub fn due_ids(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<String>, QueueError> {
        let mut out = Vec::new();
        let mut offset = 0i64;
        let page = (limit as i64).max(64);
        while out.len() < limit {
            let batch = self.read(|c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id FROM invocations WHERE state = 'Pending' AND next_ms <= ?1 \
                     ORDER BY next_ms, seq LIMIT ?2 OFFSET ?3",
                )?;
                let rows = stmt.query_map(params![now_ms, page, offset], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })?;
            let done = (batch.len() as i64) < page;
            offset += batch.len() as i64;
            let free = limit - out.len();
            out.extend(batch.into_iter().filter(|id| !busy(id)).take(free));
            if done {
                break;
            }
        }
        Ok(out)
    }

    /// Invocation `id`, read now, if it is still pending and due at `now_ms`. The dispatcher
    /// marks an id busy first, then takes it: an attempt that finished in between is seen
    /// here, so it is never attempted twice.
    pub fn take_due(&self, id: &str, now_ms: i64) -> Result<Option<Invocation>, QueueError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT record, body FROM invocations WHERE id = ?1 AND state = 'Pending' \
                 AND next_ms <= ?2",
            )?;
            let row = stmt.query_row(params![id, now_ms], decode_row).optional()?;
            row.transpose()
        })
    }

    /// Pending invocations due at `now_ms` (see [`Queue::due_ids`]), read whole.
    pub fn due(
        &self,
        now_ms: i64,
        limit: usize,
        busy: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Invocation>, QueueError> {
        let ids = self.due_ids(now_ms, limit, busy)?;
        let taken = ids.iter().map(|id| self.take_due(id, now_ms));
        Ok(taken
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect())
    }

    /// When the next pending invocation is due, if any.
    pub fn next_due_ms(&self) -> Result<Option<i64>, QueueError> {
        self.read(|c| {
            let next: Option<i64> = c
                .query_row(
                    "SELECT MIN(next_ms) FROM invocations WHERE state = 'Pending'",
                    [],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            Ok(next)
        })
    }

    /// Pending invocations of `service` (the queue depth).
    /// Pending invocations of `service`, counted up to `cap` (the queue depth, or `cap` when
    /// it is at least that deep): checked on every acceptance, so it never reads past the cap.
    pub fn pending(&self, namespace: &str, service: &str, cap: u64) -> Result<u64, QueueError> {
        self.read(|c| {
            let n: i64 = c.query_row(
                "SELECT COUNT(*) FROM (SELECT 1 FROM invocations WHERE namespace = ?1 \
                 AND service = ?2 AND state = 'Pending' LIMIT ?3)",
                params![namespace, service, cap as i64],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
    }

    pub fn get(&self, namespace: &str, id: &str) -> Result<Option<Invocation>, QueueError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT record, body FROM invocations WHERE namespace = ?1 AND id = ?2",
            )?;
            let found = stmt
                .query_row(params![namespace, id], decode_row)
                .optional()?;
            found.transpose()
        })
    }

    /// The newest invocations first, at most `limit`, of a namespace (or all), a service and a
    /// state when given; without their request bodies (`request.size` says how long).
    pub fn list(
        &self,
        namespace: Option<&str>,
        service: Option<&str>,
        state: Option<State>,
        limit: usize,
    ) -> Result<Vec<Invocation>, QueueError> {
        self.read(|c| {
            // Bodies stay on disk: a listing shows their sizes only.
            let mut stmt = c.prepare_cached(
                "SELECT record, length(body) FROM invocations \
                 WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR service = ?2) \
                 AND (?3 IS NULL OR state = ?3) ORDER BY seq DESC LIMIT ?4",
            )?;
            let state = state.map(|s| s.as_str());
            let rows = stmt.query_map(params![namespace, service, state, limit as i64], |row| {
                let record: String = row.get(0)?;
                let size: i64 = row.get(1)?;
                Ok(serde_json::from_str::<Invocation>(&record)
                    .map(|mut inv| {
                        inv.request.size = size as usize;
                        inv
                    })
                    .map_err(QueueError::from))
            })?;
            rows.map(|r| r?).collect()
        })
    }
}

fn answer<T>(reply: Result<Result<T, String>, oneshot::error::RecvError>) -> Result<T, QueueError> {
    match reply {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(QueueError::Write(message)),
        Err(_) => Err(QueueError::Closed),
    }
}

fn connect(path: &Path) -> Result<Connection, QueueError> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // Every commit reaches the disk before it is answered: a 202 means stored.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

fn decode_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Invocation, QueueError>> {
    let record: String = row.get(0)?;
    let body: Vec<u8> = row.get(1)?;
    Ok(serde_json::from_str::<Invocation>(&record)
        .map(|mut inv| {
            inv.request.size = body.len();
            inv.request.body = body.into();
            inv
        })
        .map_err(QueueError::from))
}

/// The writer thread: take one operation, then whatever else is waiting (up to
/// [`MAX_BATCH`]), apply them all in one transaction, answer them all.
fn write_loop(mut conn: Connection, ops: mpsc::Receiver<Op>) {
    while let Ok(first) = ops.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let results = apply(&mut conn, &batch);
        for (op, result) in batch.into_iter().zip(results) {
            match (op, result) {
                (Op::Enqueue(_, tx), r) => {
                    let _ = tx.send(r.map(|_| ()));
                }
                (Op::Finish(_, tx), r) => {
                    let _ = tx.send(r.map(|applied| applied.changed));
                }
                (Op::Cancel(_, _, tx), r) => {
                    let _ = tx.send(r.map(|a| a.state.map(|state| (state, a.changed))));
                }
                (Op::Prune(_), _) => {}
            }
        }
    }
}

/// What one write did: the invocation's state afterwards (`None`: not found), and whether
/// the write changed it.
#[derive(Clone, Copy, Debug, Default)]
struct Applied {
    state: Option<State>,
    changed: bool,
}

/// One transaction for `batch`; a failed commit fails every operation in it.
fn apply(conn: &mut Connection, batch: &[Op]) -> Vec<Result<Applied, String>> {
    let run = |conn: &mut Connection| -> Result<Vec<Result<Applied, String>>, QueueError> {
        let mut tx = conn.transaction()?;
        let mut results = Vec::with_capacity(batch.len());
        for op in batch {
            // Each operation whole or not at all: a failed one is rolled back to its
            // savepoint, the others commit.
            let sp = tx.savepoint()?;
            let r = match op {
                Op::Enqueue(invocations, _) => invocations
                    .iter()
                    .try_for_each(|i| insert(&sp, i))
                    .map(|()| Applied::default()),
                Op::Finish(outcome, _) => finish(&sp, outcome),
                Op::Cancel(namespace, id, _) => cancel(&sp, namespace, id),
                Op::Prune(now) => prune(&sp, *now).map(|()| Applied::default()),
            };
            if r.is_ok() {
                sp.commit()?;
            }
            results.push(r.map_err(|e| e.to_string()));
        }
        tx.commit()?;
        Ok(results)
    };
    match run(conn) {
        Ok(results) => results,
        Err(e) => {
            tracing::error!("cannot write invocations: {e}");
            batch.iter().map(|_| Err(e.to_string())).collect()
        }
    }
}

fn insert(tx: &Connection, inv: &Invocation) -> Result<(), QueueError> {
    tx.prepare_cached(
        "INSERT INTO invocations (id, namespace, service, state, next_ms, updated_ms, body, record) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        inv.id,
        inv.namespace,
        inv.target.service_name(),
        inv.state.as_str(),
        inv.next_ms,
        inv.updated_ms,
        &inv.request.body[..],
        serde_json::to_string(inv)?,
    ])?;
    Ok(())
}

fn load(
    tx: &Connection,
    where_: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Option<Invocation>, QueueError> {
    let sql = format!("SELECT record, body FROM invocations WHERE {where_}");
    let found = tx
        .prepare_cached(&sql)?
        .query_row(args, decode_row)
        .optional()?;
    found.transpose()
}

fn save(tx: &Connection, inv: &Invocation) -> Result<(), QueueError> {
    tx.prepare_cached(
        "UPDATE invocations SET state = ?2, next_ms = ?3, updated_ms = ?4, record = ?5 WHERE id = ?1",
    )?
    .execute(params![
        inv.id,
        inv.state.as_str(),
        inv.next_ms,
        inv.updated_ms,
        serde_json::to_string(inv)?,
    ])?;
    Ok(())
}

fn finish(tx: &Connection, outcome: &Outcome) -> Result<Applied, QueueError> {
    let Some(mut inv) = load(tx, "id = ?1", &[&outcome.id])? else {
        return Ok(Applied::default());
    };
    inv.attempts.extend(outcome.attempt.clone());
    inv.throttles += u32::from(outcome.throttled);
    inv.updated_ms = outcome.at_ms;
    if outcome.response.is_some() {
        inv.response = outcome.response.clone();
    }
    inv.error = outcome.error.clone();
    let applies = inv.state == State::Pending;
    if applies {
        inv.state = outcome.state;
        inv.next_ms = outcome.next_ms;
        for next in &outcome.then {
            insert(tx, next)?;
        }
    }
    save(tx, &inv)?;
    Ok(Applied {
        state: Some(inv.state),
        changed: applies,
    })
}

fn cancel(tx: &Connection, namespace: &str, id: &str) -> Result<Applied, QueueError> {
    let Some(mut inv) = load(tx, "namespace = ?1 AND id = ?2", &[&namespace, &id])? else {
        return Ok(Applied::default());
    };
    let changed = inv.state == State::Pending;
    if changed {
        inv.state = State::Cancelled;
        save(tx, &inv)?;
    }
    Ok(Applied {
        state: Some(inv.state),
        changed,
    })
}

fn prune(tx: &Connection, now_ms: i64) -> Result<(), QueueError> {
    let finished = now_ms - KEEP_FINISHED.as_millis() as i64;
    let failed = now_ms - KEEP_FAILED.as_millis() as i64;
    tx.execute(
        "DELETE FROM invocations WHERE (state IN ('Succeeded', 'Cancelled') AND updated_ms < ?1) \
         OR (state = 'Failed' AND updated_ms < ?2)",
        params![finished, failed],
    )?;
    Ok(())
}
