//! cowbench: the timed workload of `cargo xtask bench` (see xtask/src/bench/).
//!
//! ```text
//! cowbench --mode cow   [--mib N] [--reps R] [--touch-mib T] [--write-mib W --dir D]
//! cowbench --mode write --dir D [--bytes B] [--chunk C]
//! ```
//!
//! Protocol (the same as `cowload`): set up, print `ready <pid>`, block until a line (or
//! EOF) arrives on stdin (the harness attaches a tracer in between), run, wait for every
//! child, print one JSON line, exit 0. Errors: message on stderr, exit 1; bad arguments:
//! usage on stderr, exit 2.
//!
//! `cow`: N MiB of private anonymous memory is populated before `ready`. After `go`,
//! optionally T MiB of fresh memory is touched once (one zero-fill fault per page, timed:
//! the cost of ordinary page faults), then R times: fork a child that only waits, rewrite
//! one byte of every page of the N MiB (one copy-on-write copy per page, timed), release
//! the child, reap it; then optionally writes W MiB to `D/cowbench-<pid>.dat` itself in
//! 4 KiB write() calls (timed: the cost of ordinary syscalls) and removes the file.
//! Only the loops are timed, with CLOCK_MONOTONIC (and, alongside,
//! the thread's CPU time, which a busy machine's preemptions do not inflate); the JSON
//! line carries the raw start/end timestamps so the harness can add up parallel runs.
//!
//! `write`: fork a child that writes exactly B bytes to `D/temp-<pid>.dat` in C-byte
//! write() calls (timed), fsyncs, closes and renames it to `D/final-<pid>.dat`, like a
//! Redis save child. The parent removes the final file after reaping the child.
//!
//! Transparent huge pages are disabled on every region (`MADV_NOHUGEPAGE`), so each
//! page is one 4 KiB fault and one copy whatever the host's THP mode.
//!
//! Forked children only run async-signal-safe code and leave with `_exit`.

use std::io::{BufRead as _, Write as _};
use std::ptr;

const USAGE: &str = "\
usage: cowbench --mode cow [--mib N] [--reps R] [--touch-mib T] [--write-mib W --dir D]
       cowbench --mode write --dir D [--bytes B] [--chunk C]
  --mib N        region rewritten after each fork, in MiB (default 128)
  --reps R       fork + rewrite rounds (default 1)
  --touch-mib T  fresh memory touched once before the rounds, in MiB (default 0)
  --write-mib W  cow mode: bytes written by the process itself after the rounds (default 0)
  --dir D        directory written to (write mode, and cow mode with --write-mib)
  --bytes B      bytes the write child writes (default 256 MiB)
  --chunk C      bytes per write() call (default 4096)";

const MIB: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Cow,
    Write,
}

