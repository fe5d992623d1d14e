//! The syscall path of `write.rs` and `fork.rs` on kernels that refuse fentry: two BTF
//! tracepoints on the raw syscall events, `sys_enter` and `sys_exit`, that pick the
//! syscalls by number, instead of one classic `syscalls/sys_{enter,exit}_*` tracepoint
//! per syscall (29 of them).
//!
//! Why: a classic tracepoint's link is a perf event, and closing it waits for an RCU
//! grace period under the kernel's `event_mutex` (`perf_trace_event_unreg` calls
//! `tracepoint_synchronize_unregister`, kernel/trace/trace_event_perf.c), one link after
//! the other however many threads close them: 37 links took 1.3 s to detach here, so
//! Ctrl-C took that long. A BTF tracepoint's link is a raw tracepoint link, released
//! without waiting (`bpf_raw_tp_link_release`). Both kinds set the syscall slow path on
//! every task while attached (`syscall_regfunc`, kernel/tracepoint.c), so bystanders pay
//! the same; each program here runs on every syscall of the host, and first compares
//! the syscall number, then looks the tgid up in `MAYBE_TRACED` (two loads).
//!
//! The counts are the same: each syscall the classic path hooks is matched here by its
//! number, the arguments come from the `struct pt_regs` of the call (the registers of
//! the x86-64 syscall ABI, offsets from BTF), and the work ends in the same functions
//! (`start_call`, `write_done`, `sync_done`, `rename`, `fork_started`, ...). A
//! measurement is served here only when its bit is set in `SYSCALL_PATHS` (its fentry
//! path was refused), so no call is counted twice.
//!
//! Needs BTF tracepoints (5.5) and x86-64 syscall numbers
//! (arch/x86/entry/syscalls/syscall_64.tbl, stable ABI).
use agent_common::{
    SYNC_FDATASYNC, SYNC_FILE_RANGE, SYNC_FSYNC, SYSCALL_EXIT_TITLES, SYSCALL_FORKS,
    SYSCALL_RENAMES, SYSCALL_SETSID, SYSCALL_SYNCS, SYSCALL_WRITES,
};
use aya_ebpf::{macros::btf_tracepoint, programs::BtfTracePointContext};

use crate::{
    fork::{fork_returned, fork_started, setsid_returned, try_title},
    maps::{SYSCALL_PATHS, TRACED},
    off,
    util::{current_ids, maybe_traced, read_field},
    write::{Space, fd_file, rename, start_call, sync_done, take_start, write_done},
};

// x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl).
const NR_WRITE: i64 = 1;
const NR_PWRITE64: i64 = 18;
const NR_WRITEV: i64 = 20;
const NR_CLONE: i64 = 56;
const NR_FORK: i64 = 57;
const NR_VFORK: i64 = 58;
const NR_FSYNC: i64 = 74;
const NR_FDATASYNC: i64 = 75;
const NR_RENAME: i64 = 82;
const NR_SETSID: i64 = 112;
const NR_EXIT_GROUP: i64 = 231;
const NR_RENAMEAT: i64 = 264;
const NR_SYNC_FILE_RANGE: i64 = 277;
const NR_PWRITEV: i64 = 296;
const NR_RENAMEAT2: i64 = 316;
const NR_PWRITEV2: i64 = 328;
const NR_CLONE3: i64 = 435;

/// The measurement a syscall belongs to (a `SYSCALL_*` bit), 0 for the others.
#[inline(always)]
fn measurement(nr: i64) -> u32 {
    match nr {
        NR_WRITE | NR_PWRITE64 | NR_WRITEV | NR_PWRITEV | NR_PWRITEV2 => SYSCALL_WRITES,
        NR_FSYNC | NR_FDATASYNC | NR_SYNC_FILE_RANGE => SYSCALL_SYNCS,
        NR_RENAME | NR_RENAMEAT | NR_RENAMEAT2 => SYSCALL_RENAMES,
        NR_CLONE | NR_CLONE3 | NR_FORK | NR_VFORK => SYSCALL_FORKS,
        NR_EXIT_GROUP => SYSCALL_EXIT_TITLES,
        NR_SETSID => SYSCALL_SETSID,
        _ => 0,
    }
}

/// The traced tgid of this call of a syscall of measurement `bit`, when this path
/// serves it: the cheap filters first (number, then `MAYBE_TRACED`).
#[inline(always)]
fn served(bit: u32) -> Option<(u32, u32)> {
    if bit == 0 {
        return None;
    }
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return None;
    }
    let paths = SYSCALL_PATHS.get(0).copied().unwrap_or(0);
    (paths & bit != 0).then_some((tgid, tid))
}

