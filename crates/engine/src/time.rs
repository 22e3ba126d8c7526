//! Times as engines stamp them and users give them: RFC 3339 UTC with
//! nanoseconds (what `docker logs -t` prints), and `--since`/`--until` values.

use std::time::{SystemTime, UNIX_EPOCH};

/// Now as `2026-11-28T00:23:14.123456789Z`.
pub fn timestamp_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format_time(d.as_secs() as i64, d.subsec_nanos())
}

/// Seconds since the epoch as RFC 3339 UTC with nanoseconds.
pub fn format_time(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A `--since`/`--until` value → a canonical stamp: RFC 3339 (`2026-11-28T00:23:14Z`,
/// with a fraction or an offset), a date, Unix seconds, or a duration back
/// from now (`10m`, `1h30m`).
pub fn parse_when(text: &str) -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    if let Some(d) = berth_compose::units::parse_duration(text) {
        if text.chars().any(|c| c.is_ascii_alphabetic()) {
            let t = now.saturating_sub(d);
            return Some(format_time(t.as_secs() as i64, t.subsec_nanos()));
        }
    }
    if let Ok(secs) = text.parse::<i64>() {
        return Some(format_time(secs, 0));
    }
    let (date, time) = text.split_once('T').unwrap_or((text, "00:00:00Z"));
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    if d.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Split off the zone: Z, +HH:MM or -HH:MM.
    let (clock, offset) = if let Some(c) = time.strip_suffix('Z') {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, z) = time.split_at(i);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let (h, mi) = z[1..].split_once(':')?;
        (
            c,
            sign * (h.parse::<i64>().ok()? * 3600 + mi.parse::<i64>().ok()? * 60),
        )
    } else {
        (time, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    let nanos = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")[..9].parse::<u32>().ok()?
    };
    let secs =
        days_from_civil(y, m as u32, day as u32) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    Some(format_time(secs, nanos))
}

/// (year, month, day) → days since 1970-01-01 (inverse of `civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(format_time(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            format_time(1_795_825_394, 5),
            "2026-11-28T00:23:14.000000005Z"
        );
        assert_eq!(
            format_time(951_782_400, 0),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn when_values_parse() {
        assert_eq!(
            parse_when("2026-11-28T00:23:14Z").unwrap(),
            "2026-11-28T00:23:14.000000000Z"
        );
        assert_eq!(
            parse_when("2026-11-28T01:23:14.5+01:00").unwrap(),
            "2026-11-28T00:23:14.500000000Z"
        );
        assert_eq!(
            parse_when("2000-02-29").unwrap(),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(parse_when("0").unwrap(), "1970-01-01T00:00:00.000000000Z");
        let ten = parse_when("10m").unwrap();
        assert!(ten < timestamp_now(), "{ten}");
        assert!(parse_when("yesterday").is_none());
        assert!(parse_when("2026-13-01").is_none());
    }
}
