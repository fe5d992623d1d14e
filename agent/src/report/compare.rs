//! `report A B`: two traces side by side, to answer "did it help?" (THP off, a lower
//! maxmemory, saves moved to a replica). Sessions are grouped by server and kind; each
//! group's figures are medians over its ended sessions, with the change from A to B and
//! its sign. Pure: the text, JSON and HTML outputs are built from [`Comparison`].
use std::{collections::BTreeSet, fmt::Write as _};

use serde::Serialize;

use super::{fold::Report, session::Session};
use crate::text::units::{fmt_bytes, fmt_rate};

/// What a figure counts, for its formatting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    Bytes,
    BytesPerSecond,
    Percent,
    Milliseconds,
    Count,
}

impl Measure {
    fn fmt(self, v: f64) -> String {
        match self {
            Measure::Bytes => fmt_bytes(v.max(0.0).round() as u64),
            Measure::BytesPerSecond => fmt_rate(v),
            Measure::Percent => format!("{v:.1}%"),
            Measure::Milliseconds if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
            Measure::Milliseconds => format!("{v:.1} ms"),
            Measure::Count => format!("{v:.0}"),
        }
    }

    /// The change from A to B with its sign: `+12.0 MiB (+25.0%)`, `-3.1 ms (-40.0%)`.
    fn change(self, a: f64, b: f64) -> String {
        let d = b - a;
        let sign = if d > 0.0 {
            "+"
        } else if d < 0.0 {
            "-"
        } else {
            "±"
        };
        let abs = match self {
            // Percentages change in points, not percent of percent.
            Measure::Percent => format!("{:.1} points", d.abs()),
            m => m.fmt(d.abs()),
        };
        match pct_change(a, b) {
            Some(p) if self != Measure::Percent => format!("{sign}{abs} ({p:+.1}%)"),
            _ => format!("{sign}{abs}"),
        }
    }
}

fn pct_change(a: f64, b: f64) -> Option<f64> {
    (a > 0.0).then(|| (b - a) * 100.0 / a)
}

/// One figure of a group in both traces: the median over the group's ended sessions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: &'static str,
    pub measure: Measure,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `b - a`, and as a percentage of `a` (when `a` is not zero).
    pub change: Option<f64>,
    pub change_pct: Option<f64>,
}

/// The sessions of one kind on one server, in A and in B.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub kind: String,
    pub instance_a: Option<String>,
    pub instance_b: Option<String>,
    /// Ended sessions behind the medians (sessions without an end are not compared).
    pub saves_a: usize,
    pub saves_b: usize,
    pub figures: Vec<Figure>,
    /// Each ended session's COW in bytes, in the traces' order.
    pub cow_per_save_a: Vec<u64>,
    pub cow_per_save_b: Vec<u64>,
}

/// A setting of the host or the recorder, in both traces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub name: &'static str,
    pub a: String,
    pub b: String,
    pub differs: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Side {
    pub file: String,
    pub host: String,
    pub kernel: String,
    pub start_unix_ms: Option<u64>,
    pub sessions: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub report: &'static str,
    pub version: u32,
    pub a: Side,
    pub b: Side,
    pub settings: Vec<Setting>,
    pub groups: Vec<Group>,
    /// How servers were matched, traces that may not compare, and the like.
    pub notes: Vec<String>,
}

fn side(r: &Report) -> Side {
    Side {
        file: r.source.clone(),
        host: r.meta.host.clone(),
        kernel: r.meta.kernel.clone(),
        start_unix_ms: r.meta.start_unix_ms,
        sessions: r.sessions.len(),
    }
}

