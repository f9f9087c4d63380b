//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` header a
//! request arrives with, parsed strictly as the spec says (a header that breaks a rule is
//! ignored and a new trace starts), and the `traceparent` the router sends on. `tracestate` is
//! kept as the client sent it when it parses, and dropped otherwise. Pure: no I/O, no clocks.

use http::{HeaderMap, HeaderValue};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// The request header carrying the trace id, the caller's span id and the sampled flag.
pub const TRACEPARENT: &str = "traceparent";
/// The request header carrying vendor-specific trace data, passed on unchanged.
pub const TRACESTATE: &str = "tracestate";

/// Length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
const VERSION_00_LEN: usize = 55;

/// Why a `traceparent` header was not accepted (the request then starts a new trace).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceParentError {
    #[error("traceparent is not `version-traceid-parentid-flags` with 2, 32, 16 and 2 hex digits")]
    Malformed,
    #[error("traceparent has uppercase or non-hex digits (the spec allows lowercase hex only)")]
    NotLowercaseHex,
    #[error("traceparent version ff is forbidden")]
    ForbiddenVersion,
    #[error("traceparent version 00 must be exactly 55 characters long")]
    TrailingData,
    #[error("traceparent trace-id is all zeros")]
    ZeroTraceId,
    #[error("traceparent parent-id is all zeros")]
    ZeroParentId,
}

/// A parsed `traceparent`: the caller's trace and span, and its flags (only `sampled` is
/// defined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: TraceId,
    pub parent_id: SpanId,
    pub flags: TraceFlags,
}

// === impl TraceParent ===

impl TraceParent {
    /// Parses a `traceparent` value. Versions above 00 are read as 00 (their first four fields)
    /// when what follows is separated by a dash, as the spec asks of parsers.
    pub fn parse(value: &[u8]) -> Result<Self, TraceParentError> {
        if value.len() < VERSION_00_LEN {
            return Err(TraceParentError::Malformed);
        }
        let version = hex_field(&value[0..2])?;
        if version == 0xff {
            return Err(TraceParentError::ForbiddenVersion);
        }
        if [2, 35, 52].iter().any(|&at| value[at] != b'-') {
            return Err(TraceParentError::Malformed);
        }
        match (version, value.len()) {
            (0, VERSION_00_LEN) => {}
            (0, _) => return Err(TraceParentError::TrailingData),
            (_, VERSION_00_LEN) => {}
            _ if value[VERSION_00_LEN] == b'-' => {}
            _ => return Err(TraceParentError::Malformed),
        }
        let trace_id = hex_field(&value[3..35])?;
        let parent_id = hex_field(&value[36..52])?;
        let flags = hex_field(&value[53..55])?;
        if trace_id == 0 {
            return Err(TraceParentError::ZeroTraceId);
        }
        if parent_id == 0 {
            return Err(TraceParentError::ZeroParentId);
        }
        Ok(Self {
            trace_id: TraceId::from(trace_id),
            parent_id: SpanId::from(parent_id as u64),
            // Flags of unknown meaning are not passed on (the spec's advice for version 00).
            flags: TraceFlags::new(flags as u8) & TraceFlags::SAMPLED,
        })
    }

    /// The remote parent span context of a request from its headers: `None` when it has no
    /// valid `traceparent` (or more than one). An unparsable `tracestate` is dropped.
    pub fn remote_context(headers: &HeaderMap) -> Option<SpanContext> {
        let mut values = headers.get_all(TRACEPARENT).iter();
        let (value, None) = (values.next()?, values.next()) else {
            return None;
        };
        let parent = Self::parse(value.as_bytes()).ok()?;
        let state = trace_state(headers);
        Some(SpanContext::new(
            parent.trace_id,
            parent.parent_id,
            parent.flags,
            true,
            state,
        ))
    }
}

/// The `traceparent` (version 00) naming `context`'s span as the parent of what the receiver
/// does.
pub fn traceparent_value(context: &SpanContext) -> HeaderValue {
    let value = format!(
        "00-{:032x}-{:016x}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags()
    );
    HeaderValue::try_from(value).expect("lowercase hex and dashes are a valid header value")
}

/// The request's `tracestate` entries (several fields are one list, in order), or an empty
/// state when they do not parse.
fn trace_state(headers: &HeaderMap) -> TraceState {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let Ok(value) = value.to_str() else {
            return TraceState::default();
        };
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(value);
    }
    joined.parse().unwrap_or_default()
}

