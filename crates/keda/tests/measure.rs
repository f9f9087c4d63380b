//! Each trigger's reading against a real broker (no Nimbus server): Redis lists and the three
//! stream measures (length, pending entries, a group's lag), a password-protected Redis, and
//! the errors a user then sees (no such group, wrong password, nothing listening).

use std::collections::BTreeMap;

use nimbus_api::keda::ScaleTriggers;
use nimbus_api::keda::triggers::{self, Sources};
use nimbus_keda::{TriggerError, measure::measure};
use nimbus_testkit::brokers::Broker;

/// Parse a trigger of `type_` with `metadata` and the TriggerAuthentication's `auth`.
fn trigger(type_: &str, metadata: &[(&str, String)], auth: &[(&str, &str)]) -> triggers::Trigger {
    let t = ScaleTriggers {
        type_: type_.into(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        ..Default::default()
    };
    let auth: BTreeMap<String, String> = auth
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let env = BTreeMap::new();
    let sources = Sources {
        metadata: &t.metadata,
        auth: Some(&auth),
        env: Some(&env),
    };
    triggers::parse("spec.triggers[0]", 0, &t, sources).unwrap()
}

async fn redis(url: &str, args: &[&str]) -> redis::Value {
    let client = redis::Client::open(url).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query_async(&mut c).await.unwrap()
}

#[tokio::test]
async fn redis_stream_length_pending_and_lag() {
    let Some(broker) = Broker::redis() else {
        return;
    };
    let address = format!("127.0.0.1:{}", broker.port);
    redis(
        &broker.url,
        &["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"],
    )
    .await;
    for i in 0..7 {
        redis(&broker.url, &["XADD", "s", "*", "n", &i.to_string()]).await;
    }
    redis(
        &broker.url,
        &[
            "XREADGROUP",
            "GROUP",
            "g",
            "c",
            "COUNT",
            "3",
            "STREAMS",
            "s",
            ">",
        ],
    )
    .await;
    let stream = |md: &[(&str, &str)]| {
        let mut all = vec![("address", address.clone()), ("stream", "s".to_string())];
        all.extend(md.iter().map(|(k, v)| (*k, v.to_string())));
        trigger("redis-streams", &all, &[])
    };
    assert_eq!(measure(&stream(&[]).source).await.unwrap(), 7.0, "XLEN");
    let pending = stream(&[("consumerGroup", "g")]);
    assert_eq!(
        measure(&pending.source).await.unwrap(),
        3.0,
        "delivered, not acknowledged"
    );
    let lag = stream(&[("consumerGroup", "g"), ("lagCount", "2")]);
    assert_eq!(
        measure(&lag.source).await.unwrap(),
        4.0,
        "entries not yet delivered to the group"
    );
    let missing = stream(&[("consumerGroup", "nobody")]);
    let err = measure(&missing.source).await.unwrap_err();
    assert!(matches!(err, TriggerError::Broker(_)), "{err}");
    assert!(err.to_string().contains("NOGROUP"), "{err}");
}

#[tokio::test]
async fn redis_list_with_a_password_and_the_errors_users_see() {
    let Some(broker) = Broker::redis_with_password("pw-1") else {
        return;
    };
    let address = format!("127.0.0.1:{}", broker.port);
    let url = format!("redis://:pw-1@127.0.0.1:{}", broker.port);
    for item in ["a", "b", "c"] {
        redis(&url, &["LPUSH", "jobs", item]).await;
    }
    let md = [
        ("address", address.clone()),
        ("listName", "jobs".to_string()),
    ];
    let good = trigger("redis", &md, &[("password", "pw-1")]);
    assert_eq!(measure(&good.source).await.unwrap(), 3.0);
    let wrong = trigger("redis", &md, &[("password", "nope")]);
    let err = measure(&wrong.source).await.unwrap_err();
    assert!(
        !err.to_string().contains("nope"),
        "never the password: {err}"
    );
    assert_eq!(err.reason(), "TriggerError");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nobody = trigger(
        "redis",
        &[("address", closed.to_string()), ("listName", "jobs".into())],
        &[],
    );
    let err = measure(&nobody.source).await.unwrap_err();
    assert!(
        err.to_string().contains(&closed.to_string()),
        "names the address: {err}"
    );
}
