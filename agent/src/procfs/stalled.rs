//! What /proc shows about a stalled save child (its state, where it sleeps, the system
//! call it is in) and about a slow fork's parent (its page tables). Read once per look
//! at a stalled session and once per slow fork; the parsers are pure.
use std::fs;

use crate::{
    events::stall::{parse_syscall, state_name},
    trace::schema::Stall,
};

/// The state letter of /proc/PID/stat (field 3, after the comm's last `)`).
pub fn parse_state(stat: &str) -> Option<char> {
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .next()?
        .chars()
        .next()
}

/// `/proc/PID/wchan`: a kernel function name, or `0` when the task is not sleeping.
pub fn parse_wchan(text: &str) -> Option<String> {
    let w = text.trim();
    (!w.is_empty() && w != "0").then(|| w.to_string())
}

/// `VmPTE:  1234 kB` of /proc/PID/status, in bytes.
pub fn parse_vm_pte(status: &str) -> Option<u64> {
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmPTE:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}

/// A stall of `pid` so far, with what /proc says about it now (fields it cannot read,
/// as after the child exited, stay None).
pub fn stall_of(pid: u32, for_ms: u64, threshold_ms: u64) -> Stall {
    let state = fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| parse_state(&s));
    Stall {
        for_ms,
        threshold_ms,
        state: state.map(String::from),
        state_name: state.map(|c| state_name(c).to_string()),
        wchan: fs::read_to_string(format!("/proc/{pid}/wchan"))
            .ok()
            .and_then(|s| parse_wchan(&s)),
        syscall: fs::read_to_string(format!("/proc/{pid}/syscall"))
            .ok()
            .and_then(|s| parse_syscall(&s)),
    }
}

/// The page tables of `pid`, which fork copies.
pub fn vm_pte_bytes(pid: u32) -> Option<u64> {
    parse_vm_pte(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        assert_eq!(
            parse_state("4242 (redis-rdb-bgsave) T 4200 4200 4200 0 -1"),
            Some('T')
        );
        assert_eq!(parse_state("7 (a) b) D 1"), Some('D'));
        assert_eq!(parse_state("garbage"), None);
        assert_eq!(parse_wchan("do_signal_stop"), Some("do_signal_stop".into()));
        assert_eq!(parse_wchan("0"), None);
        assert_eq!(parse_wchan(""), None);
        assert_eq!(
            parse_vm_pte("Name:\tredis-server\nVmPTE:\t    2048 kB\nVmSwap:\t0 kB\n"),
            Some(2 << 20)
        );
        assert_eq!(parse_vm_pte("VmRSS: 1 kB\n"), None);
    }

    #[test]
    fn this_process_is_running_with_page_tables() {
        // SAFETY: gettid has no memory effects. This thread (not the test harness's
        // main thread, which waits) is the one running.
        let me = unsafe { libc::gettid() } as u32;
        let s = stall_of(me, 1, 1);
        assert_eq!(s.state.as_deref(), Some("R"), "{s:?}");
        assert_eq!(s.state_name.as_deref(), Some("running"));
        assert!(vm_pte_bytes(std::process::id()).is_some_and(|b| b > 0));
    }
}
