//! Event sources end to end (issue #14, "events from brokers"), against real brokers started
//! by the test (`nimbus_testkit::brokers`): each source kind delivers its messages to a Service
//! that was at zero, as CloudEvents (the function records the `ce-*` headers it was given);
//! a message is acked only after a 2xx (a function that answers 500 first sees it again, and
//! the broker holds it meanwhile); after its retries a message is dead-lettered into the
//! invocation store and acked; and messages published before and during a `kill -9` of the
//! server are all delivered after its restart.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use nimbus_testkit::Nimbus;
use nimbus_testkit::api::wait_until;
use nimbus_testkit::brokers::Broker;
use nimbus_testkit::manifest::{annotate, test_app};
use redis::AsyncCommands as _;
use reqwest::Method;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

/// A directory the function (maybe another user) can write its records into.
fn records() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    dir
}

async fn start() -> Nimbus {
    tokio::task::spawn_blocking(|| {
        Nimbus::start_with(Path::new(BIN), &["--autoscaler-tick", "250ms"]).expect("nimbus serve")
    })
    .await
    .unwrap()
}

/// Deploy the test app as `name`, scaling to zero soon after it idles, and wait until it is
/// at zero.
async fn function_at_zero(nimbus: &Nimbus, name: &str) {
    let mut svc = test_app(name, "events");
    annotate(&mut svc, "autoscaling.knative.dev/window", "6s");
    annotate(&mut svc, "nimbus.dev/scale-to-zero-grace-period", "0s");
    nimbus.deploy(&svc).await;
    let path = format!("/apis/serving.knative.dev/v1/namespaces/default/revisions/{name}-00001");
    wait_until(
        "the function scales to zero",
        Duration::from_secs(60),
        async || {
            let rev = nimbus.api_get(&path).await.map_err(|e| e.to_string())?;
            let rev = rev.unwrap_or_default();
            let st = &rev["status"];
            match (
                st["actualReplicas"].as_i64(),
                st["desiredReplicas"].as_i64(),
            ) {
                (Some(0), Some(0)) => Ok(()),
                _ => Err(st.to_string()),
            }
        },
    )
    .await;
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// One recorded event: (id, type, source, subject, specversion, time, content-type, body).
fn fields(line: &str) -> Vec<String> {
    line.split('\t').map(str::to_owned).collect()
}

async fn wait_lines(file: &Path, n: usize, timeout: Duration) -> Vec<String> {
    wait_until("the events are delivered", timeout, async || {
        let got = lines(file);
        match got.len() >= n {
            true => Ok(got),
            false => Err(format!("{} of {n}: {got:?}", got.len())),
        }
    })
    .await
}

/// The `sink` YAML of the function `name` at `path`.
fn sink(name: &str, path: &str) -> String {
    format!(
        "  sink:\n    ref:\n      apiVersion: serving.knative.dev/v1\n      kind: Service\n      name: {name}\n    uri: \"{path}\"\n"
    )
}

fn event_path(file: &Path, flaky: bool) -> String {
    let flaky = if flaky { ",flaky" } else { "" };
    format!("/event?{}{flaky}", file.display())
}

/// The source's status, once its Ready condition is `ready`.
async fn wait_ready(nimbus: &Nimbus, resource: &str, name: &str, ready: &str) -> Value {
    let path = format!("/apis/{resource}/namespaces/default/{name}");
    wait_until(
        "the source's Ready condition",
        Duration::from_secs(60),
        async || {
            let obj = nimbus.api_get(&path).await.map_err(|e| e.to_string())?;
            let obj = obj.unwrap_or_default();
            let conds = obj["status"]["conditions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            match conds
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == ready)
            {
                true => Ok(obj["status"].clone()),
                false => Err(obj["status"].to_string()),
            }
        },
    )
    .await
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Entries of `stream` delivered to `group` but not acked.
/// Wait until the group has no entry of the stream pending (`what`: the wait, for its message).
async fn wait_acked(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
    what: &str,
) {
    wait_until(what, Duration::from_secs(10), async || {
        match pending(conn, stream, group).await {
            0 => Ok(()),
            n => Err(format!("{n} pending")),
        }
    })
    .await;
}

async fn pending(conn: &mut redis::aio::MultiplexedConnection, stream: &str, group: &str) -> i64 {
    let reply: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .unwrap();
    match reply {
        redis::Value::Array(items) => match items.first() {
            Some(redis::Value::Int(n)) => *n,
            _ => 0,
        },
        _ => 0,
    }
}

/// The `lag` of the first group in an `XINFO GROUPS` answer (entries not yet read).
fn lag_of(groups: &redis::Value) -> Option<i64> {
    let redis::Value::Array(groups) = groups else {
        return None;
    };
    let redis::Value::Array(fields) = groups.first()? else {
        return None;
    };
    fields.chunks(2).find_map(|kv| match kv {
        [redis::Value::BulkString(k), redis::Value::Int(n)] if k == b"lag" => Some(*n),
        _ => None,
    })
}

async fn failed_invocations(nimbus: &Nimbus) -> Vec<Value> {
    let (code, body) = nimbus
        .send(
            Method::GET,
            "/apis/nimbus.dev/v1/namespaces/default/invocations?state=Failed",
            None,
        )
        .await;
    assert_eq!(code, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stream_events_reach_a_function_at_zero_as_cloudevents() {
    let Some(redis) = Broker::redis() else { return };
    let nimbus = start().await;
    let dir = records();
    let file = dir.path().join("events");
    function_at_zero(&nimbus, "fn").await;
    let mut conn = redis_conn(&redis.url).await;
    let _: String = conn
        .xadd("orders", "*", &[("data", "first order")])
        .await
        .unwrap();
    let _: String = conn
        .xadd(
            "orders",
            "*",
            &[
                ("data", "{\"n\":2}"),
                ("ce-type", "com.example.order"),
                ("content-type", "application/json"),
            ],
        )
        .await
        .unwrap();
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: orders\nspec:\n  address: {}\n  stream: orders\n  group: nimbus\n{}",
        redis.url,
        sink("fn", &event_path(&file, false))
    ));
    let got = wait_lines(&file, 2, Duration::from_secs(60)).await;
    let first = fields(&got[0]);
    let second = fields(&got[1]);
    assert!(first[0].ends_with("-0"), "ce-id is the entry id: {first:?}");
    assert_eq!(first[1], "dev.knative.sources.redisstream");
    assert_eq!(
        first[2],
        "/apis/v1/namespaces/default/redisstreamsources/orders"
    );
    assert_eq!(first[3], "orders");
    assert_eq!(first[4], "1.0");
    assert!(first[5].ends_with('Z'), "ce-time: {first:?}");
    assert_eq!(first[7], "first order");
    assert_eq!(
        second[1], "com.example.order",
        "the message's own type is kept"
    );
    assert_eq!(second[6], "application/json");
    assert_eq!(second[7], "{\"n\":2}");
    let status = wait_ready(
        &nimbus,
        "sources.knative.dev/v1alpha1",
        "redisstreamsources/orders",
        "True",
    )
    .await;
    assert_eq!(
        status["sinkUri"],
        format!("http://fn.default.localhost{}", event_path(&file, false)).trim_end_matches('/')
    );
    // The events scaled the function up from zero.
    let metrics = nimbus
        .api_client()
        .get(format!("{}/metrics", nimbus.api_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"nimbus_revision_cold_starts_total{namespace="default",service="fn",configuration="fn",revision="fn-00001"} 1"#
        ),
        "{metrics}"
    );
    let table = nimbus.cli_ok(&["get", "redisstreamsources"]);
    assert!(
        table.contains("orders") && table.contains("True"),
        "{table}"
    );
    if nimbus_testkit::kube::have_kubectl() {
        // The printer columns, through the embedded API server.
        let table = nimbus.kubectl_ok(&["get", "redisstreamsources"], None);
        let header = table.lines().next().unwrap_or_default();
        assert!(
            header.contains("SINK") && header.contains("READY"),
            "{table}"
        );
        assert!(table.contains("http://fn.default.localhost"), "{table}");
    }
    wait_acked(&mut conn, "orders", "nimbus", "the entries are acked").await;

    // Ack only after success: the first answer is 500, the entry stays pending until the
    // retry succeeds.
    let flaky = dir.path().join("flaky");
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: retried\nspec:\n  address: {}\n  stream: retried\n  delivery:\n    retry: 3\n    backoffDelay: PT3S\n{}",
        redis.url,
        sink("fn", &event_path(&flaky, true))
    ));
    let id: String = conn
        .xadd("retried", "*", &[("data", "again")])
        .await
        .unwrap();
    let seen = dir
        .path()
        .join(format!("flaky.seen-{}", id.replace(['/', '.'], "_")));
    wait_until(
        "the first attempt fails",
        Duration::from_secs(30),
        async || match seen.exists() {
            true => Ok(()),
            false => Err("not yet".into()),
        },
    )
    .await;
    assert_eq!(
        pending(&mut conn, "retried", "retried").await,
        1,
        "held until a 2xx"
    );
    assert!(lines(&flaky).is_empty());
    let got = wait_lines(&flaky, 1, Duration::from_secs(30)).await;
    assert_eq!(fields(&got[0])[0], id, "the same event, delivered again");
    wait_acked(&mut conn, "retried", "retried", "the entry is acked").await;

    // Dead letters: a sink that always fails; after retry + 1 attempts the event is kept as a
    // failed invocation and the entry acked.
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: doomed\nspec:\n  address: {}\n  stream: doomed\n  delivery:\n    retry: 1\n    backoffDelay: PT0.1S\n{}",
        redis.url,
        sink("fn", "/status?500")
    ));
    let id: String = conn
        .xadd("doomed", "*", &[("data", "lost?")])
        .await
        .unwrap();
    let dead = wait_until(
        "the dead letter is stored",
        Duration::from_secs(60),
        async || {
            let failed = failed_invocations(&nimbus).await;
            failed
                .into_iter()
                .find(|inv| {
                    inv["status"]["error"]
                        .as_str()
                        .unwrap_or("")
                        .contains("doomed")
                })
                .ok_or_else(|| "no dead letter yet".to_owned())
        },
    )
    .await;
    assert_eq!(dead["status"]["attemptCount"], 2, "{dead}");
    assert_eq!(dead["spec"]["path"], "/status?500", "{dead}");
    let dead_text = dead.to_string();
    assert!(
        dead_text.contains(&id),
        "the dead letter keeps the event: {dead_text}"
    );
    wait_acked(
        &mut conn,
        "doomed",
        "doomed",
        "the dead-lettered entry is acked",
    )
    .await;

    // A missing sink is reported in the status.
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: nowhere\nspec:\n  address: {}\n  stream: nowhere\n{}",
        redis.url,
        sink("missing", "/")
    ));
    let status = wait_ready(
        &nimbus,
        "sources.knative.dev/v1alpha1",
        "redisstreamsources/nowhere",
        "False",
    )
    .await;
    let ready = &status["conditions"][0];
    assert_eq!(ready["reason"], "SinkNotFound", "{status}");
}

