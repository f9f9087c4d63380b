//! Header rewriting at the proxy boundary: hop-by-hop removal (both directions) and the
//! forwarding headers of the Knative runtime contract (`Forwarded`, `X-Forwarded-For`,
//! `X-Forwarded-Proto`).
//!
//! Pure functions over a `HeaderMap`; every header not named here passes through untouched.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers always removed (RFC 9110 §7.6.1 plus the legacy ones). `TE` and
/// `Upgrade` are handled separately.
fn fixed_hop_by_hop() -> [&'static HeaderName; 5] {
    [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
    ]
}

/// Whether the request asks to switch protocols (`Connection: upgrade` plus `Upgrade`).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has_token(headers, "upgrade")
}

fn connection_has_token(headers: &HeaderMap, token: &str) -> bool {
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case(token))
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Removes hop-by-hop headers: the fixed list, every header named in `Connection`, and `TE`
/// unless it asks for `trailers` (then it is reduced to exactly `trailers`). With
/// `keep_upgrade`, `Upgrade` is kept and `Connection: upgrade` is re-added, so a protocol
/// switch can be forwarded.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most messages carry none: one pass over the names instead of a lookup per listed one.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        remove_connection_named(headers, keep_upgrade);
    }
    for name in fixed_hop_by_hop() {
        headers.remove(name);
    }
    if !keep_upgrade {
        headers.remove(header::UPGRADE);
    }
    strip_te(headers);
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Whether `strip_hop_by_hop` may have to act on a header of this name.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    fixed_hop_by_hop().contains(&name) || name == header::UPGRADE || name == header::TE
}

fn remove_connection_named(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = connection_tokens(headers)
        .filter(|t| !(keep_upgrade && t.eq_ignore_ascii_case("upgrade")))
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
}

fn strip_te(headers: &mut HeaderMap) {
    let Some(te) = headers.remove(header::TE) else {
        return;
    };
    let wants_trailers = te.to_str().is_ok_and(|v| {
        v.split(',')
            .any(|t| t.split(';').next().unwrap_or("").trim() == "trailers")
    });
    if wants_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// One client's entries in the forwarding headers, formatted once per client connection.
#[derive(Clone, Debug)]
pub struct Forwarding {
    /// `for=<ip>;proto=http` (IPv6 quoted and bracketed).
    forwarded: HeaderValue,
    /// The bare address.
    forwarded_for: HeaderValue,
}

// === impl Forwarding ===

impl Forwarding {
    /// The entries naming `client` (an IPv4-mapped IPv6 address is shown as IPv4).
    pub fn new(client: IpAddr) -> Self {
        let client = client.to_canonical();
        let forwarded = match client {
            IpAddr::V4(ip) => format!("for={ip};proto=http"),
            IpAddr::V6(ip) => format!("for=\"[{ip}]\";proto=http"),
        };
        let value = |text: String| HeaderValue::try_from(text).expect("an address is header text");
        Self {
            forwarded: value(forwarded),
            forwarded_for: value(client.to_string()),
        }
    }
}

/// Adds the client to the forwarding headers: appends `for=<ip>;proto=http` to `Forwarded`
/// and the bare address to `X-Forwarded-For` (each joined into one field), and sets
/// `X-Forwarded-Proto: http`, replacing whatever the client sent: the router speaks plain
/// HTTP, and a client's claim of `https` is not evidence of TLS (issue #13).
pub fn add_forwarding(headers: &mut HeaderMap, client: &Forwarding) {
    append_list(headers, &header::FORWARDED, &client.forwarded);
    append_list(headers, &X_FORWARDED_FOR, &client.forwarded_for);
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// Appends `item` to the comma-separated list in `name`, merging repeated fields into one.
fn append_list(headers: &mut HeaderMap, name: &HeaderName, item: &HeaderValue) {
    if let header::Entry::Vacant(entry) = headers.entry(name) {
        entry.insert(item.clone());
        return;
    }
    let item = item.to_str().expect("built from an address");
    let mut joined = String::new();
    for value in headers.get_all(name) {
        // Values that are not visible ASCII are dropped rather than forwarded half-parsed.
        if let Ok(value) = value.to_str() {
            joined.push_str(value);
            joined.push_str(", ");
        }
    }
    joined.push_str(item);
    let value = HeaderValue::try_from(joined).expect("built from valid header text");
    headers.insert(name, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn removes_hop_by_hop_and_connection_named_headers() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("trailer", "grpc-status"),
            ("upgrade", "websocket"),
            ("te", "gzip"),
            ("x-secret", "1"),
            ("traceparent", "00-abc-def-01"),
        ]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "left: {h:?}");
        assert_eq!(h["traceparent"], "00-abc-def-01");
    }

    #[test]
    fn te_trailers_survives_as_exactly_trailers() {
        let mut h = map(&[("te", "trailers, deflate;q=0.5")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h["te"], "trailers");
    }

    #[test]
    fn upgrade_is_kept_when_asked() {
        let mut h = map(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
        ]);
        assert!(is_upgrade_request(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("x-hop"));
    }

    #[test]
    fn upgrade_needs_both_headers() {
        assert!(!is_upgrade_request(&map(&[("upgrade", "websocket")])));
        assert!(!is_upgrade_request(&map(&[("connection", "upgrade")])));
    }

    #[test]
    fn forwarding_headers_are_added() {
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, &Forwarding::new("10.1.2.3".parse().unwrap()));
        assert_eq!(h["forwarded"], "for=10.1.2.3;proto=http");
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn forwarding_headers_are_appended_to_existing_ones() {
        let mut h = map(&[
            ("forwarded", "for=1.1.1.1"),
            ("forwarded", "for=2.2.2.2"),
            ("x-forwarded-for", "1.1.1.1, 2.2.2.2"),
            ("x-forwarded-proto", "https"),
        ]);
        add_forwarding(&mut h, &Forwarding::new("::1".parse().unwrap()));
        assert_eq!(
            h["forwarded"],
            r#"for=1.1.1.1, for=2.2.2.2, for="[::1]";proto=http"#
        );
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, ::1");
        assert_eq!(
            h["x-forwarded-proto"], "http",
            "the client's claim is replaced"
        );
        assert_eq!(h.get_all("x-forwarded-proto").iter().count(), 1);
    }

    #[test]
    fn ipv4_mapped_clients_are_shown_as_ipv4() {
        let mut h = HeaderMap::new();
        add_forwarding(&mut h, &Forwarding::new("::ffff:10.0.0.1".parse().unwrap()));
        assert_eq!(h["x-forwarded-for"], "10.0.0.1");
    }
}
