//! Reading a trigger's metric from its event source, with the client made for each broker:
//! `redis` (LLEN, XLEN, XPENDING, XINFO GROUPS), `lapin` (a passive `queue.declare`'s message
//! count) and HTTP to nats-server's monitoring endpoint (`/jsz`, as KEDA reads JetStream).
//! Each read opens its own connection and gives up after [`TIMEOUT`], so a dead broker costs
//! one trigger one poll, never the others.

use std::time::Duration;

use nimbus_api::keda::triggers::{RedisConn, Source, StreamMeasure, cron_active};
use redis::AsyncCommands;

use crate::error::TriggerError;

/// How long one read may take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The metric's current value.
pub async fn measure(source: &Source) -> Result<f64, TriggerError> {
    let read = async {
        match source {
            Source::RedisList { conn, list } => redis_list(conn, list).await,
            Source::RedisStreams {
                conn,
                stream,
                measure,
            } => redis_stream(conn, stream, *measure).await,
            Source::NatsJetStream {
                url,
                account,
                stream,
                consumer,
            } => nats_lag(url, account, stream, consumer).await,
            Source::RabbitMq { url, queue } => rabbitmq_messages(url, queue).await,
            Source::Cron {
                timezone,
                start,
                end,
                desired,
            } => Ok(
                match cron_active(*timezone, start, end, chrono::Utc::now()) {
                    true => f64::from(*desired),
                    false => 0.0,
                },
            ),
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .unwrap_or(Err(TriggerError::Timeout(TIMEOUT)))
}

// === redis ===

async fn redis_connection(
    conn: &RedisConn,
) -> Result<redis::aio::MultiplexedConnection, TriggerError> {
    let (host, port) = conn
        .address
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| {
            TriggerError::Metadata(format!("address {:?} is not host:port", conn.address))
        })?;
    let mut settings = redis::RedisConnectionInfo::default().set_db(conn.database);
    if let Some(username) = &conn.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &conn.password {
        settings = settings.set_password(password);
    }
    let addr = redis::ConnectionAddr::Tcp(host, port);
    let info = redis::IntoConnectionInfo::into_connection_info(addr)
        .map_err(TriggerError::redis)?
        .set_redis_settings(settings);
    let client = redis::Client::open(info).map_err(TriggerError::redis)?;
    client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| TriggerError::Broker(format!("redis at {}: {e}", conn.address)))
}

async fn redis_list(conn: &RedisConn, list: &str) -> Result<f64, TriggerError> {
    let mut c = redis_connection(conn).await?;
    let len: u64 = c.llen(list).await.map_err(TriggerError::redis)?;
    Ok(len as f64)
}

async fn redis_stream(
    conn: &RedisConn,
    stream: &str,
    measure: StreamMeasure,
) -> Result<f64, TriggerError> {
    let mut c = redis_connection(conn).await?;
    let group = conn.group.as_deref().unwrap_or_default();
    let n: u64 = match measure {
        StreamMeasure::Length => c.xlen(stream).await.map_err(TriggerError::redis)?,
        StreamMeasure::Pending => {
            let summary: redis::Value = redis::cmd("XPENDING")
                .arg(stream)
                .arg(group)
                .query_async(&mut c)
                .await
                .map_err(TriggerError::redis)?;
            first_int(&summary).unwrap_or(0)
        }
        StreamMeasure::Lag => {
            let groups: redis::Value = redis::cmd("XINFO")
                .arg("GROUPS")
                .arg(stream)
                .query_async(&mut c)
                .await
                .map_err(TriggerError::redis)?;
            group_lag(&groups, group).ok_or_else(|| {
                TriggerError::NotFound(format!("consumer group {group:?} of stream {stream:?} (or its lag: Redis 7 or later reports it)"))
            })?
        }
    };
    Ok(n as f64)
}

/// XPENDING's summary: `[count, smallest id, largest id, consumers]`.
fn first_int(v: &redis::Value) -> Option<u64> {
    match v {
        redis::Value::Array(items) => items.first().and_then(as_u64),
        other => as_u64(other),
    }
}

