//! Loading and attaching the kernel programs. Thin: every decision it needs is made by
//! the pure modules; what it does is named in its errors.
use std::path::Path;

use agent_common::PROC_RING_BYTES;
use aya::{
    Btf, Ebpf, EbpfLoader, Endianness,
    programs::{BtfTracePoint, FEntry, FExit, KProbe, ProgramError, TracePoint},
};

pub use crate::kernel::load_error::{LoadError, shorten_verifier_log};
use crate::kernel::load_error::{brief, prog_err};
pub use crate::kernel::optional::{ProbeResult, probe_optional};

use crate::{
    kernel::{
        btf::{BtfError, KernelBtf, KernelOffsets, btf_path, read_btf},
        cow::{self, CowChoice, Method},
        hooks::{self, Choice, HOOKS_ENV, MEASUREMENTS, Measurement, Path as HookPath, Policy},
        links::Links,
    },
    text::error::chain_of,
};

/// The kernel object, built by agent/build.rs with aya-build.
static OBJ: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/agent"));

/// The embedded kernel object (`build_info::BPF_OBJECT_SHA256` is its hash).
pub fn object() -> &'static [u8] {
    OBJ
}

/// tp_btf hooks (program name = tracepoint name) that cowtrace cannot run without (the
/// hooks that mark a COW fault depend on the kernel: `kernel::cow`, `check`'s COW line).
pub const BTF_TRACEPOINTS: &[&str] = &[
    "sched_process_fork",
    "sched_process_exit",
    "sched_process_exec",
    "mm_page_alloc",
    "block_rq_issue",
    "block_rq_complete",
];
/// Classic tracepoints of no measurement with a second path: (program, category,
/// names). The syscall tracepoints belong to the measurements of `hooks.rs`.
const TRACEPOINTS: [hooks::Tracepoint; 1] = [("oom_victim", "oom", &["mark_victim"])];

pub const DISK_HOOKS: &str = "tp_btf/block_rq_issue + tp_btf/block_rq_complete (bio page -> inode)";

pub struct LoadOptions {
    /// Trace every process that execs redis-server/valkey-server.
    pub auto_redis: bool,
    /// Size of the COW event ring buffer (a power of two, multiple of the page size).
    pub hot_ring_bytes: u32,
    /// Force a wakeup once this many bytes wait in the COW ring (default: half of it).
    pub hot_wake_bytes: Option<u64>,
    /// Size of the session event ring (default: the object's 1 MiB).
    pub proc_ring_bytes: Option<u32>,
    /// Which paths the measurements of `hooks.rs` may take (`COWTRACE_HOOKS`).
    pub hooks: Policy,
    /// Emit an event per COW copy (`record --events`, the only output that reads them);
    /// when false the fault path does no ring-buffer work at all.
    pub emit_cow: bool,
    /// Charge parent copies to causes and memory regions (`--causes`); when
    /// false the copy path skips that work.
    pub attrib: bool,
    /// Kernel hash maps sized other than their declaration (`COWTRACE_MAX_ENTRIES`).
    pub max_entries: Vec<(&'static str, u32)>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            auto_redis: true,
            hot_ring_bytes: 8 << 20,
            hot_wake_bytes: None,
            proc_ring_bytes: None,
            hooks: Policy::Auto,
            emit_cow: false,
            attrib: false,
            max_entries: Vec::new(),
        }
    }
}

pub struct Probes {
    pub ebpf: Ebpf,
    /// The attached links: dropping them detaches the programs (`Links`).
    pub links: Links,
    pub offsets: KernelOffsets,
    /// The path each measurement of `hooks.rs` took, and why.
    pub paths: Vec<Choice>,
    /// How COW copies are seen (`kernel::cow`).
    pub cow: CowChoice,
}

