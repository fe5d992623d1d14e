//! The report as text. Pure and deterministic: it depends on the trace only (no clock, no
//! terminal width), so its output can be compared with golden files.
use std::fmt::Write as _;

use super::{
    fold::{DETAIL_SESSIONS, Report},
    session::{HistSummary, Session},
};
use crate::{
    text::{
        date::utc,
        diagnosis,
        exit::exit_text,
        hist::{log2_hist, stars},
        sync::{ANY_LATENCY, breakdown, latency_title, sync_counts},
        units::fmt_bytes,
    },
    trace::schema::{FsyncSummary, SyncCall},
};

mod detail;
use detail::session_detail;

/// The sessions table's sync column: every sync call, then each call apart.
const SYNC_COLUMN: &str = "sync (f/fd/sfr)";

/// A cell of [`SYNC_COLUMN`]: `17 (1/1/15)`, or the total alone for a trace that does not
/// tell the calls apart.
fn sync_cell(total: u64, by_call: Option<[u64; 3]>) -> String {
    match by_call {
        Some([f, d, r]) => format!("{total} ({f}/{d}/{r})"),
        None => total.to_string(),
    }
}

fn sync_cell_of(f: &FsyncSummary) -> String {
    sync_cell(f.calls, f.calls_by_call())
}

/// Width of the timeline bars.
const BAR: usize = 24;

