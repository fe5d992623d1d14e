//! cowload: a ground-truth copy-on-write workload for cowtrace's root integration tests.
//!
//! ```text
//! cowload --mode MODE [--mib N] [--pages K] [--children C] [--rounds R] [--huge] [--dir D] [--bytes B] [--chunk C]
//! ```
//!
//! Protocol: set up memory, print `ready <pid>`, block until a line (or EOF) arrives on
//! stdin (the test attaches the tracer in between), run the mode, wait for every child,
//! print one JSON line with what was done. Exit statuses (the workload's and its
//! children's) are those of `common` (0 done, 1 error, 2 bad arguments).
//!
//! The counts are exact on purpose: every page of the region is touched before the fork
//! (so it is present and private), and exactly K distinct pages are written afterwards,
//! so a tracer must report K copies (or K reuses, for `child-exits-first`).
//!
//! Forked children die with cowload and leave with `_exit` (see `common`).

mod common;

use std::ptr;

use common::{Gate, MIB, Region, Res, Thp, fork_child, list, num, page_size, wait_go, wait_ok};

const USAGE: &str = "\
usage: cowload --mode MODE [--mib N] [--pages K] [--children C] [--rounds R] [--huge] [--dir D] [--bytes B] [--chunk C]
modes: parent-writes child-exits-first child-writes shared-file child-file-write none many-forks regions
  regions       parent-writes K pages of the anonymous region and --heap-pages pages of a
                [heap] extension (sbrk) after --delay-ms, reporting both ranges
  --mib N       region size in MiB (default 64)
  --pages K     distinct 4 KiB pages to write after the fork (default: all)
  --children C  children kept alive in parent-writes; forks made in many-forks (default 1)
  --rounds R    parent-writes: fork, write, release and reap R times in a row (default 1)
  --huge        2 MiB-aligned region with MADV_HUGEPAGE (anonymous modes)
  --dir D       directory for shared-file and child-file-write (required there)
  --bytes B     bytes the child writes in child-file-write (default 10 MiB)
  --chunk C     bytes per write() call in child-file-write (default 65536)";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    ParentWrites,
    ChildExitsFirst,
    ChildWrites,
    SharedFile,
    ChildFileWrite,
    None,
    ManyForks,
    Regions,
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
            "regions" => Mode::Regions,
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
            Mode::Regions => "regions",
        }
    }
}

struct Args {
    mode: Mode,
    mib: usize,
    pages: Option<usize>,
    children: usize,
    rounds: usize,
    huge: bool,
    dir: Option<String>,
    bytes: usize,
    chunk: usize,
    heap_pages: usize,
    delay_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        mode: Mode::None,
        mib: 64,
        pages: None,
        children: 1,
        rounds: 1,
        huge: false,
        dir: None,
        bytes: 10 * MIB,
        chunk: 65536,
        heap_pages: 256,
        delay_ms: 0,
    };
    let mut mode = None;
    common::parse_flags(USAGE, &["--huge"], |flag, val| {
        match flag {
            "--huge" => a.huge = true,
            "--mode" => mode = Some(Mode::parse(val).ok_or_else(|| format!("unknown mode {val}"))?),
            "--mib" => a.mib = num(flag, val)?,
            "--pages" => a.pages = Some(num(flag, val)?),
            "--children" => a.children = num(flag, val)?,
            "--rounds" => a.rounds = num(flag, val)?,
            "--dir" => a.dir = Some(val.to_string()),
            "--bytes" => a.bytes = num(flag, val)?,
            "--chunk" => a.chunk = num(flag, val)?,
            "--heap-pages" => a.heap_pages = num(flag, val)?,
            "--delay-ms" => a.delay_ms = num(flag, val)? as u64,
            _ => return Err(format!("unknown argument {flag}")),
        }
        Ok(())
    })?;
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
    if a.rounds == 0 || a.rounds > 1000 || (a.rounds > 1 && a.mode != Mode::ParentWrites) {
        return Err(
            "--rounds must be between 1 and 1000, and above 1 only in parent-writes".into(),
        );
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
    common::main("cowload", USAGE, parse_args, run)
}

