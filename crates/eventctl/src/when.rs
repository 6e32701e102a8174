//! Time arguments: RFC 3339 (`2026-01-02T15:04:05Z`), relative to now (`-2h`, `-30m`,
//! `-1d`, `-90s`), or `now`.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What the help and the errors say a time may be.
pub(crate) const TIME_FORMS: &str =
    "RFC 3339 (2026-01-02T15:04:05Z), relative to now (-2h, -30m, -1d) or now";

/// Parses a time argument (a clap value parser); relative times are resolved against the
/// current time, in UTC.
pub(crate) fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    parse_time_at(s, OffsetDateTime::now_utc())
}

fn parse_time_at(s: &str, now: OffsetDateTime) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(ago) = s.strip_prefix('-') {
        let d = humantime::parse_duration(ago)
            .map_err(|e| format!("invalid relative time {s:?}: {e}; write {TIME_FORMS}"))?;
        let d = time::Duration::try_from(d)
            .map_err(|_| format!("relative time {s:?} is too far back"))?;
        return now
            .checked_sub(d)
            .ok_or_else(|| format!("relative time {s:?} is too far back"));
    }
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|e| format!("invalid time {s:?} ({e}); write {TIME_FORMS}"))
}

/// RFC 3339 text of a time (UTC).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting an OffsetDateTime with a 4-digit year as RFC 3339 cannot fail; the
    // fallback only guards years beyond 9999.
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-01 12:00 UTC);

    #[test]
    fn relative_and_absolute_forms() {
        assert_eq!(parse_time_at("now", NOW).unwrap(), NOW);
        assert_eq!(
            parse_time_at("-2h", NOW).unwrap(),
            datetime!(2026-03-01 10:00 UTC)
        );
        assert_eq!(
            parse_time_at("-30m", NOW).unwrap(),
            datetime!(2026-03-01 11:30 UTC)
        );
        assert_eq!(
            parse_time_at("-1d", NOW).unwrap(),
            datetime!(2026-02-28 12:00 UTC)
        );
        assert_eq!(
            parse_time_at("2026-01-02T15:04:05+02:00", NOW).unwrap(),
            datetime!(2026-01-02 13:04:05 UTC)
        );
        assert_eq!(
            parse_time_at("2026-01-02T15:04:05.123456789Z", NOW).unwrap(),
            datetime!(2026-01-02 15:04:05.123456789 UTC)
        );
    }

    #[test]
    fn bad_times_say_what_is_accepted() {
        for bad in ["yesterday", "-2x", "2026-01-02", "+2h", ""] {
            let err = parse_time_at(bad, NOW).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }
}
