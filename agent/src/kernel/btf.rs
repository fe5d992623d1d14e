//! Kernel struct field offsets read from the running kernel's BTF.
//!
//! aya-ebpf programs written in Rust get no CO-RE relocations, so a program that must
//! read `task_struct::exit_code` cannot hard-code its offset: it changes with the kernel
//! version and config. The agent looks the offsets up here and hands them to the
//! programs as load-time globals (`OFF_*` in agent-ebpf/src/maps.rs).
use std::path::{Path, PathBuf};

use btf_rs::{Backend, Btf, BtfType, Type};
use thiserror::Error;

/// The `struct pt_regs` member holding a syscall's first argument, as the syscall
/// functions (`__x64_sys_*`, `__arm64_sys_*`) receive it: `di` on x86-64
/// (arch/x86/include/asm/ptrace.h), the array `regs` on arm64, whose element 0 is x0
/// (arch/arm64/include/asm/ptrace.h, inside an anonymous union).
#[cfg(target_arch = "aarch64")]
const SYSCALL_ARG0: &str = "regs";
#[cfg(not(target_arch = "aarch64"))]
const SYSCALL_ARG0: &str = "di";

/// Where the kernel exposes its BTF. `COWTRACE_BTF` overrides it (used by tests to
/// simulate a kernel without BTF).
pub fn btf_path() -> PathBuf {
    std::env::var_os("COWTRACE_BTF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"))
}

#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "kernel BTF not found at {0}: cowtrace needs a kernel built with CONFIG_DEBUG_INFO_BTF=y \
         (most distribution kernels since 5.4 have it)"
    )]
    Missing(PathBuf),
    #[error("cannot parse kernel BTF at {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("kernel BTF has no `struct {strukt}` with a member `{member}`")]
    NoMember { strukt: String, member: String },
}

pub use agent_common::Offsets as KernelOffsets;

pub struct KernelBtf {
    btf: Btf,
    pub path: PathBuf,
}

/// The kernel's BTF file, read whole (about 6 MiB): btf-rs parsing from a `File` seeks
/// for every type (about 250,000 `lseek` calls, 140 ms here), from memory it does not;
/// and the same bytes serve aya's parse, so the file is read once.
pub fn read_btf(path: &Path) -> Result<Vec<u8>, BtfError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BtfError::Missing(path.to_path_buf()),
        _ => BtfError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        },
    })
}

impl KernelBtf {
    pub fn open(path: &Path) -> Result<Self, BtfError> {
        Self::from_file_or_bytes(path, &read_btf(path)?)
    }

    /// The BTF of `path`, mapped when the kernel allows it, else read and parsed: for
    /// callers that need a few lookups and not the bytes (`features`).
    pub fn open_mapped(path: &Path) -> Result<Self, BtfError> {
        match Btf::from_file_with_backend(path, Backend::Mmap) {
            Ok(btf) => Ok(Self {
                btf,
                path: path.to_path_buf(),
            }),
            Err(_) => Self::open(path),
        }
    }

    /// The BTF of `path`, already read into `bytes` (`read_btf`). Mapped from the file
    /// when the kernel allows it (sysfs BTF can be mmapped since 6.16): btf-rs then
    /// indexes the types without parsing them all (2 ms instead of 80 ms here, and
    /// about 15 ms for the lookups); else parsed from the bytes.
    pub fn from_file_or_bytes(path: &Path, bytes: &[u8]) -> Result<Self, BtfError> {
        match Btf::from_file_with_backend(path, Backend::Mmap) {
            Ok(btf) => Ok(Self {
                btf,
                path: path.to_path_buf(),
            }),
            Err(e) => {
                log::debug!("BTF of {}: no mmap ({e}); parsing it", path.display());
                Self::from_bytes(bytes, path)
            }
        }
    }

    /// Parse BTF already read from `path` (`read_btf`).
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<Self, BtfError> {
        let btf = Btf::from_bytes(bytes).map_err(|e| BtfError::Parse {
            path: path.to_path_buf(),
            msg: e.to_string(),
        })?;
        Ok(Self {
            btf,
            path: path.to_path_buf(),
        })
    }