/// A field of lowercase hex digits (at most 32) as a number.
fn hex_field(field: &[u8]) -> Result<u128, TraceParentError> {
    field.iter().try_fold(0u128, |acc, &c| {
        let digit = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return Err(TraceParentError::NotLowercaseHex),
        };
        Ok(acc << 4 | u128::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn parse(s: &str) -> Result<TraceParent, TraceParentError> {
        TraceParent::parse(s.as_bytes())
    }

    #[test]
    fn the_specs_example_parses() {
        let p = parse(VALID).unwrap();
        assert_eq!(
            format!("{:032x}", p.trace_id),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(format!("{:016x}", p.parent_id), "00f067aa0ba902b7");
        assert!(p.flags.is_sampled());
        let unsampled = parse(&VALID.replace("-01", "-00")).unwrap();
        assert!(!unsampled.flags.is_sampled());
    }

    #[test]
    fn uppercase_hex_is_refused() {
        let upper = "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01";
        assert_eq!(parse(upper), Err(TraceParentError::NotLowercaseHex));
        let upper_flags = VALID.replace("-01", "-0A");
        assert_eq!(parse(&upper_flags), Err(TraceParentError::NotLowercaseHex));
    }

    #[test]
    fn all_zero_ids_are_refused() {
        let zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        assert_eq!(parse(zero_trace), Err(TraceParentError::ZeroTraceId));
        let zero_parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01";
        assert_eq!(parse(zero_parent), Err(TraceParentError::ZeroParentId));
    }

    #[test]
    fn version_ff_is_refused_and_bad_versions_too() {
        assert_eq!(
            parse(&VALID.replacen("00", "ff", 1)),
            Err(TraceParentError::ForbiddenVersion)
        );
        assert_eq!(
            parse(&VALID.replacen("00", "0g", 1)),
            Err(TraceParentError::NotLowercaseHex)
        );
        assert_eq!(
            parse(&VALID.replacen("00", "0", 1)),
            Err(TraceParentError::Malformed)
        );
    }

    #[test]
    fn version_00_takes_nothing_after_the_flags() {
        assert_eq!(
            parse(&format!("{VALID}-extra")),
            Err(TraceParentError::TrailingData)
        );
        assert_eq!(
            parse(&format!("{VALID} ")),
            Err(TraceParentError::TrailingData)
        );
    }

    #[test]
    fn a_future_version_is_read_as_00_when_its_extra_data_is_dashed() {
        let future = VALID.replacen("00", "cc", 1);
        assert_eq!(parse(&future).unwrap(), parse(VALID).unwrap());
        let with_more = format!("{future}-what-the-future-will-be-like");
        assert_eq!(parse(&with_more).unwrap(), parse(VALID).unwrap());
        assert_eq!(
            parse(&format!("{future}.x")),
            Err(TraceParentError::Malformed)
        );
    }

    #[test]
    fn wrong_separators_and_lengths_are_refused() {
        assert_eq!(parse(""), Err(TraceParentError::Malformed));
        assert_eq!(parse(&VALID[..54]), Err(TraceParentError::Malformed));
        assert_eq!(
            parse(&VALID.replace('-', "_")),
            Err(TraceParentError::Malformed)
        );
        let short_trace = "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01x";
        assert!(parse(short_trace).is_err());
    }

    #[test]
    fn unknown_flags_are_not_passed_on() {
        let p = parse(&VALID.replace("-01", "-ff")).unwrap();
        assert_eq!(p.flags, TraceFlags::SAMPLED);
    }

    #[test]
    fn the_remote_context_keeps_tracestate_and_refuses_two_traceparents() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.append(TRACESTATE, HeaderValue::from_static("congo=t61rcWkgMzE"));
        headers.append(
            TRACESTATE,
            HeaderValue::from_static("rojo=00f067aa0ba902b7"),
        );
        let cx = TraceParent::remote_context(&headers).unwrap();
        assert!(cx.is_remote() && cx.is_sampled());
        assert_eq!(
            cx.trace_state().header(),
            "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
        );
        headers.append(TRACEPARENT, HeaderValue::from_static(VALID));
        assert!(TraceParent::remote_context(&headers).is_none());
    }

    #[test]
    fn a_bad_tracestate_is_dropped_not_the_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(TRACESTATE, HeaderValue::from_static("=bad=,,"));
        let cx = TraceParent::remote_context(&headers).unwrap();
        assert_eq!(cx.trace_state().header(), "");
    }

    #[test]
    fn traceparent_is_written_as_version_00() {
        let p = parse(VALID).unwrap();
        let cx = SpanContext::new(
            p.trace_id,
            SpanId::from(0xabcu64),
            p.flags,
            false,
            TraceState::default(),
        );
        assert_eq!(
            traceparent_value(&cx),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
    }
}
