//! Event delivery from brokers (issue #14): for each broker (a Redis stream, a Redis list, a
//! NATS JetStream stream, a RabbitMQ queue), the same messages consumed by the broker's own
//! Rust client the idiomatic at-least-once way (the peer), then delivered by a Nimbus event
//! source to a Service through the router, in the same run.
//!
//! ```text
//! cargo build --release -p nimbus -p nimbus-test-app -p nimbus-bench
//! target/release/broker-events --bin-dir target/release --messages 20000
//! ```
//!
//! Two measurements per side:
//! - **throughput**: `--messages` are published first (a backlog), then the consumer starts
//!   (the peer's loop, or the source being created); the rate is the messages received
//!   between the first and the last receipt, over that time;
//! - **latency**: with the consumer idle and waiting, `--latency-messages` are published one
//!   by one at `--rate` per second, each carrying its publish time (µs since the epoch);
//!   publish → receipt by the peer's loop, or → arrival at the function, p50 and p99.
//!
//! The peer reads `--parallelism` messages at a time (XREADGROUP COUNT, BLMOVE then LMOVE, a
//! JetStream fetch, the AMQP prefetch) and acks each batch after recording it, as the source
//! does after delivering it. The function is `nimbus-test-app`'s `/event?<file>,stamp`
//! (records each CloudEvent with its arrival time), one instance (min-scale = max-scale = 1).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt as _;
use nimbus_bench::summary::{self, Better, Figure};
use nimbus_bench::{nimbus, quiet};
use nimbus_testkit::brokers::Broker;
use redis::AsyncCommands as _;

const BROKERS: [&str; 4] = ["redis-stream", "redis-list", "nats", "rabbitmq"];

struct Opts {
    bin_dir: PathBuf,
    brokers: Vec<&'static str>,
    messages: usize,
    latency_messages: usize,
    rate: u32,
    parallelism: usize,
}

/// One side's figures.
#[derive(Default, Clone, Copy)]
struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// (publish µs, receipt µs) of each message received.
type Receipts = Arc<Mutex<Vec<(u128, u128)>>>;