    /// Every offset the kernel programs read. All are required: a kernel that lacks
    /// one is reported by name rather than traced wrongly.
    pub fn offsets(&self) -> Result<KernelOffsets, BtfError> {
        let m = |s: &str, f: &str| self.member_offset(s, f);
        let x86_regs = |f: &str| {
            if cfg!(target_arch = "x86_64") {
                m("pt_regs", f)
            } else {
                Ok(0)
            }
        };
        Ok(KernelOffsets {
            task_pid: m("task_struct", "pid")?,
            task_tgid: m("task_struct", "tgid")?,
            task_exit_code: m("task_struct", "exit_code")?,
            task_mm: m("task_struct", "mm")?,
            task_files: m("task_struct", "files")?,
            mm_arg_start: m("mm_struct", "arg_start")?,
            mm_arg_end: m("mm_struct", "arg_end")?,
            files_fdt: m("files_struct", "fdt")?,
            fdtable_fd: m("fdtable", "fd")?,
            fdtable_max_fds: m("fdtable", "max_fds")?,
            file_inode: m("file", "f_inode")?,
            file_dentry: m("file", "f_path")? + m("path", "dentry")?,
            dentry_name: m("dentry", "d_name")? + m("qstr", "name")?,
            inode_mode: m("inode", "i_mode")?,
            inode_ino: m("inode", "i_ino")?,
            inode_sb: m("inode", "i_sb")?,
            sb_dev: m("super_block", "s_dev")?,
            rq_data_len: m("request", "__data_len")?,
            rq_bio: m("request", "bio")?,
            bio_io_vec: m("bio", "bi_io_vec")?,
            bvec_page: m("bio_vec", "bv_page")?,
            page_mapping: m("page", "mapping")?,
            mapping_host: m("address_space", "host")?,
            page_compound_head: m("page", "compound_head")?,
            filename_name: m("filename", "name")?,
            pt_regs_di: m("pt_regs", SYSCALL_ARG0)?,
            vmf_address: m("vm_fault", "address")?,
            // The tp_btf/sys_enter and sys_exit programs read these on x86-64 only
            // (syscall.rs); arm64's pt_regs has no such fields, and 0 is never read.
            pt_regs_si: x86_regs("si")?,
            pt_regs_dx: x86_regs("dx")?,
            pt_regs_r10: x86_regs("r10")?,
            pt_regs_orig_ax: x86_regs("orig_ax")?,
        })
    }

    /// True when the kernel has the BTF-enabled tracepoint `name` (`btf_trace_<name>`).
    pub fn has_btf_tracepoint(&self, name: &str) -> bool {
        self.btf
            .resolve_ids_by_name(&format!("btf_trace_{name}"))
            .is_ok_and(|v| !v.is_empty())
    }

    /// True when BTF describes a function `name` (fentry/kprobe candidates).
    pub fn has_function(&self, name: &str) -> bool {
        self.btf
            .resolve_types_by_name(name)
            .is_ok_and(|v| v.iter().any(|t| matches!(t, Type::Func(_))))
    }

    /// The parameters of function `name`, each as `struct NAME *` for a pointer to a
    /// struct or union, else the name of its type (`int`, `loff_t`) or `?`; None when BTF
    /// has no such function (it does not exist, or was inlined everywhere).
    pub fn func_params(&self, name: &str) -> Option<Vec<String>> {
        let types = self.btf.resolve_types_by_name(name).ok()?;
        let func = types.into_iter().find_map(|t| match t {
            Type::Func(f) => Some(f),
            _ => None,
        })?;
        let Type::FuncProto(proto) = self.btf.resolve_chained_type(&func).ok()? else {
            return None;
        };
        Some(
            proto
                .parameters
                .iter()
                .map(|p| self.describe(self.btf.resolve_chained_type(p).ok()))
                .collect(),
        )
    }

    fn describe(&self, t: Option<Type>) -> String {
        let name = |x: &dyn BtfType| self.btf.resolve_name(x).unwrap_or_default();
        match t {
            Some(Type::Ptr(p)) => {
                // Through qualifiers to what is pointed at.
                let mut t = self.btf.resolve_chained_type(&p).ok();
                let mut hops = 0;
                let pointee = loop {
                    hops += 1;
                    t = match t {
                        _ if hops > 8 => break None,
                        Some(Type::Const(x)) => self.btf.resolve_chained_type(&x).ok(),
                        Some(Type::Volatile(x)) => self.btf.resolve_chained_type(&x).ok(),
                        Some(Type::Restrict(x)) => self.btf.resolve_chained_type(&x).ok(),
                        Some(Type::TypeTag(x)) => self.btf.resolve_chained_type(&x).ok(),
                        other => break other,
                    };
                };
                match pointee {
                    Some(Type::Struct(s)) | Some(Type::Union(s)) => {
                        format!("struct {} *", name(&s))
                    }
                    Some(Type::Int(i)) => format!("{} *", name(&i)),
                    Some(Type::Typedef(d)) => format!("{} *", name(&d)),
                    _ => "? *".to_string(),
                }
            }
            Some(Type::Int(i)) => name(&i),
            Some(Type::Typedef(d)) => name(&d),
            Some(Type::Enum(e)) => name(&e),
            _ => "?".to_string(),
        }
    }

