//! COW by cause and by memory region (issue 15).
//!
//! Cause: uprobes on a Redis server's command functions (`setCommand`, ...) and on its
//! background functions (`serverCron`, `activeExpireCycle`, ...) set the calling
//! thread's current cause (`THREAD_CAUSE`) from their attach cookie. The agent attaches
//! them to one server, only while a session of that server runs
//! (`agent/src/kernel/causes.rs`), so they cost nothing outside saves. A command probe is
//! an entry probe only (a uretprobe per command would cost a second trap per command):
//! the command stays the cause until the next probe fires, which is the next command or
//! the event loop's `beforeSleep`. Background functions, called a few times a second,
//! also get a uretprobe that restores the cause they interrupted.
//!
//! Region: the agent writes the server's writable mappings at fork into `REGIONS`; a
//! parent copy is counted on the row holding its fault address (a bounded binary search).
//!
//! Both are counted on a confirmed parent copy of a live session, from `fault.rs`'s
//! `try_alloc`, in `ATTRIB` (atomic adds; an insert that fails is counted in
//! `ATTRIB_ERRORS`, and the agent charges what is missing to `other`).
use agent_common::{
    ATTRIB_CAUSE, ATTRIB_REGION, AttribKey, CAUSE_LOOP, CAUSE_NONE, CAUSE_THREAD, REGION_ROWS,
    REGION_UNKNOWN, REGION_UNMAPPED, ThreadCause,
};
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::generated::bpf_get_attach_cookie,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};

use crate::{
    maps::{ATTRIB, ATTRIB_ERRORS, REGIONS, THREAD_CAUSE},
    util::{atomic_add, current_ids},
};

/// Iterations of the region search: 2^7 > `REGION_ROWS`.
const SEARCH_STEPS: usize = 7;

/// The attach cookie of the running uprobe (its cause id).
#[inline(always)]
fn cookie<C: aya_ebpf::EbpfContext>(ctx: &C) -> u32 {
    // SAFETY: bpf_get_attach_cookie reads the cookie of the perf event this program runs
    // for (0 when none was set); `ctx` is the program's own context pointer.
    unsafe { bpf_get_attach_cookie(ctx.as_ptr()) as u32 }
}

/// Hook: uprobe at the entry of a command function, `void xxxCommand(client *c)`
/// (Redis `server.h`; exported by `-rdynamic` builds since Redis 2.x). Uprobe attach
/// cookies need kernel 5.15. Sets the thread's cause to the cookie, keeping the stack
/// of interrupted background causes.
#[uprobe]
pub fn cause_command(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let cause = cookie(&ctx);
    match THREAD_CAUSE.get_ptr_mut(&tid) {
        // SAFETY: `t` is this thread's non-null THREAD_CAUSE value; only this thread
        // writes it while the server runs.
        Some(t) => unsafe { (*t).cur = cause },
        None => insert(tid, tgid, cause),
    }
    0
}

/// Hook: uprobe at the entry of the event loop's `void beforeSleep(struct aeEventLoop *)`
/// (Redis `server.c`, since 2.6), once per event-loop turn. Sets the cause to the
/// event loop and empties the stack, so a uretprobe missed (a `longjmp`, a probe
/// attached mid-call) cannot leave a stale cause for longer than one turn.
#[uprobe]
pub fn cause_loop(_ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    match THREAD_CAUSE.get_ptr_mut(&tid) {
        // SAFETY: this thread's non-null THREAD_CAUSE value, written only by this thread.
        Some(t) => unsafe {
            (*t).cur = CAUSE_LOOP;
            (*t).depth = 0;
        },
        None => insert(tid, tgid, CAUSE_LOOP),
    }
    0
}

/// Hook: uprobe at the entry of a background function (`int serverCron(...)`,
/// `void activeExpireCycle(int type)`, `int performEvictions(void)`,
/// `void activeDefragCycle(void)`, `int incrementallyRehash(int dbid)`; Redis `server.h`,
/// 7.0). Pushes the current cause and sets the cookie's.
#[uprobe]
pub fn cause_enter(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let cause = cookie(&ctx);
    let Some(t) = THREAD_CAUSE.get_ptr_mut(&tid) else {
        // The thread's first probe: push "no cause yet", so the uretprobe restores it
        // rather than leaving this background cause in place until the next probe.
        let t = ThreadCause {
            cur: cause,
            depth: 1,
            tgid,
            ..ThreadCause::default()
        };
        if THREAD_CAUSE.insert(&tid, &t, BPF_ANY as u64).is_err() {
            count_error();
        }
        return 0;
    };
    // SAFETY: this thread's non-null THREAD_CAUSE value, written only by this thread.
    unsafe {
        let d = (*t).depth;
        if let Some(slot) = slot((*t).depth, &mut (*t).stack) {
            *slot = (*t).cur;
            (*t).depth = d + 1;
        }
        (*t).cur = cause;
    }
    0
}

