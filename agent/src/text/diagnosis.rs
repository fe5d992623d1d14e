//! "Explain the spike": a short diagnosis of one session, from its summary and the
//! host settings that shape COW. Pure, shared by the live summary and `report`.
use crate::{
    text::{
        sent::sent_text,
        sync::sync_time,
        units::{fmt_bytes, fmt_rate},
    },
    trace::schema::SessionEnd,
};

/// What a replica sync did: sent the RDB itself (diskless), or wrote it for the server
/// to send (disk-based).
fn replication(e: &SessionEnd, secs: f64) -> Option<String> {
    let r = e.replication.as_ref()?;
    let words = sent_text(e)?;
    Some(if r.target == "disk" {
        format!(
            "A disk-based replica sync ({words}): the child wrote the RDB file, which the server sends once the child has exited."
        )
    } else {
        let how = match e.sent.as_ref().and_then(|s| s.targets.first()) {
            Some(t) if t.kind == "socket" => "straight to the replica's connection",
            Some(_) => "through a pipe to the server, which relays it",
            None => "to the replicas",
        };
        let rate = e
            .sent
            .as_ref()
            .filter(|_| secs > 0.0)
            .map_or(String::new(), |s| {
                format!(" ({})", fmt_rate(s.bytes as f64 / secs))
            });
        format!("A diskless replica sync: the child {words}{rate}, {how}.")
    })
}

/// Host settings that matter for fork COW, as recorded in the trace's meta line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// `/sys/kernel/mm/transparent_hugepage/enabled`: always, madvise or never.
    pub thp: Option<String>,
    /// `vm.overcommit_memory`: 0, 1 or 2.
    pub overcommit_memory: Option<u32>,
    /// The kernel release (`uname -r`), which decides what THP does to COW.
    pub kernel: Option<String>,
}

impl HostFacts {
    /// The facts of a trace's meta line.
    pub fn from_meta(m: &crate::trace::schema::Meta) -> Self {
        Self {
            thp: m.thp.clone(),
            overcommit_memory: m.overcommit_memory,
            kernel: Some(m.kernel.clone()).filter(|k| !k.is_empty()),
        }
    }
}

