//! Cron expressions and time zones for Schedules: parsing (the `croner` crate, never a
//! hand-written parser) and the times a schedule fires at, in its zone.

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// Parse a schedule: five fields as a CronJob's (or `@hourly`, `@daily`, `@weekly`,
/// `@monthly`, `@yearly`), or six with leading seconds.
pub fn parse(expr: &str) -> Result<Cron, String> {
    if expr.trim().is_empty() {
        return Err("is required: a cron expression such as \"*/5 * * * *\"".into());
    }
    if expr.contains("TZ=") {
        return Err(format!(
            "{expr:?} names a time zone; put it in spec.timeZone instead, as a CronJob's"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .build()
        .parse(expr)
        .map_err(|e| {
            format!(
                "{expr:?} is not a cron expression ({e}); write five fields \
                 (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\""
            )
        })
}

/// An IANA time zone (`Europe/Berlin`, `UTC`).
pub fn time_zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("{name:?} is not a time zone of the IANA database; use a name such as \"Europe/Berlin\" or \"UTC\"")
    })
}

/// The first time after `after` that `cron` fires, in `tz`, as UTC.
pub fn next_after(cron: &Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = tz.from_utc_datetime(&after.naive_utc());
    cron.find_next_occurrence(&local, false)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The most recent time at or before `now` that `cron` fired, strictly after `since`, and how
/// many such times there were (capped at `cap`, after which the count is `cap`): the runs a
/// stopped controller missed, as a CronJob's controller counts them.
pub fn missed(
    cron: &Cron,
    tz: Tz,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    cap: usize,
) -> (Option<DateTime<Utc>>, usize) {
    let mut latest = None;
    let mut count = 0;
    let mut t = since;
    while let Some(next) = next_after(cron, tz, t) {
        if next > now {
            break;
        }
        latest = Some(next);
        count += 1;
        t = next;
        if count >= cap {
            // Too many to walk: jump to the last fire time before now.
            let mut probe = now - chrono::Duration::days(1);
            while let Some(n) = next_after(cron, tz, probe) {
                if n > now {
                    break;
                }
                latest = Some(n);
                probe = n;
            }
            break;
        }
    }
    (latest, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn five_fields_macros_and_seconds() {
        assert!(parse("*/5 * * * *").is_ok());
        assert!(parse("@hourly").is_ok());
        assert!(parse("*/2 * * * * *").is_ok());
        let e = parse("61 * * * *").unwrap_err();
        assert!(e.contains("not a cron expression"), "{e}");
        assert!(parse("").unwrap_err().contains("required"));
        assert!(
            parse("CRON_TZ=UTC 0 * * * *")
                .unwrap_err()
                .contains("timeZone")
        );
    }

    #[test]
    fn fires_in_its_time_zone() {
        let cron = parse("0 9 * * *").unwrap();
        let berlin = time_zone("Europe/Berlin").unwrap();
        // 09:00 in Berlin in December is 08:00 UTC.
        let next = next_after(&cron, berlin, at("2026-12-07T00:00:00Z")).unwrap();
        assert_eq!(next, at("2026-12-07T08:00:00Z"));
        assert!(time_zone("Mars/Olympus").is_err());
    }

    #[test]
    fn missed_runs_are_counted_and_the_latest_returned() {
        let cron = parse("*/10 * * * *").unwrap();
        let utc = time_zone("UTC").unwrap();
        let (latest, count) = missed(
            &cron,
            utc,
            at("2026-12-07T10:00:00Z"),
            at("2026-12-07T10:35:00Z"),
            100,
        );
        assert_eq!((latest, count), (Some(at("2026-12-07T10:30:00Z")), 3));
        let (latest, count) = missed(
            &cron,
            utc,
            at("2026-12-07T10:30:00Z"),
            at("2026-12-07T10:35:00Z"),
            100,
        );
        assert_eq!((latest, count), (None, 0));
        // Weeks of downtime: capped count, still the right latest time.
        let (latest, count) = missed(
            &cron,
            utc,
            at("2026-11-01T00:00:00Z"),
            at("2026-12-07T10:35:00Z"),
            100,
        );
        assert_eq!((latest, count), (Some(at("2026-12-07T10:30:00Z")), 100));
    }
}
