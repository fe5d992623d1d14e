//! Maps and load-time settings shared by the programs.
use agent_common::{
    AttribKey, DROP_SLOTS, ERR_SLOTS, FileKey, FileStat, InodeKey, InodeOwner, MAYBE_TRACED_SLOTS,
    Offsets, PROC_RING_BYTES, PendingFault, RegionTable, SessionState, ThreadCause, TracedProc,
};
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};

/// Traced processes: Redis servers (or `-p` targets) and their session children.
/// A plain hash, not LRU: an evicted entry would silently stop tracing a process.
#[map]
pub static TRACED: HashMap<u32, TracedProc> = HashMap::with_max_entries(16384, 0);

/// A quick pre-filter in front of `TRACED` for the hooks that fire for every process on
/// the host (faults, page allocations, syscalls): slot `tgid % MAYBE_TRACED_SLOTS` is 1
/// once any traced process has that tgid. An array lookup is inlined by the JIT, where a
/// hash lookup is a helper call: an untraced process then pays a load and a compare.
/// Slots are never cleared (two tgids may share one), so a stale slot only sends a
/// lookup on to `TRACED`, as if there were no filter.
#[map]
pub static MAYBE_TRACED: Array<u8> = Array::with_max_entries(MAYBE_TRACED_SLOTS, 0);

/// Fork sessions keyed by child tgid; reaped by userspace after the exit event (and
/// its 1 s grace). 16,384 entries (224 bytes each, ~3.5 MiB): in a 10,000-fork storm on
/// a busy 2-vCPU host the agent fell behind and 8,192 filled (857 forks got no session,
/// counted in `end.kernel_errors`).
#[map]
pub static SESSIONS: HashMap<u32, SessionState> = HashMap::with_max_entries(16384, 0);

/// The chain of a root's sessions, keyed by child tgid: the session that was the
/// root's newest when this one was forked, which the fault handler walks to find the
/// newest *live* session (`fault.rs`). Apart from `SESSIONS` because the agent relinks
/// it when it reaps a session: rewriting a `SESSIONS` value from userspace would lose
/// the atomic adds the kernel makes to it meanwhile (it lost about ten copies a save in
/// a 2-vCPU guest).
#[map]
pub static SESSION_PREV: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// The last write-protect fault of each traced thread (see `PendingFault`). A plain hash
/// updated in place: an insert or delete per fault (and an LRU map's list lock) doubled
/// the cost of a COW fault. Entries are removed when their thread exits (`fork.rs`).
#[map]
pub static PENDING: HashMap<u32, PendingFault> = HashMap::with_max_entries(32768, 0);

/// Daemonization in progress, keyed by session child tgid: which half was seen first,
/// the child's `setsid()` (`GATE_SETSID`) or its root's exit (`GATE_PARENT_EXITED`).
/// Each half inserts with `BPF_NOEXIST`, which the map serializes under its bucket
/// lock: whichever comes second fails to insert, and promotes the child to a root. So
/// the two hooks, running at once on two CPUs, can neither both miss nor both promote.
/// Entries are removed at promotion or when the child exits.
#[map]
pub static DAEMON_GATE: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

/// Entry time of a traced thread's clone/fork syscall, keyed by tid.
#[map]
pub static FORK_START: LruHashMap<u32, u64> = LruHashMap::with_max_entries(4096, 0);

/// Session events: forks, exits, titles. Low rate, submitted with a wakeup; 1 MiB holds
/// about 800 forks' worth of events, for fork storms while the agent is busy (if it
/// still fills, the agent recovers the sessions from `SESSIONS`).
#[map]
pub static PROC_EVENTS: RingBuf = RingBuf::with_byte_size(PROC_RING_BYTES, 0);

/// COW copy events. Submitted with `BPF_RB_NO_WAKEUP`; userspace drains on a timer
/// (a wakeup per event made each COW fault 3.6x slower here, see README.md, "Totals are
/// exact; events are not guaranteed").
/// Size is set by userspace at load time.
#[map]
pub static HOT_EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Per-CPU count of failed ring-buffer reserves (index `DROP_*`).
#[map]
pub static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

/// Per-CPU count of failed map inserts (index `ERR_*`, one per map): a full map would
/// otherwise lose a session, a process or a measurement without a trace.
#[map]
pub static ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(ERR_SLOTS, 0);

// Load-time settings (`EbpfLoader::set_global`). Read with `util::global`, which uses a
// volatile read so the compiler cannot fold the zero initialiser into the code.
// SAFETY (`no_mangle`): the loader finds each global by this symbol name, and no other
// symbol in the object has these names.