/// Bad specs are refused with field paths; an unreachable broker and a deleted source are
/// seen in the status and in what is consumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_validated_report_their_broker_and_stop_when_deleted() {
    let Some(redis) = Broker::redis() else { return };
    let nimbus = start().await;
    let out = nimbus.apply(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: bad\nspec:\n  address: http://x\n  parallelism: 0\n  delivery:\n    backoffDelay: soon\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    for path in [
        "spec.address",
        "spec.stream",
        "spec.sink",
        "spec.parallelism",
        "spec.delivery.backoffDelay",
    ] {
        assert!(stderr.contains(path), "{path} in: {stderr}");
    }

    // Nothing listens here: Ready is False with the reason, and says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    nimbus.deploy(&test_app("fn", "events")).await;
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: down\nspec:\n  address: redis://127.0.0.1:{closed}\n  stream: s\n{}",
        sink("fn", "/")
    ));
    let status = wait_ready(
        &nimbus,
        "sources.knative.dev/v1alpha1",
        "redisstreamsources/down",
        "False",
    )
    .await;
    assert_eq!(
        status["conditions"][0]["reason"], "BrokerUnavailable",
        "{status}"
    );

    // Deleted: its consumer stops, what comes later stays in the stream.
    let dir = records();
    let file = dir.path().join("events");
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: brief\nspec:\n  address: {}\n  stream: brief\n{}",
        redis.url,
        sink("fn", &event_path(&file, false))
    ));
    let mut conn = redis_conn(&redis.url).await;
    let _: String = conn.xadd("brief", "*", &[("data", "one")]).await.unwrap();
    wait_lines(&file, 1, Duration::from_secs(30)).await;
    nimbus.cli_ok(&["delete", "redisstreamsource", "brief"]);
    // The supervisor sees the deletion at once (its resync would take 5 s).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _: String = conn.xadd("brief", "*", &[("data", "two")]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lines(&file).len(), 1, "a deleted source consumes nothing");
}