/// Each measurement's fentry prototypes checked against this kernel's BTF: `None` when
/// its fentry path may be tried, else why not.
#[derive(Debug, Clone, Default)]
pub struct ProtoChecks(
    Vec<(&'static str, Option<String>)>,
    /// `do_wp_page`'s parameters, for the COW method (`kernel::cow::plan`).
    Option<Vec<String>>,
);

impl ProtoChecks {
    pub fn of(btf: &KernelBtf) -> Self {
        ProtoChecks(
            MEASUREMENTS
                .iter()
                .map(|m| {
                    let why = m.protos.iter().find_map(|p| {
                        hooks::check_proto(p, btf.func_params(p.function).as_deref()).err()
                    });
                    (m.name, why)
                })
                .collect(),
            btf.func_params(cow::WP_FUNCTION),
        )
    }

    fn why_not(&self, m: &Measurement) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| *n == m.name)
            .map_or_else(|| Some("prototypes not checked".into()), |(_, w)| w.clone())
    }
}

/// Which hooks each program is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hooks {
    /// Every hook: what tracing needs.
    All,
    /// Every program loaded, but one hook attached per kind of hook (`sched/*`,
    /// `syscalls/*`, each `tp_btf`): proves the path at a fraction of the cost, since
    /// each classic tracepoint takes about 40 ms to detach, one after the other
    /// (`check`).
    OnePerCategory,
}

