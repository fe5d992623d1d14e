//! One session's section of the page: its facts, diagnosis, charts (COW over time by
//! side against the RSS at fork and the room below the memory limit; the copy rate with
//! the child's throughput), histograms, quantiles and files.
use std::fmt::Write as _;

use super::{
    Figures, MIB, charts,
    charts::{Axes, Reference, Series, attr},
    figure, head, host_facts, line_figure, row,
};
use crate::{
    report::{fold::Report, session::Session, timeline::Row},
    text::{
        diagnosis::diagnose,
        units::{Unit, bucket_label, fmt_bytes},
    },
};

pub(super) fn session(r: &Report, s: &Session, out: &mut String) {
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
        if let Some(c) = e.causes.as_ref().filter(|c| c.copies > 0) {
            out.push_str("<table><caption>Parent's copies by cause</caption><tr><th>cause</th><th>copies</th><th>share</th></tr>\n");
            for r in &c.by_cause {
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
                    attr(&r.cause),
                    r.copies,
                    r.share_pct
                );
            }
            out.push_str("</table>\n");
        }
        if let Some(g) = e.regions.as_ref().filter(|g| g.copies > 0) {
            out.push_str("<table><caption>Parent's copies by memory region (the map at fork)</caption><tr><th>region</th><th>range</th><th>copies</th><th>share</th></tr>\n");
            for r in g.rows.iter().take(12) {
                let range = if r.end > r.start {
                    format!("{:x}-{:x} ({})", r.start, r.end, fmt_bytes(r.end - r.start))
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
                    attr(&r.kind),
                    attr(&range),
                    r.copies,
                    r.share_pct
                );
            }
            out.push_str("</table>\n");
        }
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
