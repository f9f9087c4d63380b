//! Price tables: what a vCPU-second, a GiB-second and a million requests cost, and presets in
//! the public price shapes of two serverless clouds, for comparison.
//!
//! A table is chosen by preset name or read from a YAML/JSON file (unknown fields refused):
//!
//! ```yaml
//! name: on-prem
//! currency: EUR
//! vcpuSecond: 0.00001      # per vCPU-second
//! gibSecond: 0.000001      # per GiB-second
//! millionRequests: 0.10    # per million requests
//! basis: allocated         # allocated (default) or used: which vCPU/GiB-seconds are billed
//! memoryPerVcpuGib: 1.7275 # optional, Lambda's shape: CPU comes with memory (see below)
//! ```
//!
//! The presets carry the list prices of their pages, as shown in stored copies of those pages
//! read for this code on 2026-12-08 (check the live pages before relying on them). Free tiers
//! are not applied: the figures are what the usage costs beyond them.
//!
//! - `cloud-run` (the default): <https://cloud.google.com/run/pricing>, services with CPU
//!   allocated only during request processing (request-based billing), Tier 1 regions:
//!   $0.000024 per vCPU-second, $0.0000025 per GiB-second, $0.40 per million requests (free
//!   tier, not applied: 180,000 vCPU-s, 360,000 GiB-s and 2 million requests a month).
//!   Request-based billing charges the time instances serve requests; Nimbus bills the time
//!   they are ready, an upper bound.
//! - `lambda`: <https://aws.amazon.com/lambda/pricing/>, x86 in US East (N. Virginia), first
//!   tier: $0.0000166667 per GB-second and $0.20 per million requests (free tier, not applied:
//!   400,000 GB-s and 1 million requests a month). Lambda bills memory only and gives CPU in
//!   proportion to it (one vCPU at 1,769 MB,
//!   <https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html>), so an instance
//!   is billed for the memory that would give it its vCPUs when that is more than its memory.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Figures, UsageError};

/// Which vCPU- and GiB-seconds a table bills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// What instances were allocated (limits, else requests), as clouds bill.
    #[default]
    Allocated,
    /// What instances' cgroups used.
    Used,
}

/// What usage costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriceTable {
    pub name: String,
    #[serde(default = "usd")]
    pub currency: String,
    /// Per vCPU-second.
    #[serde(default)]
    pub vcpu_second: f64,
    /// Per GiB-second.
    #[serde(default)]
    pub gib_second: f64,
    /// Per million requests.
    #[serde(default)]
    pub million_requests: f64,
    #[serde(default)]
    pub basis: Basis,
    /// Lambda's shape: CPU is not billed but comes with memory, this many GiB per vCPU; the
    /// billed GiB-seconds are then at least the vCPU-seconds times this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_per_vcpu_gib: Option<f64>,
}

fn usd() -> String {
    "USD".into()
}

/// The presets' names, for messages.
pub const PRESETS: &[&str] = &["cloud-run", "lambda"];

impl PriceTable {
    /// Cloud Run, request-based billing, Tier 1 (see the module's notes).
    pub fn cloud_run() -> Self {
        Self {
            name: "cloud-run".into(),
            currency: usd(),
            vcpu_second: 0.000024,
            gib_second: 0.0000025,
            million_requests: 0.40,
            basis: Basis::Allocated,
            memory_per_vcpu_gib: None,
        }
    }

    /// AWS Lambda, x86, US East, first tier (see the module's notes).
    pub fn lambda() -> Self {
        Self {
            name: "lambda".into(),
            currency: usd(),
            vcpu_second: 0.0,
            gib_second: 0.0000166667,
            million_requests: 0.20,
            basis: Basis::Allocated,
            // 1,769 MB per vCPU; Lambda's GB-second is a GiB-second (memory in MB / 1024).
            memory_per_vcpu_gib: Some(1769.0 / 1024.0),
        }
    }