/// Mount tracefs if it is not there (classic tracepoints are found through it).
pub fn ensure_tracefs() -> Result<(), LoadError> {
    let events = Path::new("/sys/kernel/tracing/events");
    if events.exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let r = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            c"/sys/kernel/tracing".as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        return Err(LoadError::Tracefs(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Load the object with this host's settings and attach every required program.
pub fn load(opts: &LoadOptions) -> Result<Probes, LoadError> {
    let path = btf_path();
    let bytes = read_btf(&path)?;
    // Parsed BTF is large (tens of MiB of heap): keep one parse alive at a time.
    let kernel = KernelBtf::from_file_or_bytes(&path, &bytes)?;
    let offsets = kernel.offsets()?;
    let protos = ProtoChecks::of(&kernel);
    drop(kernel);
    let btf = parse_btf(&bytes, &path)?;
    drop(bytes);
    let probes = load_with(opts, offsets, &btf, Hooks::All, &protos)?;
    drop(btf);
    // Give the heap used by BTF parsing back to the system: the agent then runs in a
    // few MiB plus its ring buffers (glibc keeps freed memory otherwise; musl's
    // allocator, in the static release, returns freed groups by itself and has no
    // malloc_trim).
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free heap pages.
    unsafe {
        libc::malloc_trim(0)
    };
    Ok(probes)
}

/// Whether tracefs lists the tracepoint `category/name`.
fn tracepoint_exists(category: &str, name: &str) -> bool {
    [
        "/sys/kernel/tracing/events",
        "/sys/kernel/debug/tracing/events",
    ]
    .iter()
    .any(|root| Path::new(root).join(category).join(name).exists())
}

/// Load the object with `offsets` and aya's parse of the kernel's BTF (`btf`), and
/// attach its programs to `hooks`.
pub fn load_with(
    opts: &LoadOptions,
    offsets: KernelOffsets,
    btf: &Btf,
    hooks: Hooks,
    protos: &ProtoChecks,
) -> Result<Probes, LoadError> {
    ensure_tracefs()?;
    let agent_tgid = std::process::id();
    let auto = u32::from(opts.auto_redis);
    let emit_cow = u32::from(opts.emit_cow);
    let attrib_on = u32::from(opts.attrib);
    let wake = opts
        .hot_wake_bytes
        .unwrap_or(u64::from(opts.hot_ring_bytes / 2));
    let mut loader = EbpfLoader::new();
    for &(map, n) in &opts.max_entries {
        loader.map_max_entries(map, n);
    }
    let mut ebpf = loader
        .btf(Some(btf))
        .override_global("AGENT_TGID", &agent_tgid, true)
        .override_global("AUTO_REDIS", &auto, true)
        .override_global("HOT_WAKE_BYTES", &wake, true)
        .override_global("EMIT_COW", &emit_cow, true)
        .override_global("ATTRIB_ON", &attrib_on, true)
        .override_global("OFFSETS", &offsets, true)
        .map_max_entries("HOT_EVENTS", opts.hot_ring_bytes)
        .map_max_entries(
            "PROC_EVENTS",
            opts.proc_ring_bytes.unwrap_or(PROC_RING_BYTES),
        )
        .load(OBJ)
        .map_err(|e| LoadError::Load(Box::new(e)))?;
    let mut links = Links::default();

    // Process-life hooks first, so no fork is missed between the /proc scan and attach.
    for name in [
        "sched_process_fork",
        "sched_process_exit",
        "sched_process_exec",
    ] {
        attach_btf(&mut ebpf, &mut links, btf, name)?;
    }
    let mut tp = TracepointState::default();
    tp.attach(&mut ebpf, &mut links, &TRACEPOINTS, hooks)?;
    let mut paths = Vec::new();
    let mut syscall_bits = 0;
    for m in &MEASUREMENTS {
        let mut why = match opts.hooks {
            Policy::Tracepoint => Some(format!("forced by {HOOKS_ENV}=tracepoint")),
            Policy::Classic => Some(format!("forced by {HOOKS_ENV}=classic")),
            Policy::Auto => protos.why_not(m),
        };
        if why.is_none() {
            match attach_trampolines(&mut ebpf, btf, m) {
                Ok(group) => links.absorb(group),
                Err(e) => why = Some(format!("fentry refused: {e}")),
            }
        }
        let (path, hooks_in_use) = if why.is_none() {
            (HookPath::Fentry, m.fentry_hooks)
        } else if opts.hooks != Policy::Classic {
            // Attached below, once for every measurement that needs it.
            syscall_bits |= m.syscall_bit;
            (HookPath::Tracepoint, m.syscall_hooks)
        } else {
            tp.attach(&mut ebpf, &mut links, m.tracepoints, hooks)?;
            (HookPath::Tracepoint, m.tracepoint_hooks)
        };
        if let Some(w) = &why {
            log::info!("{}: tracepoint path ({w})", m.name);
        }
        paths.push(Choice {
            measurement: m.name,
            path,
            hooks: hooks_in_use,
            why,
        });
    }
    let cow = attach_cow(&mut ebpf, &mut links, btf, opts.hooks, protos)?;
    if syscall_bits != 0
        && let Err(e) = attach_syscalls(&mut ebpf, &mut links, btf, syscall_bits)
    {
        // Each measurement falls back to its classic tracepoints, one per syscall.
        log::info!("tp_btf/sys_enter, sys_exit: {e}; classic syscall tracepoints instead");
        for (m, choice) in MEASUREMENTS.iter().zip(paths.iter_mut()) {
            if syscall_bits & m.syscall_bit != 0 {
                tp.attach(&mut ebpf, &mut links, m.tracepoints, hooks)?;
                choice.hooks = m.tracepoint_hooks;
            }
        }
    }
    for name in ["mm_page_alloc", "block_rq_issue", "block_rq_complete"] {
        attach_btf(&mut ebpf, &mut links, btf, name)?;
    }
    Ok(Probes {
        ebpf,
        links,
        offsets,
        paths,
        cow,
    })
}

/// Attach `tp_btf/sys_enter` and `sys_exit` (agent-ebpf/src/syscall.rs) for the
/// measurements of `bits` (`SYSCALL_*`): both or neither, with the refusal in words. Two
/// raw tracepoint links instead of up to 29 classic ones: a classic link takes about
/// 40 ms to detach here (an RCU grace period under the kernel's event_mutex, one after
/// the other), a raw one does not wait.
fn attach_syscalls(ebpf: &mut Ebpf, links: &mut Links, btf: &Btf, bits: u32) -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        // The programs match x86-64 syscall numbers and registers.
        return Err("x86-64 only".into());
    }
    let mut paths: aya::maps::Array<_, u32> = ebpf
        .map_mut("SYSCALL_PATHS")
        .ok_or("map SYSCALL_PATHS missing from the BPF object")?
        .try_into()
        .map_err(|e: aya::maps::MapError| e.to_string())?;
    paths
        .set(0, bits, 0)
        .map_err(|e| format!("SYSCALL_PATHS: {e}"))?;
    let mut group = Links::default();
    for name in ["sys_enter", "sys_exit"] {
        attach_btf(ebpf, &mut group, btf, name).map_err(|e| chain_of(&e))?;
    }
    links.absorb(group);
    Ok(())
}

/// What the classic tracepoint programs have done so far: the programs loaded (one may
/// serve two measurements: `fd_syscall_enter`) and the categories proven once.
#[derive(Default)]
struct TracepointState {
    loaded: Vec<&'static str>,
    proven: Vec<&'static str>,
}

impl TracepointState {
    /// Load (once) and attach each program of `list` to its tracepoints.
    fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        links: &mut Links,
        list: &[hooks::Tracepoint],
        hooks: Hooks,
    ) -> Result<(), LoadError> {
        for &(prog, category, names) in list {
            let p: &mut TracePoint = program(ebpf, prog, category)?;
            if !self.loaded.contains(&prog) {
                p.load()
                    .map_err(|source| prog_err(prog, category, "load", source))?;
                self.loaded.push(prog);
            }
            // clone3/vfork may be missing on some architectures: skip those quietly.
            let present: Vec<&str> = names
                .iter()
                .copied()
                .filter(|n| tracepoint_exists(category, n))
                .collect();
            if present.is_empty() {
                // A syscall this architecture lacks: arm64 has no `rename` (only
                // renameat/renameat2), so `rename_enter` has nothing to attach to there.
                // Seen on Debian's arm64 6.1, which refuses fentry.
                log::info!(
                    "{prog}: none of {category}/{} exists on this kernel (no such syscall)",
                    names.join(",")
                );
                continue;
            }
            let wanted = match hooks {
                Hooks::All => present.len(),
                Hooks::OnePerCategory if self.proven.contains(&category) => 0,
                Hooks::OnePerCategory => 1,
            };
            self.proven.push(category);
            for name in &present[..wanted] {
                let hook = || format!("{category}/{name}");
                let id = p
                    .attach(category, name)
                    .map_err(|source| prog_err(prog, &hook(), "attach", source))?;
                let link = p
                    .take_link(id)
                    .map_err(|source| prog_err(prog, &hook(), "attach", source))?;
                links.push(link);
            }
        }
        Ok(())
    }
}

