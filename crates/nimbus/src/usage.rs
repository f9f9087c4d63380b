//! Cost metering in `nimbus serve`: feeds `nimbus-usage`'s meter from the router (requests,
//! cold starts), the endpoint registry (ready instances), the store (each revision's service
//! and allocation) and the instance cgroups (CPU and memory used), and after every flush
//! applies the Services' budgets: the `WithinBudget` condition, the scaler's ceiling for
//! `cap-scale`, and a [`BudgetNotifier`] per threshold crossing (a log line today; the hook for
//! Kubernetes Events).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use nimbus_api::budget::{Budget, CAPPED_MAX_SCALE};
use nimbus_api::conditions::{Condition, ConditionStatus, get_condition, set_condition};
use nimbus_api::constants::LABEL_SERVICE;
use nimbus_api::{Kind, Object};
use nimbus_controller::Scaler;
use nimbus_router::Router;
use nimbus_runtime::{EndpointRegistry, RevisionKey};
use nimbus_store::Store;
use nimbus_usage::budget::{BudgetNotifier, ServiceRef, Verdict};
use nimbus_usage::sampler::{Readings, SamplerConfig};
use nimbus_usage::{
    Allocation, CgroupReading, Figures, PriceTable, RevisionId, RevisionReading, Usage, UsageDb,
    Window,
};

/// The condition a budgeted Service carries (severity Info: it never makes it un-Ready).
pub const CONDITION_WITHIN_BUDGET: &str = "WithinBudget";

/// What metering reads and what budgets act on.
pub struct Wiring {
    pub store: Arc<Store>,
    pub router: Router,
    pub registry: EndpointRegistry,
    /// The instance cgroups (`None`: no used CPU and memory).
    pub cgroups: Option<nimbus_cgroup::Cgroups>,
    pub scaler: Arc<Scaler>,
    /// Told about budget threshold crossings.
    pub notifier: Arc<dyn BudgetNotifier>,
}

/// Open `<data-dir>/usage.db` and start metering; returns the shared usage (for the API) and
/// the loop's task, which flushes a last time when `shutdown` resolves.
pub fn start(
    data_dir: &Path,
    prices: PriceTable,
    config: SamplerConfig,
    wiring: Wiring,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Arc<Usage>, tokio::task::JoinHandle<()>)> {
    let path = data_dir.join("usage.db");
    let db = UsageDb::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let usage = Usage::new(db, prices);
    let readings = Arc::new(ServerReadings {
        store: wiring.store.clone(),
        router: wiring.router,
        registry: wiring.registry,
        cgroups: wiring.cgroups,
        revisions: Mutex::new(HashMap::new()),
    });
    let budgets = Arc::new(Budgets {
        store: wiring.store,
        usage: usage.clone(),
        scaler: wiring.scaler,
        notifier: wiring.notifier,
    });
    let task = tokio::spawn(nimbus_usage::sampler::run(
        usage.clone(),
        readings,
        config,
        move |now| {
            let budgets = budgets.clone();
            async move { budgets.apply(now).await }
        },
        shutdown,
    ));
    Ok((usage, task))
}

/// The server's readings.
struct ServerReadings {
    store: Arc<Store>,
    router: Router,
    registry: EndpointRegistry,
    cgroups: Option<nimbus_cgroup::Cgroups>,
    /// Each revision's service and allocation (revisions are immutable).
    revisions: Mutex<HashMap<RevisionKey, (RevisionId, Allocation)>>,
}

impl ServerReadings {
    fn revision(&self, key: &RevisionKey) -> (RevisionId, Allocation) {
        let mut known = self.revisions.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(found) = known.get(key) {
            return found.clone();
        }
        let stored = self.store.get(Kind::Revision, &key.namespace, &key.name);
        let Ok(Some(Object::Revision(rev))) = stored else {
            let id = revision_id(key, "");
            return (id, Allocation::DEFAULT);
        };
        let labels = rev.metadata.labels.as_ref();
        let service = labels.and_then(|l| l.get(LABEL_SERVICE)).map_or("", |s| s);
        let found = (revision_id(key, service), Allocation::of_revision(&rev));
        known.insert(key.clone(), found.clone());
        found
    }
}

