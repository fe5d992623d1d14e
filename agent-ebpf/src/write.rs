//! Disk-write syscalls of traced processes: write family, sync family, renames.
//!
//! Only writes to regular files count (`S_ISREG(inode->i_mode)`): Redis also writes
//! replies to client sockets and to pipes, which are not disk writes. Every counted
//! write also records the inode's owner for `block.rs`.
use agent_common::{
    DROP_HOT, DROP_PROC, EV_FSYNC, EV_RENAME, EV_WRITE, FileKey, FileStat, InodeKey, InodeOwner,
    IoCounters, IoEvent, NAME_LEN, ROLE_CHILD, RenameEvent,
};
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes,
    },
    macros::tracepoint,
    programs::TracePointContext,
};

use crate::{
    maps::{
        FILES, HOT_EVENTS, INODE_OWNER, PROC_EVENTS, SESSIONS, SYSCALL_START, SyscallStart, TRACED,
    },
    off,
    util::{add, current_ids, maybe_traced, now_ns, read_field, reserve},
};

const S_IFMT: u16 = 0o170000;
const S_IFREG: u16 = 0o100000;

/// Hook: `tracepoint/syscalls/sys_enter_{write,pwrite64,writev,pwritev,pwritev2}` and
/// `sys_enter_{fsync,fdatasync,sync_file_range}`: the first argument, the fd, is at
/// offset 16 of the record (see the `format` files). Keeps the entry time and fd.
#[tracepoint]
pub fn fd_syscall_enter(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) || TRACED.get_ptr(&tgid).is_none() {
        return 0;
    }
    // SAFETY: read_at is bpf_probe_read_kernel of the tracepoint record at offset 16, the
    // first syscall argument (the fd); errors become u64::MAX.
    let fd: u64 = unsafe { ctx.read_at(16).unwrap_or(u64::MAX) };
    let start = SyscallStart {
        ts_ns: now_ns(),
        fd: fd as u32,
        active: 1,
    };
    match SYSCALL_START.get_ptr_mut(&tid) {
        // Only this thread writes its entry: updated in place, no insert per syscall.
        // SAFETY: `p` is this thread's non-null SYSCALL_START value; only this thread
        // writes it.
        Some(p) => unsafe { *p = start },
        None => {
            let _ = SYSCALL_START.insert(&tid, &start, BPF_ANY as u64);
        }
    }
    0
}

/// The entry of this thread's write or sync syscall, marked used.
#[inline(always)]
fn take_start(tid: u32) -> Result<SyscallStart, i64> {
    let p = SYSCALL_START.get_ptr_mut(&tid).ok_or(0)?;
    // SAFETY: `p` is this thread's non-null SYSCALL_START value; copied out at once.
    let start = unsafe { *p };
    if start.active == 0 {
        return Err(0);
    }
    // SAFETY: the same SYSCALL_START value; only this thread writes it.
    unsafe { core::ptr::write_volatile(&mut (*p).active, 0) };
    Ok(start)
}

/// The `struct file *` behind `fd` in the current task: `current->files->fdt->fd[fd]`.
#[inline(always)]
fn fd_file(fd: u32) -> Result<*const u8, i64> {
    // SAFETY: bpf_get_current_task has no preconditions; the pointer is only read through
    // bpf_probe_read_kernel.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let files: u64 = read_field(task, off!(task_files))?;
    let fdt: u64 = read_field(files as *const u8, off!(files_fdt))?;
    let max: u32 = read_field(fdt as *const u8, off!(fdtable_max_fds))?;
    if fd >= max {
        return Err(-1);
    }
    let arr: u64 = read_field(fdt as *const u8, off!(fdtable_fd))?;
    // SAFETY: bpf_probe_read_kernel of `fdt->fd[fd]` (fd < max_fds checked above); a stale
    // or bad address makes the helper return an error, not fault.
    let file: u64 = unsafe {
        aya_ebpf::helpers::bpf_probe_read_kernel((arr as *const u64).add(fd as usize))
            .map_err(|e| e as i64)?
    };
    if file == 0 {
        return Err(-1);
    }
    Ok(file as *const u8)
}

