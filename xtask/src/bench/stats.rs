//! Summaries of repeated measurements: median with min–max, and their formatting.
//! Pure functions, unit-tested without root.

/// Median and range of a set of runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// `None` for an empty set; NaN values are ignored.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            n,
        })
    }

    /// `1.02× (0.98–1.07)`.
    pub fn ratio(&self) -> String {
        format!("{:.3}× ({:.3}–{:.3})", self.median, self.min, self.max)
    }

    /// The median with `digits` decimals, then the range: `2.41 (2.30–2.77)`.
    pub fn num(&self, digits: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = digits
        )
    }
}

/// `Spread::ratio`, or `n/a` when there were no runs.
pub fn ratio_or_na(s: Option<Spread>) -> String {
    s.map_or_else(|| "n/a".to_string(), |s| s.ratio())
}

/// `Spread::num`, or `n/a`.
pub fn num_or_na(s: Option<Spread>, digits: usize) -> String {
    s.map_or_else(|| "n/a".to_string(), |s| s.num(digits))
}

/// Element-wise `a[i] / b[i]` over the pairs where both exist and `b[i] > 0`.
pub fn ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// The order in which round `round` runs `n` configurations: a rotation, so that each
/// configuration takes every position equally often and slow drifts of the machine
/// (another build starting) do not always hit the same one.
pub fn rotation(n: usize, round: usize) -> Vec<usize> {
    (0..n).map(|i| (i + round) % n.max(1)).collect()
}

/// How a median compares with an upper target: `met` or `missed by 4.1%`.
pub fn verdict_max(median: f64, target: f64) -> String {
    if median <= target {
        "met".to_string()
    } else {
        format!("missed by {:.1}%", (median / target - 1.0) * 100.0)
    }
}

/// How a median compares with a lower target (a rate to reach): `met` or
/// `missed: 41% of the target`.
pub fn verdict_min(median: f64, target: f64) -> String {
    if median >= target {
        "met".to_string()
    } else {
        format!("missed: {:.0}% of the target", median / target * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_range() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(s.median, 2.5);
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn formatting() {
        let s = Spread::of(&[1.0, 1.02, 1.1]).unwrap();
        assert_eq!(s.ratio(), "1.020× (1.000–1.100)");
        assert_eq!(s.num(1), "1.0 (1.0–1.1)");
        assert_eq!(ratio_or_na(None), "n/a");
    }

    #[test]
    fn pairwise_ratios_skip_missing() {
        let a = [Some(2.0), None, Some(3.0), Some(1.0)];
        let b = [Some(1.0), Some(1.0), Some(0.0), Some(2.0)];
        assert_eq!(ratios(&a, &b), vec![2.0, 0.5]);
    }

    #[test]
    fn rotation_moves_every_config() {
        assert_eq!(rotation(3, 0), vec![0, 1, 2]);
        assert_eq!(rotation(3, 1), vec![1, 2, 0]);
        assert_eq!(rotation(3, 5), vec![2, 0, 1]);
    }

    #[test]
    fn verdicts() {
        assert_eq!(verdict_max(1.02, 1.03), "met");
        assert_eq!(verdict_max(1.0609, 1.03), "missed by 3.0%");
        assert_eq!(verdict_min(2.5e6, 2e6), "met");
        assert_eq!(verdict_min(0.8e6, 2e6), "missed: 40% of the target");
    }
}
