//! The `autoscaling.knative.dev/*` annotations of a revision template, parsed and validated into
//! a [`ScalingSpec`] with Knative's defaults. Pure; the autoscaler crate consumes the result.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration::parse_duration;
use crate::error::FieldError;

/// Annotation prefix.
pub const PREFIX: &str = "autoscaling.knative.dev/";
/// Nimbus extension: the scale-to-zero grace period, per revision (Knative has it only globally).
pub const ANNOTATION_SCALE_TO_ZERO_GRACE: &str = "nimbus.dev/scale-to-zero-grace-period";

/// Which signal drives scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// In-flight requests per instance.
    Concurrency,
    /// Requests per second per instance.
    Rps,
}

/// Everything the autoscaler needs to know about one revision. Defaults are Knative's.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingSpec {
    pub metric: Metric,
    /// Target per instance (concurrency or rps).
    pub target: f64,
    /// Fraction of `target` to aim at (0 < u ≤ 1; Knative: 70%).
    pub target_utilization: f64,
    /// Stable window (Knative: 60 s, 6 s – 1 h).
    pub window: Duration,
    /// Panic window as a percentage of the stable window (Knative: 10).
    pub panic_window_percentage: f64,
    /// Enter panic when panic-window demand ≥ this percentage of capacity (Knative: 200).
    pub panic_threshold_percentage: f64,
    pub min_scale: u32,
    /// 0 = unlimited.
    pub max_scale: u32,
    pub initial_scale: u32,
    /// Instances to start when scaling up from zero (Knative: 1).
    pub activation_scale: u32,
    pub scale_down_delay: Duration,
    /// Keep the last instance this long after traffic stops (Knative:
    /// `scale-to-zero-pod-retention-period`, default 0).
    pub scale_to_zero_retention: Duration,
    /// Extra time after the stable window before scaling to zero (Knative's global 30 s
    /// grace period; settable per revision in Nimbus).
    pub scale_to_zero_grace: Duration,
    /// Spare capacity to keep before taking the activator out of the path; -1 = always in path.
    pub target_burst_capacity: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    /// The revision's `containerConcurrency` (0 = unlimited).
    pub container_concurrency: u32,
    /// How long a revision may try to get an instance ready (after creation, an activation
    /// or losing its last ready instance) before the autoscaler gives up and lets it go to
    /// zero: Knative's activation timeout, the progress deadline
    /// (`serving.knative.dev/progress-deadline`) plus 30 s.
    pub activation_timeout: Duration,
}

/// Knative's `activationTimeoutBuffer`: the activation timeout is the progress deadline plus this.
pub const ACTIVATION_TIMEOUT_BUFFER: Duration = Duration::from_secs(30);

impl Default for ScalingSpec {
    fn default() -> Self {
        Self {
            metric: Metric::Concurrency,
            target: 100.0,
            target_utilization: 0.7,
            window: Duration::from_secs(60),
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            min_scale: 0,
            max_scale: 0,
            initial_scale: 1,
            activation_scale: 1,
            scale_down_delay: Duration::ZERO,
            scale_to_zero_retention: Duration::ZERO,
            scale_to_zero_grace: Duration::from_secs(30),
            target_burst_capacity: 200.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            container_concurrency: 0,
            activation_timeout: Duration::from_secs(
                crate::constants::DEFAULT_PROGRESS_DEADLINE_SECONDS,
            ) + ACTIVATION_TIMEOUT_BUFFER,
        }
    }
}

impl ScalingSpec {
    /// The panic window (`window × panic-window-percentage / 100`, at least 1 s).
    pub fn panic_window(&self) -> Duration {
        self.window
            .mul_f64(self.panic_window_percentage / 100.0)
            .max(Duration::from_secs(1))
    }

