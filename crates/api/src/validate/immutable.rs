//! What changed between two versions of an immutable part of an object, in the words Knative
//! uses when it refuses the change: `Immutable fields changed (-old +new)`, followed by each
//! changed field with its old and new value.

use serde_json::Value;

/// How many changed fields a message lists; the rest are counted.
const MAX_LISTED: usize = 3;
/// How much of a value a message quotes.
const MAX_SHOWN: usize = 60;

/// One changed leaf: its path and its values before and after (`None`: absent).
#[derive(Debug, PartialEq)]
struct Change<'a> {
    path: String,
    old: Option<&'a Value>,
    new: Option<&'a Value>,
}

/// `Immutable fields changed (-old +new): spec.x: -1 +2; spec.y: -"a" +(unset)`, naming the
/// fields under `path` that differ between `old` and `new`.
pub fn describe(path: &str, old: &Value, new: &Value) -> String {
    let mut changes = Vec::new();
    collect(path.to_string(), Some(old), Some(new), &mut changes);
    let listed: Vec<String> = changes
        .iter()
        .take(MAX_LISTED)
        .map(|c| format!("{}: -{} +{}", c.path, show(c.old), show(c.new)))
        .collect();
    let mut text = format!(
        "Immutable fields changed (-old +new): {}",
        listed.join("; ")
    );
    if changes.len() > MAX_LISTED {
        text.push_str(&format!(" (and {} more)", changes.len() - MAX_LISTED));
    }
    text
}

fn collect<'a>(
    path: String,
    old: Option<&'a Value>,
    new: Option<&'a Value>,
    out: &mut Vec<Change<'a>>,
) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort_unstable();
            keys.dedup();
            for k in keys {
                collect(format!("{path}.{k}"), a.get(k), b.get(k), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => {
            for i in 0..a.len().max(b.len()) {
                collect(format!("{path}[{i}]"), a.get(i), b.get(i), out);
            }
        }
        (a, b) if a != b => out.push(Change {
            path,
            old: a,
            new: b,
        }),
        _ => {}
    }
}

fn show(v: Option<&Value>) -> String {
    let Some(v) = v else {
        return "(unset)".into();
    };
    let text = v.to_string();
    match text.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_each_changed_leaf_with_both_values() {
        let old =
            json!({"containers": [{"image": "a", "env": [{"name": "X"}]}], "timeoutSeconds": 300});
        let new = json!({"containers": [{"image": "b"}], "timeoutSeconds": 300, "x": true});
        assert_eq!(
            describe("spec", &old, &new),
            "Immutable fields changed (-old +new): spec.containers[0].env: -[{\"name\":\"X\"}] +(unset); \
             spec.containers[0].image: -\"a\" +\"b\"; spec.x: -(unset) +true"
        );
    }

    #[test]
    fn long_lists_are_counted_and_long_values_cut() {
        let old = json!({"a": 1, "b": 1, "c": 1, "d": 1, "e": "x".repeat(100)});
        let new = json!({"a": 2, "b": 2, "c": 2, "d": 2, "e": "y"});
        let text = describe("spec", &old, &new);
        assert!(text.ends_with(" (and 2 more)"), "{text}");
        assert!(show(Some(&old["e"])).ends_with("..."));
    }
}
