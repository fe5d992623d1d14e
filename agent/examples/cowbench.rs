//! cowbench: the timed workload of `cargo xtask bench` (see xtask/src/bench/).
//!
//! ```text
//! cowbench --mode cow   [--mib N] [--reps R] [--touch-mib T] [--write-mib W --dir D]
//! cowbench --mode write --dir D [--bytes B] [--chunk C]
//! ```
//!
//! Protocol (the same as `cowload`): set up, print `ready <pid>`, block until a line (or
//! EOF) arrives on stdin (the harness attaches a tracer in between), run, wait for every
//! child, print one JSON line. Exit statuses (the workload's and its children's) are
//! those of `common` (0 done, 1 error, 2 bad arguments).
//!
//! `cow`: N MiB of private anonymous memory is populated before `ready`. After `go`,
//! optionally T MiB of fresh memory is touched once (one zero-fill fault per page, timed:
//! the cost of ordinary page faults), then R times: fork a child that only waits, rewrite
//! one byte of every page of the N MiB (one copy-on-write copy per page, timed), release
//! the child, reap it; then optionally writes W MiB to `D/cowbench-<pid>.dat` itself in
//! 4 KiB write() calls (timed: the cost of ordinary syscalls) and removes the file.
//! Only the loops are timed, with CLOCK_MONOTONIC (and, alongside,
//! the thread's CPU time, which a busy machine's preemptions do not inflate); the JSON
//! line carries the raw start/end timestamps so the harness can add up parallel runs,
//! and the minor faults the kernel counted during each rewrite (`faults`).
//!
//! `write`: fork a child that writes exactly B bytes to `D/temp-<pid>.dat` in C-byte
//! write() calls (timed), fsyncs, closes and renames it to `D/final-<pid>.dat`, like a
//! Redis save child. The parent removes the final file after reaping the child.
//!
//! Transparent huge pages are disabled on every region (`MADV_NOHUGEPAGE`), so each
//! page is one 4 KiB fault and one copy whatever the host's THP mode.
//!
//! Forked children die with cowbench and leave with `_exit` (see `common`).

mod common;

use common::{
    Gate, MIB, Region, Res, Thp, close, fork_child, list, mono_ns, num, pipe, wait_go, wait_ok,
};

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
    common::parse_flags(USAGE, &[], |flag, val| {
        match flag {
            "--mode" => {
                mode = Some(match val {
                    "cow" => Mode::Cow,
                    "write" => Mode::Write,
                    _ => return Err(format!("unknown mode {val}")),
                })
            }
            "--mib" => a.mib = num(flag, val)?,
            "--reps" => a.reps = num(flag, val)?,
            "--touch-mib" => a.touch_mib = num(flag, val)?,
            "--write-mib" => a.write_mib = num(flag, val)?,
            "--dir" => a.dir = Some(val.to_string()),
            "--bytes" => a.bytes = num(flag, val)?,
            "--chunk" => a.chunk = num(flag, val)?,
            _ => return Err(format!("unknown argument {flag}")),
        }
        Ok(())
    })?;
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
    common::main("cowbench", USAGE, parse_args, run)
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

fn run(a: &Args) -> Res<String> {
    match a.mode {
        Mode::Cow => run_cow(a),
        Mode::Write => run_write(a),
    }
}

