//! Knative Service manifests for tests, written the way users write them (YAML), from the few
//! parts tests vary: name, template annotations, pod-spec fields and container fields; and, for
//! tests that change many parts, as JSON (which `nimbus apply` reads as YAML) to edit in place.

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

/// A Service running the `nimbus-test-app` binary as a host process (template annotation
/// `nimbus.dev/runtime: process`) with env `MESSAGE=<message>`, which its `/` answers with
/// (`hello from test-app: <message>`). Edit the JSON for anything else.
pub fn test_app(name: &str, message: &str) -> serde_json::Value {
    let app = crate::image::test_app_binary();
    serde_json::json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"template": {
            "metadata": {"annotations": {"nimbus.dev/runtime": "process"}},
            "spec": {"containers": [{
                "command": [app.to_string_lossy()],
                "env": [{"name": "MESSAGE", "value": message}],
            }]},
        }},
    })
}

/// Set the test app's `MESSAGE` (the first env entry of [`test_app`]'s container): a new
/// template, so a new revision.
pub fn set_message(svc: &mut serde_json::Value, message: &str) {
    svc["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = message.into();
}

/// Set one annotation of the revision template.
pub fn annotate(svc: &mut serde_json::Value, key: &str, value: &str) {
    svc["spec"]["template"]["metadata"]["annotations"][key] = value.into();
}

/// The router host of a Service in namespace `default` (domain `localhost`).
pub fn host_of(service: &str) -> String {
    format!("{service}.default.localhost")
}

/// What the test app's `/` answers for `message`.
pub fn hello(message: &str) -> String {
    format!("hello from test-app: {message}")
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
