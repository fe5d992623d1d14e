//! What the two workloads share (`mod common;` in `cowload.rs` and `cowbench.rs`; a
//! directory without `main.rs` is not an example of its own): the command-line walk, the
//! `ready PID` / go / one JSON line protocol, memory regions, forked children and
//! waiting for them, and a save-like file write.
//!
//! Exit statuses, the one convention of both workloads:
//! - The workload: 0 after printing its JSON line on stdout; 1 on an error (message on
//!   stderr); 2 on bad arguments (message and usage on stderr). [`main`] does this.
//! - A forked child: 0 when its work is done; 1 when it failed (message on stderr).
//!   [`fork_child`] turns the child's `Res` into that status and [`wait_ok`] insists on
//!   0, so a failed child fails the workload.
//!
//! Every forked child sets `PR_SET_PDEATHSIG`: a test or harness that kills the workload
//! never leaves a child behind, still holding memory or writing on. Children run only
//! async-signal-safe code and leave with `_exit`, never by returning into Rust (that
//! would run the parent's exit path twice). The workloads are single-threaded, so the
//! few allocations a child makes (a path, an error message) are safe too.

// Each workload compiles its own copy of this module and uses only part of it.
#![allow(dead_code)]

use std::ffi::CString;
use std::io::{BufRead as _, Write as _};
use std::ptr;
use std::sync::OnceLock;

pub const MIB: usize = 1 << 20;
const HUGE: usize = 2 * MIB;

pub type Res<T> = Result<T, String>;

/// The workload's name, for messages (children's included).
static NAME: OnceLock<&'static str> = OnceLock::new();

fn name() -> &'static str {
    NAME.get().copied().unwrap_or("workload")
}

/// Parse the arguments, run, print the JSON line, and exit with the status of the
/// convention above.
pub fn main<A>(
    name: &'static str,
    usage: &str,
    parse: impl FnOnce() -> Res<A>,
    run: impl FnOnce(&A) -> Res<String>,
) -> ! {
    let _ = NAME.set(name);
    let args = match parse() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{name}: {msg}");
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            std::process::exit(0);
        }
        Err(msg) => {
            eprintln!("{name}: {msg}");
            std::process::exit(1);
        }
    }
}

/// Walk the command line: `set(flag, value)` for each `--flag value` pair, and
/// `set(flag, "")` for a flag listed in `switches` (which takes no value). `-h`/`--help`
/// prints `usage` and exits 0.
pub fn parse_flags(
    usage: &str,
    switches: &[&str],
    mut set: impl FnMut(&str, &str) -> Res<()>,
) -> Res<()> {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{usage}");
            std::process::exit(0);
        }
        if switches.contains(&flag.as_str()) {
            set(&flag, "")?;
            continue;
        }
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        set(&flag, &val)?;
    }
    Ok(())
}

/// The value of a numeric flag.
pub fn num(flag: &str, val: &str) -> Res<usize> {
    val.parse::<usize>()
        .map_err(|_| format!("{flag}: not a number: {val}"))
}

/// `what: strerror(errno)`.
pub fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

pub fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps > 0 { ps as usize } else { 4096 }
}

/// CLOCK_MONOTONIC in ns: the clock of the tracers' timestamps, comparable across
/// processes (the bench harness adds up parallel runs).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn cstr(s: &str) -> Res<CString> {
    CString::new(s).map_err(|_| format!("path contains NUL: {s}"))
}

/// `1,2,3`: the inside of a JSON array of numbers.
pub fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

/// Print `ready <pid>`, then block until a line (or EOF) arrives on stdin: the test or
/// harness attaches its tracer in between. Returns our pid.
pub fn wait_go() -> Res<libc::pid_t> {
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    println!("ready {me}");
    std::io::stdout()
        .flush()
        .map_err(|e| format!("stdout: {e}"))?;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;
    Ok(me)
}

/// Transparent huge pages for an anonymous region.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Thp {
    /// Whatever the host's THP mode gives.
    Host,
    /// 2 MiB-aligned, with `MADV_HUGEPAGE`.
    Huge,
    /// `MADV_NOHUGEPAGE`: every page is one 4 KiB fault and one copy.
    Never,
}

