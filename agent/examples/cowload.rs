//! cowload: a ground-truth copy-on-write workload for cowtrace's root integration tests.
//!
//! ```text
//! cowload --mode MODE [--mib N] [--pages K] [--children C] [--huge] [--dir D] [--bytes B] [--chunk C]
//! ```
//!
//! Protocol: set up memory, print `ready <pid>`, block until a line (or EOF) arrives on
//! stdin (the test attaches the tracer in between), run the mode, wait for every child,
//! print one JSON line with what was done, exit 0. Errors: message on stderr, exit 1;
//! bad arguments: usage on stderr, exit 2.
//!
//! The counts are exact on purpose: every page of the region is touched before the fork
//! (so it is present and private), and exactly K distinct pages are written afterwards,
//! so a tracer must report K copies (or K reuses, for `child-exits-first`).
//!
//! Forked children only run async-signal-safe code and leave with `_exit`, never by
//! returning into Rust (that would run the parent's exit path twice). The process is
//! single-threaded, so the few allocations a child makes are safe too.

use std::ffi::CString;
use std::io::{BufRead as _, Write as _};
use std::ptr;

const USAGE: &str = "\
usage: cowload --mode MODE [--mib N] [--pages K] [--children C] [--huge] [--dir D] [--bytes B] [--chunk C]
modes: parent-writes child-exits-first child-writes shared-file child-file-write none many-forks
  --mib N       region size in MiB (default 64)
  --pages K     distinct 4 KiB pages to write after the fork (default: all)
  --children C  children kept alive in parent-writes; forks made in many-forks (default 1)
  --huge        2 MiB-aligned region with MADV_HUGEPAGE (anonymous modes)
  --dir D       directory for shared-file and child-file-write (required there)
  --bytes B     bytes the child writes in child-file-write (default 10 MiB)
  --chunk C     bytes per write() call in child-file-write (default 65536)";

const MIB: usize = 1 << 20;
const HUGE: usize = 2 * MIB;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    ParentWrites,
    ChildExitsFirst,
    ChildWrites,
    SharedFile,
    ChildFileWrite,
    None,
    ManyForks,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "parent-writes" => Mode::ParentWrites,
            "child-exits-first" => Mode::ChildExitsFirst,
            "child-writes" => Mode::ChildWrites,
            "shared-file" => Mode::SharedFile,
            "child-file-write" => Mode::ChildFileWrite,
            "none" => Mode::None,
            "many-forks" => Mode::ManyForks,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Mode::ParentWrites => "parent-writes",
            Mode::ChildExitsFirst => "child-exits-first",
            Mode::ChildWrites => "child-writes",
            Mode::SharedFile => "shared-file",
            Mode::ChildFileWrite => "child-file-write",
            Mode::None => "none",
            Mode::ManyForks => "many-forks",
        }
    }
}

struct Args {
    mode: Mode,
    mib: usize,
    pages: Option<usize>,
    children: usize,
    huge: bool,
    dir: Option<String>,
    bytes: usize,
    chunk: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        mode: Mode::None,
        mib: 64,
        pages: None,
        children: 1,
        huge: false,
        dir: None,
        bytes: 10 * MIB,
        chunk: 65536,
    };
    let mut mode = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--huge" {
            a.huge = true;
            continue;
        }
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
                mode = Some(Mode::parse(&val).ok_or_else(|| format!("unknown mode {val}"))?)
            }
            "--mib" => a.mib = num()?,
            "--pages" => a.pages = Some(num()?),
            "--children" => a.children = num()?,
            "--dir" => a.dir = Some(val),
            "--bytes" => a.bytes = num()?,
            "--chunk" => a.chunk = num()?,
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    a.mode = mode.ok_or("--mode is required")?;
    if a.mib == 0 || a.mib > 1 << 20 {
        return Err("--mib must be between 1 and 1048576".into());
    }
    // Live children are bounded; sequential forks (many-forks) may be many more.
    let max = if a.mode == Mode::ManyForks {
        1_000_000
    } else {
        1024
    };
    if a.children == 0 || a.children > max {
        return Err(format!("--children must be between 1 and {max}"));
    }
    if a.chunk == 0 {
        return Err("--chunk must be at least 1".into());
    }
    if matches!(a.mode, Mode::SharedFile | Mode::ChildFileWrite) && a.dir.is_none() {
        return Err(format!("--mode {} needs --dir", a.mode.name()));
    }
    let total_pages = a.mib * MIB / page_size();
    if a.pages.is_some_and(|k| k > total_pages) {
        return Err(format!(
            "--pages is more than the {total_pages} pages of {} MiB",
            a.mib
        ));
    }
    if a.mode == Mode::SharedFile && a.huge {
        return Err("--huge is for anonymous memory, not shared-file".into());
    }
    Ok(a)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("cowload: {msg}");
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
            eprintln!("cowload: {msg}");
            std::process::exit(1);
        }
    }
}