fn revision_id(key: &RevisionKey, service: &str) -> RevisionId {
    RevisionId {
        namespace: key.namespace.clone(),
        service: service.to_owned(),
        revision: key.name.clone(),
    }
}

impl Readings for ServerReadings {
    fn revisions(&self) -> Vec<RevisionReading> {
        let stats = self.router.all_stats();
        // Forget revisions no route names any more (a revision recreated under the same name
        // is read again).
        self.revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|key, _| stats.iter().any(|(k, _)| k == key));
        stats
            .into_iter()
            .map(|(key, stats)| {
                let (id, allocation) = self.revision(&key);
                let ready = self.registry.get(&key).map_or(0, |e| e.ready.len());
                RevisionReading {
                    id,
                    requests_total: stats.requests,
                    cold_starts_total: stats.cold_starts,
                    ready_instances: u32::try_from(ready).unwrap_or(u32::MAX),
                    allocation,
                }
            })
            .collect()
    }

    fn cgroups(&self) -> Vec<CgroupReading> {
        let Some(cgroups) = &self.cgroups else {
            return Vec::new();
        };
        cgroups
            .usage()
            .into_iter()
            .filter_map(|u| {
                let key = nimbus_runtime_process::revision_of_cgroup(&u.name)?;
                Some(CgroupReading {
                    name: u.name,
                    namespace: key.namespace,
                    revision: key.name,
                    cpu_usec: u.cpu_usec,
                    memory_bytes: u.memory_bytes,
                })
            })
            .collect()
    }
}

/// Applies the Services' budgets after each flush.
struct Budgets {
    store: Arc<Store>,
    usage: Arc<Usage>,
    scaler: Arc<Scaler>,
    notifier: Arc<dyn BudgetNotifier>,
}

