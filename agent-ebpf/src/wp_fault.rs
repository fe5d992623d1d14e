//! Copy-on-write by the write-protect fault handler itself: on every kernel that allows
//! BPF trampolines (x86-64 and arm64), and by kprobes on arm64 without them.
//!
//! Same method as `fault.rs`, with a narrower window: a *copy* is the allocation of a
//! user page (`mm_page_alloc`, in `fault.rs`) by a thread while it runs `do_wp_page`,
//! the handler of a write to a present, write-protected pte (`handle_pte_fault` in
//! mm/memory.c calls it for a write fault whose pte is present and not writable). The
//! copy `wp_page_copy` makes, and the zeroed page a write to the shared zero page gets,
//! are both allocated inside it; a `do_wp_page` with no allocation is a reuse. A THP's
//! huge pmd is split by `do_huge_pmd_wp_page` and the 4 KiB pte then comes here too.
//! The entry starts the pending fault, the exit ends it, so nothing after the handler
//! returns can be taken for its copy. Because both ends are seen, the time a parent's
//! main thread spends in a copying handler is measured here (`SessionState::main_ns`):
//! what the save's copies cost the server's latency, measured, where the tracepoint path
//! can only estimate it.
//!
//! Two attach paths, tried in this order by the loader: fentry/fexit (BPF trampolines:
//! x86-64 since 5.5, arm64 since 6.4, with `DYNAMIC_FTRACE_WITH_DIRECT_CALLS`), then on
//! x86-64 `page_fault_user` (fault.rs), elsewhere kprobe/kretprobe (`CONFIG_KPROBES`).
use aya_ebpf::{
    macros::{fentry, fexit, kprobe, kretprobe},
    programs::{FEntryContext, FExitContext, ProbeContext, RetProbeContext},
};

use crate::{
    fault::wp_fault,
    maps::PENDING,
    off,
    util::{current_ids, maybe_traced, now_ns, read_field},
};
use agent_common::PENDING_COPIED;

/// Hook: `fentry/do_wp_page`, `static vm_fault_t do_wp_page(struct vm_fault *vmf)`
/// (mm/memory.c, this prototype since 4.10; out of line in Debian's 6.1 and 6.12, checked
/// against BTF and attach at start-up). fentry on x86-64 since 5.5, arm64 since 6.4.
#[fentry(function = "do_wp_page")]
pub fn wp_fault_entry(ctx: FEntryContext) -> u32 {
    let vmf: *const u8 = ctx.arg(0);
    let _ = begin(vmf);
    0
}

/// Hook: `fexit/do_wp_page` (as above): the fault is handled, nothing more is its copy.
#[fexit(function = "do_wp_page")]
pub fn wp_fault_exit(_ctx: FExitContext) -> u32 {
    end();
    0
}

/// Hook: `kprobe/do_wp_page` (as above; the loader attaches it): kprobes since 2.6.9,
/// the first argument read from the arm64 `pt_regs` (x0).
#[kprobe]
pub fn wp_fault_kprobe(ctx: ProbeContext) -> u32 {
    let vmf: *const u8 = ctx.arg(0).unwrap_or(core::ptr::null());
    let _ = begin(vmf);
    0
}

/// Hook: `kretprobe/do_wp_page` (as above).
#[kretprobe]
pub fn wp_fault_kretprobe(_ctx: RetProbeContext) -> u32 {
    end();
    0
}

/// A traced thread entered the write-protect fault handler: count the fault and keep it
/// pending for `mm_page_alloc`.
#[inline(always)]
fn begin(vmf: *const u8) -> Result<(), i64> {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return Ok(());
    }
    // The address is for the copy's event and its memory region; a failed read leaves
    // 0 (region unknown).
    // Only the main thread's copies are timed (the server's event loop).
    let start_ns = if tid == tgid { now_ns() } else { 0 };
    wp_fault(tgid, tid, start_ns, || {
        read_field::<u64>(vmf, off!(vmf_address)).unwrap_or(0)
    })
}

/// The handler returned: end this thread's pending fault, if it has one. When it was a
/// timed copy (a parent's main thread, a live session), keep the handler's time for the
/// session.
#[inline(always)]
fn end() {
    let (tgid, tid) = current_ids();
    if !maybe_traced(tgid) {
        return;
    }
    let Some(p) = PENDING.get_ptr_mut(&tid) else {
        return;
    };
    // SAFETY: `p` is this thread's non-null PENDING value from bpf_map_lookup_elem; only
    // this thread writes its entry. `active` is read, then cleared.
    let active = unsafe { (*p).active };
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(&mut (*p).active, 0) };
    if active != PENDING_COPIED {
        return;
    }
    // A timed copy (fault.rs decided: the main thread of a parent, a live session): its
    // time waits in the thread's entry for the next copy to add it to its session, so
    // this exit makes no lookup and no atomic add.
    // SAFETY: as above.
    unsafe {
        (*p).last_ns = now_ns().saturating_sub((*p).start_ns);
        (*p).last_session = (*p).session;
    }
}