/// Load and attach the fentry/fexit programs of `m`: all of them, or none (what was
/// attached is detached again) with the kernel's refusal in a few words.
fn attach_trampolines(ebpf: &mut Ebpf, btf: &Btf, m: &Measurement) -> Result<Links, String> {
    let mut group = Links::default();
    for t in m.trampolines {
        let kind = if t.exit { "fexit" } else { "fentry" };
        let hook = format!("{kind}/{}", t.function);
        let fail = |step: &str, e: &dyn std::error::Error| {
            let msg = chain_of(e);
            log::debug!("{} ({hook}) failed to {step}: {msg}", t.prog);
            format!("{hook}: {}", brief(&msg))
        };
        let p = ebpf
            .program_mut(t.prog)
            .ok_or_else(|| format!("{} missing from the BPF object", t.prog))?;
        if t.exit {
            let p: &mut FExit = p
                .try_into()
                .map_err(|e: ProgramError| fail("be found", &e))?;
            p.load(t.function, btf).map_err(|e| fail("load", &e))?;
            let id = p.attach().map_err(|e| fail("attach", &e))?;
            group.push(p.take_link(id).map_err(|e| fail("attach", &e))?);
        } else {
            let p: &mut FEntry = p
                .try_into()
                .map_err(|e: ProgramError| fail("be found", &e))?;
            p.load(t.function, btf).map_err(|e| fail("load", &e))?;
            let id = p.attach().map_err(|e| fail("attach", &e))?;
            group.push(p.take_link(id).map_err(|e| fail("attach", &e))?);
        }
    }
    Ok(group)
}

