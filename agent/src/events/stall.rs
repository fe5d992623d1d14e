//! Stalled saves and slow forks (issue 15, item 4): the rules, pure.
//!
//! A save child *stalls* when it makes no write progress (no byte to a file, a pipe or a
//! socket) for `threshold` (10 s by default, `--stall`); the runner then reads the child's
//! state from /proc. A fork is *slow* when it blocked its server longer than 10 ms per GiB
//! of RSS (`--slow-fork`): the rule, from Redis's latency guide, whose measured
//! forks range from about 10 ms per GB on modern hardware to 239 ms per GB on Xen VMs.
use std::collections::HashMap;

use crate::trace::schema::{SessionKind, Stall, StallSummary};

/// The default stall threshold, in seconds.
pub const DEFAULT_STALL_S: f64 = 10.0;
/// The default slow-fork threshold, in ms per GiB of RSS.
pub const DEFAULT_SLOW_FORK_MS_PER_GIB: f64 = 10.0;

/// Whether a fork of `fork_us` µs for a parent of `rss_bytes` is slow: longer than
/// `ms_per_gib` × its RSS in GiB, counting a server under 1 GiB as 1 GiB (a fork has a
/// fixed cost, so a 100 MiB server forking in 3 ms is not slow). Returns the fork's time
/// per GiB of RSS when it is.
pub fn slow_fork(fork_us: f64, rss_bytes: u64, ms_per_gib: f64) -> Option<f64> {
    if !fork_us.is_finite()
        || fork_us <= 0.0
        || rss_bytes == 0
        || ms_per_gib.is_nan()
        || ms_per_gib <= 0.0
    {
        return None;
    }
    let gib = rss_bytes as f64 / (1u64 << 30) as f64;
    let ms = fork_us / 1000.0;
    (ms > ms_per_gib * gib.max(1.0)).then_some(ms / gib)
}

/// Kinds whose child is expected to keep writing: the saves and replica syncs. A plain
/// or module fork may do anything, so it is not watched.
pub fn watched(kind: SessionKind) -> bool {
    matches!(
        kind,
        SessionKind::RdbBgsave | SessionKind::AofRewrite | SessionKind::RdbReplica
    )
}

#[derive(Debug, Clone)]
struct Watch {
    child_pid: u32,
    last_progress_ns: u64,
    stalled: bool,
    count: u64,
    longest: Option<Stall>,
}

/// What the watch says about a session at one look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled {
    pub child_pid: u32,
    pub for_ms: u64,
    /// The first look of this stall (worth a line of its own).
    pub new: bool,
}

/// Each watched session's last write progress.
#[derive(Debug, Clone)]
pub struct StallWatch {
    threshold_ns: u64,
    sessions: HashMap<u64, Watch>,
}

impl Default for StallWatch {
    fn default() -> Self {
        Self::new((DEFAULT_STALL_S * 1e9) as u64)
    }
}

impl StallWatch {
    pub fn new(threshold_ns: u64) -> Self {
        Self {
            threshold_ns: threshold_ns.max(1),
            sessions: HashMap::new(),
        }
    }

    pub fn threshold_ms(&self) -> u64 {
        self.threshold_ns / 1_000_000
    }

    /// A session started at `fork_ns` (its `session_start`); other kinds are ignored.
    pub fn start(&mut self, session: u64, kind: SessionKind, child_pid: u32, fork_ns: u64) {
        if watched(kind) {
            self.sessions.insert(
                session,
                Watch {
                    child_pid,
                    last_progress_ns: fork_ns,
                    stalled: false,
                    count: 0,
                    longest: None,
                },
            );
        }
    }

    /// One look at `now_ns`: `progressed` says whether the child wrote anything since the
    /// last look. Some when it has gone `threshold` without progress.
    pub fn observe(&mut self, session: u64, now_ns: u64, progressed: bool) -> Option<Stalled> {
        let w = self.sessions.get_mut(&session)?;
        if progressed {
            w.last_progress_ns = now_ns;
            w.stalled = false;
            return None;
        }
        let idle = now_ns.saturating_sub(w.last_progress_ns);
        if idle < self.threshold_ns {
            return None;
        }
        let new = !w.stalled;
        if new {
            w.count += 1;
            w.stalled = true;
        }
        Some(Stalled {
            child_pid: w.child_pid,
            for_ms: idle / 1_000_000,
            new,
        })
    }

    /// What /proc showed at a look that found the session stalled: kept if it belongs to
    /// its longest stall so far.
    pub fn record(&mut self, session: u64, stall: &Stall) {
        if let Some(w) = self.sessions.get_mut(&session)
            && w.longest.as_ref().is_none_or(|l| stall.for_ms >= l.for_ms)
        {
            w.longest = Some(stall.clone());
        }
    }

    /// The session ended: its stalls, if it had any.
    pub fn end(&mut self, session: u64) -> Option<StallSummary> {
        let w = self.sessions.remove(&session)?;
        Some(StallSummary {
            count: w.count,
            longest: w.longest?,
        })
    }
}

/// A task state letter of `/proc/PID/stat` in words (fs/proc/array.c, `task_state_array`).
pub fn state_name(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping (interruptible)",
        'D' => "waiting, uninterruptible (usually on I/O)",
        'T' => "stopped by a signal",
        't' => "stopped by a debugger (traced)",
        'X' => "dead",
        'Z' => "zombie (exited, not yet reaped)",
        'P' => "parked",
        'I' => "idle",
        _ => "unknown state",
    }
}