fn now_us() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn main() {
    let opts = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let test_app = opts.bin_dir.join("nimbus-test-app");
    let mut server = nimbus::Server::start(&opts.bin_dir.join("nimbus"), &opts.bin_dir)
        .unwrap_or_else(|e| fail(&e));
    let records = tempfile::tempdir().unwrap_or_else(|e| fail(&e.to_string()));
    // The function may run as another user.
    let _ = std::fs::set_permissions(
        records.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    );
    deploy_sink(&server, &test_app).unwrap_or_else(|e| fail(&e));
    server
        .wait_ready_replicas("sink-00001", 1, Duration::from_secs(60))
        .unwrap_or_else(|e| fail(&e));

    let mut rows = Vec::new();
    for name in &opts.brokers {
        let broker = match *name {
            "redis-stream" | "redis-list" => Broker::redis(),
            "nats" => Broker::nats(),
            _ => Broker::rabbitmq(),
        }
        .unwrap_or_else(|| fail(&format!("{name}: the broker is not installed")));
        let bench = Bench {
            kind: name,
            url: broker.url.clone(),
            port: broker.port,
            parallelism: opts.parallelism,
        };
        eprintln!("{name}: peer throughput");
        idle();
        let peer_tp = rt
            .block_on(bench.peer_throughput("peer-tp", opts.messages))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        eprintln!("{name}: peer latency");
        idle();
        let peer_lat = rt
            .block_on(bench.peer_latency("peer-lat", opts.latency_messages, opts.rate))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        eprintln!("{name}: nimbus throughput");
        idle();
        let file = records.path().join(format!("{name}-tp"));
        rt.block_on(bench.setup("nimbus-tp"))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        rt.block_on(bench.publish_backlog("nimbus-tp", opts.messages))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let source = bench
            .create_source(&server, "nimbus-tp", &file)
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let got =
            wait_lines(&file, opts.messages).unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let nimbus_tp = throughput(&got);
        let _ = server.api("DELETE", &source, "");
        eprintln!("{name}: nimbus latency");
        idle();
        let file = records.path().join(format!("{name}-lat"));
        rt.block_on(bench.setup("nimbus-lat"))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let source = bench
            .create_source(&server, "nimbus-lat", &file)
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        // Wait until the source reads (a first message arrives), then measure from a clean
        // file: the paced messages only.
        rt.block_on(bench.publish_paced("nimbus-lat", 1, 1))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        wait_lines(&file, 1).unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let _ = std::fs::remove_file(&file);
        rt.block_on(bench.publish_paced("nimbus-lat", opts.latency_messages, opts.rate))
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let got = wait_lines(&file, opts.latency_messages)
            .unwrap_or_else(|e| fail(&format!("{name}: {e}")));
        let nimbus_lat = latency(&got);
        let _ = server.api("DELETE", &source, "");
        rows.push((
            *name,
            Figures {
                rate: peer_tp.rate,
                ..peer_lat
            },
            Figures {
                rate: nimbus_tp.rate,
                ..nimbus_lat
            },
        ));
        drop(broker);
    }
    server.stop();

    println!(
        "broker-events: {} messages (throughput), {} at {}/s (latency), parallelism {}, one run",
        opts.messages, opts.latency_messages, opts.rate, opts.parallelism
    );
    println!(
        "| broker | peer msgs/s | Nimbus msgs/s | Nimbus/peer | peer p50 / p99 | Nimbus p50 / p99 |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, peer, nim) in rows {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2} | {} / {} | {} / {} |",
            peer.rate,
            nim.rate,
            nim.rate / peer.rate,
            ms(peer.p50),
            ms(peer.p99),
            ms(nim.p50),
            ms(nim.p99)
        );
        let throughput = format!("{name}: events delivered");
        let latency = format!("{name}: publish → function, p50");
        summary::record(&Figure {
            bench: "broker-events",
            figure: &throughput,
            value: nim.rate,
            peer: "the broker's own client",
            peer_value: peer.rate,
            unit: "msg/s",
            better: Better::Higher,
        });
        summary::record(&Figure {
            bench: "broker-events",
            figure: &latency,
            value: nim.p50.as_secs_f64() * 1e3,
            peer: "the broker's own client",
            peer_value: peer.p50.as_secs_f64() * 1e3,
            unit: "ms",
            better: Better::Lower,
        });
    }
}

fn parse_args() -> Opts {
    let mut opts = Opts {
        bin_dir: PathBuf::from("target/release"),
        brokers: BROKERS.to_vec(),
        messages: 20_000,
        latency_messages: 1_000,
        rate: 200,
        parallelism: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--bin-dir" => opts.bin_dir = PathBuf::from(value()),
            "--broker" => {
                let v = value();
                opts.brokers = match BROKERS.iter().find(|b| **b == v) {
                    Some(b) => vec![*b],
                    None if v == "all" => BROKERS.to_vec(),
                    None => usage(),
                }
            }
            "--messages" => opts.messages = value().parse().unwrap_or_else(|_| usage()),
            "--latency-messages" => {
                opts.latency_messages = value().parse().unwrap_or_else(|_| usage())
            }
            "--rate" => opts.rate = value().parse().unwrap_or_else(|_| usage()),
            "--parallelism" => opts.parallelism = value().parse().unwrap_or_else(|_| usage()),
            _ => usage(),
        }
    }
    if opts.messages < 2 || opts.latency_messages == 0 || opts.rate == 0 || opts.parallelism == 0 {
        usage()
    }
    opts
}

fn usage() -> ! {
    eprintln!(
        "usage: broker-events [--bin-dir DIR] [--broker redis-stream|redis-list|nats|rabbitmq|all] \
         [--messages N] [--latency-messages N] [--rate PER_SECOND] [--parallelism N]"
    );
    std::process::exit(2)
}

fn idle() {
    if !quiet::wait_for_idle(0.9, Duration::from_secs(20)) {
        eprintln!("  (the CPUs were not 90% idle after 20 s; measuring anyway)");
    }
}

