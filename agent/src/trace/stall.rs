//! The trace's records of stalled saves and slow forks (issue 15, item 4): additive
//! fields of `sample`, `session_start` and `session_end`, re-exported by `schema`.
use serde::{Deserialize, Serialize};

/// A save child that has made no write progress (no byte written to a file, a pipe or a
/// socket) for at least `threshold_ms`, with what /proc said about it at this look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stall {
    /// How long the child has gone without write progress so far.
    pub for_ms: u64,
    /// The threshold in force (`--stall SECONDS`).
    #[serde(default)]
    pub threshold_ms: u64,
    /// The child's state letter from `/proc/PID/stat` (`R`, `S`, `D`, `T`, `t`, `Z`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The same in words (`stopped (by a signal)`, `waiting on I/O (uninterruptible)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_name: Option<String>,
    /// `/proc/PID/wchan`: the kernel function it sleeps in, when it sleeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
    /// The system call it is in, from `/proc/PID/syscall` (`fsync`, `write`, or `nr 230`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
}

/// The stalls of one session: how many, and the longest as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StallSummary {
    /// Distinct stretches without progress that reached the threshold.
    pub count: u64,
    /// The longest of them, with the child's state at its last look.
    pub longest: Stall,
}

/// A fork that blocked its server longer than `threshold_ms_per_gib` per GiB of RSS.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlowFork {
    pub fork_us: f64,
    /// The parent's RSS at the fork.
    pub rss_bytes: u64,
    /// The fork's time per GiB of that RSS.
    pub ms_per_gib: f64,
    /// The rule's threshold (`--slow-fork MS`, 10 by default).
    pub threshold_ms_per_gib: f64,
    /// The parent's page tables (`VmPTE` in `/proc/PID/status`), which fork copies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_pte_bytes: Option<u64>,
    /// The host's THP mode at the fork.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thp: Option<String>,
}
