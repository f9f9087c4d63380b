//! Cost metering and budgets.
//!
//! The [`Meter`] integrates what the binary samples every second — each revision's request and
//! cold-start counters (the router's), its ready instances and their allocation (limits, else
//! requests, else [`Allocation::DEFAULT`]), and the CPU and memory its instance cgroups use —
//! into per-revision, per-minute [`Figures`]. [`UsageDb`] keeps them in `<data-dir>/usage.db`
//! (SQLite, WAL, `synchronous=FULL`), written in one transaction per flush, so a `kill -9`
//! loses at most the figures of one flush interval (and of a write in progress). [`PriceTable`] turns figures into money
//! (a configurable table, and Lambda's and Cloud Run's price shapes as presets), [`budget`]
//! decides which of a Service's monthly budget thresholds (50/90/100%) were crossed, and
//! [`api`] serves it all on the API port (`/apis/usage.nimbus.dev/v1alpha1/usage`).
//!
//! This crate never reads API objects or cgroups itself and never scales anything: the binary
//! hands it readings and applies the budget's verdicts (a condition, the scaler's ceiling, a
//! [`budget::BudgetNotifier`]).

pub mod api;
pub mod budget;
mod db;
mod error;
mod figures;
mod meter;
pub mod prices;
pub mod sampler;
mod window;

pub use db::UsageDb;
pub use error::UsageError;
pub use figures::{Figures, RevisionId, Row};
pub use meter::{Allocation, CgroupReading, Meter, RevisionReading};
pub use prices::PriceTable;
pub use window::{Window, month_key, month_start, parse_instant};

use std::sync::{Arc, Mutex};

/// The meter and its database together: what the API, the sampler and the budgets share.
pub struct Usage {
    meter: Mutex<Meter>,
    db: UsageDb,
    /// The server's price table (`nimbus serve --prices`), used when a query names none.
    prices: PriceTable,
}

impl Usage {
    pub fn new(db: UsageDb, prices: PriceTable) -> Arc<Self> {
        Arc::new(Self {
            meter: Mutex::new(Meter::default()),
            db,
            prices,
        })
    }

    /// The server's price table.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    fn meter(&self) -> std::sync::MutexGuard<'_, Meter> {
        self.meter.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Integrate one sample (see [`Meter::observe`]).
    pub fn observe(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        revisions: &[RevisionReading],
        cgroups: &[CgroupReading],
    ) {
        self.meter().observe(now, revisions, cgroups);
    }

    /// Write what was metered since the last flush, in one transaction (blocks on the disk).
    pub fn flush(&self) -> Result<(), UsageError> {
        let pending = self.meter().take();
        if let Err(e) = self.db.add(&pending) {
            // Kept for the next flush rather than lost.
            self.meter().put_back(pending);
            return Err(e);
        }
        Ok(())
    }

    /// Per-revision totals over `window` (stored and not yet flushed), optionally of one
    /// namespace and service.
    pub fn query(
        &self,
        window: Window,
        namespace: Option<&str>,
        service: Option<&str>,
    ) -> Result<Vec<Row>, UsageError> {
        let mut rows = self.db.query(window, namespace, service)?;
        let pending = self.meter().pending(window, namespace, service);
        figures::merge(&mut rows, pending);
        Ok(rows)
    }

    /// The database (budget alerts).
    pub fn db(&self) -> &UsageDb {
        &self.db
    }
}
