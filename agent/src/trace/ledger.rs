//! The ledger lines of `session_end` and `process`: what a session copied, wrote, synced
//! and sent, its memory, an OOM kill, the projection's check, the AOF's final file, and a
//! process's totals. Split from `schema.rs`, which re-exports every type here.
use agent_common::{IoCounters, SYNC_CALLS};
use serde::{Deserialize, Serialize};

/// Where an AOF rewrite's output ended up: the server (the parent) renames the child's
/// `temp-rewriteaof-bg-PID.aof` to the new base file in `appendonlydir/` (Redis 7, Valkey)
/// and writes a new manifest naming it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AofFiles {
    /// The base file's path (the child's file, renamed by the parent).
    pub base: String,
    /// The manifest the parent renamed into place after it, when it did (Redis 7's
    /// multi-part AOF; older servers rename the file to `appendonly.aof` and write none).
    pub manifest: Option<String>,
}

/// A process of a session that the kernel's OOM killer chose (`oom:mark_victim`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OomKill {
    /// `child` (the save) or `parent` (the server).
    pub side: String,
    pub pid: u32,
    /// The victim's RSS when it was chosen (anon + file + shmem; 0 when the kernel's
    /// record does not carry it, before 6.8).
    pub rss_bytes: u64,
    /// The session's COW (with the estimate before an attach mid-save): a killed child
    /// copies nothing more, so it is its COW when it was killed.
    pub cow_bytes: u64,
}

/// The memory the traced server may use (its cgroup's limit, else the host's memory)
/// and what it used while the save ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SaveMemory {
    /// `cgroup v1`, `cgroup v2`, or `host` when no cgroup limit is set.
    pub source: String,
    /// The cgroup's path, as /proc/PID/cgroup names it.
    pub cgroup: Option<String>,
    pub limit_bytes: u64,
    /// Usage when the save started, and the highest while it ran: the cgroup's own
    /// high-water mark when the save raised it (exact), else the highest of the samples
    /// taken every 100 ms (a shorter spike can be missed).
    pub at_fork_bytes: u64,
    pub peak_bytes: u64,
    /// The container (runtime and short id, or its name when the runtime tells it) and
    /// the Kubernetes pod's UID, from the cgroup path.
    pub container: Option<String>,
    pub container_id: Option<String>,
    pub pod_uid: Option<String>,
}

impl SaveMemory {
    /// Peak usage as a percentage of the limit.
    pub fn peak_pct(&self) -> Option<f64> {
        (self.limit_bytes > 0).then(|| self.peak_bytes as f64 * 100.0 / self.limit_bytes as f64)
    }
}

/// A file a session's child wrote (`events::files` names it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FileRow {
    pub path: String,
    pub renamed_to: Option<String>,
    pub bytes: u64,
    pub calls: u64,
}

/// Quantiles of a histogram (`events::hist::Hist::quantiles`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Quantiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// The child's writes to regular files (sockets and pipes are not counted).
/// `calls` and `bytes` are exact (kernel counters); the histograms come from events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct WritesSummary {
    pub calls: u64,
    pub bytes: u64,
    pub files: Vec<FileRow>,
    pub latency_us: Quantiles,
    pub size_bytes: Quantiles,
}

/// The child's sync calls: `calls`, `total_ms` and `latency_us` cover `fsync`,
/// `fdatasync` and `sync_file_range` together (as format 1 first wrote them), and
/// `by_call` splits them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FsyncSummary {
    pub calls: u64,
    pub total_ms: f64,
    pub latency_us: Quantiles,
    /// Per call; absent (None) in traces written before the calls were told apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by_call: Option<SyncByCall>,
}

impl FsyncSummary {
    /// Calls per kind, in [`SyncCall::ALL`] order, when the trace tells them apart.
    pub fn calls_by_call(&self) -> Option<[u64; SYNC_CALLS]> {
        self.by_call.as_ref().map(SyncByCall::calls)
    }
}

/// A sync system call. `fsync` and `fdatasync` wait for the disk; `sync_file_range`
/// (Redis's `rdb-save-incremental-fsync`) starts writeback and returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncCall {
    Fsync,
    Fdatasync,
    SyncFileRange,
    /// A call a newer cowtrace wrote. Never written.
    #[serde(other)]
    Unknown,
}

impl SyncCall {
    /// The calls told apart, in the order of `IoCounters::sync_calls` (`SYNC_FSYNC`,
    /// `SYNC_FDATASYNC`, `SYNC_FILE_RANGE`).
    pub const ALL: [SyncCall; SYNC_CALLS] = [
        SyncCall::Fsync,
        SyncCall::Fdatasync,
        SyncCall::SyncFileRange,
    ];

    /// The system call's name, as written in traces; `?` for an unknown call.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncCall::Fsync => "fsync",
            SyncCall::Fdatasync => "fdatasync",
            SyncCall::SyncFileRange => "sync_file_range",
            SyncCall::Unknown => "?",
        }
    }

    /// The index into [`SyncCall::ALL`] and the kernel's per-call counters.
    pub fn index(self) -> Option<usize> {
        Self::ALL.iter().position(|&c| c == self)
    }
}

/// One sync call's share of [`FsyncSummary`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncCallSummary {
    pub calls: u64,
    pub total_ms: f64,
    pub latency_us: Quantiles,
}