type Res<T> = Result<T, String>;

/// `what: strerror(errno)`.
fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let ps = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if ps > 0 { ps as usize } else { 4096 }
}

/// The memory the workload writes: `len` bytes at `base`, `pages` pages.
struct Region {
    base: *mut u8,
    len: usize,
    ps: usize,
}

impl Region {
    fn pages(&self) -> usize {
        self.len / self.ps
    }

    /// Write one byte in each of pages 0..k. Volatile, so the compiler cannot drop or
    /// merge the stores: each one is a write fault the tracer must see.
    fn write_pages(&self, k: usize, val: u8) {
        for i in 0..k {
            // SAFETY: i < pages(), so the offset is inside the mapping.
            unsafe { ptr::write_volatile(self.base.add(i * self.ps), val) };
        }
    }
}

/// Private anonymous memory, every page touched so it is present and private before fork.
fn anon_region(mib: usize, huge: bool, ps: usize) -> Res<Region> {
    let len = mib * MIB;
    // For THP, over-map by 2 MiB so the region can start on a 2 MiB boundary.
    let map_len = if huge { len + HUGE } else { len };
    // SAFETY: a fresh anonymous mapping; no existing memory is affected.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            map_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(os_err("mmap anonymous"));
    }
    let mut base = p.cast::<u8>();
    if huge {
        let off = (HUGE - (base as usize % HUGE)) % HUGE;
        // SAFETY: off < 2 MiB, and the mapping is len + 2 MiB long.
        base = unsafe { base.add(off) };
        // SAFETY: [base, base+len) lies inside the mapping.
        if unsafe { libc::madvise(base.cast(), len, libc::MADV_HUGEPAGE) } != 0 {
            return Err(os_err("madvise(MADV_HUGEPAGE)"));
        }
    }
    let r = Region { base, len, ps };
    r.write_pages(r.pages(), 1);
    Ok(r)
}

/// A pipe whose read end children block on; closing the write end releases them all.
struct Gate {
    rfd: libc::c_int,
    wfd: libc::c_int,
}

impl Gate {
    fn new() -> Res<Gate> {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid 2-int array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(os_err("pipe"));
        }
        Ok(Gate {
            rfd: fds[0],
            wfd: fds[1],
        })
    }

    /// In a child: drop our copy of the write end (or EOF would never come), block until
    /// the parent closes its copy, then leave. Never returns.
    fn child_wait_and_exit(&self) -> ! {
        let mut b = 0u8;
        // SAFETY: plain syscalls on our own fds, then _exit.
        unsafe {
            libc::close(self.wfd);
            while libc::read(self.rfd, (&raw mut b).cast(), 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
            libc::_exit(0)
        }
    }

    /// In the parent: let every child go.
    fn release(&self) {
        // SAFETY: closing our own fds.
        unsafe {
            libc::close(self.wfd);
            libc::close(self.rfd);
        }
    }
}

