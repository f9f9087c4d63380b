use super::*;

#[test]
fn value_at_follows_paths() {
    let v = json!({"spec": {"traffic": [{"percent": 10}, {"percent": 80}]}});
    assert_eq!(value_at(&v, "spec.traffic[1].percent"), Some(&json!(80)));
    assert_eq!(value_at(&v, "spec.traffic[2].percent"), None);
    assert_eq!(value_at(&v, ""), None);
}

#[test]
fn invalid_status_quotes_values_and_lists_causes() {
    let input = json!({"metadata": {"name": "hello"}, "spec": {"x": 1, "y": "z"}});
    let errors = [
        FieldError::new("spec.x", "must be 2"),
        FieldError::new("spec.w", "is required"),
    ];
    let status = ApiError::invalid(Kind::Service, "hello", &errors, &input).to_status();
    assert_eq!(status["code"], 422);
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(
        status["message"],
        "Service.serving.knative.dev \"hello\" is invalid: [spec.x: Invalid value: 1: must be 2, spec.w: is required]"
    );
    assert_eq!(status["details"]["kind"], "Service");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.x");
    assert_eq!(
        status["details"]["causes"][0]["reason"],
        "FieldValueInvalid"
    );
}

#[test]
fn store_errors_map_to_kubernetes_reasons() {
    let nf = ApiError::from(StoreError::NotFound {
        kind: Kind::Route,
        namespace: "d".into(),
        name: "r".into(),
    });
    assert_eq!(nf.code(), StatusCode::NOT_FOUND);
    assert_eq!(nf.to_string(), "routes.serving.knative.dev \"r\" not found");
    let ae = ApiError::from(StoreError::AlreadyExists {
        kind: Kind::Service,
        namespace: "d".into(),
        name: "s".into(),
    });
    assert_eq!(ae.to_status()["reason"], "AlreadyExists");
    let gone = ApiError::from(StoreError::Gone {
        requested: 1,
        oldest: 5,
    });
    assert_eq!((gone.code(), gone.reason()), (StatusCode::GONE, "Expired"));
}

#[test]
fn long_values_are_cut() {
    let long = Value::String("x".repeat(500));
    assert!(show_value(&long).len() < 130);
    assert!(show_value(&long).ends_with("..."));
}
