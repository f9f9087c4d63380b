//! KEDA's ScaledObjects against real brokers, end to end with the real binary: each trigger's
//! YAML from KEDA's documentation (<https://keda.sh/docs/latest/scalers/>), changed only in
//! addresses, the target (a Knative Service: `apiVersion`/`kind` added) and, for the tests,
//! short `pollingInterval`/`cooldownPeriod` values. A backlog with no HTTP traffic scales the
//! revision from zero to ceil(backlog / target); draining it and waiting out the cooldown
//! brings it back to zero; a backlog at the activation threshold keeps it at zero.

use std::path::Path;
use std::time::{Duration, Instant};

use nimbus_testkit::brokers::Broker;
use nimbus_testkit::{Nimbus, condition, manifest};
use redis::AsyncCommands;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

/// The scaled Service: the sample function as a host process, idle revisions scale to zero
/// six seconds after their last request (Knative's shortest window).
fn worker() -> String {
    let annotations = [
        ("autoscaling.knative.dev/window", "6s"),
        ("nimbus.dev/scale-to-zero-grace-period", "0s"),
    ];
    let container = format!("command: [\"{BIN}\"]\nargs: [\"sample-function\"]");
    manifest::service(
        "worker",
        &annotations,
        "runtimeClassName: process",
        &container,
    )
}

