//! Process life cycle: fork opens a session, exit closes it, exec of a Redis binary
//! starts tracing it, and the parent's clone/fork syscall is timed.
use agent_common::{
    COMM_LEN, CowCounters, DROP_PROC, ERR_FORK_START, ERR_SESSION_PREV, ERR_SESSIONS, ERR_TRACED,
    EV_DAEMON, EV_EXEC, EV_EXIT, EV_FORK, EV_FORK_RET, EV_OOM, EV_SETSID, EV_TITLE,
    GATE_PARENT_EXITED, GATE_SETSID, IoCounters, ProcEvent, ROLE_CHILD, ROLE_ROOT, SessionState,
    TITLE_LEN, TracedProc,
};
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{bpf_get_current_comm, bpf_get_current_task, bpf_probe_read_user_buf},
    macros::{btf_tracepoint, fentry, fexit, tracepoint},
    programs::{BtfTracePointContext, FEntryContext, FExitContext, TracePointContext},
};
use aya_log_ebpf::debug;

use crate::{
    maps::{
        AGENT_TGID, AUTO_REDIS, DAEMON_GATE, FORK_START, PENDING, PROC_EVENTS, SESSION_PREV,
        SESSIONS, SYSCALL_START, TRACED,
    },
    off,
    util::{
        count_error, counted, current_ids, global, mark_maybe_traced, maybe_traced, now_ns,
        read_field, reserve,
    },
};

/// `-EEXIST` (include/uapi/asm-generic/errno-base.h): a `BPF_NOEXIST` insert found the key.
const EEXIST: i64 = 17;

#[inline(always)]
pub fn emit(kind: u32, pid: u32, ppid: u32, tid: u32, value: u64) {
    emit_with(
        kind,
        pid,
        ppid,
        tid,
        value,
        (CowCounters::ZERO, CowCounters::ZERO, CowCounters::ZERO),
        IoCounters::ZERO,
    );
}

/// Emit a session event. `cow` = (`cow_proc`, `cow_parent`, `cow_child`), see `ProcEvent`.
#[inline(always)]
fn emit_with(
    kind: u32,
    pid: u32,
    ppid: u32,
    tid: u32,
    value: u64,
    cow: (CowCounters, CowCounters, CowCounters),
    io: IoCounters,
) {
    let Some(mut e) = reserve::<ProcEvent>(&PROC_EVENTS, DROP_PROC) else {
        return;
    };
    e.write(ProcEvent {
        kind,
        pid,
        ppid,
        tid,
        ts_ns: now_ns(),
        value,
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        title: [0u8; TITLE_LEN],
        cow_proc: cow.0,
        cow_parent: cow.1,
        cow_child: cow.2,
        io,
    });
    // Submitted with a wakeup: these events are rare and the agent wants them promptly.
    e.submit(0);
}

/// The zeroed `SESSIONS` value a fork inserts (read-only global data: kernel 5.2).
static SESSION_TEMPLATE: SessionState = SessionState::ZERO;

/// Hook: `tp_btf/sched_process_fork`,
/// `TP_PROTO(struct task_struct *parent, struct task_struct *child)`
/// (include/trace/events/sched.h; this prototype is older than BPF itself). Lowest
/// kernel: 5.5, the first with BTF-enabled tracepoints (`tp_btf`).
/// Runs in the parent, inside `copy_process`, once the child is set up. Fires for new
/// threads too; those have `child->pid != child->tgid` and are skipped.
#[btf_tracepoint(function = "sched_process_fork")]
pub fn sched_process_fork(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fork(&ctx);
    0
}

