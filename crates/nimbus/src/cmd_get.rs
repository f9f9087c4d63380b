//! `nimbus get` and `nimbus delete`: kubectl-like tables, YAML and JSON.

use anyhow::bail;
use nimbus_api::conditions::get_condition;
use nimbus_api::{Kind, Object};
use serde_json::Value;

use crate::ClientOpts;
use crate::client::{Client, display_name};

pub fn parse_kind(s: &str) -> anyhow::Result<Kind> {
    match Kind::parse(s) {
        Some(k) => Ok(k),
        None => bail!(
            "the server doesn't have a resource type \"{s}\"; use services (ksvc), configurations (cfg), revisions (rev), routes (rt), podautoscalers (kpa), ingresses (kingress), secrets or configmaps (cm)"
        ),
    }
}

/// How `nimbus get` prints: `-o` and whether Secrets' values are shown.
#[derive(Clone, Copy, Debug)]
pub struct Output<'a> {
    pub format: Option<&'a str>,
    pub show_secrets: bool,
}

impl<'a> Output<'a> {
    pub fn parse(format: Option<&'a str>, show_secrets: bool) -> Self {
        Self {
            format,
            show_secrets,
        }
    }
}

pub async fn run(
    opts: &ClientOpts,
    kind: &str,
    name: Option<&str>,
    out: Output<'_>,
    all: bool,
) -> anyhow::Result<()> {
    let output = out.format;
    let kind = parse_kind(kind)?;
    let client = Client::new(opts).await?;
    let objects = match name {
        Some(name) => match client.get(kind, name).await? {
            Some(o) => vec![o],
            None => bail!(
                "{} \"{name}\" not found in namespace \"{}\"",
                display_name(kind, "").trim_end_matches('/'),
                opts.namespace
            ),
        },
        None => client.list(kind, all).await?,
    };
    match output {
        None | Some("wide") => {
            if objects.is_empty() {
                eprintln!("No resources found in {} namespace.", opts.namespace);
                return Ok(());
            }
            print!("{}", table(kind, &objects, all));
        }
        Some("yaml") => print!("{}", to_yaml(shown(objects, out), name.is_some())?),
        Some("json") => println!("{}", to_json(shown(objects, out), name.is_some())?),
        Some(other) => {
            bail!("unknown output format {other:?}; use yaml or json (or leave -o out for a table)")
        }
    }
    Ok(())
}

pub async fn delete(opts: &ClientOpts, kind: &str, name: &str) -> anyhow::Result<()> {
    let kind = parse_kind(kind)?;
    Client::new(opts).await?.delete(kind, name).await?;
    println!(
        "{} \"{name}\" deleted",
        display_name(kind, "").trim_end_matches('/')
    );
    Ok(())
}

/// The objects as printed: Secrets' values redacted unless `--show-secrets`.
fn shown(objects: Vec<Object>, out: Output<'_>) -> Vec<Value> {
    let show = |o: Object| {
        let mut value = o.to_json();
        if o.kind() == Kind::Secret && !out.show_secrets {
            redact_secret(&mut value);
        }
        value
    };
    objects.into_iter().map(show).collect()
}

/// Each of a Secret's values (base64 in `data`) replaced by `<redacted: N bytes>`.
fn redact_secret(secret: &mut Value) {
    let Some(Value::Object(data)) = secret.get_mut("data") else {
        return;
    };
    for value in data.values_mut() {
        let len = value.as_str().map_or(0, decoded_len);
        *value = Value::from(format!("<redacted: {len} bytes>"));
    }
}

/// The length of the bytes standard base64 `text` encodes.
fn decoded_len(text: &str) -> usize {
    let padding = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3).saturating_sub(padding)
}

fn list_value(mut objects: Vec<Value>, single: bool) -> Value {
    if single && !objects.is_empty() {
        return objects.swap_remove(0);
    }
    serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects})
}

fn to_yaml(objects: Vec<Value>, single: bool) -> anyhow::Result<String> {
    Ok(serde_saphyr::to_string(&list_value(objects, single))?)
}

fn to_json(objects: Vec<Value>, single: bool) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(&list_value(objects, single))?)
}

/// Columns as Knative's printer columns define them.
fn table(kind: Kind, objects: &[Object], all_namespaces: bool) -> String {
    let header: &[&str] = match kind {
        Kind::Service => &[
            "NAME",
            "URL",
            "LATESTCREATED",
            "LATESTREADY",
            "READY",
            "REASON",
        ],
        Kind::Configuration => &["NAME", "LATESTCREATED", "LATESTREADY", "READY", "REASON"],
        Kind::Revision => &[
            "NAME",
            "CONFIG NAME",
            "GENERATION",
            "READY",
            "REASON",
            "ACTUAL REPLICAS",
            "DESIRED REPLICAS",
        ],
        Kind::Route => &["NAME", "URL", "READY", "REASON"],
        Kind::PodAutoscaler => &["NAME", "DESIREDSCALE", "ACTUALSCALE", "READY", "REASON"],
        Kind::Ingress => &["NAME", "READY", "REASON"],
        Kind::Secret => &["NAME", "TYPE", "DATA"],
        Kind::ConfigMap => &["NAME", "DATA"],
        Kind::RedisStreamSource
        | Kind::RabbitmqSource
        | Kind::RedisListSource
        | Kind::NatsJetStreamSource => &["NAME", "SINK", "READY", "REASON"],
    };
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    if all_namespaces {
        head.insert(0, "NAMESPACE".into());
    }
    rows.push(head);
    for o in objects {
        let mut row = row(o);
        if all_namespaces {
            row.insert(0, o.namespace().to_string());
        }
        rows.push(row);
    }
    render(&rows)
}

