//! Calendar dates as `YYYY-MM-DD` strings: what the data sets carry, what
//! HTTP headers and npm publish times give, and how old a date is.

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Today's date in UTC.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_date((secs / 86_400) as i64)
}

/// Days since 1970-01-01 to a proleptic Gregorian date.
pub fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// A date to days since 1970-01-01 (the inverse of [`civil_date`]).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `YYYY-MM-DD` at the start of `s` (an ISO date or timestamp), checked.
pub fn parse_ymd(s: &str) -> Option<String> {
    let head = s.get(..10)?;
    let mut parts = head.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, i64, i64) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    ymd(y, m, d)
}

fn ymd(y: i64, m: i64, d: i64) -> Option<String> {
    let text = format!("{y:04}-{m:02}-{d:02}");
    // Round-tripping through the day count rejects 2024-02-30 and friends.
    ((1..=12).contains(&m) && (1..=31).contains(&d) && civil_date(days_from_civil(y, m, d)) == text)
        .then_some(text)
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) to `YYYY-MM-DD`.
pub fn from_http_date(s: &str) -> Option<String> {
    let mut words = s.split_whitespace().skip(1);
    let (d, mon, y) = (words.next()?, words.next()?, words.next()?);
    let m = MONTHS
        .iter()
        .position(|name| name[..3].eq_ignore_ascii_case(mon))? as i64
        + 1;
    ymd(y.parse().ok()?, m, d.parse().ok()?)
}

/// Days from `from` to `to` (both `YYYY-MM-DD`).
pub fn days_between(from: &str, to: &str) -> Option<i64> {
    let days = |s: &str| -> Option<i64> {
        let s = parse_ymd(s)?;
        Some(days_from_civil(
            s[..4].parse().ok()?,
            s[5..7].parse().ok()?,
            s[8..10].parse().ok()?,
        ))
    };
    Some(days(to)? - days(from)?)
}

/// An age in words: `12 days`, `5 months`, `2 years 4 months`.
pub fn age_words(days: i64) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if days < 0 {
        return "dated in the future".into();
    }
    if days < 60 {
        return plural(days, "day");
    }
    let months = days * 12 / 365;
    match (months / 12, months % 12) {
        (0, m) => plural(m, "month"),
        (y, 0) => plural(y, "year"),
        (y, m) => format!("{} {}", plural(y, "year"), plural(m, "month")),
    }
}

/// The newest date a text names: `YYYY-MM-DD`, `YYYYMMDD` (as in
/// `secadv/20151203.txt`), or a month and year (`july-2024`, the 1st of the
/// month: the day is not known, and the earlier day is the safe guess).
pub fn newest_date_named(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut found: Vec<String> = Vec::new();
    for (i, w) in words.iter().enumerate() {
        let digits = w.bytes().all(|b| b.is_ascii_digit());
        if digits && w.len() == 8 {
            if let Some(d) = ymd(
                w[..4].parse().unwrap_or(0),
                w[4..6].parse().unwrap_or(0),
                w[6..].parse().unwrap_or(0),
            ) {
                found.push(d);
            }
        }
        if digits && w.len() == 4 && i + 2 < words.len() {
            let (m, d) = (words[i + 1], words[i + 2]);
            if m.len() == 2 && d.len() == 2 {
                if let Some(d) = parse_ymd(&format!("{w}-{m}-{d}")) {
                    found.push(d);
                }
            }
        }
        let month = MONTHS
            .iter()
            .position(|name| *w == *name || (w.len() == 3 && name.starts_with(*w)));
        if let (Some(m), Some(y)) = (month, words.get(i + 1)) {
            if y.len() == 4 && y.bytes().all(|b| b.is_ascii_digit()) {
                if let Some(d) = ymd(y.parse().unwrap_or(0), m as i64 + 1, 1) {
                    found.push(d);
                }
            }
        }
    }
    found.into_iter().filter(|d| d.as_str() >= "1990").max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(20_785), "2026-11-28");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(days_between("2024-07-01", "2026-12-02"), Some(884));
        assert_eq!(
            parse_ymd("2024-12-12T23:49:11.345000+00:00").as_deref(),
            Some("2024-12-12")
        );
        assert_eq!(parse_ymd("2024-02-30"), None);
        assert_eq!(parse_ymd("v22"), None);
        assert_eq!(
            from_http_date("Wed, 21 Oct 2015 07:28:00 GMT").as_deref(),
            Some("2015-10-21")
        );
        assert_eq!(from_http_date("yesterday"), None);
        assert_eq!(age_words(1), "1 day");
        assert_eq!(age_words(884), "2 years 5 months");
        assert_eq!(age_words(365), "1 year");
        assert_eq!(age_words(90), "2 months");
    }

    #[test]
    fn dates_named_in_references() {
        let d = |s: &str| newest_date_named(s);
        assert_eq!(
            d("https://nodejs.org/en/blog/vulnerability/july-2024-security-releases/").as_deref(),
            Some("2024-07-01")
        );
        assert_eq!(
            d("https://nodejs.org/en/blog/vulnerability/openssl-january-2017/").as_deref(),
            Some("2017-01-01")
        );
        assert_eq!(
            d("http://openssl.org/news/secadv/20151203.txt").as_deref(),
            Some("2015-12-03")
        );
        assert_eq!(d("2019-02-28").as_deref(), Some("2019-02-28"));
        assert_eq!(d("https://github.com/nodejs/node/pull/8714"), None);
        assert_eq!(d("may-2020 or may be 2021").as_deref(), Some("2020-05-01"));
    }
}
