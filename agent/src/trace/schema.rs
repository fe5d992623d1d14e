//! The trace's lines: one serde type per line type, for the writer and the reader alike
//! (format documented in docs/trace-format.md).
//!
//! Adding fields is free; renaming or removing one bumps [`FORMAT_VERSION`]. A reader must
//! take traces written by older and newer cowtraces of the same major version, so every
//! field a version-1 trace may lack has a default (`#[serde(default)]`), unknown fields
//! are ignored (serde's default), unknown line types become [`Record::Unknown`], and an
//! unknown session kind becomes [`SessionKind::Unknown`]. Only the identity of a line (its
//! `session` number, a process's `pid`) is required.
//!
//! This module is the bottom of the agent's layers: it imports nothing from the crate.
use agent_common::{CowCounters, IoCounters, SYNC_CALLS};
use serde::{Deserialize, Serialize};

pub const FORMAT_NAME: &str = "cowtrace";
pub const FORMAT_VERSION: u32 = 1;

/// One line of a trace. The writer serializes it (`type` first); the reader dispatches on
/// `type` and parses the variant's type on its own, so that its errors name the line's
/// type (`trace::reader::parse_line`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Meta(Box<Meta>),
    SessionStart(SessionStart),
    Sample(Sample),
    SessionEnd(Box<SessionEnd>),
    Process(Box<ProcessRecord>),
    End(End),
    /// One COW copy (`record --events`).
    Cow(CowEvent),
    /// One zero fill: a first write to memory backed by the shared zero page, which
    /// allocates a zeroed page but copies nothing (`record --events`).
    ZeroFill(CowEvent),
    /// One write, sync (`fsync`, `fdatasync` or `sync_file_range`: its `call` says
    /// which) or block request (`record --events`).
    Write(IoEvent),
    Fsync(IoEvent),
    Io(IoEvent),
    /// A line type this reader does not know (from a newer cowtrace), by name. Never
    /// written.
    #[serde(skip)]
    Unknown(String),
}

/// The kind of a fork, from the child's process title (`events::classify`), and for
/// `rdb-replica` also from what the server writes to its replicas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SessionKind {
    RdbBgsave,
    AofRewrite,
    RdbReplica,
    /// A module's fork (`RedisModule_Fork` / `ValkeyModule_Fork`; added in 0.1).
    ModuleFork,
    Fork,
    /// Missing from the line, or a kind a newer cowtrace wrote. Never written.
    #[default]
    #[serde(other)]
    Unknown,
}

impl SessionKind {
    /// The name as written in traces; `?` for an unknown kind.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::RdbBgsave => "rdb-bgsave",
            SessionKind::AofRewrite => "aof-rewrite",
            SessionKind::RdbReplica => "rdb-replica",
            SessionKind::ModuleFork => "module-fork",
            SessionKind::Fork => "fork",
            SessionKind::Unknown => "?",
        }
    }

    /// The child's role in prose ("the rdb-bgsave child"); an unknown kind is a fork.
    pub fn child_role(self) -> &'static str {
        match self {
            SessionKind::Unknown => SessionKind::Fork.as_str(),
            k => k.as_str(),
        }
    }
}

impl std::fmt::Display for SessionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Totals of one traced Redis process (or `-p` target) over the whole run, inside
/// sessions or not; written when it exits or when the run ends.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub pid: u32,
    /// The server's name (see [`SessionStart::instance`]).
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub comm: String,
    #[serde(default)]
    pub exited: bool,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub cow: ProcessCow,
    #[serde(default)]
    pub io: ProcessIo,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

/// The first line. `format` and `version` are checked by the reader before it is parsed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Meta {
    pub format: String,
    pub version: u32,
    pub cowtrace_version: String,
    pub host: String,
    pub kernel: String,
    /// Which hook carries each measurement on this host.
    pub attach: Attach,
    /// `auto` (every redis-server/valkey-server) or `pids`.
    pub targets: String,
    pub pids: Vec<u32>,
    /// Wall-clock and CLOCK_MONOTONIC time at start, to convert `ts_ns` fields (always
    /// written; `None` only when read from a trace that lacks them).
    pub start_unix_ms: Option<u64>,
    pub start_ts_ns: Option<u64>,
    pub interval_ms: Option<u64>,
    pub page_size: Option<u64>,
    /// Transparent huge pages mode and `vm.overcommit_memory` (for the diagnosis).
    pub thp: Option<String>,
    pub overcommit_memory: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attach {
    pub method: String,
    pub fork: String,
    pub exit: String,
    pub fork_latency: String,
    pub cow: String,
    pub writes: String,
    pub disk: String,
    /// How a server that daemonizes is followed (added in 0.1; absent in older traces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemonize: Option<String>,
    /// Optional precise paths that were probed, and what the kernel said.
    pub fentry: String,
    pub kprobe: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionStart {
    pub session: u64,
    /// The traced server's name: `host:port` of its lowest listening TCP port (the host
    /// name when it listens on every address), its unix socket's path, or `pid N`.
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub parent_pid: u32,
    #[serde(default)]
    pub child_pid: u32,
    #[serde(default)]
    pub kind: SessionKind,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub fork_us: Option<f64>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub parent_rss_bytes: Option<u64>,
    /// Present when cowtrace started while this child was already running: what it had
    /// done before, estimated. Everything else about the session is counted from then on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_mid_save: Option<MidSave>,
    /// For an `rdb-replica` session: how the RDB goes to the replicas, and to how many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
}

/// A replica's full sync served by a fork (`rdb-replica`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Replication {
    /// `disk`: the child writes the RDB file (`repl-diskless-sync no`), which the server
    /// then sends; `socket`: the child sends the RDB itself, through a pipe to the server
    /// (Redis 7, Valkey) or straight to the replicas' sockets (Valkey's dual-channel
    /// replication): its `sent` bytes.
    pub target: String,
    /// Replicas served: the `+FULLRESYNC` (or, dual-channel, `$ENDOFF`) lines the server
    /// wrote for this fork; null when unknown.
    pub replicas: Option<u64>,
}

