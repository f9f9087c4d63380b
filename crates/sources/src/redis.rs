//! Redis: streams read by a consumer group, and lists used as a reliable queue.
//!
//! Streams: the group is created at the stream's start (`XGROUP CREATE … 0 MKSTREAM`) when
//! missing. On (re)start the consumer first reads its own pending entries (`XREADGROUP … 0`:
//! delivered before a crash, never acked), then claims entries idle in other consumers of the
//! group (`XAUTOCLAIM`), then reads new ones (`>`), `parallelism` at a time; each is
//! `XACK`ed after its delivery ended (2xx, or dead-lettered).
//!
//! Lists: producers `LPUSH`; the consumer moves elements from the list's tail into its
//! processing list (`BLMOVE list processing RIGHT LEFT`) and removes each from there
//! (`LREM`) after its delivery ended. On (re)start the processing list is delivered first.

use std::time::Duration;

use bytes::Bytes;
use redis::AsyncCommands as _;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamAutoClaimOptions, StreamId, StreamReadOptions, StreamReadReply};

use crate::cloudevent::Message;
use crate::deliver::deliver_all;
use crate::{Broker, Env, SourceConfig, SourceError, State};

/// The consumer's name in its group: one per source (`nimbus-<namespace>-<name>`), so two
/// sources reading with the same group share the stream's entries but not their pending ones.
fn consumer_name(config: &SourceConfig) -> String {
    format!("nimbus-{}-{}", config.key.namespace, config.key.name)
}
/// How long a read blocks waiting for new messages.
const BLOCK: Duration = Duration::from_secs(1);
/// Entries pending this long in another consumer of the group are claimed.
const CLAIM_IDLE: Duration = Duration::from_secs(30);

async fn connect(url: &str) -> Result<MultiplexedConnection, SourceError> {
    let client = redis::Client::open(url)?;
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        // Reads block for BLOCK; leave room beyond it.
        .set_response_timeout(Some(BLOCK + Duration::from_secs(10)));
    Ok(client
        .get_multiplexed_async_connection_with_config(&config)
        .await?)
}

fn value_string(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        other => format!("{other:?}"),
    }
}

/// A stream entry as a message: the field `data` is the body (its other fields headers: `ce-*`
/// attributes, `content-type`); an entry without `data` is sent as a JSON object of its
/// fields. Its time is the one in its id.
fn entry_message(stream: &str, entry: &StreamId) -> Message {
    let mut fields: Vec<(String, String)> = entry
        .map
        .iter()
        .map(|(k, v)| (k.clone(), value_string(v)))
        .collect();
    fields.sort();
    let time = entry
        .id
        .split('-')
        .next()
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(crate::cloudevent::rfc3339_ms);
    let (body, content_type, headers) = match fields.iter().position(|(k, _)| k == "data") {
        Some(i) => {
            let (_, data) = fields.remove(i);
            (Bytes::from(data), None, fields)
        }
        None => {
            let object: serde_json::Map<String, serde_json::Value> = fields
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let body = serde_json::Value::Object(object).to_string();
            (
                Bytes::from(body),
                Some("application/json".to_owned()),
                Vec::new(),
            )
        }
    };
    Message {
        id: entry.id.clone(),
        subject: Some(stream.to_owned()),
        time,
        headers,
        content_type,
        body,
    }
}

/// Consume a stream until the connection fails.
pub async fn run_stream(env: &Env, config: &SourceConfig) -> Result<(), SourceError> {
    let Broker::RedisStream { url, stream, group } = &config.broker else {
        return Err(SourceError::Other("not a Redis stream source".into()));
    };
    let mut conn = connect(url).await?;
    let created: Result<(), redis::RedisError> =
        conn.xgroup_create_mkstream(stream, group, "0").await;
    if let Err(e) = created
        && e.code() != Some("BUSYGROUP")
    {
        return Err(e.into());
    }
    env.report.report(&config.key, State::Ready);
    let n = config.parallelism.max(1);
    let consumer = consumer_name(config);
    // Own pending entries first (delivered before a restart, never acked).
    let mut start = "0".to_owned();
    loop {
        let opts = StreamReadOptions::default()
            .group(group, &consumer)
            .count(n);
        let reply: Option<StreamReadReply> =
            conn.xread_options(&[stream], &[&start], &opts).await?;
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        let Some(last) = entries.last() else { break };
        start = last.id.clone();
        ack_batch(&mut conn, env, config, stream, group, &entries).await?;
    }
    let mut last_claim = tokio::time::Instant::now() - CLAIM_IDLE;
    loop {
        if last_claim.elapsed() >= CLAIM_IDLE {
            last_claim = tokio::time::Instant::now();
            claim(&mut conn, env, config, stream, group, &consumer, n).await?;
        }
        let opts = StreamReadOptions::default()
            .group(group, &consumer)
            .count(n)
            .block(BLOCK.as_millis() as usize);
        let reply: Option<StreamReadReply> = conn.xread_options(&[stream], &[">"], &opts).await?;
        let entries: Vec<StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if !entries.is_empty() {
            ack_batch(&mut conn, env, config, stream, group, &entries).await?;
        }
    }
}