fn try_fork(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let (parent_tgid, tid) = current_ids();
    if !maybe_traced(parent_tgid) {
        return Ok(());
    }
    let root = TRACED.get_ptr_mut(&parent_tgid).ok_or(0)?;
    // SAFETY: `root` is a non-null TRACED value pointer from bpf_map_lookup_elem, valid
    // for this program run.
    if unsafe { (*root).role } != ROLE_ROOT {
        // Children of session children are not sessions of their own.
        return Ok(());
    }
    let child: *const u8 = ctx.arg(1);
    let pid: i32 = read_field(child, off!(task_pid))?;
    let tgid: i32 = read_field(child, off!(task_tgid))?;
    if pid != tgid {
        return Ok(()); // a new thread of the parent, not a new process
    }
    let child_tgid = tgid as u32;
    // SAFETY: the same live TRACED value.
    let mut prev = unsafe { (*root).newest_child };
    if prev == child_tgid {
        prev = 0; // pid reuse of a reaped child: never link a session to itself
    }
    mark_maybe_traced(child_tgid);
    // A failed insert (a full map) loses this session: counted, never silent. The value
    // is copied from a zeroed template in .rodata, then its two fields are set: a
    // 240-byte value built on the stack took 6.1's verifier past its 512-byte combined
    // stack limit. No program reads the entry before the root's `newest_child` points to
    // it (below), and userspace skips an entry whose parent is still 0 (kernel/maps.rs).
    counted(
        SESSIONS.insert(&child_tgid, &SESSION_TEMPLATE, BPF_ANY as u64),
        ERR_SESSIONS,
    )?;
    let state = SESSIONS.get_ptr_mut(&child_tgid).ok_or(0)?;
    // SAFETY: `state` is the non-null SESSIONS value just inserted, valid for this run;
    // only this program writes these two fields, before the session is reachable.
    unsafe {
        (*state).parent_tgid = parent_tgid;
        (*state).fork_ts_ns = now_ns();
    }
    counted(
        SESSION_PREV.insert(&child_tgid, &prev, BPF_ANY as u64),
        ERR_SESSION_PREV,
    )?;
    let traced = TracedProc {
        role: ROLE_CHILD,
        newest_child: 0,
        parent_tgid,
        await_write: 0,
        total: CowCounters::ZERO,
        io: IoCounters::ZERO,
    };
    counted(
        TRACED.insert(&child_tgid, &traced, BPF_ANY as u64),
        ERR_TRACED,
    )?;
    // SAFETY: the same live TRACED value; aligned volatile u32 stores (two threads of
    // one root forking at once can only race over which child is the newest).
    unsafe {
        core::ptr::write_volatile(&mut (*root).newest_child, child_tgid);
        // The root's next socket write says whether this fork serves a replica.
        core::ptr::write_volatile(&mut (*root).await_write, child_tgid);
    }
    // A main thread that forks drops the untaken time of its last timed copy (fault.rs):
    // it belongs to an older session, and a reused child pid must not take it.
    if tid == parent_tgid
        && let Some(p) = PENDING.get_ptr_mut(&tid)
    {
        // SAFETY: `p` is this thread's non-null PENDING value; only this thread writes
        // its entry.
        unsafe { (*p).last_ns = 0 };
    }
    emit(EV_FORK, child_tgid, parent_tgid, tid, 0);
    debug!(ctx, "fork: session {} -> {}", parent_tgid, child_tgid);
    Ok(())
}

/// Hook: `tp_btf/sched_process_exit`, `TP_PROTO(struct task_struct *p, bool group_dead)`
/// since 6.16, `TP_PROTO(struct task_struct *p)` before (include/trace/events/sched.h;
/// Andrii Nakryiko's "exit: move and extend sched_process_exit() tracepoint"). Only
/// argument 0 is read, so both work; lowest kernel 5.5 (`tp_btf`). Runs in the exiting
/// task from `do_exit` (kernel/exit.c) after `exit_code` is set: since 6.16 before
/// `exit_mm()`, earlier after it (nothing here reads the mm). Like libbpf-tools'
/// exitsnoop, only the thread-group leader's exit counts as the process exit.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit(&ctx);
    0
}