/// What a session's child wrote to pipes and sockets rather than to files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SentSummary {
    /// Write calls that wrote something, and their bytes (return values). Exact.
    pub calls: u64,
    pub bytes: u64,
    /// The replicas it sent to (as `replication.replicas`), when it is a replica sync
    /// over sockets; null otherwise.
    pub peers: Option<u64>,
    /// Per pipe or socket, largest first.
    pub targets: Vec<SentTarget>,
}

/// One pipe or socket a session's child wrote to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SentTarget {
    /// `pipe` or `socket`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The inode number (as `/proc/PID/fd` shows it: `pipe:[N]`, `socket:[N]`).
    pub ino: u64,
    /// A socket's protocol (`TCP`, `UNIX`), as the kernel names its file; null for a pipe.
    pub protocol: Option<String>,
    pub bytes: u64,
    pub calls: u64,
}

/// What a session had done before cowtrace attached to it (estimates).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MidSave {
    /// Time the child had run when cowtrace attached.
    pub ran_ms: u64,
    /// COW before the attach: the child's `Private_Dirty` (what Redis reports as
    /// `current_cow_size`), read once from /proc/PID/smaps_rollup.
    pub cow_bytes_estimate: Option<u64>,
    /// Where `cow_bytes_estimate` comes from.
    pub cow_source: String,
    /// Bytes written before the attach: the current size of the regular files the
    /// child had open.
    pub written_bytes_estimate: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub session: u64,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub elapsed_ms: u64,
    /// Cumulative copies so far, in 4 KiB pages and bytes.
    #[serde(default)]
    pub cow_pages: u64,
    #[serde(default)]
    pub cow_bytes: u64,
    #[serde(default)]
    pub parent_pages: u64,
    #[serde(default)]
    pub child_pages: u64,
    /// Pages copied since the previous sample of this session, and the rate.
    #[serde(default)]
    pub cow_pages_delta: u64,
    #[serde(default)]
    pub cow_pages_per_s: f64,
    /// Bytes the child wrote to files, and block I/O bytes of those files, in the
    /// interval since the previous sample.
    #[serde(default)]
    pub write_bytes: u64,
    #[serde(default)]
    pub disk_bytes: u64,
    /// Bytes the child wrote to pipes and sockets in the interval (`session_end.sent`);
    /// absent until it has sent something (added in 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session: u64,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default)]
    pub parent_pid: u32,
    #[serde(default)]
    pub child_pid: u32,
    #[serde(default)]
    pub kind: SessionKind,
    #[serde(default)]
    pub ts_ns: u64,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub exit_signal: Option<i32>,
    /// False when the trace ended while the child was still running.
    #[serde(default = "yes")]
    pub complete: bool,
    #[serde(default)]
    pub cow: CowSummary,
    #[serde(default)]
    pub writes: WritesSummary,
    #[serde(default)]
    pub fsync: FsyncSummary,
    #[serde(default)]
    pub disk: DiskSummary,
    /// Present when cowtrace attached while the child was already running (as in its
    /// `session_start`): `cow` and `writes` count from the attach on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_mid_save: Option<MidSave>,
    /// The child's writes to pipes and sockets (a diskless sync's RDB); absent when it
    /// wrote to none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<SentSummary>,
    /// As in `session_start`, with the replicas counted to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// The server's memory limit and its peak usage while the save ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<SaveMemory>,
    /// Set when the kernel's OOM killer chose the child or the server while it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oom_kill: Option<OomKill>,
    /// An AOF rewrite whose file the server renamed into place after the child exited:
    /// the base file it became, and the manifest written with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aof: Option<AofFiles>,
}

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

impl SessionEnd {
    /// COW including the estimate of what was copied before cowtrace attached.
    pub fn cow_bytes_with_estimate(&self) -> u64 {
        self.cow.bytes.saturating_add(
            self.attached_mid_save
                .as_ref()
                .and_then(|m| m.cow_bytes_estimate)
                .unwrap_or(0),
        )
    }