fn settings(a: &Report, b: &Report) -> Vec<Setting> {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "?".into());
    let of = |r: &Report| -> Vec<(&'static str, String)> {
        let m = &r.meta;
        vec![
            ("host", m.host.clone()),
            ("kernel", m.kernel.clone()),
            ("THP", opt(m.thp.clone())),
            (
                "vm.overcommit_memory",
                opt(m.overcommit_memory.map(|v| v.to_string())),
            ),
            ("page size", opt(m.page_size.map(|v| format!("{v} B")))),
            ("cowtrace", m.cowtrace_version.clone()),
            ("trace format", m.version.to_string()),
            ("COW hooks", m.attach.method.clone()),
            (
                "sample interval",
                opt(m.interval_ms.map(|v| format!("{v} ms"))),
            ),
        ]
    };
    of(a)
        .into_iter()
        .zip(of(b))
        .map(|((name, a), (_, b))| Setting {
            name,
            differs: a != b,
            a,
            b,
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

type Extract = fn(&Session) -> Option<f64>;

/// The figures compared, each from an ended session.
const FIGURES: [(&str, Measure, Extract); 9] = [
    ("COW per save", Measure::Bytes, |s| {
        s.end.as_ref().map(|e| e.cow_bytes_with_estimate() as f64)
    }),
    ("COW share of the RSS at fork", Measure::Percent, |s| {
        s.end.as_ref().and_then(|e| e.cow.pct_of_parent_rss)
    }),
    ("parent RSS at fork", Measure::Bytes, |s| {
        s.end
            .as_ref()
            .and_then(|e| e.cow.parent_rss_at_fork_bytes)
            .map(|b| b as f64)
    }),
    ("peak copy rate", Measure::BytesPerSecond, |s| {
        s.end.as_ref().map(|e| e.cow.peak_pages_per_s * 4096.0)
    }),
    ("save duration", Measure::Milliseconds, |s| {
        s.end.as_ref().map(|e| e.duration_ms as f64)
    }),
    ("fork latency", Measure::Milliseconds, |s| {
        s.start
            .as_ref()
            .and_then(|st| st.fork_us)
            .map(|us| us / 1000.0)
    }),
    ("write rate", Measure::BytesPerSecond, |s| {
        s.end
            .as_ref()
            .filter(|e| e.duration_ms > 0)
            .map(|e| e.writes.bytes as f64 * 1000.0 / e.duration_ms as f64)
    }),
    ("written per save", Measure::Bytes, |s| {
        s.end.as_ref().map(|e| e.writes.bytes as f64)
    }),
    ("disk per save", Measure::Bytes, |s| {
        s.end.as_ref().map(|e| e.disk.bytes as f64)
    }),
];

fn ended<'a>(r: &'a Report, instance: &str, kind: &str) -> Vec<&'a Session> {
    r.sessions
        .iter()
        .filter(|s| s.end.is_some() && s.kind() == kind && s.instance() == instance)
        .collect()
}

fn figures(a: &[&Session], b: &[&Session]) -> Vec<Figure> {
    FIGURES
        .iter()
        .map(|&(name, measure, get)| {
            let a = median(a.iter().filter_map(|s| get(s)).collect());
            let b = median(b.iter().filter_map(|s| get(s)).collect());
            let (change, change_pct) = match (a, b) {
                (Some(a), Some(b)) => (Some(b - a), pct_change(a, b)),
                _ => (None, None),
            };
            Figure {
                name,
                measure,
                a,
                b,
                change,
                change_pct,
            }
        })
        .collect()
}

fn cow_per_save(s: &[&Session]) -> Vec<u64> {
    s.iter()
        .filter_map(|s| s.end.as_ref().map(|e| e.cow_bytes_with_estimate()))
        .collect()
}

/// Servers named in a report's sessions, in order.
fn instances(r: &Report) -> BTreeSet<String> {
    r.sessions.iter().map(Session::instance).collect()
}

