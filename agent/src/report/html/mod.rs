//! `report --html`: the report as one self-contained page. No script, no network (a
//! Content-Security-Policy forbids every load), SVG charts inline, a print style for A4.
//! Pure and deterministic like the text report: the same trace gives the same bytes.
pub mod charts;
mod compare;
mod page;
mod session;

pub use compare::compare_page;

use std::fmt::Write as _;

use charts::{Axes, Reference, Series, attr};

use super::{
    fold::{DETAIL_SESSIONS, Report},
    session::Session,
};
use crate::text::{
    date::utc,
    diagnosis::HostFacts,
    exit::exit_text,
    units::{fmt_bytes, fmt_rate},
};

pub(super) const MIB: f64 = 1024.0 * 1024.0;

/// The whole page.
pub fn page(r: &Report) -> String {
    let mut body = String::new();
    header(r, &mut body);
    warnings(r, &mut body);
    sessions_table(r, &mut body);
    let mut by_cost: Vec<&Session> = r.sessions.iter().collect();
    by_cost.sort_by(|a, b| b.cow_bytes().cmp(&a.cow_bytes()).then(a.id.cmp(&b.id)));
    if !by_cost.is_empty() {
        let _ = writeln!(
            body,
            "<h2 class=\"sessions-head\">Sessions, the costliest first</h2>"
        );
        if by_cost.iter().any(|s| !s.detailed()) {
            let _ = writeln!(
                body,
                "<p class=\"note\">Charts are kept for the {DETAIL_SESSIONS} sessions with the most COW; the others have their figures and diagnosis.</p>"
            );
        }
    }
    for s in by_cost {
        session::session(r, s, &mut body);
    }
    page::wrap(&title(r), &body)
}

fn title(r: &Report) -> String {
    let host = if r.meta.host.is_empty() {
        "?"
    } else {
        &r.meta.host
    };
    format!("cowtrace report: {host}, {} session(s)", r.sessions.len())
}

pub(super) fn host_facts(r: &Report) -> HostFacts {
    HostFacts::from_meta(&r.meta)
}

pub(super) fn or_unknown(s: &str) -> String {
    if s.is_empty() { "?".into() } else { attr(s) }
}

fn header(r: &Report, out: &mut String) {
    let m = &r.meta;
    let _ = writeln!(out, "<header><h1>{}</h1>", attr(&title(r)));
    let mut rows: Vec<(&str, String)> = vec![
        ("trace", attr(&r.source)),
        (
            "host",
            format!("{} (kernel {})", or_unknown(&m.host), or_unknown(&m.kernel)),
        ),
    ];
    rows.push(("recorded", attr(&r.recorded())));
    rows.push((
        "recorder",
        format!(
            "cowtrace {}, trace format {}{}",
            or_unknown(&m.cowtrace_version),
            m.version,
            m.interval_ms
                .map_or(String::new(), |i| format!(", samples every {} ms", i))
        ),
    ));
    rows.push((
        "settings",
        format!(
            "THP {}, vm.overcommit_memory {}, page size {}",
            attr(m.thp.as_deref().unwrap_or("?")),
            m.overcommit_memory.map_or("?".into(), |v| v.to_string()),
            m.page_size.map_or("?".into(), |p| format!("{p} B")),
        ),
    ));
    for l in crate::text::diagnosis::host_diagnosis(&host_facts(r)) {
        rows.push(("host note", attr(&l)));
    }
    if let Some(f) = &r.filter {
        rows.push(("selected", attr(f)));
    }
    let t = r.totals();
    rows.push((
        "totals",
        format!(
            "{} session(s){}: COW {}, written {}, disk {}{}",
            t.sessions,
            if t.sessions_unfinished > 0 {
                format!(" ({} without an end)", t.sessions_unfinished)
            } else {
                String::new()
            },
            fmt_bytes(t.cow_bytes),
            fmt_bytes(t.write_bytes),
            fmt_bytes(t.disk_bytes),
            match t.lost_events {
                Some(0) => ", no event lost".to_string(),
                Some(n) => format!(", {n} event(s) lost"),
                None => ", losses unknown (no end line)".to_string(),
            }
        ),
    ));
    out.push_str("<dl class=\"facts\">\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl></header>\n");
}

fn warnings(r: &Report, out: &mut String) {
    let lost = r.end.as_ref().map_or(0, |e| e.lost_events);
    if r.warnings.is_empty() && lost == 0 {
        return;
    }
    out.push_str("<section class=\"warnings\"><h2>Warnings</h2><ul>\n");
    if lost > 0 {
        let _ = writeln!(
            out,
            "<li>{lost} event(s) were lost (ring buffer full): totals are exact, per-event detail is incomplete.</li>"
        );
    }
    for w in &r.warnings {
        let _ = writeln!(out, "<li>{}</li>", attr(w));
    }
    out.push_str("</ul></section>\n");
}

/// One row of cells; `num` cells are right-aligned.
pub(super) fn row(out: &mut String, cells: &[(String, bool)]) {
    out.push_str("<tr>");
    for (c, num) in cells {
        if *num {
            let _ = write!(out, "<td class=\"n\">{c}</td>");
        } else {
            let _ = write!(out, "<td>{c}</td>");
        }
    }
    out.push_str("</tr>\n");
}

pub(super) fn head(out: &mut String, cells: &[&str]) {
    out.push_str("<thead><tr>");
    for c in cells {
        let _ = write!(out, "<th>{c}</th>");
    }
    out.push_str("</tr></thead>\n");
}

