//! Copy-on-write accounting.
//!
//! Method (README.md, "What the numbers mean"; agent/tests/cow.rs checks the counts
//! against the pages a test process writes): a *copy* is a
//! write-protect user fault followed, in the same thread and before that thread's next
//! fault, by the allocation of a user page. A write-protect fault with no such allocation
//! is a *reuse* (the page was already exclusive, e.g. the child has exited). A write
//! fault on the shared zero page allocates a zeroed page: a *zero fill*, not a copy.
//!
//! Attribution rule (documented in README): a copy made by a session child belongs to its
//! own session; a copy made by a Redis parent belongs to its newest live session, found
//! by walking the chain of sessions from `newest_child` through `SESSION_PREV`. So a copy
//! is counted exactly once even when several children are alive. A parent's copy whose
//! session's child exits between the fault and the page's allocation goes to the
//! parent's process only: the session's counters are final once its child has exited.
use agent_common::{
    COW_FLAG_CHILD, COW_FLAG_ZERO, CowCounters, CowEvent, DROP_HOT, ERR_PENDING, EV_COW,
    PENDING_COPIED, PENDING_WAITING, PendingFault, ROLE_CHILD, ROLE_ROOT, SessionState,
};
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    attrib,
    maps::{
        AGENT_TGID, ATTRIB_ON, EMIT_COW, HOT_EVENTS, HOT_WAKE_BYTES, PENDING, SESSION_PREV,
        SESSIONS, TRACED,
    },
    util::{atomic_add, count_drop, counted, current_ids, global, maybe_traced, now_ns},
};

/// x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h).
const PF_PROT: u64 = 1;
const PF_WRITE: u64 = 2;

/// gfp bits (include/linux/gfp_types.h; the bit numbers are printed in
/// /sys/kernel/tracing/events/kmem/mm_page_alloc/format and stable since 2.6).
const GFP_HIGHMEM: u32 = 1 << 1;
const GFP_MOVABLE: u32 = 1 << 3;
const GFP_ZERO: u32 = 1 << 8;
const GFP_WRITE: u32 = 1 << 12;
const GFP_HARDWALL: u32 = 1 << 20;
/// The bits of GFP_HIGHUSER_MOVABLE that tell a user page from a kernel one: the COW
/// copy is allocated with GFP_HIGHUSER_MOVABLE (`folio_prealloc` in mm/memory.c);
/// slab, page tables, pipe buffers and socket buffers lack HARDWALL or MOVABLE.
const GFP_USER_PAGE: u32 = GFP_HARDWALL | GFP_MOVABLE | GFP_HIGHMEM;

/// How many sessions of one parent the attribution walk visits (bounded for the verifier).
const MAX_CHAIN: usize = 8;

/// Hook: `tp_btf/page_fault_user`,
/// `TP_PROTO(unsigned long address, struct pt_regs *regs, unsigned long error_code)`
/// (arch/x86/include/asm/trace/exceptions.h, `DEFINE_PAGE_FAULT_EVENT(page_fault_user)`,
/// fired from `trace_page_fault_entries` in arch/x86/mm/fault.c). x86 only: riscv's
/// `page_fault_user` (2024) takes just `(struct pt_regs *regs)`. The x86 event is in
/// 4.4 already (DepSurf's kernel survey); lowest kernel for this hook 5.5 (`tp_btf`).
/// Fires on entry to the fault handler, for every user fault on the host, so the
/// untraced path is one array load (`maybe_traced`).
#[btf_tracepoint(function = "page_fault_user")]
pub fn page_fault_user(ctx: BtfTracePointContext) -> i32 {
    let _ = try_fault(&ctx);
    0
}

fn try_fault(ctx: &BtfTracePointContext) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let error_code: u64 = ctx.arg(2);
    if error_code & (PF_PROT | PF_WRITE) != (PF_PROT | PF_WRITE) {
        // Any other fault ends this thread's pending write-protect fault.
        if let Some(p) = PENDING.get_ptr_mut(&tid) {
            // SAFETY: `p` is this thread's non-null PENDING value from
            // bpf_map_lookup_elem; only this thread writes its entry.
            unsafe { core::ptr::write_volatile(&mut (*p).active, 0) };
        }
        return Ok(());
    }
    // No return is seen here: no start time (the main thread's COW time is estimated).
    wp_fault(tgid, tid, 0, || ctx.arg(0))
}

