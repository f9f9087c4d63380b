//! `nimbus get` and `nimbus delete`: kubectl-like tables, YAML and JSON.

use anyhow::bail;
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
            if kind == Kind::Event {
                let now = chrono::Utc::now().timestamp();
                print!("{}", crate::cmd_describe::events_table(&objects, now));
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

/// Columns as Knative's printer columns define them (`nimbus_api::printer`, the same the API
/// server's tables and the cluster's CRDs use), headers in kubectl's upper case.
pub(crate) fn table(kind: Kind, objects: &[Object], all_namespaces: bool) -> String {
    let columns = nimbus_api::printer::columns(kind);
    let mut head = vec!["NAME".to_string()];
    head.extend(columns.iter().map(|c| c.name.to_uppercase()));
    if all_namespaces {
        head.insert(0, "NAMESPACE".into());
    }
    let mut rows = vec![head];
    for o in objects {
        let json = o.to_json();
        let mut row = vec![o.name().to_string()];
        row.extend(columns.iter().map(|c| cell(c, &json)));
        if all_namespaces {
            row.insert(0, o.namespace().to_string());
        }
        rows.push(row);
    }
    render(&rows)
}

/// One cell as text; a condition not reported yet reads `Unknown`, as kubectl's Knative
/// plugin shows it.
fn cell(column: &nimbus_api::printer::PrinterColumn, obj: &Value) -> String {
    use nimbus_api::printer::Source;
    match column.cell(obj) {
        Value::Null => match column.source {
            Source::Ready("status") | Source::Condition(_, "status") => "Unknown".into(),
            _ => String::new(),
        },
        Value::String(s) => s,
        other => other.to_string(),
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
