//! Processes the benchmarks start, and what they read about processes from /proc.
//!
//! Every child is held by a [`Proc`], which stops it (its own signal first, then
//! SIGKILL) and reaps it when dropped, so an error or a panic anywhere leaves nothing
//! running. The temporary directory is a [`TempDir`], removed on drop.

use anyhow::{Context as _, Result, anyhow, bail};
use std::ffi::CString;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command};
use std::time::{Duration, Instant};

/// How a child ended, with the resource usage the kernel kept for it.
#[derive(Debug, Clone, Copy)]
pub struct Exit {
    /// The raw wait(2) status.
    pub status: i32,
    /// User + system CPU of the whole process, in seconds.
    pub cpu_s: f64,
    /// Peak RSS (`ru_maxrss`), in bytes.
    pub max_rss: u64,
}

impl Exit {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit status {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

/// A child process that is stopped and reaped when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    /// Signal that asks it to stop cleanly (SIGINT for tracers, SIGTERM otherwise).
    stop_sig: i32,
    exit: Option<Exit>,
}

impl Proc {
    pub fn spawn(name: &str, cmd: &mut Command, stop_sig: i32) -> Result<Proc> {
        let shown = crate::util::show(cmd);
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {name}: `{shown}`"))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            stop_sig,
            exit: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Reap it if it has exited (wait4 with WNOHANG, so the rusage is ours).
    pub fn poll(&mut self) -> Result<Option<Exit>> {
        if let Some(e) = self.exit {
            return Ok(Some(e));
        }
        let mut status = 0;
        // SAFETY: an all-zero rusage is valid; wait4 on our own unreaped child.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::wait4(
                self.pid() as libc::pid_t,
                &mut status,
                libc::WNOHANG,
                &mut ru,
            )
        };
        if r == 0 {
            return Ok(None);
        }
        if r < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("wait4 on {} ({})", self.name, self.pid()));
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        let e = Exit {
            status,
            cpu_s: tv(ru.ru_utime) + tv(ru.ru_stime),
            max_rss: ru.ru_maxrss as u64 * 1024,
        };
        self.exit = Some(e);
        Ok(Some(e))
    }

    /// Wait for it to exit by itself, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> Result<Exit> {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.poll()? {
                return Ok(e);
            }
            if t0.elapsed() > limit {
                bail!(
                    "{} (pid {}) did not exit within {limit:?}",
                    self.name,
                    self.pid()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Send `sig` (if it is still running).
    pub fn signal(&mut self, sig: i32) -> Result<()> {
        if self.poll()?.is_none() {
            // SAFETY: kill(2) on our own child, not reaped yet, so the pid is still ours.
            unsafe { libc::kill(self.pid() as libc::pid_t, sig) };
        }
        Ok(())
    }

    /// Its stop signal, then wait at most `limit`, then SIGKILL.
    pub fn stop(&mut self, limit: Duration) -> Result<Exit> {
        self.signal(self.stop_sig)?;
        match self.wait(limit) {
            Ok(e) => Ok(e),
            Err(err) => {
                self.signal(libc::SIGKILL)?;
                let _ = self.wait(Duration::from_secs(5));
                Err(err.context(format!("{} had to be killed", self.name)))
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.poll(), Ok(Some(_)) | Err(_)) {
            return;
        }
        let _ = self.signal(self.stop_sig);
        if self.wait(Duration::from_secs(3)).is_err() {
            eprintln!(
                "[bench] {} (pid {}) did not stop, killing it",
                self.name,
                self.pid()
            );
            let _ = self.signal(libc::SIGKILL);
            let _ = self.wait(Duration::from_secs(5));
        }
    }
}

/// A workload that speaks the `ready PID` / go / one JSON line protocol (cowbench).
pub struct Workload {
    pub proc: Proc,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Workload {
    /// Start it and wait for its `ready` line.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Workload> {
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped());
        let mut proc = Proc::spawn(name, cmd, libc::SIGKILL)?;
        let stdin = proc.take_stdin();
        let stdout = BufReader::new(proc.take_stdout().context("stdout is piped")?);
        let mut w = Workload {
            proc,
            stdin,
            stdout,
        };
        let line = w.line()?;
        let pid: u32 = line
            .strip_prefix("ready ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| anyhow!("{name} said {line:?}, expected `ready PID`"))?;
        if pid != w.proc.pid() {
            bail!("{name} reported pid {pid} but runs as {}", w.proc.pid());
        }
        Ok(w)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .with_context(|| format!("reading from {}", self.proc.name))?;
        if line.is_empty() {
            let why = self
                .proc
                .wait(Duration::from_secs(5))
                .map_or_else(|e| e.to_string(), |e| e.describe());
            bail!("{} closed its output early ({why})", self.proc.name);
        }
        Ok(line)
    }

    /// Let it run.
    pub fn go(&mut self) -> Result<()> {
        let mut stdin = self.stdin.take().context("go sent twice")?;
        stdin
            .write_all(b"go\n")
            .with_context(|| format!("writing to {}", self.proc.name))?;
        Ok(())
    }

    /// Its JSON result line, once it has exited successfully.
    pub fn result(&mut self, limit: Duration) -> Result<serde_json::Value> {
        let line = self.line()?;
        let exit = self.proc.wait(limit)?;
        if !exit.success() {
            bail!("{} failed ({})", self.proc.name, exit.describe());
        }
        serde_json::from_str(&line).with_context(|| format!("{} printed {line:?}", self.proc.name))
    }
}

/// Runs that started while a tracer this harness did not start was running (another
/// engineer's cowtrace or bpftrace): its programs run on every fault too.
static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
static FOREIGN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
static FOREIGN_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Call at the start of every run, before the run's own tracer is started: notes any
/// cowtrace or bpftrace already running (necessarily someone else's).
pub fn note_foreign_tracers() {
    use std::sync::atomic::Ordering::Relaxed;
    RUNS.fetch_add(1, Relaxed);
    let ps = crate::util::output(Command::new("ps").args(["-eo", "pid,args"])).unwrap_or_default();
    let found: Vec<String> = ps
        .lines()
        .filter(|l| super::report::is_tracer(l))
        .map(|l| {
            // Without the pid, so the same command seen in many runs is listed once.
            let cmd = l.trim().split_once(' ').map_or(l, |(_, c)| c).trim();
            cmd.chars().take(120).collect()
        })
        .collect();
    if found.is_empty() {
        return;
    }
    FOREIGN_RUNS.fetch_add(1, Relaxed);
    if let Ok(mut seen) = FOREIGN.lock() {
        for f in found {
            if !seen.contains(&f) {
                seen.push(f);
            }
        }
    }
}

/// (runs, runs with a foreign tracer, the foreign commands seen).
pub fn foreign_tracers() -> (usize, usize, Vec<String>) {
    use std::sync::atomic::Ordering::Relaxed;
    let seen = FOREIGN.lock().map(|v| v.clone()).unwrap_or_default();
    (RUNS.load(Relaxed), FOREIGN_RUNS.load(Relaxed), seen)
}

/// A fresh private directory from a `...XXXXXX` template, removed (with its contents)
/// on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(template: &str) -> Result<TempDir> {
        let mut buf = CString::new(template)?.into_bytes_with_nul();
        // SAFETY: buf is a writable NUL-terminated template that outlives the call.
        let p = unsafe { libc::mkdtemp(buf.as_mut_ptr().cast()) };
        if p.is_null() {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("mkdtemp {template}"));
        }
        buf.pop();
        Ok(TempDir(PathBuf::from(String::from_utf8(buf)?)))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            eprintln!("[bench] could not remove {}: {e}", self.0.display());
        }
    }
}