/// A write-protect fault of thread `tid` of traced process `tgid`, at the address `addr`
/// gives (read only for a traced thread): count it for the process and its session, and
/// keep it pending for `mm_page_alloc`. Shared by the x86 tracepoint and the arm64
/// `do_wp_page` hooks (wp_fault.rs); `start_ns` is the handler's entry time on the paths
/// that see it return, else 0.
#[inline(always)]
pub(crate) fn wp_fault(
    tgid: u32,
    tid: u32,
    start_ns: u64,
    addr: impl FnOnce() -> u64,
) -> Result<(), i64> {
    let Some(proc) = TRACED.get_ptr_mut(&tgid) else {
        return Ok(()); // not traced (a tgid that only shares a MAYBE_TRACED slot)
    };
    if tgid == global(&AGENT_TGID) {
        return Ok(());
    }
    // SAFETY: `proc` is a non-null TRACED value pointer from bpf_map_lookup_elem, valid
    // for this program run; two u32 fields are read.
    let (role, newest) = unsafe { ((*proc).role, (*proc).newest_child) };
    // The session's value comes back from the same lookup that found it (the chain walk
    // for a root), not from a second lookup.
    let (session, child_side, state) = match role {
        ROLE_CHILD => (tgid, 1, SESSIONS.get_ptr_mut(&tgid)),
        ROLE_ROOT => {
            let (s, state) = live_session(tgid, newest);
            (s, 0, state)
        }
        _ => return Ok(()),
    };
    // SAFETY: the same live TRACED value; `atomic_add` is an atomic add on its aligned u64 field.
    unsafe { atomic_add(&mut (*proc).total.wp_faults, 1) };
    if let Some(s) = state {
        // SAFETY: `s` is a non-null SESSIONS value pointer from bpf_map_lookup_elem;
        // `side` only takes a field's address, `atomic_add` adds to that aligned u64.
        unsafe { atomic_add(&mut (*side(s, child_side)).wp_faults, 1) };
    }
    let addr = addr();
    let pending = PendingFault {
        addr,
        tgid,
        session,
        child_side,
        active: PENDING_WAITING,
        start_ns,
        last_ns: 0,
        last_session: 0,
        _pad: 0,
    };
    match PENDING.get_ptr_mut(&tid) {
        // SAFETY: `p` is this thread's non-null PENDING value; only this thread writes its
        // entry, so an in-place update needs no lock. The previous timed copy's time
        // stays until the next copy adds it (`charge_main_thread`).
        Some(p) => unsafe {
            let (last_ns, last_session) = ((*p).last_ns, (*p).last_session);
            *p = PendingFault {
                last_ns,
                last_session,
                ..pending
            };
        },
        None => counted(PENDING.insert(&tid, &pending, BPF_ANY as u64), ERR_PENDING)?,
    }
    Ok(())
}

/// The newest session of `root` whose child is still alive, and its `SESSIONS` value;
/// (0, None) when there is none.
#[inline(always)]
pub(crate) fn live_session(root: u32, newest: u32) -> (u32, Option<*mut SessionState>) {
    let mut c = newest;
    for _ in 0..MAX_CHAIN {
        if c == 0 {
            break;
        }
        let Some(s) = SESSIONS.get_ptr_mut(&c) else {
            break;
        };
        // SAFETY: `s` is a non-null SESSIONS value pointer from bpf_map_lookup_elem,
        // valid for this run; two u32 fields are read (a concurrent writer can only
        // change `exited` from 0 to 1).
        let (parent, exited) =
            unsafe { ((*s).parent_tgid, core::ptr::read_volatile(&(*s).exited)) };
        if parent != root {
            break;
        }
        if exited == 0 {
            return (c, Some(s));
        }
        // SAFETY: the reference points into a live SESSION_PREV value, read at once.
        c = unsafe { SESSION_PREV.get(&c) }.copied().unwrap_or(0);
    }
    (0, None)
}