fn as_u64(v: &redis::Value) -> Option<u64> {
    match v {
        redis::Value::Int(n) => u64::try_from(*n).ok(),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        redis::Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_str(v: &redis::Value) -> Option<&str> {
    match v {
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok(),
        redis::Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The `lag` of `group` in XINFO GROUPS' reply (flat key/value arrays in RESP2, maps in RESP3).
fn group_lag(groups: &redis::Value, group: &str) -> Option<u64> {
    let redis::Value::Array(groups) = groups else {
        return None;
    };
    groups.iter().find_map(|g| {
        let pairs: Vec<(&redis::Value, &redis::Value)> = match g {
            redis::Value::Array(flat) => flat
                .chunks(2)
                .filter_map(|p| Some((p.first()?, p.get(1)?)))
                .collect(),
            redis::Value::Map(map) => map.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let field = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| as_str(k) == Some(name))
                .map(|(_, v)| *v)
        };
        (field("name").and_then(as_str) == Some(group)).then(|| field("lag").and_then(as_u64))?
    })
}

// === nats-jetstream ===

/// `num_pending + num_ack_pending` of the consumer, from `/jsz?acc=..&consumers=true`.
async fn nats_lag(
    url: &str,
    account: &str,
    stream: &str,
    consumer: &str,
) -> Result<f64, TriggerError> {
    let response = reqwest::get(url).await.map_err(TriggerError::http)?;
    if !response.status().is_success() {
        return Err(TriggerError::Broker(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    let jsz: serde_json::Value = response.json().await.map_err(TriggerError::http)?;
    consumer_lag(&jsz, account, stream, consumer).map(|n| n as f64)
}

fn consumer_lag(
    jsz: &serde_json::Value,
    account: &str,
    stream: &str,
    consumer: &str,
) -> Result<u64, TriggerError> {
    let named = |list: &serde_json::Value, key: &str, name: &str| -> Option<serde_json::Value> {
        list[key]
            .as_array()?
            .iter()
            .find(|x| x["name"] == name || x["id"] == name)
            .cloned()
    };
    let account_detail = named(jsz, "account_details", account).ok_or_else(|| {
        TriggerError::NotFound(format!(
            "account {account:?} in the JetStream monitoring data"
        ))
    })?;
    let stream_detail = named(&account_detail, "stream_detail", stream).ok_or_else(|| {
        TriggerError::NotFound(format!("stream {stream:?} in account {account:?}"))
    })?;
    let c = named(&stream_detail, "consumer_detail", consumer).ok_or_else(|| {
        TriggerError::NotFound(format!("consumer {consumer:?} of stream {stream:?}"))
    })?;
    Ok(c["num_pending"].as_u64().unwrap_or(0) + c["num_ack_pending"].as_u64().unwrap_or(0))
}

// === rabbitmq ===

/// The queue's ready messages (a passive declare fails if the queue does not exist).
async fn rabbitmq_messages(url: &str, queue: &str) -> Result<f64, TriggerError> {
    use lapin::options::QueueDeclareOptions;
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .map_err(|e| {
            TriggerError::Broker(format!("rabbitmq at {}: {e}", without_credentials(url)))
        })?;
    let declared = async {
        let channel = connection.create_channel().await?;
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(queue.into(), options, Default::default())
            .await;
        if queue.is_ok() {
            // A failed passive declare closes the channel itself.
            let _ = channel.close(200, "".into()).await;
        }
        queue
    }
    .await;
    let _ = connection.close(200, "".into()).await;
    Ok(f64::from(
        declared.map_err(TriggerError::amqp)?.message_count(),
    ))
}

/// `url` with its user and password taken out (for messages).
fn without_credentials(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{host}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jetstream_lag_is_pending_plus_ack_pending_of_the_named_consumer() {
        let jsz = json!({"account_details": [{"name": "$G", "id": "$G", "stream_detail": [
            {"name": "orders", "consumer_detail": [
                {"name": "other", "num_pending": 100, "num_ack_pending": 0},
                {"name": "worker", "num_pending": 7, "num_ack_pending": 2}
            ]}
        ]}]});
        assert_eq!(consumer_lag(&jsz, "$G", "orders", "worker").unwrap(), 9);
        let missing = consumer_lag(&jsz, "$G", "orders", "nobody").unwrap_err();
        assert!(missing.to_string().contains("\"nobody\""), "{missing}");
    }

    #[test]
    fn messages_never_show_credentials() {
        assert_eq!(
            without_credentials("amqp://u:p@h:5672/%2f"),
            "amqp://h:5672/%2f"
        );
        assert_eq!(without_credentials("amqp://h:5672"), "amqp://h:5672");
    }

    #[test]
    fn xinfo_groups_lag_in_resp2_shape() {
        let s = |x: &str| redis::Value::BulkString(x.as_bytes().to_vec());
        let groups = redis::Value::Array(vec![redis::Value::Array(vec![
            s("name"),
            s("workers"),
            s("pending"),
            redis::Value::Int(1),
            s("lag"),
            redis::Value::Int(12),
        ])]);
        assert_eq!(group_lag(&groups, "workers"), Some(12));
        assert_eq!(group_lag(&groups, "others"), None);
    }
}