/// fork(); the child runs `f` and then `_exit(0)`s, so it never returns into Rust
/// (`f` may also `_exit` itself, with another status).
fn fork_child(f: impl FnOnce()) -> Res<libc::pid_t> {
    // Flush first so buffered stdout is not duplicated into the child.
    let _ = std::io::stdout().flush();
    // SAFETY: the process is single-threaded; the child only runs `f`, then exits.
    match unsafe { libc::fork() } {
        -1 => Err(os_err("fork")),
        0 => {
            f();
            // SAFETY: leave without running Rust's exit path (atexit, stdout flush).
            unsafe { libc::_exit(0) }
        }
        pid => Ok(pid),
    }
}

/// waitpid() each child and insist that it exited with status 0.
fn wait_all(pids: &[libc::pid_t]) -> Res<()> {
    for &pid in pids {
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
    }
    Ok(())
}

fn cstr(s: &str) -> Res<CString> {
    CString::new(s).map_err(|_| format!("path contains NUL: {s}"))
}

/// JSON string literal (paths are the only free text in the output).
fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn run(a: &Args) -> Res<String> {
    let ps = page_size();
    let k = a.pages.unwrap_or(a.mib * MIB / ps);

    // Set up memory before `ready`, so its faults happen before the tracer attaches.
    let shared_path = a.dir.as_ref().map(|d| format!("{d}/cowload-shared.dat"));
    let region = match a.mode {
        Mode::SharedFile => shared_region(shared_path.as_deref().unwrap_or_default(), a.mib, ps)?,
        _ => anon_region(a.mib, a.huge, ps)?,
    };

    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    println!("ready {me}");
    std::io::stdout()
        .flush()
        .map_err(|e| format!("stdout: {e}"))?;
    // Block until the test has attached the tracer and says "go" (EOF also proceeds).
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("stdin: {e}"))?;

    // Children still to be waited for, and those already reaped (both are reported).
    let mut children = Vec::new();
    let mut reaped = Vec::new();
    let mut pages_written = k;
    let mut extra = String::new();
    match a.mode {
        Mode::ParentWrites => {
            // Children keep the pages shared while the parent writes: K copies.
            let gate = Gate::new()?;
            for _ in 0..a.children {
                children.push(fork_child(|| gate.child_wait_and_exit())?);
            }
            region.write_pages(k, 2);
            gate.release();
        }
        Mode::ChildExitsFirst => {
            // The only other user is gone before the writes: K reuses, no copies.
            let pid = fork_child(|| {})?;
            wait_all(&[pid])?;
            reaped.push(pid);
            region.write_pages(k, 2);
        }
        Mode::ChildWrites => {
            // The child does the writing (like a Redis save child that touches memory);
            // the parent leaves the region alone.
            children.push(fork_child(|| region.write_pages(k, 3))?);
        }
        Mode::SharedFile => {
            // MAP_SHARED file pages are never copied; their write faults after msync
            // (pages cleaned and write-protected) must not be counted as COW.
            let gate = Gate::new()?;
            children.push(fork_child(|| gate.child_wait_and_exit())?);
            msync(&region)?;
            region.write_pages(k, 2);
            msync(&region)?;
            gate.release();
        }
        Mode::ChildFileWrite => {
            let dir = a.dir.as_deref().unwrap_or_default();
            // Allocate before fork; the child only does syscalls and one format!.
            let buf = vec![0xa5u8; a.chunk.min(a.bytes).max(1)];
            let (bytes, chunk) = (a.bytes, a.chunk);
            let pid = fork_child(|| child_file_write(dir, bytes, chunk, &buf))?;
            children.push(pid);
            pages_written = 0;
            extra = format!(
                ",\"bytes\":{},\"temp\":{},\"final\":{}",
                a.bytes,
                json_str(&format!("{dir}/temp-{pid}.dat")),
                json_str(&format!("{dir}/final-{pid}.dat")),
            );
        }
        Mode::None => pages_written = 0,
        Mode::ManyForks => {
            // C short-lived children, one after the other: a fork storm for leak tests.
            for _ in 0..a.children {
                let pid = fork_child(|| {})?;
                wait_all(&[pid])?;
            }
            pages_written = 0;
            extra = format!(",\"forks\":{}", a.children);
        }
    }
    wait_all(&children)?;
    children.extend(reaped);

    if a.mode == Mode::SharedFile {
        // SAFETY: unmapping our own mapping, nothing refers to it afterwards.
        unsafe { libc::munmap(region.base.cast(), region.len) };
        let p = shared_path.unwrap_or_default();
        std::fs::remove_file(&p).map_err(|e| format!("remove {p}: {e}"))?;
    }

    let kids: Vec<String> = children.iter().map(|p| p.to_string()).collect();
    Ok(format!(
        "{{\"mode\":\"{}\",\"pid\":{me},\"children\":[{}],\"pages_written\":{pages_written},\"page_size\":{ps},\"mib\":{},\"huge\":{}{extra}}}",
        a.mode.name(),
        kids.join(","),
        a.mib,
        a.huge,
    ))
}

