//! What the agent reads from /proc: Redis discovery, command lines, RSS.
pub mod cgroup;
pub mod children;
pub mod sockets;
pub mod stalled;

use std::{fs, path::Path};

/// Process names (comm) that cowtrace traces by default.
pub const REDIS_COMMS: [&str; 2] = ["redis-server", "valkey-server"];

pub fn is_redis_comm(comm: &str) -> bool {
    REDIS_COMMS.contains(&comm.trim_end())
}

/// What to say about a `-p` target whose comm is not a Redis server's: it is traced
/// all the same (a fork-based server under another name, a test program), but a wrong
/// pid should not go unnoticed. None for a Redis server.
pub fn not_redis_warning(pid: u32, comm: &str) -> Option<String> {
    (!is_redis_comm(comm)).then(|| {
        format!(
            "pid {pid} ({}) is not a {}; tracing its forks anyway",
            comm.trim_end(),
            REDIS_COMMS.join(" or ")
        )
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisProc {
    pub pid: u32,
    pub comm: String,
    pub cmdline: String,
    pub port: Option<u16>,
}

/// Every running Redis or Valkey server, found by comm. Fork children keep the comm
/// but are not servers: a process whose parent is also a Redis server is skipped.
pub fn find_redis(proc_root: &Path) -> Vec<RedisProc> {
    let Ok(dir) = fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(comm) = fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let comm = comm.trim_end().to_string();
        if !is_redis_comm(&comm) {
            continue;
        }
        let ppid = read_status_field(&entry.path(), "PPid:").unwrap_or(0);
        if let Ok(pcomm) = fs::read_to_string(proc_root.join(ppid.to_string()).join("comm"))
            && is_redis_comm(&pcomm)
        {
            continue;
        }
        let cmd = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = crate::events::classify::printable(&cmd);
        out.push(RedisProc {
            pid,
            port: port_from_cmdline(&cmdline),
            comm,
            cmdline,
        });
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Redis rewrites its title to `redis-server 127.0.0.1:6379` (or `*:6379`); the port is
/// after the last colon. Unix-socket-only servers show port 0.
pub fn port_from_cmdline(cmdline: &str) -> Option<u16> {
    let first = cmdline.split_whitespace().nth(1)?;
    first.rsplit_once(':')?.1.parse().ok()
}

fn read_status_field(pid_dir: &Path, key: &str) -> Option<u32> {
    let status = fs::read_to_string(pid_dir.join("status")).ok()?;
    parse_status_field(&status, key)
}

pub fn parse_status_field(status: &str, key: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The thread-group id of `pid`, or None when no such process exists.
pub fn tgid_of(pid: u32) -> Option<u32> {
    read_status_field(&Path::new("/proc").join(pid.to_string()), "Tgid:")
}

pub fn cmdline(pid: u32) -> Vec<u8> {
    fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default()
}

pub fn comm(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim_end().to_string())
}

pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 { v as u64 } else { 4096 }
}

/// Resident set size in bytes, from /proc/PID/statm (second field, in pages).
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    parse_statm_rss_pages(&statm).map(|p| p * page_size())
}

/// Peak RSS (VmHWM) of `pid`, in bytes.
pub fn max_rss_bytes(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_field(&status, "VmHWM:").map(|kb| kb as u64 * 1024)
}

pub fn parse_statm_rss_pages(statm: &str) -> Option<u64> {
    statm.split_whitespace().nth(1)?.parse().ok()
}

/// Wall-clock time, ms since 1970 (0 if the clock is before 1970).
/// CPU time (user + system) this process has used, in seconds.
pub fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the struct we pass; an all-zero rusage is a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a local.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The bracketed choice of a sysfs setting such as
/// `always [madvise] never` -> `madvise`.
pub fn bracketed(s: &str) -> Option<&str> {
    let start = s.find('[')? + 1;
    let end = s[start..].find(']')? + start;
    Some(&s[start..end])
}

pub fn thp_mode() -> Option<String> {
    let s = fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").ok()?;
    bracketed(&s).map(str::to_string)
}

pub fn overcommit_memory() -> Option<u32> {
    fs::read_to_string("/proc/sys/vm/overcommit_memory")
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port_from_cmdline("redis-server *:6379"), Some(6379));
        assert_eq!(port_from_cmdline("redis-server 127.0.0.1:7001"), Some(7001));
        assert_eq!(port_from_cmdline("redis-server [::1]:6380"), Some(6380));
        assert_eq!(port_from_cmdline("redis-server unixsocket"), None);
        assert_eq!(port_from_cmdline("redis-server"), None);
    }

    #[test]
    fn status_and_statm() {
        let status = "Name:\tredis-server\nTgid:\t1234\nPPid:\t1\n";
        assert_eq!(parse_status_field(status, "Tgid:"), Some(1234));
        assert_eq!(parse_status_field(status, "PPid:"), Some(1));
        assert_eq!(parse_status_field(status, "Nope:"), None);
        assert_eq!(parse_statm_rss_pages("1000 250 30 1 0 100 0\n"), Some(250));
        assert_eq!(parse_statm_rss_pages("garbage"), None);
    }

    #[test]
    fn sysfs_choice() {
        assert_eq!(bracketed("always [madvise] never\n"), Some("madvise"));
        assert_eq!(bracketed("no brackets"), None);
    }

    #[test]
    fn comms() {
        assert!(is_redis_comm("redis-server\n"));
        assert!(is_redis_comm("valkey-server"));
        assert!(!is_redis_comm("redis-cli"));
        assert_eq!(
            not_redis_warning(1, "systemd\n").as_deref(),
            Some(
                "pid 1 (systemd) is not a redis-server or valkey-server; tracing its forks anyway"
            )
        );
        assert_eq!(not_redis_warning(7, "valkey-server"), None);
    }

    #[test]
    fn find_redis_in_fake_proc() {
        let root = std::env::temp_dir().join(format!("cowtrace-proc-{}", std::process::id()));
        let mk = |pid: u32, comm: &str, ppid: u32, cmd: &[u8]| {
            let d = root.join(pid.to_string());
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
            fs::write(d.join("status"), format!("Name:\t{comm}\nPPid:\t{ppid}\n")).unwrap();
            fs::write(d.join("cmdline"), cmd).unwrap();
        };
        mk(10, "redis-server", 1, b"redis-server *:6379\0");
        mk(11, "redis-server", 10, b"redis-rdb-bgsave *:6379\0"); // a save child
        mk(12, "bash", 1, b"bash\0");
        mk(13, "valkey-server", 1, b"valkey-server 127.0.0.1:7000\0");
        fs::create_dir_all(root.join("self")).unwrap();
        let found = find_redis(&root);
        fs::remove_dir_all(&root).unwrap();
        let pids: Vec<_> = found.iter().map(|p| (p.pid, p.port)).collect();
        assert_eq!(pids, vec![(10, Some(6379)), (13, Some(7000))]);
    }
}