/// (dev, ino) of a regular file's inode, or None for sockets, pipes, ttys.
#[inline(always)]
pub fn regular_inode(inode: *const u8) -> Option<InodeKey> {
    let mode: u16 = read_field(inode, off!(inode_mode)).ok()?;
    if mode & S_IFMT != S_IFREG {
        return None;
    }
    let ino: u64 = read_field(inode, off!(inode_ino)).ok()?;
    let sb: u64 = read_field(inode, off!(inode_sb)).ok()?;
    let dev: u32 = read_field(sb as *const u8, off!(sb_dev)).ok()?;
    Some(InodeKey { dev, _pad: 0, ino })
}

/// (session, role) of a traced tgid: a session child charges its own session.
#[inline(always)]
fn session_of(tgid: u32) -> Option<u32> {
    // SAFETY: the reference into the live TRACED value is only used to read `role` within
    // this run.
    let p = unsafe { TRACED.get(&tgid)? };
    Some(if p.role == ROLE_CHILD { tgid } else { 0 })
}

/// Apply `f` to the I/O counters of process `tgid` and of `session` (when not 0).
/// Written as plain `if let`s: an iterator over both pointers let LLVM compute a field
/// address before the null check, which the verifier rejects.
#[inline(always)]
pub fn with_io(tgid: u32, session: u32, f: impl Fn(*mut IoCounters)) {
    if let Some(p) = TRACED.get_ptr_mut(&tgid) {
        // SAFETY: `p` is a non-null TRACED value pointer; only the field address is
        // computed.
        f(unsafe { core::ptr::addr_of_mut!((*p).io) });
    }
    if session != 0
        && let Some(s) = SESSIONS.get_ptr_mut(&session)
    {
        // SAFETY: `s` is a non-null SESSIONS value pointer; only the field address is
        // computed.
        f(unsafe { core::ptr::addr_of_mut!((*s).io) });
    }
}

/// Hook: `tracepoint/syscalls/sys_exit_{write,pwrite64,writev,pwritev,pwritev2}`:
/// `long ret` at offset 16, the bytes written.
#[tracepoint]
pub fn write_exit(ctx: TracePointContext) -> u32 {
    let _ = try_write_exit(&ctx);
    0
}

fn try_write_exit(ctx: &TracePointContext) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let start = take_start(tid)?;
    let ret: i64 = unsafe { ctx.read_at(16).map_err(|e| e as i64)? };
    if ret <= 0 {
        return Ok(());
    }
    let bytes = ret as u64;
    let file = fd_file(start.fd)?;
    let inode: u64 = read_field(file, off!(file_inode))?;
    let key = regular_inode(inode as *const u8).ok_or(0)?;
    let session = session_of(tgid).ok_or(0)?;
    let now = now_ns();
    let lat = now.saturating_sub(start.ts_ns);
    // SAFETY: `with_io` passes only non-null IoCounters pointers into live map values;
    // `add` is an atomic add on their aligned u64 fields.
    with_io(tgid, session, |io| unsafe {
        add(&mut (*io).write_calls, 1);
        add(&mut (*io).write_bytes, bytes);
        add(&mut (*io).write_ns, lat);
    });
    // Written once per file and owner, not on every write (an LRU update takes a lock).
    let owner = InodeOwner { session, tgid };
    // SAFETY: the reference into the live INODE_OWNER value is only compared, within this
    // run.
    if unsafe { INODE_OWNER.get(&key) } != Some(&owner) {
        let _ = INODE_OWNER.insert(&key, &owner, BPF_ANY as u64);
    }
    emit_io(EV_WRITE, tgid, tid, session, now, lat, bytes, key, start.fd);
    if session == 0 {
        // Outside a session only the process totals count: no per-file row, so a
        // server that creates files for days (AOF increments) leaves no map entries.
        return Ok(());
    }
    let fkey = FileKey {
        session,
        tgid,
        dev: key.dev,
        _pad: 0,
        ino: key.ino,
    };
    match FILES.get_ptr_mut(&fkey) {
        // SAFETY: `f` is a non-null FILES value pointer from bpf_map_lookup_elem; `add` is
        // an atomic add on its aligned u64 fields.
        Some(f) => unsafe {
            add(&mut (*f).bytes, bytes);
            add(&mut (*f).calls, 1);
        },
        None => {
            let mut stat = FileStat {
                bytes,
                calls: 1,
                name: [0u8; NAME_LEN],
            };
            // file->f_path.dentry->d_name.name: the name at the first write.
            if let Ok(dentry) = read_field::<u64>(file, off!(file_dentry))
                && let Ok(name) = read_field::<u64>(dentry as *const u8, off!(dentry_name))
            {
                // SAFETY: bpf_probe_read_kernel_str copies at most NAME_LEN bytes of the
                // dentry name into `stat.name`, returning an error instead of faulting on
                // a bad address.
                let _ =
                    unsafe { bpf_probe_read_kernel_str_bytes(name as *const u8, &mut stat.name) };
            }
            let _ = FILES.insert(&fkey, &stat, BPF_ANY as u64);
        }
    }
    Ok(())
}

