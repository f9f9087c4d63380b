//! Ingress → the data path (Knative's networking layer, here the Nimbus router): each Ingress
//! object is translated into the router's programming and applied through an [`IngressSink`];
//! its status says whether that worked. The router's table is a function of the Ingress objects
//! alone, so a restart reprograms it from the store and a missed deletion is caught on the
//! next list (see [`IngressSink::programmed`]).

use nimbus_api::conditions::ConditionStatus;
use nimbus_api::kingress::IngressStatus;
use nimbus_api::networking::{Ingress, IngressRule, IngressSplit, RequestTimeouts};
use nimbus_api::{KIngress, Kind, Object};

use crate::context::Context;
use crate::error::ControllerError;
use crate::manager::ObjectKey;
use crate::resources::{Action, update_status};
use crate::status::{cond, set_all};

/// Where Ingresses are programmed: the router implements this.
pub trait IngressSink: Send + Sync + 'static {
    /// Serve `ingress` from now on (replacing the previous version for the same route).
    fn apply(&self, ingress: Ingress);
    /// Stop serving the route.
    fn remove(&self, namespace: &str, name: &str);
    /// The (namespace, name) of every Ingress programmed now.
    fn programmed(&self) -> Vec<(String, String)>;
}

pub(crate) async fn reconcile(
    ctx: &Context,
    key: &ObjectKey,
    obj: Option<Object>,
) -> Result<Action, ControllerError> {
    let Some(sink) = &ctx.ingress else {
        return Ok(Action::await_change()); // another process programs the data path
    };
    let Some(Object::Ingress(ingress)) = obj.filter(|o| !o.is_deleting()) else {
        sink.remove(&key.namespace, &key.name);
        return Ok(Action::await_change());
    };
    let conditions = match program(&ingress) {
        Ok(program) => {
            sink.apply(program);
            vec![
                cond("NetworkConfigured", ConditionStatus::True, "", ""),
                cond("LoadBalancerReady", ConditionStatus::True, "", ""),
                cond("Ready", ConditionStatus::True, "", ""),
            ]
        }
        Err(message) => vec![
            cond(
                "NetworkConfigured",
                ConditionStatus::False,
                "InvalidIngress",
                &message,
            ),
            cond("Ready", ConditionStatus::False, "InvalidIngress", &message),
        ],
    };
    write_status(ctx, &ingress, conditions).await?;
    Ok(Action::await_change())
}

/// The router's programming for an Ingress object.
pub fn program(ingress: &KIngress) -> Result<Ingress, String> {
    let mut rules = Vec::new();
    for (i, rule) in ingress.spec.rules.iter().enumerate() {
        let splits: Vec<IngressSplit> = rule
            .http
            .paths
            .iter()
            .flat_map(|p| &p.splits)
            .map(|s| IngressSplit {
                revision: s.service_name.clone(),
                percent: u32::try_from(s.percent.clamp(0, 100)).unwrap_or(0),
                timeouts: RequestTimeouts::from_seconds(
                    s.timeout_seconds,
                    s.response_start_timeout_seconds,
                    s.idle_timeout_seconds,
                ),
                container_concurrency: s.container_concurrency.unwrap_or(0).clamp(0, 1000) as u32,
            })
            .collect();
        let total: u32 = splits.iter().map(|s| s.percent).sum();
        if splits.is_empty() || total != 100 {
            return Err(format!(
                "spec.rules[{i}]: the splits' percents sum to {total}, not 100"
            ));
        }
        rules.push(IngressRule {
            hosts: rule.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            splits,
        });
    }
    Ok(Ingress {
        namespace: ingress.namespace().to_string(),
        name: ingress.name().to_string(),
        rules,
    })
}

async fn write_status(
    ctx: &Context,
    ingress: &KIngress,
    conditions: Vec<nimbus_api::Condition>,
) -> Result<(), ControllerError> {
    let mut status: IngressStatus = ingress.status.clone().unwrap_or_default();
    status.observed_generation = ingress.metadata.generation;
    set_all(&mut status.conditions, conditions, &ctx.now());
    if ingress.status.as_ref() == Some(&status) {
        return Ok(());
    }
    update_status(
        &*ctx.resources,
        Kind::Ingress,
        ingress.namespace(),
        ingress.name(),
        |o| {
            if let Object::Ingress(i) = o {
                i.status = Some(status.clone());
            }
        },
    )
    .await?;
    Ok(())
}