/// A `mib` MiB file mapped MAP_SHARED, every page written (dirty in the page cache).
fn shared_region(path: &str, mib: usize, ps: usize) -> Res<Region> {
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
        return Err(os_err(&format!("ftruncate {path}")));
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
    // SAFETY: the mapping keeps the file referenced; the fd is no longer needed.
    unsafe { libc::close(fd) };
    if p == libc::MAP_FAILED {
        return Err(os_err(&format!("mmap {path}")));
    }
    let r = Region {
        base: p.cast(),
        len,
        ps,
    };
    r.write_pages(r.pages(), 1);
    Ok(r)
}

/// Write dirty pages back and write-protect them, so the next write to each page faults.
fn msync(r: &Region) -> Res<()> {
    // SAFETY: msync over our own mapping.
    if unsafe { libc::msync(r.base.cast(), r.len, libc::MS_SYNC) } != 0 {
        return Err(os_err("msync"));
    }
    Ok(())
}

/// In the child: write exactly `bytes` bytes to `dir/temp-<pid>.dat` in `chunk`-byte
/// write() calls, fsync, close, rename to `dir/final-<pid>.dat` (what a Redis save child
/// does). Exits 0 on success, 1 on any error (with a message on stderr).
fn child_file_write(dir: &str, bytes: usize, chunk: usize, buf: &[u8]) -> ! {
    let fail = |what: &str| -> ! {
        eprintln!("cowload child: {}", os_err(what));
        // SAFETY: leave without running Rust's exit path.
        unsafe { libc::_exit(1) }
    };
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    let (Ok(temp), Ok(fin)) = (
        cstr(&format!("{dir}/temp-{pid}.dat")),
        cstr(&format!("{dir}/final-{pid}.dat")),
    ) else {
        fail("path")
    };
    // SAFETY (all syscalls below): valid paths, our own fd, buf outlives the calls.
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
    let mut left = bytes;
    while left > 0 {
        // One write() per chunk (the last one shorter); loop on short writes.
        let mut want = chunk.min(left);
        while want > 0 {
            let n = unsafe { libc::write(fd, buf.as_ptr().cast(), want.min(buf.len())) };
            if n < 0 {
                if std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                fail("write");
            }
            want -= n as usize;
            left -= n as usize;
        }
    }
    if unsafe { libc::fsync(fd) } != 0 {
        fail("fsync");
    }
    if unsafe { libc::close(fd) } != 0 {
        fail("close");
    }
    if unsafe { libc::rename(temp.as_ptr(), fin.as_ptr()) } != 0 {
        fail("rename");
    }
    unsafe { libc::_exit(0) }
}
