//! The fold's unit tests: lines in, the model out.
use super::*;

fn fold(lines: &[String]) -> Report {
    let meta = r#"{"type":"meta","format":"cowtrace","version":1,"start_ts_ns":1000000000,"interval_ms":1000}"#;
    let text = format!("{meta}\n{}\n", lines.join("\n"));
    crate::report::read("t", text.as_bytes()).unwrap()
}

fn end_line(id: u64, cow_pages: u64) -> String {
    format!(
        r#"{{"type":"session_end","session":{id},"kind":"rdb-bgsave","duration_ms":500,"exit_code":0,"complete":true,"cow":{{"pages":{cow_pages},"bytes":{},"timeline_pages":[{cow_pages},0,0]}},"writes":{{"bytes":100,"calls":1,"files":[]}},"disk":{{"bytes":4096,"ios":1}}}}"#,
        cow_pages * 4096
    )
}

fn end_of_run(sessions: u64) -> String {
    format!(
        r#"{{"type":"end","sessions":{sessions},"lost_events":0,"duration_ms":2000,"reason":"signal"}}"#
    )
}

#[test]
fn sync_lines_by_call_and_zero_fills_are_counted_apart() {
    let r = fold(&[
        r#"{"type":"session_start","session":1,"parent_pid":10,"child_pid":11,"kind":"rdb-bgsave","ts_ns":1100000000}"#.into(),
        r#"{"type":"cow","session":1,"ts_ns":1,"pid":10,"tid":10,"addr":4096,"order":0,"side":"parent"}"#.into(),
        r#"{"type":"zero_fill","session":1,"ts_ns":1,"pid":11,"tid":11,"addr":8192,"order":0,"side":"child"}"#.into(),
        r#"{"type":"zero_fill","session":null,"ts_ns":1,"pid":10,"tid":10,"addr":8192,"order":0,"side":"parent"}"#.into(),
        r#"{"type":"fsync","session":1,"ts_ns":2,"latency_us":3.9,"call":"sync_file_range"}"#.into(),
        r#"{"type":"fsync","session":1,"ts_ns":3,"latency_us":4.2,"call":"sync_file_range"}"#.into(),
        r#"{"type":"fsync","session":1,"ts_ns":4,"latency_us":25000.0,"call":"fsync"}"#.into(),
        r#"{"type":"fsync","session":1,"ts_ns":5,"latency_us":900.0,"call":"fdatasync"}"#.into(),
        end_line(1, 1),
        end_of_run(1),
    ]);
    let s = &r.sessions[0];
    assert_eq!((s.events.cow, s.events.zero_fill), (1, 1));
    assert_eq!((r.events.zero_fill, r.events_outside), (2, 1));
    assert_eq!(s.events.fsync, 4);
    assert_eq!(s.events.sync_calls(), Some([1, 1, 2]));
    let h = s.hists.as_ref().unwrap();
    let [f, d, sfr] = h.sync_latency_us.each();
    assert_eq!(
        (
            f.quantiles.max,
            d.quantiles.max,
            sfr.quantiles.count,
            sfr.quantiles.max
        ),
        (25000, 900, 2, 4)
    );
    assert_eq!(h.fsync_latency_us.quantiles.count, 4, "every call together");
    // The text names the calls and draws a histogram per call.
    let text = crate::report::render::text(&r);
    assert!(
        text.contains("4 sync (fsync 1, fdatasync 1, sync_file_range 2), 0 io, 1 cow: 1 parent, 0 child, 1 zero_fill"),
        "{text}"
    );
    for t in [
        "fsync latency (count 1",
        "fdatasync latency (count 1",
        "sync_file_range latency (count 2",
    ] {
        assert!(text.contains(t), "{t}: {text}");
    }
    // Without `call` (older traces) the lines are counted, not split.
    let r = fold(&[
        r#"{"type":"session_start","session":1,"parent_pid":10,"child_pid":11,"kind":"rdb-bgsave","ts_ns":1100000000}"#.into(),
        r#"{"type":"fsync","session":1,"ts_ns":2,"latency_us":3.9}"#.into(),
        end_line(1, 1),
        end_of_run(1),
    ]);
    assert_eq!((r.events.fsync, r.events.sync_calls()), (1, None));
    let text = crate::report::render::text(&r);
    assert!(
        text.contains("fsync/fdatasync/sync_file_range latency (count 1"),
        "{text}"
    );
}

