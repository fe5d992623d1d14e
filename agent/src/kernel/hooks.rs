//! Which hooks carry each measurement that has two paths: BPF trampolines (fentry/fexit)
//! on the kernel functions under the syscalls, or the syscall tracepoints.
//!
//! The tracepoint path works on every kernel cowtrace supports; the fentry path is
//! preferred where the kernel allows it, because while any `syscalls/*` tracepoint is
//! attached every syscall of every task takes the kernel's slow path (see
//! agent-ebpf/src/vfs.rs). The loader tries the fentry path of each measurement on its
//! own and falls back to its tracepoints when the kernel refuses anything (the
//! development host refuses fentry with EPERM), so an optional path never stops
//! cowtrace. `COWTRACE_HOOKS=tracepoint` forces the tracepoint path.
//!
//! Pure: the table, the prototype checks against what BTF says, and the words.

/// `COWTRACE_HOOKS`: `auto` (the default), `tracepoint` or `classic`.
pub const HOOKS_ENV: &str = "COWTRACE_HOOKS";

/// What the user allows the loader to pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The fentry path wherever the kernel allows it, else the tracepoints.
    #[default]
    Auto,
    /// The tracepoint path only (`tp_btf/sys_enter`/`sys_exit`, else the classic ones).
    Tracepoint,
    /// The tracepoint path on the classic `syscalls/*` tracepoints, one per syscall (the
    /// fallback when the `tp_btf/sys_*` programs are refused; for comparisons).
    Classic,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        match s.trim() {
            "auto" | "" => Some(Policy::Auto),
            "tracepoint" => Some(Policy::Tracepoint),
            "classic" => Some(Policy::Classic),
            _ => None,
        }
    }
}

/// The path a measurement uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Fentry,
    Tracepoint,
}

/// One fentry or fexit program and the kernel function it hooks.
#[derive(Debug, Clone, Copy)]
pub struct Trampoline {
    pub prog: &'static str,
    pub function: &'static str,
    /// fexit (after the function returns) rather than fentry.
    pub exit: bool,
}

/// The prototype a program relies on: how many parameters, and the type of those it
/// reads (as `KernelBtf::func_params` describes them).
#[derive(Debug, Clone, Copy)]
pub struct Proto {
    pub function: &'static str,
    pub params: usize,
    pub reads: &'static [(usize, &'static str)],
}

/// A classic tracepoint program and the tracepoints it goes on: (program, category,
/// names). A missing name is skipped (clone3 or vfork on some architectures); each
/// program needs one.
pub type Tracepoint = (&'static str, &'static str, &'static [&'static str]);

/// A measurement with both paths.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// As `check` and the `meta` line name it.
    pub name: &'static str,
    pub trampolines: &'static [Trampoline],
    pub protos: &'static [Proto],
    pub fentry_hooks: &'static str,
    pub tracepoints: &'static [Tracepoint],
    pub tracepoint_hooks: &'static str,
    /// Its bit in `SYSCALL_PATHS`: the `tp_btf/sys_enter`/`sys_exit` programs serve it
    /// (agent-ebpf/src/syscall.rs) in place of its classic tracepoints.
    pub syscall_bit: u32,
    /// Those hooks in words, for the `meta` line and `check`.
    pub syscall_hooks: &'static str,
}

const fn tr(prog: &'static str, function: &'static str, exit: bool) -> Trampoline {
    Trampoline {
        prog,
        function,
        exit,
    }
}

const FILE: (usize, &str) = (0, "struct file *");

pub const WRITES: Measurement = Measurement {
    name: "writes",
    trampolines: &[
        tr("vfs_write_entry", "vfs_write", false),
        tr("vfs_write_exit", "vfs_write", true),
        tr("vfs_writev_entry", "vfs_writev", false),
        tr("vfs_writev_exit", "vfs_writev", true),
    ],
    protos: &[
        Proto {
            function: "vfs_write",
            params: 4,
            reads: &[FILE],
        },
        Proto {
            function: "vfs_writev",
            params: 5,
            reads: &[FILE],
        },
    ],
    fentry_hooks: "fentry+fexit/vfs_write, fentry+fexit/vfs_writev",
    tracepoints: &[
        // `write` keeps its buffer too: a server's socket writes tell replica syncs.
        ("write_enter", "syscalls", &["sys_enter_write"]),
        (
            "fd_syscall_enter",
            "syscalls",
            &[
                "sys_enter_pwrite64",
                "sys_enter_writev",
                "sys_enter_pwritev",
                "sys_enter_pwritev2",
            ],
        ),
        (
            "write_exit",
            "syscalls",
            &[
                "sys_exit_write",
                "sys_exit_pwrite64",
                "sys_exit_writev",
                "sys_exit_pwritev",
                "sys_exit_pwritev2",
            ],
        ),
    ],
    tracepoint_hooks: "tracepoint/syscalls/sys_{enter,exit}_{write,pwrite64,writev,pwritev,pwritev2}",
    syscall_bit: agent_common::SYSCALL_WRITES,
    syscall_hooks: "tp_btf/sys_{enter,exit} for write, pwrite64, writev, pwritev, pwritev2",
};