/// The counters of one side of a session: the child's own copies, or the parent's.
///
/// # Safety
/// `s` must be a non-null `SESSIONS` value pointer from a lookup in this program run.
#[inline(always)]
pub(crate) unsafe fn side(s: *mut SessionState, child_side: u32) -> *mut CowCounters {
    // SAFETY: the caller passes a live map value pointer; only a field address is taken.
    unsafe {
        if child_side != 0 {
            &mut (*s).child
        } else {
            &mut (*s).parent
        }
    }
}

/// Hook: `tp_btf/mm_page_alloc`,
/// `TP_PROTO(struct page *page, unsigned int order, gfp_t gfp_flags, int migratetype)`
/// (include/trace/events/kmem.h, fired from the page allocator in mm/page_alloc.c; this
/// prototype predates BPF). Lowest kernel 5.5 (`tp_btf`). Fires for every page
/// allocation on the host; the untraced path is a gfp test and one array load.
#[btf_tracepoint(function = "mm_page_alloc")]
pub fn mm_page_alloc(ctx: BtfTracePointContext) -> i32 {
    let _ = try_alloc(&ctx);
    0
}

fn try_alloc(ctx: &BtfTracePointContext) -> Result<(), i64> {
    // A user page, and not a page-cache page for a write (`__GFP_WRITE`): any other
    // allocation (slab, page table) leaves the fault pending. Tested before the map
    // lookup, so most kernel allocations on the host cost no lookup at all.
    let gfp = ctx.arg::<u64>(2) as u32;
    if gfp & GFP_USER_PAGE != GFP_USER_PAGE || gfp & GFP_WRITE != 0 {
        return Ok(());
    }
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    let Some(entry) = PENDING.get_ptr_mut(&tid) else {
        return Ok(()); // no write-protect fault of a traced thread
    };
    // SAFETY: `entry` is this thread's non-null PENDING value; copied out at once.
    let p = unsafe { *entry };
    if p.active != PENDING_WAITING {
        return Ok(());
    }
    let zero = gfp & GFP_ZERO != 0;
    // A confirmed copy (or zero fill) of `p.tgid`'s thread `tid` at `p.addr`, charged
    // to session `session` (0: its process only) through `state`'s counters.
    let (session, state) = session_side(&p);
    // SAFETY: `session_side` returns only pointers into a live SESSIONS value; `side`
    // only takes a field's address.
    let counters = state.map(|s| unsafe { side(s, p.child_side) });
    // A copy by the main thread of a parent, for a live session, on a path that sees
    // the handler return (`start_ns` set): timed when the handler returns. Anything
    // else ends here.
    let timed = match state {
        Some(s) if p.start_ns != 0 && !zero && p.child_side == 0 => {
            // SAFETY: `entry` is this thread's PENDING value, `s` a live SESSIONS value.
            unsafe { charge_main_thread(entry, &p, session, s) };
            true
        }
        _ => false,
    };
    let next = if timed { PENDING_COPIED } else { 0 };
    // SAFETY: the same PENDING value; only this thread writes its entry.
    unsafe { core::ptr::write_volatile(&mut (*entry).active, next) };
    let order = ctx.arg::<u64>(1) as u32;
    let bytes = 4096u64 << (order & 31);
    if let Some(proc) = TRACED.get_ptr_mut(&p.tgid) {
        // SAFETY: `proc` is a non-null TRACED value pointer, valid for this run; `charge`
        // only does atomic adds on its counters.
        unsafe { charge(&mut (*proc).total, zero, order, bytes) };
    }
    if let Some(c) = counters {
        // SAFETY: `session_side` returns only pointers into a live SESSIONS value.
        unsafe { charge(c, zero, order, bytes) };
    }
    // A parent's copy of a live session: its cause and its memory region (attrib.rs),
    // when asked for (a load-time constant, like EMIT_COW).
    if global(&ATTRIB_ON) != 0 && !zero && p.child_side == 0 && session != 0 {
        attrib::charge_parent_copy(session, p.tgid, tid, p.addr);
    }
    // A load-time constant: with `--events` off, the verifier drops this branch.
    if global(&EMIT_COW) != 0 {
        let mut flags = if p.child_side != 0 { COW_FLAG_CHILD } else { 0 };
        if zero {
            flags |= COW_FLAG_ZERO;
        }
        emit_cow(&p, session, tid, order, flags);
    }
    Ok(())
}

