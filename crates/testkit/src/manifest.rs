//! Knative Service manifests for tests, written the way users write them (YAML), from the few
//! parts tests vary: name, template annotations, pod-spec fields and container fields.

/// A `serving.knative.dev/v1` Service. `spec` holds extra pod-spec lines (e.g.
/// `"runtimeClassName: process"`), `container` the container's fields (e.g.
/// `"image: x\nenv: [{name: A, value: b}]"`); both are plain YAML, indented here.
pub fn service(name: &str, annotations: &[(&str, &str)], spec: &str, container: &str) -> String {
    let annotations: String = annotations
        .iter()
        .map(|(k, v)| format!("        {k}: \"{v}\"\n"))
        .collect();
    let metadata = if annotations.is_empty() {
        String::new()
    } else {
        format!("    metadata:\n      annotations:\n{annotations}")
    };
    let spec: String = spec.lines().map(|l| format!("      {l}\n")).collect();
    let container: String = container
        .lines()
        .enumerate()
        .map(|(i, l)| format!("        {}{l}\n", if i == 0 { "- " } else { "  " }))
        .collect();
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  template:\n{metadata}    spec:\n{spec}      containers:\n{container}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_each_part() {
        let yaml = service(
            "s",
            &[("a/b", "1")],
            "runtimeClassName: process",
            "command: [x]\nenv: []",
        );
        assert_eq!(
            yaml,
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  template:\n    metadata:\n      annotations:\n        a/b: \"1\"\n    spec:\n      runtimeClassName: process\n      containers:\n        - command: [x]\n          env: []\n"
        );
    }
}
