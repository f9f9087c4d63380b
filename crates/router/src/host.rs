//! Host names as the routing table keys them: which part of a request names the host, and how
//! it is normalised (lower case, no `:port`, no trailing dot).
//!
//! Pure functions only; they never allocate when the host is already in normal form.

use std::borrow::Cow;

use http::{Request, header};

/// The host a request is addressed to, exactly as sent: the URI authority (HTTP/2 `:authority`
/// or an absolute-form HTTP/1 target), else the `Host` header.
pub fn request_host<B>(req: &Request<B>) -> Option<&str> {
    if let Some(authority) = req.uri().authority() {
        return Some(authority.as_str());
    }
    req.headers().get(header::HOST)?.to_str().ok()
}

/// Normalises a `Host` value for lookup: drops a `:port` suffix and a trailing dot, and lower-
/// cases ASCII letters. `[::1]:8080` becomes `[::1]`.
pub fn normalize_host(raw: &str) -> Cow<'_, str> {
    let host = strip_port(raw.trim_end_matches('.')).trim_end_matches('.');
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.split_once(':') {
        // Exactly one colon: `name:port`. More colons: a bare IPv6 address, left alone.
        Some((name, port)) if !port.contains(':') => {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strips_port_and_lowercases() {
        assert_eq!(
            normalize_host("Hello.Default.localhost:8080"),
            "hello.default.localhost"
        );
        assert_eq!(
            normalize_host("hello.default.localhost"),
            "hello.default.localhost"
        );
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("EXAMPLE.com.:80"), "example.com");
    }

    #[test]
    fn keeps_ipv6_literals_intact() {
        assert_eq!(normalize_host("[::1]:8080"), "[::1]");
        assert_eq!(normalize_host("[::1]"), "[::1]");
        assert_eq!(normalize_host("::1"), "::1");
    }

    #[test]
    fn does_not_allocate_for_normal_hosts() {
        assert!(matches!(normalize_host("a.b:1"), Cow::Borrowed("a.b")));
    }

    #[test]
    fn authority_wins_over_host_header() {
        let req = Request::get("http://from-uri.example/x")
            .header(header::HOST, "from-header.example")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Some("from-uri.example"));
        let req = Request::get("/x")
            .header(header::HOST, "h.example:1")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req), Some("h.example:1"));
        assert_eq!(request_host(&Request::get("/x").body(()).unwrap()), None);
    }

    proptest! {
        #[test]
        fn normalisation_is_idempotent(raw in "[A-Za-z0-9.:\\[\\]-]{0,40}") {
            let once = normalize_host(&raw).into_owned();
            prop_assert_eq!(normalize_host(&once).into_owned(), once.clone());
        }

        #[test]
        fn any_port_is_ignored(name in "[a-z][a-z0-9.-]{0,30}[a-z]", port in 0u16..) {
            let with_port = format!("{}:{}", name.to_uppercase(), port);
            prop_assert_eq!(normalize_host(&with_port), normalize_host(&name));
        }
    }
}