/// A mapping the workload writes: `len` bytes at `base`, unmapped on drop.
pub struct Region {
    pub base: *mut u8,
    pub len: usize,
    ps: usize,
    /// The whole mapping (larger than `len` when it was over-mapped for alignment).
    map: *mut libc::c_void,
    map_len: usize,
}

impl Region {
    /// `mib` MiB of private anonymous memory; `populate` maps it with `MAP_POPULATE`.
    pub fn anon(mib: usize, thp: Thp, populate: bool) -> Res<Region> {
        let len = mib * MIB;
        // For THP, over-map by 2 MiB so the region can start on a 2 MiB boundary.
        let map_len = if thp == Thp::Huge { len + HUGE } else { len };
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(&format!("mmap {mib} MiB anonymous")));
        }
        let mut r = Region {
            base: p.cast(),
            len,
            ps: page_size(),
            map: p,
            map_len,
        };
        match thp {
            Thp::Host => {}
            Thp::Huge => {
                let off = (HUGE - (r.base as usize % HUGE)) % HUGE;
                // SAFETY: off < 2 MiB, and the mapping is len + 2 MiB long.
                r.base = unsafe { r.base.add(off) };
                // SAFETY: [base, base+len) lies inside the mapping.
                if unsafe { libc::madvise(r.base.cast(), len, libc::MADV_HUGEPAGE) } != 0 {
                    return Err(os_err("madvise(MADV_HUGEPAGE)"));
                }
            }
            Thp::Never => {
                // SAFETY: [base, base+len) is our mapping.
                if unsafe { libc::madvise(r.base.cast(), len, libc::MADV_NOHUGEPAGE) } != 0 {
                    return Err(os_err("madvise(MADV_NOHUGEPAGE)"));
                }
            }
        }
        Ok(r)
    }

    /// A new `mib` MiB file at `path`, mapped MAP_SHARED.
    pub fn shared_file(path: &str, mib: usize) -> Res<Region> {
        let len = mib * MIB;
        let c = cstr(path)?;
        // SAFETY: plain syscalls with a valid NUL-terminated path.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
                0o644,
            )
        };
        if fd < 0 {
            return Err(os_err(&format!("open {path}")));
        }
        // SAFETY: fd is ours.
        if unsafe { libc::ftruncate(fd, len as libc::off_t) } != 0 {
            let e = os_err(&format!("ftruncate {path}"));
            close(fd);
            return Err(e);
        }
        // SAFETY: a new shared mapping of our file.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            let e = os_err(&format!("mmap {path}"));
            close(fd);
            return Err(e);
        }
        // The mapping keeps the file referenced; the fd is no longer needed.
        close(fd);
        Ok(Region {
            base: p.cast(),
            len,
            ps: page_size(),
            map: p,
            map_len: len,
        })
    }

    pub fn pages(&self) -> usize {
        self.len / self.ps
    }

    /// Write one byte in each of pages 0..k. Volatile, so the compiler cannot drop or
    /// merge the stores: each one is a fault the kernel must handle (and a tracer see).
    pub fn write_pages(&self, k: usize, val: u8) {
        for i in 0..k.min(self.pages()) {
            // SAFETY: i < pages(), so the offset is inside the mapping.
            unsafe { ptr::write_volatile(self.base.add(i * self.ps), val) };
        }
    }

    /// Write dirty pages back and write-protect them, so the next write to each faults.
    pub fn msync(&self) -> Res<()> {
        // SAFETY: msync over our own mapping.
        if unsafe { libc::msync(self.base.cast(), self.len, libc::MS_SYNC) } != 0 {
            return Err(os_err("msync"));
        }
        Ok(())
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it after drop.
        unsafe { libc::munmap(self.map, self.map_len) };
    }
}

pub fn close(fd: libc::c_int) {
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
}

/// pipe(2): (read end, write end).
pub fn pipe() -> Res<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_err("pipe"));
    }
    Ok((fds[0], fds[1]))
}

/// A pipe whose read end children block on; closing the write end releases them all.
pub struct Gate {
    rfd: libc::c_int,
    wfd: libc::c_int,
}

impl Gate {
    pub fn new() -> Res<Gate> {
        let (rfd, wfd) = pipe()?;
        Ok(Gate { rfd, wfd })
    }