    /// The server's name, or `pid N` of the parent for a trace without it.
    pub fn instance_name(&self) -> String {
        self.instance
            .clone()
            .unwrap_or_else(|| format!("pid {}", self.parent_pid))
    }
}

fn yes() -> bool {
    true
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
    pub timeline_bucket_ms: u64,
    /// Pages copied in each bucket since the fork. The writer always has at least one
    /// bucket; `report` folds them into a histogram as it reads the line and empties the
    /// vector, so they are not part of `report --json`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline_pages: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct End {
    pub sessions: u64,
    /// Events the kernel could not put in a ring buffer (ring full). Totals are exact
    /// regardless; only the per-event detail is lost.
    pub lost_events: u64,
    /// Of those, events of the detail ring: COW copies, writes, syncs and block requests.
    /// Named `lost_cow_events` in format 1, which is kept (renaming bumps the version).
    #[serde(rename = "lost_cow_events")]
    pub lost_detail_events: u64,
    /// Of those, events of the session ring: forks, exits, titles, renames.
    pub lost_session_events: u64,
    /// Records that failed validation when decoded (should be 0).
    pub decode_errors: u64,
    pub ts_ns: u64,
    pub duration_ms: u64,
    /// Why the run ended ([`StopReason::as_str`]): `signal`, `quit`, `duration`,
    /// `targets-exited`, `output-closed`, `error`.
    pub reason: String,
    /// Entries left in the kernel's bounded maps at the end (they must not grow).
    pub maps: MapOccupancy,
    /// The agent's peak RSS (VmHWM).
    pub agent_max_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MapOccupancy {
    pub traced: u64,
    pub sessions: u64,
    pub files: u64,
}

/// Which side of a session made a copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Child,
    /// The traced server (also what an unknown side is read as).
    #[default]
    #[serde(other)]
    Parent,
}

/// One COW copy (a `cow` line) or one zero fill (a `zero_fill` line), written only with
/// `record --events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CowEvent {
    pub session: Option<u64>,
    pub ts_ns: u64,
    pub pid: u32,
    pub tid: u32,
    pub addr: u64,
    pub order: u32,
    pub side: Side,
}

/// One write, sync or block request (the line's `type` says which), written only with
/// `record --events`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IoEvent {
    pub session: Option<u64>,
    pub ts_ns: u64,
    pub pid: u32,
    pub bytes: u64,
    pub latency_us: f64,
    pub dev: u32,
    pub ino: u64,
    pub fd: Option<u32>,
    /// Which sync call an `fsync` line is; absent on other lines, and on `fsync` lines of
    /// traces written before the calls were told apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<SyncCall>,
}

/// Why a run ended: the `end` line's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT, SIGTERM, SIGHUP, or Ctrl-C in the live view.
    Signal,
    /// `q` in the live view.
    Quit,
    /// `-d` elapsed.
    Duration,
    /// Every `-p` target and its sessions are gone.
    TargetsExited,
    /// The trace's or the lines' reader went away (`| head`).
    OutputClosed,
    /// An error stopped the run (it is reported after the trace is ended).
    Error,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Signal => "signal",
            StopReason::Quit => "quit",
            StopReason::Duration => "duration",
            StopReason::TargetsExited => "targets-exited",
            StopReason::OutputClosed => "output-closed",
            StopReason::Error => "error",
        }
    }
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
    fn kinds_round_trip_and_unknown_kinds_are_read() {
        for k in [
            SessionKind::RdbBgsave,
            SessionKind::AofRewrite,
            SessionKind::RdbReplica,
            SessionKind::ModuleFork,
            SessionKind::Fork,
        ] {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<SessionKind>(&json).unwrap(), k);
        }
        let k: SessionKind = serde_json::from_str("\"module\"").unwrap();
        assert_eq!(
            (k, k.as_str(), k.child_role()),
            (SessionKind::Unknown, "?", "fork")
        );
    }

    #[test]
    fn session_end_is_written_type_first() {
        let json = serde_json::to_string(&Record::SessionEnd(Box::new(SessionEnd {
            session: 1,
            parent_pid: 2,
            child_pid: 3,
            kind: SessionKind::RdbBgsave,
            complete: true,
            cow: CowSummary {
                timeline_pages: vec![1],
                ..Default::default()
            },
            ..Default::default()
        })))
        .unwrap();
        assert!(
            json.starts_with(r#"{"type":"session_end","session":1,"#),
            "{json}"
        );
        assert!(json.contains(r#""kind":"rdb-bgsave""#), "{json}");
        assert!(json.contains(r#""exit_signal":null"#), "{json}");
        assert!(json.contains(r#""timeline_pages":[1]"#), "{json}");
        // The format-1 name of the detail ring's losses.
        let end = serde_json::to_string(&Record::End(End::default())).unwrap();
        assert!(end.contains(r#""lost_cow_events":0"#), "{end}");
    }
}
