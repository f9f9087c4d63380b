//! Time ranges of queries: instants given as RFC 3339 or as a Go duration before now, rounded
//! out to whole minutes (the buckets usage is kept in).

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::UsageError;

/// `[since, until)`, in whole minutes since the epoch (UTC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

impl Window {
    /// The window from `since` to `until`; errors when it is empty or reversed.
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Result<Self, UsageError> {
        if since >= until {
            return Err(UsageError::BadQuery {
                field: "since",
                message: format!(
                    "{} is not before until ({}); give an earlier since or a later until",
                    since.to_rfc3339(),
                    until.to_rfc3339()
                ),
            });
        }
        Ok(Self { since, until })
    }

    /// The first minute bucket in the window.
    pub fn first_minute(&self) -> i64 {
        self.since.timestamp().div_euclid(60)
    }

    /// The first minute bucket after the window (the minute `until` falls in is included).
    pub fn end_minute(&self) -> i64 {
        self.until.timestamp().div_euclid(60) + i64::from(self.until.timestamp() % 60 != 0)
    }

    /// Whether minute bucket `minute` is in the window.
    pub fn contains(&self, minute: i64) -> bool {
        (self.first_minute()..self.end_minute()).contains(&minute)
    }
}

/// `value` as an instant: RFC 3339 (`2026-12-01T00:00:00Z`), or a Go duration (`24h`, `90m`)
/// before `now`. `field` names the parameter in errors.
pub fn parse_instant(
    value: &str,
    now: DateTime<Utc>,
    field: &'static str,
) -> Result<DateTime<Utc>, UsageError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let ago = nimbus_api::duration::parse_duration(value).map_err(|e| UsageError::BadQuery {
        field,
        message: format!(
            "{value:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration before now (24h): {e}"
        ),
    })?;
    let ago = chrono::Duration::from_std(ago).map_err(|_| UsageError::BadQuery {
        field,
        message: format!("{value:?} is too long ago"),
    })?;
    Ok(now - ago)
}

/// The start of `now`'s calendar month (UTC): where a monthly budget's spending starts.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

/// `YYYY-MM` of `now` (UTC): the key budget alerts are remembered under.
pub fn month_key(now: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", now.year(), now.month())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn instants_are_times_or_durations_ago() {
        let now = t("2026-12-08T01:00:00Z");
        assert_eq!(
            parse_instant("24h", now, "since").unwrap(),
            t("2026-12-07T01:00:00Z")
        );
        assert_eq!(
            parse_instant("2026-12-01T00:00:00+01:00", now, "since").unwrap(),
            t("2026-11-30T23:00:00Z")
        );
        let err = parse_instant("yesterday", now, "since")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("since: \"yesterday\" is neither"), "{err}");
    }

    #[test]
    fn windows_round_out_to_minutes() {
        let w = Window::new(t("2026-12-08T01:00:30Z"), t("2026-12-08T01:02:10Z")).unwrap();
        let m = t("2026-12-08T01:00:00Z").timestamp() / 60;
        assert!(w.contains(m) && w.contains(m + 2) && !w.contains(m + 3) && !w.contains(m - 1));
        assert!(Window::new(w.until, w.since).is_err());
    }

    #[test]
    fn months_start_on_the_first_at_midnight_utc() {
        let now = t("2026-12-08T01:02:03Z");
        assert_eq!(month_start(now), t("2026-12-01T00:00:00Z"));
        assert_eq!(month_key(now), "2026-12");
    }
}
