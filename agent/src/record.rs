//! The JSON Lines records cowtrace writes (format documented in docs/trace-format.md).
//! Adding fields is free; renaming or removing one bumps [`FORMAT_VERSION`].
use agent_common::{CowCounters, IoCounters};
use serde::Serialize;

use crate::{classify::SessionKind, files::FileRow, hist::Quantiles, timeline::Timeline};

pub const FORMAT_NAME: &str = "cowtrace";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Meta(Meta),
    SessionStart(SessionStart),
    Sample(Sample),
    SessionEnd(SessionEnd),
    Process(ProcessRecord),
    End(End),
}

/// Totals of one traced Redis process (or `-p` target) over the whole run, inside
/// sessions or not; written when it exits or when the run ends.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessRecord {
    pub pid: u32,
    pub comm: String,
    pub exited: bool,
    pub ts_ns: u64,
    pub cow: ProcessCow,
    pub io: ProcessIo,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessCow {
    pub pages: u64,
    pub bytes: u64,
    pub copies_4k: u64,
    pub copies_2m: u64,
    pub copies_other: u64,
    pub reuse_faults: u64,
    pub zero_fills: u64,
    pub wp_faults: u64,
}

impl From<&CowCounters> for ProcessCow {
    fn from(c: &CowCounters) -> Self {
        Self {
            pages: c.copy_bytes / 4096,
            bytes: c.copy_bytes,
            copies_4k: c.copies_4k,
            copies_2m: c.copies_2m,
            copies_other: c.copies_other,
            reuse_faults: c.reuses(),
            zero_fills: c.zero_fills,
            wp_faults: c.wp_faults,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub format: &'static str,
    pub version: u32,
    pub cowtrace_version: &'static str,
    pub host: String,
    pub kernel: String,
    /// Which hook carries each measurement on this host.
    pub attach: Attach,
    /// `auto` (every redis-server/valkey-server) or `pids`.
    pub targets: &'static str,
    pub pids: Vec<u32>,
    /// Wall-clock and CLOCK_MONOTONIC time at start, to convert `ts_ns` fields.
    pub start_unix_ms: u64,
    pub start_ts_ns: u64,
    pub interval_ms: u64,
    pub page_size: u64,
    /// Transparent huge pages mode and `vm.overcommit_memory` (for the diagnosis).
    pub thp: Option<String>,
    pub overcommit_memory: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attach {
    pub method: &'static str,
    pub fork: &'static str,
    pub exit: &'static str,
    pub fork_latency: &'static str,
    pub cow: &'static str,
    pub writes: &'static str,
    pub disk: &'static str,
    /// Optional precise paths that were probed, and what the kernel said.
    pub fentry: String,
    pub kprobe: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionStart {
    pub session: u64,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub kind: SessionKind,
    pub ts_ns: u64,
    pub fork_us: Option<f64>,
    pub title: Option<String>,
    pub parent_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub session: u64,
    pub ts_ns: u64,
    pub elapsed_ms: u64,
    /// Cumulative copies so far, in 4 KiB pages and bytes.
    pub cow_pages: u64,
    pub cow_bytes: u64,
    pub parent_pages: u64,
    pub child_pages: u64,
    /// Pages copied since the previous sample of this session, and the rate.
    pub cow_pages_delta: u64,
    pub cow_pages_per_s: f64,
    /// Bytes the child wrote to files, and block I/O bytes of those files, in the
    /// interval since the previous sample.
    pub write_bytes: u64,
    pub disk_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionEnd {
    pub session: u64,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub kind: SessionKind,
    pub ts_ns: u64,
    pub duration_ms: u64,
    pub exit_code: Option<i32>,
    pub exit_signal: Option<i32>,
    /// False when the trace ended while the child was still running.
    pub complete: bool,
    pub cow: CowSummary,
    pub writes: WritesSummary,
    pub fsync: FsyncSummary,
    pub disk: DiskSummary,
}

/// The child's writes to regular files (sockets and pipes are not counted).
/// `calls` and `bytes` are exact (kernel counters); the histograms come from events.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WritesSummary {
    pub calls: u64,
    pub bytes: u64,
    pub files: Vec<FileRow>,
    pub latency_us: Quantiles,
    pub size_bytes: Quantiles,
}

/// fsync, fdatasync and sync_file_range calls of the child.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FsyncSummary {
    pub calls: u64,
    pub total_ms: f64,
    pub latency_us: Quantiles,
}

/// Block requests carrying pages of the files the child wrote, whoever issued them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiskSummary {
    pub bytes: u64,
    pub ios: u64,
    pub latency_us: Quantiles,
}

/// Regular-file I/O totals of a process.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessIo {
    pub write_calls: u64,
    pub write_bytes: u64,
    pub fsync_calls: u64,
    pub disk_ios: u64,
    pub disk_bytes: u64,
}

impl From<&IoCounters> for ProcessIo {
    fn from(c: &IoCounters) -> Self {
        Self {
            write_calls: c.write_calls,
            write_bytes: c.write_bytes,
            fsync_calls: c.fsync_calls,
            disk_ios: c.disk_ios,
            disk_bytes: c.disk_bytes,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CowSummary {
    /// Copies, in 4 KiB pages and bytes (a 2 MiB copy is 512 pages).
    pub pages: u64,
    pub bytes: u64,
    pub parent_pages: u64,
    pub child_pages: u64,
    pub parent_bytes: u64,
    pub child_bytes: u64,
    /// Copy events by size of the new page.
    pub copies_4k: u64,
    pub copies_2m: u64,
    pub copies_other: u64,
    /// Write faults on pages that were already exclusive: no copy was needed.
    pub reuse_faults: u64,
    pub parent_reuse_faults: u64,
    pub child_reuse_faults: u64,
    /// Writes to never-written memory backed by the shared zero page.
    pub zero_fills: u64,
    pub wp_faults: u64,
    pub parent_rss_at_fork_bytes: Option<u64>,
    /// `bytes` as a percentage of the parent's RSS at fork time.
    pub pct_of_parent_rss: Option<f64>,
    /// Busiest timeline bucket, as pages per second, and when (ms after the fork).
    pub peak_pages_per_s: f64,
    pub peak_at_ms: u64,
    pub timeline_bucket_ms: u64,
    /// Pages copied in each bucket since the fork.
    pub timeline_pages: Vec<u64>,
}

impl CowSummary {
    pub fn new(parent: &CowCounters, child: &CowCounters, rss: Option<u64>, t: &Timeline) -> Self {
        let pages = |c: &CowCounters| c.copy_bytes / 4096;
        let bytes = parent.copy_bytes + child.copy_bytes;
        let (peak, peak_at) = t.peak();
        Self {
            pages: pages(parent) + pages(child),
            bytes,
            parent_pages: pages(parent),
            child_pages: pages(child),
            parent_bytes: parent.copy_bytes,
            child_bytes: child.copy_bytes,
            copies_4k: parent.copies_4k + child.copies_4k,
            copies_2m: parent.copies_2m + child.copies_2m,
            copies_other: parent.copies_other + child.copies_other,
            reuse_faults: parent.reuses() + child.reuses(),
            parent_reuse_faults: parent.reuses(),
            child_reuse_faults: child.reuses(),
            zero_fills: parent.zero_fills + child.zero_fills,
            wp_faults: parent.wp_faults + child.wp_faults,
            parent_rss_at_fork_bytes: rss,
            pct_of_parent_rss: rss
                .filter(|&r| r > 0)
                .map(|r| (bytes as f64 * 1000.0 / r as f64).round() / 10.0),
            peak_pages_per_s: peak.round(),
            peak_at_ms: peak_at,
            timeline_bucket_ms: t.bucket_ms(),
            timeline_pages: t.buckets().to_vec(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct End {
    pub sessions: u64,
    /// Events the kernel could not put in a ring buffer (ring full). Totals are exact
    /// regardless; only the per-event detail is lost.
    pub lost_events: u64,
    pub lost_cow_events: u64,
    pub lost_session_events: u64,
    /// Records that failed validation when decoded (should be 0).
    pub decode_errors: u64,
    pub ts_ns: u64,
    pub duration_ms: u64,
    /// Why the run ended: `signal`, `duration`, `targets-exited`, `output-closed`, `error`.
    pub reason: String,
    /// Entries left in the kernel's bounded maps at the end (they must not grow).
    pub maps: MapOccupancy,
    /// The agent's peak RSS (VmHWM).
    pub agent_max_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MapOccupancy {
    pub traced: u64,
    pub sessions: u64,
    pub files: u64,
}

/// One COW copy, written only with `record --events`.
#[derive(Debug, Clone, Serialize)]
pub struct CowEventRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub session: Option<u64>,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub addr: u64,
    pub order: u32,
    pub side: &'static str,
}

/// One write, sync or block request, written only with `record --events`.
#[derive(Debug, Clone, Serialize)]
pub struct IoEventRecord {
    /// `write`, `fsync` or `io` (a block request).
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub session: Option<u64>,
    pub ts_ns: u64,
    pub pid: u32,
    pub bytes: u64,
    pub latency_us: f64,
    pub dev: u32,
    pub ino: u64,
    pub fd: Option<u32>,
}

/// Split a wait(2) status into (exit code, signal).
pub fn split_wait_status(status: i64) -> (Option<i32>, Option<i32>) {
    if status < 0 {
        return (None, None);
    }
    let status = status as i32;
    let sig = status & 0x7f;
    if sig == 0 {
        (Some((status >> 8) & 0xff), None)
    } else {
        (None, Some(sig))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status() {
        assert_eq!(split_wait_status(0), (Some(0), None));
        assert_eq!(split_wait_status(1 << 8), (Some(1), None));
        assert_eq!(split_wait_status(9), (None, Some(9)));
        assert_eq!(split_wait_status(0x80 | 11), (None, Some(11))); // core dumped
        assert_eq!(split_wait_status(-1), (None, None));
    }

    #[test]
    fn summary_splits_parent_and_child() {
        let parent = CowCounters {
            wp_faults: 110,
            copies_4k: 100,
            copy_bytes: 100 * 4096,
            ..Default::default()
        };
        let child = CowCounters {
            wp_faults: 3,
            copies_4k: 1,
            copies_2m: 1,
            copy_bytes: 4096 + (2 << 20),
            zero_fills: 1,
            ..Default::default()
        };
        let mut t = Timeline::new(0);
        t.observe(50_000_000, 613);
        let s = CowSummary::new(&parent, &child, Some(4096 * 1000), &t);
        assert_eq!((s.parent_pages, s.child_pages, s.pages), (100, 513, 613));
        assert_eq!((s.copies_4k, s.copies_2m), (101, 1));
        assert_eq!(
            (s.parent_reuse_faults, s.child_reuse_faults, s.reuse_faults),
            (10, 0, 10)
        );
        assert_eq!(s.zero_fills, 1);
        assert_eq!(s.pct_of_parent_rss, Some(61.3));
        assert_eq!(s.timeline_pages, vec![613]);
        let json = serde_json::to_string(&Record::SessionEnd(SessionEnd {
            session: 1,
            parent_pid: 2,
            child_pid: 3,
            kind: SessionKind::RdbBgsave,
            ts_ns: 4,
            duration_ms: 5,
            exit_code: Some(0),
            exit_signal: None,
            complete: true,
            cow: s,
            writes: WritesSummary {
                calls: 0,
                bytes: 0,
                files: vec![],
                latency_us: Quantiles::default(),
                size_bytes: Quantiles::default(),
            },
            fsync: FsyncSummary {
                calls: 0,
                total_ms: 0.0,
                latency_us: Quantiles::default(),
            },
            disk: DiskSummary {
                bytes: 0,
                ios: 0,
                latency_us: Quantiles::default(),
            },
        }))
        .unwrap();
        assert!(
            json.starts_with(r#"{"type":"session_end","session":1,"#),
            "{json}"
        );
        assert!(json.contains(r#""kind":"rdb-bgsave""#), "{json}");
        assert!(json.contains(r#""exit_signal":null"#), "{json}");
    }
}
