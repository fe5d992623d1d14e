//! The text that ends every run: the summary of the costliest sessions, and for `watch`
//! the run-wide histograms and each session's diagnosis.
use crate::{
    events::hist::Hist,
    live::store::RunHists,
    text::{
        diagnosis::{HostFacts, diagnose, host_diagnosis},
        exit::exit_text,
        hist::log2_hist,
        sent::sent_text,
        sync::latency_title,
        units::fmt_bytes,
    },
    trace::schema::{End, SessionEnd, SyncCall},
};

/// Sessions listed by name in the end-of-run summary.
pub const SUMMARY_MAX_SESSIONS: usize = 20;

/// The ended sessions the end-of-run summary names: the costliest
/// [`SUMMARY_MAX_SESSIONS`] by COW bytes, in bounded memory however many sessions a
/// run has (a fork storm makes thousands), plus how many ended in all.
#[derive(Debug, Default)]
pub struct KeptEnds {
    kept: Vec<SessionEnd>,
    total: usize,
}

impl KeptEnds {
    pub fn push(&mut self, e: SessionEnd) {
        self.total += 1;
        self.kept.push(e);
        if self.kept.len() > SUMMARY_MAX_SESSIONS {
            // Drop the cheapest (the oldest among equals).
            let (i, _) = self
                .kept
                .iter()
                .enumerate()
                .min_by(|(_, a), (_, b)| {
                    a.cow
                        .bytes
                        .cmp(&b.cow.bytes)
                        .then(b.session.cmp(&a.session))
                })
                .expect("not empty");
            self.kept.remove(i);
        }
    }

    /// The kept sessions, in session order.
    pub fn sessions(&self) -> Vec<SessionEnd> {
        let mut v = self.kept.clone();
        v.sort_by_key(|e| e.session);
        v
    }

