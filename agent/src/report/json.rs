//! `report --json`: one object with the trace's identity, the totals (with the sessions
//! that have no `session_end` apart), every session as read, and the warnings.
use agent_common::SYNC_CALLS;
use serde::Serialize;

use super::{
    fold::Report,
    session::{EventCounts, EventHists},
};
use crate::{
    text::diagnosis::{HostFacts, diagnose, host_diagnosis},
    trace::schema::{Build, End, ProcessRecord, Sample, SessionEnd, SessionStart, SyncCounts},
};

impl Report {
    /// The `report --json` object.
    pub fn json(&self) -> JsonReport<'_> {
        let host = HostFacts::from_meta(&self.meta);
        JsonReport {
            report: "cowtrace-report",
            version: 1,
            file: &self.source,
            trace: TraceInfo {
                format_version: u64::from(self.meta.version),
                cowtrace_version: &self.meta.cowtrace_version,
                build: self.meta.build.as_ref(),
                host: &self.meta.host,
                kernel: &self.meta.kernel,
                targets: &self.meta.targets,
                pids: &self.meta.pids,
                start_unix_ms: self.meta.start_unix_ms,
                start_ts_ns: self.meta.start_ts_ns,
                interval_ms: self.meta.interval_ms,
                thp: self.meta.thp.as_deref(),
                overcommit_memory: self.meta.overcommit_memory,
                duration_ms: self.duration_ms(),
                has_end: self.end.is_some(),
                lines: self.last_line,
                filter: self.filter.as_deref(),
            },
            host_diagnosis: host_diagnosis(&host),
            end: self.end.as_ref().map(EndSummary::of),
            totals: self.totals(),
            events: self.events,
            events_outside_sessions: self.events_outside,
            sessions: self
                .sessions
                .iter()
                .map(|s| JsonSession {
                    session: s.id,
                    instance: s.instance(),
                    kind: s.kind(),
                    ended: s.end.is_some(),
                    start: s.start.as_ref(),
                    end: s.end.as_ref(),
                    samples: s.samples,
                    last_sample: s.last_sample.as_ref(),
                    events: s.events,
                    event_histograms: s.hists.as_ref(),
                    diagnosis: s
                        .end
                        .as_ref()
                        .map(|e| diagnose(e, &host))
                        .unwrap_or_default(),
                })
                .collect(),
            processes: &self.processes,
            warnings: &self.warnings,
        }
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            sessions: self.sessions.len() as u64,
            ..Default::default()
        };
        // Per call while every ended session tells the calls apart.
        let mut sync_by_call = Some([0u64; SYNC_CALLS]);
        for s in &self.sessions {
            let Some(e) = &s.end else {
                t.sessions_unfinished += 1;
                let u = &mut t.unfinished;
                if let Some(l) = &s.last_sample {
                    u.cow_bytes = u.cow_bytes.saturating_add(l.cow_bytes);
                    u.cow_pages = u.cow_pages.saturating_add(l.cow_pages);
                }
                u.write_bytes = u.write_bytes.saturating_add(s.sampled_write_bytes);
                u.disk_bytes = u.disk_bytes.saturating_add(s.sampled_disk_bytes);
                continue;
            };
            t.sessions_ended += 1;
            if let Some(est) = e
                .attached_mid_save
                .as_ref()
                .and_then(|m| m.cow_bytes_estimate)
            {
                t.cow_bytes_estimated_before_attach =
                    t.cow_bytes_estimated_before_attach.saturating_add(est);
            }
            t.cow_bytes = t.cow_bytes.saturating_add(e.cow.bytes);
            t.cow_pages = t.cow_pages.saturating_add(e.cow.pages);
            t.parent_pages = t.parent_pages.saturating_add(e.cow.parent_pages);
            t.child_pages = t.child_pages.saturating_add(e.cow.child_pages);
            t.write_bytes = t.write_bytes.saturating_add(e.writes.bytes);
            t.write_calls = t.write_calls.saturating_add(e.writes.calls);
            t.fsync_calls = t.fsync_calls.saturating_add(e.fsync.calls);
            sync_by_call = match (sync_by_call, e.fsync.calls_by_call()) {
                (Some(sum), Some(c)) => Some(std::array::from_fn(|i| sum[i].saturating_add(c[i]))),
                _ => None,
            };
            t.disk_bytes = t.disk_bytes.saturating_add(e.disk.bytes);
            t.disk_ios = t.disk_ios.saturating_add(e.disk.ios);
        }
        t.sync_calls = sync_by_call
            .filter(|_| t.sessions_ended > 0)
            .map(SyncCounts::of);
        // The sums include what the unfinished sessions did (their last sample), so a cut
        // trace does not read as zero; the flag and `unfinished` say how much.
        let u = t.unfinished.clone();
        t.includes_unfinished = t.sessions_unfinished > 0;
        t.cow_bytes = t.cow_bytes.saturating_add(u.cow_bytes);
        t.cow_pages = t.cow_pages.saturating_add(u.cow_pages);
        t.write_bytes = t.write_bytes.saturating_add(u.write_bytes);
        t.disk_bytes = t.disk_bytes.saturating_add(u.disk_bytes);
        if let Some(e) = &self.end {
            t.lost_events = Some(e.lost_events);
            t.lost_cow_events = Some(e.lost_detail_events);
            t.lost_session_events = Some(e.lost_session_events);
            t.decode_errors = Some(e.decode_errors);
        }
        t
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Sessions in the trace (with any line), ended (with `session_end`) or not.
    pub sessions: u64,
    pub sessions_ended: u64,
    pub sessions_unfinished: u64,
    /// Sums over the sessions: their `session_end` lines, and for sessions without one
    /// (a cut trace) their last sample (COW) and their samples (written, disk), so the
    /// sums are lower bounds when `includes_unfinished` is true. Calls, pages by side and
    /// I/O counts come from `session_end` lines only.
    pub cow_bytes: u64,
    pub cow_pages: u64,
    pub parent_pages: u64,
    pub child_pages: u64,
    pub write_bytes: u64,
    pub write_calls: u64,
    /// `fsync`, `fdatasync` and `sync_file_range` calls together.
    pub fsync_calls: u64,
    /// The same per call; null when a session's `session_end` does not tell them apart.
    pub sync_calls: Option<SyncCounts>,
    pub disk_bytes: u64,
    pub disk_ios: u64,
    /// From the `end` line; null when the trace has none.
    pub lost_events: Option<u64>,
    pub lost_cow_events: Option<u64>,
    pub lost_session_events: Option<u64>,
    pub decode_errors: Option<u64>,
    /// True when sessions without `session_end` are in the sums above.
    pub includes_unfinished: bool,
    /// The part of the sums that comes from sessions without `session_end`.
    pub unfinished: Unfinished,
    /// COW of sessions attached mid-save, estimated before the attach: not in
    /// `cow_bytes`, which is what was counted.
    pub cow_bytes_estimated_before_attach: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unfinished {
    pub cow_bytes: u64,
    pub cow_pages: u64,
    pub write_bytes: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct TraceInfo<'a> {
    pub format_version: u64,
    pub cowtrace_version: &'a str,
    /// `meta.build`, when the trace has it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build: Option<&'a Build>,
    pub host: &'a str,
    pub kernel: &'a str,
    pub targets: &'a str,
    pub pids: &'a [u32],
    pub start_unix_ms: Option<u64>,
    pub start_ts_ns: Option<u64>,
    pub interval_ms: Option<u64>,
    pub thp: Option<&'a str>,
    pub overcommit_memory: Option<u32>,
    pub duration_ms: Option<u64>,
    pub has_end: bool,
    pub lines: u64,
    /// `--instance/--kind/--session` as given, when the report is filtered.
    pub filter: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub struct JsonSession<'a> {
    pub session: u64,
    /// The server's name (`pid N` for a trace written before names existed).
    pub instance: String,
    pub kind: &'a str,
    /// False when the trace has no `session_end` for it (cut trace).
    pub ended: bool,
    pub start: Option<&'a SessionStart>,
    /// The `session_end` line as written, without `cow.timeline_pages`.
    pub end: Option<&'a SessionEnd>,
    pub samples: u64,
    pub last_sample: Option<&'a Sample>,
    pub events: EventCounts,
    pub event_histograms: Option<&'a EventHists>,
    /// The diagnosis of an ended session, as the text report gives it.
    pub diagnosis: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    pub report: &'static str,
    pub version: u32,
    pub file: &'a str,
    pub trace: TraceInfo<'a>,
    /// The host's settings that shape every fork (THP, overcommit), once.
    pub host_diagnosis: Vec<String>,
    pub end: Option<EndSummary<'a>>,
    pub totals: Totals,
    pub events: EventCounts,
    pub events_outside_sessions: u64,
    pub sessions: Vec<JsonSession<'a>>,
    pub processes: &'a [ProcessRecord],
    pub warnings: &'a [String],
}

/// The `end` line in `report --json`: its counts and reason (the map occupancy and the
/// agent's memory are for the soak and leak tests, and stay in the trace).
#[derive(Debug, Serialize)]
pub struct EndSummary<'a> {
    pub sessions: u64,
    pub lost_events: u64,
    pub lost_cow_events: u64,
    pub lost_session_events: u64,
    pub decode_errors: u64,
    pub ts_ns: u64,
    pub duration_ms: u64,
    pub reason: &'a str,
}

impl<'a> EndSummary<'a> {
    fn of(e: &'a End) -> Self {
        Self {
            sessions: e.sessions,
            lost_events: e.lost_events,
            lost_cow_events: e.lost_detail_events,
            lost_session_events: e.lost_session_events,
            decode_errors: e.decode_errors,
            ts_ns: e.ts_ns,
            duration_ms: e.duration_ms,
            reason: &e.reason,
        }
    }
}
