//! Image references: parsed and normalised the way Docker does (`hello:1` is
//! `docker.io/library/hello:1`), plus which registries are spoken to over plain HTTP.

use std::net::IpAddr;

use oci_client::Reference;

use crate::ImageError;
use crate::digest::Digest;

/// Parse `text` into a normalised reference.
pub(crate) fn parse(text: &str) -> Result<Reference, ImageError> {
    let invalid = |detail: String| ImageError::InvalidName {
        reference: text.to_string(),
        detail,
    };
    let reference: Reference = text.trim().parse().map_err(|e| {
        invalid(format!(
            "{e} (expected [registry[:port]/]name[:tag][@sha256:digest], lowercase)"
        ))
    })?;
    if let Some(d) = reference.digest() {
        Digest::parse(d).map_err(invalid)?;
    }
    Ok(reference)
}

/// The key a reference is stored under in refs.json: its normalised form without digest.
pub(crate) fn key(reference: &Reference) -> String {
    reference.whole()
}

/// The pinned manifest digest of `name@sha256:…`, if any.
pub(crate) fn pinned(reference: &Reference) -> Option<Digest> {
    reference.digest().and_then(|d| Digest::parse(d).ok())
}

/// Whether `registry` (`host[:port]`) is a loopback address, which is always spoken to over
/// plain HTTP (as Docker does).
pub(crate) fn is_loopback(registry: &str) -> bool {
    let host = host_of(registry);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host of `host[:port]` or `[v6]:port`.
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_normalised_like_docker() {
        assert_eq!(key(&parse("hello:1").unwrap()), "docker.io/library/hello:1");
        assert_eq!(
            key(&parse("nginx").unwrap()),
            "docker.io/library/nginx:latest"
        );
        assert_eq!(
            key(&parse("127.0.0.1:5000/hello:1").unwrap()),
            "127.0.0.1:5000/hello:1"
        );
    }

    #[test]
    fn bad_names_are_invalid() {
        for bad in ["", "Hello:1", "a b", "x@sha256:123", "x:y:z"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.reason(), "InvalidImageName", "{bad}: {err}");
        }
    }

    #[test]
    fn digest_references_are_pinned() {
        let hex = "a".repeat(64);
        let r = parse(&format!("127.0.0.1:5000/hello@sha256:{hex}")).unwrap();
        assert_eq!(pinned(&r).unwrap().hex(), hex);
        assert!(pinned(&parse("hello:1").unwrap()).is_none());
    }

    #[test]
    fn loopback_registries() {
        for yes in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "docker.io",
            "10.0.0.1:5000",
            "registry.example:443",
            "[fe80::1]:5000",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
