//! The cost of one COW copy fault on this host, measured once per run (issue 15 item 5),
//! and each session's main-thread estimate built from it.
//!
//! A helper process maps 4096 private pages (16 MiB), touches them, forks a child that only waits
//! on a pipe (so the pages are shared and write-protected), and writes one byte to each
//! page: 4096 copy faults, timed with its thread CPU clock. The median of 3 rounds.
//!
//! Two figures, from two helpers, both single-threaded forks of the agent (in the
//! agent's own multithreaded process every copy would also wait for TLB shootdowns to
//! its busy threads: 18.9 µs a copy against 2.7 µs):
//! * **traced** (`per_copy_ns`, the one the estimate uses): the helper is added to the
//!   traced set as a root once the programs are attached, the way `-p PID` adds a
//!   server, so its forks open real sessions and its copies take the same kernel path
//!   as a traced server's (the pre-filter, `TRACED`, the chain walk to its live session,
//!   the counters, `PENDING`; the cause split too when it is on). That is what the
//!   traced server pays per copy, cowtrace's own share included: the untraced figure
//!   was 18-65% under cowload's own timing of its traced copies. The helper's sessions
//!   are the agent's own and are never shown (`events::hidden`).
//! * **untraced** (`untraced_per_copy_ns`): a second helper that is never traced, started
//!   before the programs load; the difference is cowtrace's own cost per copy.

use std::collections::HashMap;
use std::sync::{
    Mutex, OnceLock,
    atomic::{AtomicBool, Ordering},
};
use std::time::Instant;

use crate::events::latency;
use crate::kernel::maps::KernelMaps;
use crate::trace::schema::SessionEnd;

/// 16 MiB a round: more than a core's L2 (4 MiB here), so the copies read their source
/// from L3 or memory like a server's do; with 512 pages (2 MiB, L2-hot) a copy cost
/// 2.9-3.4 µs while cowload's cold copies cost 4.0-6.3 µs on the busy test VM.
const PAGES: usize = 4096;
const ROUNDS: usize = 3;

/// How the per-copy cost was obtained, as the trace and the diagnosis say it.
pub const BASIS_TRACED: &str = "measured at start-up by the agent on this host: traced 4 KiB copies of 16 MiB, cowtrace's own cost included";
/// The same when only the untraced figure is there (the traced helper failed).
pub const BASIS_UNTRACED: &str = "measured at start-up by the agent on this host: untraced 4 KiB copies, without cowtrace's own cost per copy (an underestimate)";

/// The newest traced per-copy cost (a failure is kept only while there is no figure),
/// set by each traced helper's thread; and whether a traced helper is running.
static TRACED_NS: Mutex<Option<Result<u64, String>>> = Mutex::new(None);
static TRACED_BUSY: AtomicBool = AtomicBool::new(false);
/// The untraced per-copy cost, set once by its helper's thread.
static UNTRACED_NS: OnceLock<Result<u64, String>> = OnceLock::new();

/// Free `TRACED` and `SESSIONS` entries a traced helper needs to start (its rounds'
/// sessions wait for the next tick to be reaped), with a margin for the servers.
const HELPER_ROOM: u64 = 4 * ROUNDS as u64;

fn traced_now() -> std::sync::MutexGuard<'static, Option<Result<u64, String>>> {
    // A thread that panicked while holding it left a plain value: use it.
    TRACED_NS.lock().unwrap_or_else(|e| e.into_inner())
}

fn store_traced(r: Result<u64, String>) {
    match &r {
        Ok(ns) => log::debug!("one COW copy costs {ns} ns on this host (traced)"),
        Err(e) => log::warn!("the traced COW copy calibration failed: {e}"),
    }
    let mut g = traced_now();
    if !(matches!(*g, Some(Ok(_))) && r.is_err()) {
        *g = Some(r);
    }
    drop(g);
    TRACED_BUSY.store(false, Ordering::Release);
}

fn store(cell: &'static OnceLock<Result<u64, String>>, what: &str, r: Result<u64, String>) {
    match &r {
        Ok(ns) => log::info!("one COW copy costs {ns} ns on this host ({what})"),
        Err(e) => log::warn!("the {what} COW copy calibration failed: {e}"),
    }
    let _ = cell.set(r);
}