/// Hook: `tp_btf/sys_enter`, `TP_PROTO(struct pt_regs *regs, long id)`
/// (include/trace/events/syscalls.h, fired from `trace_syscall_enter` for every syscall
/// while attached). BTF tracepoints since 5.5.
#[btf_tracepoint(function = "sys_enter")]
pub fn sys_enter(ctx: BtfTracePointContext) -> u32 {
    // Argument 1 of this tracepoint is `long id`.
    let nr: i64 = ctx.arg(1);
    let Some((tgid, tid)) = served(measurement(nr)) else {
        return 0;
    };
    // Argument 0 is `struct pt_regs *regs`, read only through bpf_probe_read_kernel
    // (`read_field`).
    let regs: *const u8 = ctx.arg(0);
    let _ = entered(regs, nr, tgid, tid);
    0
}

#[inline(always)]
fn entered(regs: *const u8, nr: i64, tgid: u32, tid: u32) -> Result<(), i64> {
    let arg = |off: u32| read_field::<u64>(regs, off);
    match nr {
        NR_WRITE => {
            if TRACED.get_ptr(&tgid).is_some() {
                start_call(tid, arg(off!(pt_regs_di))? as u32, arg(off!(pt_regs_si))?);
            }
        }
        NR_PWRITE64 | NR_WRITEV | NR_PWRITEV | NR_PWRITEV2 | NR_FSYNC | NR_FDATASYNC
        | NR_SYNC_FILE_RANGE => {
            if TRACED.get_ptr(&tgid).is_some() {
                start_call(tid, arg(off!(pt_regs_di))? as u32, 0);
            }
        }
        // rename(oldname, newname); renameat{,2}(olddfd, oldname, newdfd, newname, ...)
        NR_RENAME => {
            let (old, new) = (arg(off!(pt_regs_di))?, arg(off!(pt_regs_si))?);
            rename(old as *const u8, new as *const u8, Space::User)?;
        }
        NR_RENAMEAT | NR_RENAMEAT2 => {
            let (old, new) = (arg(off!(pt_regs_si))?, arg(off!(pt_regs_r10))?);
            rename(old as *const u8, new as *const u8, Space::User)?;
        }
        NR_CLONE | NR_CLONE3 | NR_FORK | NR_VFORK => fork_started(),
        NR_EXIT_GROUP => try_title()?,
        _ => {}
    }
    Ok(())
}

/// Hook: `tp_btf/sys_exit`, `TP_PROTO(struct pt_regs *regs, long ret)`
/// (include/trace/events/syscalls.h); the syscall number is `regs->orig_ax` (x86-64).
/// BTF tracepoints since 5.5.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> u32 {
    // Argument 0 is `struct pt_regs *regs`, read only through bpf_probe_read_kernel
    // (`read_field`); argument 1 is `long ret`.
    let regs: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // Cheapest filter first: most syscalls of the host are not from a traced process.
    if !maybe_traced(current_ids().0) {
        return 0;
    }
    let Ok(nr) = read_field::<i64>(regs, off!(pt_regs_orig_ax)) else {
        return 0;
    };
    let Some((tgid, tid)) = served(measurement(nr)) else {
        return 0;
    };
    let _ = exited(nr, ret, tgid, tid);
    0
}

#[inline(always)]
fn exited(nr: i64, ret: i64, tgid: u32, tid: u32) -> Result<(), i64> {
    match nr {
        NR_WRITE | NR_PWRITE64 | NR_WRITEV | NR_PWRITEV | NR_PWRITEV2 => {
            let start = take_start(tid)?;
            if ret <= 0 {
                return Ok(());
            }
            write_done(tgid, tid, start, fd_file(start.fd)?, ret)
        }
        NR_FSYNC => sync_exit(tgid, tid, SYNC_FSYNC),
        NR_FDATASYNC => sync_exit(tgid, tid, SYNC_FDATASYNC),
        NR_SYNC_FILE_RANGE => sync_exit(tgid, tid, SYNC_FILE_RANGE),
        NR_CLONE | NR_CLONE3 | NR_FORK | NR_VFORK => fork_returned(ret),
        NR_SETSID => setsid_returned(ret),
        _ => Ok(()),
    }
}

#[inline(always)]
fn sync_exit(tgid: u32, tid: u32, call: usize) -> Result<(), i64> {
    let start = take_start(tid)?;
    sync_done(tgid, tid, start, fd_file(start.fd).ok(), call)
}