    /// Sessions ended in all, kept or not.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// The summary printed at the end of every run.
pub fn summary(kept: &KeptEnds, end: &End) -> String {
    let ends = kept.sessions();
    let ends = ends.as_slice();
    let mut s = String::new();
    s.push_str(&format!(
        "cowtrace: {} session(s) in {:.1}s ({})\n",
        end.sessions,
        end.duration_ms as f64 / 1000.0,
        end.reason
    ));
    // A fork storm can make thousands of sessions: show the costliest ones.
    let mut shown: Vec<&SessionEnd> = ends.iter().collect();
    if shown.len() > SUMMARY_MAX_SESSIONS {
        shown.sort_by(|a, b| {
            b.cow
                .bytes
                .cmp(&a.cow.bytes)
                .then(a.session.cmp(&b.session))
        });
        shown.truncate(SUMMARY_MAX_SESSIONS);
        shown.sort_by_key(|e| e.session);
    }
    for e in &shown {
        s.push_str(&format!(
            "  session {:>3} {:<11} {:<21} parent {:>7} child {:>7} {:>8.2}s  COW {:>10} ({:>6} pages{}){}  wrote {:>10}  disk {:>10}  {}{}\n",
            e.session,
            e.kind.as_str(),
            e.instance_name(),
            e.parent_pid,
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            fmt_bytes(e.cow.bytes),
            e.cow.pages,
            e.cow.pct_of_parent_rss.map_or(String::new(), |p| format!(
                ", {p:.1}% of {} RSS at fork",
                e.cow.parent_rss_at_fork_bytes.map_or("the".into(), fmt_bytes)
            )),
            e.attached_mid_save
                .as_ref()
                .and_then(|m| m.cow_bytes_estimate)
                .map_or(String::new(), |est| format!(" + ≈{} before attach", fmt_bytes(est))),
            fmt_bytes(e.writes.bytes),
            fmt_bytes(e.disk.bytes),
            exit_text(e.complete, e.exit_code, e.exit_signal),
            sent_text(e).map_or(String::new(), |t| format!("  {t}")),
        ));
        if let Some(c) = e.causes.as_ref().filter(|c| c.copies > 0) {
            s.push_str(&format!(
                "              parent's copies by cause: {}{}\n",
                crate::text::causes::causes_brief(c, 4),
                e.regions
                    .as_ref()
                    .filter(|r| r.copies > 0)
                    .map_or(String::new(), |r| format!(
                        "; by region: {}",
                        crate::text::causes::regions_brief(r, 3)
                    ))
            ));
        }
        if let Some(m) = &e.main_thread {
            s.push_str(&format!(
                "              {}\n",
                crate::text::latency::brief(m, e.duration_ms)
            ));
        }
    }
    if kept.total() > shown.len() {
        s.push_str(&format!(
            "  ... and {} more session(s) with less COW (all of them are in a `record` trace)\n",
            kept.total() - shown.len()
        ));
    }
    if end.lost_events > 0 || end.decode_errors > 0 {
        s.push_str(&format!(
            "  LOST EVENTS: {} COW, {} session (ring buffer full); totals above are exact, per-event detail is not; {} bad records\n",
            end.lost_detail_events, end.lost_session_events, end.decode_errors
        ));
    } else {
        s.push_str("  lost events: 0\n");
    }
    if let Some(t) = kernel_errors_text(end) {
        s.push_str(&format!("  {t}\n"));
    }
    s
}

/// The kernel-side failures of a run in words, or None when there were none.
pub fn kernel_errors_text(end: &End) -> Option<String> {
    if end.kernel_errors.is_empty() {
        return None;
    }
    let each: Vec<String> = end
        .kernel_errors
        .iter()
        .map(|(map, n)| format!("{map} {n}"))
        .collect();
    Some(format!(
        "KERNEL-SIDE FAILURES: {} failed map insert(s) ({}): a full map lost sessions, processes or measurements, so totals may be low; raise the map's size or trace fewer processes",
        end.kernel_errors_total(),
        each.join(", ")
    ))
}

/// One histogram with its name and quantiles, for the end of a `watch` run.
pub fn named_hist(name: &str, val_type: &str, h: &Hist) -> String {
    if h.is_empty() {
        return format!("{name}: no events\n");
    }
    let q = h.quantiles();
    format!(
        "{name}: count {}, p50 {} {val_type}, p99 {}, max {}\n{}",
        q.count,
        q.p50,
        q.p99,
        q.max,
        log2_hist(val_type, &h.log2_buckets())
    )
}

/// The run-wide histograms of `watch`.
pub fn run_hists(h: &RunHists, sessions: usize) -> String {
    if sessions == 0 {
        return String::new();
    }
    let mut s = format!("\nHistograms of all {sessions} session(s):\n");
    let mut all = vec![
        ("write latency", "usecs", &h.io.write_lat_us),
        ("write size", "bytes", &h.io.write_size),
    ];
    // Each sync call apart: sync_file_range returns in microseconds and would hide the
    // fsync latency in a common histogram.
    for (call, hist) in SyncCall::ALL.iter().zip(&h.io.sync_lat_us) {
        all.push((latency_title(*call), "usecs", hist));
    }
    all.extend([
        ("block I/O latency", "usecs", &h.io.disk_lat_us),
        ("fork latency", "usecs", &h.fork_us),
        ("COW copies per interval", "pages", &h.cow_per_interval),
    ]);
    for (name, unit, hist) in all {
        s.push('\n');
        s.push_str(&named_hist(name, unit, hist));
    }
    s
}

/// The diagnosis of each session, for the end of a `watch` run.
pub fn diagnoses(ends: &[SessionEnd], host: &HostFacts) -> String {
    let mut s = String::new();
    if ends.is_empty() {
        return s;
    }
    s.push_str("\nDiagnosis:\n");
    for line in host_diagnosis(host) {
        s.push_str(&format!("host: {line}\n"));
    }
    for e in ends {
        s.push_str(&format!(
            "session {} {} {} (parent {}, child {}, {:.1}s, {}):\n",
            e.session,
            e.kind.as_str(),
            e.instance_name(),
            e.parent_pid,
            e.child_pid,
            e.duration_ms as f64 / 1000.0,
            exit_text(e.complete, e.exit_code, e.exit_signal)
        ));
        for line in diagnose(e, host) {
            s.push_str(&format!("  {line}\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{live::lines::tests::end_rec, trace::schema::CowSummary};

    #[test]
    fn summary_shows_losses() {
        let mut end = End {
            sessions: 1,
            lost_events: 0,
            lost_detail_events: 0,
            lost_session_events: 0,
            decode_errors: 0,
            ts_ns: 0,
            duration_ms: 2000,
            reason: "duration".into(),
            maps: Default::default(),
            agent_max_rss_bytes: None,
            kernel_errors: Default::default(),
        };
        let mut one = KeptEnds::default();
        one.push(end_rec());
        let s = summary(&one, &end);
        assert!(
            s.contains("1 session(s) in 2.0s (duration)") && s.contains("lost events: 0"),
            "{s}"
        );
        // A share names its base.
        assert!(
            s.contains("COW    1.0 MiB (   256 pages, 25.0% of 4.0 MiB RSS at fork)"),
            "{s}"
        );
        let many: Vec<SessionEnd> = (1..=25)
            .map(|i| SessionEnd {
                session: i,
                cow: CowSummary {
                    bytes: i * 4096,
                    ..end_rec().cow
                },
                ..end_rec()
            })
            .collect();
        let mut kept = KeptEnds::default();
        for e in many {
            kept.push(e);
        }
        assert_eq!(
            (kept.total(), kept.sessions().len()),
            (25, SUMMARY_MAX_SESSIONS)
        );
        let text = summary(&kept, &end);
        assert!(text.contains("... and 5 more session(s)"), "{text}");
        assert!(
            text.contains("session  25 ") && !text.contains("session   5 "),
            "{text}"
        );
        end.lost_events = 5;
        end.lost_detail_events = 5;
        assert!(summary(&KeptEnds::default(), &end).contains("LOST EVENTS: 5 COW"));
        assert!(!summary(&KeptEnds::default(), &end).contains("KERNEL-SIDE"));
        end.kernel_errors.insert("SESSIONS".into(), 3);
        end.kernel_errors.insert("PENDING".into(), 1);
        assert!(
            summary(&KeptEnds::default(), &end)
                .contains("KERNEL-SIDE FAILURES: 4 failed map insert(s) (PENDING 1, SESSIONS 3)"),
            "{}",
            summary(&KeptEnds::default(), &end)
        );
    }

    #[test]
    fn end_of_watch_histograms_and_diagnosis() {
        use crate::live::store::RunHists;
        let mut h = RunHists::default();
        assert_eq!(run_hists(&h, 0), "");
        h.fork_us.record(1500);
        let text = run_hists(&h, 1);
        assert!(text.contains("Histograms of all 1 session(s):"), "{text}");
        assert!(text.contains("write latency: no events"), "{text}");
        assert!(
            text.contains("fsync latency: no events\n\nfdatasync latency: no events\n\nsync_file_range latency: no events"),
            "{text}"
        );
        assert!(
            text.contains("fork latency: count 1, p50 1500 usecs, p99 1500, max 1500\n     usecs "),
            "{text}"
        );
        assert!(
            text.contains("      1024 -> 2047       : 1        |****"),
            "{text}"
        );
        let host = HostFacts {
            thp: Some("never".into()),
            overcommit_memory: Some(1),
            kernel: Some("6.18.44-fc-v1147".into()),
        };
        let d = diagnoses(&[end_rec()], &host);
        assert!(d.starts_with("\nDiagnosis:\nhost: THP is `never` on Linux 6.18: COW copies 4 KiB pages.\nsession 3 rdb-bgsave pid 10 (parent 10, child 11, 1.5s, exit 0):\n  COW copied 1.0 MiB"), "{d}");
        assert_eq!(diagnoses(&[], &host), "");
    }
}