/// The name of the kernel function of syscall `$name`: `__x64_sys_NAME` on x86-64,
/// `__arm64_sys_NAME` on arm64 (the syscall wrappers of
/// arch/{x86,arm64}/include/asm/syscall_wrapper.h, since 4.17 and 4.19), which take the
/// caller's `struct pt_regs *`.
#[cfg(target_arch = "aarch64")]
macro_rules! sys {
    ($name:literal) => {
        concat!("__arm64_sys_", $name)
    };
}
#[cfg(not(target_arch = "aarch64"))]
macro_rules! sys {
    ($name:literal) => {
        concat!("__x64_sys_", $name)
    };
}

/// What `sys!` puts before a syscall's name on this architecture.
pub const SYSCALL_PREFIX: &str = sys!("");

/// The syscall functions' prototype (`sys!`).
const fn syscall(function: &'static str) -> Proto {
    Proto {
        function,
        params: 1,
        reads: &[(0, "struct pt_regs *")],
    }
}

/// On the syscall functions, not `vfs_fsync` / `ksys_sync_file_range`: those are inlined
/// into the syscalls on Debian's 6.12 (see agent-ebpf/src/trampoline.rs).
pub const SYNCS: Measurement = Measurement {
    name: "syncs",
    trampolines: &[
        tr("sys_fsync_entry", sys!("fsync"), false),
        tr("sys_fsync_exit", sys!("fsync"), true),
        tr("sys_fdatasync_entry", sys!("fdatasync"), false),
        tr("sys_fdatasync_exit", sys!("fdatasync"), true),
        tr("sys_sync_file_range_entry", sys!("sync_file_range"), false),
        tr("sys_sync_file_range_exit", sys!("sync_file_range"), true),
    ],
    protos: &[
        syscall(sys!("fsync")),
        syscall(sys!("fdatasync")),
        syscall(sys!("sync_file_range")),
    ],
    fentry_hooks: concat!("fentry+fexit/", sys!("{fsync,fdatasync,sync_file_range}")),
    tracepoints: &[
        (
            "fd_syscall_enter",
            "syscalls",
            &[
                "sys_enter_fsync",
                "sys_enter_fdatasync",
                "sys_enter_sync_file_range",
                // The name on architectures whose ABI reorders its arguments (the fd
                // stays first).
                "sys_enter_sync_file_range2",
            ],
        ),
        ("fsync_exit", "syscalls", &["sys_exit_fsync"]),
        ("fdatasync_exit", "syscalls", &["sys_exit_fdatasync"]),
        (
            "sync_file_range_exit",
            "syscalls",
            &["sys_exit_sync_file_range", "sys_exit_sync_file_range2"],
        ),
    ],
    tracepoint_hooks: "tracepoint/syscalls/sys_{enter,exit}_{fsync,fdatasync,sync_file_range}",
    syscall_bit: agent_common::SYSCALL_SYNCS,
    syscall_hooks: "tp_btf/sys_{enter,exit} for fsync, fdatasync, sync_file_range",
};

pub const RENAMES: Measurement = Measurement {
    name: "renames",
    trampolines: &[tr("do_renameat2_entry", "do_renameat2", false)],
    protos: &[Proto {
        function: "do_renameat2",
        params: 5,
        reads: &[(1, "struct filename *"), (3, "struct filename *")],
    }],
    fentry_hooks: "fentry/do_renameat2",
    tracepoints: &[
        ("rename_enter", "syscalls", &["sys_enter_rename"]),
        // renameat and renameat2 share a record layout different from rename's.
        (
            "renameat_enter",
            "syscalls",
            &["sys_enter_renameat", "sys_enter_renameat2"],
        ),
    ],
    tracepoint_hooks: "tracepoint/syscalls/sys_enter_{rename,renameat,renameat2}",
    syscall_bit: agent_common::SYSCALL_RENAMES,
    syscall_hooks: "tp_btf/sys_enter for rename, renameat, renameat2",
};