    /// Parse the template's annotations. `path` is the annotations' field path used in errors,
    /// e.g. `spec.template.metadata.annotations`.
    pub fn from_annotations(
        annotations: Option<&BTreeMap<String, String>>,
        container_concurrency: i64,
        path: &str,
    ) -> Result<ScalingSpec, Vec<FieldError>> {
        let mut p = Parser {
            annotations,
            path,
            errors: Vec::new(),
        };
        let mut s = ScalingSpec {
            container_concurrency: container_concurrency.max(0) as u32,
            ..Default::default()
        };
        if let Some(class) = p.raw("class")
            && class != "kpa.autoscaling.knative.dev"
        {
            p.err(
                "class",
                format!(
                    "{class:?} is not supported; Nimbus implements \"kpa.autoscaling.knative.dev\""
                ),
            );
        }
        s.metric = match p.raw("metric") {
            None | Some("concurrency") => Metric::Concurrency,
            Some("rps") => Metric::Rps,
            Some(other) => {
                p.err(
                    "metric",
                    format!("{other:?} is not supported; use \"concurrency\" or \"rps\""),
                );
                Metric::Concurrency
            }
        };
        s.target = match (s.metric, container_concurrency) {
            (Metric::Concurrency, cc) if cc > 0 => cc as f64,
            (Metric::Concurrency, _) => 100.0,
            (Metric::Rps, _) => 200.0,
        };
        if let Some(t) = p.number("target", 0.01, f64::MAX) {
            s.target = t;
            if s.metric == Metric::Concurrency
                && container_concurrency > 0
                && t > container_concurrency as f64
            {
                p.err("target", format!("{t} exceeds containerConcurrency {container_concurrency}; it can never be reached"));
            }
        }
        if let Some(u) = p.number("target-utilization-percentage", 1.0, 100.0) {
            s.target_utilization = u / 100.0;
        }
        if let Some(w) = p.duration("window", Duration::from_secs(6), Duration::from_secs(3600)) {
            s.window = w;
        }
        if let Some(v) = p.number("panic-window-percentage", 1.0, 100.0) {
            s.panic_window_percentage = v;
        }
        if let Some(v) = p.number("panic-threshold-percentage", 110.0, 1000.0) {
            s.panic_threshold_percentage = v;
        }
        s.min_scale = p.integer("min-scale").unwrap_or(0);
        s.max_scale = p.integer("max-scale").unwrap_or(0);
        if s.max_scale > 0 && s.min_scale > s.max_scale {
            p.err(
                "min-scale",
                format!("{} is greater than max-scale {}", s.min_scale, s.max_scale),
            );
        }
        s.initial_scale = p.integer("initial-scale").unwrap_or(1);
        if let Some(a) = p.integer("activation-scale") {
            if a == 0 {
                p.err("activation-scale", "must be at least 1");
            }
            s.activation_scale = a.max(1);
        }
        if let Some(d) = p.duration(
            "scale-down-delay",
            Duration::ZERO,
            Duration::from_secs(3600),
        ) {
            s.scale_down_delay = d;
        }
        if let Some(d) = p.duration(
            "scale-to-zero-pod-retention-period",
            Duration::ZERO,
            Duration::from_secs(3600),
        ) {
            s.scale_to_zero_retention = d;
        }
        if let Some(d) =
            p.extension_duration(ANNOTATION_SCALE_TO_ZERO_GRACE, Duration::from_secs(3600))
        {
            s.scale_to_zero_grace = d;
        }
        if let Some(v) = p.number("target-burst-capacity", -1.0, f64::MAX) {
            if v < 0.0 && v != -1.0 {
                p.err(
                    "target-burst-capacity",
                    format!("{v} is not allowed; use -1 (always) or a value >= 0"),
                );
            }
            s.target_burst_capacity = v;
        }
        if let Some(v) = p.number("max-scale-up-rate", 1.0000001, f64::MAX) {
            s.max_scale_up_rate = v;
        }
        if let Some(v) = p.number("max-scale-down-rate", 1.0000001, f64::MAX) {
            s.max_scale_down_rate = v;
        }
        // Validated with the template (`validate_template`); an unreadable value keeps the default.
        if let Some(deadline) = annotations
            .and_then(|a| a.get(crate::constants::ANNOTATION_PROGRESS_DEADLINE))
            .and_then(|d| parse_duration(d).ok())
        {
            s.activation_timeout = deadline.saturating_add(ACTIVATION_TIMEOUT_BUFFER);
        }
        if p.errors.is_empty() {
            Ok(s)
        } else {
            Err(p.errors)
        }
    }
}

struct Parser<'a> {
    annotations: Option<&'a BTreeMap<String, String>>,
    path: &'a str,
    errors: Vec<FieldError>,
}