/// The session a pending fault's page is charged to, and the counters to charge, from
/// one `SESSIONS` lookup. A parent's copy whose session's child exited between the fault
/// and this page goes to the parent's process only (session 0): the session may already
/// be closed with the counters it had (the agent reads them once, at the exit). Seen in a
/// 2-vCPU guest, where the parent's vCPU paused in between.
#[inline(always)]
fn session_side(p: &PendingFault) -> (u32, Option<*mut SessionState>) {
    if p.session == 0 {
        return (0, None);
    }
    let Some(s) = SESSIONS.get_ptr_mut(&p.session) else {
        // Gone: a reaped session (its child exited long ago), or a child's own entry
        // that a full map never held (counted in ERRORS at the fork).
        return (if p.child_side != 0 { p.session } else { 0 }, None);
    };
    if p.child_side != 0 {
        return (p.session, Some(s));
    }
    // SAFETY: `s` is a non-null SESSIONS value pointer from this lookup; `exited` only
    // ever goes from 0 to 1.
    if unsafe { core::ptr::read_volatile(&(*s).exited) } != 0 {
        return (0, None);
    }
    (p.session, Some(s))
}

/// A copy by a parent's main thread for live session `session` (`s`), on a path that
/// times the handler (wp_fault.rs): count it, and add the time of this thread's previous
/// timed copy if it was this session's (its handler has returned since). So a session's
/// `main_ns` lacks only its last copy's time, a few µs. Plain adds: only this thread
/// (the parent's main thread) writes these fields, and no lookup or atomic is added per
/// copy beyond what counting it costs.
///
/// # Safety
/// `entry` must be this thread's PENDING value and `s` a live SESSIONS value, both from
/// lookups in this program run.
#[inline(always)]
unsafe fn charge_main_thread(
    entry: *mut PendingFault,
    p: &PendingFault,
    session: u32,
    s: *mut SessionState,
) {
    // SAFETY: see `# Safety`; aligned u64 fields with a single writer.
    unsafe {
        (*s).main_copies += 1;
        if p.last_ns != 0 && p.last_session == session {
            (*s).main_ns += p.last_ns;
        }
        (*entry).last_ns = 0;
    }
}

/// Count one allocation (a copy or a zero fill) in `c`.
///
/// # Safety
/// `c` must point to the counters of a live map value (`TRACED` or `SESSIONS`).
#[inline(always)]
unsafe fn charge(c: *mut CowCounters, zero: bool, order: u32, bytes: u64) {
    // SAFETY: the caller passes a valid pointer to map-value counters (see the `# Safety`
    // note); every field is an aligned u64.
    unsafe {
        if zero {
            atomic_add(&mut (*c).zero_fills, 1);
            return;
        }
        // `copy_bytes` leaves out the 4 KiB copies, nearly all of them: userspace adds
        // `copies_4k * 4096` (`CowCounters::with_4k_bytes`), one atomic add less per copy.
        match order {
            0 => atomic_add(&mut (*c).copies_4k, 1),
            9 => {
                atomic_add(&mut (*c).copies_2m, 1);
                atomic_add(&mut (*c).copy_bytes, bytes);
            }
            _ => {
                atomic_add(&mut (*c).copies_other, 1);
                atomic_add(&mut (*c).copy_bytes, bytes);
            }
        }
    }
}

#[inline(always)]
fn emit_cow(p: &PendingFault, session: u32, tid: u32, order: u32, flags: u32) {
    // No wakeup per event; userspace drains on a timer. Force one wakeup when the ring
    // fills past HOT_WAKE_BYTES so a storm cannot overflow it between two timer ticks.
    let wake = if HOT_EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= global(&HOT_WAKE_BYTES) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    match HOT_EVENTS.reserve::<CowEvent>(0) {
        Some(mut e) => {
            e.write(CowEvent {
                kind: EV_COW,
                pid: p.tgid,
                tid,
                order,
                ts_ns: now_ns(),
                addr: p.addr,
                session,
                flags,
            });
            e.submit(wake as u64);
        }
        None => count_drop(DROP_HOT),
    }
}