/// Lines of plain text about one session, most important first. The host's own settings
/// are in [`host_diagnosis`], said once per run.
pub fn diagnose(e: &SessionEnd, host: &HostFacts) -> Vec<String> {
    let mut out = Vec::new();
    let c = &e.cow;
    let secs = e.duration_ms as f64 / 1000.0;
    if let Some(m) = &e.attached_mid_save {
        out.push(format!(
            "cowtrace attached {:.1} s into this save: the COW before that is an estimate ({} from {}); the copies after it are counted ({}).",
            m.ran_ms as f64 / 1000.0,
            m.cow_bytes_estimate.map_or("unknown".into(), |b| format!("≈{}", fmt_bytes(b))),
            m.cow_source,
            fmt_bytes(c.bytes),
        ));
    }
    let total = e.cow_bytes_with_estimate();
    let approx = if e.attached_mid_save.is_some() {
        "≈"
    } else {
        ""
    };
    match (c.pct_of_parent_rss, c.parent_rss_at_fork_bytes) {
        (Some(p), Some(rss)) => out.push(format!(
            "COW copied {approx}{} = {p:.1}% of the parent's RSS at fork ({}).",
            fmt_bytes(total),
            fmt_bytes(rss)
        )),
        _ => out.push(format!("COW copied {approx}{}.", fmt_bytes(total))),
    }
    if let Some(st) = &e.stall {
        out.push(crate::text::stall::stall_summary_text(st, e.child_pid));
    }
    if let Some(f) = &e.slow_fork {
        out.push(crate::text::stall::slow_fork_text(f));
    }
    // Small COW: say so and stop advising (the memory lines still come, when known).
    let small = c.pct_of_parent_rss.is_some_and(|p| p < 5.0) && e.oom_kill.is_none();
    if c.pages > 0 {
        let parent_share = c.parent_pages as f64 * 100.0 / c.pages as f64;
        out.push(format!(
            "Source: the parent's writes copied {} pages ({parent_share:.0}%) during the {secs:.1} s the {} child ran; the child copied {}.",
            c.parent_pages,
            e.kind.child_role(),
            c.child_pages
        ));
        if c.peak_pages_per_s > 0.0 {
            out.push(format!(
                "Peak copy rate {}/s at {:.1} s after the fork.",
                fmt_bytes((c.peak_pages_per_s * 4096.0) as u64),
                c.peak_at_ms as f64 / 1000.0
            ));
        }
        if let Some(line) = e.causes.as_ref().and_then(super::causes::cause_line) {
            out.push(line);
        }
        if let Some(r) = e.regions.as_ref().filter(|r| r.copies > 0) {
            out.push(format!(
                "By region: {}.",
                super::causes::regions_brief(r, 4)
            ));
        }
        if let Some(line) = saturation(e) {
            out.push(line);
        }
        if let Some(m) = &e.main_thread {
            out.push(super::latency::diagnosis_line(m, e.duration_ms));
        }
    } else {
        out.push("No page was copied: the parent wrote no shared page while the child ran.".into());
    }
    if c.copies_2m > 0 {
        let mode = host.thp.as_deref().unwrap_or("?");
        out.push(format!(
            "{} copies were whole 2 MiB huge pages (THP `{mode}`): each write to one copies 512 pages' worth; THP `madvise` (Redis does not ask for huge pages) or `never` avoids it.",
            c.copies_2m
        ));
    }
    let bound = disk_bound(e);
    if e.writes.bytes > 0 && secs > 0.0 {
        out.push(format!(
            "The child wrote {} ({}) in {} file(s); {}.",
            fmt_bytes(e.writes.bytes),
            fmt_rate(e.writes.bytes as f64 / secs),
            e.writes.files.len(),
            sync_time(
                e.fsync.calls,
                e.fsync.total_ms,
                e.fsync
                    .by_call
                    .as_ref()
                    .map(|b| b.each().map(|(_, c)| (c.calls, c.total_ms)))
            )
        ));
        if let Some((share, disk)) = bound {
            out.push(if disk {
                format!("The save was bound by the disk: the child spent about {share:.0}% of its time in write and sync calls.")
            } else {
                format!(
                    "The save was not bound by the disk: the child spent about {share:.0}% of its time in write and sync calls (writes {} µs at p50), so it was bound by the CPU (serialising the dataset) or throttled (`rdb-key-save-delay`).",
                    e.writes.latency_us.p50
                )
            });
        }
    }
    if let Some(l) = replication(e, secs) {
        out.push(l);
    }
    if let Some(k) = &e.oom_kill {
        out.push(oom(k, e));
    }
    if let Some(m) = &e.memory {
        out.extend(memory(m, total));
    }
    if small {
        out.push(format!(
            "This save copied little ({:.1}% of the parent's RSS): nothing to do.",
            c.pct_of_parent_rss.unwrap_or(0.0)
        ));
        return out;
    }
    let mut fixes = Vec::new();
    // u128: the summary may come from a trace file (`report`), where any u64 can appear.
    let (pages, parent_pages, child_pages) = (
        u128::from(c.pages),
        u128::from(c.parent_pages),
        u128::from(c.child_pages),
    );
    if pages > 0 && parent_pages * 10 >= pages * 9 {
        fixes.push("fewer writes while a save runs (the parent's writes cause the copies)");
        match bound {
            Some((_, true)) => fixes.push("a faster disk (a shorter save copies less)"),
            _ => fixes.push("a smaller dataset per instance (a shorter save copies less)"),
        }
        fixes.push("scheduling saves at quiet times");
    }
    if child_pages * 10 > pages && pages > 0 {
        fixes.push("checking what the child writes to memory (modules, large allocations)");
    }
    if !fixes.is_empty() {
        out.push(format!("To reduce it: {}.", fixes.join("; ")));
    }
    out
}

/// Copying that saturated: most of the parent's memory copied early in the save, then
/// little more. The save's cost is then its whole dataset again, whatever its length.
fn saturation(e: &SessionEnd) -> Option<String> {
    let c = &e.cow;
    let at = c.ninety_pct_at_ms?;
    let pct = c.pct_of_parent_rss?;
    if pct < 50.0 || e.duration_ms == 0 || at * 2 > e.duration_ms {
        return None;
    }
    Some(format!(
        "Copying saturated: 90% of the copies were made in the first {:.1} s of the {:.1} s save, and {pct:.0}% of the parent's RSS was copied: with this write load, plan for about twice the dataset's memory during every save.",
        at as f64 / 1000.0,
        e.duration_ms as f64 / 1000.0
    ))
}