fn sessions_table(r: &Report, out: &mut String) {
    out.push_str("<section class=\"overview\"><h2>Sessions</h2>\n");
    if r.sessions.is_empty() {
        out.push_str("<p class=\"note\">No fork session in this trace: no traced server forked while it was recorded.</p></section>\n");
        return;
    }
    out.push_str("<div class=\"wide\"><table class=\"sessions\">\n");
    head(
        out,
        &[
            "session",
            "kind",
            "server",
            "forked (UTC)",
            "ran",
            "exit",
            "COW",
            "% of RSS at fork",
            "RSS at fork",
            "written",
            "write rate",
            "disk",
            "fork",
        ],
    );
    out.push_str("<tbody>\n");
    for s in &r.sessions {
        let f = Figures::of(r, s);
        row(
            out,
            &[
                (format!("<a href=\"#session-{0}\">{0}</a>", s.id), true),
                (attr(s.kind()), false),
                (attr(&s.instance()), false),
                // The date is in the header; the time of day tells the saves apart.
                (
                    f.forked
                        .split_once(' ')
                        .map_or(f.forked.clone(), |(_, t)| t.to_string()),
                    false,
                ),
                (f.ran.clone(), true),
                (f.exit.clone(), false),
                (f.cow.clone(), true),
                (f.pct.clone(), true),
                (f.rss.clone(), true),
                (f.written.clone(), true),
                (f.write_rate.clone(), true),
                (f.disk.clone(), true),
                (f.fork.clone(), true),
            ],
        );
    }
    out.push_str("</tbody></table></div>\n");
    if r.sessions.iter().any(|s| s.mid_save().is_some()) {
        out.push_str("<p class=\"note\">≈: cowtrace attached while the save ran; its COW before that is an estimate.</p>\n");
    }
    out.push_str("</section>\n");
}

/// A session's figures as the page shows them.
pub(super) struct Figures {
    forked: String,
    ran: String,
    exit: String,
    cow: String,
    pct: String,
    rss: String,
    written: String,
    write_rate: String,
    disk: String,
    fork: String,
}

impl Figures {
    fn of(r: &Report, s: &Session) -> Self {
        let start = s.start.as_ref();
        let forked = match (r.meta.start_unix_ms, r.meta.start_ts_ns, start) {
            (Some(wall), Some(t0), Some(st)) => utc(
                wall.saturating_add(st.ts_ns.saturating_sub(t0) / 1_000_000),
                true,
            )
            .trim_end_matches(" UTC")
            .to_string(),
            _ => "?".into(),
        };
        let rss_at_fork = s
            .end
            .as_ref()
            .and_then(|e| e.cow.parent_rss_at_fork_bytes)
            .or(start.and_then(|st| st.parent_rss_bytes))
            .filter(|&b| b > 0);
        let fork = start
            .and_then(|st| st.fork_us)
            .map_or("?".into(), |us| format!("{:.1} ms", us / 1000.0));
        let rss = rss_at_fork.map_or("?".into(), fmt_bytes);
        match (&s.end, &s.last_sample) {
            (Some(e), _) => {
                let mid = e.attached_mid_save.is_some();
                let cow = e.cow_bytes_with_estimate();
                let written = e.writes.bytes;
                Self {
                    forked,
                    ran: format!("{:.2} s", e.duration_ms as f64 / 1000.0),
                    exit: exit_text(e.complete, e.exit_code, e.exit_signal),
                    cow: format!("{}{}", if mid { "≈" } else { "" }, fmt_bytes(cow)),
                    pct: e
                        .cow
                        .pct_of_parent_rss
                        .map_or("?".into(), |p| format!("{p:.1}%")),
                    rss,
                    written: fmt_bytes(written),
                    write_rate: rate(written, e.duration_ms),
                    disk: fmt_bytes(e.disk.bytes),
                    fork,
                }
            }
            (None, Some(l)) => Self {
                forked,
                ran: format!("&gt;{:.2} s", l.elapsed_ms as f64 / 1000.0),
                exit: "no end in the trace".into(),
                cow: fmt_bytes(l.cow_bytes),
                pct: rss_at_fork.map_or("?".into(), |b| {
                    format!("{:.1}%", l.cow_bytes as f64 * 100.0 / b as f64)
                }),
                rss,
                written: fmt_bytes(s.sampled_write_bytes),
                write_rate: rate(s.sampled_write_bytes, l.elapsed_ms),
                disk: fmt_bytes(s.sampled_disk_bytes),
                fork,
            },
            (None, None) => Self {
                forked,
                ran: "?".into(),
                exit: "no end in the trace".into(),
                cow: "?".into(),
                pct: "?".into(),
                rss,
                written: "?".into(),
                write_rate: "?".into(),
                disk: "?".into(),
                fork,
            },
        }
    }
}

fn rate(bytes: u64, ms: u64) -> String {
    if ms == 0 {
        "?".into()
    } else {
        fmt_rate(bytes as f64 * 1000.0 / ms as f64)
    }
}

pub(super) fn figure(out: &mut String, name: &str, points: usize, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" data-chart=\"{name}\" data-points=\"{points}\">{svg}<figcaption>{caption}</figcaption></figure>"
    );
}

/// A line chart with its legend above the caption.
pub(super) fn line_figure(
    out: &mut String,
    name: &str,
    axes: &Axes,
    series: &[Series],
    refs: &[Reference],
    caption: &str,
) {
    let points = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    let svg = charts::lines(axes, series, refs);
    let legend = charts::legend(series, refs);
    figure(out, name, points, &format!("{svg}{legend}"), caption);
}
