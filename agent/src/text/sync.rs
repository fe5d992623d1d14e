//! How every output words sync calls. `fsync`, `fdatasync` and `sync_file_range` are
//! counted apart: the first two wait for the disk, while `sync_file_range` (Redis's
//! `rdb-save-incremental-fsync`, every 4 MB) starts writeback and returns in
//! microseconds. A single "fsync 17" hid 15 `sync_file_range` calls and made the fsync
//! latency look like nothing, so a count always says what it counts.
use agent_common::SYNC_CALLS;

use crate::trace::schema::SyncCall;

/// `sync 17 (fsync 1, fdatasync 1, sync_file_range 15)`: the total, then each call that
/// was made. `by_call` is None for a trace written before the calls were told apart:
/// then `sync 17 (fsync, fdatasync and sync_file_range)`.
pub fn sync_counts(total: u64, by_call: Option<[u64; SYNC_CALLS]>) -> String {
    match by_call {
        _ if total == 0 => "sync 0".to_string(),
        None => format!("sync {total} (fsync, fdatasync and sync_file_range)"),
        Some(c) => format!("sync {total}{}", breakdown(c)),
    }
}

/// ` (fsync 1, fdatasync 1, sync_file_range 15)`: the calls that were made; empty when
/// none was.
pub fn breakdown(c: [u64; SYNC_CALLS]) -> String {
    let made: Vec<String> = SyncCall::ALL
        .iter()
        .zip(c)
        .filter(|&(_, n)| n > 0)
        .map(|(call, n)| format!("{} {n}", call.as_str()))
        .collect();
    if made.is_empty() {
        String::new()
    } else {
        format!(" ({})", made.join(", "))
    }
}

/// For the diagnosis: `17 sync call(s) took 29.4 ms: fsync 1 (25.0 ms), fdatasync 1
/// (3.9 ms), sync_file_range 15 (0.5 ms)`. `by_call` holds (calls, ms) per call, when
/// known.
pub fn sync_time(total: u64, total_ms: f64, by_call: Option<[(u64, f64); SYNC_CALLS]>) -> String {
    let head = format!("{total} sync call(s) took {total_ms:.1} ms");
    let Some(c) = by_call.filter(|_| total > 0) else {
        return match total {
            0 => "no sync call".to_string(),
            _ => format!("{head} (fsync, fdatasync and sync_file_range)"),
        };
    };
    let parts: Vec<String> = SyncCall::ALL
        .iter()
        .zip(c)
        .filter(|&(_, (n, _))| n > 0)
        .map(|(call, (n, ms))| format!("{} {n} ({ms:.1} ms)", call.as_str()))
        .collect();
    format!("{head}: {}", parts.join(", "))
}

/// The title of one call's latency histogram: `fsync latency`.
pub fn latency_title(call: SyncCall) -> &'static str {
    match call {
        SyncCall::Fsync => "fsync latency",
        SyncCall::Fdatasync => "fdatasync latency",
        SyncCall::SyncFileRange => "sync_file_range latency",
        SyncCall::Unknown => "sync latency",
    }
}

/// The title of the histogram of the calls that wait for the disk, where there is room
/// for one sync histogram only (the live view): `sync_file_range` is left out of it.
pub const DURABLE_LATENCY: &str = "fsync+fdatasync latency";

/// The title of the histogram of every sync call of a trace that does not tell them
/// apart.
pub const ANY_LATENCY: &str = "fsync/fdatasync/sync_file_range latency";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_say_what_they_count() {
        assert_eq!(
            sync_counts(17, Some([1, 1, 15])),
            "sync 17 (fsync 1, fdatasync 1, sync_file_range 15)"
        );
        assert_eq!(sync_counts(1, Some([1, 0, 0])), "sync 1 (fsync 1)");
        assert_eq!(sync_counts(0, Some([0, 0, 0])), "sync 0");
        assert_eq!(
            sync_counts(2, Some([0, 0, 0])),
            "sync 2",
            "inconsistent input"
        );
        assert_eq!(breakdown([0, 2, 0]), " (fdatasync 2)");
        assert_eq!(breakdown([0, 0, 0]), "");
        assert_eq!(sync_counts(0, None), "sync 0");
        assert_eq!(
            sync_counts(4, None),
            "sync 4 (fsync, fdatasync and sync_file_range)"
        );
    }

    #[test]
    fn times_per_call() {
        assert_eq!(
            sync_time(17, 29.44, Some([(1, 25.0), (1, 3.94), (15, 0.5)])),
            "17 sync call(s) took 29.4 ms: fsync 1 (25.0 ms), fdatasync 1 (3.9 ms), sync_file_range 15 (0.5 ms)"
        );
        assert_eq!(
            sync_time(3, 12.5, None),
            "3 sync call(s) took 12.5 ms (fsync, fdatasync and sync_file_range)"
        );
        assert_eq!(sync_time(0, 0.0, Some([(0, 0.0); 3])), "no sync call");
    }

    #[test]
    fn titles() {
        let t: Vec<&str> = SyncCall::ALL.iter().map(|&c| latency_title(c)).collect();
        assert_eq!(
            t,
            [
                "fsync latency",
                "fdatasync latency",
                "sync_file_range latency"
            ]
        );
    }
}