#[test]
fn events_before_their_session_start_count() {
    let r = fold(&[
        r#"{"type":"write","session":1,"ts_ns":1,"bytes":4096,"latency_us":9.6}"#.into(),
        r#"{"type":"write","session":null,"ts_ns":1,"bytes":10,"latency_us":1}"#.into(),
        r#"{"type":"session_start","session":1,"parent_pid":10,"child_pid":11,"kind":"rdb-bgsave","ts_ns":1100000000}"#.into(),
        r#"{"type":"sample","session":1,"ts_ns":2000000000,"elapsed_ms":300,"cow_bytes":8192,"write_bytes":60}"#.into(),
        r#"{"type":"fsync","session":1,"ts_ns":2,"bytes":0,"latency_us":700.2}"#.into(),
        end_line(1, 3),
        r#"{"type":"write","session":1,"ts_ns":3,"bytes":1,"latency_us":1}"#.into(),
        end_of_run(1),
    ]);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("1 event line(s) came after")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.sessions.len(), 1);
    let s = &r.sessions[0];
    assert_eq!(
        (
            s.events.write,
            s.events.fsync,
            s.late_events,
            r.events_outside
        ),
        (2, 1, 1, 1)
    );
    let h = s.hists.as_ref().unwrap();
    assert_eq!(
        (
            h.write_latency_us.quantiles.count,
            h.write_latency_us.quantiles.max
        ),
        (1, 9)
    );
    assert_eq!(h.fsync_latency_us.quantiles.p50, 700);
    assert_eq!(
        s.cow_per_bucket,
        [(1, 2), (2, 1)],
        "two empty buckets (as 1) and one of 3 pages"
    );
    // The closing row carries what happened after the last sample.
    let rows: Vec<Row> = s.timeline.as_ref().unwrap().rows().copied().collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (
            rows[1].elapsed_ms,
            rows[1].cow_bytes,
            rows[1].write_bytes,
            rows[1].disk_bytes
        ),
        (500, 12288, 40, 4096)
    );
    let t = r.totals();
    assert_eq!(
        (
            t.sessions,
            t.sessions_ended,
            t.cow_pages,
            t.write_bytes,
            t.lost_events
        ),
        (1, 1, 3, 100, Some(0))
    );
}

