//! What a save cost the server's main thread (issue 15 item 5): the copies its main
//! thread made, times the cost of one copy fault measured on this host, and the fork's
//! block. Pure: the measurement itself is `runner::calibrate`.
//!
//! On the tracepoint path (where fentry is refused) nothing times the faults, so the COW
//! time is an estimate: copies × per-copy cost. Where `do_wp_page` is hooked with its
//! return (fentry/fexit, kprobe/kretprobe) the kernel measures it (`measured`).

use crate::trace::schema::{Causes, MainThread};

/// The parent copies made by the main thread: the cause split's total less the copies
/// charged to other threads (`kind == "thread"`; `attrib.rs` names every copy by a thread
/// other than the main one that way). `None` without a cause split.
pub fn main_thread_copies(causes: Option<&Causes>) -> Option<u64> {
    let c = causes?;
    let threads: u64 = c
        .by_cause
        .iter()
        .filter(|r| r.kind == "thread")
        .map(|r| r.copies)
        .sum();
    Some(c.copies.saturating_sub(threads))
}

/// The estimate for a session of `duration_ms` whose main thread made `copies` copies at
/// `per_copy_ns` each; `fork_us` is the fork's measured block, when known.
pub fn estimate(
    copies: u64,
    per_copy_ns: u64,
    basis: &str,
    duration_ms: u64,
    fork_us: Option<f64>,
) -> MainThread {
    let cow_ms = copies as f64 * per_copy_ns as f64 / 1e6;
    MainThread {
        copies,
        per_copy_ns,
        untraced_per_copy_ns: None,
        cow_ms,
        pct_of_save: pct_of(cow_ms, duration_ms),
        estimate: true,
        basis: basis.to_string(),
        fork_us,
    }
}

/// The kernel's own timing (`SessionState::main_ns`), where the COW method sees the
/// fault handler return (`hooks`): the main thread made `copies` copies, and `ns` is the
/// time of all of them but the last (the kernel adds each copy's time at the next one,
/// agent-ebpf/src/fault.rs). The average is over the timed copies; the last copy is
/// counted at that average.
pub fn measured(
    copies: u64,
    ns: u64,
    hooks: &str,
    duration_ms: u64,
    fork_us: Option<f64>,
) -> MainThread {
    let timed = copies.saturating_sub(1);
    let per_copy_ns = ns.checked_div(timed).unwrap_or(0);
    let mut m = estimate(copies, per_copy_ns, "", duration_ms, fork_us);
    m.cow_ms = (ns + if timed > 0 { per_copy_ns } else { 0 }) as f64 / 1e6;
    m.pct_of_save = pct_of(m.cow_ms, duration_ms);
    m.estimate = false;
    m.basis = format!(
        "measured in the kernel: the main thread's time from the fault handler's entry to its return, for every copy but the session's last, which is counted at their average ({hooks}); the exception's own entry and exit are not in it"
    );
    m
}

/// `ms` as a share of a session of `duration_ms`, at most 100%.
fn pct_of(ms: f64, duration_ms: u64) -> f64 {
    if duration_ms == 0 {
        0.0
    } else {
        (ms * 100.0 / duration_ms as f64).min(100.0)
    }
}

/// The median of `samples` (nanoseconds per copy), `None` when empty.
pub fn median(samples: &mut [u64]) -> Option<u64> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    Some(samples[samples.len() / 2])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::CauseShare;

    fn share(cause: &str, kind: &str, copies: u64) -> CauseShare {
        CauseShare {
            cause: cause.into(),
            kind: kind.into(),
            copies,
            share_pct: 0.0,
        }
    }

    #[test]
    fn main_thread_copies_leave_out_other_threads() {
        let c = Causes {
            copies: 1000,
            by_cause: vec![
                share("SET", "command", 700),
                share("thread bio_lazy_free", "thread", 200),
                share("thread io_thd_1", "thread", 50),
                share("other", "other", 50),
            ],
            note: None,
        };
        assert_eq!(main_thread_copies(Some(&c)), Some(750));
        assert_eq!(main_thread_copies(None), None);
        let odd = Causes {
            copies: 10,
            by_cause: vec![share("thread x", "thread", 20)],
            note: None,
        };
        assert_eq!(main_thread_copies(Some(&odd)), Some(0));
    }

    #[test]
    fn estimate_is_copies_times_cost_and_a_share_of_the_save() {
        // 600,000 copies at 2 µs: 1.2 s of a 20 s save, 6%.
        let m = estimate(600_000, 2_000, "b", 20_000, Some(12_000.0));
        assert!((m.cow_ms - 1_200.0).abs() < 1e-9);
        assert!((m.pct_of_save - 6.0).abs() < 1e-9);
        assert!(m.estimate);
        assert_eq!(m.fork_us, Some(12_000.0));
        // A zero-length session has no share; a share never passes 100%.
        assert_eq!(estimate(5, 1_000, "b", 0, None).pct_of_save, 0.0);
        assert_eq!(estimate(5_000_000, 1_000, "b", 1, None).pct_of_save, 100.0);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [5, 1, 3]), Some(3));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(3));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn the_kernels_timing_is_measured_not_estimated() {
        // 10,001 copies, the first 10,000 timed at 31.5 ms in all, in a 2 s save; the
        // last one counts at their average.
        let m = measured(
            10_001,
            31_500_000,
            "fentry+fexit/do_wp_page",
            2000,
            Some(4000.0),
        );
        assert!(!m.estimate);
        assert_eq!((m.copies, m.per_copy_ns), (10_001, 3150));
        assert!((m.cow_ms - 31.50315).abs() < 1e-9, "{}", m.cow_ms);
        assert!(
            (m.pct_of_save - 1.5751575).abs() < 1e-9,
            "{}",
            m.pct_of_save
        );
        assert!(m.basis.contains("fentry+fexit/do_wp_page"), "{}", m.basis);
        // No copies, or one (untimed): no division by zero, nothing known spent.
        for copies in [0, 1] {
            let z = measured(copies, 0, "kprobe+kretprobe/do_wp_page", 0, None);
            assert_eq!((z.per_copy_ns, z.cow_ms, z.pct_of_save), (0, 0.0, 0.0));
        }
    }
}