/// Measure the untraced cost on a helper thread (call before the programs load: the
/// figure is ready by the time they are attached).
pub fn start_untraced() {
    let spawned = std::thread::Builder::new()
        .name("cowtrace-calib".into())
        .spawn(|| {
            let r = Helper::fork().and_then(|h| {
                h.go()?;
                h.result()
            });
            store(&UNTRACED_NS, "untraced", r);
        });
    if let Err(e) = spawned {
        log::warn!("no untraced COW copy calibration: could not start its thread: {e}");
    }
}

/// Measure the traced cost: fork the helper, add it to the traced set as a root, let it
/// run, and collect its figure on a thread. Called once the programs are attached.
/// Returns the helper's pid, whose sessions the agent must hide
/// (`events::hidden`); `None` when it could not be started or one is still running.
pub fn start_traced(maps: &mut KernelMaps) -> Option<u32> {
    // The helper takes a `TRACED` entry and, round after round, `SESSIONS` entries
    // until they are reaped: never where the servers' own forks would then fail to
    // insert (a map shrunk with COWTRACE_MAX_ENTRIES, or nearly full); the untraced
    // figure, labelled so, stands in until there is room.
    let (traced_room, sessions_room) = maps.room();
    if traced_room < HELPER_ROOM || sessions_room < HELPER_ROOM {
        log::debug!(
            "no traced COW calibration now: room for {traced_room} traced processes and {sessions_room} sessions only"
        );
        let mut g = traced_now();
        if g.is_none() {
            *g = Some(Err(
                "no room in the kernel's maps for the traced helper".into()
            ));
        }
        return None;
    }
    if TRACED_BUSY.swap(true, Ordering::AcqRel) {
        return None;
    }
    let h = match Helper::fork() {
        Ok(h) => h,
        Err(e) => {
            store_traced(Err(e));
            return None;
        }
    };
    let pid = h.pid;
    if let Err(e) = maps.add_root(pid, 0) {
        // Dropping the helper closes its pipe: it exits without measuring.
        drop(h);
        store_traced(Err(format!("adding it to the traced set: {e}")));
        return None;
    }
    if let Err(e) = h.go() {
        drop(h);
        store_traced(Err(e));
        return Some(pid);
    }
    let spawned = std::thread::Builder::new()
        .name("cowtrace-calib".into())
        .spawn(move || {
            let r = h.result();
            store_traced(r);
        });
    if let Err(e) = spawned {
        // The closure, and the helper with it, was dropped: it exits unmeasured.
        store_traced(Err(format!("could not start its thread: {e}")));
    }
    Some(pid)
}

