//! A broker message as a CloudEvent 1.0 in HTTP binary content mode: attributes as `ce-*`
//! headers, the data as the body with its `content-type`.
//!
//! Attributes come from the message (its id, subject and time as the broker has them) unless
//! the message carries CloudEvents attributes already, which it keeps: headers named `ce-*` or
//! `ce_*` (the HTTP and Kafka-style bindings), `cloudEvents:*` or `cloudEvents_*` (the AMQP
//! binding), or a body in structured mode (`application/cloudevents+json`).

use std::collections::BTreeMap;

use bytes::Bytes;

/// A message as a broker delivered it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// The broker's id of it (stream entry id, JetStream sequence, AMQP message-id).
    pub id: String,
    /// What it is about (the NATS subject, the stream, the queue).
    pub subject: Option<String>,
    /// When the broker took it (RFC 3339).
    pub time: Option<String>,
    /// Its headers (AMQP headers, NATS headers, Redis stream fields other than the data).
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

/// A CloudEvent: its attributes (lower-case names, without prefix) and data.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub attributes: BTreeMap<String, String>,
    pub content_type: Option<String>,
    pub data: Bytes,
}

const PREFIXES: [&str; 4] = ["ce-", "ce_", "cloudevents:", "cloudevents_"];

/// Whether `name` is a valid CloudEvents attribute name (lower-case letters and digits).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl Event {
    /// The event of `msg` from a source: `source` and `type_` unless it says otherwise, then
    /// `overrides` (Knative's `ceOverrides.extensions`) on top.
    pub fn of(
        msg: &Message,
        source: &str,
        type_: &str,
        overrides: &BTreeMap<String, String>,
    ) -> Self {
        let mut attributes = BTreeMap::new();
        let mut content_type = msg.content_type.clone();
        let mut data = msg.body.clone();
        for (name, value) in &msg.headers {
            let lower = name.to_ascii_lowercase();
            if lower == "content-type" && content_type.is_none() {
                content_type = Some(value.clone());
                continue;
            }
            if let Some(attr) = PREFIXES.iter().find_map(|p| lower.strip_prefix(p))
                && valid_name(attr)
            {
                attributes.insert(attr.to_owned(), value.clone());
            }
        }
        let structured = content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("application/cloudevents+json"));
        if structured && let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(&msg.body)
        {
            content_type = None;
            data = Bytes::new();
            for (name, value) in map {
                match (name.as_str(), value) {
                    ("data", serde_json::Value::String(s)) => data = Bytes::from(s),
                    ("data", v) => {
                        data = Bytes::from(v.to_string());
                        content_type.get_or_insert_with(|| "application/json".into());
                    }
                    ("data_base64", serde_json::Value::String(s)) => {
                        use base64::Engine as _;
                        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(s) {
                            data = Bytes::from(bytes);
                        }
                    }
                    ("datacontenttype", serde_json::Value::String(s)) => content_type = Some(s),
                    (n, serde_json::Value::String(s)) if valid_name(n) => {
                        attributes.insert(n.to_owned(), s);
                    }
                    (n, v) if valid_name(n) && !v.is_null() => {
                        attributes.insert(n.to_owned(), v.to_string());
                    }
                    _ => {}
                }
            }
        }
        if let Some(ct) = attributes.remove("datacontenttype") {
            content_type.get_or_insert(ct);
        }
        attributes.insert("specversion".into(), "1.0".into());
        let mut default = |name: &str, value: Option<&str>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                attributes
                    .entry(name.to_owned())
                    .or_insert_with(|| value.to_owned());
            }
        };
        default("id", Some(&msg.id));
        default("source", Some(source));
        default("type", Some(type_));
        default("subject", msg.subject.as_deref());
        default("time", msg.time.as_deref());
        for (name, value) in overrides {
            attributes.insert(name.clone(), value.clone());
        }
        Self {
            attributes,
            content_type,
            data,
        }
    }

    /// The event's id.
    pub fn id(&self) -> &str {
        self.attributes.get("id").map_or("", String::as_str)
    }

    /// The HTTP request of it (binary content mode): `POST path`.
    pub fn request(&self, path: &str) -> Result<http::Request<Bytes>, http::Error> {
        let mut builder = http::Request::builder().method("POST").uri(path);
        for (name, value) in &self.attributes {
            builder = builder.header(format!("ce-{name}"), header_value(value));
        }
        if let Some(ct) = &self.content_type {
            builder = builder.header(http::header::CONTENT_TYPE, header_value(ct));
        }
        builder.body(self.data.clone())
    }

    /// The headers of [`Event::request`], as stored with a dead letter.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .attributes
            .iter()
            .map(|(n, v)| (format!("ce-{n}"), header_value(v)))
            .collect();
        if let Some(ct) = &self.content_type {
            out.push(("content-type".into(), header_value(ct)));
        }
        out
    }
}