struct Args {
    mode: Mode,
    mib: usize,
    reps: usize,
    touch_mib: usize,
    write_mib: usize,
    dir: Option<String>,
    bytes: usize,
    chunk: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        mode: Mode::Cow,
        mib: 128,
        reps: 1,
        touch_mib: 0,
        write_mib: 0,
        dir: None,
        bytes: 256 * MIB,
        chunk: 4096,
    };
    let mut mode = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let val = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || -> Result<usize, String> {
            val.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {val}"))
        };
        match flag.as_str() {
            "--mode" => {
                mode = Some(match val.as_str() {
                    "cow" => Mode::Cow,
                    "write" => Mode::Write,
                    _ => return Err(format!("unknown mode {val}")),
                })
            }
            "--mib" => a.mib = num()?,
            "--reps" => a.reps = num()?,
            "--touch-mib" => a.touch_mib = num()?,
            "--write-mib" => a.write_mib = num()?,
            "--dir" => a.dir = Some(val),
            "--bytes" => a.bytes = num()?,
            "--chunk" => a.chunk = num()?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    a.mode = mode.ok_or("--mode is required")?;
    if a.mib == 0 || a.mib > 1 << 20 || a.touch_mib > 1 << 20 {
        return Err("--mib must be between 1 and 1048576 (--touch-mib at most that)".into());
    }
    if a.reps == 0 || a.reps > 1000 {
        return Err("--reps must be between 1 and 1000".into());
    }
    if a.chunk == 0 || a.bytes == 0 {
        return Err("--chunk and --bytes must be at least 1".into());
    }
    if (a.mode == Mode::Write || a.write_mib > 0) && a.dir.is_none() {
        return Err("--mode write and --write-mib need --dir".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("cowbench: {msg}");
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    match run(&args) {
        Ok(json) => {
            println!("{json}");
            std::process::exit(0);
        }
        Err(msg) => {
            eprintln!("cowbench: {msg}");
            std::process::exit(1);
        }
    }
}

type Res<T> = Result<T, String>;

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps > 0 { ps as usize } else { 4096 }
}

/// CLOCK_MONOTONIC in ns: the clock of the tracers' timestamps, comparable across
/// processes (the harness adds up parallel runs).
fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU time of the calling thread in ns (user + system: the kernel's fault handling,
/// tracer programs included, runs in the faulting thread). Unlike the wall clock it does
/// not count time the thread spent preempted by other work on a busy machine.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec; CLOCK_THREAD_CPUTIME_ID always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// A private anonymous mapping without THP.
struct Region {
    base: *mut u8,
    len: usize,
    ps: usize,
}

impl Region {
    fn map(mib: usize, populate: bool, ps: usize) -> Res<Region> {
        let len = mib * MIB;
        let flags =
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | if populate { libc::MAP_POPULATE } else { 0 };
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(os_err(&format!("mmap {mib} MiB")));
        }
        // SAFETY: [p, p+len) is our mapping. Before any page is present, so no huge page
        // is ever made for it.
        if unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) } != 0 {
            return Err(os_err("madvise(MADV_NOHUGEPAGE)"));
        }
        Ok(Region {
            base: p.cast(),
            len,
            ps,
        })
    }

    fn pages(&self) -> usize {
        self.len / self.ps
    }

    /// One volatile byte store per page: each is one fault the kernel must handle.
    fn write_pages(&self, val: u8) {
        for i in 0..self.pages() {
            // SAFETY: i < pages(), so the offset is inside the mapping.
            unsafe { ptr::write_volatile(self.base.add(i * self.ps), val) };
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: our own mapping; nothing refers to it after drop.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// fork(); the child runs `f` (which normally `_exit`s itself) and then `_exit(1)`s, so
/// it never returns into Rust's exit path.
fn fork_child(f: impl FnOnce()) -> Res<libc::pid_t> {
    let _ = std::io::stdout().flush();
    // SAFETY: the process is single-threaded; the child only runs `f`, then `_exit`s.
    match unsafe { libc::fork() } {
        -1 => Err(os_err("fork")),
        0 => {
            // Die with the parent: a harness that kills cowbench must not leave a child
            // writing on (or holding memory) behind it.
            // SAFETY: prctl with constant arguments.
            unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
            f();
            // SAFETY: leave without running Rust's exit path.
            unsafe { libc::_exit(1) }
        }
        pid => Ok(pid),
    }
}

fn pipe() -> Res<(libc::c_int, libc::c_int)> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid 2-int array.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(os_err("pipe"));
    }
    Ok((fds[0], fds[1]))
}

fn wait_ok(pid: libc::pid_t) -> Res<()> {
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

/// In a child: close the write end, block until EOF on the read end, `_exit(0)`.
fn wait_for_eof_and_exit(rfd: libc::c_int, wfd: libc::c_int) -> ! {
    let mut b = 0u8;
    // SAFETY: plain syscalls on inherited fds, then _exit.
    unsafe {
        libc::close(wfd);
        while libc::read(rfd, (&raw mut b).cast(), 1) < 0
            && *libc::__errno_location() == libc::EINTR
        {}
        libc::_exit(0)
    }
}

fn close(fd: libc::c_int) {
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };
}

fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(T::to_string).collect::<Vec<_>>().join(",")
}

fn wait_go() -> Res<libc::pid_t> {
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

fn run(a: &Args) -> Res<String> {
    match a.mode {
        Mode::Cow => run_cow(a),
        Mode::Write => run_write(a),
    }
}

fn run_cow(a: &Args) -> Res<String> {
    let ps = page_size();
    // Populated and written before `ready`: present and private, so after each fork
    // every page is shared with the child and the first write to it is a copy.
    let region = Region::map(a.mib, true, ps)?;
    region.write_pages(1);
    let me = wait_go()?;

    let (mut touch_ns, mut touch_cpu_ns, mut touch_pages) = (0, 0, 0);
    if a.touch_mib > 0 {
        let fresh = Region::map(a.touch_mib, false, ps)?;
        let (c0, t0) = (thread_cpu_ns(), mono_ns());
        fresh.write_pages(1);
        touch_ns = mono_ns() - t0;
        touch_cpu_ns = thread_cpu_ns() - c0;
        touch_pages = fresh.pages();
    }

    let (mut t0s, mut t1s, mut cpus, mut kids) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in 0..a.reps {
        let (rfd, wfd) = pipe()?;
        let pid = fork_child(|| wait_for_eof_and_exit(rfd, wfd))?;
        let (c0, t0) = (thread_cpu_ns(), mono_ns());
        region.write_pages(2 + (r % 200) as u8);
        let t1 = mono_ns();
        cpus.push(thread_cpu_ns() - c0);
        close(wfd);
        close(rfd);
        wait_ok(pid)?;
        t0s.push(t0);
        t1s.push(t1);
        kids.push(pid);
    }
    let (mut write_calls, mut write_ns, mut write_cpu_ns) = (0, 0, 0);
    if a.write_mib > 0 {
        let path = format!("{}/cowbench-{me}.dat", a.dir.as_deref().unwrap_or_default());
        (write_calls, write_ns, write_cpu_ns) = timed_writes(&path, a.write_mib * MIB, a.chunk)?;
    }
    Ok(format!(
        "{{\"mode\":\"cow\",\"pid\":{me},\"children\":[{}],\"pages\":{},\"page_size\":{ps},\"reps\":{},\
         \"t0_ns\":[{}],\"t1_ns\":[{}],\"cpu_ns\":[{}],\"touch_pages\":{touch_pages},\
         \"touch_ns\":{touch_ns},\"touch_cpu_ns\":{touch_cpu_ns},\"write_calls\":{write_calls},\
         \"write_ns\":{write_ns},\"write_cpu_ns\":{write_cpu_ns}}}",
        list(&kids),
        region.pages(),
        a.reps,
        list(&t0s),
        list(&t1s),
        list(&cpus),
    ))
}

/// Write `bytes` to a new file at `path` in `chunk`-byte write() calls, timed; remove
/// it. Returns (calls, wall ns, thread CPU ns).
fn timed_writes(path: &str, bytes: usize, chunk: usize) -> Res<(u64, u64, u64)> {
    let c = std::ffi::CString::new(path).map_err(|_| format!("path contains NUL: {path}"))?;
    let buf = vec![0x5au8; chunk.min(bytes)];
    // SAFETY (all syscalls below): a valid path, our own fd, buf outlives the calls.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(os_err(&format!("open {path}")));
    }
    let mut calls = 0u64;
    let (c0, t0) = (thread_cpu_ns(), mono_ns());
    let mut left = bytes;
    while left > 0 {
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len().min(left)) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            let e = os_err(&format!("write {path}"));
            close(fd);
            return Err(e);
        }
        calls += 1;
        left -= n as usize;
    }
    let (t1, c1) = (mono_ns(), thread_cpu_ns());
    close(fd);
    std::fs::remove_file(path).map_err(|e| format!("remove {path}: {e}"))?;
    Ok((calls, t1 - t0, c1 - c0))
}

