//! The router's route key: [`request_host`] picks the host a request names (the authority of an
//! absolute-form target or HTTP/2 `:authority`, else the `Host` header), [`normalize_host`]
//! turns it into the key the routing table is built and looked up with.
//!
//! Input: the request target, a newline, the `Host` header value. Properties: no panic; a key is
//! in normal form (normalising it again changes nothing, no upper case, no trailing dot), ignores
//! case, a trailing dot and a port; and whenever the key is a plain host name it is the host the
//! `http` crate's URI parser reads from the same authority, so the router never routes a request
//! to a host other than the one it names.

#![no_main]

use http::uri::Authority;
use http::{Request, Uri, header};
use libfuzzer_sys::fuzz_target;
use nimbus_router::{normalize_host, request_host};

fuzz_target!(|data: &[u8]| {
    let (target, host) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    if let Ok(raw) = std::str::from_utf8(host) {
        check_key(raw);
    }
    let mut req = Request::get("/");
    if let Ok(uri) = Uri::try_from(target) {
        req = req.uri(uri);
    }
    if let Ok(value) = header::HeaderValue::from_bytes(host) {
        req = req.header(header::HOST, value);
    }
    let Ok(req) = req.body(()) else { return };
    let Some(raw) = request_host(&req) else {
        // Only when neither names a host (obs-text in Host is no host name).
        assert!(req.uri().authority().is_none());
        assert!(
            req.headers()
                .get(header::HOST)
                .is_none_or(|h| h.to_str().is_err())
        );
        return;
    };
    if let Some(authority) = req.uri().authority() {
        assert_eq!(
            raw,
            authority.as_str(),
            "the URI's authority wins over Host"
        );
    }
    let key = check_key(raw);
    if is_host_name(&key)
        && let Ok(authority) = Authority::try_from(raw)
    {
        assert_eq!(
            key,
            normalize_host(authority.host()),
            "{raw:?} routes to another host"
        );
    }
});

/// The key of `raw`, checked to be in normal form and to ignore what normalising drops.
fn check_key(raw: &str) -> String {
    let key = normalize_host(raw).into_owned();
    assert_eq!(
        normalize_host(&key),
        key,
        "normalising {raw:?} twice changes it"
    );
    assert!(
        !key.bytes().any(|b| b.is_ascii_uppercase()),
        "{key:?} has upper case"
    );
    assert!(!key.ends_with('.'), "{key:?} ends with a dot");
    assert_eq!(
        normalize_host(&raw.to_ascii_uppercase()),
        key,
        "case matters for {raw:?}"
    );
    assert_eq!(
        normalize_host(&format!("{key}.")),
        key,
        "a trailing dot matters for {key:?}"
    );
    if !key.contains(':') && !key.starts_with('[') {
        assert_eq!(
            normalize_host(&format!("{key}:8080")),
            key,
            "a port matters for {key:?}"
        );
    }
    key
}

/// A DNS name or IPv4 address as routes name hosts: letters, digits, `-` and `.`.
fn is_host_name(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}
