//! The CRDs are what a Kubernetes API server accepts as structural schemas, and declare what
//! the embedded API server serves (names, columns, immutability).

use super::*;

/// Every kind's CRD as JSON, made once for all tests.
fn all() -> &'static [(Kind, Value)] {
    static ALL: std::sync::OnceLock<Vec<(Kind, Value)>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        let crds = crds().expect("the CRDs");
        Kind::on_cluster()
            .zip(crds.iter().map(|c| serde_json::to_value(c).unwrap()))
            .collect()
    })
}

fn schema(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
}

/// Keywords a structural schema may not use anywhere.
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "definitions",
    "dependencies",
    "id",
    "patternProperties",
    "additionalItems",
    "const",
    "nullable",
    "default",
];

/// Keywords a branch of `allOf`/`anyOf`/`oneOf`/`not` may not use (they belong to the
/// structural part of the schema).
const NOT_IN_JUNCTORS: &[&str] = &[
    "type",
    "description",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
];

/// Every violation of Kubernetes' structural-schema rules under `node`, with its path.
fn violations(path: &str, node: &Value, in_junctor: bool, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        out.push(format!("{path}: not a schema object: {node}"));
        return;
    };
    for key in FORBIDDEN {
        if map.contains_key(*key) {
            out.push(format!("{path}: has {key}"));
        }
    }
    if map.get("uniqueItems") == Some(&json!(true)) {
        out.push(format!("{path}: uniqueItems: true"));
    }
    if in_junctor {
        for key in NOT_IN_JUNCTORS.iter().filter(|k| map.contains_key(**k)) {
            out.push(format!("{path}: {key} inside a junctor"));
        }
    } else {
        structural_node(path, map, out);
    }
    for (key, child) in map {
        match key.as_str() {
            "properties" => {
                for (name, prop) in child.as_object().into_iter().flatten() {
                    violations(&format!("{path}.{name}"), prop, in_junctor, out);
                }
            }
            "items" => violations(&format!("{path}[]"), child, in_junctor, out),
            "additionalProperties" if child.is_object() => {
                violations(&format!("{path}{{}}"), child, in_junctor, out)
            }
            "allOf" | "anyOf" | "oneOf" => {
                for (i, branch) in child.as_array().into_iter().flatten().enumerate() {
                    violations(&format!("{path}.{key}[{i}]"), branch, true, out);
                }
            }
            "not" => violations(&format!("{path}.not"), child, true, out),
            _ => {}
        }
    }
}

/// The rules for a node of the structural part: a single type (unless int-or-string or
/// preserving unknown fields), properties or additionalProperties (not both, never `false`).
fn structural_node(path: &str, map: &serde_json::Map<String, Value>, out: &mut Vec<String>) {
    let flag = |k: &str| map.get(k) == Some(&json!(true));
    match map.get("type") {
        Some(Value::String(t)) if !t.is_empty() => {}
        None if flag("x-kubernetes-int-or-string")
            || flag("x-kubernetes-preserve-unknown-fields") => {}
        other => out.push(format!("{path}: type is {other:?}")),
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if map
        .get("additionalProperties")
        .is_some_and(Value::is_boolean)
    {
        out.push(format!("{path}: additionalProperties is a boolean"));
    }
    if map.get("items").is_some_and(|i| !i.is_object()) {
        out.push(format!("{path}: items is not one schema"));
    }
}

#[test]
fn every_schema_is_structural() {
    for &(kind, ref crd) in all() {
        let root = schema(crd);
        let mut found = Vec::new();
        violations(kind.as_str(), root, false, &mut found);
        assert!(found.is_empty(), "{kind}:\n{}", found.join("\n"));
        assert_eq!(root["type"], "object", "{kind}");
        assert_eq!(
            root["properties"]["metadata"],
            json!({"type": "object"}),
            "{kind}: the root metadata is the API server's"
        );
        for field in ["apiVersion", "kind", "spec", "status"] {
            assert!(root["properties"][field].is_object(), "{kind}: {field}");
        }
    }
}

#[test]
fn the_checker_finds_what_kubernetes_refuses() {
    let bad = json!({"type": "object", "properties": {
        "a": {"$ref": "#/x"},
        "b": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "c": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": false},
        "d": {"type": "array", "items": {"description": "no type"}, "uniqueItems": true},
    }});
    let mut found = Vec::new();
    violations("t", &bad, false, &mut found);
    let joined = found.join("\n");
    for expected in [
        "t.a: has $ref",
        "t.b: type is None",
        "t.b.anyOf[0]: type inside a junctor",
        "t.c: both properties and additionalProperties",
        "t.d: uniqueItems: true",
        "t.d[]: type is None",
    ] {
        assert!(joined.contains(expected), "{expected} not in:\n{joined}");
    }
}

/// The paths of every node that keeps unknown fields.
fn preserving(path: &str, node: &Value, out: &mut Vec<String>) {
    if node["x-kubernetes-preserve-unknown-fields"] == json!(true) {
        out.push(path.to_string());
    }
    for (name, prop) in node["properties"].as_object().into_iter().flatten() {
        preserving(&format!("{path}.{name}"), prop, out);
    }
    if node["items"].is_object() {
        preserving(&format!("{path}[]"), &node["items"], out);
    }
    if node["additionalProperties"].is_object() {
        preserving(&format!("{path}{{}}"), &node["additionalProperties"], out);
    }
}

#[test]
fn unknown_fields_are_preserved_only_in_free_form_json() {
    for &(kind, ref crd) in all() {
        let mut found = Vec::new();
        preserving("", schema(crd), &mut found);
        // KEDA's fields Nimbus does not implement (fallback, scaling modifiers, the secret
        // providers) are kept as given (any JSON), to be refused with a reason rather than
        // pruned without one.
        let unexpected: Vec<&String> = found
            .iter()
            .filter(|p| !p.ends_with(".managedFields[].fieldsV1"))
            .filter(|_| !kind.is_keda())
            .collect();
        assert!(unexpected.is_empty(), "{kind}: {unexpected:?}");
    }
}

#[test]
fn names_short_names_and_categories_are_the_kinds() {
    for &(kind, ref crd) in all() {
        assert_eq!(crd["metadata"]["name"], crd_name(kind));
        let names = &crd["spec"]["names"];
        assert_eq!(names["kind"], kind.as_str());
        assert_eq!(names["plural"], kind.plural());
        assert_eq!(names["listKind"], format!("{kind}List"));
        assert_eq!(names["shortNames"], json!(kind.short_names()));
        assert_eq!(names["categories"], json!(kind.categories()));
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["name"], kind.version());
        assert_eq!(version["subresources"]["status"], json!({}));
        assert_eq!(
            crd["metadata"]["labels"][crate::install::LABEL_MANAGED_BY],
            "nimbus"
        );
        assert_eq!(
            crd["metadata"]["labels"][crate::install::LABEL_PART_OF],
            "nimbus"
        );
    }
    assert_eq!(
        crd_name(Kind::Ingress),
        "ingresses.networking.internal.knative.dev"
    );
}

