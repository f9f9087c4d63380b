//! NATS JetStream: a durable pull consumer (explicit acks) on the source's stream, created
//! with the stream when missing (file storage, on the source's subject or `<stream>.>`).
//! Messages are fetched `parallelism` at a time, each acked after its delivery ended; while a
//! delivery takes long the consumer tells the server it is in progress, so it is not sent
//! again meanwhile. Unacked messages (a crash) are redelivered after the ack wait.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt as _;

use crate::cloudevent::Message;
use crate::deliver::deliver_all;
use crate::{Broker, Env, SourceConfig, SourceError, State};

/// How long the server waits for an ack before it sends a message again.
const ACK_WAIT: Duration = Duration::from_secs(20);
/// How often a message in delivery is reported in progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// How long one fetch waits for messages.
const FETCH_WAIT: Duration = Duration::from_secs(1);

fn err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Nats(e.to_string())
}

/// Consume until the connection fails.
pub async fn run(env: &Env, config: &SourceConfig) -> Result<(), SourceError> {
    let Broker::Nats {
        url,
        token,
        stream,
        subject,
        consumer,
    } = &config.broker
    else {
        return Err(SourceError::Other("not a NATS JetStream source".into()));
    };
    let mut options = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect();
    if let Some(token) = token {
        options = options.token(token.clone());
    }
    let client = tokio::time::timeout(Duration::from_secs(10), options.connect(url.as_str()))
        .await
        .map_err(|_| err(format!("cannot connect to {url} in 10s")))?
        .map_err(err)?;
    let js = jetstream::new(client);
    let subjects = vec![subject.clone().unwrap_or_else(|| format!("{stream}.>"))];
    let stream_handle = js
        .get_or_create_stream(jetstream::stream::Config {
            name: stream.clone(),
            subjects,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(err)?;
    let consumer = stream_handle
        .get_or_create_consumer(
            consumer,
            pull::Config {
                durable_name: Some(consumer.clone()),
                filter_subject: subject.clone().unwrap_or_default(),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: ACK_WAIT,
                max_ack_pending: config.parallelism.max(1) as i64 * 2,
                ..Default::default()
            },
        )
        .await
        .map_err(err)?;
    env.report.report(&config.key, State::Ready);
    let n = config.parallelism.max(1);
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(n)
            .expires(FETCH_WAIT)
            .messages()
            .await
            .map_err(err)?;
        let mut got = Vec::new();
        while let Some(m) = batch.next().await {
            got.push(m.map_err(err)?);
        }
        if got.is_empty() {
            continue;
        }
        let messages: Vec<Message> = got.iter().map(|m| message(stream, m)).collect();
        // Keep the server from sending them again while they are being delivered.
        let progress = async {
            loop {
                tokio::time::sleep(PROGRESS_EVERY).await;
                for m in &got {
                    let _ = m.ack_with(AckKind::Progress).await;
                }
            }
        };
        let done = tokio::select! {
            done = deliver_all(env, config, &messages) => done,
            () = progress => unreachable!("the progress loop never ends"),
        };
        for (m, ok) in got.iter().zip(done) {
            if ok {
                m.double_ack().await.map_err(err)?;
            }
        }
    }
}

/// A JetStream message: its id is `<stream>:<stream sequence>`, its subject the NATS subject;
/// NATS headers carry CloudEvents attributes as `ce-*`.
fn message(stream: &str, m: &jetstream::Message) -> Message {
    let (id, time) = match m.info() {
        Ok(info) => (
            format!("{}:{}", info.stream, info.stream_sequence),
            crate::cloudevent::rfc3339_ms(
                (info.published.unix_timestamp_nanos() / 1_000_000) as i64,
            ),
        ),
        Err(_) => (format!("{stream}:{}", uuid::Uuid::new_v4()), None),
    };
    let mut headers = Vec::new();
    let mut content_type = None;
    if let Some(h) = &m.headers {
        for (name, values) in h.iter() {
            let Some(value) = values.first() else {
                continue;
            };
            let (name, value) = (name.to_string(), value.to_string());
            if name.eq_ignore_ascii_case("content-type") {
                content_type = Some(value);
            } else {
                headers.push((name, value));
            }
        }
    }
    Message {
        id,
        subject: Some(m.subject.to_string()),
        time,
        headers,
        content_type,
        body: m.payload.clone(),
    }
}
