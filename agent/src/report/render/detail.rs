//! One session in detail: its ledger, timeline, histograms, causes and diagnosis.
use super::*;

fn quantile_table(rows: &[(&str, &crate::trace::schema::Quantiles)]) -> String {
    use Align::{Left as L, Right as R};
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|(name, q)| {
            vec![
                name.to_string(),
                q.count.to_string(),
                q.p50.to_string(),
                q.p90.to_string(),
                q.p99.to_string(),
                q.max.to_string(),
            ]
        })
        .collect();
    table(
        "    ",
        &[
            ("", L),
            ("count", R),
            ("p50", R),
            ("p90", R),
            ("p99", R),
            ("max", R),
        ],
        &rows,
    )
}

pub(super) fn session_detail(r: &Report, s: &Session, out: &mut String) {
    let (parent, child) = s.pids();
    let _ = writeln!(
        out,
        "\nSession {}: {} on {}, parent {}, child {}",
        s.id,
        s.kind(),
        s.instance(),
        opt(parent),
        opt(child)
    );
    if let Some(m) = s.mid_save() {
        let est = |v: Option<u64>| v.map_or("unknown".into(), |b| format!("≈{}", fmt_bytes(b)));
        let _ = writeln!(
            out,
            "  attached mid-save: the child had run {} when cowtrace started; before that, COW {} ({}) and {} written (estimates); everything else is counted from the attach",
            secs(m.ran_ms),
            est(m.cow_bytes_estimate),
            m.cow_source,
            est(m.written_bytes_estimate)
        );
    }
    if let Some(st) = &s.start {
        if let Some(t) = &st.title {
            let _ = writeln!(out, "  title: {t}");
        }
        let rel_ms = r
            .meta
            .start_ts_ns
            .map(|t0| st.ts_ns.saturating_sub(t0) / 1_000_000);
        let mut line = String::from("  forked");
        if let (Some(wall), Some(rel)) = (r.meta.start_unix_ms, rel_ms) {
            let _ = write!(
                line,
                " at {} ({:.3} s into the trace)",
                utc(wall.saturating_add(rel), true),
                rel as f64 / 1000.0
            );
        }
        if let Some(us) = st.fork_us {
            let _ = write!(line, ", fork took {:.1} ms", us / 1000.0);
        }
        if let Some(rss) = st.parent_rss_bytes {
            let _ = write!(line, ", parent RSS {}", fmt_bytes(rss));
        }
        let _ = writeln!(out, "{line}");
    }
    let host = diagnosis::HostFacts::from_meta(&r.meta);
    match &s.end {
        Some(e) => {
            let c = &e.cow;
            let _ = writeln!(
                out,
                "  ran {}, {}; copies: {} of 4 KiB, {} of 2 MiB, {} other; reuse faults {}, zero fills {}",
                secs(e.duration_ms),
                if e.complete {
                    exit_text(e.complete, e.exit_code, e.exit_signal)
                } else {
                    "still running when the trace ended".into()
                },
                c.copies_4k,
                c.copies_2m,
                c.copies_other,
                c.reuse_faults,
                c.zero_fills
            );
            if let Some(m) = &e.main_thread {
                let _ = writeln!(out, "  {}", crate::text::latency::brief(m, e.duration_ms));
            }
            out.push_str(&crate::text::causes::tables(
                e.causes.as_ref(),
                e.regions.as_ref(),
            ));
            out.push_str("\n  Diagnosis:\n");
            for l in diagnosis::diagnose(e, &host) {
                let _ = writeln!(out, "    {l}");
            }
            out.push_str("\n  Quantiles (session_end):\n");
            let sync_titles: Vec<String> = match &e.fsync.by_call {
                Some(b) => b
                    .each()
                    .iter()
                    .map(|(call, _)| format!("{} (us)", latency_title(*call)))
                    .collect(),
                None => vec![format!("{ANY_LATENCY} (us)")],
            };
            let mut rows = vec![
                ("write latency (us)", &e.writes.latency_us),
                ("write size (bytes)", &e.writes.size_bytes),
            ];
            match &e.fsync.by_call {
                Some(b) => rows.extend(
                    sync_titles
                        .iter()
                        .zip(b.each())
                        .map(|(t, (_, c))| (t.as_str(), &c.latency_us)),
                ),
                None => rows.push((sync_titles[0].as_str(), &e.fsync.latency_us)),
            }
            rows.push(("disk latency (us)", &e.disk.latency_us));
            out.push_str(&quantile_table(&rows));
            if !s.cow_per_bucket.is_empty() {
                let n: u64 = s.cow_per_bucket.iter().map(|b| b.1).sum();
                let _ = writeln!(
                    out,
                    "\n  COW pages copied per {} ms ({n} buckets):",
                    c.timeline_bucket_ms
                );
                out.push_str(&log2_hist("pages", &s.cow_per_bucket));
            }
        }
        None => {
            let _ = writeln!(
                out,
                "  no session_end in the trace: {}",
                s.last_sample.as_ref().map_or("no sample either".into(), |l| format!(
                    "at the last sample, {} after the fork, COW was {} ({} parent + {} child pages)",
                    secs(l.elapsed_ms),
                    fmt_bytes(l.cow_bytes),
                    l.parent_pages,
                    l.child_pages
                ))
            );
        }
    }
    if let Some(h) = &s.hists {
        let ev = &s.events;
        let _ = writeln!(
            out,
            "\n  From --events lines ({} write, {} sync{}, {} io, {} cow: {} parent, {} child, {} zero_fill):",
            ev.write,
            ev.fsync,
            ev.sync_calls().map(breakdown).unwrap_or_default(),
            ev.io,
            ev.cow,
            ev.cow_parent,
            ev.cow_child,
            ev.zero_fill,
        );
        let mut all: Vec<(&str, &str, &HistSummary)> = vec![
            ("write latency", "usecs", &h.write_latency_us),
            ("write size", "bytes", &h.write_size_bytes),
        ];
        // Each sync call apart when the lines say which; else all of them together.
        match ev.sync_calls() {
            Some(_) => all.extend(
                SyncCall::ALL
                    .iter()
                    .zip(h.sync_latency_us.each())
                    .map(|(c, hs)| (latency_title(*c), "usecs", hs)),
            ),
            None => all.push((ANY_LATENCY, "usecs", &h.fsync_latency_us)),
        }
        all.push(("block I/O latency", "usecs", &h.disk_latency_us));
        for (title, unit, hs) in all {
            if hs.log2.is_empty() {
                continue;
            }
            let q = &hs.quantiles;
            let _ = writeln!(
                out,
                "\n  {title} (count {}, p50 {}, p99 {}, max {}):",
                q.count, q.p50, q.p99, q.max
            );
            out.push_str(&log2_hist(unit, &hs.log2));
        }
    } else if s.events.cow > 0 {
        let ev = &s.events;
        let _ = writeln!(
            out,
            "\n  From --events lines: {} cow ({} parent, {} child), {} zero_fill",
            ev.cow, ev.cow_parent, ev.cow_child, ev.zero_fill
        );
    }
    if let Some(t) = &s.timeline
        && t.rows().next().is_some()
    {
        let every = r.meta.interval_ms.map_or(String::new(), |i| {
            format!(
                ", every {}",
                secs_short(i.saturating_mul(u64::from(t.width())))
            )
        });
        let _ = writeln!(
            out,
            "\n  Over time ({} per row{every}; copied and written during the row):",
            if t.width() == 1 {
                "1 sample".to_string()
            } else {
                format!("{} samples", t.width())
            }
        );
        // The COW copied in each row (the cumulative figure hides when copies happen).
        let mut prev = 0u64;
        let deltas: Vec<u64> = t
            .rows()
            .map(|row| {
                let d = row.cow_bytes.saturating_sub(prev);
                prev = prev.max(row.cow_bytes);
                d
            })
            .collect();
        let max_cow = deltas.iter().copied().max().unwrap_or(0);
        let max_w = t.rows().map(|r| r.write_bytes).max().unwrap_or(0);
        let rows: Vec<Vec<String>> = t
            .rows()
            .zip(&deltas)
            .map(|(row, &d)| {
                vec![
                    secs(row.elapsed_ms),
                    fmt_bytes(row.cow_bytes),
                    format!("+{}", fmt_bytes(d)),
                    format!("|{}|", stars(d, max_cow, BAR)),
                    fmt_bytes(row.write_bytes),
                    format!(
                        "|{}|{}",
                        stars(row.write_bytes, max_w, BAR),
                        if row.samples == 0 { " end" } else { "" }
                    ),
                ]
            })
            .collect();
        use Align::{Left as L, Right as R};
        out.push_str(&table(
            "    ",
            &[
                ("after", R),
                ("COW total", R),
                ("copied", R),
                ("", L),
                ("written", R),
                ("", L),
            ],
            &rows,
        ));
    }
}
