//! What a save child that was already running when cowtrace started had done: found from
//! /proc (its parent, its age, its private dirty memory, the files it has open). Used once
//! per child at start-up; the parsers are pure and unit-tested.
use std::{fs, os::unix::fs::MetadataExt};

/// The pids whose parent is `ppid` (from /proc/PID/stat), thread-group leaders only.
pub fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parse_stat(&s))
                .is_some_and(|st| st.ppid == ppid)
        })
        .collect();
    out.sort_unstable();
    out
}

/// The fields of /proc/PID/stat that matter here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    /// Start time, in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parse /proc/PID/stat; the comm (field 2) may hold spaces and parentheses, so the
/// fields are counted after its last `)`.
pub fn parse_stat(s: &str) -> Option<Stat> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the comm: state(3) ppid(4) ... starttime(22).
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// How long ago `pid` started, in ns (from its start time and /proc/uptime).
pub fn age_ns(pid: u32) -> Option<u64> {
    let stat = parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let age_s = uptime - stat.start_ticks as f64 / hz;
    Some((age_s.max(0.0) * 1e9) as u64)
}

/// `Private_Dirty` of /proc/PID/smaps_rollup, in bytes.
pub fn parse_private_dirty(rollup: &str) -> Option<u64> {
    rollup.lines().find_map(|l| {
        let kb = l
            .strip_prefix("Private_Dirty:")?
            .trim()
            .strip_suffix("kB")?;
        kb.trim().parse::<u64>().ok().map(|kb| kb * 1024)
    })
}

/// The child's private dirty memory now: what Redis reports as `current_cow_size` (it
/// sums `Private_Dirty` of the child's smaps).
pub fn private_dirty_bytes(pid: u32) -> Option<u64> {
    parse_private_dirty(&fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?)
}

/// The total size of the regular files `pid` has open for writing (`temp-PID.rdb`).
pub fn open_written_bytes(pid: u32) -> Option<u64> {
    let dir = fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut total = 0u64;
    for e in dir.filter_map(Result::ok) {
        let fdinfo = fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            e.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        let writable = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
            .is_some_and(|f| f & 3 != 0); // O_WRONLY or O_RDWR
        if let Ok(m) = fs::metadata(e.path())
            && m.is_file()
            && writable
            && m.nlink() > 0
        {
            total = total.saturating_add(m.len());
        }
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_strange_comm() {
        let s = "4242 (redis-rdb (bg) x) S 4000 4242 4000 0 -1 4194368 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10 0 0 0";
        assert_eq!(
            parse_stat(s),
            Some(Stat {
                ppid: 4000,
                start_ticks: 123456
            })
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn private_dirty_of_a_rollup() {
        let r = "55d0a2a00000-7ffc1ab5c000 ---p 00000000 00:00 0    [rollup]
Rss:              530100 kB
Private_Clean:         0 kB
Private_Dirty:    401244 kB
";
        assert_eq!(parse_private_dirty(r), Some(401244 * 1024));
        assert_eq!(parse_private_dirty("Rss: 1 kB\n"), None);
    }
}
