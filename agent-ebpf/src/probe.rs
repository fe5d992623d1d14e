//! Empty programs of each attach type, loaded (never used to count) by `cowtrace check`
//! and at start-up to learn what this kernel allows. fentry/fexit need BPF trampolines;
//! kprobes need CONFIG_KPROBES. Neither is required: the tracepoint path always works.
use aya_ebpf::{
    macros::{fentry, kprobe, uprobe},
    programs::{FEntryContext, ProbeContext},
};

/// `fentry/do_wp_page`: `vm_fault_t do_wp_page(struct vm_fault *vmf)` (mm/memory.c), the
/// write-protect fault handler, a candidate for a more precise COW hook. fentry needs
/// BPF trampolines (x86-64 since 5.5).
#[fentry(function = "do_wp_page")]
pub fn probe_fentry(_ctx: FEntryContext) -> u32 {
    0
}

/// `kprobe/do_wp_page` (attached by the loader): needs CONFIG_KPROBES.
#[kprobe]
pub fn probe_kprobe(_ctx: ProbeContext) -> u32 {
    0
}

/// `uprobe` on libc's `getpid` (attached by the loader): needs CONFIG_UPROBES.
#[uprobe]
pub fn probe_uprobe(_ctx: ProbeContext) -> u32 {
    0
}