    /// A preset by name.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "cloud-run" | "cloudrun" => Some(Self::cloud_run()),
            "lambda" => Some(Self::lambda()),
            _ => None,
        }
    }

    /// A preset by name, else the table in the file `spec` names.
    pub fn resolve(spec: &str) -> Result<Self, UsageError> {
        if let Some(table) = Self::preset(spec) {
            return Ok(table);
        }
        let path = Path::new(spec);
        let text = std::fs::read_to_string(path).map_err(|e| UsageError::Prices {
            source_name: spec.into(),
            message: format!(
                "is neither a preset ({}) nor a readable file: {e}",
                PRESETS.join(", ")
            ),
        })?;
        Self::parse(spec, &text)
    }

    /// A table from YAML or JSON text (`source_name` for errors).
    pub fn parse(source_name: &str, text: &str) -> Result<Self, UsageError> {
        let table: Self = serde_saphyr::from_str(text).map_err(|e| UsageError::Prices {
            source_name: source_name.into(),
            message: e.to_string(),
        })?;
        table.check(source_name)?;
        Ok(table)
    }

    fn check(&self, source_name: &str) -> Result<(), UsageError> {
        let prices = [
            ("vcpuSecond", self.vcpu_second),
            ("gibSecond", self.gib_second),
            ("millionRequests", self.million_requests),
            ("memoryPerVcpuGib", self.memory_per_vcpu_gib.unwrap_or(0.0)),
        ];
        match prices.iter().find(|(_, p)| !p.is_finite() || *p < 0.0) {
            Some((field, p)) => Err(UsageError::Prices {
                source_name: source_name.into(),
                message: format!("{field}: {p} is not a price; give a number ≥ 0"),
            }),
            None => Ok(()),
        }
    }

    /// What `f` costs.
    pub fn cost(&self, f: &Figures) -> f64 {
        let (vcpu_s, mut gib_s) = match self.basis {
            Basis::Allocated => (f.vcpu_seconds_allocated, f.gib_seconds_allocated),
            Basis::Used => (f.vcpu_seconds_used, f.gib_seconds_used),
        };
        if let Some(per_vcpu) = self.memory_per_vcpu_gib {
            gib_s = gib_s.max(vcpu_s * per_vcpu);
        }
        vcpu_s * self.vcpu_second
            + gib_s * self.gib_second
            + f.requests as f64 / 1e6 * self.million_requests
    }
}

impl Default for PriceTable {
    fn default() -> Self {
        Self::cloud_run()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour_of_one_instance() -> Figures {
        Figures {
            requests: 2_000_000,
            instance_seconds: 3600.0,
            vcpu_seconds_allocated: 3600.0,
            vcpu_seconds_used: 360.0,
            gib_seconds_allocated: 1800.0,
            gib_seconds_used: 360.0,
            cold_starts: 1,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn cloud_run_bills_vcpu_memory_and_requests() {
        let cost = PriceTable::cloud_run().cost(&hour_of_one_instance());
        assert!(
            close(cost, 3600.0 * 0.000024 + 1800.0 * 0.0000025 + 2.0 * 0.40),
            "{cost}"
        );
    }

    #[test]
    fn lambda_bills_the_memory_that_buys_the_cpu() {
        let cost = PriceTable::lambda().cost(&hour_of_one_instance());
        let gib_s = 3600.0 * 1769.0 / 1024.0;
        assert!(close(cost, gib_s * 0.0000166667 + 2.0 * 0.20), "{cost}");
    }

    #[test]
    fn files_set_prices_and_basis_and_refuse_unknown_fields() {
        let t = PriceTable::parse(
            "f.yaml",
            "name: mine\ncurrency: EUR\nvcpuSecond: 0.01\ngibSecond: 0.001\nmillionRequests: 1\nbasis: used\n",
        )
        .unwrap();
        let cost = t.cost(&hour_of_one_instance());
        assert!(close(cost, 360.0 * 0.01 + 360.0 * 0.001 + 2.0), "{cost}");
        let err = PriceTable::parse("f.yaml", "name: x\nvcpu: 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.yaml") && err.contains("vcpu"), "{err}");
        let err = PriceTable::parse("f.yaml", "name: x\ngibSecond: -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("gibSecond"), "{err}");
        let err = PriceTable::resolve("/nonexistent/prices.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cloud-run, lambda"), "{err}");
    }
}