fn run_write(a: &Args) -> Res<String> {
    let dir = a.dir.as_deref().unwrap_or_default();
    let buf = vec![0xa5u8; a.chunk.min(a.bytes)];
    let me = wait_go()?;
    let (rfd, wfd) = pipe()?;
    let (bytes, chunk) = (a.bytes, a.chunk);
    let pid = fork_child(|| {
        // SAFETY: closing the inherited read end.
        unsafe { libc::close(rfd) };
        child_write(dir, bytes, chunk, &buf, wfd)
    })?;
    close(wfd);
    // The child reports (t0, t1, calls) as three u64s just before it exits.
    let mut msg = [0u8; 24];
    let mut got = 0;
    while got < msg.len() {
        // SAFETY: reading into our own buffer, within bounds.
        let n = unsafe { libc::read(rfd, msg[got..].as_mut_ptr().cast(), msg.len() - got) };
        if n < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    close(rfd);
    wait_ok(pid)?;
    if got != msg.len() {
        return Err(format!("write child {pid} did not report its timing"));
    }
    let word = |i: usize| u64::from_ne_bytes(msg[i * 8..i * 8 + 8].try_into().unwrap_or_default());
    let fin = format!("{dir}/final-{pid}.dat");
    std::fs::remove_file(&fin).map_err(|e| format!("remove {fin}: {e}"))?;
    Ok(format!(
        "{{\"mode\":\"write\",\"pid\":{me},\"children\":[{pid}],\"bytes\":{bytes},\"chunk\":{chunk},\
         \"calls\":{},\"t0_ns\":[{}],\"t1_ns\":[{}]}}",
        word(2),
        word(0),
        word(1),
    ))
}

/// In the child: write exactly `bytes` bytes in `chunk`-byte write() calls, time them,
/// fsync, close, rename; send (t0, t1, calls) on `report`; `_exit`.
fn child_write(dir: &str, bytes: usize, chunk: usize, buf: &[u8], report: libc::c_int) -> ! {
    let fail = |what: &str| -> ! {
        eprintln!("cowbench child: {}", os_err(what));
        // SAFETY: leave without running Rust's exit path.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let (Ok(temp), Ok(fin)) = (
        std::ffi::CString::new(format!("{dir}/temp-{pid}.dat")),
        std::ffi::CString::new(format!("{dir}/final-{pid}.dat")),
    ) else {
        fail("path")
    };
    // SAFETY (all syscalls below): valid paths, our own fds, buf outlives the calls.
    let fd = unsafe {
        libc::open(
            temp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    if fd < 0 {
        fail("open temp file");
    }
    let mut calls = 0u64;
    let t0 = mono_ns();
    let mut left = bytes;
    while left > 0 {
        let want = chunk.min(left).min(buf.len());
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), want) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            fail("write");
        }
        calls += 1;
        left -= n as usize;
    }
    let t1 = mono_ns();
    if unsafe { libc::fsync(fd) } != 0 {
        fail("fsync");
    }
    if unsafe { libc::close(fd) } != 0 {
        fail("close");
    }
    if unsafe { libc::rename(temp.as_ptr(), fin.as_ptr()) } != 0 {
        fail("rename");
    }
    let mut msg = [0u8; 24];
    msg[..8].copy_from_slice(&t0.to_ne_bytes());
    msg[8..16].copy_from_slice(&t1.to_ne_bytes());
    msg[16..].copy_from_slice(&calls.to_ne_bytes());
    if unsafe { libc::write(report, msg.as_ptr().cast(), msg.len()) } != msg.len() as isize {
        fail("report");
    }
    unsafe { libc::_exit(0) }
}
