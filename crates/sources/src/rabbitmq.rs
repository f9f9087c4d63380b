//! RabbitMQ: a queue consumed with manual acks and a prefetch of `parallelism`; each message is
//! acked after its delivery ended (2xx, or dead-lettered into Nimbus's store). Unacked
//! messages go back to the queue when the channel closes (a crash, a restart) and are
//! delivered again.

use std::sync::Arc;

use futures::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use tokio::sync::Semaphore;

use crate::cloudevent::Message;
use crate::deliver::deliver_all;
use crate::{Broker, Env, SourceConfig, SourceError, State};

/// Consume until the connection fails.
pub async fn run(env: &Arc<Env>, config: &SourceConfig) -> Result<(), SourceError> {
    let Broker::Rabbitmq {
        url,
        queue,
        declare,
    } = &config.broker
    else {
        return Err(SourceError::Other("not a RabbitMQ source".into()));
    };
    let conn = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = conn.create_channel().await?;
    let n = config.parallelism.clamp(1, u16::MAX as usize);
    channel
        .basic_qos(n as u16, BasicQosOptions::default())
        .await?;
    if let Some(exchange) = declare {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        if let Some(exchange) = exchange {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    "#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
    }
    let tag = format!("nimbus-{}-{}", config.key.namespace, config.key.name);
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    env.report.report(&config.key, State::Ready);
    let slots = Arc::new(Semaphore::new(n));
    let config = Arc::new(config.clone());
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(delivery) = consumer.next().await {
        let delivery = delivery?;
        let slot = Arc::clone(&slots)
            .acquire_owned()
            .await
            .map_err(|e| SourceError::Other(e.to_string()))?;
        let (env, config, queue) = (Arc::clone(env), Arc::clone(&config), queue.clone());
        // One task per message, at most `parallelism` (the prefetch) at once.
        tasks.spawn(async move {
            let message = message(&queue, &delivery);
            let done = deliver_all(&env, &config, &[message]).await;
            if done.first() == Some(&true)
                && let Err(e) = delivery.ack(BasicAckOptions::default()).await
            {
                tracing::warn!(source = %config.key, "cannot ack a message: {e}");
            }
            drop(slot);
        });
        while tasks.try_join_next().is_some() {}
    }
    Err(SourceError::Other(format!(
        "the broker ended the consumer of queue {queue:?}"
    )))
}

/// An AMQP message: its id is the `message-id` property (else `<queue>:<uuid>`), its time the
/// `timestamp` property, its subject the queue; headers carry CloudEvents attributes
/// (`cloudEvents:*`, `cloudEvents_*`, `ce-*`).
fn message(queue: &str, d: &lapin::message::Delivery) -> Message {
    let p = &d.properties;
    let id = p
        .message_id()
        .as_ref()
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{queue}:{}", uuid::Uuid::new_v4()));
    let time = p
        .timestamp()
        .and_then(|secs| crate::cloudevent::rfc3339_ms(secs as i64 * 1000));
    let mut headers = Vec::new();
    if let Some(table) = p.headers() {
        for (name, value) in table.inner() {
            let value = match value {
                AMQPValue::LongString(s) => s.to_string(),
                AMQPValue::ShortString(s) => s.to_string(),
                AMQPValue::LongInt(i) => i.to_string(),
                AMQPValue::LongLongInt(i) => i.to_string(),
                AMQPValue::Boolean(b) => b.to_string(),
                _ => continue,
            };
            headers.push((name.to_string(), value));
        }
    }
    Message {
        id,
        subject: Some(queue.to_owned()),
        time,
        headers,
        content_type: p.content_type().as_ref().map(|s| s.to_string()),
        body: bytes::Bytes::from(d.data.clone()),
    }
}