/// At least once across `kill -9`: with the source made by `setup` (given the sink YAML),
/// `EACH` messages published by `publish` (its payload in, the event's `ce-id` out) before the
/// server is killed and `EACH` while it is down are all delivered after its restart
/// (duplicates allowed).
async fn survives_kill_9(
    setup: impl FnOnce(&Nimbus, &str),
    mut publish: impl AsyncFnMut(String) -> String,
) {
    const EACH: usize = 50;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_path_buf();
    let mut nimbus = tokio::task::spawn_blocking(move || {
        Nimbus::start_in(Path::new(BIN), &data_dir, &[]).expect("nimbus serve")
    })
    .await
    .unwrap();
    let dir = records();
    let file = dir.path().join("events");
    nimbus.deploy(&test_app("fn", "events")).await;
    setup(&nimbus, &sink("fn", &event_path(&file, false)));
    let mut ids = HashSet::new();
    for i in 0..EACH {
        ids.insert(publish(format!("before {i}")).await);
    }
    wait_lines(&file, 1, Duration::from_secs(60)).await;
    nimbus.kill();
    println!("{} delivered before kill -9", lines(&file).len());
    for i in 0..EACH {
        ids.insert(publish(format!("during {i}")).await);
    }
    let mut nimbus = tokio::task::spawn_blocking(move || {
        nimbus.restart().expect("restart");
        nimbus
    })
    .await
    .unwrap();
    wait_until(
        "every message is delivered after the restart",
        Duration::from_secs(120),
        async || {
            let got: HashSet<String> = lines(&file).iter().map(|l| fields(l)[0].clone()).collect();
            match ids.difference(&got).count() {
                0 => Ok(()),
                n => Err(format!("{n} of {} missing", ids.len())),
            }
        },
    )
    .await;
    nimbus.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stream_entries_survive_kill_9_of_the_server() {
    let Some(redis) = Broker::redis() else { return };
    let mut conn = redis_conn(&redis.url).await;
    let setup = |nimbus: &Nimbus, sink: &str| {
        nimbus.apply_ok(&format!(
            "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: many\nspec:\n  address: {}\n  stream: many\n  parallelism: 4\n{sink}",
            redis.url
        ));
    };
    survives_kill_9(setup, async |data| {
        conn.xadd("many", "*", &[("data", data)]).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_list_elements_survive_kill_9_of_the_server() {
    let Some(redis) = Broker::redis() else { return };
    let mut conn = redis_conn(&redis.url).await;
    let setup = |nimbus: &Nimbus, sink: &str| {
        nimbus.apply_ok(&format!(
            "apiVersion: sources.nimbus.dev/v1alpha1\nkind: RedisListSource\nmetadata:\n  name: many\nspec:\n  address: {}\n  list: many\n  parallelism: 4\n{sink}",
            redis.url
        ));
    };
    // A list element has no id: each is a structured CloudEvent with its own.
    let mut n = 0;
    survives_kill_9(setup, async |data| {
        n += 1;
        let id = format!("e-{n}");
        let event = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "/test", "type": "t", "data": data,
        });
        let _: i64 = conn.lpush("many", event.to_string()).await.unwrap();
        id
    })
    .await;
}

/// RabbitMQ: messages unacked when the server is killed go back to the queue. The source
/// declares its queue (not predeclared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_messages_survive_kill_9_of_the_server() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    let Some(rabbit) = Broker::rabbitmq() else {
        return;
    };
    let conn = lapin::Connection::connect(&rabbit.url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let port = rabbit.port;
    let setup = |nimbus: &Nimbus, sink: &str| {
        nimbus.apply_ok(&format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: rabbit\nstringData:\n  uri: amqp://127.0.0.1:{port}\n  username: guest\n  password: guest\n"
        ));
        nimbus.apply_ok(&format!(
            "apiVersion: sources.knative.dev/v1alpha1\nkind: RabbitmqSource\nmetadata:\n  name: work\nspec:\n  rabbitmqClusterReference:\n    connectionSecret:\n      name: rabbit\n  rabbitmqResourcesConfig:\n    queueName: work\n    parallelism: 4\n{sink}"
        ));
    };
    let mut declared = false;
    survives_kill_9(setup, async |data| {
        if !declared {
            wait_until(
                "the source declares its queue",
                Duration::from_secs(60),
                // A passive declaration of a missing queue closes its channel: one per look.
                async || {
                    let probe = conn.create_channel().await.map_err(|e| e.to_string())?;
                    probe
                        .queue_declare(
                            "work".into(),
                            QueueDeclareOptions {
                                passive: true,
                                ..Default::default()
                            },
                            FieldTable::default(),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                },
            )
            .await;
            declared = true;
        }
        let id = data.replace(' ', "-");
        ch.basic_publish(
            "".into(),
            "work".into(),
            BasicPublishOptions::default(),
            data.as_bytes(),
            lapin::BasicProperties::default().with_message_id(id.as_str().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
        id
    })
    .await;
}

/// NATS JetStream: fetched but unacked messages are sent again after the ack wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_messages_survive_kill_9_of_the_server() {
    let Some(nats) = Broker::nats() else { return };
    let js = async_nats::jetstream::new(async_nats::connect(nats.url.as_str()).await.unwrap());
    // The stream exists before the source: publishes while the server is down are kept.
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "WORK".into(),
        subjects: vec!["work.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let setup = |nimbus: &Nimbus, sink: &str| {
        nimbus.apply_ok(&format!(
            "apiVersion: sources.nimbus.dev/v1alpha1\nkind: NatsJetStreamSource\nmetadata:\n  name: work\nspec:\n  address: {}\n  stream: WORK\n  parallelism: 4\n{sink}",
            nats.url
        ));
    };
    survives_kill_9(setup, async |data| {
        let ack = js
            .publish("work.item", data.into())
            .await
            .unwrap()
            .await
            .unwrap();
        format!("WORK:{}", ack.sequence)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_queue_messages_reach_a_function_at_zero_as_cloudevents() {
    use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::{AMQPValue, FieldTable};
    let Some(rabbit) = Broker::rabbitmq() else {
        return;
    };
    let nimbus = start().await;
    let dir = records();
    let file = dir.path().join("events");
    function_at_zero(&nimbus, "fn").await;
    let conn = lapin::Connection::connect(&rabbit.url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        "cloudEvents:type".into(),
        AMQPValue::LongString("com.example.job".into()),
    );
    ch.basic_publish(
        "".into(),
        "jobs".into(),
        BasicPublishOptions::default(),
        b"job one",
        lapin::BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("text/plain".into())
            .with_headers(headers),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    ch.basic_publish(
        "".into(),
        "jobs".into(),
        BasicPublishOptions::default(),
        b"job two",
        lapin::BasicProperties::default().with_message_id("m-2".into()),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let port = rabbit.port;
    nimbus.apply_ok(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: rabbit\nstringData:\n  uri: 127.0.0.1:{port}\n  username: guest\n  password: guest\n"
    ));
    nimbus.apply_ok(&format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: RabbitmqSource\nmetadata:\n  name: jobs\nspec:\n  rabbitmqClusterReference:\n    connectionSecret:\n      name: rabbit\n  rabbitmqResourcesConfig:\n    predeclared: true\n    queueName: jobs\n    parallelism: 2\n  delivery:\n    retry: 3\n    backoffDelay: PT0.5S\n{}",
        sink("fn", &event_path(&file, true))
    ));
    // Each message fails once (flaky), is redelivered, then succeeds.
    let got = wait_lines(&file, 2, Duration::from_secs(90)).await;
    let mut by_id: Vec<Vec<String>> = got.iter().map(|l| fields(l)).collect();
    by_id.sort();
    assert_eq!(by_id[0][0], "m-1");
    assert_eq!(
        by_id[0][1], "com.example.job",
        "the AMQP binding's type is kept"
    );
    assert_eq!(
        by_id[0][2],
        "/apis/v1/namespaces/default/rabbitmqsources/jobs#jobs"
    );
    assert_eq!(by_id[0][3], "jobs");
    assert_eq!(by_id[0][4], "1.0");
    assert_eq!(by_id[0][6], "text/plain");
    assert_eq!(by_id[0][7], "job one");
    assert_eq!(by_id[1][0], "m-2");
    assert_eq!(by_id[1][1], "dev.knative.rabbitmq.event");
    assert!(
        dir.path().join("events.seen-m-1").exists(),
        "the first attempt failed"
    );
    wait_ready(
        &nimbus,
        "sources.knative.dev/v1alpha1",
        "rabbitmqsources/jobs",
        "True",
    )
    .await;
    // Both were acked: the queue is empty and nothing is unacked.
    wait_until(
        "the queue is drained",
        Duration::from_secs(20),
        async || {
            let q = ch
                .queue_declare(
                    "jobs".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            match q.message_count() {
                0 => Ok(()),
                n => Err(format!("{n} messages left")),
            }
        },
    )
    .await;
    assert_eq!(
        lines(&file).len(),
        2,
        "each delivered once after its success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_messages_reach_a_function_at_zero_as_cloudevents() {
    let Some(nats) = Broker::nats() else { return };
    let nimbus = start().await;
    let dir = records();
    let file = dir.path().join("events");
    function_at_zero(&nimbus, "fn").await;
    nimbus.apply_ok(&format!(
        "apiVersion: sources.nimbus.dev/v1alpha1\nkind: NatsJetStreamSource\nmetadata:\n  name: telemetry\nspec:\n  address: {}\n  stream: TELEMETRY\n  subject: telemetry.>\n  parallelism: 2\n  delivery:\n    backoffDelay: PT0.5S\n{}",
        nats.url,
        sink("fn", &event_path(&file, true))
    ));
    wait_ready(
        &nimbus,
        "sources.nimbus.dev/v1alpha1",
        "natsjetstreamsources/telemetry",
        "True",
    )
    .await;
    let client = async_nats::connect(nats.url.as_str()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-type", "com.example.reading");
    js.publish_with_headers("telemetry.a", headers, "21.5".into())
        .await
        .unwrap()
        .await
        .unwrap();
    js.publish("telemetry.b", "22.0".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let got = wait_lines(&file, 2, Duration::from_secs(60)).await;
    let mut rows: Vec<Vec<String>> = got.iter().map(|l| fields(l)).collect();
    rows.sort();
    assert_eq!(rows[0][0], "TELEMETRY:1", "ce-id is the stream sequence");
    assert_eq!(rows[0][1], "com.example.reading");
    assert_eq!(rows[0][3], "telemetry.a");
    assert_eq!(rows[0][7], "21.5");
    assert_eq!(rows[1][0], "TELEMETRY:2");
    assert_eq!(rows[1][1], "dev.nimbus.sources.natsjetstream");
    assert_eq!(
        rows[1][2],
        "/apis/v1/namespaces/default/natsjetstreamsources/telemetry"
    );
    assert!(
        dir.path().join("events.seen-TELEMETRY:1").exists(),
        "the first attempt failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_list_elements_reach_a_function_at_zero_as_cloudevents() {
    let Some(redis) = Broker::redis() else { return };
    let nimbus = start().await;
    let dir = records();
    let file = dir.path().join("events");
    function_at_zero(&nimbus, "fn").await;
    let mut conn = redis_conn(&redis.url).await;
    let _: i64 = conn.lpush("tasks", "task one").await.unwrap();
    let _: i64 = conn
        .lpush(
            "tasks",
            r#"{"specversion":"1.0","id":"t-2","source":"/producer","type":"com.example.task","data":"task two"}"#,
        )
        .await
        .unwrap();
    // The password comes from a Secret (this connection stays authenticated).
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("s3cret pass")
        .query_async(&mut conn)
        .await
        .unwrap();
    nimbus.apply_ok(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: redis\nstringData:\n  password: s3cret pass\n",
    );
    nimbus.apply_ok(&format!(
        "apiVersion: sources.nimbus.dev/v1alpha1\nkind: RedisListSource\nmetadata:\n  name: tasks\nspec:\n  address: {}\n  list: tasks\n  password:\n    secretKeyRef: {{name: redis, key: password}}\n  delivery:\n    backoffDelay: PT0.5S\n{}",
        redis.url,
        sink("fn", &event_path(&file, true))
    ));
    let got = wait_lines(&file, 2, Duration::from_secs(60)).await;
    let first = fields(&got[0]);
    let second = fields(&got[1]);
    assert_eq!(first[1], "dev.nimbus.sources.redislist");
    assert_eq!(first[3], "tasks");
    assert_eq!(first[7], "task one");
    assert_eq!(
        second[0], "t-2",
        "a structured CloudEvent keeps its attributes"
    );
    assert_eq!(second[1], "com.example.task");
    assert_eq!(second[2], "/producer");
    assert_eq!(second[7], "task two");
    // Both finished: nothing left in the list or the source's processing list.
    wait_until(
        "the processing list is empty",
        Duration::from_secs(10),
        async || {
            let keys: Vec<String> = conn.keys("tasks*").await.map_err(|e| e.to_string())?;
            match keys.is_empty() {
                true => Ok(()),
                false => Err(format!("{keys:?}")),
            }
        },
    )
    .await;
}

/// `parallelism` bounds the deliveries in flight: with 1 the function never sees two events
/// at once; with 5 it does (its `/overlap` answers 500 to overlapping requests, which, with no
/// retries, are dead-lettered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_bounds_the_deliveries_in_flight() {
    let Some(redis) = Broker::redis() else { return };
    let nimbus = start().await;
    let mut svc = test_app("fn", "events");
    annotate(&mut svc, "autoscaling.knative.dev/max-scale", "1");
    nimbus.deploy(&svc).await;
    let mut conn = redis_conn(&redis.url).await;
    let overlaps = async |conn: &mut redis::aio::MultiplexedConnection, name: &str, n: i64| {
        for i in 0..10 {
            let _: String = conn.xadd(name, "*", &[("data", i)]).await.unwrap();
        }
        nimbus.apply_ok(&format!(
            "apiVersion: sources.knative.dev/v1alpha1\nkind: RedisStreamSource\nmetadata:\n  name: {name}\nspec:\n  address: {}\n  stream: {name}\n  parallelism: {n}\n  delivery:\n    retry: 0\n{}",
            redis.url,
            sink("fn", "/overlap?ms=200")
        ));
        // Consumed: nothing left to read or pending in the group.
        wait_until(
            "the stream is consumed",
            Duration::from_secs(60),
            async || {
                let groups: redis::Value = redis::cmd("XINFO")
                    .arg("GROUPS")
                    .arg(name)
                    .query_async(conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let lag = lag_of(&groups);
                match lag == Some(0) && pending(conn, name, name).await == 0 {
                    true => Ok(()),
                    false => Err(format!("{groups:?}")),
                }
            },
        )
        .await;
        let failed = failed_invocations(&nimbus).await;
        failed
            .iter()
            .filter(|inv| {
                let error = inv["status"]["error"].as_str().unwrap_or("");
                error.contains(&format!("default/{name}:"))
            })
            .count()
    };
    assert_eq!(overlaps(&mut conn, "serial", 1).await, 0, "one at a time");
    assert!(
        overlaps(&mut conn, "batched", 5).await > 0,
        "five at a time overlap"
    );
}
