//! How COW copies are seen on this kernel, picked at start-up.
//!
//! The write-protect fault handler `do_wp_page` marks the fault
//! (agent-ebpf/src/wp_fault.rs) with fentry/fexit where the kernel allows BPF
//! trampolines (x86-64 since 5.5, arm64 since 6.4): it sees the handler return, so the
//! main thread's time in its copies is measured, not estimated. Without trampolines,
//! x86-64 has `exceptions:page_fault_user`, whose error code says "write to a present
//! page": `tp_btf/page_fault_user` + `tp_btf/mm_page_alloc` (agent-ebpf/src/fault.rs).
//! Other architectures (arm64) have no such tracepoint (riscv's, since 6.18, takes no
//! error code), so there kprobe/kretprobe on `do_wp_page` come next. Both methods are
//! proven exact by the same tests on every kernel tested. No method from generic tracepoints alone is used: `mm_page_alloc`
//! cannot tell a copy from another user page (from mm/: a page-cache page that a read
//! fault or readahead brings in, and a swap-in, are allocated like the copy, with
//! GFP_HIGHUSER_MOVABLE and no __GFP_ZERO), and `kmem:rss_stat` changes on a copy of an
//! anonymous page by nothing (one anonymous page replaces another).
//!
//! The choice is pure (`plan`); the loader attaches.
use crate::kernel::hooks::{Policy, Proto, check_proto};

/// One way to see COW copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `tp_btf/page_fault_user` + `tp_btf/mm_page_alloc` (x86-64).
    FaultTracepoint,
    /// `fentry`+`fexit/do_wp_page` + `tp_btf/mm_page_alloc`.
    WpFentry,
    /// `kprobe`+`kretprobe/do_wp_page` + `tp_btf/mm_page_alloc`.
    WpKprobe,
}

impl Method {
    /// The `meta.attach.method` word.
    pub fn word(self) -> &'static str {
        match self {
            Method::FaultTracepoint => "tracepoint",
            Method::WpFentry => "fentry",
            Method::WpKprobe => "kprobe",
        }
    }

    /// The hooks, as `check` and `meta.attach.cow` name them.
    pub fn hooks(self) -> &'static str {
        match self {
            Method::FaultTracepoint => "tp_btf/page_fault_user + tp_btf/mm_page_alloc",
            Method::WpFentry => "fentry+fexit/do_wp_page + tp_btf/mm_page_alloc",
            Method::WpKprobe => "kprobe+kretprobe/do_wp_page + tp_btf/mm_page_alloc",
        }
    }

    /// Whether the method sees the fault handler return, so the kernel times the main
    /// thread's copies (`SessionState::main_ns`) instead of userspace estimating them.
    pub fn times_faults(self) -> bool {
        !matches!(self, Method::FaultTracepoint)
    }

    /// The programs that mark the fault, and whether each is the handler's exit.
    pub fn programs(self) -> &'static [(&'static str, bool)] {
        match self {
            Method::FaultTracepoint => &[("page_fault_user", false)],
            Method::WpFentry => &[("wp_fault_entry", false), ("wp_fault_exit", true)],
            Method::WpKprobe => &[("wp_fault_kprobe", false), ("wp_fault_kretprobe", true)],
        }
    }
}

/// The function the write-protect methods hook.
pub const WP_FUNCTION: &str = "do_wp_page";

/// `vm_fault_t do_wp_page(struct vm_fault *vmf)` (mm/memory.c, since 4.10).
pub const WP_PROTO: Proto = Proto {
    function: WP_FUNCTION,
    params: 1,
    reads: &[(0, "struct vm_fault *")],
};

/// Whether this architecture has the x86 `page_fault_user` tracepoint and error code.
pub const HAS_FAULT_TRACEPOINT: bool = cfg!(target_arch = "x86_64");

