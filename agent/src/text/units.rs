//! Numbers with their units, for every text output. One unit family everywhere: sizes
//! and rates, of memory and of disk alike, are IEC (KiB, MiB, MiB/s), so that two
//! figures side by side can be compared. Counts (pages, calls) are plain numbers, with
//! a decimal `k`/`M` when large.

/// What the values of a histogram are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Micros,
    Bytes,
    Pages,
}

/// Bytes per second, IEC like sizes: `512 B/s`, `12.1 MiB/s`.
pub fn fmt_rate(bytes_per_s: f64) -> String {
    format!("{}/s", fmt_bytes(bytes_per_s.max(0.0).round() as u64))
}

/// Bytes with one or two decimals: `512 B`, `1.5 KiB`, `120.5 MiB`, `2.00 GiB`.
pub fn fmt_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f >= K * K * K {
        format!("{:.2} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else if f >= K {
        format!("{:.1} KiB", f / K)
    } else {
        format!("{b} B")
    }
}

/// Lower bound of a power-of-two bucket, short: `16us`, `2ms`, `4K` (bytes), and for
/// pages a plain count (`4096`, `16.4k`), not a `4K` that would read as a size.
pub fn bucket_label(lo: u64, unit: Unit) -> String {
    if lo <= 1 {
        // Zero is recorded as one (hdrhistogram's lowest value).
        return "0-1".into();
    }
    match unit {
        Unit::Micros => fmt_us(lo),
        Unit::Bytes => binary(lo, "B"),
        Unit::Pages => fmt_count(lo),
    }
}

fn binary(v: u64, unit: &str) -> String {
    const K: u64 = 1024;
    match v {
        v if v >= K * K * K && v % (K * K * K) == 0 => format!("{}G", v / (K * K * K)),
        v if v >= K * K && v % (K * K) == 0 => format!("{}M", v / (K * K)),
        v if v >= K && v % K == 0 => format!("{}K", v / K),
        v => format!("{v}{unit}"),
    }
}

/// A value of `unit`, short.
pub fn fmt_val(v: u64, unit: Unit) -> String {
    match unit {
        Unit::Micros => fmt_us(v),
        Unit::Bytes => fmt_size(v),
        Unit::Pages => fmt_count(v),
    }
}

/// Bytes, at most five characters: `512B`, `4K`, `1.5M`, `2.0G`.
pub fn fmt_size(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    let (v, u) = match f {
        f if f >= K * K * K => (f / (K * K * K), "G"),
        f if f >= K * K => (f / (K * K), "M"),
        f if f >= K => (f / K, "K"),
        _ => return format!("{b}B"),
    };
    if v >= 99.95 || v.fract() == 0.0 {
        format!("{v:.0}{u}")
    } else {
        format!("{v:.1}{u}")
    }
}

/// Microseconds, at most five characters: `850us`, `1.2ms`, `131ms`, `2.5s`.
pub fn fmt_us(us: u64) -> String {
    let f = us as f64;
    match us {
        0..1_000 => format!("{us}us"),
        1_000..9_950 => format!("{:.1}ms", f / 1e3),
        9_950..999_500 => format!("{:.0}ms", f / 1e3),
        999_500..9_950_000 => format!("{:.1}s", f / 1e6),
        _ => format!("{:.0}s", f / 1e6),
    }
}

/// A count, at most five characters: `42`, `9999`, `12.3k`, `4.5M`.
pub fn fmt_count(c: u64) -> String {
    let f = c as f64;
    match c {
        0..10_000 => c.to_string(),
        10_000..999_500 => format!("{:.1}k", f / 1e3).replace(".0k", "k"),
        _ => format!("{:.1}M", f / 1e6),
    }
}

/// Milliseconds as an age: `850ms`, `12.3s`, `5m03s`, `2h01m`.
pub fn fmt_dur(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1e3),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

pub fn fmt_secs(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1e3)
    }
}

/// Bytes (or bytes/s) in MiB, at most seven characters.
pub fn fmt_mib(b: f64) -> String {
    let m = b / (1024.0 * 1024.0);
    if m < 999.95 {
        format!("{m:.1}")
    } else {
        format!("{m:.0}")
    }
}

pub fn fmt_pct(p: f64) -> String {
    if p < 9.95 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(fmt_bytes(512), "512 B");
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(126_353_408), "120.5 MiB");
        assert_eq!(fmt_bytes(2 << 30), "2.00 GiB");
    }

    #[test]
    fn formats() {
        assert_eq!(
            (
                fmt_us(850),
                fmt_us(1_234),
                fmt_us(131_072),
                fmt_us(2_500_000)
            ),
            (
                "850us".into(),
                "1.2ms".into(),
                "131ms".into(),
                "2.5s".into()
            )
        );
        assert_eq!(
            (
                fmt_count(42),
                fmt_count(12_345),
                fmt_count(20_000),
                fmt_count(4_500_000)
            ),
            ("42".into(), "12.3k".into(), "20k".into(), "4.5M".into())
        );
        assert_eq!(
            (
                fmt_dur(850),
                fmt_dur(12_345),
                fmt_dur(303_000),
                fmt_dur(7_260_000)
            ),
            (
                "850ms".into(),
                "12.3s".into(),
                "5m03s".into(),
                "2h01m".into()
            )
        );
        assert_eq!(
            (fmt_mib(126_353_408.0), fmt_mib(5e9)),
            ("120.5".into(), "4768".into())
        );
        assert_eq!(
            (fmt_pct(35.2), fmt_pct(3.52)),
            ("35%".into(), "3.5%".into())
        );
        assert_eq!(bucket_label(1, Unit::Micros), "0-1");
        assert_eq!(
            (
                bucket_label(16, Unit::Micros),
                bucket_label(4096, Unit::Bytes),
                bucket_label(4096, Unit::Pages),
                bucket_label(16384, Unit::Pages),
                bucket_label(1 << 20, Unit::Pages)
            ),
            (
                "16us".into(),
                "4K".into(),
                "4096".into(),
                "16.4k".into(),
                "1.0M".into()
            )
        );
        assert_eq!(bucket_label(512, Unit::Bytes), "512B");
        assert_eq!(
            (fmt_size(4096), fmt_size(1536), fmt_size(200 << 20)),
            ("4K".into(), "1.5K".into(), "200M".into())
        );
    }
}