fn run_cow(a: &Args) -> Res<String> {
    // Populated and written before `ready`: present and private, so after each fork
    // every page is shared with the child and the first write to it is a copy.
    let region = Region::anon(a.mib, Thp::Never, true)?;
    region.write_pages(region.pages(), 1);
    let me = wait_go()?;

    let (mut touch_ns, mut touch_cpu_ns, mut touch_pages) = (0, 0, 0);
    if a.touch_mib > 0 {
        let fresh = Region::anon(a.touch_mib, Thp::Never, false)?;
        let (c0, t0) = (thread_cpu_ns(), mono_ns());
        fresh.write_pages(fresh.pages(), 1);
        touch_ns = mono_ns() - t0;
        touch_cpu_ns = thread_cpu_ns() - c0;
        touch_pages = fresh.pages();
    }

    let (mut t0s, mut t1s, mut cpus, mut kids) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut faults = Vec::new();
    for r in 0..a.reps {
        let gate = Gate::new()?;
        let pid = fork_child(|| gate.child_wait())?;
        let f0 = minor_faults();
        let (c0, t0) = (thread_cpu_ns(), mono_ns());
        region.write_pages(region.pages(), 2 + (r % 200) as u8);
        let t1 = mono_ns();
        cpus.push(thread_cpu_ns() - c0);
        faults.push(minor_faults() - f0);
        gate.release();
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
        "{{\"mode\":\"cow\",\"pid\":{me},\"children\":[{}],\"pages\":{},\"page_size\":{},\"reps\":{},\
         \"t0_ns\":[{}],\"t1_ns\":[{}],\"cpu_ns\":[{}],\"faults\":[{}],\"touch_pages\":{touch_pages},\
         \"touch_ns\":{touch_ns},\"touch_cpu_ns\":{touch_cpu_ns},\"write_calls\":{write_calls},\
         \"write_ns\":{write_ns},\"write_cpu_ns\":{write_cpu_ns}}}",
        list(&kids),
        region.pages(),
        common::page_size(),
        a.reps,
        list(&t0s),
        list(&t1s),
        list(&cpus),
        list(&faults),
    ))
}

/// Minor page faults the kernel has counted for this process (`ru_minflt`): around a
/// rewrite, the write faults it took, whatever a tracer saw.
fn minor_faults() -> u64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes into it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_minflt as u64
}

/// Write `bytes` to a new file at `path` in `chunk`-byte write() calls, timed; remove
/// it. Returns (calls, wall ns, thread CPU ns).
fn timed_writes(path: &str, bytes: usize, chunk: usize) -> Res<(u64, u64, u64)> {
    let c = common::cstr(path)?;
    let buf = vec![0x5au8; chunk.min(bytes)];
    // SAFETY: a valid path.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
            0o644,
        )
    };
    if fd < 0 {
        return Err(common::os_err(&format!("open {path}")));
    }
    let (c0, t0) = (thread_cpu_ns(), mono_ns());
    let calls = common::write_chunks(fd, bytes, &buf);
    let (t1, c1) = (mono_ns(), thread_cpu_ns());
    close(fd);
    let calls = calls.map_err(|e| format!("{path}: {e}"))?;
    std::fs::remove_file(path).map_err(|e| format!("remove {path}: {e}"))?;
    Ok((calls, t1 - t0, c1 - c0))
}

fn run_write(a: &Args) -> Res<String> {
    let dir = a.dir.as_deref().unwrap_or_default();
    let buf = vec![0xa5u8; a.chunk.min(a.bytes)];
    let me = wait_go()?;
    let (rfd, wfd) = pipe()?;
    let bytes = a.bytes;
    let pid = fork_child(|| {
        close(rfd);
        let w = common::save_like_write(dir, bytes, &buf)?;
        // Report (t0, t1, calls) as three u64s just before exiting.
        let mut msg = [0u8; 24];
        msg[..8].copy_from_slice(&w.t0_ns.to_ne_bytes());
        msg[8..16].copy_from_slice(&w.t1_ns.to_ne_bytes());
        msg[16..].copy_from_slice(&w.calls.to_ne_bytes());
        // SAFETY: writing our own buffer to the inherited write end.
        if unsafe { libc::write(wfd, msg.as_ptr().cast(), msg.len()) } != msg.len() as isize {
            return Err(common::os_err("report"));
        }
        Ok(())
    })?;
    close(wfd);
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
        "{{\"mode\":\"write\",\"pid\":{me},\"children\":[{pid}],\"bytes\":{bytes},\"chunk\":{},\
         \"calls\":{},\"t0_ns\":[{}],\"t1_ns\":[{}]}}",
        a.chunk,
        word(2),
        word(0),
        word(1),
    ))
}