/// Compare two reports (each already filtered as asked).
pub fn compare(a: &Report, b: &Report) -> Comparison {
    let mut notes = Vec::new();
    let (ia, ib) = (instances(a), instances(b));
    // Pairs of server names: the same name in both; else, when each trace has exactly
    // one server, those two (a restarted server may listen elsewhere).
    let mut pairs: Vec<(Option<String>, Option<String>)> = Vec::new();
    if ia.len() == 1 && ib.len() == 1 && ia != ib {
        let (x, y) = (ia.first().cloned(), ib.first().cloned());
        notes.push(format!(
            "each trace has one server: {} in A is compared with {} in B",
            x.as_deref().unwrap_or("?"),
            y.as_deref().unwrap_or("?")
        ));
        pairs.push((x, y));
    } else {
        for i in ia.union(&ib) {
            pairs.push((
                ia.contains(i).then(|| i.clone()),
                ib.contains(i).then(|| i.clone()),
            ));
        }
        let only: Vec<String> = pairs
            .iter()
            .filter_map(|p| match p {
                (Some(x), None) => Some(format!("{x} only in A")),
                (None, Some(y)) => Some(format!("{y} only in B")),
                _ => None,
            })
            .collect();
        if !only.is_empty() {
            notes.push(format!(
                "servers not in both traces are shown on one side only: {}",
                only.join(", ")
            ));
        }
    }
    let mut groups = Vec::new();
    for (x, y) in pairs {
        let kinds: BTreeSet<&str> = a
            .sessions
            .iter()
            .filter(|s| x.as_deref() == Some(s.instance().as_str()))
            .chain(
                b.sessions
                    .iter()
                    .filter(|s| y.as_deref() == Some(s.instance().as_str())),
            )
            .map(Session::kind)
            .collect();
        for kind in kinds {
            let sa = x.as_deref().map_or(Vec::new(), |i| ended(a, i, kind));
            let sb = y.as_deref().map_or(Vec::new(), |i| ended(b, i, kind));
            groups.push(Group {
                kind: kind.to_string(),
                instance_a: x.clone(),
                instance_b: y.clone(),
                saves_a: sa.len(),
                saves_b: sb.len(),
                figures: figures(&sa, &sb),
                cow_per_save_a: cow_per_save(&sa),
                cow_per_save_b: cow_per_save(&sb),
            });
        }
    }
    let settings = settings(a, b);
    if settings.iter().any(|s| s.name == "host" && s.differs) {
        notes.push(
            "the traces come from different hosts: differences may be the hosts', not the change's"
                .into(),
        );
    }
    if settings
        .iter()
        .any(|s| s.name == "trace format" && s.differs)
    {
        notes.push(
            "the traces have different format versions: figures a version lacks are shown as ?"
                .into(),
        );
    }
    if groups.iter().all(|g| g.saves_a == 0 || g.saves_b == 0) {
        notes.push("no server and kind has ended sessions in both traces: nothing is compared side by side".into());
    }
    Comparison {
        report: "cowtrace-compare",
        version: 1,
        a: side(a),
        b: side(b),
        settings,
        groups,
        notes,
    }
}

impl Group {
    /// `rdb-bgsave on 127.0.0.1:6379` (or `A → B` when the names differ).
    pub fn title(&self) -> String {
        let name = |n: &Option<String>| n.clone().unwrap_or_else(|| "-".into());
        if self.instance_a == self.instance_b {
            format!("{} on {}", self.kind, name(&self.instance_a))
        } else {
            format!(
                "{} on {} (A) / {} (B)",
                self.kind,
                name(&self.instance_a),
                name(&self.instance_b)
            )
        }
    }

    /// One sentence on the COW per save, the figure the comparison is usually for.
    pub fn verdict(&self) -> Option<String> {
        let f = self.figures.first()?;
        let (a, b) = (f.a?, f.b?);
        let p = f.change_pct?;
        Some(if p.abs() < 5.0 {
            format!(
                "COW per save about the same in B ({} vs {}, {p:+.1}%).",
                Measure::Bytes.fmt(b),
                Measure::Bytes.fmt(a)
            )
        } else if p < 0.0 {
            format!(
                "B copied {:.0}% less per save than A ({} vs {}).",
                -p,
                Measure::Bytes.fmt(b),
                Measure::Bytes.fmt(a)
            )
        } else {
            format!(
                "B copied {p:.0}% more per save than A ({} vs {}).",
                Measure::Bytes.fmt(b),
                Measure::Bytes.fmt(a)
            )
        })
    }
}

