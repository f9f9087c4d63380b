//! The polling loop: every `tick` it lists the ScaledObjects, polls those whose
//! `pollingInterval` has passed (their triggers at the same time), decides ([`crate::decide`])
//! and sets the floor of each revision the target Service routes traffic to on the scaler,
//! then writes what it saw into the ScaledObject's status.
//!
//! Which revisions: every revision the Service's `status.traffic` gives a share (Knative's
//! latest ready revision by default), each at the full event-driven count: every routed
//! revision may consume the backlog, so none is left short (a split does not divide it).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use nimbus_api::keda::triggers::{self, Sources};
use nimbus_api::keda::{ScaleTriggers, ScaledObject};
use nimbus_api::{Kind, Object};
use nimbus_controller::{Resources, Scaler};
use nimbus_runtime::RevisionKey;
use tokio::time::Instant;

use crate::decide::{self, Bounds, Clock, Reading};
use crate::error::TriggerError;
use crate::status::{self, Observed, TriggerResult};

/// Timing of the loop.
#[derive(Clone, Copy, Debug)]
pub struct KedaConfig {
    /// How often the ScaledObjects are listed and the due ones polled (default 1 s; the
    /// smallest `pollingInterval` is 1 s).
    pub tick: Duration,
}

impl Default for KedaConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(1),
        }
    }
}

/// What the loop remembers of one ScaledObject between polls (rebuilt after a restart:
/// the first poll comes at once).
#[derive(Clone, Debug, Default)]
struct State {
    uid: String,
    generation: i64,
    next_poll: Duration,
    created: Duration,
    last_active: Option<Duration>,
    desired: u32,
    revisions: Vec<RevisionKey>,
    recommendations: decide::Recommendations,
}

/// Evaluates ScaledObjects and hands their decisions to the scaler.
pub struct Keda {
    resources: Arc<dyn Resources>,
    scaler: Arc<Scaler>,
    config: KedaConfig,
    epoch: Instant,
    states: tokio::sync::Mutex<HashMap<(String, String), State>>,
}

