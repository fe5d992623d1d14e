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
    COW_FLAG_CHILD, COW_FLAG_ZERO, CowCounters, CowEvent, DROP_HOT, EV_COW, PendingFault,
    ROLE_CHILD, ROLE_ROOT,
};
use aya_ebpf::{
    bindings::{BPF_ANY, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};

use crate::{
    maps::{AGENT_TGID, HOT_EVENTS, HOT_WAKE_BYTES, PENDING, SESSION_PREV, SESSIONS, TRACED},
    util::{atomic_add, count_drop, current_ids, global, maybe_traced, now_ns},
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
    let proc = TRACED.get_ptr_mut(&tgid).ok_or(0)?;
    if tgid == global(&AGENT_TGID) {
        return Ok(());
    }
    // SAFETY: `proc` is a non-null TRACED value pointer from bpf_map_lookup_elem, valid
    // for this program run; two u32 fields are read.
    let (role, newest) = unsafe { ((*proc).role, (*proc).newest_child) };
    let (session, child_side) = match role {
        ROLE_CHILD => (tgid, 1),
        ROLE_ROOT => (live_session(tgid, newest), 0),
        _ => return Ok(()),
    };
    // SAFETY: the same live TRACED value; `atomic_add` is an atomic add on its aligned u64 field.
    unsafe { atomic_add(&mut (*proc).total.wp_faults, 1) };
    if let Some(c) = session_counters(session, child_side) {
        // SAFETY: `session_counters` returns only non-null pointers into a live SESSIONS
        // value.
        unsafe { atomic_add(&mut (*c).wp_faults, 1) };
    }
    let addr: u64 = ctx.arg(0);
    let pending = PendingFault {
        addr,
        tgid,
        session,
        child_side,
        active: 1,
    };
    match PENDING.get_ptr_mut(&tid) {
        // SAFETY: `p` is this thread's non-null PENDING value; only this thread writes its
        // entry, so an in-place update needs no lock.
        Some(p) => unsafe { *p = pending },
        None => PENDING.insert(&tid, &pending, BPF_ANY as u64)?,
    }
    Ok(())
}

/// The newest session of `root` whose child is still alive, or 0.
#[inline(always)]
pub(crate) fn live_session(root: u32, newest: u32) -> u32 {
    let mut c = newest;
    for _ in 0..MAX_CHAIN {
        if c == 0 {
            return 0;
        }
        // SAFETY: the returned reference points into a live SESSIONS value and is used
        // only for the plain u32 reads below, within this run; a concurrent writer can
        // only change `exited` from 0 to 1.
        let Some(s) = (unsafe { SESSIONS.get(&c) }) else {
            return 0;
        };
        if s.parent_tgid != root {
            return 0;
        }
        if s.exited == 0 {
            return c;
        }
        // SAFETY: the reference points into a live SESSION_PREV value, read at once.
        c = unsafe { SESSION_PREV.get(&c) }.copied().unwrap_or(0);
    }
    0
}

/// Whether the child of `session` has not exited yet.
#[inline(always)]
fn child_alive(session: u32) -> bool {
    // SAFETY: the reference points into a live SESSIONS value and is only read here;
    // `exited` only ever goes from 0 to 1.
    unsafe { SESSIONS.get(&session) }
        .is_some_and(|s| unsafe { core::ptr::read_volatile(&s.exited) } == 0)
}

#[inline(always)]
pub(crate) fn session_counters(session: u32, child_side: u32) -> Option<*mut CowCounters> {
    if session == 0 {
        return None;
    }
    let s = SESSIONS.get_ptr_mut(&session)?;
    // SAFETY: `s` is a non-null SESSIONS value pointer from bpf_map_lookup_elem; only
    // field addresses are taken.
    Some(unsafe {
        if child_side != 0 {
            &mut (*s).child
        } else {
            &mut (*s).parent
        }
    })
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
    let entry = PENDING.get_ptr_mut(&tid).ok_or(0)?;
    // SAFETY: `entry` is this thread's non-null PENDING value; copied out at once.
    let p = unsafe { *entry };
    if p.active == 0 {
        return Ok(());
    }
    // SAFETY: the same PENDING value; only this thread writes its entry.
    unsafe { core::ptr::write_volatile(&mut (*entry).active, 0) };
    let mut p = p;
    if p.child_side == 0 && p.session != 0 && !child_alive(p.session) {
        // The child exited between the parent's fault and this page: the session may
        // already be closed with the counters it had (the agent reads them once, at
        // the exit), so the copy goes to the parent's process only, and its event
        // says so. Seen in a 2-vCPU guest, where the parent's vCPU paused in between.
        p.session = 0;
    }
    let order = ctx.arg::<u64>(1) as u32;
    let zero = gfp & GFP_ZERO != 0;
    let bytes = 4096u64 << (order & 31);
    if let Some(proc) = TRACED.get_ptr_mut(&p.tgid) {
        // SAFETY: `proc` is a non-null TRACED value pointer, valid for this run; `charge`
        // only does atomic adds on its counters.
        unsafe { charge(&mut (*proc).total, zero, order, bytes) };
    }
    if let Some(c) = session_counters(p.session, p.child_side) {
        // SAFETY: `session_counters` returns only non-null pointers into a live SESSIONS
        // value.
        unsafe { charge(c, zero, order, bytes) };
    }
    let mut flags = if p.child_side != 0 { COW_FLAG_CHILD } else { 0 };
    if zero {
        flags |= COW_FLAG_ZERO;
    }
    emit_cow(&p, tid, order, flags);
    Ok(())
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
        match order {
            0 => atomic_add(&mut (*c).copies_4k, 1),
            9 => atomic_add(&mut (*c).copies_2m, 1),
            _ => atomic_add(&mut (*c).copies_other, 1),
        }
        atomic_add(&mut (*c).copy_bytes, bytes);
    }
}

#[inline(always)]
fn emit_cow(p: &PendingFault, tid: u32, order: u32, flags: u32) {
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
                session: p.session,
                flags,
            });
            e.submit(wake as u64);
        }
        None => count_drop(DROP_HOT),
    }
}
