//! A session's COW by cause and by memory region in words (issue 15), for the watch
//! lines, the summary, `report` and the diagnosis.
use std::collections::BTreeMap;

use super::units::fmt_bytes;
use crate::trace::ledger::{Causes, Regions};

/// `SET 96.1%, event loop 2.0%, other 1.9%`: the `max` largest causes, then `other`
/// (always shown, so the split adds up).
pub fn causes_brief(c: &Causes, max: usize) -> String {
    let mut parts: Vec<String> = c
        .by_cause
        .iter()
        .filter(|r| r.cause != "other")
        .take(max)
        .map(|r| format!("{} {:.1}%", r.cause, r.share_pct))
        .collect();
    let shown: f64 = c
        .by_cause
        .iter()
        .filter(|r| r.cause != "other")
        .take(max)
        .map(|r| r.share_pct)
        .sum();
    let rest = if c.copies == 0 {
        0.0
    } else {
        (100.0 - shown).max(0.0)
    };
    parts.push(format!("other {rest:.1}%"));
    parts.join(", ")
}

/// `heap 60.2%, anonymous 39.0%, unknown (before the map was read) 0.8%`: the regions
/// by kind, largest first.
pub fn regions_brief(r: &Regions, max: usize) -> String {
    let mut by_kind: BTreeMap<&str, f64> = BTreeMap::new();
    for row in &r.rows {
        *by_kind.entry(row.kind.as_str()).or_default() += row.share_pct;
    }
    let mut v: Vec<(&str, f64)> = by_kind.into_iter().collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.iter()
        .take(max)
        .map(|(k, p)| format!("{k} {p:.1}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What to do about a cause (README, "COW by cause").
fn advice(cause: &str, kind: &str) -> &'static str {
    match (kind, cause) {
        ("command", _) => {
            "writes of this command touch pages shared with the child: batch or defer them while saves run, or save at quiet times"
        }
        (_, "expiry") => {
            "keys expiring during the save free memory in shared pages: spread TTLs, or lower `hz`/`active-expire-effort` around saves"
        }
        (_, "eviction") => {
            "eviction frees memory in shared pages: raise `maxmemory` headroom so saves do not run at the limit"
        }
        (_, "defrag") => {
            "active defrag moves values while the child shares them: set `activedefrag no` during saves"
        }
        (_, "rehash") => {
            "a dict rehash rewrites tables shared with the child (Redis skips resizing during saves unless the table is very full): fewer keys per db, or `activerehashing no`"
        }
        (_, "cron") | (_, "event loop") => {
            "the server's own bookkeeping (client buffers, replies, AOF buffer): usually small; many clients or large replies make it grow"
        }
        ("thread", _) => {
            "a background thread (lazy free, I/O threads) wrote shared pages: e.g. `lazyfree-lazy-*` frees in bio_lazy_free"
        }
        _ => "",
    }
}

/// The diagnosis sentence: the largest cause, the split, and what to do about it.
pub fn cause_line(c: &Causes) -> Option<String> {
    if c.copies == 0 {
        return None;
    }
    let mut s = format!("By cause: {}.", causes_brief(c, 4));
    if let Some(top) = c.by_cause.iter().find(|r| r.cause != "other")
        && top.share_pct >= 50.0
    {
        let a = advice(&top.cause, &top.kind);
        if !a.is_empty() {
            s.push_str(&format!(" {} made most copies: {a}.", top.cause));
        }
    }
    if let Some(n) = &c.note {
        s.push_str(&format!(" ({n})"));
    }
    Some(s)
}

/// `report`'s tables of a session: its parent's copies by cause and by region.
pub fn tables(causes: Option<&Causes>, regions: Option<&Regions>) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if let Some(c) = causes {
        out.push_str("\n  Parent's copies by cause:\n");
        for r in &c.by_cause {
            let _ = writeln!(
                out,
                "    {:<28} {:>10} {:>6.1}%",
                r.cause, r.copies, r.share_pct
            );
        }
        if let Some(n) = &c.note {
            let _ = writeln!(out, "    note: {n}");
        }
    }
    if let Some(rg) = regions.filter(|r| r.copies > 0) {
        out.push_str("\n  Parent's copies by memory region (the map at fork):\n");
        for r in rg.rows.iter().take(12) {
            let range = if r.end > r.start {
                format!("{:x}-{:x} {}", r.start, r.end, fmt_bytes(r.end - r.start))
            } else {
                String::new()
            };
            let thp = match r.thp_eligible {
                Some(true) => " THP-eligible",
                Some(false) => "",
                None => " THP if madvised",
            };
            let path = r.path.as_deref().map_or(String::new(), |p| format!(" {p}"));
            let _ = writeln!(
                out,
                "    {:<34} {:>10} {:>6.1}%  {range}{path}{thp}",
                r.kind, r.copies, r.share_pct
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::ledger::{CauseShare, RegionShare};

    fn row(cause: &str, kind: &str, copies: u64, share_pct: f64) -> CauseShare {
        CauseShare {
            cause: cause.into(),
            kind: kind.into(),
            copies,
            share_pct,
        }
    }

    #[test]
    fn brief_and_diagnosis() {
        let c = Causes {
            copies: 100,
            by_cause: vec![
                row("SET", "command", 96, 96.0),
                row("event loop", "background", 2, 2.0),
                row("other", "other", 2, 2.0),
            ],
            note: None,
        };
        assert_eq!(
            causes_brief(&c, 3),
            "SET 96.0%, event loop 2.0%, other 2.0%"
        );
        assert_eq!(causes_brief(&c, 1), "SET 96.0%, other 4.0%");
        let l = cause_line(&c).unwrap();
        assert!(l.starts_with("By cause: SET 96.0%"), "{l}");
        assert!(
            l.contains("SET made most copies: writes of this command"),
            "{l}"
        );
        let none = Causes {
            copies: 5,
            by_cause: vec![row("other", "other", 5, 100.0)],
            note: Some("commands cannot be named".into()),
        };
        assert_eq!(
            cause_line(&none).unwrap(),
            "By cause: other 100.0%. (commands cannot be named)"
        );
    }

    #[test]
    fn regions_by_kind() {
        let r = |kind: &str, share_pct: f64| RegionShare {
            kind: kind.into(),
            share_pct,
            ..Default::default()
        };
        let regions = Regions {
            copies: 10,
            rows: vec![r("anonymous", 40.0), r("heap", 50.0), r("anonymous", 10.0)],
        };
        assert_eq!(regions_brief(&regions, 3), "anonymous 50.0%, heap 50.0%");
    }
}