/// A few system calls a save child blocks in, by x86-64 number; others by number.
pub fn syscall_name(nr: i64) -> String {
    match nr {
        0 => "read".into(),
        1 => "write".into(),
        7 => "poll".into(),
        20 => "writev".into(),
        23 => "select".into(),
        34 => "pause".into(),
        35 => "nanosleep".into(),
        44 => "sendto".into(),
        74 => "fsync".into(),
        75 => "fdatasync".into(),
        82 => "rename".into(),
        202 => "futex".into(),
        230 => "clock_nanosleep".into(),
        232 => "epoll_wait".into(),
        277 => "sync_file_range".into(),
        281 => "epoll_pwait".into(),
        n => format!("nr {n}"),
    }
}

/// The system call in `/proc/PID/syscall`: its first field, a number, `-1` (blocked
/// outside a system call) or `running`. None unless it is in one.
pub fn parse_syscall(text: &str) -> Option<String> {
    let nr: i64 = text.split_whitespace().next()?.parse().ok()?;
    (nr >= 0).then(|| syscall_name(nr))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn the_slow_fork_rule() {
        // 8 GiB forked in 60 ms: 7.5 ms per GiB, fine; in 120 ms: 15 ms per GiB, slow.
        assert_eq!(slow_fork(60_000.0, 8 * GIB, 10.0), None);
        assert_eq!(slow_fork(120_000.0, 8 * GIB, 10.0), Some(15.0));
        // Exactly at the threshold is not slow.
        assert_eq!(slow_fork(80_000.0, 8 * GIB, 10.0), None);
        // Under 1 GiB counts as 1 GiB: 3.2 ms for 138 MiB is not slow, 25 ms is.
        assert_eq!(slow_fork(3_200.0, 138 << 20, 10.0), None);
        let r = slow_fork(25_000.0, 512 << 20, 10.0).unwrap();
        assert!((r - 50.0).abs() < 1e-9, "{r}");
        // A Xen-like 239 ms per GiB on 4 GiB.
        let r = slow_fork(956_000.0, 4 * GIB, 10.0).unwrap();
        assert!((r - 239.0).abs() < 1e-9, "{r}");
        // The threshold is a setting.
        assert_eq!(slow_fork(120_000.0, 8 * GIB, 20.0), None);
        // Nonsense in, nothing out.
        assert_eq!(slow_fork(0.0, 8 * GIB, 10.0), None);
        assert_eq!(slow_fork(f64::NAN, 8 * GIB, 10.0), None);
        assert_eq!(slow_fork(1e6, 0, 10.0), None);
        assert_eq!(slow_fork(1e6, GIB, 0.0), None);
    }

    #[test]
    fn a_stall_is_flagged_once_per_stretch_and_summarised() {
        let s = 1_000_000_000u64;
        let mut w = StallWatch::new(3 * s);
        w.start(1, SessionKind::RdbBgsave, 42, 0);
        w.start(2, SessionKind::Fork, 43, 0);
        assert_eq!(w.observe(1, s, true), None);
        assert_eq!(w.observe(1, 3 * s, false), None);
        let first = w.observe(1, 4 * s, false).unwrap();
        assert_eq!(
            first,
            Stalled {
                child_pid: 42,
                for_ms: 3000,
                new: true
            }
        );
        w.record(
            1,
            &Stall {
                for_ms: 3000,
                state: Some("T".into()),
                ..Default::default()
            },
        );
        let again = w.observe(1, 6 * s, false).unwrap();
        assert_eq!((again.for_ms, again.new), (5000, false));
        w.record(
            1,
            &Stall {
                for_ms: 5000,
                state: Some("T".into()),
                ..Default::default()
            },
        );
        // Progress ends the stretch; a second one counts again.
        assert_eq!(w.observe(1, 7 * s, true), None);
        assert!(w.observe(1, 10 * s, false).unwrap().new);
        w.record(
            1,
            &Stall {
                for_ms: 3000,
                state: Some("D".into()),
                ..Default::default()
            },
        );
        // A plain fork is not watched; nor is an unknown session.
        assert_eq!(w.observe(2, 100 * s, false), None);
        assert_eq!(w.observe(9, 100 * s, false), None);
        let sum = w.end(1).unwrap();
        assert_eq!(sum.count, 2);
        assert_eq!(sum.longest.for_ms, 5000);
        assert_eq!(sum.longest.state.as_deref(), Some("T"));
        assert_eq!(w.end(1), None);
        // A session that never stalled has no summary.
        w.start(3, SessionKind::AofRewrite, 44, 0);
        assert_eq!(w.observe(3, s, true), None);
        assert_eq!(w.end(3), None);
    }

    #[test]
    fn proc_words() {
        assert_eq!(state_name('T'), "stopped by a signal");
        assert_eq!(state_name('?'), "unknown state");
        assert_eq!(
            parse_syscall("74 0x3 0x0 0x0 0x0 0x0 0x0 0x7ffd 0x7f"),
            Some("fsync".into())
        );
        assert_eq!(parse_syscall("999 0x0"), Some("nr 999".into()));
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f"), None);
        assert_eq!(parse_syscall("running"), None);
        assert_eq!(parse_syscall(""), None);
    }
}
