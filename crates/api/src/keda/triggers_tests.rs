use super::*;

fn trigger(type_: &str, metadata: &[(&str, &str)]) -> ScaleTriggers {
    ScaleTriggers {
        type_: type_.into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn resolved(t: &ScaleTriggers, auth: &[(&str, &str)]) -> Result<Trigger, Vec<FieldError>> {
    let auth: BTreeMap<String, String> = auth
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = BTreeMap::from([("RABBIT_URL".to_string(), "amqp://u:p@h:5672/".to_string())]);
    let sources = Sources {
        metadata: &t.metadata,
        auth: Some(&auth),
        env: Some(&env),
    };
    parse("spec.triggers[0]", 0, t, sources)
}

fn paths(errors: Vec<FieldError>) -> Vec<String> {
    errors.into_iter().map(|e| e.path).collect()
}

#[test]
fn redis_list_takes_kedas_defaults() {
    let t = trigger(
        "redis",
        &[("address", "localhost:6379"), ("listName", "mylist")],
    );
    let parsed = resolved(&t, &[]).unwrap();
    assert_eq!((parsed.target, parsed.activation), (5.0, 0.0));
    assert_eq!(parsed.metric_type, MetricType::AverageValue);
    assert_eq!(parsed.metric_name, "s0-redis-mylist");
    let Source::RedisList { conn, list } = parsed.source else {
        panic!()
    };
    assert_eq!(
        (conn.address.as_str(), list.as_str(), conn.database),
        ("localhost:6379", "mylist", 0)
    );
}

#[test]
fn redis_host_and_port_and_password_from_authentication() {
    let t = trigger(
        "redis",
        &[
            ("host", "10.0.0.1"),
            ("port", "6380"),
            ("listName", "l"),
            ("listLength", "10"),
            ("activationListLength", "3"),
            ("databaseIndex", "2"),
        ],
    );
    let parsed = resolved(&t, &[("password", "s3cret")]).unwrap();
    assert_eq!((parsed.target, parsed.activation), (10.0, 3.0));
    let Source::RedisList { conn, .. } = parsed.source else {
        panic!()
    };
    assert_eq!(conn.address, "10.0.0.1:6380");
    assert_eq!(
        (conn.password.as_deref(), conn.database),
        (Some("s3cret"), 2)
    );
    assert!(!format!("{conn:?}").contains("s3cret"));
}

#[test]
fn missing_and_bad_metadata_is_reported_with_field_paths() {
    let t = trigger("redis", &[("listLength", "five"), ("address", "h:1")]);
    let errors = paths(resolved(&t, &[]).unwrap_err());
    assert_eq!(errors, ["spec.triggers[0].metadata.listName"]);
    let t = trigger(
        "redis",
        &[
            ("listLength", "five"),
            ("address", "h:1"),
            ("listName", "l"),
        ],
    );
    assert_eq!(
        paths(resolved(&t, &[]).unwrap_err()),
        ["spec.triggers[0].metadata.listLength"]
    );
    let t = trigger("kafka", &[]);
    assert_eq!(
        paths(resolved(&t, &[]).unwrap_err()),
        ["spec.triggers[0].metadata.type"]
    );
}

#[test]
fn an_address_may_come_later_from_the_authentication() {
    let t = trigger("redis", &[("listName", "l")]);
    assert!(parse("p", 0, &t, Sources::pending(&t.metadata)).is_ok());
    assert_eq!(
        paths(resolved(&t, &[]).unwrap_err()),
        ["spec.triggers[0].metadata.address"]
    );
}

#[test]
fn redis_streams_measure_follows_kedas_rules() {
    let measure = |md: &[(&str, &str)]| {
        let mut all = vec![("address", "h:1"), ("stream", "s")];
        all.extend_from_slice(md);
        let parsed = resolved(&trigger("redis-streams", &all), &[]).unwrap();
        let Source::RedisStreams { measure, .. } = parsed.source else {
            panic!()
        };
        (measure, parsed.target)
    };
    assert_eq!(measure(&[]), (StreamMeasure::Length, 5.0));
    assert_eq!(
        measure(&[("consumerGroup", "g")]),
        (StreamMeasure::Pending, 5.0)
    );
    assert_eq!(
        measure(&[("consumerGroup", "g"), ("pendingEntriesCount", "10")]),
        (StreamMeasure::Pending, 10.0)
    );
    assert_eq!(
        measure(&[("consumerGroup", "g"), ("lagCount", "7")]),
        (StreamMeasure::Lag, 7.0)
    );
}

#[test]
fn nats_jetstream_reads_the_monitoring_endpoint() {
    let t = trigger(
        "nats-jetstream",
        &[
            ("natsServerMonitoringEndpoint", "nats.nats.svc:8222"),
            ("account", "$G"),
            ("stream", "orders"),
            ("consumer", "worker"),
        ],
    );
    let parsed = resolved(&t, &[]).unwrap();
    assert_eq!((parsed.target, parsed.activation), (10.0, 0.0));
    let Source::NatsJetStream { url, .. } = parsed.source else {
        panic!()
    };
    assert_eq!(
        url,
        "http://nats.nats.svc:8222/jsz?acc=%24G&consumers=true&config=true"
    );
}

#[test]
fn rabbitmq_modes_and_legacy_queue_length() {
    let base = [
        ("host", "amqp://guest:guest@localhost:5672/"),
        ("queueName", "q"),
    ];
    let with = |md: &[(&str, &str)]| {
        let mut all = base.to_vec();
        all.extend_from_slice(md);
        resolved(&trigger("rabbitmq", &all), &[])
    };
    assert_eq!(
        with(&[]).unwrap().target,
        20.0,
        "KEDA's default queue length"
    );
    assert_eq!(with(&[("queueLength", "7")]).unwrap().target, 7.0);
    let q = with(&[
        ("mode", "QueueLength"),
        ("value", "3"),
        ("activationValue", "2"),
    ])
    .unwrap();
    assert_eq!((q.target, q.activation), (3.0, 2.0));
    assert_eq!(
        paths(with(&[("mode", "MessageRate"), ("value", "3")]).unwrap_err()),
        ["spec.triggers[0].metadata.mode"]
    );
    let http = resolved(
        &trigger(
            "rabbitmq",
            &[("host", "http://h:15672/"), ("queueName", "q")],
        ),
        &[],
    );
    assert_eq!(paths(http.unwrap_err()), ["spec.triggers[0].metadata.host"]);
}

#[test]
fn rabbitmq_host_from_env_and_credentials_from_authentication() {
    let t = trigger(
        "rabbitmq",
        &[("hostFromEnv", "RABBIT_URL"), ("queueName", "q")],
    );
    let Source::RabbitMq { url, .. } = resolved(&t, &[]).unwrap().source else {
        panic!()
    };
    assert_eq!(url, "amqp://u:p@h:5672/");
    let t = trigger("rabbitmq", &[("queueName", "q"), ("vhostName", "/")]);
    let auth = [
        ("host", "amqp://h:5672"),
        ("username", "a b"),
        ("password", "p@ss"),
    ];
    let Source::RabbitMq { url, .. } = resolved(&t, &auth).unwrap().source else {
        panic!()
    };
    assert_eq!(url, "amqp://a%20b:p%40ss@h:5672/%2F");
    let t = trigger("rabbitmq", &[("hostFromEnv", "NOPE"), ("queueName", "q")]);
    let errors = paths(resolved(&t, &[]).unwrap_err());
    assert_eq!(errors[0], "spec.triggers[0].metadata.hostFromEnv");
}

#[test]
fn cron_takes_a_time_zone_and_five_field_expressions() {
    let ok = [
        ("timezone", "Asia/Kolkata"),
        ("start", "0 6 * * *"),
        ("end", "0 20 * * *"),
        ("desiredReplicas", "10"),
    ];
    let parsed = resolved(&trigger("cron", &ok), &[]).unwrap();
    assert!(matches!(parsed.source, Source::Cron { desired: 10, .. }));
    let bad = [
        ("timezone", "Mars/Olympus"),
        ("start", "61 * * * *"),
        ("end", "0 20 * * * *"),
        ("desiredReplicas", "0"),
    ];
    let errors = paths(resolved(&trigger("cron", &bad), &[]).unwrap_err());
    assert_eq!(errors.len(), 4, "{errors:?}");
}

#[test]
fn cron_window_is_kedas_next_end_before_next_start() {
    use chrono::TimeZone;
    let tz = chrono_tz::Europe::Paris;
    let at = |h: u32, m: u32| {
        tz.with_ymd_and_hms(2026, 6, 1, h, m, 0)
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    assert!(!cron_active(tz, "0 6 * * *", "0 20 * * *", at(5, 59)));
    assert!(cron_active(tz, "0 6 * * *", "0 20 * * *", at(6, 0)));
    assert!(cron_active(tz, "0 6 * * *", "0 20 * * *", at(19, 59)));
    assert!(!cron_active(tz, "0 6 * * *", "0 20 * * *", at(20, 0)));
    assert!(
        cron_active(tz, "0 22 * * *", "0 2 * * *", at(23, 0)),
        "a window across midnight"
    );
}

#[test]
fn metric_type_value_or_average_value_only() {
    let mut t = trigger("redis", &[("address", "h:1"), ("listName", "l")]);
    t.metric_type = Some("Value".into());
    assert_eq!(resolved(&t, &[]).unwrap().metric_type, MetricType::Value);
    t.metric_type = Some("Utilization".into());
    assert_eq!(
        paths(resolved(&t, &[]).unwrap_err()),
        ["spec.triggers[0].metricType"]
    );
}

#[test]
fn a_target_named_alone_is_the_knative_service_of_that_name() {
    // KEDA's documentation writes `scaleTargetRef: {name: ...}` (a Deployment to KEDA).
    let doc = serde_json::json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "redis-scaledobject"},
        "spec": {"scaleTargetRef": {"name": "my-app"}, "triggers": [{"type": "cron",
            "metadata": {"timezone": "Asia/Kolkata", "start": "0 6 * * *", "end": "0 20 * * *",
                         "desiredReplicas": "10"}}]}
    });
    let obj = crate::parse::decode_object(None, doc).expect("KEDA's shape applies");
    let crate::Object::ScaledObject(so) = obj else {
        panic!("a ScaledObject")
    };
    let target = &so.spec.scale_target_ref;
    assert_eq!(target.api_version.as_deref(), Some(crate::API_VERSION));
    assert_eq!(target.kind.as_deref(), Some("Service"));
    let deployment = serde_json::json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "x"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "my-app"}, "triggers": [{"type": "cron",
            "metadata": {"timezone": "UTC", "start": "0 6 * * *", "end": "0 20 * * *", "desiredReplicas": "1"}}]}
    });
    let errors = crate::parse::decode_object(None, deployment).unwrap_err();
    assert!(
        errors.iter().any(|e| e.path == "spec.scaleTargetRef"),
        "{errors:?}"
    );
}