/// The schema node at a printer column's path: through the CRD's schema, except under the
/// root `metadata`, which is the API server's ObjectMeta.
fn column_target<'a>(root: &'a Value, object_meta: &'a Value, path: &[&str]) -> Option<&'a Value> {
    let (mut node, rest) = match path {
        ["metadata", rest @ ..] => (object_meta, rest),
        _ => (root, path),
    };
    for name in rest {
        node = match &node["properties"][*name] {
            Value::Null => node.get("additionalProperties")?,
            found => found,
        };
    }
    Some(node)
}

#[test]
fn printer_columns_name_fields_of_the_schema() {
    let definitions = nimbus_api::schema::definitions();
    let object_meta = &definitions["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"];
    for &(kind, ref crd) in all() {
        let root = schema(crd);
        let declared = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap();
        let columns = printer::columns(kind);
        assert_eq!(declared.len(), columns.len(), "{kind}");
        for (column, declared) in columns.iter().zip(declared) {
            assert_eq!(declared["jsonPath"], column.json_path(), "{kind}");
            let (path, want_type) = match column.source {
                printer::Source::Field(path) => (path.to_vec(), column.type_),
                printer::Source::Ready(field) | printer::Source::Condition(_, field) => {
                    let item = &root["properties"]["status"]["properties"]["conditions"]["items"];
                    for f in ["type", field] {
                        assert_eq!(item["properties"][f]["type"], "string", "{kind}: {f}");
                    }
                    (vec!["status", "conditions"], "array")
                }
                printer::Source::Keys(_) => unreachable!("{kind}: only core kinds count keys"),
                printer::Source::Each(path, field) => {
                    let items = column_target(root, object_meta, path)
                        .unwrap_or_else(|| panic!("{kind}: {} has no field", column.name));
                    assert_eq!(items["type"], "array", "{kind}: {}", column.name);
                    assert_eq!(items["items"]["properties"][field]["type"], column.type_);
                    continue;
                }
            };
            let node = column_target(root, object_meta, &path)
                .unwrap_or_else(|| panic!("{kind}: {} has no field", column.name));
            assert_eq!(node["type"], want_type, "{kind}: {}", column.name);
        }
    }
}

#[test]
fn a_revision_spec_is_immutable() {
    for &(kind, ref crd) in all() {
        let rules = &schema(crd)["properties"]["spec"]["x-kubernetes-validations"];
        match kind {
            Kind::Revision => {
                assert_eq!(rules[0]["rule"], REVISION_IMMUTABLE_RULE);
                let message = rules[0]["message"].as_str().unwrap();
                assert!(message.contains(REVISION_SPEC_IMMUTABLE), "{message}");
            }
            _ => assert!(rules.is_null(), "{kind}"),
        }
    }
}

#[test]
fn container_names_are_optional_as_in_knative() {
    let (_, svc) = &all()[0];
    let container = &schema(svc)["properties"]["spec"]["properties"]["template"]["properties"]["spec"]
        ["properties"]["containers"]["items"];
    assert_eq!(container["properties"]["image"]["type"], "string");
    assert!(
        container.get("required").is_none(),
        "{}",
        container["required"]
    );
    let env = &container["properties"]["env"]["items"];
    assert_eq!(
        env["required"],
        json!(["name"]),
        "other required fields stay"
    );
}

#[test]
fn a_crd_fits_in_a_client_side_apply_annotation() {
    // `kubectl apply -f` without --server-side keeps the whole object in an annotation of at
    // most 256 KiB; stay below it so the printed manifests apply either way.
    for &(kind, ref crd) in all() {
        let size = crd.to_string().len();
        assert!(size < 256 * 1024, "{kind}: {size} bytes");
    }
}
