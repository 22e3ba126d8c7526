//! The small Go number formats instructions accept: `time.ParseDuration`
//! (HEALTHCHECK intervals), `strconv.ParseInt`/`ParseUint`/`ParseBool`
//! (retries, mount options) and go-units' `RAMInBytes` (tmpfs size).

/// `time.ParseDuration` in nanoseconds; `None` when malformed or out of
/// the int64 range.
pub(crate) fn parse_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut frac = "";
        if let Some(r) = rest.strip_prefix('.') {
            let len = r.bytes().take_while(u8::is_ascii_digit).count();
            frac = &r[..len];
            rest = &r[len..];
        }
        if int_part.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            // More digits than any in-range value has.
            if int_part.trim_start_matches('0').len() > 20 {
                return None;
            }
            int_part.parse().ok()?
        };
        // Digits past the 18th cannot change a truncated nanosecond count
        // of an in-range duration.
        let frac = frac.get(..frac.len().min(18)).unwrap_or_default();
        let frac_value: u128 = if frac.is_empty() {
            0
        } else {
            frac.parse().ok()?
        };
        let scale = 10u128.pow(u32::try_from(frac.len()).ok()?);
        total = total
            .checked_add(whole.checked_mul(unit)?)?
            .checked_add(frac_value * unit / scale)?;
        if total > 1 << 63 {
            return None;
        }
    }
    if neg {
        Some(i64::try_from(-i128::try_from(total).ok()?).ok()?)
    } else {
        i64::try_from(total).ok()
    }
}

/// `strconv.ParseInt(s, 10, 32)`.
pub(crate) fn parse_int32(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = s.parse().ok()?;
    i32::try_from(v).ok().map(i64::from)
}

/// `strconv.ParseUint(s, base, 32)` for base 8 or 10.
pub(crate) fn parse_uint32(s: &str, radix: u32) -> Option<u32> {
    if s.is_empty() || !s.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(s, radix).ok()
}

/// `strconv.ParseBool`.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// go-units `RAMInBytes`: `64m`, `1.5GiB`, `100` (binary multiples).
pub(crate) fn ram_in_bytes(s: &str) -> Option<i64> {
    let num_len = s
        .char_indices()
        .take_while(|&(i, c)| c.is_ascii_digit() || (c == '.' && i > 0))
        .count();
    let (num, mut rest) = s.split_at(num_len);
    if num.is_empty() || num.ends_with('.') || num.contains("..") {
        return None;
    }
    let size: f64 = num.parse().ok()?;
    rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let mult: f64 = match chars.peek().map(char::to_ascii_lowercase) {
        Some('k') => 1024f64,
        Some('m') => 1024f64.powi(2),
        Some('g') => 1024f64.powi(3),
        Some('t') => 1024f64.powi(4),
        Some('p') => 1024f64.powi(5),
        _ => 1.0,
    };
    if mult > 1.0 {
        chars.next();
    }
    if matches!(chars.peek(), Some('i' | 'I')) {
        chars.next();
    }
    if matches!(chars.peek(), Some('b' | 'B')) {
        chars.next();
    }
    if chars.next().is_some() {
        return None;
    }
    // Go converts with int64(float), which saturates like `as`.
    Some((size * mult) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0"), Some(0));
        assert_eq!(parse_duration("5s"), Some(5_000_000_000));
        assert_eq!(parse_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_duration("-1.5ms"), Some(-1_500_000));
        assert_eq!(parse_duration(".5us"), Some(500));
        assert_eq!(parse_duration("10µs"), Some(10_000));
        for bad in [
            "",
            "5",
            "s",
            "1x",
            ".s",
            "-",
            "9999999999999999999h",
            "1.2.3s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_int32("-3"), Some(-3));
        assert_eq!(parse_int32("3000000000"), None);
        assert_eq!(parse_int32("1_0"), None);
        assert_eq!(parse_uint32("0755", 8), Some(0o755));
        assert_eq!(parse_uint32("8", 8), None);
        assert_eq!(ram_in_bytes("64m"), Some(64 << 20));
        assert_eq!(ram_in_bytes("1.5 GiB"), Some(3 << 29));
        assert_eq!(ram_in_bytes("100"), Some(100));
        assert_eq!(ram_in_bytes("x"), None);
        assert_eq!(ram_in_bytes("1.2.3k"), None);
    }
}
