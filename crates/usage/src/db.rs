//! `<data-dir>/usage.db`: minute buckets of per-revision usage and the budget alerts already
//! given. SQLite in WAL mode with `synchronous=FULL`: a flush is one transaction, on disk when
//! [`UsageDb::add`] returns.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::{Figures, RevisionId, Row, UsageError, Window};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS usage (
    minute INTEGER NOT NULL,
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    revision TEXT NOT NULL,
    requests INTEGER NOT NULL,
    instance_seconds REAL NOT NULL,
    vcpu_seconds_allocated REAL NOT NULL,
    vcpu_seconds_used REAL NOT NULL,
    gib_seconds_allocated REAL NOT NULL,
    gib_seconds_used REAL NOT NULL,
    cold_starts INTEGER NOT NULL,
    PRIMARY KEY (namespace, revision, minute)
);
CREATE INDEX IF NOT EXISTS usage_by_minute ON usage (minute);
CREATE TABLE IF NOT EXISTS budget_alerts (
    namespace TEXT NOT NULL,
    service TEXT NOT NULL,
    month TEXT NOT NULL,
    percent INTEGER NOT NULL,
    PRIMARY KEY (namespace, service, month)
);
";

/// The usage database.
pub struct UsageDb {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl UsageDb {
    /// Open (creating) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, UsageError> {
        let err = |source| UsageError::Db {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Self {
            path: path.to_owned(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, source: rusqlite::Error) -> UsageError {
        UsageError::Db {
            path: self.path.clone(),
            source,
        }
    }

    /// Add figures to their minute buckets, all in one transaction.
    pub fn add(&self, rows: &[(i64, Row)]) -> Result<(), UsageError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO usage VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                     ON CONFLICT (namespace, revision, minute) DO UPDATE SET
                       service = excluded.service,
                       requests = requests + excluded.requests,
                       instance_seconds = instance_seconds + excluded.instance_seconds,
                       vcpu_seconds_allocated = vcpu_seconds_allocated + excluded.vcpu_seconds_allocated,
                       vcpu_seconds_used = vcpu_seconds_used + excluded.vcpu_seconds_used,
                       gib_seconds_allocated = gib_seconds_allocated + excluded.gib_seconds_allocated,
                       gib_seconds_used = gib_seconds_used + excluded.gib_seconds_used,
                       cold_starts = cold_starts + excluded.cold_starts",
                )
                .map_err(|e| self.err(e))?;
            for (minute, Row { id, figures: f }) in rows {
                insert
                    .execute(params![
                        minute,
                        id.namespace,
                        id.service,
                        id.revision,
                        f.requests as i64,
                        f.instance_seconds,
                        f.vcpu_seconds_allocated,
                        f.vcpu_seconds_used,
                        f.gib_seconds_allocated,
                        f.gib_seconds_used,
                        f.cold_starts as i64,
                    ])
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Per-revision sums over `window`, optionally of one namespace and service, sorted.
    pub fn query(
        &self,
        window: Window,
        namespace: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<Row>, UsageError> {
        let conn = self.conn();
        let mut select = conn
            .prepare_cached(
                "SELECT namespace, service, revision, SUM(requests), SUM(instance_seconds),
                        SUM(vcpu_seconds_allocated), SUM(vcpu_seconds_used),
                        SUM(gib_seconds_allocated), SUM(gib_seconds_used), SUM(cold_starts)
                 FROM usage
                 WHERE minute >= ?1 AND minute < ?2
                   AND (?3 IS NULL OR namespace = ?3) AND (?4 IS NULL OR service = ?4)
                 GROUP BY namespace, service, revision
                 ORDER BY namespace, service, revision",
            )
            .map_err(|e| self.err(e))?;
        let rows = select
            .query_map(
                params![
                    window.first_minute(),
                    window.end_minute(),
                    namespace,
                    service
                ],
                |r| {
                    Ok(Row {
                        id: RevisionId {
                            namespace: r.get(0)?,
                            service: r.get(1)?,
                            revision: r.get(2)?,
                        },
                        figures: Figures {
                            requests: r.get::<_, i64>(3)?.max(0) as u64,
                            instance_seconds: r.get(4)?,
                            vcpu_seconds_allocated: r.get(5)?,
                            vcpu_seconds_used: r.get(6)?,
                            gib_seconds_allocated: r.get(7)?,
                            gib_seconds_used: r.get(8)?,
                            cold_starts: r.get::<_, i64>(9)?.max(0) as u64,
                        },
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    /// The highest budget threshold (percent) already reported for a service in `month`
    /// (`YYYY-MM`); 0 when none.
    pub fn alerted(&self, namespace: &str, service: &str, month: &str) -> Result<u8, UsageError> {
        let conn = self.conn();
        let percent: Option<i64> = conn
            .query_row(
                "SELECT percent FROM budget_alerts WHERE namespace = ?1 AND service = ?2 AND month = ?3",
                params![namespace, service, month],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(percent.map_or(0, |p| p.clamp(0, 255) as u8))
    }

    /// Remember that threshold `percent` was reported for a service in `month`.
    pub fn set_alerted(
        &self,
        namespace: &str,
        service: &str,
        month: &str,
        percent: u8,
    ) -> Result<(), UsageError> {
        self.conn()
            .execute(
                "INSERT INTO budget_alerts VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (namespace, service, month) DO UPDATE SET percent = excluded.percent",
                params![namespace, service, month, i64::from(percent)],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn row(revision: &str, requests: u64) -> Row {
        Row {
            id: RevisionId {
                namespace: "default".into(),
                service: "hello".into(),
                revision: revision.into(),
            },
            figures: Figures {
                requests,
                instance_seconds: 1.5,
                ..Figures::default()
            },
        }
    }

    #[test]
    fn buckets_add_up_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.db");
        let minute = 30_000_000;
        {
            let db = UsageDb::open(&path).unwrap();
            db.add(&[(minute, row("a", 2)), (minute + 1, row("a", 3))])
                .unwrap();
            db.add(&[(minute, row("a", 1)), (minute, row("b", 7))])
                .unwrap();
            db.set_alerted("default", "hello", "2027-01", 50).unwrap();
        }
        let db = UsageDb::open(&path).unwrap();
        let since = DateTime::from_timestamp(minute * 60, 0).unwrap();
        let all = Window::new(since, since + chrono::Duration::minutes(2)).unwrap();
        let rows = db.query(all, Some("default"), Some("hello")).unwrap();
        let got: Vec<(&str, u64, f64)> = rows
            .iter()
            .map(|r| {
                (
                    r.id.revision.as_str(),
                    r.figures.requests,
                    r.figures.instance_seconds,
                )
            })
            .collect();
        assert_eq!(got, vec![("a", 6, 4.5), ("b", 7, 1.5)]);
        let first = Window::new(since, since + chrono::Duration::minutes(1)).unwrap();
        assert_eq!(db.query(first, None, None).unwrap()[0].figures.requests, 3);
        assert!(db.query(all, Some("other"), None).unwrap().is_empty());
        assert_eq!(db.alerted("default", "hello", "2027-01").unwrap(), 50);
        assert_eq!(db.alerted("default", "hello", "2027-02").unwrap(), 0);
    }
}