impl Keda {
    pub fn new(
        resources: Arc<dyn Resources>,
        scaler: Arc<Scaler>,
        config: KedaConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            resources,
            scaler,
            config,
            epoch: Instant::now(),
            states: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Poll until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.config.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = tick.tick() => self.poll_due().await,
            }
        }
    }

    fn now(&self) -> Duration {
        Instant::now().duration_since(self.epoch)
    }

    /// One round: poll the ScaledObjects that are due, forget the deleted ones.
    pub async fn poll_due(&self) {
        let listed = match self.resources.list(Kind::ScaledObject, None, &[]).await {
            Ok(listed) => listed.items,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list ScaledObjects");
                return;
            }
        };
        let mut states = self.states.lock().await;
        let now = self.now();
        let objects: Vec<ScaledObject> = listed
            .into_iter()
            .filter_map(|o| match o {
                Object::ScaledObject(so) if !o_deleting(&so) => Some(so),
                _ => None,
            })
            .collect();
        let seen: HashSet<(String, String)> = objects.iter().map(key).collect();
        for (gone, state) in states.extract_if(|k, _| !seen.contains(k)) {
            tracing::debug!(scaled_object = ?gone, "ScaledObject gone: floors removed");
            for revision in &state.revisions {
                self.scaler.set_floor(revision, 0).await;
            }
        }
        let due: Vec<(ScaledObject, State)> = objects
            .into_iter()
            .filter_map(|so| {
                let state = fresh_state(states.get(&key(&so)), &so, now);
                (state.next_poll <= now).then_some((so, state))
            })
            .collect();
        let polled =
            futures::future::join_all(due.into_iter().map(|(so, st)| self.evaluate(so, st)));
        for (k, state) in polled.await {
            states.insert(k, state);
        }
    }

    /// Poll one ScaledObject's triggers, decide, apply the floors and write the status.
    async fn evaluate(&self, so: ScaledObject, mut st: State) -> ((String, String), State) {
        let ns = namespace(&so).to_string();
        // On a cluster no admission webhook refused what Nimbus does not implement: an
        // invalid ScaledObject scales nothing and says why, as an unknown target does.
        let invalid = nimbus_api::validate::refusal(&Object::ScaledObject(so.clone()));
        let target = match &invalid {
            None => self.target(&ns, &so.spec.scale_target_ref.name).await,
            Some(why) => Err(why.clone()),
        };
        let env = target.as_ref().ok().map(|t| t.env.clone());
        let reads = so
            .spec
            .triggers
            .iter()
            .enumerate()
            .map(|(i, t)| self.read_trigger(&ns, i, t, env.as_ref()));
        let results: Vec<TriggerResult> = futures::future::join_all(reads).await;
        let readings: Vec<Reading> = results.iter().map(|r| r.reading).collect();
        let now = self.now();
        let clock = Clock {
            now,
            last_active: st.last_active,
            created: st.created,
        };
        let revisions = target
            .as_ref()
            .map(|t| t.revisions.clone())
            .unwrap_or_default();
        if st.created == st.next_poll && st.last_active.is_some() {
            // The first poll in this process of a ScaledObject that was active before (a
            // restart): continue from the scale its revisions were resumed at.
            let running = revisions
                .iter()
                .filter_map(|r| self.scaler.desired(r))
                .max();
            st.desired = running.unwrap_or(0);
        }
        let outcome = decide::decide(
            &Bounds::of(&so.spec),
            &readings,
            st.desired,
            clock,
            &mut st.recommendations,
        );
        let original = revisions.first().and_then(|r| self.scaler.desired(r));
        self.apply_floors(&st.revisions, &revisions, outcome.desired)
            .await;
        if outcome.active {
            st.last_active = Some(now);
        }
        st.desired = outcome.desired;
        st.revisions = revisions;
        st.next_poll = now
            + Duration::from_secs(u64::try_from(so.spec.polling_interval().max(1)).unwrap_or(1));
        let observed = Observed {
            target: match invalid {
                Some(why) => Some(("ScaledObjectCheckFailed", why)),
                None => target
                    .as_ref()
                    .err()
                    .map(|why| ("ScaleTargetNotFound", why.clone())),
            },
            triggers: results,
            active: outcome.active,
            original_replica_count: original,
        };
        self.write_status(&so, observed).await;
        (key(&so), st)
    }

    async fn apply_floors(&self, before: &[RevisionKey], now: &[RevisionKey], floor: u32) {
        for gone in before.iter().filter(|r| !now.contains(r)) {
            self.scaler.set_floor(gone, 0).await;
        }
        for revision in now {
            self.scaler.set_floor(revision, floor).await;
        }
    }

    async fn write_status(&self, so: &ScaledObject, observed: Observed) {
        let (ns, name) = (
            namespace(so),
            so.metadata.name.as_deref().unwrap_or_default(),
        );
        let result =
            nimbus_controller::update_status(&*self.resources, Kind::ScaledObject, ns, name, |o| {
                if let Object::ScaledObject(stored) = o {
                    status::update(stored, &observed, &chrono::Utc::now());
                }
            })
            .await;
        if let Err(e) = result {
            tracing::debug!(scaled_object = name, error = %e, "cannot write ScaledObject status");
        }
    }

    // === the target ===

    /// The Service's routed revisions and its container's literal environment.
    async fn target(&self, ns: &str, name: &str) -> Result<Target, String> {
        let service = match self.resources.get(Kind::Service, ns, name).await {
            Ok(Some(Object::Service(s))) => s,
            Ok(_) => {
                return Err(format!(
                    "Service {ns}/{name} (spec.scaleTargetRef) does not exist"
                ));
            }
            Err(e) => return Err(format!("cannot read Service {ns}/{name}: {e}")),
        };
        let status = service.status.clone().unwrap_or_default();
        let mut revisions: Vec<RevisionKey> = status
            .traffic
            .iter()
            .filter(|t| t.percent.unwrap_or(0) > 0)
            .filter_map(|t| t.revision_name.clone())
            .map(|r| RevisionKey::new(ns, r))
            .collect();
        revisions.dedup();
        if revisions.is_empty()
            && let Some(latest) = status.latest_ready_revision_name
        {
            revisions.push(RevisionKey::new(ns, latest));
        }
        let env = service
            .spec
            .template
            .spec
            .containers
            .first()
            .and_then(|c| c.env.clone())
            .unwrap_or_default();
        let env = env
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect();
        Ok(Target { revisions, env })
    }

    // === triggers ===

    async fn read_trigger(
        &self,
        ns: &str,
        index: usize,
        trigger: &ScaleTriggers,
        env: Option<&BTreeMap<String, String>>,
    ) -> TriggerResult {
        let mut result = TriggerResult {
            type_: trigger.type_.clone(),
            metric_name: format!("s{index}-{}", trigger.type_),
            reading: Reading::Failed,
            error: None,
        };
        match self
            .read(ns, index, trigger, env, &mut result.metric_name)
            .await
        {
            Ok(reading) => result.reading = reading,
            Err(e) => result.error = Some(e),
        }
        result
    }

    async fn read(
        &self,
        ns: &str,
        index: usize,
        trigger: &ScaleTriggers,
        env: Option<&BTreeMap<String, String>>,
        metric_name: &mut String,
    ) -> Result<Reading, TriggerError> {
        let auth = match &trigger.authentication_ref {
            Some(r) => self.auth_params(ns, &r.name).await?,
            None => BTreeMap::new(),
        };
        let empty = BTreeMap::new();
        let sources = Sources {
            metadata: &trigger.metadata,
            auth: Some(&auth),
            env: Some(env.unwrap_or(&empty)),
        };
        let parsed = triggers::parse(&format!("spec.triggers[{index}]"), index, trigger, sources)
            .map_err(|errors| {
            TriggerError::Metadata(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        *metric_name = parsed.metric_name.clone();
        let value = crate::measure::measure(&parsed.source).await?;
        Ok(Reading::Metric {
            value,
            target: parsed.target,
            activation: parsed.activation,
            metric_type: parsed.metric_type,
        })
    }

    /// A TriggerAuthentication's parameters, read from the Secrets and ConfigMaps it names.
    async fn auth_params(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<BTreeMap<String, String>, TriggerError> {
        let ta = match self
            .resources
            .get(Kind::TriggerAuthentication, ns, name)
            .await
        {
            Ok(Some(Object::TriggerAuthentication(ta))) => ta,
            Ok(_) => {
                return Err(TriggerError::Auth(format!(
                    "TriggerAuthentication {ns}/{name} does not exist"
                )));
            }
            Err(e) => {
                return Err(TriggerError::Auth(format!(
                    "cannot read TriggerAuthentication {ns}/{name}: {e}"
                )));
            }
        };
        let mut params = BTreeMap::new();
        for (kind, refs) in [
            (Kind::Secret, &ta.spec.secret_target_ref),
            (Kind::ConfigMap, &ta.spec.config_map_target_ref),
        ] {
            for r in refs {
                let value = self
                    .key_of(kind, ns, &r.name, &r.key)
                    .await
                    .map_err(|why| {
                        TriggerError::Auth(format!(
                            "TriggerAuthentication {ns}/{name}, parameter {:?}: {why}",
                            r.parameter
                        ))
                    })?;
                params.insert(r.parameter.clone(), value);
            }
        }
        Ok(params)
    }

    /// One key of a Secret or ConfigMap, as text. Errors name the object and key, never values.
    async fn key_of(&self, kind: Kind, ns: &str, name: &str, key: &str) -> Result<String, String> {
        let object = self
            .resources
            .get(kind, ns, name)
            .await
            .map_err(|e| e.to_string())?;
        let value = match object {
            Some(Object::Secret(s)) => s
                .data
                .get(key)
                .map(|b| String::from_utf8(b.0.clone()).map_err(|_| "is not UTF-8".to_string())),
            Some(Object::ConfigMap(c)) => c.data.get(key).cloned().map(Ok),
            _ => return Err(format!("{kind} {ns}/{name} does not exist")),
        };
        value.unwrap_or_else(|| Err(format!("{kind} {ns}/{name} has no key {key:?}")))
    }
}

struct Target {
    revisions: Vec<RevisionKey>,
    env: BTreeMap<String, String>,
}

fn o_deleting(so: &ScaledObject) -> bool {
    so.metadata.deletion_timestamp.is_some()
}

fn namespace(so: &ScaledObject) -> &str {
    so.metadata.namespace.as_deref().unwrap_or("default")
}

fn key(so: &ScaledObject) -> (String, String) {
    (
        namespace(so).to_string(),
        so.metadata.name.clone().unwrap_or_default(),
    )
}

/// The state to poll `so` with: the remembered one, or a new one (due at once) when it is new,
/// was recreated (another uid) or its spec changed.
fn fresh_state(known: Option<&State>, so: &ScaledObject, now: Duration) -> State {
    let uid = so.metadata.uid.clone().unwrap_or_default();
    let generation = so.metadata.generation.unwrap_or(0);
    match known {
        Some(st) if st.uid == uid && st.generation == generation => st.clone(),
        Some(st) if st.uid == uid => State {
            generation,
            next_poll: now,
            ..st.clone()
        },
        _ => State {
            uid,
            generation,
            next_poll: now,
            created: now,
            last_active: last_active_from_status(so, now, chrono::Utc::now()),
            ..State::default()
        },
    }
}

/// `status.lastActiveTime` on the loop's clock, so a restart keeps counting the cooldown from
/// when a trigger was last active instead of starting it again (or skipping it).
fn last_active_from_status(
    so: &ScaledObject,
    now: Duration,
    wall: chrono::DateTime<chrono::Utc>,
) -> Option<Duration> {
    let recorded = so.status.as_ref()?.last_active_time.as_deref()?;
    let at = chrono::DateTime::parse_from_rfc3339(recorded).ok()?;
    let ago = (wall - at.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or_default();
    Some(now.saturating_sub(ago))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_counting_the_cooldown_from_the_recorded_last_active_time() {
        let mut so = ScaledObject::default();
        let wall = chrono::DateTime::parse_from_rfc3339("2026-12-07T12:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            last_active_from_status(&so, Duration::from_secs(500), wall),
            None
        );
        so.status = Some(nimbus_api::keda::ScaledObjectStatus {
            last_active_time: Some("2026-12-07T11:58:20Z".into()),
            ..Default::default()
        });
        let at = last_active_from_status(&so, Duration::from_secs(500), wall);
        assert_eq!(at, Some(Duration::from_secs(400)), "100 s before now");
    }

    #[test]
    fn a_changed_spec_is_polled_at_once_and_a_recreated_object_starts_afresh() {
        let mut so = ScaledObject::default();
        so.metadata.uid = Some("u1".into());
        so.metadata.generation = Some(1);
        let known = State {
            uid: "u1".into(),
            generation: 1,
            next_poll: Duration::from_secs(90),
            desired: 3,
            ..State::default()
        };
        let now = Duration::from_secs(60);
        assert_eq!(
            fresh_state(Some(&known), &so, now).next_poll,
            Duration::from_secs(90)
        );
        so.metadata.generation = Some(2);
        let changed = fresh_state(Some(&known), &so, now);
        assert_eq!((changed.next_poll, changed.desired), (now, 3));
        so.metadata.uid = Some("u2".into());
        let recreated = fresh_state(Some(&known), &so, now);
        assert_eq!((recreated.created, recreated.desired), (now, 0));
    }
}
