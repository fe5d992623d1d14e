//! `report --html`: the report as one self-contained page. No script, no network (a
//! Content-Security-Policy forbids every load), SVG charts inline, a print style for A4.
//! Pure and deterministic like the text report: the same trace gives the same bytes.
pub mod charts;
mod page;

use std::fmt::Write as _;

use charts::{Axes, Reference, Series, attr};

use super::{
    compare::Comparison,
    fold::{DETAIL_SESSIONS, Report},
    session::Session,
    timeline::Row,
};
use crate::text::{
    date::utc,
    diagnosis::{HostFacts, diagnose},
    exit::exit_text,
    units::{Unit, bucket_label, fmt_bytes, fmt_rate},
};

const MIB: f64 = 1024.0 * 1024.0;

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
        session(r, s, &mut body);
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

fn host_facts(r: &Report) -> HostFacts {
    HostFacts {
        thp: r.meta.thp.clone(),
        overcommit_memory: r.meta.overcommit_memory,
    }
}

fn or_unknown(s: &str) -> String {
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
    let mut rec = m
        .start_unix_ms
        .map_or("at an unknown time".into(), |ms| utc(ms, false));
    match (r.duration_ms(), &r.end) {
        (Some(d), Some(e)) => {
            let _ = write!(
                rec,
                ", for {:.1} s, ended by {}",
                d as f64 / 1000.0,
                or_unknown(&e.reason)
            );
        }
        (Some(d), None) => {
            let _ = write!(
                rec,
                ", for at least {:.1} s (the trace has no end line)",
                d as f64 / 1000.0
            );
        }
        (None, _) => {}
    }
    rows.push(("recorded", rec));
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
fn row(out: &mut String, cells: &[(String, bool)]) {
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

fn head(out: &mut String, cells: &[&str]) {
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
struct Figures {
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

fn session(r: &Report, s: &Session, out: &mut String) {
    let (parent, child) = s.pids();
    let pid = |p: Option<u32>| p.map_or("?".into(), |p| p.to_string());
    let _ = writeln!(
        out,
        "<section class=\"session\" id=\"session-{}\"><h3>Session {}: {} on {}</h3>",
        s.id,
        s.id,
        attr(s.kind()),
        attr(&s.instance())
    );
    let f = Figures::of(r, s);
    let mut facts = vec![
        (
            "parent / child",
            format!("pid {} / pid {}", pid(parent), pid(child)),
        ),
        ("forked (UTC)", f.forked.clone()),
        ("fork took", f.fork.clone()),
        ("ran", format!("{}, {}", f.ran, f.exit)),
        (
            "COW",
            format!("{} = {} of the RSS at fork ({})", f.cow, f.pct, f.rss),
        ),
        (
            "written",
            format!("{} ({}), disk {}", f.written, f.write_rate, f.disk),
        ),
    ];
    if let Some(t) = s.start.as_ref().and_then(|st| st.title.as_deref()) {
        facts.insert(1, ("title", attr(t)));
    }
    if let Some(e) = &s.end {
        let c = &e.cow;
        facts.push((
            "copies",
            format!(
                "{} parent + {} child pages; {} of 4 KiB, {} of 2 MiB, {} other; reuse faults {}, zero fills {}",
                c.parent_pages,
                c.child_pages,
                c.copies_4k,
                c.copies_2m,
                c.copies_other,
                c.reuse_faults,
                c.zero_fills
            ),
        ));
        facts.push((
            "syncs",
            format!(
                "{} call(s), {:.1} ms in all; disk {} in {} request(s)",
                e.fsync.calls,
                e.fsync.total_ms,
                fmt_bytes(e.disk.bytes),
                e.disk.ios
            ),
        ));
    }
    if let Some(m) = s.mid_save() {
        facts.push((
            "attached mid-save",
            format!(
                "the child had run {:.2} s when cowtrace started; COW before that ≈{} ({}), written ≈{}; everything else is counted from the attach",
                m.ran_ms as f64 / 1000.0,
                m.cow_bytes_estimate.map_or("unknown".into(), fmt_bytes),
                attr(&m.cow_source),
                m.written_bytes_estimate.map_or("unknown".into(), fmt_bytes),
            ),
        ));
    }
    out.push_str("<dl class=\"facts\">\n");
    for (k, v) in facts {
        let _ = writeln!(out, "<dt>{k}</dt><dd>{v}</dd>");
    }
    out.push_str("</dl>\n");
    if let Some(e) = &s.end {
        out.push_str("<div class=\"diagnosis\"><h4>Diagnosis</h4><ul>\n");
        for l in diagnose(e, &host_facts(r)) {
            let _ = writeln!(out, "<li>{}</li>", attr(&l));
        }
        out.push_str("</ul></div>\n");
    }
    if let Some(t) = &s.timeline {
        let rows: Vec<Row> = t.rows().copied().collect();
        if rows.is_empty() {
            out.push_str(
                "<p class=\"note\">No sample of this session in the trace: nothing to chart.</p>\n",
            );
        } else {
            let start_ms = s.mid_save().map_or(0, |m| m.ran_ms);
            charts_of(s, &rows, start_ms, out);
        }
    }
    hists(s, out);
    files(s, out);
    out.push_str("</section>\n");
}

fn figure(out: &mut String, name: &str, points: usize, svg: &str, caption: &str) {
    let _ = writeln!(
        out,
        "<figure class=\"chart\" data-chart=\"{name}\" data-points=\"{points}\">{svg}<figcaption>{caption}</figcaption></figure>"
    );
}

/// A line chart with its legend above the caption.
fn line_figure(
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

fn charts_of(s: &Session, rows: &[Row], start_ms: u64, out: &mut String) {
    let x = |r: &Row| r.elapsed_ms as f64 / 1000.0;
    let mib = |b: u64| b as f64 / MIB;
    let pages = |p: u64| mib(p.saturating_mul(4096));
    // The first point is the fork (or the attach) with nothing copied yet.
    let origin = (start_ms as f64 / 1000.0, 0.0);
    let line = |name: &str, y: &dyn Fn(&Row) -> f64| Series {
        name: name.into(),
        points: std::iter::once(origin)
            .chain(rows.iter().map(|r| (x(r), y(r))))
            .collect(),
    };
    let cow = [
        line("total", &|r| mib(r.cow_bytes)),
        line("parent", &|r| pages(r.parent_pages)),
        line("child", &|r| pages(r.child_pages)),
    ];
    let rss = s
        .end
        .as_ref()
        .and_then(|e| e.cow.parent_rss_at_fork_bytes)
        .or(s.start.as_ref().and_then(|st| st.parent_rss_bytes))
        .filter(|&b| b > 0);
    let mut refs: Vec<Reference> = rss
        .map(|b| Reference {
            name: format!("parent RSS at fork ({})", fmt_bytes(b)),
            y: mib(b),
        })
        .into_iter()
        .collect();
    // COW adds to the usage: above this line the save would have crossed the limit.
    let memory = s.end.as_ref().and_then(|e| e.memory.as_ref());
    if let Some(m) = memory {
        refs.push(Reference {
            name: format!(
                "room below the memory limit at the fork ({} limit − {} in use)",
                fmt_bytes(m.limit_bytes),
                fmt_bytes(m.at_fork_bytes)
            ),
            y: mib(m.limit_bytes.saturating_sub(m.at_fork_bytes)),
        });
    }
    let limit_note = match memory {
        Some(m) => format!(
            "The memory limit is {} ({}); usage peaked at {}.",
            fmt_bytes(m.limit_bytes),
            m.source,
            fmt_bytes(m.peak_bytes)
        ),
        None => "No memory limit is known for this server.".to_string(),
    };
    let counted = if start_ms > 0 {
        " Counted from the attach; the estimate before it is not drawn."
    } else {
        ""
    };
    line_figure(
        out,
        "cow",
        &Axes {
            title: "COW copied since the fork",
            x: "seconds after the fork",
            y: "MiB (cumulative)",
        },
        &cow,
        &refs,
        &format!(
            "Pages copied on write, by the side whose write copied them, against the parent's RSS at fork (the most a save can copy without new allocations). {limit_note}{counted}"
        ),
    );
    // Rates over each row's interval.
    let mut prev_ms = start_ms;
    let mut prev_cow = 0u64;
    let mut copy = Vec::new();
    let mut write = Vec::new();
    let mut disk = Vec::new();
    for r in rows {
        let dt = r.elapsed_ms.saturating_sub(prev_ms) as f64 / 1000.0;
        if dt > 0.0 {
            let t = x(r);
            copy.push((t, mib(r.cow_bytes.saturating_sub(prev_cow)) / dt));
            write.push((t, mib(r.write_bytes) / dt));
            disk.push((t, mib(r.disk_bytes) / dt));
        }
        prev_ms = r.elapsed_ms;
        prev_cow = r.cow_bytes;
    }
    let rates = [
        Series {
            name: "COW copy rate".into(),
            points: copy,
        },
        Series {
            name: "child's writes".into(),
            points: write,
        },
        Series {
            name: "disk (block I/O of the files)".into(),
            points: disk,
        },
    ];
    line_figure(
        out,
        "rates",
        &Axes {
            title: "Copy rate and the child's throughput",
            x: "seconds after the fork",
            y: "MiB/s",
        },
        &rates,
        &[],
        "Each point is the average over the interval that ends there.",
    );
    values_table(rows, out);
}

/// The charts' numbers, folded away: for a reader without the picture, and for copying.
fn values_table(rows: &[Row], out: &mut String) {
    out.push_str("<details><summary>Values</summary><table class=\"values\">\n");
    head(
        out,
        &[
            "after the fork",
            "COW total",
            "parent pages",
            "child pages",
            "written in the interval",
            "disk in the interval",
        ],
    );
    out.push_str("<tbody>\n");
    for r in rows {
        row(
            out,
            &[
                (format!("{:.2} s", r.elapsed_ms as f64 / 1000.0), true),
                (fmt_bytes(r.cow_bytes), true),
                (r.parent_pages.to_string(), true),
                (r.child_pages.to_string(), true),
                (fmt_bytes(r.write_bytes), true),
                (fmt_bytes(r.disk_bytes), true),
            ],
        );
    }
    out.push_str("</tbody></table></details>\n");
}

fn hists(s: &Session, out: &mut String) {
    let chart =
        |out: &mut String, name: &str, title: &str, x: &str, unit: Unit, data: &[(u64, u64)]| {
            if data.iter().all(|b| b.1 == 0) {
                return;
            }
            let svg = charts::buckets(
                &Axes {
                    title,
                    x,
                    y: "count",
                },
                data,
                |lo| bucket_label(lo, unit),
            );
            figure(
                out,
                name,
                charts::contiguous(data).len(),
                &svg,
                "Power-of-two buckets, labelled by their lowest value.",
            );
        };
    if let Some(h) = &s.hists {
        chart(
            out,
            "write-latency",
            "Write latency",
            "microseconds",
            Unit::Micros,
            &h.write_latency_us.log2,
        );
        chart(
            out,
            "fsync-latency",
            "Sync latency (fsync, fdatasync, sync_file_range)",
            "microseconds",
            Unit::Micros,
            &h.fsync_latency_us.log2,
        );
        chart(
            out,
            "disk-latency",
            "Disk latency",
            "microseconds",
            Unit::Micros,
            &h.disk_latency_us.log2,
        );
    }
    if let Some(e) = &s.end {
        let bucket = e.cow.timeline_bucket_ms;
        chart(
            out,
            "cow-per-bucket",
            &format!("Pages copied per {bucket} ms"),
            "pages in the interval",
            Unit::Pages,
            &s.cow_per_bucket,
        );
        quantiles(e, out);
    }
}

fn quantiles(e: &crate::trace::schema::SessionEnd, out: &mut String) {
    let rows = [
        ("write latency", &e.writes.latency_us, Unit::Micros),
        ("write size", &e.writes.size_bytes, Unit::Bytes),
        ("sync latency", &e.fsync.latency_us, Unit::Micros),
        ("disk latency", &e.disk.latency_us, Unit::Micros),
    ];
    if rows.iter().all(|r| r.1.count == 0) {
        return;
    }
    out.push_str("<table class=\"quantiles\">\n");
    head(out, &["", "count", "p50", "p90", "p99", "max"]);
    out.push_str("<tbody>\n");
    for (name, q, unit) in rows {
        if q.count == 0 {
            continue;
        }
        let v = |x: u64| crate::text::units::fmt_val(x, unit);
        row(
            out,
            &[
                (name.to_string(), false),
                (q.count.to_string(), true),
                (v(q.p50), true),
                (v(q.p90), true),
                (v(q.p99), true),
                (v(q.max), true),
            ],
        );
    }
    out.push_str("</tbody></table>\n");
}

fn files(s: &Session, out: &mut String) {
    let Some(e) = &s.end else { return };
    if e.writes.files.is_empty() {
        return;
    }
    out.push_str("<table class=\"files\">\n");
    head(out, &["file written (→ renamed to)", "bytes", "calls"]);
    out.push_str("<tbody>\n");
    for f in &e.writes.files {
        let name = match &f.renamed_to {
            Some(to) => format!("{} → {}", attr(&f.path), attr(to)),
            None => attr(&f.path),
        };
        row(
            out,
            &[
                (name, false),
                (fmt_bytes(f.bytes), true),
                (f.calls.to_string(), true),
            ],
        );
    }
    out.push_str("</tbody></table>\n");
}

/// `report --html A B`: the comparison as a page.
pub fn compare_page(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "<header><h1>cowtrace: A compared with B</h1>");
    out.push_str("<dl class=\"facts\">\n");
    for (n, s) in [("A", &c.a), ("B", &c.b)] {
        let _ = writeln!(
            out,
            "<dt>{n}</dt><dd>{} (host {}, {} session(s){})</dd>",
            attr(&s.file),
            or_unknown(&s.host),
            s.sessions,
            s.start_unix_ms
                .map_or(String::new(), |ms| format!(", recorded {}", utc(ms, false)))
        );
    }
    out.push_str("</dl></header>\n");
    if !c.notes.is_empty() {
        out.push_str("<section class=\"warnings\"><h2>Notes</h2><ul>\n");
        for n in &c.notes {
            let _ = writeln!(out, "<li>{}</li>", attr(n));
        }
        out.push_str("</ul></section>\n");
    }
    out.push_str("<section><h2>Settings</h2><table class=\"settings\">\n");
    head(&mut out, &["setting", "A", "B", ""]);
    out.push_str("<tbody>\n");
    for s in &c.settings {
        row(
            &mut out,
            &[
                (s.name.to_string(), false),
                (attr(&s.a), false),
                (attr(&s.b), false),
                (
                    (if s.differs {
                        "<strong>differs</strong>"
                    } else {
                        ""
                    })
                    .into(),
                    false,
                ),
            ],
        );
    }
    out.push_str("</tbody></table></section>\n");
    if c.groups.is_empty() {
        out.push_str(
            "<p class=\"note\">No fork session in either trace: nothing to compare.</p>\n",
        );
    }
    for (i, g) in c.groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "<section class=\"group\" id=\"group-{i}\"><h2>{}</h2><p>Medians over A's {} and B's {} ended session(s).</p>",
            attr(&g.title()),
            g.saves_a,
            g.saves_b
        );
        if let Some(v) = g.verdict() {
            let _ = writeln!(
                out,
                "<p class=\"verdict\"><strong>{}</strong></p>",
                attr(&v)
            );
        }
        out.push_str("<table class=\"compare\">\n");
        head(&mut out, &["figure", "A", "B", "change (B − A)"]);
        out.push_str("<tbody>\n");
        for f in &g.figures {
            let [a, b, d] = f.cells();
            row(
                &mut out,
                &[(f.name.to_string(), false), (a, true), (b, true), (d, true)],
            );
        }
        out.push_str("</tbody></table>\n");
        let per_save = |v: &[u64]| -> Vec<(f64, f64)> {
            v.iter()
                .enumerate()
                .map(|(i, &b)| ((i + 1) as f64, b as f64 / MIB))
                .collect()
        };
        let series = [
            Series {
                name: "A".into(),
                points: per_save(&g.cow_per_save_a),
            },
            Series {
                name: "B".into(),
                points: per_save(&g.cow_per_save_b),
            },
        ];
        line_figure(
            &mut out,
            "cow-per-save",
            &Axes {
                title: "COW of each save",
                x: "save, in the order of the trace",
                y: "MiB",
            },
            &series,
            &[],
            "Each point is one ended session of this server and kind.",
        );
        out.push_str("</section>\n");
    }
    page::wrap("cowtrace: A compared with B", &out)
}