fn row(o: &Object) -> Vec<String> {
    let s = |v: Option<&String>| v.cloned().unwrap_or_default();
    match o {
        Object::Service(x) => {
            let st = x.status.clone().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            vec![
                o.name().into(),
                s(st.url.as_ref()),
                s(st.latest_created_revision_name.as_ref()),
                s(st.latest_ready_revision_name.as_ref()),
                r,
                reason,
            ]
        }
        Object::Configuration(x) => {
            let st = x.status.clone().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            vec![
                o.name().into(),
                s(st.latest_created_revision_name.as_ref()),
                s(st.latest_ready_revision_name.as_ref()),
                r,
                reason,
            ]
        }
        Object::Revision(x) => {
            let st = x.status.clone().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            let labels = x.metadata.labels.clone().unwrap_or_default();
            vec![
                o.name().into(),
                s(labels.get(nimbus_api::constants::LABEL_CONFIGURATION)),
                s(labels.get(nimbus_api::constants::LABEL_CONFIGURATION_GENERATION)),
                r,
                reason,
                st.actual_replicas
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                st.desired_replicas
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
            ]
        }
        Object::Route(x) => {
            let st = x.status.clone().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            vec![o.name().into(), s(st.url.as_ref()), r, reason]
        }
        Object::PodAutoscaler(x) => {
            let st = x.status.clone().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            let n = |v: Option<i32>| v.map(|v| v.to_string()).unwrap_or_default();
            vec![
                o.name().into(),
                n(st.desired_scale),
                n(st.actual_scale),
                r,
                reason,
            ]
        }
        Object::Ingress(x) => {
            let st = x.status.clone().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            vec![o.name().into(), r, reason]
        }
        Object::Secret(x) => vec![
            o.name().into(),
            x.type_.clone().unwrap_or_default(),
            x.data.len().to_string(),
        ],
        Object::ConfigMap(x) => vec![
            o.name().into(),
            (x.data.len() + x.binary_data.len()).to_string(),
        ],
        Object::RedisStreamSource(_)
        | Object::RabbitmqSource(_)
        | Object::RedisListSource(_)
        | Object::NatsJetStreamSource(_) => {
            let st = o.source_status().cloned().unwrap_or_default();
            let (r, reason) = ready(&st.conditions);
            vec![o.name().into(), s(st.sink_uri.as_ref()), r, reason]
        }
    }
}

fn ready(conditions: &[nimbus_api::Condition]) -> (String, String) {
    match get_condition(conditions, "Ready") {
        Some(c) => (
            c.status.as_str().to_string(),
            c.reason.clone().unwrap_or_default(),
        ),
        None => ("Unknown".into(), String::new()),
    }
}

/// Left-aligned columns separated by three spaces, like kubectl.
pub(crate) fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{s:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_kubectl() {
        let rows = vec![
            vec!["NAME".into(), "READY".into()],
            vec!["hello-world".into(), "True".into()],
        ];
        assert_eq!(render(&rows), "NAME          READY\nhello-world   True\n");
    }

    fn secret() -> Object {
        let decoded = nimbus_api::parse::decode_object(
            None,
            serde_json::json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db"},
                "stringData": {"password": "s3cr3t", "empty": ""}}),
        );
        decoded.unwrap()
    }

    #[test]
    fn secret_values_are_redacted_unless_asked() {
        let hidden = to_yaml(
            shown(vec![secret()], Output::parse(Some("yaml"), false)),
            true,
        );
        let hidden = hidden.unwrap();
        assert!(
            hidden.contains("password: \"<redacted: 6 bytes>\""),
            "{hidden}"
        );
        assert!(hidden.contains("<redacted: 0 bytes>"), "{hidden}");
        assert!(
            !hidden.contains("czNjcjN0") && !hidden.contains("s3cr3t"),
            "{hidden}"
        );
        let json = to_json(
            shown(vec![secret()], Output::parse(Some("json"), false)),
            false,
        );
        assert!(!json.unwrap().contains("czNjcjN0"));
        let shown_ = to_json(
            shown(vec![secret()], Output::parse(Some("json"), true)),
            true,
        );
        assert!(shown_.unwrap().contains("\"password\": \"czNjcjN0\""));
        assert_eq!(decoded_len("czNjcjN0"), 6);
        assert_eq!(decoded_len("eA=="), 1);
        assert_eq!(decoded_len("eHk="), 2);
    }
}
