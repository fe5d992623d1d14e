//! A session as the report knows it: its lines, counts of its event lines, and the
//! histograms those build while it is open.
use serde::Serialize;

use agent_common::SYNC_CALLS;

use super::{fold::TIMELINE_ROWS, timeline::Timeline};
use crate::{
    events::hist::Hist,
    trace::schema::{
        MidSave, Quantiles, Sample, SessionEnd, SessionKind, SessionStart, SyncCounts,
    },
};

/// Which event line an I/O event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IoKind {
    Write,
    /// An `fsync` line: any sync call (its `call` says which).
    Sync,
    Io,
}

/// Histograms built from `--events` lines while a session is open.
#[derive(Debug, Clone, Default)]
pub(super) struct LiveHists {
    pub(super) write_lat_us: Hist,
    pub(super) write_size: Hist,
    /// Every `fsync` line, whatever its call.
    pub(super) fsync_lat_us: Hist,
    /// `fsync` lines per `call` (`SyncCall::ALL` order).
    pub(super) sync_lat_us: [Hist; SYNC_CALLS],
    pub(super) disk_lat_us: Hist,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HistSummary {
    #[serde(flatten)]
    pub quantiles: Quantiles,
    /// Power-of-two buckets (lowest value, count); dropped for sessions not detailed.
    #[serde(skip)]
    pub log2: Vec<(u64, u64)>,
}

impl HistSummary {
    fn of(h: &Hist) -> Self {
        Self {
            quantiles: h.quantiles(),
            log2: h.log2_buckets(),
        }
    }
}

/// What a session's `--events` lines say.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventHists {
    pub write_latency_us: HistSummary,
    pub write_size_bytes: HistSummary,
    /// Every `fsync` line (`fsync`, `fdatasync` and `sync_file_range` calls together).
    pub fsync_latency_us: HistSummary,
    /// The same per call, from the lines' `call` (lines without one are only above).
    pub sync_latency_us: SyncHists,
    pub disk_latency_us: HistSummary,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncHists {
    pub fsync: HistSummary,
    pub fdatasync: HistSummary,
    pub sync_file_range: HistSummary,
}

impl SyncHists {
    /// The histograms in `SyncCall::ALL` order.
    pub fn each(&self) -> [&HistSummary; SYNC_CALLS] {
        [&self.fsync, &self.fdatasync, &self.sync_file_range]
    }

