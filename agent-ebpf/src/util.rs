//! Small helpers used by every program.
use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    maps::RingBuf,
};

use agent_common::MAYBE_TRACED_SLOTS;

use crate::maps::{DROPS, ERRORS, MAYBE_TRACED};

/// False when `tgid` is certainly not traced (see `maps::MAYBE_TRACED`).
#[inline(always)]
pub fn maybe_traced(tgid: u32) -> bool {
    MAYBE_TRACED
        .get(tgid % MAYBE_TRACED_SLOTS)
        .is_some_and(|v| *v != 0)
}

/// Mark `tgid` as possibly traced, before it is added to `TRACED`.
#[inline(always)]
pub fn mark_maybe_traced(tgid: u32) {
    if let Some(p) = MAYBE_TRACED.get_ptr_mut(tgid % MAYBE_TRACED_SLOTS) {
        // SAFETY: `p` is a non-null pointer to a u8 slot of the MAYBE_TRACED array value.
        unsafe { core::ptr::write_volatile(p, 1) };
    }
}

/// Read a load-time global. The volatile read keeps the value from being constant-folded.
#[inline(always)]
pub fn global<T: Copy>(v: &'static T) -> T {
    // SAFETY: `v` is a reference to a static, so it is valid and aligned for a read.
    unsafe { core::ptr::read_volatile(v) }
}

/// (tgid, tid) of the current task.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

#[inline(always)]
pub fn now_ns() -> u64 {
    // CLOCK_MONOTONIC, the clock userspace converts from.
    // SAFETY: bpf_ktime_get_ns has no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// Atomic add on a counter in a map value shared by all CPUs. The BPF target has no
/// `AtomicU64::fetch_add` (only atomic load/store), so use the intrinsic, which LLVM
/// lowers to the BPF atomic add instruction (`lock *(u64 *)(r1 + 0) += r2`).
///
/// # Safety
/// `counter` must be a valid, aligned pointer to a u64 in a map value that stays alive
/// for this program run (a field of a value returned by a map lookup).
#[inline(always)]
pub unsafe fn atomic_add(counter: *mut u64, v: u64) {
    // SAFETY: the caller guarantees `counter` is a valid, aligned u64 in a map value (see
    // `# Safety`).
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, v) };
}

/// The BTF-derived offset of one kernel struct field (see `maps::OFFSETS`).
#[macro_export]
macro_rules! off {
    ($field:ident) => {
        // SAFETY: the address of a field of the OFFSETS static, valid and aligned.
        unsafe { core::ptr::read_volatile(core::ptr::addr_of!($crate::maps::OFFSETS.$field)) }
    };
}

/// Read a field at a BTF-derived byte offset from a kernel struct pointer.
#[inline(always)]
pub fn read_field<T>(base: *const u8, off: u32) -> Result<T, i64> {
    // Userspace refuses to load when any offset is missing, so every offset is valid
    // here (several are legitimately 0, e.g. `inode.i_mode`).
    if base.is_null() {
        return Err(-1);
    }
    // SAFETY: bpf_probe_read_kernel copies size_of::<T>() bytes from a kernel address (a
    // BTF-derived offset from `base`) and returns an error instead of faulting on a bad
    // address; the offset pointer is only handed to the helper, never dereferenced here.
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T).map_err(|e| e as i64) }
}

/// Count one failed reserve in slot `slot` of `DROPS`.
#[inline(always)]
pub fn count_drop(slot: u32) {
    if let Some(p) = DROPS.get_ptr_mut(slot) {
        // Per-CPU value: no other CPU writes it, a plain add is enough.
        // SAFETY: `p` is a non-null, aligned pointer to this CPU's u64 slot of DROPS.
        unsafe { *p += 1 };
    }
}

/// Count one failed map insert in slot `slot` (`ERR_*`) of `ERRORS`.
#[inline(always)]
pub fn count_error(slot: u32) {
    if let Some(p) = ERRORS.get_ptr_mut(slot) {
        // SAFETY: `p` is a non-null, aligned pointer to this CPU's u64 slot of ERRORS;
        // per-CPU, so no other CPU writes it.
        unsafe { *p += 1 };
    }
}

/// The result of a map insert, with a failure counted in `ERRORS` slot `slot`.
#[inline(always)]
pub fn counted<E: Into<i64>>(r: Result<(), E>, slot: u32) -> Result<(), i64> {
    r.map_err(|e| {
        count_error(slot);
        e.into()
    })
}

/// Reserve a `T` in `ring`, or count a drop in `slot`.
#[inline(always)]
pub fn reserve<T: 'static>(
    ring: &RingBuf,
    slot: u32,
) -> Option<aya_ebpf::maps::ring_buf::RingBufEntry<T>> {
    let e = ring.reserve::<T>(0);
    if e.is_none() {
        count_drop(slot);
    }
    e
}
