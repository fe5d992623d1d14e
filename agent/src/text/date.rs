//! Dates for people: a Unix time as UTC text (no time-zone database needed).

/// `YYYY-MM-DD HH:MM:SS[.mmm] UTC` of a Unix time in ms; the raw number when it is out
/// of range.
pub fn utc(ms: u64, with_ms: bool) -> String {
    // Year 9999 ends before 253402300800 s.
    if ms >= 253_402_300_800_000 {
        return format!("{ms} ms after 1970");
    }
    let secs = ms / 1000;
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
    let (h, mi, s) = (sod / 3600, sod % 3600 / 60, sod % 60);
    if with_ms {
        format!(
            "{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{:03} UTC",
            ms % 1000
        )
    } else {
        format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    }
}