/// Wait up to `limit` for the traced figure (~50 ms), so that a session that ends in the
/// first moments of the run has it too; past the limit it arrives when it arrives.
pub fn wait_traced(limit: std::time::Duration) {
    let t0 = std::time::Instant::now();
    while traced_now().is_none() && t0.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Wait up to `limit` for the untraced figure (~50 ms from the run's start): the two
/// helpers must not copy at the same time (2 vCPUs: each slows the other), nor while the
/// servers' first saves are traced.
pub fn wait_untraced(limit: std::time::Duration) {
    let t0 = std::time::Instant::now();
    while UNTRACED_NS.get().is_none() && t0.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Wait up to `limit` for a running traced helper to exit (~50 ms), so that the run's
/// end finds its kernel entries gone or reapable: `end.maps` then counts the servers'
/// entries only.
pub fn wait_idle(limit: std::time::Duration) {
    let t0 = std::time::Instant::now();
    while TRACED_BUSY.load(Ordering::Acquire) && t0.elapsed() < limit {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The per-copy cost for the estimate and its basis: the traced figure; the untraced one
/// (labelled so) if the traced helper failed; `None` before either is ready.
pub fn per_copy() -> Option<(u64, &'static str)> {
    choose(traced_now().as_ref(), untraced_ns())
}

/// `per_copy`'s rule over the two results so far (pure: unit-tested).
fn choose(
    traced: Option<&Result<u64, String>>,
    untraced: Option<u64>,
) -> Option<(u64, &'static str)> {
    match traced {
        Some(Ok(ns)) => Some((*ns, BASIS_TRACED)),
        Some(Err(_)) => untraced.map(|ns| (ns, BASIS_UNTRACED)),
        // Still measuring: never the untraced figure under the traced label.
        None => None,
    }
}

/// The untraced per-copy cost, once measured.
pub fn untraced_ns() -> Option<u64> {
    UNTRACED_NS.get().and_then(|r| r.as_ref().ok().copied())
}

/// The fork blocks of running sessions, for their ends.
#[derive(Default)]
pub struct Latency {
    fork_us: HashMap<u64, f64>,
    /// The hooks that time the main thread's copies in the kernel, when the COW method
    /// sees the fault handler return; `None` on the tracepoint path (estimates).
    timed: Option<&'static str>,
    /// The kernel's figures per session child: nanoseconds and copies, and when they
    /// were read (a fork that opens no session, a daemonizing one, never takes its own).
    measured: HashMap<u32, (u64, u64, Instant)>,
}

/// How long a session's figures wait for its end record (an AOF rewrite's end waits up
/// to 3 s for the server's rename).
const MEASURED_KEEP: std::time::Duration = std::time::Duration::from_secs(60);

impl Latency {
    pub fn set_timed(&mut self, hooks: Option<&'static str>) {
        self.timed = hooks;
    }

    /// The kernel's `main_ns` and `main_copies` of session `child`, newest read wins.
    pub fn measured(&mut self, child: u32, ns: u64, copies: u64) {
        if self.timed.is_some() {
            let now = Instant::now();
            self.measured
                .retain(|_, v| now.duration_since(v.2) < MEASURED_KEEP);
            self.measured.insert(child, (ns, copies, now));
        }
    }

    pub fn start(&mut self, session: u64, fork_us: Option<f64>) {
        if let Some(us) = fork_us {
            self.fork_us.insert(session, us);
        }
    }

    /// `e.main_thread`: the kernel's timing where the COW method has it, else the
    /// estimate from its cause split (or all parent copies without one).
    pub fn end(&mut self, e: &mut SessionEnd) {
        let fork_us = self.fork_us.remove(&e.session);
        if let Some(hooks) = self.timed
            && let Some((ns, copies, _)) = self.measured.remove(&e.child_pid)
        {
            let mut m = latency::measured(copies, ns, hooks, e.duration_ms, fork_us);
            m.untraced_per_copy_ns = untraced_ns();
            e.main_thread = Some(m);
            return;
        }
        // No kernel figure (a session the full map never held): the estimate, from the
        // untraced figure where no traced helper runs.
        let figure = match self.timed {
            Some(_) => untraced_ns().map(|ns| (ns, BASIS_UNTRACED)),
            None => per_copy(),
        };
        let Some((ns, basis)) = figure else {
            return;
        };
        let copies = latency::main_thread_copies(e.causes.as_ref()).unwrap_or(e.cow.parent_pages);
        let mut m = latency::estimate(copies, ns, basis, e.duration_ms, fork_us);
        m.untraced_per_copy_ns = untraced_ns();
        e.main_thread = Some(m);
    }
}

fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// A forked, single-threaded helper that measures once it is told to go: a pipe to tell
/// it (closed unwritten: it exits without measuring) and a pipe for its figure.
struct Helper {
    pid: u32,
    go_fd: i32,
    result_fd: i32,
}

/// The byte that starts a helper's measurement.
const GO: u8 = b'g';

impl Helper {
    fn fork() -> Result<Self, String> {
        let (go_r, go_w) = pipe()?;
        let (res_r, res_w) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                close(go_r);
                close(go_w);
                return Err(e);
            }
        };
        // SAFETY: the child makes only system calls and stack work until it leaves with
        // _exit (a fork of a multithreaded process: no lock another thread held).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // Its copies of the agent's ends: the go pipe must read EOF when the agent
            // closes its end unwritten.
            close(go_w);
            close(res_r);
            let mut b = 0u8;
            // SAFETY: async-signal-safe calls on this process's own descriptors.
            let n = unsafe { libc::read(go_r, (&mut b as *mut u8).cast(), 1) };
            let ns = if n == 1 && b == GO {
                measure_here().unwrap_or(0)
            } else {
                0
            };
            // SAFETY: as above; _exit never returns.
            unsafe {
                libc::write(res_w, (&ns as *const u64).cast(), 8);
                libc::_exit(0);
            }
        }
        close(go_r);
        close(res_w);
        if pid < 0 {
            let e = std::io::Error::last_os_error();
            close(go_w);
            close(res_r);
            return Err(format!("fork: {e}"));
        }
        Ok(Self {
            pid: pid as u32,
            go_fd: go_w,
            result_fd: res_r,
        })
    }

    /// Tell the helper to measure.
    fn go(&self) -> Result<(), String> {
        // SAFETY: writes one byte from a local to our own pipe's write end.
        let n = unsafe { libc::write(self.go_fd, (&GO as *const u8).cast(), 1) };
        if n != 1 {
            return Err(format!(
                "starting the helper: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    }

    /// Wait for the helper's figure (a few ms to a few tens of ms).
    fn result(self) -> Result<u64, String> {
        let mut ns = 0u64;
        // SAFETY: reads at most 8 bytes into `ns`.
        let n = unsafe { libc::read(self.result_fd, (&mut ns as *mut u64).cast(), 8) };
        if n != 8 || ns == 0 {
            return Err("the calibration helper measured nothing".into());
        }
        Ok(ns)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        close(self.go_fd);
        close(self.result_fd);
        let mut status = 0;
        // SAFETY: `pid` is our child; `status` is valid for the call. Its go pipe is
        // closed above, so it exits at once if it had not started.
        unsafe { libc::waitpid(self.pid as i32, &mut status, 0) };
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> Result<(i32, i32), String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    Ok((fds[0], fds[1]))
}

fn close(fd: i32) {
    // SAFETY: `fd` is one of this module's own pipe ends, closed once.
    unsafe { libc::close(fd) };
}

/// A helper's work, in the calling (single-threaded) process.
fn measure_here() -> Result<u64, String> {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
    let len = PAGES * ps;
    // SAFETY: a fresh private anonymous mapping; unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(format!("mmap: {}", std::io::Error::last_os_error()));
    }
    // 4 KiB copies, as the servers' are since 5.8 (a shared THP is split first). A
    // refusal only leaves the host's THP mode in place.
    // SAFETY: the range is the mapping above.
    unsafe { libc::madvise(base, len, libc::MADV_NOHUGEPAGE) };
    let touch = |v: u8| {
        for i in 0..PAGES {
            // SAFETY: inside the mapping above, which lives until the munmap below.
            unsafe { std::ptr::write_volatile((base as *mut u8).add(i * ps), v) };
        }
    };
    touch(1);
    let mut samples = [0u64; ROUNDS];
    let mut err = None;
    for (round, slot) in samples.iter_mut().enumerate() {
        match copy_round(|| touch(2 + round as u8)) {
            Ok(ns) => *slot = ns / PAGES as u64,
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    // SAFETY: the mapping above, no longer used.
    unsafe { libc::munmap(base, len) };
    if let Some(e) = err {
        return Err(e);
    }
    latency::median(&mut samples).ok_or_else(|| "no round ran".into())
}

/// Fork a child that holds the pages shared until the pipe closes, run `write`, and
/// return the thread CPU time it took.
fn copy_round(write: impl Fn()) -> Result<u64, String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the child (of the single-threaded helper) calls only async-signal-safe
    // functions (close, read, _exit) before it exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let mut b = 0u8;
        // SAFETY: async-signal-safe calls on this process's own descriptors.
        unsafe {
            libc::close(fds[1]);
            libc::read(fds[0], (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closing this process's own read end (the child keeps its copy).
    unsafe { libc::close(fds[0]) };
    let t0 = thread_cpu_ns();
    if pid > 0 {
        write();
    }
    let took = thread_cpu_ns().saturating_sub(t0);
    // SAFETY: the write end is ours; closing it lets the child's read return.
    unsafe { libc::close(fds[1]) };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for the call.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traced_figure_is_used_and_the_untraced_one_only_labelled_as_such() {
        assert_eq!(
            choose(Some(&Ok(3_100)), Some(2_300)),
            Some((3_100, BASIS_TRACED))
        );
        assert_eq!(
            choose(Some(&Err("fork".into())), Some(2_300)),
            Some((2_300, BASIS_UNTRACED))
        );
        assert_eq!(choose(Some(&Err("fork".into())), None), None);
        assert_eq!(choose(None, Some(2_300)), None);
        assert!(BASIS_UNTRACED.contains("without cowtrace"));
    }

    #[test]
    fn a_copy_costs_between_100_ns_and_1_ms() {
        let h = Helper::fork().expect("fork the helper");
        h.go().expect("start it");
        let ns = h.result().expect("calibration");
        eprintln!("one untraced COW copy: {ns} ns");
        assert!((100..1_000_000).contains(&ns), "{ns} ns per copy");
    }
}