/// CPU time (user + system, all threads) consumed so far by a live process, in seconds,
/// from its CPU-time clock (ns resolution; /proc/PID/stat only has 10 ms ticks).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let mut clk: libc::clockid_t = 0;
    // SAFETY: clk is a valid out-pointer.
    let r = unsafe { libc::clock_getcpuclockid(pid as libc::pid_t, &mut clk) };
    if r != 0 {
        return Err(std::io::Error::from_raw_os_error(r))
            .with_context(|| format!("clock_getcpuclockid({pid})"));
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec.
    if unsafe { libc::clock_gettime(clk, &mut ts) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("CPU clock of pid {pid}"));
    }
    Ok(ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9)
}

/// A `kB` field of /proc/PID/status (`VmHWM`, `VmRSS`, `RssAnon`, ...), in bytes.
pub fn status_bytes(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_kb(&text, field)
        .map(|kb| kb * 1024)
        .with_context(|| format!("{path} has no {field} line"))
}

pub fn parse_status_kb(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.trim().strip_suffix("kB")?.trim().parse().ok()
    })
}

/// Resident bytes of a process's BPF map mappings (`anon_inode:bpf-map`: the mmapped
/// ring buffers), from /proc/PID/smaps.
pub fn bpf_map_rss(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(parse_smaps_rss(&text, "anon_inode:bpf"))
}