fn try_exit(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    // Every exiting thread of a traced process drops its per-thread state.
    // A delete that finds nothing costs one lookup: no separate lookup first.
    let _ = PENDING.remove(&tid);
    let _ = SYSCALL_START.remove(&tid);
    if tgid != tid {
        return Ok(());
    }
    // SAFETY: bpf_map_lookup_elem returned a live TRACED value; it is copied out before
    // the entry is deleted below.
    let proc = unsafe { *TRACED.get(&tgid).ok_or(0)? };
    let task: *const u8 = ctx.arg(0);
    // `exit_code` holds the wait(2) status: (code << 8) or the killing signal.
    let code: i32 = read_field(task, off!(task_exit_code)).unwrap_or(-1);
    let mut session_cow = (CowCounters::ZERO, CowCounters::ZERO);
    let mut io = proc.io;
    let mut ppid = 0;
    if proc.role == ROLE_CHILD {
        ppid = proc.parent_tgid;
        if let Some(s) = SESSIONS.get_ptr_mut(&tgid) {
            // SAFETY: `s` is a non-null SESSIONS value pointer, valid for this run; the
            // fault path only reads `exited`.
            unsafe {
                core::ptr::write_volatile(&mut (*s).exited, 1);
                session_cow = ((*s).parent, (*s).child);
                io = (*s).io;
            }
        }
    }
    // Removed here, not by userspace, so a reused pid is never traced by mistake.
    let _ = TRACED.remove(&tgid);
    if proc.role == ROLE_CHILD {
        // A child that never finished daemonizing leaves its half behind.
        let _ = DAEMON_GATE.remove(&tgid);
    } else if proc.newest_child != 0 {
        parent_exited(proc.newest_child, tgid, tid);
    }
    let cow = (proc.total, session_cow.0, session_cow.1);
    emit_with(EV_EXIT, tgid, ppid, tid, code as u32 as u64, cow, io);
    debug!(ctx, "exit: {} code {}", tgid, code);
    Ok(())
}

/// A root exited while its newest session child `child` lives: the parent's half of a
/// daemonization (Redis's `daemonize()`, server.c: `if (fork() != 0) exit(0); setsid();`).
/// If the child has already called `setsid()`, it becomes the root now.
#[inline(always)]
fn parent_exited(child: u32, root: u32, tid: u32) {
    // SAFETY: the reference into the live TRACED value is only read within this run.
    let Some(c) = (unsafe { TRACED.get(&child) }) else {
        return; // exited already
    };
    if c.role != ROLE_CHILD || c.parent_tgid != root {
        return;
    }
    if DAEMON_GATE
        .insert(&child, &GATE_PARENT_EXITED, BPF_NOEXIST as u64)
        .is_err()
    {
        promote(child, root, tid);
    }
}

/// Session child `child` of `root` has both called `setsid()` and outlived its parent:
/// it is the server now. It becomes a root in place (its process totals kept), its
/// session entry goes (userspace drops the session: `EV_DAEMON`), and its own forks are
/// sessions from here on.
#[inline(always)]
fn promote(child: u32, root: u32, tid: u32) {
    let _ = DAEMON_GATE.remove(&child);
    let Some(p) = TRACED.get_ptr_mut(&child) else {
        return;
    };
    // SAFETY: `p` is a non-null TRACED value pointer, valid for this run; aligned
    // volatile u32 stores (only this promotion writes these fields of a child's entry:
    // the gate lets one hook through).
    unsafe {
        core::ptr::write_volatile(&mut (*p).newest_child, 0);
        core::ptr::write_volatile(&mut (*p).await_write, 0);
        core::ptr::write_volatile(&mut (*p).parent_tgid, 0);
        core::ptr::write_volatile(&mut (*p).role, ROLE_ROOT);
    }
    let _ = SESSIONS.remove(&child);
    let _ = SESSION_PREV.remove(&child);
    emit(EV_DAEMON, child, root, tid, 0);
}

/// Hook: `tracepoint/syscalls/sys_exit_setsid`, the return of `SYSCALL_DEFINE0(setsid)`
/// (kernel/sys.c): `long ret` at offset 16, the new session id, or a negative errno
/// (see /sys/kernel/tracing/events/syscalls/sys_exit_setsid/format). CONFIG_FTRACE_SYSCALLS,
/// BPF on classic tracepoints since 4.7. A save child never calls it; a daemonizing
/// child does, right after its `fork()`: the child's half of a daemonization.
#[tracepoint]
pub fn setsid_exit(ctx: TracePointContext) -> u32 {
    let _ = try_setsid(&ctx);
    0
}

