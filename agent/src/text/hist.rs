//! Power-of-two histograms as text, in the layout of bcc's `print_log2_hist`
//! (libbpf-tools' trace_helpers.c): every bucket from 0 up to the last non-empty one,
//! `low -> high : count |stars|`, 40 stars wide (20 when values pass 2^32).
use std::fmt::Write as _;

/// `val` of `max` as `*` out of `width`, like bcc's `print_stars` (a `+` when over).
pub fn stars(val: u64, max: u64, width: usize) -> String {
    let n = if max == 0 {
        0
    } else {
        (u128::from(val.min(max)) * width as u128 / u128::from(max)) as usize
    };
    let mut s = "*".repeat(n);
    s.push_str(&" ".repeat(width - n));
    if val > max {
        s.push('+');
    }
    s
}

/// `buckets` are `(lowest value, count)` of power-of-two buckets (`Hist::log2_buckets`),
/// in any order; `unit` names the values (`usecs`, `bytes`, `pages`). Empty when no
/// bucket has a count.
pub fn log2_hist(unit: &str, buckets: &[(u64, u64)]) -> String {
    let idx = |lo: u64| lo.max(1).ilog2();
    let Some(idx_max) = buckets.iter().filter(|b| b.1 > 0).map(|b| idx(b.0)).max() else {
        return String::new();
    };
    let (pad, unit_w, num_w, width) = if idx_max <= 32 {
        (5, 19, 10, 40)
    } else {
        (15, 29, 20, 20)
    };
    let max = buckets.iter().map(|b| b.1).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "{:pad$}{unit:<unit_w$} : count    distribution", "");
    for i in 0..=idx_max {
        let count = buckets
            .iter()
            .filter(|b| idx(b.0) == i)
            .map(|b| b.1)
            .sum::<u64>();
        let low = if i == 0 { 0 } else { 1u64 << i };
        let high = if i >= 63 {
            u64::MAX
        } else {
            (1u64 << (i + 1)) - 1
        };
        let _ = writeln!(
            out,
            "{low:>num_w$} -> {high:<num_w$} : {count:<8} |{}|",
            stars(count, max, width)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_layout_from_bucket_zero() {
        let text = log2_hist("usecs", &[(4, 2), (16, 4)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "     usecs               : count    distribution");
        // Rows 0-1, 2-3, 4-7, 8-15, 16-31: from bucket 0 to the last non-empty one.
        assert_eq!(lines.len(), 6, "{text}");
        assert!(
            lines[1].starts_with("         0 -> 1          : 0"),
            "{text}"
        );
        assert!(lines[3].contains(": 2        |********************                    |"));
        assert!(lines[5].contains(": 4        |****************************************|"));
    }

    #[test]
    fn empty_and_huge_values() {
        assert_eq!(log2_hist("bytes", &[]), "");
        assert_eq!(log2_hist("bytes", &[(8, 0)]), "");
        let text = log2_hist("bytes", &[(1 << 63, 1)]);
        assert!(
            text.lines()
                .last()
                .unwrap()
                .contains("18446744073709551615"),
            "{text}"
        );
        assert!(text.starts_with("               bytes"), "{text}");
    }

    #[test]
    fn stars_scale_and_overflow() {
        assert_eq!(stars(0, 0, 4), "    ");
        assert_eq!(stars(2, 4, 4), "**  ");
        assert_eq!(stars(5, 4, 4), "****+");
        assert_eq!(stars(u64::MAX, u64::MAX, 2), "**");
    }
}
