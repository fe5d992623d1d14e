//! Stalled saves and slow forks in words, for every output (watch lines, the screen,
//! the diagnosis, `report`).
use crate::{
    text::units::fmt_bytes,
    trace::schema::{SlowFork, Stall, StallSummary},
};

/// What /proc showed about a stalled child: `state T (stopped by a signal), in
/// do_signal_stop`.
pub fn child_state(s: &Stall) -> String {
    let mut out = match (&s.state, &s.state_name) {
        (Some(c), Some(n)) => format!("state {c} ({n})"),
        (Some(c), None) => format!("state {c}"),
        _ => "state unknown (the child had gone)".to_string(),
    };
    if let Some(w) = &s.wchan {
        out.push_str(&format!(", sleeping in {w}"));
    }
    if let Some(c) = &s.syscall {
        out.push_str(&format!(", in {c}()"));
    }
    out
}

/// The mark on a watch line: `STALLED: no write for 12.0 s (state T ...)`.
pub fn stall_mark(s: &Stall) -> String {
    format!(
        "  STALLED: no write for {:.1} s ({})",
        s.for_ms as f64 / 1000.0,
        child_state(s)
    )
}

/// The mark on a session's start line: `  SLOW FORK: 15.0 ms per GiB of RSS (threshold
/// 10), VmPTE 16.0 MiB`.
pub fn slow_fork_mark(f: &SlowFork) -> String {
    format!(
        "  SLOW FORK: {:.1} ms per GiB of RSS (threshold {:.0}){}",
        f.ms_per_gib,
        f.threshold_ms_per_gib,
        f.vm_pte_bytes
            .map_or(String::new(), |b| format!(", VmPTE {}", fmt_bytes(b)))
    )
}

/// The mark on a session's end line: `; STALLED 1 time(s), longest 12.0 s (state T)`.
pub fn stall_end_mark(s: &StallSummary) -> String {
    format!(
        "; STALLED {} time(s), longest {:.1} s (state {})",
        s.count,
        s.longest.for_ms as f64 / 1000.0,
        s.longest.state.as_deref().unwrap_or("?")
    )
}

/// What to do about a stall, by the state the child was in.
pub fn stall_advice(s: &Stall) -> &'static str {
    match s.state.as_deref() {
        Some("T") | Some("t") => {
            "something stopped it (SIGSTOP, a debugger, a container freezer): send SIGCONT or detach the debugger; the COW keeps growing while it waits"
        }
        Some("D") => {
            "it waits on I/O in the kernel: check the disk (`iostat -x 1`) and the file system it writes to"
        }
        Some("S") => {
            "it sleeps: a full pipe or socket (a slow replica), a lock, or `rdb-key-save-delay`"
        }
        Some("R") => {
            "it runs but writes nothing: CPU-bound serialisation of a large key, or starved of CPU (check the host's load and the child's cgroup CPU limit)"
        }
        _ => "check the child with `cat /proc/PID/stack` and `top -H -p PID`",
    }
}

/// The diagnosis line of a session's stalls.
pub fn stall_summary_text(s: &StallSummary, child_pid: u32) -> String {
    format!(
        "Stalled: the child (pid {child_pid}) wrote nothing for {:.1} s (threshold {:.0} s; {} stall(s)), {}: {}.",
        s.longest.for_ms as f64 / 1000.0,
        s.longest.threshold_ms as f64 / 1000.0,
        s.count,
        child_state(&s.longest),
        stall_advice(&s.longest)
    )
}

/// The diagnosis line of a slow fork.
pub fn slow_fork_text(f: &SlowFork) -> String {
    let pte = f.vm_pte_bytes.map_or(String::new(), |b| {
        format!(
            "; the fork copied the parent's page tables ({} of VmPTE)",
            fmt_bytes(b)
        )
    });
    let thp = match f.thp.as_deref() {
        Some("always") => "; THP is `always`, which makes forks slower: set `madvise` or `never`",
        _ => "",
    };
    format!(
        "Slow fork: it blocked the server for {:.1} ms, {:.1} ms per GiB of its {} RSS (threshold {:.0} ms per GiB){pte}{thp}. Every client waited that long; a smaller instance, fewer saves, or a host where fork is cheaper (not a Xen PV guest) shortens it.",
        f.fork_us / 1000.0,
        f.ms_per_gib,
        fmt_bytes(f.rss_bytes),
        f.threshold_ms_per_gib
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        let s = Stall {
            for_ms: 12_000,
            threshold_ms: 10_000,
            state: Some("T".into()),
            state_name: Some("stopped by a signal".into()),
            wchan: Some("do_signal_stop".into()),
            syscall: None,
        };
        assert_eq!(
            stall_mark(&s),
            "  STALLED: no write for 12.0 s (state T (stopped by a signal), sleeping in do_signal_stop)"
        );
        let sum = StallSummary {
            count: 1,
            longest: s,
        };
        assert_eq!(
            stall_end_mark(&sum),
            "; STALLED 1 time(s), longest 12.0 s (state T)"
        );
        let t = stall_summary_text(&sum, 42);
        assert!(t.starts_with("Stalled: the child (pid 42) wrote nothing for 12.0 s (threshold 10 s; 1 stall(s)), state T"), "{t}");
        assert!(t.contains("send SIGCONT"), "{t}");
        assert_eq!(
            child_state(&Stall::default()),
            "state unknown (the child had gone)"
        );
        let f = SlowFork {
            fork_us: 120_000.0,
            rss_bytes: 8 << 30,
            ms_per_gib: 15.0,
            threshold_ms_per_gib: 10.0,
            vm_pte_bytes: Some(16 << 20),
            thp: Some("always".into()),
        };
        assert_eq!(
            slow_fork_mark(&f),
            "  SLOW FORK: 15.0 ms per GiB of RSS (threshold 10), VmPTE 16.0 MiB"
        );
        let t = slow_fork_text(&f);
        assert!(t.starts_with("Slow fork: it blocked the server for 120.0 ms, 15.0 ms per GiB of its 8.00 GiB RSS (threshold 10 ms per GiB); the fork copied the parent's page tables (16.0 MiB of VmPTE); THP is `always`"), "{t}");
    }
}