fn secs(ms: u64) -> String {
    format!("{:.2} s", ms as f64 / 1000.0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

/// Columns sized to their content, two spaces apart, no trailing spaces.
fn table(indent: &str, head: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.0.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(w.len()) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from(indent);
        for (i, c) in cells.iter().enumerate() {
            let pad = w[i].saturating_sub(c.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            match head[i].1 {
                Align::Left => {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
                Align::Right => {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(head.iter().map(|h| h.0).collect());
    for r in rows {
        out.push_str(&line(
            r.iter()
                .map(String::as_str)
                .chain(std::iter::repeat(""))
                .take(head.len())
                .collect(),
        ));
    }
    out
}

/// A string from the trace, `?` when empty (missing).
fn known(s: &str) -> &str {
    if s.is_empty() { "?" } else { s }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

fn header(r: &Report, out: &mut String) {
    let m = &r.meta;
    let _ = writeln!(out, "cowtrace report: {}", r.source);
    let _ = writeln!(
        out,
        "  host:      {} (kernel {})",
        known(&m.host),
        known(&m.kernel)
    );
    let _ = writeln!(out, "  recorded:  {}", r.recorded());
    let _ = writeln!(
        out,
        "  recorder:  cowtrace {}{}, trace format {}{}{}",
        known(&m.cowtrace_version),
        m.build.as_ref().map_or(String::new(), |b| format!(
            " (commit {})",
            b.commit.get(..12).unwrap_or(&b.commit)
        )),
        m.version,
        m.interval_ms.map_or(String::new(), |i| format!(
            ", samples every {}",
            secs_short(i)
        )),
        if m.attach.method.is_empty() {
            String::new()
        } else {
            format!(", COW via {} hooks", m.attach.method)
        },
    );
    let pids: Vec<String> = m.pids.iter().map(u32::to_string).collect();
    let targets = match (m.targets.as_str(), pids.is_empty()) {
        ("auto", true) => "every Redis/Valkey server (none running at the start)".to_string(),
        ("auto", false) => format!(
            "every Redis/Valkey server (at the start: pid {})",
            pids.join(", ")
        ),
        (t, _) => format!("{} {}", known(t), pids.join(", ")),
    };
    let _ = writeln!(out, "  targets:   {}", targets.trim_end());
    let _ = writeln!(
        out,
        "  settings:  THP {}, vm.overcommit_memory {}, page size {}",
        m.thp.as_deref().unwrap_or("?"),
        opt(m.overcommit_memory),
        m.page_size.map_or("?".into(), |p| format!("{p} B")),
    );
    for l in diagnosis::host_diagnosis(&diagnosis::HostFacts::from_meta(m)) {
        let _ = writeln!(out, "  note:      {l}");
    }
    // Nonzero losses are the first warning, right below.
    match &r.end {
        Some(e) if e.lost_events > 0 => {}
        Some(_) => out.push_str("  lost events: 0\n"),
        None => out.push_str("  lost events: unknown (no `end` line)\n"),
    }
    if r.events.total() > 0 {
        let ev = &r.events;
        let _ = writeln!(
            out,
            "  events:    {} cow, {} zero_fill, {} write, {} io, {} sync{} line(s) (--events){}",
            ev.cow,
            ev.zero_fill,
            ev.write,
            ev.io,
            ev.fsync,
            ev.sync_calls().map(breakdown).unwrap_or_default(),
            if r.events_outside > 0 {
                format!(", {} outside any session", r.events_outside)
            } else {
                String::new()
            }
        );
    }
}

fn secs_short(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

fn sessions_table(r: &Report, out: &mut String) {
    match &r.filter {
        Some(f) => {
            let _ = writeln!(out, "Sessions: {} (selected by {f})", r.sessions.len());
        }
        None => {
            let _ = writeln!(out, "Sessions: {}", r.sessions.len());
        }
    }
    if r.sessions.is_empty() {
        out.push_str("  (no fork session in this trace)\n");
        return;
    }
    use Align::{Left as L, Right as R};
    let head = [
        ("session", R),
        ("kind", L),
        ("server", L),
        ("parent", R),
        ("child", R),
        ("duration", R),
        ("exit", L),
        ("COW", R),
        ("of RSS", R),
        ("pages parent/child", R),
        ("written", R),
        ("files", R),
        (SYNC_COLUMN, R),
        ("disk", R),
    ];
    let mut rows = Vec::new();
    for s in &r.sessions {
        let (parent, child) = s.pids();
        let mut row = vec![
            s.id.to_string(),
            s.kind().to_string(),
            s.instance(),
            opt(parent),
            opt(child),
        ];
        match (&s.end, &s.last_sample) {
            (Some(e), _) => row.extend([
                secs(e.duration_ms),
                exit_text(e.complete, e.exit_code, e.exit_signal),
                if e.attached_mid_save.is_some() {
                    format!("≈{}", fmt_bytes(e.cow_bytes_with_estimate()))
                } else {
                    fmt_bytes(e.cow.bytes)
                },
                e.cow
                    .pct_of_parent_rss
                    .map_or("?".into(), |p| format!("{p:.1}%")),
                format!("{}/{}", e.cow.parent_pages, e.cow.child_pages),
                fmt_bytes(e.writes.bytes),
                e.writes.files.len().to_string(),
                sync_cell_of(&e.fsync),
                fmt_bytes(e.disk.bytes),
            ]),
            (None, Some(l)) => {
                let rss = s
                    .start
                    .as_ref()
                    .and_then(|st| st.parent_rss_bytes)
                    .filter(|&b| b > 0);
                row.extend([
                    format!(">{}", secs(l.elapsed_ms)),
                    "no end".into(),
                    fmt_bytes(l.cow_bytes),
                    rss.map_or("?".into(), |b| {
                        format!("{:.1}%", l.cow_bytes as f64 * 100.0 / b as f64)
                    }),
                    format!("{}/{}", l.parent_pages, l.child_pages),
                    fmt_bytes(s.sampled_write_bytes),
                    "?".into(),
                    "?".into(),
                    "?".into(),
                ]);
            }
            (None, None) => {
                row.extend(["?", "no end", "?", "?", "?", "?", "?", "?", "?"].map(String::from))
            }
        }
        rows.push(row);
    }
    let t = r.totals();
    if t.sessions_ended > 1 {
        rows.push(vec![
            "total".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            fmt_bytes(t.cow_bytes),
            String::new(),
            format!("{}/{}", t.parent_pages, t.child_pages),
            fmt_bytes(t.write_bytes),
            String::new(),
            sync_cell(t.fsync_calls, t.sync_calls.map(|c| c.to_array())),
            fmt_bytes(t.disk_bytes),
        ]);
    }
    out.push_str(&table("  ", &head, &rows));
    if r.sessions
        .iter()
        .any(|s| s.end.as_ref().is_some_and(|e| e.fsync.by_call.is_some()))
    {
        let _ = writeln!(
            out,
            "  (\"{SYNC_COLUMN}\": every sync call, then fsync / fdatasync / sync_file_range)"
        );
    }
    if r.sessions.iter().any(|s| s.mid_save().is_some()) {
        out.push_str("  (\"≈\": cowtrace attached while the save ran; its COW before that is an estimate, see the session below)\n");
    }
    if r.sessions.iter().any(|s| s.end.is_none()) {
        out.push_str("  (\"no end\": the trace has no session_end for it; figures are from its last sample, written is the sum of its samples)\n");
    }
    let files: Vec<Vec<String>> = r
        .sessions
        .iter()
        .filter_map(|s| s.end.as_ref().map(|e| (s.id, e)))
        .flat_map(|(id, e)| {
            e.writes.files.iter().map(move |f| {
                vec![
                    id.to_string(),
                    fmt_bytes(f.bytes),
                    f.calls.to_string(),
                    match &f.renamed_to {
                        Some(to) => format!("{} -> {to}", f.path),
                        None => f.path.clone(),
                    },
                ]
            })
        })
        .collect();
    if !files.is_empty() {
        out.push_str("\nFiles written by the children (-> renamed to):\n");
        out.push_str(&table(
            "  ",
            &[("session", R), ("bytes", R), ("calls", R), ("file", L)],
            &files,
        ));
    }
}

fn processes(r: &Report, out: &mut String) {
    if r.processes.is_empty() {
        return;
    }
    out.push_str("\nTraced processes (whole run, inside sessions or not):\n");
    for p in &r.processes {
        let _ = writeln!(
            out,
            "  pid {} {}{} ({}): COW {} ({} pages), wrote {} in {} call(s), {}, disk {}",
            p.pid,
            known(&p.comm),
            p.instance
                .as_deref()
                .map_or(String::new(), |i| format!(" {i}")),
            if p.exited {
                "exited"
            } else {
                "running at the end"
            },
            fmt_bytes(p.cow.bytes),
            p.cow.pages,
            fmt_bytes(p.io.write_bytes),
            p.io.write_calls,
            sync_counts(p.io.fsync_calls, p.io.sync_calls.map(|c| c.to_array())),
            fmt_bytes(p.io.disk_bytes),
        );
    }
}

/// `s` safe for a terminal: control characters other than newlines (a trace is input, and
/// its strings could carry escape sequences) are shown as `\u{..}`.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

/// The whole text report.
pub fn text(r: &Report) -> String {
    let out = text_raw(r);
    printable(&out).into_owned()
}

fn text_raw(r: &Report) -> String {
    let mut out = String::new();
    header(r, &mut out);
    if !r.warnings.is_empty() {
        out.push('\n');
        for w in &r.warnings {
            let _ = writeln!(out, "warning: {w}");
        }
    }
    out.push('\n');
    sessions_table(r, &mut out);
    processes(r, &mut out);
    let detailed: Vec<&Session> = r.sessions.iter().filter(|s| s.detailed()).collect();
    if r.sessions.len() > detailed.len() {
        let _ = writeln!(
            out,
            "\nDetails of the {} session(s) with the most COW (at most {DETAIL_SESSIONS}; `report --json` has every session):",
            detailed.len()
        );
    }
    for s in detailed {
        session_detail(r, s, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(printable("a\nb"), "a\nb");
        assert_eq!(printable("\x1b[2Jx\ty\u{9b}"), "\\u{1b}[2Jx\\u{9}y\\u{9b}");
    }

    #[test]
    fn dates() {
        assert_eq!(utc(0, false), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000, false), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_795_514_606_715, true), "2026-11-24 10:03:26.715 UTC");
        assert_eq!(utc(253_402_300_799_999, false), "9999-12-31 23:59:59 UTC");
        assert_eq!(utc(u64::MAX, false), format!("{} ms after 1970", u64::MAX));
    }

    #[test]
    fn tables_align_without_trailing_spaces() {
        let t = table(
            "  ",
            &[("a", Align::Right), ("bb", Align::Left)],
            &[vec!["100".into(), "x".into()], vec!["1".into()]],
        );
        assert_eq!(t, "    a  bb\n  100  x\n    1\n");
    }
}
