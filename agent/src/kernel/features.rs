//! The kernel features cowtrace can use, found in a few milliseconds for `--version`
//! (`check` is the full probe: it loads and attaches every program).
//!
//! Without privileges only files are read (BTF, the kprobe and uprobe PMUs); what needs
//! a BPF program load is reported as unknown. With them, fentry is probed as libbpf's
//! `fentry_can_attach` does (`tools/lib/bpf/libbpf_probes.c`): a two-instruction
//! program loaded against a kernel function's BTF id, then attached, then closed.
use std::path::Path;

use crate::kernel::{btf::btf_path, privileges};

/// What `--version` says when probing needs privileges.
pub const UNKNOWN_UNPRIVILEGED: &str = "unknown (run as root / cowtrace check)";

/// One feature: its name, and what was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    pub name: &'static str,
    pub detail: String,
}

/// The function the fentry probe loads against: the one a precise COW hook would use
/// (`mm/memory.c`), as in `cowtrace check`.
const FENTRY_TARGET: &str = "do_wp_page";

/// Probe quickly. `privileged` allows the BPF program load of the fentry probe.
pub fn probe(privileged: bool) -> Vec<Feature> {
    let path = btf_path();
    let btf = Path::new(&path).exists();
    let mut out = vec![Feature {
        name: "BTF",
        detail: if btf {
            format!("yes ({})", path.display())
        } else {
            format!(
                "no: {} is missing, and cowtrace cannot run without it \
                 (CONFIG_DEBUG_INFO_BTF=y)",
                path.display()
            )
        },
    }];
    out.push(Feature {
        name: "fentry",
        detail: match (privileged, btf) {
            (false, _) => UNKNOWN_UNPRIVILEGED.to_string(),
            (true, false) => "no (needs BTF)".to_string(),
            (true, true) => match fentry::can_attach(&path, FENTRY_TARGET) {
                Ok(()) => format!("yes (attached to {FENTRY_TARGET})"),
                Err(e) => format!("refused: {e}"),
            },
        },
    });
    out.push(pmu("kprobe", "CONFIG_KPROBES"));
    out.push(pmu("uprobe", "CONFIG_UPROBE_EVENTS"));
    out
}

/// kprobes and uprobes are attached through their perf PMU, which exists only when
/// the kernel was built with them (`kernel/events/core.c`, `perf_kprobe`).
fn pmu(name: &'static str, config: &str) -> Feature {
    let file = format!("/sys/bus/event_source/devices/{name}/type");
    Feature {
        name,
        detail: if Path::new(&file).exists() {
            format!("yes ({name} PMU present)")
        } else {
            format!("no: this kernel has no {name} PMU ({config} is off)")
        },
    }
}

/// `--version` for people: whether cowtrace can use each feature here.
pub fn probe_current() -> Vec<Feature> {
    probe(privileges::require().is_ok())
}

mod fentry {
    //! The raw `bpf(2)` calls of the fentry probe. aya would need a whole object (its
    //! maps are created on load) and a full parse of the kernel's BTF (80 ms here);
    //! btf-rs finds one id in about 2 ms.
    use std::{
        io,
        os::fd::{FromRawFd as _, OwnedFd},
        path::Path,
    };

    use crate::kernel::btf::KernelBtf;

    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
    const BPF_PROG_TYPE_TRACING: u32 = 26;
    const BPF_TRACE_FENTRY: u32 = 24;

    /// The prefix of `union bpf_attr` for BPF_PROG_LOAD, up to `attach_prog_fd`
    /// (`include/uapi/linux/bpf.h`); the kernel zero-fills the rest.
    #[repr(C)]
    #[derive(Default)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
        prog_name: [u8; 16],
        prog_ifindex: u32,
        expected_attach_type: u32,
        prog_btf_fd: u32,
        func_info_rec_size: u32,
        func_info: u64,
        func_info_cnt: u32,
        line_info_rec_size: u32,
        line_info: u64,
        line_info_cnt: u32,
        attach_btf_id: u32,
        attach_prog_fd: u32,
        pad: u32,
    }
    const _: () = assert!(size_of::<ProgLoadAttr>() == 120);

    /// BPF_RAW_TRACEPOINT_OPEN: a null name attaches a tracing program where its
    /// attach_btf_id says.
    #[repr(C)]
    #[derive(Default)]
    struct RawTpAttr {
        name: u64,
        prog_fd: u32,
        pad: u32,
    }
    const _: () = assert!(size_of::<RawTpAttr>() == 16);

    /// Load `r0 = 0; exit` as fentry of `func`, attach it, and close both (detached).
    pub fn can_attach(btf_path: &Path, func: &str) -> Result<(), String> {
        let btf = KernelBtf::open_mapped(btf_path).map_err(|e| e.to_string())?;
        let id = btf
            .func_id(func)
            .ok_or_else(|| format!("{func} is not in the kernel's BTF"))?;
        // BPF_ALU64|BPF_MOV|BPF_K r0 = 0, then BPF_JMP|BPF_EXIT.
        let insns: [u64; 2] = [0xb7, 0x95];
        let license = c"GPL";
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_TRACING,
            insn_cnt: 2,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: BPF_TRACE_FENTRY,
            attach_btf_id: id,
            ..Default::default()
        };
        let prog = sys_bpf(BPF_PROG_LOAD, &attr).map_err(|e| format!("program load: {e}"))?;
        let attr = RawTpAttr {
            prog_fd: std::os::fd::AsRawFd::as_raw_fd(&prog) as u32,
            ..Default::default()
        };
        let link = sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &attr).map_err(|e| format!("attach: {e}"))?;
        drop(link);
        drop(prog);
        Ok(())
    }

    fn sys_bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<OwnedFd> {
        // SAFETY: `attr` is a valid, initialised bpf_attr prefix of the size passed, and
        // every pointer in it outlives the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                cmd,
                attr as *const T,
                size_of::<T>() as libc::c_uint,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: on success these commands return a new file descriptor that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(r as i32) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprivileged_says_unknown_where_a_load_is_needed() {
        let f = probe(false);
        let names: Vec<_> = f.iter().map(|f| f.name).collect();
        assert_eq!(names, ["BTF", "fentry", "kprobe", "uprobe"]);
        assert_eq!(f[1].detail, UNKNOWN_UNPRIVILEGED);
        for x in &f {
            assert!(
                x.detail.starts_with("yes") || x.detail.starts_with("no") || x.name == "fentry",
                "{x:?}"
            );
        }
    }
}