    /// In a child: drop our copy of the write end (or EOF would never come), then block
    /// until the parent closes its copy.
    pub fn child_wait(&self) -> Res<()> {
        close(self.wfd);
        let mut b = 0u8;
        // SAFETY: reading one byte into our own buffer from our own fd.
        while unsafe { libc::read(self.rfd, (&raw mut b).cast(), 1) } < 0 {
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(os_err("read gate"));
            }
        }
        Ok(())
    }

    /// In the parent: let every child go.
    pub fn release(self) {
        close(self.wfd);
        close(self.rfd);
    }
}

/// fork(); the child dies with the parent (`PR_SET_PDEATHSIG`), runs `f` and `_exit`s
/// with 0 if `f` succeeded, 1 (after a message on stderr) if not. It never returns into
/// Rust.
pub fn fork_child(f: impl FnOnce() -> Res<()>) -> Res<libc::pid_t> {
    // Flush first so buffered stdout is not duplicated into the child.
    let _ = std::io::stdout().flush();
    // SAFETY: the process is single-threaded; the child only runs `f`, then `_exit`s.
    match unsafe { libc::fork() } {
        -1 => Err(os_err("fork")),
        0 => {
            // SAFETY: prctl with constant arguments.
            let status = if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) } != 0 {
                eprintln!("{} child: {}", name(), os_err("prctl(PR_SET_PDEATHSIG)"));
                1
            } else {
                match f() {
                    Ok(()) => 0,
                    Err(msg) => {
                        eprintln!("{} child: {msg}", name());
                        1
                    }
                }
            };
            // SAFETY: leave without running Rust's exit path (atexit, stdout flush).
            unsafe { libc::_exit(status) }
        }
        pid => Ok(pid),
    }
}

/// waitpid() a child and insist that it exited with status 0.
pub fn wait_ok(pid: libc::pid_t) -> Res<()> {
    let mut status = 0;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(os_err(&format!("waitpid {pid}")));
        }
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        return Err(format!("child {pid} failed (wait status {status:#x})"));
    }
    Ok(())
}

/// Write exactly `bytes` bytes of `buf` to `fd`, one write() call of at most `buf.len()`
/// bytes at a time (the last one shorter). Returns the number of calls.
pub fn write_chunks(fd: libc::c_int, bytes: usize, buf: &[u8]) -> Res<u64> {
    let mut calls = 0u64;
    let mut left = bytes;
    while left > 0 {
        // SAFETY: writing from our own buffer, within bounds, to our own fd.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len().min(left)) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(os_err("write"));
        }
        calls += 1;
        left -= n as usize;
    }
    Ok(calls)
}

/// What [`save_like_write`] did: its write() calls, timed with [`mono_ns`].
pub struct Written {
    pub t0_ns: u64,
    pub t1_ns: u64,
    pub calls: u64,
}

/// What a Redis save child does with its file: write exactly `bytes` bytes to
/// `dir/temp-<pid>.dat` in write() calls of `buf.len()` bytes, fsync, close, rename to
/// `dir/final-<pid>.dat` (`pid` being the caller's).
pub fn save_like_write(dir: &str, bytes: usize, buf: &[u8]) -> Res<Written> {
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let temp = cstr(&format!("{dir}/temp-{pid}.dat"))?;
    let fin = cstr(&format!("{dir}/final-{pid}.dat"))?;
    // SAFETY (all syscalls below): valid paths, our own fd.
    let fd = unsafe {
        libc::open(
            temp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(os_err("open temp file"));
    }
    let t0_ns = mono_ns();
    let calls = write_chunks(fd, bytes, buf).inspect_err(|_| close(fd))?;
    let t1_ns = mono_ns();
    if unsafe { libc::fsync(fd) } != 0 {
        let e = os_err("fsync");
        close(fd);
        return Err(e);
    }
    if unsafe { libc::close(fd) } != 0 {
        return Err(os_err("close"));
    }
    if unsafe { libc::rename(temp.as_ptr(), fin.as_ptr()) } != 0 {
        return Err(os_err("rename"));
    }
    Ok(Written {
        t0_ns,
        t1_ns,
        calls,
    })
}