/// Sum of `Rss:` over the mappings whose header line ends with a name containing `name`.
pub fn parse_smaps_rss(text: &str, name: &str) -> u64 {
    let mut inside = false;
    let mut sum = 0;
    for l in text.lines() {
        let first = l.split_whitespace().next().unwrap_or("");
        // A mapping header starts with `start-end` in hex.
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            inside = l.contains(name);
        } else if inside && let Some(kb) = parse_status_kb(l, "Rss") {
            sum += kb * 1024;
        }
    }
    sum
}

/// Pids whose parent is `ppid` (CONFIG_PROC_CHILDREN is off here, so scan /proc).
pub fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if parse_stat_ppid(&stat) == Some(ppid) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// (user, system) CPU seconds of a live process, from /proc/PID/stat (10 ms ticks).
pub fn user_sys_seconds(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_stat_user_sys(&stat).with_context(|| format!("{path}: no utime/stime"))
}

/// Fields 14 and 15 of /proc/PID/stat, in seconds (USER_HZ is 100 on Linux).
pub fn parse_stat_user_sys(stat: &str) -> Option<(f64, f64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut f = rest.split_whitespace().skip(11);
    let u: f64 = f.next()?.parse().ok()?;
    let s: f64 = f.next()?.parse().ok()?;
    Some((u / 100.0, s / 100.0))
}

/// Field 4 of /proc/PID/stat (after the parenthesised comm, which may hold spaces).
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let s = "Name:\tcowtrace\nVmHWM:\t   79640 kB\nVmRSS:\t   50456 kB\n";
        assert_eq!(parse_status_kb(s, "VmHWM"), Some(79640));
        assert_eq!(parse_status_kb(s, "VmRSS"), Some(50456));
        assert_eq!(parse_status_kb(s, "VmSwap"), None);
    }

    #[test]
    fn smaps_rss_of_named_mappings() {
        let s = "\
55843eefd000-558440d79000 rw-p 00000000 00:00 0                          [heap]
Size:              31216 kB
Rss:               20000 kB
7f9f33793000-7f9f34794000 r--s 00001000 00:10 1038                       anon_inode:bpf-map
Size:              16388 kB
Rss:                8196 kB
Pss:                8196 kB
7f9f34b3d000-7f9f34b3e000 rw-s 00000000 00:10 1038                       anon_inode:bpf-map
Rss:                   4 kB
VmFlags: rd wr sh mr mw me ms
";
        assert_eq!(parse_smaps_rss(s, "anon_inode:bpf"), 8200 * 1024);
    }

    #[test]
    fn stat_user_sys() {
        let stat = "42 (cow trace) S 1 42 42 0 -1 4194560 100 0 0 0 15 12 0 0 20 0 1 0 99 0";
        assert_eq!(parse_stat_user_sys(stat), Some((0.15, 0.12)));
    }

    #[test]
    fn stat_ppid_with_spaces_in_comm() {
        assert_eq!(
            parse_stat_ppid("123 (redis server) S 77 123 123 0"),
            Some(77)
        );
        assert_eq!(parse_stat_ppid("garbage"), None);
    }
}