/// Hook: `fexit/__x64_sys_setsid`, `long __x64_sys_setsid(const struct pt_regs *regs)`,
/// the `setsid` syscall itself (x86-64 since 4.17): the fentry path of `setsid_exit`
/// (trampoline.rs says why). Its return comes after its one argument.
#[fexit(function = "__x64_sys_setsid")]
pub fn sys_setsid_exit(ctx: FExitContext) -> u32 {
    let ret: i64 = ctx.arg(1);
    let _ = setsid_returned(ret);
    0
}

fn try_setsid(ctx: &TracePointContext) -> Result<(), i64> {
    if !maybe_traced(current_ids().0) {
        return Ok(());
    }
    // SAFETY: read_at is bpf_probe_read_kernel of the record at offset 16 (`long ret`).
    let ret: i64 = unsafe { ctx.read_at(16).map_err(|e| e as i64)? };
    setsid_returned(ret)
}

/// This thread's `setsid()` returned `ret` (both paths end here).
#[inline(always)]
pub fn setsid_returned(ret: i64) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    if ret < 0 {
        return Ok(());
    }
    // SAFETY: the reference into the live TRACED value is only read within this run.
    let proc = unsafe { TRACED.get(&tgid).ok_or(0)? };
    if proc.role != ROLE_CHILD {
        return Ok(());
    }
    let root = proc.parent_tgid;
    if DAEMON_GATE
        .insert(&tgid, &GATE_SETSID, BPF_NOEXIST as u64)
        .is_ok()
    {
        // The parent still runs: its exit will promote this child.
        emit(EV_SETSID, tgid, root, tid, 0);
    } else {
        promote(tgid, root, tid);
    }
    Ok(())
}

/// Hook: `tracepoint/oom/mark_victim`, when the OOM killer has chosen its victim. The
/// record (include/trace/events/oom.h; /sys/kernel/tracing/events/oom/mark_victim/format)
/// starts with `int pid` at offset 8 on every kernel since the event appeared (4.9);
/// since 6.8 it goes on with the comm, then `unsigned long total_vm, anon_rss, file_rss,
/// shmem_rss` (kB) at offsets 16..48: the RSS is read only when the record is that long
/// (a failed read leaves 0). Only traced processes (a server or a save child) are told.
#[tracepoint]
pub fn oom_victim(ctx: TracePointContext) -> u32 {
    let _ = try_oom_victim(&ctx);
    0
}

fn try_oom_victim(ctx: &TracePointContext) -> Result<(), i64> {
    // SAFETY: read_at is bpf_probe_read_kernel of the record at offset 8 (`int pid`, see
    // the format file); the helper returns an error instead of faulting.
    let pid = unsafe { ctx.read_at::<i32>(8)? } as u32;
    if !maybe_traced(pid) || TRACED.get_ptr(&pid).is_none() {
        return Ok(());
    }
    let mut rss_kb = 0u64;
    for off in [24usize, 32, 40] {
        // SAFETY: as above; on a kernel whose record is shorter the read fails and the
        // figure stays what it was.
        rss_kb += unsafe { ctx.read_at::<u64>(off) }.unwrap_or(0);
    }
    let (_, tid) = current_ids();
    emit(EV_OOM, pid, 0, tid, rss_kb.saturating_mul(1024));
    Ok(())
}

/// Hook: `tracepoint/syscalls/sys_enter_{clone,clone3,fork,vfork}`. The record holds
/// `int __syscall_nr` at offset 8 and the arguments from offset 16 (see
/// /sys/kernel/tracing/events/syscalls/sys_enter_clone/format, generated by
/// kernel/trace/trace_syscalls.c). Only the entry time is kept. Needs
/// CONFIG_FTRACE_SYSCALLS; BPF on classic tracepoints since 4.7; `clone3` exists since
/// 5.3 and the loader skips a missing name.
#[tracepoint]
pub fn fork_enter(_ctx: TracePointContext) -> u32 {
    fork_started();
    0
}