pub const FORK_LATENCY: Measurement = Measurement {
    name: "fork latency",
    trampolines: &[
        tr("kernel_clone_entry", "kernel_clone", false),
        tr("kernel_clone_exit", "kernel_clone", true),
    ],
    protos: &[Proto {
        function: "kernel_clone",
        params: 1,
        reads: &[],
    }],
    fentry_hooks: "fentry+fexit/kernel_clone",
    tracepoints: &[
        (
            "fork_enter",
            "syscalls",
            &[
                "sys_enter_clone",
                "sys_enter_clone3",
                "sys_enter_fork",
                "sys_enter_vfork",
            ],
        ),
        (
            "fork_exit",
            "syscalls",
            &[
                "sys_exit_clone",
                "sys_exit_clone3",
                "sys_exit_fork",
                "sys_exit_vfork",
            ],
        ),
    ],
    tracepoint_hooks: "tracepoint/syscalls/sys_{enter,exit}_{clone,clone3,fork,vfork}",
    syscall_bit: agent_common::SYSCALL_FORKS,
    syscall_hooks: "tp_btf/sys_{enter,exit} for clone, clone3, fork, vfork",
};

pub const TITLES: Measurement = Measurement {
    name: "exit titles",
    trampolines: &[tr("sys_exit_group_entry", sys!("exit_group"), false)],
    protos: &[syscall(sys!("exit_group"))],
    fentry_hooks: concat!("fentry/", sys!("exit_group")),
    tracepoints: &[("exit_group_enter", "syscalls", &["sys_enter_exit_group"])],
    tracepoint_hooks: "tracepoint/syscalls/sys_enter_exit_group",
    syscall_bit: agent_common::SYSCALL_EXIT_TITLES,
    syscall_hooks: "tp_btf/sys_enter for exit_group",
};

/// A session child that `setsid()`s: the child's half of a daemonization (fork.rs).
pub const DAEMONIZE: Measurement = Measurement {
    name: "setsid",
    trampolines: &[tr("sys_setsid_exit", sys!("setsid"), true)],
    protos: &[syscall(sys!("setsid"))],
    fentry_hooks: concat!("fexit/", sys!("setsid")),
    tracepoints: &[("setsid_exit", "syscalls", &["sys_exit_setsid"])],
    tracepoint_hooks: "tracepoint/syscalls/sys_exit_setsid",
    syscall_bit: agent_common::SYSCALL_SETSID,
    syscall_hooks: "tp_btf/sys_exit for setsid",
};

/// Every measurement with two paths, in the order they are attached. With all of them
/// on the fentry path, no syscall tracepoint is attached.
pub const MEASUREMENTS: [Measurement; 6] =
    [FORK_LATENCY, TITLES, DAEMONIZE, WRITES, SYNCS, RENAMES];

/// Whether `params` (from `KernelBtf::func_params`; None: not in BTF) is the prototype
/// `p` relies on; the reason when not.
pub fn check_proto(p: &Proto, params: Option<&[String]>) -> Result<(), String> {
    let Some(params) = params else {
        return Err(format!(
            "{} is not in this kernel's BTF (absent or inlined)",
            p.function
        ));
    };
    if params.len() != p.params {
        return Err(format!(
            "{} takes {} parameters here, not {}",
            p.function,
            params.len(),
            p.params
        ));
    }
    for &(i, want) in p.reads {
        if params[i] != want {
            return Err(format!(
                "{}'s parameter {i} is `{}` here, not `{want}`",
                p.function, params[i]
            ));
        }
    }
    Ok(())
}

/// How one measurement is carried on this kernel, as `check` and the `meta` line say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub measurement: &'static str,
    pub path: Path,
    /// The hooks in use.
    pub hooks: &'static str,
    /// Why the tracepoint path is used (None on the fentry path).
    pub why: Option<String>,
}