/// [`FsyncSummary`] per call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncByCall {
    pub fsync: SyncCallSummary,
    pub fdatasync: SyncCallSummary,
    pub sync_file_range: SyncCallSummary,
}

impl SyncByCall {
    /// The calls' summaries in [`SyncCall::ALL`] order.
    pub fn each(&self) -> [(SyncCall, &SyncCallSummary); SYNC_CALLS] {
        [
            (SyncCall::Fsync, &self.fsync),
            (SyncCall::Fdatasync, &self.fdatasync),
            (SyncCall::SyncFileRange, &self.sync_file_range),
        ]
    }

    pub fn calls(&self) -> [u64; SYNC_CALLS] {
        self.each().map(|(_, s)| s.calls)
    }
}

/// Sync calls counted per call (`process.io.sync_calls`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncCounts {
    pub fsync: u64,
    pub fdatasync: u64,
    pub sync_file_range: u64,
}

impl SyncCounts {
    pub fn of(c: [u64; SYNC_CALLS]) -> Self {
        let [fsync, fdatasync, sync_file_range] = c;
        Self {
            fsync,
            fdatasync,
            sync_file_range,
        }
    }

    /// The counts in [`SyncCall::ALL`] order.
    pub fn to_array(self) -> [u64; SYNC_CALLS] {
        [self.fsync, self.fdatasync, self.sync_file_range]
    }
}

/// Block requests carrying pages of the files the child wrote, whoever issued them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DiskSummary {
    pub bytes: u64,
    pub ios: u64,
    pub latency_us: Quantiles,
}

/// Regular-file I/O totals of a process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessIo {
    pub write_calls: u64,
    pub write_bytes: u64,
    /// `fsync`, `fdatasync` and `sync_file_range` calls together (format 1's name).
    pub fsync_calls: u64,
    /// The same per call; absent (None) in traces written before they were told apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_calls: Option<SyncCounts>,
    pub disk_ios: u64,
    pub disk_bytes: u64,
}

impl From<&IoCounters> for ProcessIo {
    fn from(c: &IoCounters) -> Self {
        Self {
            write_calls: c.write_calls,
            write_bytes: c.write_bytes,
            fsync_calls: c.sync_calls_total(),
            sync_calls: Some(SyncCounts::of(c.sync_calls)),
            disk_ios: c.disk_ios,
            disk_bytes: c.disk_bytes,
        }
    }
}

/// A session's copies, built by `events::timeline::Timeline::summary`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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
    /// When 90% of the copies had been made, in ms after the fork (the end of that
    /// timeline bucket); None without copies, or in a trace written before it existed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ninety_pct_at_ms: Option<u64>,
    pub timeline_bucket_ms: u64,
    /// Pages copied in each bucket since the fork. The writer always has at least one
    /// bucket; `report` folds them into a histogram as it reads the line and empties the
    /// vector, so they are not part of `report --json`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline_pages: Vec<u64>,
}

/// A session's parent copies by cause (issue 15): `by_cause` adds up to `copies`, with
/// `other` always last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Causes {
    pub copies: u64,
    pub by_cause: Vec<CauseShare>,
    /// Why commands could not be named (a binary without symbols, probes refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CauseShare {
    /// `SET`, `HSET`, ..., `expiry`, `eviction`, `defrag`, `rehash`, `cron`, `event loop`,
    /// `thread NAME`, `other`.
    pub cause: String,
    /// `command`, `background`, `thread` or `other`.
    pub kind: String,
    pub copies: u64,
    pub share_pct: f64,
}

/// A session's parent copies by memory region of the server's map at fork.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Regions {
    pub copies: u64,
    pub rows: Vec<RegionShare>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegionShare {
    /// `heap`, `anonymous` (the allocator's arenas, thread stacks), `stack`,
    /// `binary data`, `file`, `other`, `unmapped`, `unknown (before the map was read)`.
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub start: u64,
    pub end: u64,
    /// Whether THP may back the range (`null`: THP `madvise`, unknown without smaps).
    pub thp_eligible: Option<bool>,
    pub copies: u64,
    pub share_pct: f64,
}

/// What a session cost the server's main thread (issue 15 item 5): the time it spent in
/// COW faults, and the time the fork blocked it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MainThread {
    /// The parent's copies made by its main thread (tid == tgid): the session's parent
    /// copies less those charged to other threads by the cause split.
    pub copies: u64,
    /// The cost of one copy fault on this host, measured by the agent at start-up (see
    /// `basis`: traced copies, so cowtrace's own cost per copy is in it).
    pub per_copy_ns: u64,
    /// The same without cowtrace (an untraced helper): `per_copy_ns` less this is
    /// cowtrace's own cost per copy. Absent when that measurement failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untraced_per_copy_ns: Option<u64>,
    /// `copies` × `per_copy_ns`, in milliseconds.
    pub cow_ms: f64,
    /// `cow_ms` as a share of the session's duration.
    pub pct_of_save: f64,
    /// Whether `cow_ms` is an estimate (always, on the tracepoint path) or measured.
    pub estimate: bool,
    /// How `per_copy_ns` was obtained, in words.
    pub basis: String,
    /// The time the fork blocked the main thread (`session_start.fork_us`), when measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fork_us: Option<f64>,
}
