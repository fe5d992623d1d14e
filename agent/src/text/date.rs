//! Dates for people: a Unix time as UTC text (no time-zone database needed).

/// Year 9999 ends before this many seconds.
const MAX_SECS: u64 = 253_402_300_800;

/// `YYYY-MM-DD HH:MM:SS[.mmm] UTC` of a Unix time in ms; the raw number when it is out
/// of range.
pub fn utc(ms: u64, with_ms: bool) -> String {
    if ms / 1000 >= MAX_SECS {
        return format!("{ms} ms after 1970");
    }
    let (y, m, d, h, mi, s) = civil(ms / 1000);
    if with_ms {
        format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:03} UTC",
            ms % 1000
        )
    } else {
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    }
}

/// RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`) of a Unix time in seconds, for machines; the raw
/// number when it is out of range.
pub fn rfc3339(secs: u64) -> String {
    if secs >= MAX_SECS {
        return format!("{secs} s after 1970");
    }
    let (y, m, d, h, mi, s) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// (year, month, day, hour, minute, second) in UTC.
fn civil(secs: u64) -> (i64, i64, i64, u64, u64, u64) {
    let days = (secs / 86_400) as i64;
    let sod = secs % 86_400;
    // Days to civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(utc(0, false), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_123, true), "2000-02-29 00:00:00.123 UTC");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(MAX_SECS - 1), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(MAX_SECS), "253402300800 s after 1970");
    }
}