impl Figure {
    pub fn cells(&self) -> [String; 3] {
        let v = |x: Option<f64>| x.map_or("?".into(), |x| self.measure.fmt(x));
        let change = match (self.a, self.b) {
            (Some(a), Some(b)) => self.measure.change(a, b),
            _ => "?".into(),
        };
        [v(self.a), v(self.b), change]
    }
}

/// The comparison as text.
pub fn text(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "cowtrace report: A compared with B");
    for (n, s) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            out,
            "  {n}: {} (host {}, {} session(s){})",
            s.file,
            if s.host.is_empty() { "?" } else { &s.host },
            s.sessions,
            s.start_unix_ms.map_or(String::new(), |ms| format!(
                ", recorded {}",
                crate::text::date::utc(ms, false)
            ))
        );
    }
    for n in &c.notes {
        let _ = writeln!(out, "  note: {n}");
    }
    out.push_str("\nSettings (* differs):\n");
    let w = c
        .settings
        .iter()
        .map(|s| s.a.chars().count())
        .max()
        .unwrap_or(1)
        .max(1);
    let _ = writeln!(out, "    {:<20}  {:<w$}  B", "setting", "A");
    for s in &c.settings {
        let _ = writeln!(
            out,
            "  {} {:<20}  {:<w$}  {}",
            if s.differs { "*" } else { " " },
            s.name,
            s.a,
            s.b
        );
    }
    for g in &c.groups {
        let _ = writeln!(
            out,
            "\n{} (medians; A: {} save(s), B: {} save(s)):",
            g.title(),
            g.saves_a,
            g.saves_b
        );
        if let Some(v) = g.verdict() {
            let _ = writeln!(out, "  {v}");
        }
        let rows: Vec<[String; 4]> = g
            .figures
            .iter()
            .map(|f| {
                let [a, b, d] = f.cells();
                [f.name.to_string(), a, b, d]
            })
            .collect();
        let mut width = [6, 1, 1, 6];
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                width[i] = width[i].max(c.chars().count());
            }
        }
        let _ = writeln!(
            out,
            "  {:<w0$}  {:>w1$}  {:>w2$}  change",
            "figure",
            "A",
            "B",
            w0 = width[0],
            w1 = width[1],
            w2 = width[2]
        );
        for r in rows {
            let _ = writeln!(
                out,
                "  {:<w0$}  {:>w1$}  {:>w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2]
            );
        }
    }
    if c.groups.is_empty() {
        out.push_str("\nNo fork session in either trace: nothing to compare.\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report;

    /// A trace with one server and saves of the given COW sizes (bytes) and durations.
    fn trace(host: &str, thp: &str, port: u16, saves: &[(u64, u64)]) -> String {
        let mut s = format!(
            r#"{{"type":"meta","format":"cowtrace","version":1,"host":"{host}","kernel":"6.18","thp":"{thp}","targets":"auto","pids":[10]}}"#
        );
        s.push('\n');
        for (i, (cow, ms)) in saves.iter().enumerate() {
            let id = i + 1;
            let rss = 100 << 20;
            s.push_str(&format!(
                r#"{{"type":"session_start","session":{id},"instance":"127.0.0.1:{port}","parent_pid":10,"child_pid":{c},"kind":"rdb-bgsave","fork_us":{fork}}}"#,
                c = 100 + id,
                fork = 1000 * id
            ));
            s.push('\n');
            s.push_str(&format!(
                r#"{{"type":"session_end","session":{id},"instance":"127.0.0.1:{port}","parent_pid":10,"child_pid":{c},"kind":"rdb-bgsave","duration_ms":{ms},"exit_code":0,"cow":{{"pages":{p},"bytes":{cow},"parent_rss_at_fork_bytes":{rss},"pct_of_parent_rss":{pct}}},"writes":{{"bytes":{w},"calls":3}}}}"#,
                c = 100 + id,
                p = cow / 4096,
                pct = *cow as f64 * 100.0 / rss as f64,
                w = 50 << 20
            ));
            s.push('\n');
        }
        s
    }

    fn read(name: &str, t: &str) -> Report {
        report::read(name, t.as_bytes()).expect("a trace")
    }

    fn figure<'a>(g: &'a Group, name: &str) -> &'a Figure {
        g.figures.iter().find(|f| f.name == name).expect(name)
    }

    #[test]
    fn medians_and_signs_per_server_and_kind() {
        let a = read(
            "a",
            &trace(
                "h",
                "always",
                6379,
                &[(40 << 20, 2000), (60 << 20, 3000), (50 << 20, 1000)],
            ),
        );
        let b = read(
            "b",
            &trace("h", "never", 6379, &[(10 << 20, 1000), (20 << 20, 1000)]),
        );
        let c = compare(&a, &b);
        assert_eq!(c.groups.len(), 1);
        let g = &c.groups[0];
        assert_eq!((g.saves_a, g.saves_b), (3, 2));
        assert_eq!(g.title(), "rdb-bgsave on 127.0.0.1:6379");
        let cow = figure(g, "COW per save");
        assert_eq!(cow.a, Some((50 << 20) as f64));
        assert_eq!(cow.b, Some((15 << 20) as f64));
        assert_eq!(cow.change_pct, Some(-70.0));
        assert_eq!(cow.cells()[2], "-35.0 MiB (-70.0%)");
        let dur = figure(g, "save duration");
        assert_eq!((dur.a, dur.b), (Some(2000.0), Some(1000.0)));
        let share = figure(g, "COW share of the RSS at fork");
        assert_eq!(share.cells()[2], "-35.0 points");
        assert_eq!(
            g.verdict().unwrap(),
            "B copied 70% less per save than A (15.0 MiB vs 50.0 MiB)."
        );
        let thp = c.settings.iter().find(|s| s.name == "THP").unwrap();
        assert!(thp.differs && thp.a == "always" && thp.b == "never");
        assert!(
            !c.settings
                .iter()
                .find(|s| s.name == "host")
                .unwrap()
                .differs
        );
        let t = text(&c);
        assert!(t.contains("* THP"), "{t}");
        assert!(t.contains("B copied 70% less"), "{t}");
    }

    #[test]
    fn one_server_each_is_matched_across_ports_and_hosts_are_flagged() {
        let a = read("a", &trace("h1", "never", 6379, &[(10 << 20, 1000)]));
        let b = read("b", &trace("h2", "never", 6400, &[(30 << 20, 1000)]));
        let c = compare(&a, &b);
        assert_eq!(c.groups.len(), 1);
        assert_eq!(
            c.groups[0].title(),
            "rdb-bgsave on 127.0.0.1:6379 (A) / 127.0.0.1:6400 (B)"
        );
        assert_eq!(figure(&c.groups[0], "COW per save").change_pct, Some(200.0));
        assert!(
            c.notes.iter().any(|n| n.contains("different hosts")),
            "{:?}",
            c.notes
        );
        assert!(
            c.notes.iter().any(|n| n.contains("one server")),
            "{:?}",
            c.notes
        );
    }

    #[test]
    fn no_sessions_says_so() {
        let a = read("a", &trace("h", "never", 1, &[]));
        let c = compare(&a, &a);
        assert!(c.groups.is_empty());
        assert!(text(&c).contains("nothing to compare"));
        assert!(c.notes.iter().any(|n| n.contains("nothing is compared")));
    }

    #[test]
    fn changes_read_with_their_sign() {
        assert_eq!(Measure::Milliseconds.change(10.0, 10.0), "±0.0 ms (+0.0%)");
        assert_eq!(Measure::Milliseconds.change(0.0, 5.0), "+5.0 ms");
        assert_eq!(Measure::Count.change(4.0, 2.0), "-2 (-50.0%)");
        assert_eq!(median(vec![3.0, f64::NAN, 1.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
