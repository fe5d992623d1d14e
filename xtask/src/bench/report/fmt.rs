//! Formatting shared by the sections: sizes, rates, Markdown tables.

use super::super::stats::{Spread, ratio_or_na};
use std::fmt::Write as _;

pub fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

/// `Spread` of bytes, as MiB.
pub fn mib_spread(s: Option<Spread>) -> String {
    s.map_or_else(
        || "n/a".into(),
        |s| {
            format!(
                "{} ({}–{})",
                mib(s.median),
                mib(s.min).trim_end_matches(" MiB"),
                mib(s.max)
            )
        },
    )
}

pub fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0}k/s", r / 1e3)
    }
}

pub fn rate_spread(s: Option<Spread>) -> String {
    s.map_or_else(
        || "n/a".into(),
        |s| format!("{} ({}–{})", rate(s.median), rate(s.min), rate(s.max)),
    )
}

/// `Spread::of` over any sequence of values.
pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    Spread::of(&values.into_iter().collect::<Vec<_>>())
}

/// The median, or NaN when there were no runs.
pub fn median(s: Option<Spread>) -> f64 {
    s.map_or(f64::NAN, |s| s.median)
}

/// The cell of the reference configuration in a "ratio to it" column, or `cell()`.
pub fn unless_reference(reference: bool, mark: &str, cell: impl FnOnce() -> String) -> String {
    if reference { mark.to_string() } else { cell() }
}

/// A ratio cell: `1 (reference)` for the reference configuration itself.
pub fn ratio_cell(reference: bool, s: impl FnOnce() -> Option<Spread>) -> String {
    unless_reference(reference, "1 (reference)", || ratio_or_na(s()))
}

/// A table's header row and its separator.
pub fn head(md: &mut String, columns: &[&str]) {
    let _ = writeln!(
        md,
        "| {} |\n|{}",
        columns.join(" | "),
        "---|".repeat(columns.len())
    );
}

/// One table row.
pub fn row<S: AsRef<str>>(md: &mut String, cells: &[S]) {
    let cells: Vec<&str> = cells.iter().map(AsRef::as_ref).collect();
    let _ = writeln!(md, "| {} |", cells.join(" | "));
}

/// A table of one row per configuration and one column per round (`–` where a run is
/// missing), then a blank line.
pub fn by_round<'a, T: 'a>(
    md: &mut String,
    rounds: usize,
    rows: impl IntoIterator<Item = (&'a str, &'a Vec<Option<T>>)>,
    cell: impl Fn(&T) -> String,
) {
    let names: Vec<String> = (1..=rounds).map(|i| format!("r{i}")).collect();
    let mut columns = vec!["configuration"];
    columns.extend(names.iter().map(String::as_str));
    head(md, &columns);
    for (label, runs) in rows {
        let mut cells = vec![label.to_string()];
        cells.extend(runs.iter().map(|x| x.as_ref().map_or("–".into(), &cell)));
        row(md, &cells);
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables() {
        let mut md = String::new();
        head(&mut md, &["a", "b"]);
        row(&mut md, &["1", "2"]);
        assert_eq!(md, "| a | b |\n|---|---|\n| 1 | 2 |\n");
        let mut md = String::new();
        by_round(&mut md, 2, [("x", &vec![Some(1), None])], |v| v.to_string());
        assert_eq!(
            md,
            "| configuration | r1 | r2 |\n|---|---|---|\n| x | 1 | – |\n\n"
        );
        assert_eq!(rate(2.5e6), "2.50 M/s");
        assert_eq!(rate(464e3), "464k/s");
        assert_eq!(
            mib_spread(spread([1048576.0, 2097152.0, 3145728.0])),
            "2.0 MiB (1.0–3.0 MiB)"
        );
    }
}
