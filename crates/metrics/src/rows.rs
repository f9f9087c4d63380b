//! [`Rows`]: one metric family made at scrape time from values read elsewhere.

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// A metric family whose series are built for one scrape: `(labels, value)` pairs, where the
/// value is a `ConstCounter`, a `ConstGauge` or a [`crate::HistogramSnapshot`]. Unlike
/// `prometheus_client`'s `Family` it keeps no state between scrapes, so a series whose
/// subject is gone (a deleted revision, a stopped instance) disappears with it.
#[derive(Debug)]
pub struct Rows<L, M>(Vec<(L, M)>);

impl<L, M> Default for Rows<L, M> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<L, M> Rows<L, M> {
    /// Adds a series.
    pub fn push(&mut self, labels: L, value: M) {
        self.0.push((labels, value));
    }

    /// Whether no series was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<L: EncodeLabelSet + std::fmt::Debug, M: EncodeMetric + TypedMetric> EncodeMetric
    for Rows<L, M>
{
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.0 {
            value.encode(encoder.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::ConstCounter;
    use prometheus_client::registry::Registry;

    use super::*;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Labels {
        namespace: String,
        code: &'static str,
    }

    #[test]
    fn renders_one_series_per_row_with_escaped_labels() {
        let mut rows = Rows::default();
        for (code, n) in [("2xx", 7u64), ("5xx", 1)] {
            let labels = Labels {
                namespace: "a\"b".into(),
                code,
            };
            rows.push(labels, ConstCounter::new(n));
        }
        let mut registry = Registry::with_prefix("nimbus");
        registry.register("revision_requests", "Requests", rows);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        assert!(
            out.contains("# TYPE nimbus_revision_requests counter"),
            "{out}"
        );
        assert!(
            out.contains("nimbus_revision_requests_total{namespace=\"a\\\"b\",code=\"2xx\"} 7"),
            "{out}"
        );
        assert!(out.contains("code=\"5xx\"} 1"), "{out}");
    }
}
