//! What the queue stores: an [`Invocation`] — its target, the request as received, the
//! delivery policy in force when it was accepted, and its attempts and outcome.

use bytes::Bytes;
use nimbus_api::invocation::{AsyncPolicy, Destination};
use serde::{Deserialize, Serialize};

/// Most bytes of a response kept with its invocation (Lambda's destination payload limit).
pub const MAX_STORED_RESPONSE: usize = 256 << 10;

/// Where an invocation is delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Target {
    /// A Service of the invocation's namespace, through the router (`host`: the `Host` it is
    /// addressed by).
    Service { name: String, host: String },
    /// A URL (a destination outside Nimbus).
    Url { url: String },
}

impl Target {
    /// The Service's name, or empty for a URL (listings by service).
    pub fn service_name(&self) -> &str {
        match self {
            Self::Service { name, .. } => name,
            Self::Url { .. } => "",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service { name, .. } => write!(f, "service:{name}"),
            Self::Url { url } => f.write_str(url),
        }
    }
}

/// An invocation's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum State {
    /// Waiting for its next attempt (or in one).
    Pending,
    Succeeded,
    /// Out of attempts, too old, or refused by the function (a 4xx other than 408 and 429):
    /// kept as the dead-letter queue.
    Failed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Succeeded,
            Self::Failed,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str().eq_ignore_ascii_case(s))
    }
}

/// The request as the client sent it (hop-by-hop headers and `Prefer` removed).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    /// Stored in a column of its own, not in the JSON record (empty in listings).
    #[serde(skip)]
    pub body: Bytes,
    /// The body's length (also in listings, which do not read bodies).
    #[serde(skip)]
    pub size: usize,
}

impl StoredRequest {
    /// The HTTP request, with the stored headers `keep` accepts (by name).
    pub fn to_http(
        &self,
        keep: impl Fn(&str) -> bool,
    ) -> Result<http::Request<Bytes>, http::Error> {
        let mut builder = http::Request::builder()
            .method(self.method.as_str())
            .uri(self.target.as_str());
        for (name, value) in self.headers.iter().filter(|(n, _)| keep(n)) {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder.body(self.body.clone())
    }
}

/// A response kept with its invocation (the body cut at [`MAX_STORED_RESPONSE`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    #[serde(with = "base64_bytes")]
    pub body: Vec<u8>,
    /// The body was longer than what is kept.
    #[serde(default)]
    pub truncated: bool,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When it started (Unix milliseconds).
    pub at_ms: i64,
    pub took_ms: u64,
    /// The response's status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The delivery policy an invocation was accepted under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub max_attempts: u32,
    pub max_event_age_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<String>,
}

impl From<&AsyncPolicy> for Policy {
    fn from(p: &AsyncPolicy) -> Self {
        Self {
            max_attempts: p.max_attempts,
            max_event_age_ms: p.max_event_age.as_millis() as u64,
            on_success: p.on_success.as_ref().map(ToString::to_string),
            on_failure: p.on_failure.as_ref().map(ToString::to_string),
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        (&AsyncPolicy::default()).into()
    }
}

impl Policy {
    pub fn on_success(&self) -> Option<Destination> {
        self.on_success
            .as_deref()
            .and_then(|d| Destination::parse(d).ok())
    }

    pub fn on_failure(&self) -> Option<Destination> {
        self.on_failure
            .as_deref()
            .and_then(|d| Destination::parse(d).ok())
    }
}

/// One asynchronous invocation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub id: String,
    pub namespace: String,
    pub target: Target,
    pub request: StoredRequest,
    pub policy: Policy,
    pub state: State,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// When the next attempt is due (pending invocations).
    pub next_ms: i64,
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Times the platform (or the function, with 429) had no room for it: retried without
    /// using up an attempt.
    #[serde(default)]
    pub throttles: u32,
    /// The last response (the successful one, when it succeeded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<StoredResponse>,
    /// Why the last attempt failed, or why the invocation did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The invocation whose outcome this one delivers (a destination's invocation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl Invocation {
    /// A new pending invocation of `target`, due now.
    pub fn new(
        namespace: &str,
        target: Target,
        request: StoredRequest,
        policy: Policy,
        now_ms: i64,
    ) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            namespace: namespace.to_owned(),
            target,
            request,
            policy,
            state: State::Pending,
            created_ms: now_ms,
            updated_ms: now_ms,
            next_ms: now_ms,
            attempts: Vec::new(),
            throttles: 0,
            response: None,
            error: None,
            cause: None,
        }
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