/// This thread's CPU time, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Minor page faults the kernel has counted for this process (`ru_minflt`).
fn minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64
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
    // Every page is written, so it is present and private (or dirty in the page cache,
    // for the shared file) before the fork.
    let shared_path = a.dir.as_ref().map(|d| format!("{d}/cowload-shared.dat"));
    let region = match a.mode {
        Mode::SharedFile => Region::shared_file(shared_path.as_deref().unwrap_or_default(), a.mib)?,
        _ => {
            let thp = if a.huge { Thp::Huge } else { Thp::Host };
            Region::anon(a.mib, thp, false)?
        }
    };
    region.write_pages(region.pages(), 1);

    let me = wait_go()?;
    let faults_at_go = minor_faults();

    // Children still to be waited for, and those already reaped (both are reported).
    let mut children = Vec::new();
    let mut reaped = Vec::new();
    let mut pages_written = k;
    let mut extra = String::new();
    let mut write_cpu_ns = 0u64;
    match a.mode {
        Mode::ParentWrites => {
            // Children keep the pages shared while the parent writes: K copies a round.
            // Rounds after the first start from the previous round's private pages, as
            // back-to-back saves do.
            for r in 0..a.rounds {
                let gate = Gate::new()?;
                let start = children.len();
                for _ in 0..a.children {
                    children.push(fork_child(|| gate.child_wait())?);
                }
                // The writing thread's CPU time in its copy faults (the main-thread
                // latency test compares cowtrace's estimate with it).
                let t0 = thread_cpu_ns();
                region.write_pages(k, 2 + (r % 200) as u8);
                write_cpu_ns += thread_cpu_ns().saturating_sub(t0);
                gate.release();
                if r + 1 < a.rounds {
                    for pid in children.drain(start..) {
                        wait_ok(pid)?;
                        reaped.push(pid);
                    }
                }
            }
        }
        Mode::ChildExitsFirst => {
            // The only other user is gone before the writes: K reuses, no copies.
            let pid = fork_child(|| Ok(()))?;
            wait_ok(pid)?;
            reaped.push(pid);
            // The kernel's own count of the faults the writes took (`ru_minflt`), so a
            // test can tell a tracer's extra reuse faults from the kernel's.
            let before = minor_faults();
            region.write_pages(k, 2);
            let faults = minor_faults() - before;
            let since_go = minor_faults() - faults_at_go;
            extra = format!(",\"write_faults\":{faults},\"faults_since_go\":{since_go}");
        }
        Mode::ChildWrites => {
            // The child does the writing (like a Redis save child that touches memory);
            // the parent leaves the region alone.
            children.push(fork_child(|| {
                region.write_pages(k, 3);
                Ok(())
            })?);
        }
        Mode::SharedFile => {
            // MAP_SHARED file pages are never copied; their write faults after msync
            // (pages cleaned and write-protected) must not be counted as COW.
            let gate = Gate::new()?;
            children.push(fork_child(|| gate.child_wait())?);
            region.msync()?;
            region.write_pages(k, 2);
            region.msync()?;
            gate.release();
        }
        Mode::ChildFileWrite => {
            let dir = a.dir.as_deref().unwrap_or_default();
            // Allocate before fork; the child only does syscalls and formats two paths.
            // One write() call per chunk (the last one shorter).
            let buf = vec![0xa5u8; a.chunk.min(a.bytes).max(1)];
            let pid = fork_child(|| common::save_like_write(dir, a.bytes, &buf).map(|_| ()))?;
            children.push(pid);
            pages_written = 0;
            extra = format!(
                ",\"bytes\":{},\"temp\":{},\"final\":{}",
                a.bytes,
                json_str(&format!("{dir}/temp-{pid}.dat")),
                json_str(&format!("{dir}/final-{pid}.dat")),
            );
        }
        Mode::Regions => {
            // Known ranges: K pages of the anonymous region and H pages of the heap,
            // written after a pause that lets the tracer read the map at fork.
            let ps = page_size();
            let h = a.heap_pages;
            // SAFETY: grows the heap by H pages (plus one to align); the range is ours and
            // nothing else in this process uses it (Rust allocates through malloc, which
            // may use the break too, but only above what it asked for: we write only
            // inside the range sbrk returned to us).
            let got = unsafe { libc::sbrk(((h + 1) * ps) as libc::intptr_t) };
            if got as isize == -1 {
                return Err(common::os_err("sbrk"));
            }
            let heap_start = (got as usize).div_ceil(ps) * ps;
            for i in 0..h {
                // SAFETY: inside the range sbrk added.
                unsafe { ptr::write_volatile((heap_start + i * ps) as *mut u8, 1) };
            }
            let gate = Gate::new()?;
            children.push(fork_child(|| gate.child_wait())?);
            std::thread::sleep(std::time::Duration::from_millis(a.delay_ms));
            region.write_pages(k, 2);
            for i in 0..h {
                // SAFETY: as above.
                unsafe { ptr::write_volatile((heap_start + i * ps) as *mut u8, 2) };
            }
            gate.release();
            extra = format!(
                ",\"anon_start\":{},\"anon_end\":{},\"heap_start\":{heap_start},\"heap_end\":{},\"heap_pages\":{h}",
                region.base as usize,
                region.base as usize + k * ps,
                heap_start + h * ps,
            );
        }
        Mode::None => pages_written = 0,
        Mode::ManyForks => {
            // C short-lived children, one after the other: a fork storm for leak tests.
            for _ in 0..a.children {
                let pid = fork_child(|| Ok(()))?;
                wait_ok(pid)?;
            }
            pages_written = 0;
            extra = format!(",\"forks\":{}", a.children);
        }
    }
    for &pid in &children {
        wait_ok(pid)?;
    }
    // In fork order: the children reaped along the way came first.
    reaped.extend(children);
    let children = reaped;

    if a.mode == Mode::SharedFile {
        drop(region);
        let p = shared_path.unwrap_or_default();
        std::fs::remove_file(&p).map_err(|e| format!("remove {p}: {e}"))?;
    }

    Ok(format!(
        "{{\"mode\":\"{}\",\"pid\":{me},\"children\":[{}],\"pages_written\":{pages_written},\"page_size\":{ps},\"mib\":{},\"huge\":{},\"write_cpu_ns\":{write_cpu_ns}{extra}}}",
        a.mode.name(),
        list(&children),
        a.mib,
        a.huge,
    ))
}