/// Nimbus serving `worker`, already scaled to zero (no HTTP traffic ever).
async fn start() -> Nimbus {
    let (nimbus, _) = Nimbus::start_serving(
        Path::new(BIN),
        &["--autoscaler-tick", "250ms"],
        &worker(),
        "worker",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    wait_scale(&nimbus, Duration::from_secs(30), |actual, desired| {
        (actual, desired) == (0, 0)
    })
    .await;
    nimbus
}

/// The worker's latest revision's (actual, desired) instances.
async fn scale(nimbus: &Nimbus) -> (i64, i64) {
    let svc = nimbus.service("worker").await.unwrap();
    let revision = svc["status"]["latestReadyRevisionName"]
        .as_str()
        .unwrap()
        .to_string();
    let rev = nimbus
        .api_get(&format!(
            "/apis/serving.knative.dev/v1/namespaces/default/revisions/{revision}"
        ))
        .await
        .unwrap()
        .unwrap();
    let s = &rev["status"];
    (
        s["actualReplicas"].as_i64().unwrap_or(-1),
        s["desiredReplicas"].as_i64().unwrap_or(-1),
    )
}

async fn wait_scale(
    nimbus: &Nimbus,
    timeout: Duration,
    ok: impl Fn(i64, i64) -> bool,
) -> (i64, i64) {
    let deadline = Instant::now() + timeout;
    loop {
        let s = scale(nimbus).await;
        if ok(s.0, s.1) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "scale {s:?} never satisfied the condition"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The scale stays `expected` for `period`.
async fn stays(nimbus: &Nimbus, period: Duration, expected: (i64, i64)) {
    let until = Instant::now() + period;
    while Instant::now() < until {
        assert_eq!(scale(nimbus).await, expected, "the scale changed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn scaled_object(nimbus: &Nimbus, name: &str) -> Value {
    nimbus
        .api_get(&format!(
            "/apis/keda.sh/v1alpha1/namespaces/default/scaledobjects/{name}"
        ))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no ScaledObject {name}"))
}

/// Wait until the ScaledObject's condition `type_` has `status`; returns its status JSON.
async fn wait_condition(nimbus: &Nimbus, name: &str, type_: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let so = scaled_object(nimbus, name).await;
        if condition(&so["status"], type_).0 == status {
            return so["status"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {type_} never {status}: {:#}",
            so["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From zero to `expected` instances on a backlog, back to zero once it is drained.
async fn zero_to_n_and_back(
    nimbus: &Nimbus,
    expected: i64,
    fill: impl AsyncFnOnce(),
    drain: impl AsyncFnOnce(),
) {
    fill().await;
    wait_scale(nimbus, Duration::from_secs(30), |a, d| {
        (a, d) == (expected, expected)
    })
    .await;
    drain().await;
    wait_scale(nimbus, Duration::from_secs(30), |a, d| (a, d) == (0, 0)).await;
}

// === redis (lists) ===

/// KEDA's documentation, "Redis Lists" (address, listName, listLength, activationListLength).
fn redis_list_yaml(address: &str, activation: u32) -> String {
    format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: redis-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
  - type: redis
    metadata:
      address: {address}
      listName: mylist
      listLength: "5"
      activationListLength: "{activation}"
      enableTLS: "false"
      databaseIndex: "0"
"#
    )
}

async fn redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn push(conn: &mut redis::aio::MultiplexedConnection, list: &str, n: usize) {
    for i in 0..n {
        let _: () = conn.lpush(list, format!("item-{i}")).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_list_backlog_scales_from_zero_and_back_and_respects_activation() {
    let Some(broker) = Broker::redis() else {
        return;
    };
    let nimbus = start().await;
    let address = format!("127.0.0.1:{}", broker.port);
    nimbus.apply_ok(&redis_list_yaml(&address, 5));
    let mut conn = redis(&broker.url).await;
    wait_condition(&nimbus, "redis-scaledobject", "Ready", "True").await;

    push(&mut conn, "mylist", 5).await;
    stays(&nimbus, Duration::from_secs(4), (0, 0)).await;
    let status = wait_condition(&nimbus, "redis-scaledobject", "Active", "False").await;
    assert_eq!(status["externalMetricNames"][0], "s0-redis-mylist");

    // 12 items, listLength 5: ceil(12 / 5) = 3 instances.
    let drain = async || {
        let _: () = redis(&broker.url).await.del("mylist").await.unwrap();
    };
    zero_to_n_and_back(
        &nimbus,
        3,
        async || push(&mut conn, "mylist", 7).await,
        drain,
    )
    .await;
    let status = scaled_object(&nimbus, "redis-scaledobject").await["status"].clone();
    assert!(status["lastActiveTime"].is_string(), "{status:#}");

    let table = nimbus.cli_ok(&["get", "scaledobjects"]);
    let row = nimbus_testkit::row(&table, "redis-scaledobject");
    assert_eq!(
        row[1..],
        [
            "serving.knative.dev/v1.Service",
            "worker",
            "0",
            "100",
            "redis",
            "True",
            "False"
        ],
        "{table}"
    );
    if nimbus_testkit::kube::have_kubectl() {
        kubectl_shows_kedas_columns(&nimbus);
    }
}

/// `kubectl get scaledobjects` prints KEDA's printer columns; the kind is discoverable by its
/// short name and explainable.
fn kubectl_shows_kedas_columns(nimbus: &Nimbus) {
    let table = nimbus.kubectl_ok(&["get", "so"], None);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "SCALETARGETKIND",
            "SCALETARGETNAME",
            "MIN",
            "MAX",
            "TRIGGERS",
            "AUTHENTICATIONS",
            "READY",
            "ACTIVE",
            "AGE"
        ],
        "{table}"
    );
    let row = nimbus_testkit::row(&table, "redis-scaledobject");
    assert_eq!(
        row[1..8],
        [
            "serving.knative.dev/v1.Service",
            "worker",
            "0",
            "100",
            "redis",
            "True",
            "False"
        ],
        "{table}"
    );
    let explained = nimbus.kubectl_ok(&["explain", "scaledobjects.spec.triggers"], None);
    assert!(explained.contains("metadata"), "{explained}");
    // Served and discoverable by its plural (none exist: "No resources found" on stderr).
    nimbus.kubectl_ok(&["get", "triggerauthentications"], None);
}

/// KEDA's documentation: a TriggerAuthentication reading the password from a Secret.
#[tokio::test(flavor = "multi_thread")]
async fn redis_password_from_a_trigger_authentication() {
    let Some(broker) = Broker::redis_with_password("s3cr3t-pw") else {
        return;
    };
    let nimbus = start().await;
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: votes-db-secret\n  namespace: default\ntype: Opaque\nstringData:\n  redis_password: s3cr3t-pw\n";
    nimbus.apply_ok(secret);
    nimbus.apply_ok(
        r#"apiVersion: keda.sh/v1alpha1
kind: TriggerAuthentication
metadata:
  name: keda-trigger-auth-redis-secret
  namespace: default
spec:
  secretTargetRef:
  - parameter: password
    name: votes-db-secret
    key: redis_password
"#,
    );
    let yaml = redis_list_yaml(&format!("127.0.0.1:{}", broker.port), 0)
        .replace("      databaseIndex: \"0\"\n", "      databaseIndex: \"0\"\n    authenticationRef:\n      name: keda-trigger-auth-redis-secret\n");
    nimbus.apply_ok(&yaml);
    wait_condition(&nimbus, "redis-scaledobject", "Ready", "True").await;
    let url = format!("redis://:s3cr3t-pw@127.0.0.1:{}", broker.port);
    let mut conn = redis(&url).await;
    push(&mut conn, "mylist", 6).await;
    wait_scale(&nimbus, Duration::from_secs(30), |a, d| (a, d) == (2, 2)).await;
    let table = nimbus.cli_ok(&["get", "so"]);
    assert!(table.contains("keda-trigger-auth-redis-secret"), "{table}");

    // The wrong password: the trigger's error is in the status; the scale holds.
    nimbus.apply_ok(&secret.replace("s3cr3t-pw", "wrong"));
    let status = wait_condition(&nimbus, "redis-scaledobject", "Ready", "False").await;
    let (_, reason, message) = condition(&status, "Ready");
    assert_eq!(reason, "TriggerError", "{status:#}");
    assert!(message.contains("spec.triggers[0] (redis)"), "{message}");
    assert_eq!(
        scale(&nimbus).await,
        (2, 2),
        "a failing trigger keeps the scale"
    );
}

/// A broker that is not there is reported in the ScaledObject's status, and the other
/// trigger (cron) still scales.
#[tokio::test(flavor = "multi_thread")]
async fn a_bad_broker_address_is_reported_without_stopping_other_triggers() {
    let nimbus = start().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut yaml = redis_list_yaml(&closed.to_string(), 0);
    yaml.push_str(&cron_trigger_yaml(2));
    nimbus.apply_ok(&yaml);
    let status = wait_condition(&nimbus, "redis-scaledobject", "Ready", "False").await;
    let (_, reason, message) = condition(&status, "Ready");
    assert_eq!(reason, "TriggerError", "{status:#}");
    assert!(
        message.contains("spec.triggers[0] (redis)") && message.contains(&closed.to_string()),
        "{message}"
    );
    assert!(!message.contains("triggers[1]"), "{message}");
    wait_scale(&nimbus, Duration::from_secs(30), |a, d| (a, d) == (2, 2)).await;
    assert_eq!(
        condition(
            &scaled_object(&nimbus, "redis-scaledobject").await["status"],
            "Active"
        )
        .0,
        "True"
    );
}

// === cron ===

/// KEDA's documentation, "Cron" (timezone, start, end, desiredReplicas), as a second trigger;
/// the window is the current UTC hour's minutes around now.
fn cron_trigger_yaml(desired: u32) -> String {
    let now = chrono::Utc::now();
    let minute = |m: i64| {
        (now + chrono::Duration::minutes(m))
            .format("%M %H")
            .to_string()
    };
    format!(
        r#"  - type: cron
    metadata:
      timezone: Etc/UTC
      start: {} * * *
      end: {} * * *
      desiredReplicas: "{desired}"
"#,
        minute(-1),
        minute(5)
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn cron_window_scales_to_desired_replicas() {
    let nimbus = start().await;
    let yaml = format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: cron-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  pollingInterval: 1
  triggers:
{}"#,
        cron_trigger_yaml(3)
    );
    nimbus.apply_ok(&yaml);
    wait_scale(&nimbus, Duration::from_secs(30), |a, d| (a, d) == (3, 3)).await;
    // Deleting the ScaledObject hands the revision back to the HTTP autoscaler alone.
    nimbus.cli_ok(&["delete", "scaledobject", "cron-scaledobject"]);
    wait_scale(&nimbus, Duration::from_secs(30), |a, d| (a, d) == (0, 0)).await;
}

// === rabbitmq ===

#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_queue_length_scales_from_zero_and_back() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueuePurgeOptions};
    let Some(broker) = Broker::rabbitmq() else {
        return;
    };
    let nimbus = start().await;
    let conn = lapin::Connection::connect(&broker.url, Default::default())
        .await
        .unwrap();
    let channel = conn.create_channel().await.unwrap();
    channel
        .queue_declare(
            "hello".into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    // KEDA's documentation, "RabbitMQ Queue" (host, mode, value, queueName).
    nimbus.apply_ok(&format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: rabbitmq-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
  - type: rabbitmq
    metadata:
      host: {}
      protocol: auto
      mode: QueueLength
      value: "5"
      activationValue: "2"
      queueName: hello
"#,
        broker.url
    ));
    wait_condition(&nimbus, "rabbitmq-scaledobject", "Ready", "True").await;
    let publish = async |n: usize| {
        for i in 0..n {
            let body = format!("m{i}");
            channel
                .basic_publish(
                    "".into(),
                    "hello".into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    Default::default(),
                )
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    publish(2).await;
    stays(&nimbus, Duration::from_secs(4), (0, 0)).await;
    // 11 messages, value 5: 3 instances.
    let purge = async || {
        channel
            .queue_purge("hello".into(), QueuePurgeOptions::default())
            .await
            .unwrap();
    };
    zero_to_n_and_back(&nimbus, 3, async || publish(9).await, purge).await;
}

// === nats-jetstream ===

#[tokio::test(flavor = "multi_thread")]
async fn nats_jetstream_consumer_lag_scales_from_zero_and_back() {
    let Some(broker) = Broker::nats() else { return };
    let nimbus = start().await;
    let client = async_nats::connect(&broker.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "mystream".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("pull_consumer".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let monitoring = broker.monitoring_port().unwrap();
    // KEDA's documentation, "NATS JetStream".
    nimbus.apply_ok(&format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: nats-jetstream-scaledobject
  namespace: default
spec:
  pollingInterval: 1
  cooldownPeriod: 3
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  triggers:
  - type: nats-jetstream
    metadata:
      natsServerMonitoringEndpoint: "127.0.0.1:{monitoring}"
      account: "$G"
      stream: "mystream"
      consumer: "pull_consumer"
      lagThreshold: "10"
      activationLagThreshold: "15"
"#
    ));
    wait_condition(&nimbus, "nats-jetstream-scaledobject", "Ready", "True").await;
    let publish = async |n: usize| {
        for i in 0..n {
            js.publish("orders.new", format!("o{i}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    publish(15).await;
    stays(&nimbus, Duration::from_secs(4), (0, 0)).await;
    // 25 pending, lagThreshold 10: 3 instances; consuming and acking them all drains it.
    let drain = async || {
        use futures::StreamExt;
        let mut messages = consumer.fetch().max_messages(100).messages().await.unwrap();
        while let Some(m) = messages.next().await {
            m.unwrap().double_ack().await.unwrap();
        }
    };
    zero_to_n_and_back(&nimbus, 3, async || publish(10).await, drain).await;
}

// === redis-streams ===

#[tokio::test(flavor = "multi_thread")]
async fn redis_streams_pending_entries_scale_from_zero_and_back() {
    let Some(broker) = Broker::redis() else {
        return;
    };
    let nimbus = start().await;
    let mut conn = redis(&broker.url).await;
    let _: () = redis::cmd("XGROUP")
        .arg(&["CREATE", "my-stream", "consumer-group-1", "$", "MKSTREAM"])
        .query_async(&mut conn)
        .await
        .unwrap();
    // KEDA's documentation, "Redis Streams" (address, stream, consumerGroup,
    // pendingEntriesCount, activationLagCount).
    nimbus.apply_ok(&format!(
        r#"apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: redis-streams-scaledobject
  namespace: default
spec:
  scaleTargetRef:
    apiVersion: serving.knative.dev/v1
    kind: Service
    name: worker
  pollingInterval: 1
  cooldownPeriod: 3
  triggers:
  - type: redis-streams
    metadata:
      address: 127.0.0.1:{}
      stream: my-stream
      consumerGroup: consumer-group-1
      pendingEntriesCount: "10"
      databaseIndex: "0"
      enableTLS: "false"
"#,
        broker.port
    ));
    wait_condition(&nimbus, "redis-streams-scaledobject", "Ready", "True").await;
    let read = async |conn: &mut redis::aio::MultiplexedConnection| {
        let _: redis::Value = redis::cmd("XREADGROUP")
            .arg(&[
                "GROUP",
                "consumer-group-1",
                "c1",
                "COUNT",
                "100",
                "STREAMS",
                "my-stream",
                ">",
            ])
            .query_async(conn)
            .await
            .unwrap();
    };
    let fill = async || {
        for i in 0..25 {
            let _: String = conn.xadd("my-stream", "*", &[("n", i)]).await.unwrap();
        }
        read(&mut conn).await; // delivered, not acknowledged: 25 pending, target 10 → 3
    };
    let mut ack_conn = redis(&broker.url).await;
    zero_to_n_and_back(&nimbus, 3, fill, async || {
        let pending: redis::Value = redis::cmd("XPENDING")
            .arg(&["my-stream", "consumer-group-1", "-", "+", "100"])
            .query_async(&mut ack_conn)
            .await
            .unwrap();
        let redis::Value::Array(entries) = pending else {
            panic!("{pending:?}")
        };
        for e in entries {
            let redis::Value::Array(fields) = e else {
                continue;
            };
            let id: String = redis::from_redis_value(fields[0].clone()).unwrap();
            let _: i64 = ack_conn
                .xack("my-stream", "consumer-group-1", &[id])
                .await
                .unwrap();
        }
    })
    .await;
}