/// Attach the programs that mark a COW fault: the first method of `cow::plan` this
/// kernel accepts, all of its programs or none.
fn attach_cow(
    ebpf: &mut Ebpf,
    links: &mut Links,
    btf: &Btf,
    policy: Policy,
    protos: &ProtoChecks,
) -> Result<CowChoice, LoadError> {
    let (tries, mut why) = cow::plan(cow::HAS_FAULT_TRACEPOINT, policy, protos.1.as_deref());
    for method in tries {
        if method == Method::FaultTracepoint {
            attach_btf(ebpf, links, btf, "page_fault_user")?;
            return Ok(CowChoice { method, why });
        }
        let mut group = Links::default();
        let r = method.programs().iter().try_for_each(|&(prog, exit)| {
            let hook = format!("{}/{}", prog_kind(method, exit), cow::WP_FUNCTION);
            let fail = |step: &str, e: &dyn std::error::Error| {
                format!("{hook}: failed to {step}: {}", brief(&chain_of(e)))
            };
            let p = ebpf
                .program_mut(prog)
                .ok_or_else(|| format!("{prog} missing from the BPF object"))?;
            match method {
                Method::WpFentry if exit => {
                    let p: &mut FExit = p
                        .try_into()
                        .map_err(|e: ProgramError| fail("be found", &e))?;
                    p.load(cow::WP_FUNCTION, btf)
                        .map_err(|e| fail("load", &e))?;
                    let id = p.attach().map_err(|e| fail("attach", &e))?;
                    group.push(p.take_link(id).map_err(|e| fail("attach", &e))?);
                }
                Method::WpFentry => {
                    let p: &mut FEntry = p
                        .try_into()
                        .map_err(|e: ProgramError| fail("be found", &e))?;
                    p.load(cow::WP_FUNCTION, btf)
                        .map_err(|e| fail("load", &e))?;
                    let id = p.attach().map_err(|e| fail("attach", &e))?;
                    group.push(p.take_link(id).map_err(|e| fail("attach", &e))?);
                }
                _ => {
                    let p: &mut KProbe = p
                        .try_into()
                        .map_err(|e: ProgramError| fail("be found", &e))?;
                    p.load().map_err(|e| fail("load", &e))?;
                    let id = p
                        .attach(cow::WP_FUNCTION, 0)
                        .map_err(|e| fail("attach", &e))?;
                    group.push(p.take_link(id).map_err(|e| fail("attach", &e))?);
                }
            }
            Ok::<(), String>(())
        });
        match r {
            Ok(()) => {
                links.absorb(group);
                return Ok(CowChoice { method, why });
            }
            Err(e) => {
                log::info!("COW: {} refused: {e}", method.word());
                why.push(format!("{} refused: {e}", method.word()));
            }
        }
    }
    Err(LoadError::Cow(cow::none_left(&why)))
}

fn prog_kind(method: Method, exit: bool) -> &'static str {
    match (method, exit) {
        (Method::WpFentry, false) => "fentry",
        (Method::WpFentry, true) => "fexit",
        (_, false) => "kprobe",
        (_, true) => "kretprobe",
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str, hook: &str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| prog_err(name, hook, "be found", ProgramError::UnexpectedProgramType))?;
    p.try_into()
        .map_err(|source| prog_err(name, hook, "be found", source))
}

fn attach_btf(ebpf: &mut Ebpf, links: &mut Links, btf: &Btf, name: &str) -> Result<(), LoadError> {
    let hook = format!("tp_btf/{name}");
    let p: &mut BtfTracePoint = program(ebpf, name, &hook)?;
    p.load(name, btf)
        .map_err(|source| prog_err(name, &hook, "load", source))?;
    let id = p
        .attach()
        .map_err(|source| prog_err(name, &hook, "attach", source))?;
    let link = p
        .take_link(id)
        .map_err(|source| prog_err(name, &hook, "attach", source))?;
    links.push(link);
    Ok(())
}

/// aya's parse of the kernel's BTF (`read_btf`), for loading the programs.
pub fn parse_btf(bytes: &[u8], path: &Path) -> Result<Btf, BtfError> {
    Btf::parse(bytes, Endianness::default()).map_err(|e| BtfError::Parse {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}