impl Budgets {
    async fn apply(&self, now: DateTime<Utc>) {
        let services = match self.store.list(Kind::Service, None) {
            Ok(list) => list.items,
            Err(e) => return tracing::warn!(error = %e, "budgets: cannot list services"),
        };
        for svc in services {
            let meta = svc.metadata();
            let budget = Budget::from_annotations(meta.annotations.as_ref(), "")
                .ok()
                .flatten();
            let service = ServiceRef {
                namespace: meta.namespace.clone().unwrap_or_default(),
                name: meta.name.clone().unwrap_or_default(),
            };
            let verdict = match budget {
                Some(budget) => match self.verdict(&service, &budget, now) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        tracing::warn!(service = %service.name, error = %e, "budgets: cannot evaluate");
                        continue;
                    }
                },
                None => None,
            };
            let cap = verdict.as_ref().is_some_and(|v| v.cap);
            self.cap(&service, cap.then_some(CAPPED_MAX_SCALE)).await;
            match verdict {
                Some(verdict) => self.report(&service, &verdict, now),
                None => self.forget(&service),
            }
        }
    }

    /// The verdict on a service's month so far, remembering a new crossing.
    fn verdict(
        &self,
        service: &ServiceRef,
        budget: &Budget,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Verdict> {
        let month = Window::new(nimbus_usage::month_start(now), now)?;
        let rows = self
            .usage
            .query(month, Some(&service.namespace), Some(&service.name))?;
        let cost = self
            .usage
            .prices()
            .cost(&Figures::total(rows.iter().map(|r| &r.figures)));
        let key = nimbus_usage::month_key(now);
        let db = self.usage.db();
        let reported = db.alerted(&service.namespace, &service.name, &key)?;
        let verdict = nimbus_usage::budget::evaluate(cost, budget, reported);
        if let Some(level) = verdict.crossed {
            let message = self.message(&verdict);
            self.notifier.crossed(service, &verdict, &message);
            db.set_alerted(&service.namespace, &service.name, &key, level)?;
        }
        Ok(verdict)
    }

    fn message(&self, verdict: &Verdict) -> String {
        verdict.message(&self.usage.prices().currency, CAPPED_MAX_SCALE)
    }

    /// Set (or lift, `None`) the ceiling of every revision of the service.
    async fn cap(&self, service: &ServiceRef, ceiling: Option<u32>) {
        let selector = [(LABEL_SERVICE, service.name.as_str())];
        let revisions =
            self.store
                .list_selected(Kind::Revision, Some(&service.namespace), &selector);
        for rev in revisions.map(|l| l.items).unwrap_or_default() {
            let key = RevisionKey::new(
                &service.namespace,
                rev.metadata().name.as_deref().unwrap_or_default(),
            );
            self.scaler.set_ceiling(&key, ceiling).await;
        }
    }

    /// Remove the `WithinBudget` condition of a service whose budget was removed.
    fn forget(&self, service: &ServiceRef) {
        let stored = self
            .store
            .get(Kind::Service, &service.namespace, &service.name);
        let Ok(Some(Object::Service(mut svc))) = stored else {
            return;
        };
        let Some(st) = svc.status.as_mut() else {
            return;
        };
        let before = st.conditions.len();
        st.conditions.retain(|c| c.type_ != CONDITION_WITHIN_BUDGET);
        if st.conditions.len() != before
            && let Err(e) = self.store.update_status(Object::Service(svc))
        {
            tracing::debug!(service = %service.name, error = %e, "budgets: condition not removed");
        }
    }

    /// The `WithinBudget` condition, written when its status or reason changes.
    fn report(&self, service: &ServiceRef, verdict: &Verdict, now: DateTime<Utc>) {
        let status = match verdict.level >= 100 {
            true => ConditionStatus::False,
            false => ConditionStatus::True,
        };
        let mut cond = Condition::new(CONDITION_WITHIN_BUDGET, status)
            .with_reason(verdict.reason(), self.message(verdict));
        cond.severity = Some("Info".into());
        let stored = self
            .store
            .get(Kind::Service, &service.namespace, &service.name);
        let Ok(Some(Object::Service(mut svc))) = stored else {
            return;
        };
        let mut st = svc.status.clone().unwrap_or_default();
        let same = get_condition(&st.conditions, CONDITION_WITHIN_BUDGET)
            .is_some_and(|c| c.status == cond.status && c.reason == cond.reason);
        if same {
            return;
        }
        let stamp = now.to_rfc3339_opts(SecondsFormat::Secs, true);
        set_condition(&mut st.conditions, cond, &stamp);
        svc.status = Some(st);
        // Guarded by the read's resourceVersion: a conflict is retried at the next flush.
        if let Err(e) = self.store.update_status(Object::Service(svc)) {
            tracing::debug!(service = %service.name, error = %e, "budgets: condition not written");
        }
    }
}

/// Budget crossings as Events on the Service (and a log line): `BudgetThresholdReached`
/// (`Normal` at 50%, `Warning` at 90%) and `BudgetExceeded` (`Warning`) at 100%.
pub struct BudgetEvents {
    pub recorder: nimbus_controller::Recorder,
    pub store: Arc<Store>,
}

impl BudgetNotifier for BudgetEvents {
    fn crossed(&self, service: &ServiceRef, verdict: &Verdict, message: &str) {
        nimbus_usage::budget::LogNotifier.crossed(service, verdict, message);
        let Ok(Some(obj)) = self
            .store
            .get(Kind::Service, &service.namespace, &service.name)
        else {
            return;
        };
        let threshold = verdict.crossed.unwrap_or(verdict.level);
        let (type_, reason) = match threshold {
            100.. => ("Warning", "BudgetExceeded"),
            90.. => ("Warning", "BudgetThresholdReached"),
            _ => ("Normal", "BudgetThresholdReached"),
        };
        self.recorder.record(nimbus_controller::Note::about(
            &obj,
            type_,
            reason,
            "Meter",
            message.to_owned(),
        ));
    }
}