/// The test app as Service `sink`, one instance kept ready and no more.
fn deploy_sink(server: &nimbus::Server, test_app: &Path) -> Result<(), String> {
    let svc = serde_json::json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": "sink", "namespace": "default"},
        "spec": {"template": {
            "metadata": {"annotations": {
                "autoscaling.knative.dev/min-scale": "1",
                "autoscaling.knative.dev/max-scale": "1",
            }},
            "spec": {
                "runtimeClassName": "process",
                "containers": [{"command": [test_app.display().to_string()]}],
            },
        }}
    });
    server.api(
        "POST",
        "/apis/serving.knative.dev/v1/namespaces/default/services",
        &svc.to_string(),
    )?;
    Ok(())
}

/// Poll `file` until it has `n` lines; the lines.
fn wait_lines(file: &Path, n: usize) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let count = text.lines().count();
        if count >= n {
            return Ok(text.lines().map(str::to_owned).collect());
        }
        if Instant::now() > deadline {
            return Err(format!("only {count} of {n} events arrived in 900 s"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (publish µs, arrival µs) of a line of `/event?<file>,stamp`: the body is the publish
/// time, the last field the arrival.
fn stamps(line: &str) -> Option<(u128, u128)> {
    let fields: Vec<&str> = line.split('\t').collect();
    let published = fields.get(7)?.split_whitespace().last()?.parse().ok()?;
    let arrived = fields.last()?.parse().ok()?;
    Some((published, arrived))
}

fn throughput(lines: &[String]) -> Figures {
    let arrivals: Vec<(u128, u128)> = lines.iter().filter_map(|l| stamps(l)).collect();
    rate_of(&arrivals)
}

fn latency(lines: &[String]) -> Figures {
    let arrivals: Vec<(u128, u128)> = lines.iter().filter_map(|l| stamps(l)).collect();
    latencies(&arrivals)
}

/// Messages per second between the first and the last receipt.
fn rate_of(receipts: &[(u128, u128)]) -> Figures {
    let first = receipts.iter().map(|r| r.1).min().unwrap_or(0);
    let last = receipts.iter().map(|r| r.1).max().unwrap_or(0);
    let span = Duration::from_micros((last - first) as u64);
    Figures {
        rate: (receipts.len().saturating_sub(1)) as f64 / span.as_secs_f64(),
        ..Figures::default()
    }
}

fn latencies(receipts: &[(u128, u128)]) -> Figures {
    let mut lat: Vec<u128> = receipts.iter().map(|(p, r)| r.saturating_sub(*p)).collect();
    lat.sort_unstable();
    let at = |q: f64| {
        let i = ((lat.len().saturating_sub(1)) as f64 * q).round() as usize;
        Duration::from_micros(lat.get(i).copied().unwrap_or(0) as u64)
    };
    Figures {
        rate: 0.0,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn fail(msg: &str) -> ! {
    eprintln!("broker-events: {msg}");
    std::process::exit(1)
}

/// One broker's side of the bench: `name` is the stream, list, JetStream stream or queue.
#[derive(Clone)]
struct Bench {
    kind: &'static str,
    url: String,
    port: u16,
    parallelism: usize,
}

impl Bench {
    async fn redis(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        redis::Client::open(self.url.as_str())
            .map_err(|e| e.to_string())?
            // Reads block for a second: room beyond it.
            .get_multiplexed_async_connection_with_config(
                &redis::AsyncConnectionConfig::new()
                    .set_response_timeout(Some(Duration::from_secs(10))),
            )
            .await
            .map_err(|e| e.to_string())
    }

    async fn jetstream(&self) -> Result<async_nats::jetstream::Context, String> {
        let client = async_nats::connect(self.url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        Ok(async_nats::jetstream::new(client))
    }

    async fn amqp(&self) -> Result<(lapin::Connection, lapin::Channel), String> {
        let conn = lapin::Connection::connect(&self.url, lapin::ConnectionProperties::default())
            .await
            .map_err(|e| e.to_string())?;
        let ch = conn.create_channel().await.map_err(|e| e.to_string())?;
        Ok((conn, ch))
    }

    /// Create what must exist before publishing: the JetStream stream, the durable queue.
    async fn setup(&self, name: &str) -> Result<(), String> {
        match self.kind {
            "nats" => {
                let js = self.jetstream().await?;
                js.get_or_create_stream(async_nats::jetstream::stream::Config {
                    name: name.to_uppercase(),
                    subjects: vec![format!("{}.>", name.to_uppercase())],
                    storage: async_nats::jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            }
            "rabbitmq" => {
                let (_conn, ch) = self.amqp().await?;
                ch.queue_declare(
                    name.into(),
                    lapin::options::QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    lapin::types::FieldTable::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Publish `n` messages as fast as the broker takes them (pipelined, confirmed).
    async fn publish_backlog(&self, name: &str, n: usize) -> Result<(), String> {
        const CHUNK: usize = 500;
        match self.kind {
            "redis-stream" | "redis-list" => {
                let mut conn = self.redis().await?;
                for start in (0..n).step_by(CHUNK) {
                    let mut pipe = redis::pipe();
                    for i in start..(start + CHUNK).min(n) {
                        let body = format!("{i} {}", now_us());
                        if self.kind == "redis-stream" {
                            pipe.xadd(name, "*", &[("data", body)]).ignore();
                        } else {
                            pipe.lpush(name, body).ignore();
                        }
                    }
                    let () = pipe
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            "nats" => {
                let js = self.jetstream().await?;
                let subject = format!("{}.m", name.to_uppercase());
                for start in (0..n).step_by(CHUNK) {
                    let mut acks = Vec::new();
                    for i in start..(start + CHUNK).min(n) {
                        let body = format!("{i} {}", now_us());
                        acks.push(
                            js.publish(subject.clone(), body.into())
                                .await
                                .map_err(|e| e.to_string())?,
                        );
                    }
                    for ack in acks {
                        ack.await.map_err(|e| e.to_string())?;
                    }
                }
            }
            _ => {
                let (_conn, ch) = self.amqp().await?;
                ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                for start in (0..n).step_by(CHUNK) {
                    let mut confirms = Vec::new();
                    for i in start..(start + CHUNK).min(n) {
                        let body = format!("{i} {}", now_us());
                        confirms.push(
                            ch.basic_publish(
                                "".into(),
                                name.into(),
                                lapin::options::BasicPublishOptions::default(),
                                body.as_bytes(),
                                lapin::BasicProperties::default().with_delivery_mode(2),
                            )
                            .await
                            .map_err(|e| e.to_string())?,
                        );
                    }
                    for c in confirms {
                        c.await.map_err(|e| e.to_string())?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Publish `n` messages one at a time, `rate` per second, each carrying its publish time.
    async fn publish_paced(&self, name: &str, n: usize, rate: u32) -> Result<(), String> {
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        match self.kind {
            "redis-stream" | "redis-list" => {
                let mut conn = self.redis().await?;
                for i in 0..n {
                    tick.tick().await;
                    let body = format!("{i} {}", now_us());
                    if self.kind == "redis-stream" {
                        let _: String = conn
                            .xadd(name, "*", &[("data", body)])
                            .await
                            .map_err(|e| e.to_string())?;
                    } else {
                        let _: i64 = conn.lpush(name, body).await.map_err(|e| e.to_string())?;
                    }
                }
            }
            "nats" => {
                let js = self.jetstream().await?;
                let subject = format!("{}.m", name.to_uppercase());
                for i in 0..n {
                    tick.tick().await;
                    let body = format!("{i} {}", now_us());
                    js.publish(subject.clone(), body.into())
                        .await
                        .map_err(|e| e.to_string())?
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            _ => {
                let (_conn, ch) = self.amqp().await?;
                ch.confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await
                    .map_err(|e| e.to_string())?;
                for i in 0..n {
                    tick.tick().await;
                    let body = format!("{i} {}", now_us());
                    ch.basic_publish(
                        "".into(),
                        name.into(),
                        lapin::options::BasicPublishOptions::default(),
                        body.as_bytes(),
                        lapin::BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .map_err(|e| e.to_string())?
                    .await
                    .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// The peer on a backlog: publish `n`, then consume them all.
    async fn peer_throughput(&self, name: &str, n: usize) -> Result<Figures, String> {
        self.setup(name).await?;
        self.publish_backlog(name, n).await?;
        let receipts: Receipts = Arc::default();
        self.consume(name, n, receipts.clone()).await?;
        let got = receipts.lock().map_err(|e| e.to_string())?.clone();
        Ok(rate_of(&got))
    }

    /// The peer waiting while `n` messages are published at `rate`.
    async fn peer_latency(&self, name: &str, n: usize, rate: u32) -> Result<Figures, String> {
        self.setup(name).await?;
        let receipts: Receipts = Arc::default();
        let consumer = {
            let (me, name, receipts) = (self.clone(), name.to_owned(), receipts.clone());
            tokio::spawn(async move { me.consume(&name, n, receipts).await })
        };
        // Let the consumer connect and wait before the first message.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.publish_paced(name, n, rate).await?;
        consumer.await.map_err(|e| e.to_string())??;
        let got = receipts.lock().map_err(|e| e.to_string())?.clone();
        Ok(latencies(&got))
    }

    /// Consume `n` messages with the broker's client, at least once: read up to
    /// `parallelism`, record each (publish time from the body, receipt time), then ack.
    async fn consume(&self, name: &str, n: usize, receipts: Receipts) -> Result<(), String> {
        let p = self.parallelism;
        let record = |body: &[u8]| {
            let at = now_us();
            let published = std::str::from_utf8(body)
                .ok()
                .and_then(|b| b.split_whitespace().last())
                .and_then(|t| t.parse().ok())
                .unwrap_or(at);
            if let Ok(mut r) = receipts.lock() {
                r.push((published, at));
            }
        };
        let count = || receipts.lock().map_or(0, |r| r.len());
        match self.kind {
            "redis-stream" => {
                let mut conn = self.redis().await?;
                let _: Result<(), _> = conn.xgroup_create_mkstream(name, "peer", "0").await;
                let opts = redis::streams::StreamReadOptions::default()
                    .group("peer", "peer-1")
                    .count(p)
                    .block(1000);
                while count() < n {
                    let reply: redis::streams::StreamReadReply = conn
                        .xread_options(&[name], &[">"], &opts)
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut ids = Vec::new();
                    for key in reply.keys {
                        for entry in key.ids {
                            if let Some(redis::Value::BulkString(b)) = entry.map.get("data") {
                                record(b);
                            }
                            ids.push(entry.id);
                        }
                    }
                    if !ids.is_empty() {
                        let _: i64 = conn
                            .xack(name, "peer", &ids)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            "redis-list" => {
                let mut conn = self.redis().await?;
                let processing = format!("{name}:processing");
                while count() < n {
                    let first: Option<Vec<u8>> = conn
                        .blmove(
                            name,
                            &processing,
                            redis::Direction::Right,
                            redis::Direction::Left,
                            1.0,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    let Some(first) = first else { continue };
                    let mut batch = vec![first];
                    while batch.len() < p {
                        let next: Option<Vec<u8>> = conn
                            .lmove(
                                name,
                                &processing,
                                redis::Direction::Right,
                                redis::Direction::Left,
                            )
                            .await
                            .map_err(|e| e.to_string())?;
                        match next {
                            Some(v) => batch.push(v),
                            None => break,
                        }
                    }
                    let mut pipe = redis::pipe();
                    for e in &batch {
                        record(e);
                        pipe.lrem(&processing, 1, e.as_slice()).ignore();
                    }
                    let () = pipe
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
            "nats" => {
                use async_nats::jetstream::consumer::{AckPolicy, pull};
                let js = self.jetstream().await?;
                let stream = js
                    .get_stream(name.to_uppercase())
                    .await
                    .map_err(|e| e.to_string())?;
                let consumer = stream
                    .get_or_create_consumer(
                        "peer",
                        pull::Config {
                            durable_name: Some("peer".into()),
                            ack_policy: AckPolicy::Explicit,
                            max_ack_pending: p as i64 * 2,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                while count() < n {
                    let mut batch = consumer
                        .fetch()
                        .max_messages(p)
                        .expires(Duration::from_secs(1))
                        .messages()
                        .await
                        .map_err(|e| e.to_string())?;
                    let mut got = Vec::new();
                    while let Some(m) = batch.next().await {
                        let m = m.map_err(|e| e.to_string())?;
                        record(&m.payload);
                        got.push(m);
                    }
                    for m in got {
                        m.double_ack().await.map_err(|e| e.to_string())?;
                    }
                }
            }
            _ => {
                let (_conn, ch) = self.amqp().await?;
                ch.basic_qos(
                    p.min(u16::MAX as usize) as u16,
                    lapin::options::BasicQosOptions::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
                let mut consumer = ch
                    .basic_consume(
                        name.into(),
                        "peer".into(),
                        lapin::options::BasicConsumeOptions::default(),
                        lapin::types::FieldTable::default(),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                while count() < n {
                    let Some(d) = consumer.next().await else {
                        return Err("the broker ended the consumer".into());
                    };
                    let d = d.map_err(|e| e.to_string())?;
                    record(&d.data);
                    d.ack(lapin::options::BasicAckOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }

    /// Create the Nimbus source for `name`, delivering to the `sink` Service's
    /// `/event?<file>,stamp`; its API path.
    fn create_source(
        &self,
        server: &nimbus::Server,
        name: &str,
        file: &Path,
    ) -> Result<String, String> {
        let p = self.parallelism;
        let sink = serde_json::json!({
            "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "sink"},
            "uri": format!("/event?{},stamp", file.display()),
        });
        let meta = serde_json::json!({"name": name, "namespace": "default"});
        let (group, plural, body) = match self.kind {
            "redis-stream" => (
                "sources.knative.dev",
                "redisstreamsources",
                serde_json::json!({
                    "kind": "RedisStreamSource",
                    "spec": {"address": self.url, "stream": name, "group": "nimbus",
                             "parallelism": p, "sink": sink},
                }),
            ),
            "redis-list" => (
                "sources.nimbus.dev",
                "redislistsources",
                serde_json::json!({
                    "kind": "RedisListSource",
                    "spec": {"address": self.url, "list": name, "parallelism": p, "sink": sink},
                }),
            ),
            "nats" => (
                "sources.nimbus.dev",
                "natsjetstreamsources",
                serde_json::json!({
                    "kind": "NatsJetStreamSource",
                    "spec": {"address": self.url, "stream": name.to_uppercase(),
                             "parallelism": p, "sink": sink},
                }),
            ),
            _ => {
                let secret = serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": name, "namespace": "default"},
                    "stringData": {
                        "uri": format!("amqp://127.0.0.1:{}", self.port),
                        "username": "guest",
                        "password": "guest",
                    },
                });
                server.api(
                    "POST",
                    "/api/v1/namespaces/default/secrets",
                    &secret.to_string(),
                )?;
                (
                    "sources.knative.dev",
                    "rabbitmqsources",
                    serde_json::json!({
                        "kind": "RabbitmqSource",
                        "spec": {
                            "rabbitmqClusterReference": {"connectionSecret": {"name": name}},
                            "rabbitmqResourcesConfig": {
                                "predeclared": true, "queueName": name, "parallelism": p,
                            },
                            "sink": sink,
                        },
                    }),
                )
            }
        };
        let mut body = body;
        body["apiVersion"] = format!("{group}/v1alpha1").into();
        body["metadata"] = meta;
        let collection = format!("/apis/{group}/v1alpha1/namespaces/default/{plural}");
        server.api("POST", &collection, &body.to_string())?;
        Ok(format!("{collection}/{name}"))
    }
}
