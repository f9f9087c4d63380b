//! Where traces go and which are kept, as OpenTelemetry users configure it: the
//! `--otlp-endpoint` flag or the standard `OTEL_EXPORTER_OTLP_*` variables, the sampler from
//! `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG` (or `--trace-sampling-ratio`), the service
//! name from `OTEL_SERVICE_NAME`. Resolved once at start-up from a lookup function (the process
//! environment in the binary, a map in tests); a bad value is an error naming the variable.

/// The generic endpoint variable: a base URL, `/v1/traces` is appended.
pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The traces endpoint variable: the full URL, used as it is.
pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";

/// The path OTLP/HTTP receivers take traces on.
pub const TRACES_PATH: &str = "/v1/traces";
/// `service.name` of Nimbus's spans unless `OTEL_SERVICE_NAME` says otherwise.
pub const DEFAULT_SERVICE_NAME: &str = "nimbus";

/// A tracing setting that cannot be used, with the flag or variable it came from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "{source_name}={value:?}: an OTLP endpoint must be an http:// URL (e.g. http://127.0.0.1:4318); this build exports over plain HTTP only, so send to a local collector"
    )]
    Endpoint { source_name: String, value: String },
    #[error(
        "{source_name}={value:?}: this build exports OTLP as http/protobuf only (port 4318 of a collector); set it to http/protobuf or unset it"
    )]
    Protocol { source_name: String, value: String },
    #[error(
        "{OTEL_TRACES_SAMPLER}={value:?} is not a sampler; use always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio"
    )]
    Sampler { value: String },
    #[error("{source_name}={value:?}: a sampling ratio is a number from 0 to 1")]
    Ratio { source_name: String, value: String },
}

/// Which traces are recorded: a share of new traces (by trace id), and whether a caller's
/// sampled flag decides instead when the request carries one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Share of traces this server starts that are recorded, 0 to 1.
    pub ratio: f64,
    /// Follow the caller's decision (`traceparent`'s sampled flag) when there is one.
    pub parent_based: bool,
}

/// Everything the exporter and the sampler need; `None` from [`TracesConfig::resolve`] means
/// tracing is off.
#[derive(Debug, Clone, PartialEq)]
pub struct TracesConfig {
    /// The full URL OTLP/HTTP protobuf exports are posted to (`…/v1/traces`).
    pub endpoint: String,
    pub sampling: Sampling,
    pub service_name: String,
}

// === impl TracesConfig ===

impl TracesConfig {
    /// The configuration from the `--otlp-endpoint` flag (a base URL, like
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), the `--trace-sampling-ratio` flag and the variables
    /// `env` finds. `Ok(None)` when no endpoint is given anywhere: tracing is off.
    pub fn resolve(
        endpoint_flag: Option<&str>,
        ratio_flag: Option<f64>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let Some(endpoint) = endpoint(endpoint_flag, &env)? else {
            return Ok(None);
        };
        protocol(&env)?;
        let sampling = match ratio_flag {
            Some(ratio) => Sampling {
                ratio: checked_ratio("--trace-sampling-ratio", &ratio.to_string())?,
                parent_based: true,
            },
            None => sampling(&env)?,
        };
        let service_name = env(OTEL_SERVICE_NAME).unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());
        Ok(Some(Self {
            endpoint,
            sampling,
            service_name,
        }))
    }
}