    /// The BTF id of the function `name` (what a fentry program's `attach_btf_id` names).
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.btf
            .resolve_ids_by_name(name)
            .ok()?
            .into_iter()
            .find(|id| matches!(self.btf.resolve_type_by_id(*id), Ok(Type::Func(_))))
    }

    /// Byte offset of `member` in `struct strukt`, looking inside anonymous struct and
    /// union members (task_struct keeps many fields in them).
    pub fn member_offset(&self, strukt: &str, member: &str) -> Result<u32, BtfError> {
        let not_found = || BtfError::NoMember {
            strukt: strukt.to_string(),
            member: member.to_string(),
        };
        let types = self
            .btf
            .resolve_types_by_name(strukt)
            .map_err(|_| not_found())?;
        for t in &types {
            if let Type::Struct(s) = t
                && let Some(bits) = self.find_in(s, member, 0, 0)
            {
                return Ok(bits / 8);
            }
        }
        Err(not_found())
    }

    fn find_in(&self, s: &btf_rs::Struct, member: &str, base_bits: u32, depth: u32) -> Option<u32> {
        if depth > 8 {
            return None;
        }
        for m in &s.members {
            let name = self.btf.resolve_name(m).unwrap_or_default();
            let bits = base_bits + m.bit_offset();
            if name == member {
                return Some(bits);
            }
            if name.is_empty()
                && let Some(inner) = self.struct_of(m)
                && let Some(found) = self.find_in(&inner, member, bits, depth + 1)
            {
                return Some(found);
            }
        }
        None
    }

    /// The struct or union a member's type resolves to, through typedefs and qualifiers.
    fn struct_of(&self, m: &dyn BtfType) -> Option<btf_rs::Struct> {
        let mut t = self.btf.resolve_chained_type(m).ok()?;
        for _ in 0..8 {
            t = match t {
                Type::Struct(s) | Type::Union(s) => return Some(s),
                Type::Typedef(x) => self.btf.resolve_chained_type(&x).ok()?,
                Type::Const(x) => self.btf.resolve_chained_type(&x).ok()?,
                Type::Volatile(x) => self.btf.resolve_chained_type(&x).ok()?,
                _ => return None,
            };
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_btf_is_a_clear_error() {
        let e = KernelBtf::open(Path::new("/nonexistent/vmlinux"))
            .err()
            .unwrap();
        assert!(matches!(e, BtfError::Missing(_)));
        assert!(e.to_string().contains("CONFIG_DEBUG_INFO_BTF"));
    }

    #[test]
    fn garbage_btf_is_a_parse_error() {
        let dir = std::env::temp_dir().join(format!("cowtrace-btf-{}", std::process::id()));
        std::fs::write(&dir, b"not btf at all").unwrap();
        let e = KernelBtf::open(&dir).err().unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert!(matches!(e, BtfError::Parse { .. }), "{e}");
    }

    /// Reads the running kernel's BTF when there is one (every machine this project
    /// runs on has it; the root tests check that cowtrace refuses to start without it).
    #[test]
    fn offsets_of_running_kernel_are_sane() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            panic!("this test needs /sys/kernel/btf/vmlinux (kernel BTF)");
        }
        let btf = KernelBtf::open(path).unwrap();
        let o = btf.offsets().unwrap();
        assert!(o.task_pid > 0 && o.task_tgid == o.task_pid + 4, "{o:?}");
        assert!(
            o.task_exit_code > 0 && o.task_mm > 0 && o.mm_arg_start > 0,
            "{o:?}"
        );
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8, "{o:?}");
        // Offsets that are 0 by layout on x86-64 6.x: fdtable.max_fds, bio_vec.bv_page,
        // address_space.host, inode.i_mode. Every other one must be found non-zero.
        assert!(
            o.task_files > 0 && o.files_fdt > 0 && o.fdtable_fd > 0 && o.file_inode > 0,
            "{o:?}"
        );
        assert!(
            o.file_dentry > 0 && o.dentry_name > 0 && o.inode_ino > 0 && o.inode_sb > 0,
            "{o:?}"
        );
        assert!(
            o.sb_dev > 0 && o.rq_data_len > 0 && o.rq_bio > 0 && o.bio_io_vec > 0,
            "{o:?}"
        );
        assert!(o.page_mapping > 0 && o.page_compound_head > 0, "{o:?}");
        assert!(btf.has_btf_tracepoint("sched_process_fork"));
        let p = btf.func_params("vfs_fsync").unwrap();
        assert_eq!(p, ["struct file *", "int"]);
        assert_eq!(btf.func_params("vfs_write").unwrap()[0], "struct file *");
        assert!(btf.func_params("no_such_function").is_none());
        let id = btf.func_id("do_wp_page").expect("do_wp_page is in BTF");
        assert!(id > 0);
        assert_eq!(btf.func_id("no_such_function"), None);
        // The typedef `btf_trace_*` is not a function.
        assert_eq!(btf.func_id("btf_trace_sched_process_fork"), None);
        assert!(!btf.has_btf_tracepoint("no_such_tracepoint"));
        assert!(btf.member_offset("task_struct", "no_such_field").is_err());
    }
}