/// Hook: `tracepoint/syscalls/sys_exit_{fsync,fdatasync,sync_file_range}`.
#[tracepoint]
pub fn fsync_exit(_ctx: TracePointContext) -> u32 {
    let _ = try_fsync_exit();
    0
}

fn try_fsync_exit() -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let start = take_start(tid)?;
    let session = session_of(tgid).ok_or(0)?;
    let now = now_ns();
    let lat = now.saturating_sub(start.ts_ns);
    // SAFETY: `with_io` passes only non-null IoCounters pointers into live map values;
    // `add` is an atomic add on their aligned u64 fields.
    with_io(tgid, session, |io| unsafe {
        add(&mut (*io).fsync_calls, 1);
        add(&mut (*io).fsync_ns, lat);
    });
    let mut key = InodeKey::default();
    if let Ok(file) = fd_file(start.fd)
        && let Ok(inode) = read_field::<u64>(file, off!(file_inode))
        && let Some(k) = regular_inode(inode as *const u8)
    {
        key = k;
    }
    emit_io(EV_FSYNC, tgid, tid, session, now, lat, 0, key, start.fd);
    Ok(())
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub fn emit_io(
    kind: u32,
    pid: u32,
    tid: u32,
    session: u32,
    ts_ns: u64,
    latency_ns: u64,
    bytes: u64,
    key: InodeKey,
    fd: u32,
) {
    match HOT_EVENTS.reserve::<IoEvent>(0) {
        Some(mut e) => {
            e.write(IoEvent {
                kind,
                pid,
                tid,
                session,
                ts_ns,
                latency_ns,
                bytes,
                ino: key.ino,
                dev: key.dev,
                fd,
            });
            e.submit(BPF_RB_NO_WAKEUP as u64);
        }
        None => crate::util::count_drop(DROP_HOT),
    }
}

/// Hook: `tracepoint/syscalls/sys_enter_rename`: `const char *oldname` at 16,
/// `const char *newname` at 24.
#[tracepoint]
pub fn rename_enter(ctx: TracePointContext) -> u32 {
    let _ = try_rename(&ctx, 16, 24);
    0
}

/// Hook: `tracepoint/syscalls/sys_enter_renameat{,2}`: `int olddfd` at 16,
/// `oldname` at 24, `int newdfd` at 32, `newname` at 40.
#[tracepoint]
pub fn renameat_enter(ctx: TracePointContext) -> u32 {
    let _ = try_rename(&ctx, 24, 40);
    0
}

fn try_rename(ctx: &TracePointContext, old_off: usize, new_off: usize) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let session = session_of(tgid).ok_or(0)?;
    // SAFETY: read_at is bpf_probe_read_kernel of the tracepoint record at the offsets of
    // the two path pointers (see the format files); the helper returns an error instead of
    // faulting.
    let old: u64 = unsafe { ctx.read_at(old_off).map_err(|e| e as i64)? };
    let new: u64 = unsafe { ctx.read_at(new_off).map_err(|e| e as i64)? };
    let mut e = reserve::<RenameEvent>(&PROC_EVENTS, DROP_PROC).ok_or(0)?;
    e.write(RenameEvent {
        kind: EV_RENAME,
        pid: tgid,
        session,
        tid,
        ts_ns: now_ns(),
        old: [0u8; NAME_LEN],
        new: [0u8; NAME_LEN],
    });
    let p = e.as_mut_ptr();
    // SAFETY: `p` points to the reserved RenameEvent written above, so `old` and `new` are
    // valid NAME_LEN buffers; bpf_probe_read_user_str reads the user paths and returns an
    // error instead of faulting.
    unsafe {
        let _ = bpf_probe_read_user_str_bytes(old as *const u8, &mut (*p).old);
        let _ = bpf_probe_read_user_str_bytes(new as *const u8, &mut (*p).new);
    }
    e.submit(0);
    Ok(())
}