    fn each_mut(&mut self) -> [&mut HistSummary; SYNC_CALLS] {
        [
            &mut self.fsync,
            &mut self.fdatasync,
            &mut self.sync_file_range,
        ]
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EventCounts {
    /// `cow` lines: copies.
    pub cow: u64,
    pub cow_parent: u64,
    pub cow_child: u64,
    /// `zero_fill` lines.
    pub zero_fill: u64,
    pub write: u64,
    /// `fsync` lines, of every sync call.
    pub fsync: u64,
    /// `fsync` lines per `call` (lines without one, from older traces, are not in it).
    pub sync_by_call: SyncCounts,
    pub io: u64,
}

impl EventCounts {
    pub fn total(&self) -> u64 {
        self.cow
            .saturating_add(self.zero_fill)
            .saturating_add(self.write)
            .saturating_add(self.fsync)
            .saturating_add(self.io)
    }

    /// `fsync` lines per call, when every one of them says its call.
    pub fn sync_calls(&self) -> Option<[u64; SYNC_CALLS]> {
        let c = self.sync_by_call.to_array();
        (c.iter().sum::<u64>() == self.fsync).then_some(c)
    }
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub start: Option<SessionStart>,
    pub end: Option<SessionEnd>,
    pub last_sample: Option<Sample>,
    pub samples: u64,
    /// Sums of the samples' interval `write_bytes` and `disk_bytes`.
    pub sampled_write_bytes: u64,
    pub sampled_disk_bytes: u64,
    /// `None` once the detail is dropped (not among the [`DETAIL_SESSIONS`] largest).
    pub timeline: Option<Timeline>,
    /// Log2 histogram of `cow.timeline_pages` (pages per bucket), from `session_end`.
    pub cow_per_bucket: Vec<(u64, u64)>,
    pub events: EventCounts,
    pub(super) live: Option<Box<LiveHists>>,
    pub hists: Option<EventHists>,
    /// Event lines that came after the session's end (not in its histograms).
    pub late_events: u64,
    /// False while the session is known from event lines only.
    pub(super) confirmed: bool,
}

impl Session {
    pub(super) fn new(id: u64, confirmed: bool) -> Self {
        Self {
            confirmed,
            id,
            start: None,
            end: None,
            last_sample: None,
            samples: 0,
            sampled_write_bytes: 0,
            sampled_disk_bytes: 0,
            timeline: Some(Timeline::new(TIMELINE_ROWS)),
            cow_per_bucket: Vec::new(),
            events: EventCounts::default(),
            live: None,
            hists: None,
            late_events: 0,
        }
    }

    /// COW bytes: final from `session_end`, else the last sample's.
    pub fn cow_bytes(&self) -> u64 {
        match (&self.end, &self.last_sample) {
            (Some(e), _) => e.cow.bytes,
            (None, Some(s)) => s.cow_bytes,
            (None, None) => 0,
        }
    }

    /// The kind from `session_end`, else `session_start`; `?` when neither knows it.
    pub fn kind(&self) -> &'static str {
        match (&self.end, &self.start) {
            (Some(e), _) if e.kind != SessionKind::Unknown => e.kind.as_str(),
            (_, Some(s)) => s.kind.as_str(),
            _ => SessionKind::Unknown.as_str(),
        }
    }

    /// The server's name from the session's lines; `pid N` of the parent for a trace
    /// written before names existed; `?` when nothing is known.
    pub fn instance(&self) -> String {
        let named = [
            self.end.as_ref().and_then(|e| e.instance.as_deref()),
            self.start.as_ref().and_then(|s| s.instance.as_deref()),
            self.last_sample
                .as_ref()
                .and_then(|s| s.instance.as_deref()),
        ];
        match (named.into_iter().flatten().next(), self.pids().0) {
            (Some(n), _) => n.to_string(),
            (None, Some(p)) => format!("pid {p}"),
            (None, None) => "?".into(),
        }
    }

    /// What the session did before cowtrace attached, if it attached mid-save.
    pub fn mid_save(&self) -> Option<&MidSave> {
        self.end
            .as_ref()
            .and_then(|e| e.attached_mid_save.as_ref())
            .or(self
                .start
                .as_ref()
                .and_then(|s| s.attached_mid_save.as_ref()))
    }

    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        match (&self.end, &self.start) {
            (Some(e), _) => (Some(e.parent_pid), Some(e.child_pid)),
            (None, Some(s)) => (Some(s.parent_pid), Some(s.child_pid)),
            (None, None) => (None, None),
        }
    }

    pub fn detailed(&self) -> bool {
        self.timeline.is_some()
    }

    pub(super) fn freeze_hists(&mut self) {
        if let Some(h) = self.live.take() {
            self.hists = Some(EventHists {
                write_latency_us: HistSummary::of(&h.write_lat_us),
                write_size_bytes: HistSummary::of(&h.write_size),
                fsync_latency_us: HistSummary::of(&h.fsync_lat_us),
                sync_latency_us: SyncHists {
                    fsync: HistSummary::of(&h.sync_lat_us[0]),
                    fdatasync: HistSummary::of(&h.sync_lat_us[1]),
                    sync_file_range: HistSummary::of(&h.sync_lat_us[2]),
                },
                disk_latency_us: HistSummary::of(&h.disk_lat_us),
            });
        }
    }

    pub(super) fn drop_detail(&mut self) {
        self.timeline = None;
        self.cow_per_bucket = Vec::new();
        if let Some(h) = &mut self.hists {
            let [a, b, c] = h.sync_latency_us.each_mut();
            for s in [
                &mut h.write_latency_us,
                &mut h.write_size_bytes,
                &mut h.fsync_latency_us,
                &mut h.disk_latency_us,
                a,
                b,
                c,
            ] {
                s.log2 = Vec::new();
            }
        }
    }
}