/// Hook: uretprobe of the same background functions: restores the cause `cause_enter`
/// pushed.
#[uretprobe]
pub fn cause_leave(_ctx: RetProbeContext) -> u32 {
    let (_, tid) = current_ids();
    if let Some(t) = THREAD_CAUSE.get_ptr_mut(&tid) {
        // SAFETY: this thread's non-null THREAD_CAUSE value, written only by this thread.
        unsafe {
            let d = (*t).depth;
            if d > 0
                && let Some(prev) = slot(d - 1, &mut (*t).stack)
            {
                (*t).cur = *prev;
                (*t).depth = d - 1;
            }
        }
    }
    0
}

/// Slot `i` of a cause stack. The index is masked after a volatile read: LLVM turned
/// both a bounds check and a `match` into an index whose bound the verifier could not
/// see ("R3 unbounded memory access").
#[inline(always)]
fn slot(i: u32, stack: &mut [u32; 4]) -> Option<&mut u32> {
    if i >= 4 {
        return None;
    }
    // SAFETY: a volatile read of a local; it only hides the value from the optimiser.
    let i = unsafe { core::ptr::read_volatile(&i) } & 3;
    stack.get_mut(i as usize)
}

#[inline(always)]
fn insert(tid: u32, tgid: u32, cause: u32) {
    let t = ThreadCause {
        cur: cause,
        tgid,
        ..ThreadCause::default()
    };
    if THREAD_CAUSE.insert(&tid, &t, BPF_ANY as u64).is_err() {
        count_error();
    }
}

/// Charge one confirmed parent copy of `session`, made by thread `tid` of `tgid` at
/// `addr`, to its cause and its region. Called from `fault.rs`'s `try_alloc`.
#[inline(always)]
pub fn charge_parent_copy(session: u32, tgid: u32, tid: u32, addr: u64) {
    let cause = if tid != tgid {
        CAUSE_THREAD | tid
    } else {
        // SAFETY: the reference points into a live THREAD_CAUSE value, read at once.
        unsafe { THREAD_CAUSE.get(&tid) }.map_or(CAUSE_NONE, |t| t.cur)
    };
    add(session, ATTRIB_CAUSE, cause);
    add(session, ATTRIB_REGION, region(session, addr));
}

/// The row of `session`'s region table that holds `addr`.
#[inline(always)]
fn region(session: u32, addr: u64) -> u32 {
    // SAFETY: the reference points into a live REGIONS value written once by the agent
    // before any lookup can find it; only read here.
    let Some(t) = (unsafe { REGIONS.get(&session) }) else {
        return REGION_UNKNOWN;
    };
    let n = (t.n as usize).min(REGION_ROWS);
    // The last row whose start is <= addr: binary search over [lo, hi). `get` rather
    // than indexing: a bounds panic would leave code the verifier refuses.
    let (mut lo, mut hi) = (0usize, n);
    for _ in 0..SEARCH_STEPS {
        if lo >= hi {
            break;
        }
        let mid = (lo + hi) / 2;
        match t.start.get(mid) {
            Some(&s) if s <= addr => lo = mid + 1,
            Some(_) => hi = mid,
            None => break,
        }
    }
    match lo
        .checked_sub(1)
        .and_then(|row| t.end.get(row).map(|&e| (row, e)))
    {
        Some((row, end)) if addr < end => row as u32,
        _ => REGION_UNMAPPED,
    }
}

#[inline(always)]
fn add(session: u32, kind: u32, id: u32) {
    let key = AttribKey {
        session,
        kind,
        id,
        _pad: 0,
    };
    if let Some(c) = ATTRIB.get_ptr_mut(&key) {
        // SAFETY: `c` is a non-null pointer to a live ATTRIB value, an aligned u64.
        unsafe { atomic_add(c, 1) };
        return;
    }
    // Another CPU may insert the same key between the lookup and the insert: NOEXIST
    // then fails, and the add goes to the value it inserted.
    if ATTRIB.insert(&key, &1, BPF_NOEXIST as u64).is_ok() {
        return;
    }
    match ATTRIB.get_ptr_mut(&key) {
        // SAFETY: as above.
        Some(c) => unsafe { atomic_add(c, 1) },
        None => count_error(),
    }
}

#[inline(always)]
fn count_error() {
    if let Some(p) = ATTRIB_ERRORS.get_ptr_mut(0) {
        // SAFETY: this CPU's aligned u64 slot of a per-CPU array; no other CPU writes it.
        unsafe { *p += 1 };
    }
}