/// The share of the child's time spent in write and sync calls (write time estimated as
/// calls × p50 latency), and whether that makes the save disk-bound (half or more).
/// None when nothing was written or the latencies are unknown.
fn disk_bound(e: &SessionEnd) -> Option<(f64, bool)> {
    if e.duration_ms == 0 || e.writes.calls == 0 || e.writes.latency_us.count == 0 {
        return None;
    }
    let write_ms = e.writes.calls as f64 * e.writes.latency_us.p50 as f64 / 1000.0;
    let share = ((write_ms + e.fsync.total_ms) * 100.0 / e.duration_ms as f64).min(100.0);
    Some((share, share >= 50.0))
}

/// Host settings that shape every fork, read for the running kernel's version
/// (`text::kernel`): said once per run, not per session.
pub fn host_diagnosis(host: &HostFacts) -> Vec<String> {
    crate::text::kernel::kernel_notes(
        host.kernel.as_deref(),
        host.thp.as_deref(),
        host.overcommit_memory,
    )
}

/// What the OOM killer did, and why it chose that process.
fn oom(k: &crate::trace::schema::OomKill, e: &SessionEnd) -> String {
    let at = e.memory.as_ref().map_or(String::new(), |m| {
        format!(
            " at {} of the {} limit",
            fmt_bytes(m.peak_bytes),
            fmt_bytes(m.limit_bytes)
        )
    });
    let rss = if k.rss_bytes > 0 {
        format!(", RSS {}", fmt_bytes(k.rss_bytes))
    } else {
        String::new()
    };
    let who = match k.side.as_str() {
        "child" => format!("the {} child", e.kind.as_str()),
        _ => "the server itself".to_string(),
    };
    format!(
        "OOM kill: the kernel's OOM killer killed {who} (pid {}{rss}){at}; the save had copied {} by then. Redis's `oom-score-adj-values` (default 0 200 800, with `oom-score-adj` on) make the save child the likelier victim; without them the server, the largest process, can be chosen.",
        k.pid,
        fmt_bytes(k.cow_bytes)
    )
}

