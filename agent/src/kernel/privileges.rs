//! Up-front privilege check, so a user without rights gets one clear line instead of a
//! verifier or EPERM error from deep inside the loader.
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;
pub const CAP_SYS_ADMIN: u32 = 21;

pub const NEED_ROOT: &str = "cowtrace needs root to load its eBPF programs: run it with sudo, \
     or grant CAP_BPF + CAP_PERFMON (e.g. `setcap cap_bpf,cap_perfmon+ep cowtrace`)";

/// Effective capability mask from /proc/self/status (`CapEff:` in hex).
pub fn parse_cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

pub fn has_cap(mask: u64, cap: u32) -> bool {
    mask & (1u64 << cap) != 0
}

/// True when the process may load and attach tracing programs.
pub fn can_trace(mask: u64) -> bool {
    has_cap(mask, CAP_SYS_ADMIN) || (has_cap(mask, CAP_BPF) && has_cap(mask, CAP_PERFMON))
}

/// (euid, effective capabilities) of this process.
pub fn current() -> (u32, u64) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let caps = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(parse_cap_eff)
        .unwrap_or(0);
    (euid, caps)
}

/// `Err(message)` when this process cannot trace. `COWTRACE_AS_UNPRIVILEGED=1` makes
/// a root process behave as if it had no capabilities (for the error-path tests).
pub fn require() -> Result<(), String> {
    let (_, caps) = current();
    let forced = std::env::var("COWTRACE_AS_UNPRIVILEGED").is_ok_and(|v| v == "1");
    if forced || !can_trace(caps) {
        Err(NEED_ROOT.to_string())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps() {
        let root = "Name:\tx\nCapEff:\t000001ffffffffff\n";
        let m = parse_cap_eff(root).unwrap();
        assert!(can_trace(m));
        let bpf_perfmon = (1u64 << CAP_BPF) | (1u64 << CAP_PERFMON);
        assert!(can_trace(bpf_perfmon));
        assert!(!can_trace(1u64 << CAP_BPF));
        assert!(!can_trace(
            parse_cap_eff("CapEff:\t0000000000000000\n").unwrap()
        ));
        assert_eq!(parse_cap_eff("nothing"), None);
        assert!(NEED_ROOT.contains("CAP_BPF + CAP_PERFMON"));
    }
}