#[test]
fn detail_is_kept_for_the_largest_sessions_only() {
    let n = DETAIL_SESSIONS as u64 + 5;
    let mut lines = Vec::new();
    for id in 1..=n {
        lines.push(format!(
            r#"{{"type":"session_start","session":{id},"kind":"fork"}}"#
        ));
        lines.push(format!(
            r#"{{"type":"sample","session":{id},"elapsed_ms":100,"cow_bytes":4096}}"#
        ));
        // Sessions 1..=5 copy the least.
        lines.push(end_line(id, id * 10));
    }
    lines.push(end_of_run(n));
    let r = fold(&lines);
    let detailed: Vec<u64> = r
        .sessions
        .iter()
        .filter(|s| s.detailed())
        .map(|s| s.id)
        .collect();
    assert_eq!(detailed, (6..=n).collect::<Vec<_>>());
    assert!(
        r.sessions.iter().all(|s| s.end.is_some()),
        "summaries of every session are kept"
    );
    assert_eq!(r.totals().cow_pages, (1..=n).map(|i| i * 10).sum::<u64>());
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn open_session_histograms_are_capped() {
    let mut lines = Vec::new();
    for id in 0..(LIVE_HIST_SESSIONS as u64 + 3) {
        lines.push(format!(r#"{{"type":"session_start","session":{id}}}"#));
        lines.push(format!(
            r#"{{"type":"io","session":{id},"bytes":4096,"latency_us":50}}"#
        ));
    }
    let r = fold(&lines);
    assert_eq!(r.sessions.len(), LIVE_HIST_SESSIONS + 3);
    assert_eq!(
        r.sessions.iter().filter(|s| s.hists.is_some()).count(),
        LIVE_HIST_SESSIONS
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("3 event line(s) left out of histograms")),
        "{:?}",
        r.warnings
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("without an `end` line")),
        "{:?}",
        r.warnings
    );
}

#[test]
fn sessions_are_made_by_their_lines_not_by_any_number() {
    let mut lines = Vec::new();
    for id in 0..(LIVE_HIST_SESSIONS as u64 + 3) {
        lines.push(format!(r#"{{"type":"cow","session":{id},"side":"child"}}"#));
        lines.push(format!(r#"{{"type":"sample","session":{}}}"#, id + 1000));
    }
    // A session seen first in events becomes a real one with its session_start.
    lines.push(r#"{"type":"session_start","session":0,"kind":"rdb-bgsave"}"#.into());
    lines.push(r#"{"type":"cow","session":1000,"side":"child"}"#.into());
    let r = fold(&lines);
    assert_eq!(
        r.sessions.len(),
        LIVE_HIST_SESSIONS + 1,
        "events made 64 sessions, then one more after a start"
    );
    assert_eq!(
        (r.get(0).unwrap().kind(), r.get(0).unwrap().events.cow_child),
        ("rdb-bgsave", 1)
    );
    let w = r.warnings.join("\n");
    assert!(w.contains("3 event line(s) were not attributed"), "{w}");
    assert!(
        w.contains("67 `sample` line(s) of sessions without a `session_start` were skipped"),
        "{w}"
    );
}

#[test]
fn a_second_trace_stops_the_report() {
    let r = fold(&[
        end_line(1, 1),
        end_of_run(0),
        r#"{"type":"meta","format":"cowtrace","version":1}"#.into(),
        end_line(2, 1),
    ]);
    assert_eq!(r.sessions.len(), 1);
    let w = r.warnings.join("\n");
    assert!(w.contains("line 4 starts another trace"), "{w}");
    assert!(
        w.contains("the `end` line counts 0 session(s) but the trace has 0 `session_start`")
            || !w.contains("counts"),
        "{w}"
    );
}

#[test]
fn duplicates_and_lines_after_end_are_noted() {
    let r = fold(&[
        end_line(1, 1),
        end_line(1, 2),
        end_of_run(0),
        r#"{"type":"sample","session":1}"#.into(),
    ]);
    let w = r.warnings.join("\n");
    assert!(
        w.contains("line 3: a second session_end for session 1"),
        "{w}"
    );
    assert!(w.contains("1 line(s) after the `end` line (line 4)"), "{w}");
    assert_eq!(
        r.totals().cow_pages,
        2,
        "the later session_end counts, once"
    );
}

#[test]
fn hostile_numbers_saturate() {
    let big = u64::MAX;
    let r = fold(&[
        format!(
            r#"{{"type":"session_end","session":1,"duration_ms":{big},"cow":{{"pages":{big},"bytes":{big},"timeline_pages":[{big},{big}]}},"writes":{{"bytes":{big}}}}}"#
        ),
        format!(
            r#"{{"type":"session_end","session":2,"cow":{{"pages":{big},"bytes":{big}}},"writes":{{"bytes":{big}}}}}"#
        ),
        format!(r#"{{"type":"write","session":3,"bytes":{big},"latency_us":1e300}}"#),
        r#"{"type":"write","session":3,"bytes":0,"latency_us":-5}"#.to_string(),
    ]);
    assert_eq!(r.totals().cow_pages, big);
    let text = crate::report::render(&r, crate::report::Format::Text);
    assert!(text.contains("Session 1"), "{text}");
    let html = crate::report::render(&r, crate::report::Format::Html);
    assert!(html.contains("Session 1") && html.ends_with("</html>\n"));
    let json = crate::report::render(&r, crate::report::Format::Json);
    assert!(
        json.contains("\"cow_pages\": 18446744073709551615"),
        "{json}"
    );
}
