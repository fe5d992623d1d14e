//! The trace's lines as a reader sees them (format: docs/trace-format.md).
//!
//! These mirror the writer's types in `record.rs` but are the reader's own: a reader of a
//! versioned format must take traces written by older and newer cowtraces of the same
//! major version. So every field that a version-1 trace may lack (it was added later) has
//! a default, unknown fields are ignored (serde's default), and unknown line types are
//! skipped by the caller. Only the identity of a line (its `session` number) is required.
use serde::{Deserialize, Serialize};

use crate::{
    classify::SessionKind,
    files::FileRow,
    hist::Quantiles,
    record::{CowSummary, DiskSummary, FsyncSummary, SessionEnd, WritesSummary},
};

/// The first line. `format` and `version` are checked by the reader before this is parsed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct MetaLine {
    pub format: String,
    pub version: u64,
    pub cowtrace_version: String,
    pub host: String,
    pub kernel: String,
    pub attach: AttachLine,
    pub targets: String,
    pub pids: Vec<u32>,
    pub start_unix_ms: Option<u64>,
    pub start_ts_ns: Option<u64>,
    pub interval_ms: Option<u64>,
    pub page_size: Option<u64>,
    pub thp: Option<String>,
    pub overcommit_memory: Option<u32>,
}

/// Only the hook family is shown; the other `attach` fields are kept in the trace.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct AttachLine {
    pub method: Option<String>,
    pub cow: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SessionStartLine {
    pub session: u64,
    #[serde(default)]
    pub parent_pid: u32,
    #[serde(default)]
    pub child_pid: u32,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub fork_us: Option<f64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub parent_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct SampleLine {
    pub session: u64,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    #[serde(default)]
    pub cow_pages: u64,
    #[serde(default)]
    pub cow_bytes: u64,
    #[serde(default)]
    pub parent_pages: u64,
    #[serde(default)]
    pub child_pages: u64,
    #[serde(default)]
    pub cow_pages_delta: u64,
    #[serde(default)]
    pub cow_pages_per_s: f64,
    #[serde(default)]
    pub write_bytes: u64,
    #[serde(default)]
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SessionEndLine {
    pub session: u64,
    #[serde(default)]
    pub parent_pid: u32,
    #[serde(default)]
    pub child_pid: u32,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub exit_signal: Option<i32>,
    #[serde(default = "yes")]
    pub complete: bool,
    #[serde(default)]
    pub cow: CowLine,
    #[serde(default)]
    pub writes: WritesLine,
    #[serde(default)]
    pub fsync: FsyncLine,
    #[serde(default)]
    pub disk: DiskLine,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct QuantilesLine {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl QuantilesLine {
    fn to_quantiles(&self) -> Quantiles {
        Quantiles {
            count: self.count,
            p50: self.p50,
            p90: self.p90,
            p99: self.p99,
            max: self.max,
        }
    }
}

impl From<Quantiles> for QuantilesLine {
    fn from(q: Quantiles) -> Self {
        Self {
            count: q.count,
            p50: q.p50,
            p90: q.p90,
            p99: q.p99,
            max: q.max,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct CowLine {
    pub pages: u64,
    pub bytes: u64,
    pub parent_pages: u64,
    pub child_pages: u64,
    pub parent_bytes: u64,
    pub child_bytes: u64,
    pub copies_4k: u64,
    pub copies_2m: u64,
    pub copies_other: u64,
    pub reuse_faults: u64,
    pub parent_reuse_faults: u64,
    pub child_reuse_faults: u64,
    pub zero_fills: u64,
    pub wp_faults: u64,
    pub parent_rss_at_fork_bytes: Option<u64>,
    pub pct_of_parent_rss: Option<f64>,
    pub peak_pages_per_s: f64,
    pub peak_at_ms: u64,
    pub timeline_bucket_ms: u64,
    /// Folded into a histogram and emptied as soon as the line is read (it may hold
    /// 4096 buckets), so it is not part of `report --json`.
    #[serde(skip_serializing)]
    pub timeline_pages: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FileLine {
    pub path: String,
    pub renamed_to: Option<String>,
    pub bytes: u64,
    pub calls: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct WritesLine {
    pub calls: u64,
    pub bytes: u64,
    pub files: Vec<FileLine>,
    pub latency_us: QuantilesLine,
    pub size_bytes: QuantilesLine,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct FsyncLine {
    pub calls: u64,
    pub total_ms: f64,
    pub latency_us: QuantilesLine,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct DiskLine {
    pub bytes: u64,
    pub ios: u64,
    pub latency_us: QuantilesLine,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct ProcessLine {
    pub pid: u32,
    #[serde(default)]
    pub comm: String,
    #[serde(default)]
    pub exited: bool,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub cow: ProcessCowLine,
    #[serde(default)]
    pub io: ProcessIoLine,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProcessCowLine {
    pub pages: u64,
    pub bytes: u64,
    pub copies_4k: u64,
    pub copies_2m: u64,
    pub copies_other: u64,
    pub reuse_faults: u64,
    pub zero_fills: u64,
    pub wp_faults: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct ProcessIoLine {
    pub write_calls: u64,
    pub write_bytes: u64,
    pub fsync_calls: u64,
    pub disk_ios: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct EndLine {
    pub sessions: u64,
    pub lost_events: u64,
    pub lost_cow_events: u64,
    pub lost_session_events: u64,
    pub decode_errors: u64,
    pub ts_ns: u64,
    pub duration_ms: u64,
    pub reason: String,
}

/// A `cow` line (`record --events`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CowEventLine {
    pub session: Option<u64>,
    pub ts_ns: u64,
    pub order: u32,
    pub side: String,
}

/// A `write`, `fsync` or `io` line (`record --events`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct IoEventLine {
    pub session: Option<u64>,
    pub ts_ns: u64,
    pub bytes: u64,
    pub latency_us: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    Write,
    Fsync,
    Io,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq)]
pub enum TraceLine {
    /// A second `meta` line: another trace starts here (files concatenated).
    Meta(Box<MetaLine>),
    SessionStart(SessionStartLine),
    Sample(SampleLine),
    SessionEnd(Box<SessionEndLine>),
    Process(Box<ProcessLine>),
    End(EndLine),
    Cow(CowEventLine),
    Io(IoKind, IoEventLine),
    /// A line type this reader does not know (from a newer cowtrace): skipped.
    Unknown(String),
}

/// The writer's kind names; `None` for a kind this reader does not know.
pub fn session_kind(s: &str) -> Option<SessionKind> {
    [
        SessionKind::RdbBgsave,
        SessionKind::AofRewrite,
        SessionKind::RdbReplica,
        SessionKind::Fork,
    ]
    .into_iter()
    .find(|k| k.as_str() == s)
}

impl SessionEndLine {
    /// The writer's type, for the shared diagnosis. An unknown kind is described as a
    /// plain fork (the report prints the kind as written in the trace elsewhere).
    pub fn to_record(&self) -> SessionEnd {
        let c = &self.cow;
        SessionEnd {
            session: self.session,
            parent_pid: self.parent_pid,
            child_pid: self.child_pid,
            kind: session_kind(&self.kind).unwrap_or(SessionKind::Fork),
            ts_ns: self.ts_ns,
            duration_ms: self.duration_ms,
            exit_code: self.exit_code,
            exit_signal: self.exit_signal,
            complete: self.complete,
            cow: CowSummary {
                pages: c.pages,
                bytes: c.bytes,
                parent_pages: c.parent_pages,
                child_pages: c.child_pages,
                parent_bytes: c.parent_bytes,
                child_bytes: c.child_bytes,
                copies_4k: c.copies_4k,
                copies_2m: c.copies_2m,
                copies_other: c.copies_other,
                reuse_faults: c.reuse_faults,
                parent_reuse_faults: c.parent_reuse_faults,
                child_reuse_faults: c.child_reuse_faults,
                zero_fills: c.zero_fills,
                wp_faults: c.wp_faults,
                parent_rss_at_fork_bytes: c.parent_rss_at_fork_bytes,
                pct_of_parent_rss: c.pct_of_parent_rss,
                peak_pages_per_s: c.peak_pages_per_s,
                peak_at_ms: c.peak_at_ms,
                timeline_bucket_ms: c.timeline_bucket_ms,
                timeline_pages: Vec::new(),
            },
            writes: WritesSummary {
                calls: self.writes.calls,
                bytes: self.writes.bytes,
                files: self
                    .writes
                    .files
                    .iter()
                    .map(|f| FileRow {
                        path: f.path.clone(),
                        renamed_to: f.renamed_to.clone(),
                        bytes: f.bytes,
                        calls: f.calls,
                    })
                    .collect(),
                latency_us: self.writes.latency_us.to_quantiles(),
                size_bytes: self.writes.size_bytes.to_quantiles(),
            },
            fsync: FsyncSummary {
                calls: self.fsync.calls,
                total_ms: self.fsync.total_ms,
                latency_us: self.fsync.latency_us.to_quantiles(),
            },
            disk: DiskSummary {
                bytes: self.disk.bytes,
                ios: self.disk.ios,
                latency_us: self.disk.latency_us.to_quantiles(),
            },
        }
    }
}
