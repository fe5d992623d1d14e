//! The cost of one COW copy fault on this host, measured once per run on a helper thread
//! (issue 15 item 5), and each session's main-thread estimate built from it.
//!
//! The helper maps 512 private pages, touches them, forks a child that only waits on a
//! pipe (so the pages are shared and write-protected), and writes one byte to each page:
//! 512 copy faults, timed with the thread's CPU clock. The median of 5 rounds, ~8 ms in
//! all. The agent's own process is never traced (`AGENT_TGID`), so this is the untraced
//! price of a copy: the tracepoint programs' own cost per fault is not included.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::events::latency;
use crate::trace::schema::SessionEnd;

const PAGES: usize = 512;
const ROUNDS: usize = 5;

/// How the per-copy cost was obtained, as the trace and the diagnosis say it.
pub const BASIS: &str = "measured at start-up by the agent on this host (untraced 4 KiB copies)";

static PER_COPY_NS: OnceLock<Result<u64, String>> = OnceLock::new();

/// Start the measurement on its own thread; its result is read at sessions' ends.
pub fn start() {
    let spawned = std::thread::Builder::new()
        .name("cowtrace-calib".into())
        .spawn(|| {
            let r = measure();
            match &r {
                Ok(ns) => log::info!("one COW copy costs {ns} ns on this host (untraced)"),
                Err(e) => log::warn!("no main-thread COW estimate: the calibration failed: {e}"),
            }
            let _ = PER_COPY_NS.set(r);
        });
    if let Err(e) = spawned {
        log::warn!("no main-thread COW estimate: could not start its calibration thread: {e}");
    }
}

/// The measured per-copy cost, once the helper has finished (`None` before, or if it
/// failed: sessions then carry no estimate).
pub fn per_copy_ns() -> Option<u64> {
    PER_COPY_NS.get().and_then(|r| r.as_ref().ok().copied())
}

/// The fork blocks of running sessions, for their ends.
#[derive(Default)]
pub struct Latency {
    fork_us: HashMap<u64, f64>,
}

impl Latency {
    pub fn start(&mut self, session: u64, fork_us: Option<f64>) {
        if let Some(us) = fork_us {
            self.fork_us.insert(session, us);
        }
    }

    /// `e.main_thread`, from its cause split (or all parent copies without one).
    pub fn end(&mut self, e: &mut SessionEnd) {
        let fork_us = self.fork_us.remove(&e.session);
        let Some(ns) = per_copy_ns() else {
            return;
        };
        let copies = latency::main_thread_copies(e.causes.as_ref()).unwrap_or(e.cow.parent_pages);
        e.main_thread = Some(latency::estimate(copies, ns, BASIS, e.duration_ms, fork_us));
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

/// The median cost of one copy fault, in nanoseconds, measured in a single-threaded
/// child: in the agent's own multithreaded process every copy would also wait for TLB
/// shootdowns to its busy threads' CPUs (measured 18.9 µs a copy at start-up against
/// 2.7 µs single-threaded), which a mostly single-threaded server does not pay.
fn measure() -> Result<u64, String> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the child makes only system calls and stack work (no allocation: a copy of
    // a multithreaded process) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let ns = measure_here().unwrap_or(0);
        // SAFETY: async-signal-safe calls on this process's own descriptors.
        unsafe {
            libc::write(fds[1], (&ns as *const u64).cast(), 8);
            libc::_exit(0);
        }
    }
    // SAFETY: our own write end; the child keeps its copy.
    unsafe { libc::close(fds[1]) };
    let mut ns = 0u64;
    // SAFETY: reads at most 8 bytes into `ns`.
    let n = unsafe { libc::read(fds[0], (&mut ns as *mut u64).cast(), 8) };
    // SAFETY: our own read end, no longer used.
    unsafe { libc::close(fds[0]) };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    let mut status = 0;
    // SAFETY: `pid` is our child; `status` is valid for the call.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if n != 8 || ns == 0 {
        return Err("the calibration child measured nothing".into());
    }
    Ok(ns)
}

/// `measure`'s work, in the calling (single-threaded) process.
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
    // SAFETY: the child of this multithreaded process calls only async-signal-safe
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
    fn a_copy_costs_between_100_ns_and_1_ms() {
        let ns = measure().expect("calibration");
        eprintln!("one untraced COW copy: {ns} ns");
        assert!((100..1_000_000).contains(&ns), "{ns} ns per copy");
    }
}