/// The traces URL: the flag's or the generic variable's base URL with `/v1/traces`, or the
/// traces variable's URL as it is.
fn endpoint(
    flag: Option<&str>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<String>, ConfigError> {
    let (source_name, value, append) = match (flag, env(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)) {
        (Some(flag), _) => ("--otlp-endpoint".to_owned(), flag.to_owned(), true),
        (None, Some(url)) => (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.to_owned(), url, false),
        (None, None) => match env(OTEL_EXPORTER_OTLP_ENDPOINT) {
            Some(url) => (OTEL_EXPORTER_OTLP_ENDPOINT.to_owned(), url, true),
            None => return Ok(None),
        },
    };
    let trimmed = value.trim();
    let valid = trimmed
        .strip_prefix("http://")
        .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/'))
        && trimmed.parse::<http::Uri>().is_ok();
    if !valid {
        return Err(ConfigError::Endpoint { source_name, value });
    }
    Ok(Some(match append {
        true => format!("{}{TRACES_PATH}", trimmed.trim_end_matches('/')),
        false => trimmed.to_owned(),
    }))
}

fn protocol(env: &impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
    for name in [
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_PROTOCOL,
    ] {
        if let Some(value) = env(name) {
            if value.trim() != "http/protobuf" {
                return Err(ConfigError::Protocol {
                    source_name: name.into(),
                    value,
                });
            }
            return Ok(());
        }
    }
    Ok(())
}

/// The sampler the OpenTelemetry variables name (default: `parentbased_always_on`).
fn sampling(env: &impl Fn(&str) -> Option<String>) -> Result<Sampling, ConfigError> {
    let name = env(OTEL_TRACES_SAMPLER).unwrap_or_else(|| "parentbased_always_on".into());
    let ratio = || match env(OTEL_TRACES_SAMPLER_ARG) {
        Some(arg) => checked_ratio(OTEL_TRACES_SAMPLER_ARG, &arg),
        None => Ok(1.0),
    };
    let (ratio, parent_based) = match name.trim() {
        "always_on" => (1.0, false),
        "always_off" => (0.0, false),
        "traceidratio" => (ratio()?, false),
        "parentbased_always_on" => (1.0, true),
        "parentbased_always_off" => (0.0, true),
        "parentbased_traceidratio" => (ratio()?, true),
        _ => return Err(ConfigError::Sampler { value: name }),
    };
    Ok(Sampling {
        ratio,
        parent_based,
    })
}

fn checked_ratio(source_name: &str, value: &str) -> Result<f64, ConfigError> {
    match value.trim().parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(ConfigError::Ratio {
            source_name: source_name.into(),
            value: value.into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        flag: Option<&str>,
        ratio: Option<f64>,
        vars: &[(&str, &str)],
    ) -> Result<Option<TracesConfig>, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TracesConfig::resolve(flag, ratio, |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn off_without_an_endpoint() {
        assert_eq!(
            resolve(None, Some(0.5), &[("OTEL_TRACES_SAMPLER", "x")]),
            Ok(None)
        );
        assert_eq!(
            resolve(None, None, &[(OTEL_EXPORTER_OTLP_ENDPOINT, " ")]),
            Ok(None)
        );
    }

    #[test]
    fn base_urls_get_the_traces_path_and_the_traces_url_is_kept() {
        let c = resolve(Some("http://collector:4318/"), None, &[])
            .unwrap()
            .unwrap();
        assert_eq!(c.endpoint, "http://collector:4318/v1/traces");
        let env = [(OTEL_EXPORTER_OTLP_ENDPOINT, "http://a:4318")];
        let c = resolve(None, None, &env).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://a:4318/v1/traces");
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://a:4318"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://b:9/custom"),
        ];
        let c = resolve(None, None, &env).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://b:9/custom");
        // The flag wins over both.
        let c = resolve(Some("http://f:1"), None, &env).unwrap().unwrap();
        assert_eq!(c.endpoint, "http://f:1/v1/traces");
    }

    #[test]
    fn bad_endpoints_and_protocols_name_their_source() {
        let err = resolve(Some("https://c:4318"), None, &[]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--otlp-endpoint=\"https://c:4318\"")
        );
        let err = resolve(None, None, &[(OTEL_EXPORTER_OTLP_ENDPOINT, "c:4318")]).unwrap_err();
        assert!(err.to_string().contains(OTEL_EXPORTER_OTLP_ENDPOINT));
        let env = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
        let err = resolve(Some("http://c:4317"), None, &env).unwrap_err();
        assert!(matches!(err, ConfigError::Protocol { .. }));
        let env = [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")];
        assert!(resolve(Some("http://c:4318"), None, &env).is_ok());
    }

    #[test]
    fn samplers_as_the_otel_spec_names_them() {
        let with = |vars: &[(&str, &str)]| {
            let mut all = vec![(OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318")];
            all.extend_from_slice(vars);
            resolve(None, None, &all).map(|c| c.unwrap().sampling)
        };
        let default = with(&[]).unwrap();
        assert_eq!((default.ratio, default.parent_based), (1.0, true));
        let ratio = with(&[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ]);
        assert_eq!(
            ratio,
            Ok(Sampling {
                ratio: 0.25,
                parent_based: false
            })
        );
        let off = with(&[("OTEL_TRACES_SAMPLER", "parentbased_always_off")]).unwrap();
        assert_eq!((off.ratio, off.parent_based), (0.0, true));
        assert!(matches!(
            with(&[("OTEL_TRACES_SAMPLER", "sometimes")]),
            Err(ConfigError::Sampler { .. })
        ));
        assert!(matches!(
            with(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "1.5")
            ]),
            Err(ConfigError::Ratio { .. })
        ));
    }

    #[test]
    fn the_ratio_flag_wins_and_follows_parents() {
        let env = [
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://c:4318"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("OTEL_SERVICE_NAME", "edge"),
        ];
        let c = resolve(None, Some(0.0), &env).unwrap().unwrap();
        assert_eq!((c.sampling.ratio, c.sampling.parent_based), (0.0, true));
        assert_eq!(c.service_name, "edge");
        assert!(resolve(None, Some(-1.0), &env).is_err());
    }
}
