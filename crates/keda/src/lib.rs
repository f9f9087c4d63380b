//! KEDA's model of scaling on events, in embedded Nimbus: evaluates `keda.sh/v1alpha1`
//! ScaledObjects by polling each trigger's event source every `pollingInterval`, decides the
//! event-driven instance count with KEDA's and the HPA's rules ([`decide`]) and hands it to the
//! controller's scaler as a floor of each revision the target Service routes traffic to.
//!
//! This crate never starts or stops instances (the scaler does: `max(HTTP autoscaler's
//! decision, floor)`), never serves the API and keeps nothing a restart needs: after one the
//! ScaledObjects are polled again and the floors come back within one `pollingInterval`.

pub mod decide;
mod driver;
mod error;
pub mod measure;
mod status;

pub use driver::{Keda, KedaConfig};
pub use error::TriggerError;