/// Claim and deliver the entries idle in other consumers of the group.
async fn claim(
    conn: &mut MultiplexedConnection,
    env: &Env,
    config: &SourceConfig,
    stream: &str,
    group: &str,
    consumer: &str,
    n: usize,
) -> Result<(), SourceError> {
    let mut start = "0-0".to_owned();
    loop {
        let reply: redis::streams::StreamAutoClaimReply = conn
            .xautoclaim_options(
                stream,
                group,
                consumer,
                CLAIM_IDLE.as_millis() as u64,
                &start,
                StreamAutoClaimOptions::default().count(n),
            )
            .await?;
        if !reply.claimed.is_empty() {
            ack_batch(conn, env, config, stream, group, &reply.claimed).await?;
        }
        if reply.next_stream_id == "0-0" || reply.claimed.is_empty() {
            return Ok(());
        }
        start = reply.next_stream_id;
    }
}

async fn ack_batch(
    conn: &mut MultiplexedConnection,
    env: &Env,
    config: &SourceConfig,
    stream: &str,
    group: &str,
    entries: &[StreamId],
) -> Result<(), SourceError> {
    let messages: Vec<Message> = entries.iter().map(|e| entry_message(stream, e)).collect();
    let done = deliver_all(env, config, &messages).await;
    let ids: Vec<&str> = entries
        .iter()
        .zip(done)
        .filter(|(_, ok)| *ok)
        .map(|(e, _)| e.id.as_str())
        .collect();
    if !ids.is_empty() {
        let _: i64 = conn.xack(stream, group, &ids).await?;
    }
    Ok(())
}

/// Consume a list until the connection fails.
pub async fn run_list(env: &Env, config: &SourceConfig) -> Result<(), SourceError> {
    let Broker::RedisList {
        url,
        list,
        processing,
    } = &config.broker
    else {
        return Err(SourceError::Other("not a Redis list source".into()));
    };
    let mut conn = connect(url).await?;
    env.report.report(&config.key, State::Ready);
    let n = config.parallelism.max(1);
    // What was taken before a restart and never finished.
    loop {
        let left: Vec<Vec<u8>> = conn.lrange(processing, -(n as isize), -1).await?;
        if left.is_empty() {
            break;
        }
        finish(&mut conn, env, config, list, processing, left).await?;
    }
    loop {
        let first: Option<Vec<u8>> = conn
            .blmove(
                list,
                processing,
                redis::Direction::Right,
                redis::Direction::Left,
                BLOCK.as_secs_f64(),
            )
            .await?;
        let Some(first) = first else { continue };
        let mut batch = vec![first];
        while batch.len() < n {
            let next: Option<Vec<u8>> = conn
                .lmove(
                    list,
                    processing,
                    redis::Direction::Right,
                    redis::Direction::Left,
                )
                .await?;
            match next {
                Some(v) => batch.push(v),
                None => break,
            }
        }
        finish(&mut conn, env, config, list, processing, batch).await?;
    }
}

/// Deliver `elements` (taken into `processing`) and remove the finished ones from there.
async fn finish(
    conn: &mut MultiplexedConnection,
    env: &Env,
    config: &SourceConfig,
    list: &str,
    processing: &str,
    elements: Vec<Vec<u8>>,
) -> Result<(), SourceError> {
    let messages: Vec<Message> = elements
        .iter()
        .map(|e| Message {
            // A list element has no id of its own.
            id: uuid::Uuid::new_v4().to_string(),
            subject: Some(list.to_owned()),
            time: crate::cloudevent::rfc3339_ms(nimbus_invocations::model::now_ms()),
            headers: Vec::new(),
            content_type: content_type_of(e),
            body: Bytes::from(e.clone()),
        })
        .collect();
    let done = deliver_all(env, config, &messages).await;
    let mut stuck = false;
    for (e, ok) in elements.iter().zip(done) {
        match ok {
            true => {
                let _: i64 = conn.lrem(processing, 1, e.as_slice()).await?;
            }
            false => stuck = true,
        }
    }
    if stuck {
        // Not stored as a dead letter either: try again later rather than spin.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// A structured CloudEvent (a JSON object with `specversion`) keeps its attributes; other
/// elements are sent as they are.
fn content_type_of(element: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(element).ok()?;
    match v.get("specversion").is_some() {
        true => Some("application/cloudevents+json".into()),
        false => Some("application/json".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_entries_become_messages() {
        let mut e = StreamId {
            id: "1700000000000-0".into(),
            ..Default::default()
        };
        e.map
            .insert("data".into(), redis::Value::BulkString(b"hello".to_vec()));
        e.map
            .insert("ce-type".into(), redis::Value::BulkString(b"t".to_vec()));
        let m = entry_message("orders", &e);
        assert_eq!(m.body.as_ref(), b"hello");
        assert_eq!(m.headers, [("ce-type".to_owned(), "t".to_owned())]);
        assert_eq!(m.time.as_deref(), Some("2023-11-14T22:13:20Z"));
        e.map.remove("data");
        let m = entry_message("orders", &e);
        assert_eq!(m.body.as_ref(), br#"{"ce-type":"t"}"#);
        assert_eq!(m.content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn list_elements_are_json_or_raw() {
        assert_eq!(content_type_of(b"plain"), None);
        assert_eq!(
            content_type_of(b"{\"a\":1}").as_deref(),
            Some("application/json")
        );
        assert_eq!(
            content_type_of(b"{\"specversion\":\"1.0\"}").as_deref(),
            Some("application/cloudevents+json")
        );
    }
}
