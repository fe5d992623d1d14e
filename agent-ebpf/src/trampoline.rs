//! The fentry/fexit (BPF trampoline) path of `write.rs` (writes, syncs, renames): kernel
//! functions under those syscalls instead of the syscall tracepoints.
//!
//! Why: while any `syscalls/*` tracepoint is attached, the kernel sends every syscall of
//! every task through its slow path (`SYSCALL_WORK_SYSCALL_TRACEPOINT`, set on all tasks
//! by `syscall_regfunc` in kernel/tracepoint.c), which made an untraced 4 KiB `write()`
//! 1.18× slower on the development host; a BPF trampoline costs only the calls of its
//! own function. The counts are the same: each function below is reached once per call
//! of the syscalls the tracepoint path hooks, and they end in the same code
//! (`write_done`, `sync_done`, `rename`).
//!
//! Which functions: the VFS functions where every caller reaches them out of line
//! (`vfs_write`, `vfs_writev`, `do_renameat2`: large, called from several syscalls). Not
//! `vfs_fsync` or `ksys_sync_file_range`: both are in BTF (an out-of-line copy exists
//! for other callers) but the `fsync`, `fdatasync` and `sync_file_range` syscalls inline
//! them on Debian's 6.12, so an fentry there never saw a call (the sync ground-truth
//! test in `cargo xtask vmtest` counted 0 of 9). The sync calls are hooked on the
//! syscall functions themselves (`__x64_sys_*`, called through the syscall table, so
//! never inlined), which also gives the same calls as the tracepoints, fd included.
//!
//! fentry/fexit need BPF trampolines (x86-64 since 5.5) and a kernel that allows them
//! (the development host refuses them with EPERM). The loader checks each function's
//! prototype in the kernel's BTF, tries this path per measurement and falls back to the
//! tracepoints of that measurement when anything is refused. The return value of an
//! fexit program is read as the argument after the last one (`ctx.arg(n)`), which works
//! since 5.5 (`bpf_get_func_ret` needs 5.17).
use agent_common::{NO_FD, SYNC_FDATASYNC, SYNC_FILE_RANGE, SYNC_FSYNC};
use aya_ebpf::{
    macros::{fentry, fexit},
    programs::{FEntryContext, FExitContext},
};

use crate::{
    maps::TRACED,
    off,
    util::{current_ids, maybe_traced, read_field},
    write::{Space, fd_file, rename, start_call, sync_done, take_start, write_done},
};

/// The entry of a write or sync call by a traced thread: keep its time (and fd, and
/// `write`'s buffer).
#[inline(always)]
fn enter(fd: u32, buf: u64) {
    let (tgid, tid) = current_ids();
    if maybe_traced(tgid) && TRACED.get_ptr(&tgid).is_some() {
        start_call(tid, fd, buf);
    }
}

/// Hook: `fentry/vfs_write`, `ssize_t vfs_write(struct file *file, const char __user *buf,
/// size_t count, loff_t *pos)` (fs/read_write.c), reached from the `write` and
/// `pwrite64` syscalls (`ksys_write`, `ksys_pwrite64`). This prototype since 4.14 at
/// least; fentry since 5.5.
#[fentry(function = "vfs_write")]
pub fn vfs_write_entry(ctx: FEntryContext) -> u32 {
    // `buf` (argument 1): the server's socket writes are read for `+FULLRESYNC`, as the
    // tracepoint path's `write_enter` does. The fd is not known here.
    let buf: u64 = ctx.arg(1);
    enter(NO_FD, buf);
    0
}

/// Hook: `fexit/vfs_write` (see `vfs_write_entry`): `file` is argument 0, the return
/// value comes after the 4 arguments.
#[fexit(function = "vfs_write")]
pub fn vfs_write_exit(ctx: FExitContext) -> u32 {
    // Both read first, at constant offsets: the verifier refuses a context pointer that
    // was moved by a computed offset ("dereference of modified ctx ptr").
    let file: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(4);
    let _ = written(file, ret);
    0
}

/// Hook: `fentry/vfs_writev`, `static ssize_t vfs_writev(struct file *file, const struct
/// iovec __user *vec, unsigned long vlen, loff_t *pos, rwf_t flags)` (fs/read_write.c),
/// reached from `writev`, `pwritev` and `pwritev2`. Static, so it must not be inlined:
/// the loader checks that BTF lists it (6.1 and 6.12 do). This prototype since 4.6.
#[fentry(function = "vfs_writev")]
pub fn vfs_writev_entry(_ctx: FEntryContext) -> u32 {
    enter(NO_FD, 0);
    0
}