impl Parser<'_> {
    fn raw(&self, key: &str) -> Option<&str> {
        self.annotations?
            .get(&format!("{PREFIX}{key}"))
            .map(String::as_str)
    }

    fn err(&mut self, key: &str, message: impl Into<String>) {
        let full = if key.contains('/') {
            key.to_string()
        } else {
            format!("{PREFIX}{key}")
        };
        self.errors
            .push(FieldError::new(format!("{}[{full}]", self.path), message));
    }

    fn number(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        let raw = self.raw(key)?.to_string();
        match raw.trim().parse::<f64>() {
            Ok(v) if v.is_finite() && v >= min && v <= max => Some(v),
            Ok(v) => {
                self.err(
                    key,
                    format!("{v} is out of range; allowed {min} to {}", show_max(max)),
                );
                None
            }
            Err(_) => {
                self.err(key, format!("{raw:?} is not a number"));
                None
            }
        }
    }

    fn integer(&mut self, key: &str) -> Option<u32> {
        let raw = self.raw(key)?.to_string();
        match raw.trim().parse::<i64>() {
            Ok(v) if (0..=i64::from(u32::MAX)).contains(&v) => Some(v as u32),
            Ok(v) => {
                self.err(key, format!("{v} is out of range; must be >= 0"));
                None
            }
            Err(_) => {
                self.err(key, format!("{raw:?} is not a whole number"));
                None
            }
        }
    }

    fn duration(&mut self, key: &str, min: Duration, max: Duration) -> Option<Duration> {
        let raw = self.raw(key)?.to_string();
        self.check_duration(key, &raw, min, max)
    }

    fn extension_duration(&mut self, key: &str, max: Duration) -> Option<Duration> {
        let raw = self.annotations?.get(key)?.to_string();
        self.check_duration(key, &raw, Duration::ZERO, max)
    }

    fn check_duration(
        &mut self,
        key: &str,
        raw: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        match parse_duration(raw) {
            Ok(d) if d >= min && d <= max => Some(d),
            Ok(_) => {
                self.err(
                    key,
                    format!("{raw:?} is out of range; allowed {min:?} to {max:?}"),
                );
                None
            }
            Err(e) => {
                self.err(key, e);
                None
            }
        }
    }
}

fn show_max(max: f64) -> String {
    if max == f64::MAX {
        "any".into()
    } else {
        max.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)], cc: i64) -> Result<ScalingSpec, Vec<FieldError>> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v.to_string()))
            .collect();
        ScalingSpec::from_annotations(Some(&map), cc, "spec.template.metadata.annotations")
    }

    #[test]
    fn defaults_are_knatives() {
        let s = parse(&[], 0).unwrap();
        assert_eq!(s, ScalingSpec::default());
        assert_eq!(s.panic_window(), Duration::from_secs(6));
        assert_eq!(
            parse(&[], 10).unwrap().target,
            10.0,
            "target follows containerConcurrency"
        );
        assert_eq!(parse(&[("metric", "rps")], 0).unwrap().target, 200.0);
    }

    #[test]
    fn values_parse() {
        let s = parse(
            &[
                ("min-scale", "1"),
                ("max-scale", "5"),
                ("window", "6s"),
                ("target", "10"),
                ("scale-down-delay", "1m"),
            ],
            0,
        )
        .unwrap();
        assert_eq!((s.min_scale, s.max_scale, s.target), (1, 5, 10.0));
        assert_eq!(s.window, Duration::from_secs(6));
        assert_eq!(s.scale_down_delay, Duration::from_secs(60));
    }

    #[test]
    fn bad_values_name_the_annotation() {
        for (k, v) in [
            ("min-scale", "-1"),
            ("max-scale", "x"),
            ("window", "5s"),
            ("window", "abc"),
            ("target", "0"),
            ("metric", "cpu"),
            ("target-utilization-percentage", "150"),
            ("activation-scale", "0"),
            ("target-burst-capacity", "-2"),
            ("scale-down-delay", "-1s"),
        ] {
            let errs = parse(&[(k, v)], 0).unwrap_err();
            assert_eq!(
                errs[0].path,
                format!("spec.template.metadata.annotations[{PREFIX}{k}]"),
                "{k}={v}"
            );
        }
        let errs = parse(&[("min-scale", "5"), ("max-scale", "2")], 0).unwrap_err();
        assert!(errs[0].message.contains("greater than max-scale"));
    }

    #[test]
    fn grace_period_is_per_revision() {
        let map: BTreeMap<String, String> =
            [(ANNOTATION_SCALE_TO_ZERO_GRACE.to_string(), "5s".to_string())].into();
        let s = ScalingSpec::from_annotations(Some(&map), 0, "a").unwrap();
        assert_eq!(s.scale_to_zero_grace, Duration::from_secs(5));
    }
}