impl Choice {
    /// `fentry+fexit/vfs_write, ...` or `tracepoint/... (fentry refused: ...)`.
    pub fn describe(&self) -> String {
        match &self.why {
            None => self.hooks.to_string(),
            Some(w) => format!("{} ({w})", self.hooks),
        }
    }
}

/// The `fentry` entry of the `meta` line and `check`: what the fentry path carries, or
/// why nothing.
pub fn fentry_summary(choices: &[Choice]) -> String {
    let used: Vec<&str> = choices
        .iter()
        .filter(|c| c.path == Path::Fentry)
        .map(|c| c.measurement)
        .collect();
    if used.len() == choices.len() && !used.is_empty() {
        return format!("used for {}", used.join(", "));
    }
    let first_why = choices
        .iter()
        .find_map(|c| c.why.clone())
        .unwrap_or_default();
    if used.is_empty() {
        return format!("not used ({first_why})");
    }
    format!(
        "used for {}; not for the others ({first_why})",
        used.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn prototypes_are_checked_by_count_and_read_types() {
        let p = &RENAMES.protos[0];
        let new = s(&[
            "int",
            "struct filename *",
            "int",
            "struct filename *",
            "unsigned int",
        ]);
        assert_eq!(check_proto(p, Some(&new)), Ok(()));
        // Before 5.12 do_renameat2 took user pointers.
        let old = s(&["int", "char *", "int", "char *", "unsigned int"]);
        assert_eq!(
            check_proto(p, Some(&old)).unwrap_err(),
            "do_renameat2's parameter 1 is `char *` here, not `struct filename *`"
        );
        assert_eq!(
            check_proto(p, None).unwrap_err(),
            "do_renameat2 is not in this kernel's BTF (absent or inlined)"
        );
        let short = s(&["struct file *"]);
        let bits: u32 = MEASUREMENTS.iter().map(|m| m.syscall_bit).sum();
        assert_eq!(
            bits,
            MEASUREMENTS.iter().fold(0, |a, m| a | m.syscall_bit),
            "one bit per measurement"
        );
        assert!(
            check_proto(&WRITES.protos[0], Some(&short))
                .unwrap_err()
                .contains("takes 1 parameters here, not 4")
        );
        let sys = s(&["struct pt_regs *"]);
        assert_eq!(check_proto(&SYNCS.protos[0], Some(&sys)), Ok(()));
    }

    #[test]
    fn every_program_of_a_path_has_its_prototype_and_hooks() {
        for m in MEASUREMENTS {
            for t in m.trampolines {
                assert!(
                    m.protos.iter().any(|p| p.function == t.function),
                    "{}: {} has no prototype",
                    m.name,
                    t.function
                );
                let short = t.function.trim_start_matches(SYSCALL_PREFIX);
                assert!(m.fentry_hooks.contains(short), "{}: {short}", m.name);
            }
            assert!(!m.tracepoints.is_empty());
            assert!(m.syscall_bit.is_power_of_two(), "{}", m.name);
            assert!(m.syscall_hooks.starts_with("tp_btf/sys_"), "{}", m.name);
        }
        assert_eq!(Policy::parse("tracepoint"), Some(Policy::Tracepoint));
        assert_eq!(Policy::parse("auto"), Some(Policy::Auto));
        assert_eq!(Policy::parse("classic"), Some(Policy::Classic));
        assert_eq!(Policy::parse("fentry"), None);
    }

    #[test]
    fn the_fentry_summary_says_what_it_carries() {
        let c = |m, path, why: Option<&str>| Choice {
            measurement: m,
            path,
            hooks: "x",
            why: why.map(str::to_string),
        };
        let all = [
            c("writes", Path::Fentry, None),
            c("syncs", Path::Fentry, None),
        ];
        assert_eq!(fentry_summary(&all), "used for writes, syncs");
        let none = [
            c("writes", Path::Tracepoint, Some("fentry refused: EPERM")),
            c("syncs", Path::Tracepoint, Some("fentry refused: EPERM")),
        ];
        assert_eq!(fentry_summary(&none), "not used (fentry refused: EPERM)");
        let some = [
            c("writes", Path::Fentry, None),
            c("renames", Path::Tracepoint, Some("old prototype")),
        ];
        assert_eq!(
            fentry_summary(&some),
            "used for writes; not for the others (old prototype)"
        );
        assert_eq!(none[0].describe(), "x (fentry refused: EPERM)");
    }
}