/// Hook: `fexit/vfs_writev`: the return value comes after the 5 arguments.
#[fexit(function = "vfs_writev")]
pub fn vfs_writev_exit(ctx: FExitContext) -> u32 {
    let file: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(5);
    let _ = written(file, ret);
    0
}

#[inline(always)]
fn written(file: *const u8, ret: i64) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let start = take_start(tid)?;
    write_done(tgid, tid, start, file, ret)
}

/// The fd of a syscall function's call: its first argument, `regs->di` of the
/// `struct pt_regs *` every `__x64_sys_*` function takes (x86-64 calling convention of
/// syscalls, arch/x86/include/asm/syscall_wrapper.h, since 4.17).
#[inline(always)]
fn syscall_fd(ctx: &FEntryContext) -> u32 {
    let regs: *const u8 = ctx.arg(0);
    read_field::<u64>(regs, off!(pt_regs_di)).map_or(NO_FD, |fd| fd as u32)
}

/// A sync syscall of kind `call` returned: the same end as the tracepoint path's.
#[inline(always)]
fn sync_exit(call: usize) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let start = take_start(tid)?;
    sync_done(tgid, tid, start, fd_file(start.fd).ok(), call)
}

/// Hook: `fentry/__x64_sys_fsync`, `long __x64_sys_fsync(const struct pt_regs *regs)`,
/// the `fsync` syscall (`SYSCALL_DEFINE1(fsync, unsigned int, fd)`, fs/sync.c). Keeps
/// the fd. x86-64 since 4.17; fentry since 5.5.
#[fentry(function = "__x64_sys_fsync")]
pub fn sys_fsync_entry(ctx: FEntryContext) -> u32 {
    enter(syscall_fd(&ctx), 0);
    0
}

/// Hook: `fexit/__x64_sys_fsync` (see `sys_fsync_entry`); no argument is read.
#[fexit(function = "__x64_sys_fsync")]
pub fn sys_fsync_exit(_ctx: FExitContext) -> u32 {
    let _ = sync_exit(SYNC_FSYNC);
    0
}

/// Hook: `fentry/__x64_sys_fdatasync`, the `fdatasync` syscall; as `sys_fsync_entry`.
#[fentry(function = "__x64_sys_fdatasync")]
pub fn sys_fdatasync_entry(ctx: FEntryContext) -> u32 {
    enter(syscall_fd(&ctx), 0);
    0
}

/// Hook: `fexit/__x64_sys_fdatasync`.
#[fexit(function = "__x64_sys_fdatasync")]
pub fn sys_fdatasync_exit(_ctx: FExitContext) -> u32 {
    let _ = sync_exit(SYNC_FDATASYNC);
    0
}

/// Hook: `fentry/__x64_sys_sync_file_range`, the `sync_file_range` syscall
/// (`SYSCALL_DEFINE4(sync_file_range, int, fd, ...)`, fs/sync.c; x86-64 has no
/// `sync_file_range2`); as `sys_fsync_entry`.
#[fentry(function = "__x64_sys_sync_file_range")]
pub fn sys_sync_file_range_entry(ctx: FEntryContext) -> u32 {
    enter(syscall_fd(&ctx), 0);
    0
}

/// Hook: `fexit/__x64_sys_sync_file_range`.
#[fexit(function = "__x64_sys_sync_file_range")]
pub fn sys_sync_file_range_exit(_ctx: FExitContext) -> u32 {
    let _ = sync_exit(SYNC_FILE_RANGE);
    0
}

/// Hook: `fentry/do_renameat2`, `int do_renameat2(int olddfd, struct filename *from, int
/// newdfd, struct filename *to, unsigned int flags)` (fs/namei.c), reached from `rename`,
/// `renameat` and `renameat2`. Takes `struct filename *` since 5.12 (before, user
/// pointers: the loader checks the prototype); `filename.name` is the kernel's copy of
/// the path as the caller gave it, the string the tracepoint path reads from user memory.
#[fentry(function = "do_renameat2")]
pub fn do_renameat2_entry(ctx: FEntryContext) -> u32 {
    let _ = try_renameat2(&ctx);
    0
}

fn try_renameat2(ctx: &FEntryContext) -> Result<(), i64> {
    if !maybe_traced(current_ids().0) {
        return Ok(());
    }
    let from: *const u8 = ctx.arg(1);
    let to: *const u8 = ctx.arg(3);
    let old: u64 = read_field(from, off!(filename_name))?;
    let new: u64 = read_field(to, off!(filename_name))?;
    rename(old as *const u8, new as *const u8, Space::Kernel)
}