/// tgid of the agent itself, never traced.
#[unsafe(no_mangle)]
pub static AGENT_TGID: u32 = 0;
/// 1: start tracing every process that execs `redis-server` or `valkey-server`.
#[unsafe(no_mangle)]
pub static AUTO_REDIS: u32 = 0;
/// 1: emit an event per COW copy on the hot ring (`record --events`, the only output
/// that uses them). At 0 the verifier prunes the ring work out of `mm_page_alloc`: the
/// totals, timelines and the live view come from the maps.
#[unsafe(no_mangle)]
pub static EMIT_COW: u32 = 0;
/// 1: charge each parent copy of a session to its cause and memory region (attrib.rs;
/// `--causes`). At 0 the verifier prunes that work out of `mm_page_alloc`.
#[unsafe(no_mangle)]
pub static ATTRIB_ON: u32 = 0;
/// Force a wakeup of the hot ring once this many bytes wait in it.
#[unsafe(no_mangle)]
pub static HOT_WAKE_BYTES: u64 = 1 << 20;
/// Field offsets read from the running kernel's BTF by userspace (`agent/src/btf.rs`):
/// the poor man's CO-RE. Read one field with `off!(name)`.
#[unsafe(no_mangle)]
pub static OFFSETS: Offsets = Offsets {
    task_pid: 0,
    task_tgid: 0,
    task_exit_code: 0,
    task_mm: 0,
    task_files: 0,
    mm_arg_start: 0,
    mm_arg_end: 0,
    files_fdt: 0,
    fdtable_fd: 0,
    fdtable_max_fds: 0,
    file_inode: 0,
    file_dentry: 0,
    dentry_name: 0,
    inode_mode: 0,
    inode_ino: 0,
    inode_sb: 0,
    sb_dev: 0,
    rq_data_len: 0,
    rq_bio: 0,
    bio_io_vec: 0,
    bvec_page: 0,
    page_mapping: 0,
    mapping_host: 0,
    page_compound_head: 0,
    filename_name: 0,
    pt_regs_di: 0,
    vmf_address: 0,
    pt_regs_si: 0,
    pt_regs_dx: 0,
    pt_regs_r10: 0,
    pt_regs_orig_ax: 0,
};

/// The measurements the `tp_btf/sys_enter`/`sys_exit` programs serve (`SYSCALL_*` bits),
/// written once by the loader before they are attached (syscall.rs).
#[map]
pub static SYSCALL_PATHS: Array<u32> = Array::with_max_entries(1, 0);

/// Files written by traced processes: exact bytes and calls per (session, file).
/// LRU: a host that writes millions of files loses the oldest file rows, never totals.
#[map]
pub static FILES: LruHashMap<FileKey, FileStat> = LruHashMap::with_max_entries(16384, 0);

/// Which session last wrote each inode (see `block.rs`).
#[map]
pub static INODE_OWNER: LruHashMap<InodeKey, InodeOwner> = LruHashMap::with_max_entries(16384, 0);

/// Entry of a write or sync syscall of a traced thread, keyed by tid. A plain hash updated
/// in place (like `PENDING`); entries are removed when their thread exits (`fork.rs`).
#[map]
pub static SYSCALL_START: HashMap<u32, SyscallStart> = HashMap::with_max_entries(32768, 0);

/// Block requests being serviced for a session, keyed by `struct request *`.
#[map]
pub static RQ_START: LruHashMap<u64, RqStart> = LruHashMap::with_max_entries(16384, 0);

#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallStart {
    pub ts_ns: u64,
    pub fd: u32,
    /// 1 between the syscall's entry and its exit.
    pub active: u32,
    /// `write`'s buffer (user address), 0 for the other calls.
    pub buf: u64,
}

#[repr(C)]
#[derive(Clone, Copy)]
pub struct RqStart {
    pub ts_ns: u64,
    pub owner: InodeOwner,
    pub key: InodeKey,
    /// Bytes not yet completed (a request may complete in parts).
    pub remaining: u64,
}

/// Parent copies per (session, cause) and per (session, region row) (`attrib.rs`).
/// A plain hash: the agent deletes a session's keys when it reads them at its end.
#[map]
pub static ATTRIB: HashMap<AttribKey, u64> = HashMap::with_max_entries(16384, 0);

/// Per-CPU count of `ATTRIB`/`THREAD_CAUSE` inserts that failed (a full map).
#[map]
pub static ATTRIB_ERRORS: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Each session's region table, written once by the agent right after the fork event.
#[map]
pub static REGIONS: HashMap<u32, RegionTable> = HashMap::with_max_entries(1024, 0);

/// The current cause of each thread of a server whose cause probes are attached, keyed
/// by tid; the agent deletes a server's entries when it detaches them.
#[map]
pub static THREAD_CAUSE: HashMap<u32, ThreadCause> = HashMap::with_max_entries(16384, 0);