/// Hook: `fentry/kernel_clone`, `pid_t kernel_clone(struct kernel_clone_args *args)`
/// (kernel/fork.c), which `fork`, `vfork`, `clone` and `clone3` all call (`_do_fork`
/// before 5.10, so older kernels take the tracepoint path). The fentry path of
/// `fork_enter`; see `vfs.rs` for why it is preferred.
#[fentry(function = "kernel_clone")]
pub fn kernel_clone_entry(_ctx: FEntryContext) -> u32 {
    fork_started();
    0
}

/// Hook: `fexit/kernel_clone` (see `kernel_clone_entry`): the `pid_t` it returns comes
/// after its one argument (low 32 bits: an `int` return). With `vfork`, like the
/// tracepoint path, the time includes the wait for the child to exec or exit.
#[fexit(function = "kernel_clone")]
pub fn kernel_clone_exit(ctx: FExitContext) -> u32 {
    let _ = fork_returned(i64::from(ctx.arg::<i32>(1)));
    0
}

/// Hook: `tracepoint/syscalls/sys_exit_{clone,clone3,fork,vfork}`: `long ret` at offset 16
/// (the `format` files; same kernel needs as `fork_enter`).
/// In the parent, `ret` is the child's pid; the latency is what Redis reports as
/// `latest_fork_usec` (it times the `fork()` call).
#[tracepoint]
pub fn fork_exit(ctx: TracePointContext) -> u32 {
    let _ = try_fork_exit(&ctx);
    0
}

fn try_fork_exit(ctx: &TracePointContext) -> Result<(), i64> {
    if !maybe_traced(current_ids().0) {
        return Ok(());
    }
    // SAFETY: read_at is bpf_probe_read_kernel of the tracepoint record at offset 16
    // (`long ret`, see the format file); the helper returns an error instead of faulting.
    let ret: i64 = unsafe { ctx.read_at(16).map_err(|e| e as i64)? };
    fork_returned(ret)
}

/// Keep the entry time of a fork of a traced thread (both paths start here).
#[inline(always)]
pub fn fork_started() {
    let (tgid, tid) = current_ids();
    if maybe_traced(tgid) && TRACED.get_ptr(&tgid).is_some() {
        // A failure loses this fork's latency only (counted).
        let _ = counted(
            FORK_START.insert(&tid, &now_ns(), BPF_ANY as u64),
            ERR_FORK_START,
        );
    }
}

/// The fork of this thread returned `ret` (the child's pid in the parent): emit its
/// latency (both paths end here).
#[inline(always)]
pub fn fork_returned(ret: i64) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    // SAFETY: bpf_map_lookup_elem returned a live FORK_START value; the u64 is copied out
    // before the entry is removed.
    let start = unsafe { *FORK_START.get(&tid).ok_or(0)? };
    let _ = FORK_START.remove(&tid);
    if ret > 0 {
        emit(
            EV_FORK_RET,
            ret as u32,
            tgid,
            tid,
            now_ns().saturating_sub(start),
        );
    }
    Ok(())
}

/// Hook: `tp_btf/sched_process_exec`,
/// `TP_PROTO(struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)`
/// (include/trace/events/sched.h, fired from `exec_binprm` in fs/exec.c); no argument is
/// read. BTF tracepoints since 5.5 (a BTF tracepoint rather than the classic one: its
/// link detaches without the classic one's ~40 ms wait, see syscall.rs). After exec the
/// task's comm is the new binary's name (set in `begin_new_exec`), so in auto mode a
/// Redis server started after cowtrace is picked up here, before it can fork.
#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> u32 {
    let _ = try_exec(&ctx);
    0
}

fn is_redis_comm(c: &[u8; COMM_LEN]) -> bool {
    const REDIS: &[u8] = b"redis-server\0";
    const VALKEY: &[u8] = b"valkey-server\0";
    c.starts_with(REDIS) || c.starts_with(VALKEY)
}