/// A header value: CloudEvents' HTTP binding percent-encodes what HTTP cannot carry (control
/// characters, `"`, `%` and non-ASCII).
fn header_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'"' && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// RFC 3339 of Unix milliseconds.
pub fn rfc3339_ms(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg() -> Message {
        Message {
            id: "1-0".into(),
            subject: Some("orders".into()),
            time: Some("2026-01-01T00:00:00Z".into()),
            headers: vec![],
            content_type: Some("text/plain".into()),
            body: Bytes::from_static(b"hi"),
        }
    }

    #[test]
    fn attributes_come_from_the_message() {
        let e = Event::of(&msg(), "/src", "dev.type", &BTreeMap::new());
        let r = e.request("/").unwrap();
        let h = |n: &str| r.headers()[n].to_str().unwrap().to_owned();
        assert_eq!(h("ce-specversion"), "1.0");
        assert_eq!(h("ce-id"), "1-0");
        assert_eq!(h("ce-source"), "/src");
        assert_eq!(h("ce-type"), "dev.type");
        assert_eq!(h("ce-subject"), "orders");
        assert_eq!(h("ce-time"), "2026-01-01T00:00:00Z");
        assert_eq!(h("content-type"), "text/plain");
        assert_eq!(r.body().as_ref(), b"hi");
        assert_eq!(r.method(), "POST");
    }

    #[test]
    fn a_message_keeps_its_own_attributes() {
        let mut m = msg();
        m.headers = vec![
            ("ce-id".into(), "abc".into()),
            ("cloudEvents:type".into(), "com.example.order".into()),
            ("ce_source".into(), "/shop".into()),
            ("ce-Bad-Name".into(), "x".into()),
            ("other".into(), "y".into()),
        ];
        let mut overrides = BTreeMap::new();
        overrides.insert("team".into(), "a".into());
        let e = Event::of(&m, "/src", "dev.type", &overrides);
        assert_eq!(e.attributes["id"], "abc");
        assert_eq!(e.attributes["type"], "com.example.order");
        assert_eq!(e.attributes["source"], "/shop");
        assert_eq!(e.attributes["team"], "a");
        assert!(!e.attributes.contains_key("other"));
        assert!(!e.attributes.contains_key("bad-name"));
    }

    #[test]
    fn structured_mode_becomes_binary() {
        let mut m = msg();
        m.content_type = Some("application/cloudevents+json".into());
        m.body = Bytes::from(
            r#"{"specversion":"1.0","id":"e1","source":"/s","type":"t","datacontenttype":"application/json","data":{"a":1}}"#,
        );
        let e = Event::of(&m, "/src", "dev.type", &BTreeMap::new());
        assert_eq!(e.id(), "e1");
        assert_eq!(e.attributes["source"], "/s");
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
        assert_eq!(e.data.as_ref(), br#"{"a":1}"#);
    }

    #[test]
    fn header_values_are_percent_encoded() {
        assert_eq!(header_value("a\"b%c\u{e9}\n"), "a%22b%25c%C3%A9%0A");
        let mut m = msg();
        m.subject = Some("caf\u{e9}".into());
        let r = Event::of(&m, "/s", "t", &BTreeMap::new())
            .request("/")
            .unwrap();
        assert_eq!(r.headers()["ce-subject"], "caf%C3%A9");
    }

    #[test]
    fn time_is_rfc3339() {
        assert_eq!(rfc3339_ms(0).as_deref(), Some("1970-01-01T00:00:00Z"));
    }
}
