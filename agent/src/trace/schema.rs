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
use std::collections::BTreeMap;

use agent_common::CowCounters;
use serde::{Deserialize, Serialize};

pub use super::ledger::*;
pub use super::stall::*;

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
    /// What the writing cowtrace was built from, as `cowtrace --version` says it.
    /// Absent (None) in traces written before it was added.
    pub build: Option<Build>,
}

/// `meta.build`: the writer's build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Build {
    /// `git rev-parse HEAD` of the source, or `unknown`.
    pub commit: String,
    /// Build date, RFC 3339 UTC (`SOURCE_DATE_EPOCH` when the build set it).
    pub date: String,
    /// SHA-256 (hex, 64 digits) of the embedded eBPF object.
    pub bpf_object_sha256: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attach {
    /// The COW hook family (`tracepoint`: BTF tracepoints on every kernel).
    pub method: String,
    pub fork: String,
    pub exit: String,
    /// The hooks of each measurement that has a fentry and a tracepoint path
    /// (kernel/hooks.rs): the fentry hooks, or the tracepoints and why they are used.
    pub fork_latency: String,
    pub cow: String,
    pub writes: String,
    /// Sync calls, renames and exit titles: in `writes` in traces written before they
    /// got their own field (empty there).
    pub syncs: String,
    pub renames: String,
    pub titles: String,
    pub disk: String,
    /// How a server that daemonizes is followed (added in 0.1; absent in older traces).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemonize: Option<String>,
    /// What the fentry path carries on this host, or why nothing.
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
    /// Present when the fork was slow for the server's RSS (issue 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_fork: Option<SlowFork>,
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
    /// The save's projected peak memory against the server's limit
    /// (`events::projection`), when its memory is known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<Projection>,
    /// Bytes the child wrote to pipes and sockets in the interval (`session_end.sent`);
    /// absent until it has sent something (added in 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_bytes: Option<u64>,
    /// Present while the child has made no write progress for the stall threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<Stall>,
}

/// A running save's projected peak memory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Projection {
    /// Usage now plus the copies still to come.
    pub peak_bytes: u64,
    pub limit_bytes: u64,
    pub pct_of_limit: f64,
    /// Time the save has left, from its write progress against the last save's output;
    /// None when unknown (then the peak is the worst case).
    pub seconds_left: Option<f64>,
    /// `last save's output`, or `worst case: all of the RSS at fork copied`.
    pub basis: String,
}

/// How good the projection made at 30% of the save was (on `session_end`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectionCheck {
    /// When that projection was made, ms after the fork.
    pub at_ms: u64,
    pub projected_peak_bytes: u64,
    pub actual_peak_bytes: u64,
    /// (projected - actual) / actual, in percent.
    pub error_pct: f64,
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
    /// The projection made at 30% of the save against the actual peak.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection_check: Option<ProjectionCheck>,
    /// An AOF rewrite whose file the server renamed into place after the child exited:
    /// the base file it became, and the manifest written with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aof: Option<AofFiles>,
    /// The parent's copies by cause and by memory region (issue 15; additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causes: Option<Causes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Regions>,
    /// The stretches without write progress that reached the stall threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stall: Option<StallSummary>,
    /// The same as `session_start.slow_fork`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_fork: Option<SlowFork>,
    /// What the session cost the server's main thread: its COW time (an estimate on the
    /// tracepoint path) and the fork's block (issue 15 item 5; additive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main_thread: Option<MainThread>,
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
    /// Kernel-side failures by kind, only those that happened: failed inserts into a
    /// kernel map, by map name (`SESSIONS`: a fork that is no session; `TRACED`: a
    /// process not traced; `PENDING`: copies not counted). Absent when there were none
    /// (and in traces older than it).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kernel_errors: BTreeMap<String, u64>,
}

impl End {
    /// Every kernel-side failure of the run.
    pub fn kernel_errors_total(&self) -> u64 {
        self.kernel_errors.values().sum()
    }
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