fn try_exec(ctx: &BtfTracePointContext) -> Result<(), i64> {
    if global(&AUTO_REDIS) == 0 {
        return Ok(());
    }
    let (tgid, tid) = current_ids();
    if tgid == global(&AGENT_TGID) {
        return Ok(());
    }
    let comm = bpf_get_current_comm().map_err(|e| e as i64)?;
    if !is_redis_comm(&comm) {
        return Ok(());
    }
    let traced = TracedProc {
        role: ROLE_ROOT,
        newest_child: 0,
        parent_tgid: 0,
        await_write: 0,
        total: CowCounters::ZERO,
        io: IoCounters::ZERO,
    };
    mark_maybe_traced(tgid);
    match TRACED.insert(&tgid, &traced, BPF_NOEXIST as u64) {
        Ok(()) => {
            emit(EV_EXEC, tgid, 0, tid, BPF_ANY as u64);
            debug!(ctx, "exec: tracing redis {}", tgid);
        }
        // Already traced (an exec of a traced server): nothing to do.
        Err(e) if i64::from(e) == -EEXIST => {}
        // A full map: this server goes untraced, counted.
        Err(_) => count_error(ERR_TRACED),
    }
    Ok(())
}

/// Hook: `tracepoint/syscalls/sys_enter_exit_group` (no argument read; CONFIG_FTRACE_SYSCALLS,
/// 4.7+). A session child is about to exit
/// and its memory is still mapped, so its process title (Redis rewrites argv in place
/// with setproctitle, without a syscall) can be read from `mm->arg_start`. This is the
/// classification fallback for children that exit before userspace reads /proc.
#[tracepoint]
pub fn exit_group_enter(_ctx: TracePointContext) -> u32 {
    let _ = try_title();
    0
}

/// Hook: `fentry/__x64_sys_exit_group`, `long __x64_sys_exit_group(const struct pt_regs
/// *regs)`, the `exit_group` syscall itself (kernel/exit.c; x86-64 since 4.17): the
/// fentry path of `exit_group_enter`, the same calls. Not `do_group_exit`: a small
/// function the syscall could inline, as Debian's 6.12 inlines the sync functions into
/// theirs (see trampoline.rs); a syscall function is called through the syscall table,
/// never inlined. No argument is read.
#[fentry(function = "__x64_sys_exit_group")]
pub fn sys_exit_group_entry(_ctx: FEntryContext) -> u32 {
    let _ = try_title();
    0
}

pub fn try_title() -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    // SAFETY: the reference into the live TRACED value is only read (role, parent_tgid)
    // within this run.
    let proc = unsafe { TRACED.get(&tgid).ok_or(0)? };
    if proc.role != ROLE_CHILD {
        return Ok(());
    }
    let ppid = proc.parent_tgid;
    // SAFETY: bpf_get_current_task has no preconditions; the task pointer is only
    // dereferenced through bpf_probe_read_kernel (`read_field`).
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mm: u64 = read_field(task, off!(task_mm))?;
    if mm == 0 {
        return Ok(());
    }
    let arg_start: u64 = read_field(mm as *const u8, off!(mm_arg_start))?;
    let arg_end: u64 = read_field(mm as *const u8, off!(mm_arg_end))?;
    let mut e = reserve::<ProcEvent>(&PROC_EVENTS, DROP_PROC).ok_or(0)?;
    e.write(ProcEvent {
        kind: EV_TITLE,
        pid: tgid,
        ppid,
        tid,
        ts_ns: now_ns(),
        // The argv area's length: the 64 bytes read may run on into the environment.
        value: arg_end.saturating_sub(arg_start),
        comm: bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]),
        title: [0u8; TITLE_LEN],
        cow_proc: CowCounters::ZERO,
        cow_parent: CowCounters::ZERO,
        cow_child: CowCounters::ZERO,
        io: IoCounters::ZERO,
    });
    let ev = e.as_mut_ptr();
    // SAFETY: `ev` points to the reserved ring-buffer entry written above, so `title` is a
    // valid TITLE_LEN buffer; bpf_probe_read_user reads the user address and returns an
    // error instead of faulting (the buffer is then zeroed).
    unsafe {
        let _ = bpf_probe_read_user_buf(arg_start as *const u8, &mut (*ev).title);
    }
    e.submit(0);
    Ok(())
}
