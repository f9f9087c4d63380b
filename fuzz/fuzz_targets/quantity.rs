//! Kubernetes quantities (`resources.*.memory` in bytes, `.cpu` in millicores) and Go
//! durations (Knative annotations) from `nimbus-api`: [`parse_bytes`], [`parse_millis`] and
//! [`parse_duration`] never panic (overflow checks are on), and agree with themselves: bytes are
//! millis rounded up to whole units, and a parsed value written back in canonical form (`5m`,
//! `5`, and Rust's `{:?}` of a `Duration`, whose units `ns us µs ms s` Go shares) parses to the
//! same value.

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use nimbus_api::duration::parse_duration;
use nimbus_api::quantity::{parse_bytes, parse_millis};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    quantity(s);
    duration(s);
});

fn quantity(s: &str) {
    let bytes = parse_bytes(s);
    if let Ok(millis) = parse_millis(s) {
        assert_eq!(
            bytes,
            Ok(millis.div_ceil(1000)),
            "{s:?}: bytes are not millis rounded up"
        );
        assert_eq!(
            parse_millis(&format!("{millis}m")),
            Ok(millis),
            "{s:?} = {millis}m"
        );
    }
    if let Ok(bytes) = bytes {
        assert_eq!(
            parse_bytes(&bytes.to_string()),
            Ok(bytes),
            "{s:?} = {bytes}"
        );
    }
}

fn duration(s: &str) {
    let Ok(d) = parse_duration(s) else { return };
    let shown = format!("{d:?}");
    let again = parse_duration(&shown).unwrap_or_else(|e| panic!("{s:?} = {shown}: {e}"));
    // Parsing goes through f64 seconds: allow its rounding, never more.
    let slack = Duration::from_nanos(2) + d.mul_f64(f64::EPSILON * 4.0);
    assert!(
        d.abs_diff(again) <= slack,
        "{s:?} = {d:?}, read back as {again:?}"
    );
}