/// The methods to try, best first, with why a better one is skipped. `wp_params` is
/// what BTF says of `do_wp_page`'s parameters (None: absent or inlined).
pub fn plan(
    has_fault_tracepoint: bool,
    policy: Policy,
    wp_params: Option<&[String]>,
) -> (Vec<Method>, Vec<String>) {
    let mut skipped = Vec::new();
    let proto = check_proto(&WP_PROTO, wp_params);
    let mut tries = Vec::new();
    if has_fault_tracepoint {
        // x86-64: fentry/fexit on the handler where the kernel allows trampolines (it
        // sees the handler return, so the main thread's copies are timed, not
        // estimated; and it runs on write-protect faults only, not on every user fault
        // of the host), else the tracepoint. Never kprobes: the tracepoint is cheaper.
        match (&proto, policy) {
            (Err(e), _) => skipped.push(format!("fentry: {e}")),
            (Ok(()), Policy::Tracepoint | Policy::Classic) => {
                skipped.push("fentry: no trampolines (COWTRACE_HOOKS=tracepoint or classic)".into())
            }
            (Ok(()), Policy::Auto) => tries.push(Method::WpFentry),
        }
        tries.push(Method::FaultTracepoint);
        return (tries, skipped);
    }
    match (&proto, policy) {
        (Err(e), _) => skipped.push(format!("fentry and kprobe: {e}")),
        (Ok(()), Policy::Tracepoint | Policy::Classic) => {
            skipped.push("fentry: no trampolines (COWTRACE_HOOKS=tracepoint or classic)".into());
            tries.push(Method::WpKprobe);
        }
        (Ok(()), Policy::Auto) => tries.extend([Method::WpFentry, Method::WpKprobe]),
    }
    (tries, skipped)
}

/// What COW uses on this kernel, as `check` and the `meta` line say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CowChoice {
    pub method: Method,
    /// Why better methods were not used (empty when the best one was).
    pub why: Vec<String>,
}

impl CowChoice {
    pub fn describe(&self) -> String {
        if self.why.is_empty() {
            self.method.hooks().to_string()
        } else {
            format!("{} ({})", self.method.hooks(), self.why.join("; "))
        }
    }
}

/// The error when no method attaches: every refusal, and what to do.
pub fn none_left(why: &[String]) -> String {
    format!(
        "COW copies cannot be counted on this kernel: it has no `page_fault_user` \
         tracepoint (x86-64 only), and the write-protect fault handler `{WP_FUNCTION}` \
         could not be hooked ({}); a kernel with BPF trampolines (arm64 6.4+) or \
         CONFIG_KPROBES is needed",
        why.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn x86_tries_fentry_then_its_tracepoint_never_kprobes() {
        let wp = params(&["struct vm_fault *"]);
        let (tries, skipped) = plan(true, Policy::Auto, Some(&wp));
        assert_eq!(tries, [Method::WpFentry, Method::FaultTracepoint]);
        assert!(skipped.is_empty());
        let (tries, skipped) = plan(true, Policy::Tracepoint, Some(&wp));
        assert_eq!(tries, [Method::FaultTracepoint]);
        assert!(
            skipped[0].contains("COWTRACE_HOOKS=tracepoint"),
            "{skipped:?}"
        );
        // An inlined handler leaves the tracepoint, and says why.
        let (tries, skipped) = plan(true, Policy::Auto, None);
        assert_eq!(tries, [Method::FaultTracepoint]);
        assert!(skipped[0].contains("do_wp_page is not in this kernel's BTF"));
    }

    #[test]
    fn arm64_prefers_fentry_then_kprobe() {
        let wp = params(&["struct vm_fault *"]);
        let (tries, skipped) = plan(false, Policy::Auto, Some(&wp));
        assert_eq!(tries, [Method::WpFentry, Method::WpKprobe]);
        assert!(skipped.is_empty());
        let (tries, skipped) = plan(false, Policy::Tracepoint, Some(&wp));
        assert_eq!(tries, [Method::WpKprobe]);
        assert!(skipped[0].contains("COWTRACE_HOOKS=tracepoint"));
    }

    #[test]
    fn an_inlined_or_reshaped_handler_leaves_nothing_and_says_why() {
        let (tries, skipped) = plan(false, Policy::Auto, None);
        assert!(tries.is_empty());
        assert!(skipped[0].contains("do_wp_page is not in this kernel's BTF"));
        let two = params(&["struct vm_fault *", "int"]);
        let (tries, skipped) = plan(false, Policy::Auto, Some(&two));
        assert!(tries.is_empty());
        assert!(skipped[0].contains("takes 2 parameters here, not 1"));
        let msg = none_left(&skipped);
        assert!(msg.starts_with("COW copies cannot be counted on this kernel"));
        assert!(msg.contains("CONFIG_KPROBES"));
    }

    #[test]
    fn the_words_name_each_method() {
        let c = CowChoice {
            method: Method::WpKprobe,
            why: vec!["fentry refused: EPERM".into()],
        };
        assert_eq!(
            c.describe(),
            "kprobe+kretprobe/do_wp_page + tp_btf/mm_page_alloc (fentry refused: EPERM)"
        );
        assert_eq!(Method::FaultTracepoint.word(), "tracepoint");
        assert_eq!(Method::WpFentry.programs().len(), 2);
    }
}