/// Peak usage against the limit, and how close the save came to an OOM kill.
fn memory(m: &crate::trace::schema::SaveMemory, cow: u64) -> Vec<String> {
    let Some(pct) = m.peak_pct() else {
        return Vec::new();
    };
    let limit = fmt_bytes(m.limit_bytes);
    let whose = match (&m.container, m.source.as_str()) {
        (Some(c), s) => format!("the {limit} limit of container {c} ({s})"),
        (None, "host") => format!("the host's {limit} (no cgroup limit is set)"),
        (None, s) => format!(
            "the {limit} limit of cgroup {} ({s})",
            m.cgroup.as_deref().unwrap_or("?")
        ),
    };
    let mut out = vec![format!(
        "Memory: peak {} of {whose} = {pct:.1}%; {} at the fork.",
        fmt_bytes(m.peak_bytes),
        fmt_bytes(m.at_fork_bytes)
    )];
    let headroom = m.limit_bytes.saturating_sub(m.peak_bytes);
    if pct >= 90.0 {
        out.push(format!(
            "Danger: this save left {} below the limit. A save that copies {} more (a larger dataset, more writes while it runs) is OOM-killed; Redis's `oom-score-adj` settings decide whether the kernel kills the child or the server.",
            fmt_bytes(headroom),
            fmt_bytes(headroom)
        ));
    } else if cow > 0 && headroom < cow {
        out.push(format!(
            "Headroom {} is less than this save's COW ({}): a save twice as costly would not fit.",
            fmt_bytes(headroom),
            fmt_bytes(cow)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oom_kill_says_who_and_why() {
        let mut e = end(100, 0);
        e.oom_kill = Some(crate::trace::schema::OomKill {
            side: "child".into(),
            pid: 11,
            rss_bytes: 64 << 20,
            cow_bytes: 180 << 20,
        });
        let l = diagnose(&e, &HostFacts::default());
        assert!(
            l.iter().any(|l| l.starts_with("OOM kill: the kernel's OOM killer killed the rdb-bgsave child (pid 11, RSS 64.0 MiB); the save had copied 180.0 MiB by then.")),
            "{l:?}"
        );
    }

    #[test]
    fn memory_against_the_limit() {
        let m = crate::trace::schema::SaveMemory {
            source: "cgroup v1".into(),
            cgroup: Some("/libpod_parent/libpod-4f2d".into()),
            limit_bytes: 512 << 20,
            at_fork_bytes: 300 << 20,
            peak_bytes: 480 << 20,
            container: Some("redis1".into()),
            ..Default::default()
        };
        let l = memory(&m, 180 << 20);
        assert_eq!(
            l[0],
            "Memory: peak 480.0 MiB of the 512.0 MiB limit of container redis1 (cgroup v1) = 93.8%; 300.0 MiB at the fork."
        );
        assert!(
            l[1].starts_with("Danger: this save left 32.0 MiB below the limit."),
            "{l:?}"
        );
        let roomy = crate::trace::schema::SaveMemory {
            source: "host".into(),
            limit_bytes: 24 << 30,
            at_fork_bytes: 2 << 30,
            peak_bytes: 3 << 30,
            ..Default::default()
        };
        let l = memory(&roomy, 1 << 30);
        assert_eq!(l.len(), 1, "{l:?}");
        assert!(
            l[0].contains("the host's 24.00 GiB (no cgroup limit is set) = 12.5%"),
            "{l:?}"
        );
    }
    use crate::{
        events::timeline::Timeline,
        trace::schema::{
            DiskSummary, FsyncSummary, Quantiles, SessionKind, SyncByCall, SyncCallSummary,
            WritesSummary,
        },
    };
    use agent_common::CowCounters;

    fn end(parent_pages: u64, child_pages: u64) -> SessionEnd {
        let p = CowCounters {
            copies_4k: parent_pages,
            copy_bytes: parent_pages * 4096,
            ..Default::default()
        };
        let c = CowCounters {
            copies_4k: child_pages,
            copy_bytes: child_pages * 4096,
            ..Default::default()
        };
        let mut t = Timeline::new(0);
        t.observe(150_000_000, parent_pages + child_pages);
        SessionEnd {
            session: 1,
            stall: None,
            slow_fork: None,
            main_thread: None,
            parent_pid: 1,
            child_pid: 2,
            kind: SessionKind::RdbBgsave,
            ts_ns: 0,
            duration_ms: 2000,
            exit_code: Some(0),
            exit_signal: None,
            complete: true,
            cow: t.summary(&p, &c, Some(1 << 30)),
            writes: WritesSummary {
                calls: 10,
                bytes: 100_000_000,
                files: vec![],
                latency_us: Quantiles::default(),
                size_bytes: Quantiles::default(),
            },
            fsync: FsyncSummary {
                calls: 3,
                total_ms: 12.5,
                latency_us: Quantiles::default(),
                by_call: Some(SyncByCall {
                    fsync: SyncCallSummary {
                        calls: 1,
                        total_ms: 12.0,
                        ..Default::default()
                    },
                    sync_file_range: SyncCallSummary {
                        calls: 2,
                        total_ms: 0.5,
                        ..Default::default()
                    },
                    ..Default::default()
                }),
            },
            disk: DiskSummary {
                bytes: 0,
                ios: 0,
                latency_us: Quantiles::default(),
            },
            instance: None,
            attached_mid_save: None,
            memory: None,
            oom_kill: None,
            projection_check: None,
            aof: None,
            sent: None,
            replication: None,
            causes: None,
            regions: None,
        }
    }

    #[test]
    fn parent_driven_spike() {
        let host = HostFacts {
            thp: Some("always".into()),
            overcommit_memory: Some(0),
            kernel: Some("6.18.44-fc-v1147".into()),
        };
        let d = diagnose(&end(131_072, 100), &host);
        let text = d.join("\n");
        assert!(
            d[0].starts_with("COW copied 512.4 MiB = 50.0% of the parent's RSS at fork (1.00 GiB)"),
            "{text}"
        );
        assert!(text.contains("the parent's writes copied 131072 pages (100%) during the 2.0 s the rdb-bgsave child ran"), "{text}");
        assert!(
            text.contains(
                "The child wrote 95.4 MiB (47.7 MiB/s) in 0 file(s); 3 sync call(s) took 12.5 ms: fsync 1 (12.0 ms), sync_file_range 2 (0.5 ms)."
            ),
            "{text}"
        );
        assert!(
            !text.contains("THP is"),
            "host facts are said once per run: {text}"
        );
        let h = host_diagnosis(&host).join("\n");
        assert!(
            h.contains("THP is `always` on Linux 6.18") && h.contains("since 5.8"),
            "{h}"
        );
        assert!(h.contains("vm.overcommit_memory = 0"), "{h}");
        assert!(
            text.contains("Copying saturated: 90% of the copies were made in the first 0.2 s of the 2.0 s save"),
            "{text}"
        );
        assert!(
            text.contains("To reduce it: fewer writes while a save runs"),
            "{text}"
        );
    }

    #[test]
    fn disk_bound_or_not_and_the_advice_that_follows() {
        let mut e = end(131_072, 0);
        // 24,000 writes of 40 µs = 0.96 s of a 2 s save, plus 12.5 ms of syncs: 48.6%.
        e.writes.calls = 24_000;
        e.writes.latency_us.count = 24_000;
        e.writes.latency_us.p50 = 40;
        let text = diagnose(&e, &HostFacts::default()).join("\n");
        assert!(
            text.contains("The save was not bound by the disk: the child spent about 49%"),
            "{text}"
        );
        assert!(
            text.contains("a smaller dataset per instance") && !text.contains("faster disk"),
            "{text}"
        );
        e.writes.latency_us.p50 = 80;
        let text = diagnose(&e, &HostFacts::default()).join("\n");
        assert!(
            text.contains("The save was bound by the disk: the child spent about 97%"),
            "{text}"
        );
        assert!(text.contains("a faster disk"), "{text}");
    }

    #[test]
    fn a_stall_and_a_slow_fork_are_said_first() {
        let mut e = end(100, 0);
        e.stall = Some(crate::trace::schema::StallSummary {
            count: 1,
            longest: crate::trace::schema::Stall {
                for_ms: 4_000,
                threshold_ms: 2_000,
                state: Some("T".into()),
                state_name: Some("stopped by a signal".into()),
                ..Default::default()
            },
        });
        e.slow_fork = Some(crate::trace::schema::SlowFork {
            fork_us: 50_000.0,
            rss_bytes: 1 << 30,
            ms_per_gib: 50.0,
            threshold_ms_per_gib: 10.0,
            ..Default::default()
        });
        let l = diagnose(&e, &HostFacts::default());
        assert!(
            l[1].starts_with("Stalled: the child (pid 2) wrote nothing for 4.0 s"),
            "{l:?}"
        );
        assert!(
            l[2].starts_with("Slow fork: it blocked the server for 50.0 ms"),
            "{l:?}"
        );
    }

    #[test]
    fn a_small_save_needs_nothing() {
        let e = end(1_000, 0);
        let text = diagnose(&e, &HostFacts::default()).join("\n");
        assert!(
            text.ends_with("This save copied little (0.4% of the parent's RSS): nothing to do."),
            "{text}"
        );
        assert!(!text.contains("To reduce it"), "{text}");
    }

    #[test]
    fn any_counts_from_a_trace_file_are_safe() {
        let mut e = end(1, 1);
        e.cow.pages = u64::MAX;
        e.cow.parent_pages = u64::MAX;
        e.cow.child_pages = u64::MAX;
        e.cow.peak_pages_per_s = f64::MAX;
        let text = diagnose(&e, &HostFacts::default()).join("\n");
        assert!(text.contains("nothing to do"), "{text}");
        e.cow.pct_of_parent_rss = Some(f64::MAX);
        let text = diagnose(&e, &HostFacts::default()).join("\n");
        assert!(text.contains("To reduce it"), "{text}");
    }

    #[test]
    fn quiet_save() {
        let host = HostFacts {
            thp: Some("madvise".into()),
            overcommit_memory: Some(1),
            kernel: None,
        };
        let text = diagnose(&end(0, 0), &host).join("\n");
        assert!(text.contains("No page was copied"), "{text}");
        assert!(!text.contains("To reduce it"), "{text}");
        assert!(!text.contains("overcommit"), "{text}");
    }
}
