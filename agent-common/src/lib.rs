//! Wire types shared by the kernel programs (`agent-ebpf`) and the userspace agent.
//!
//! Rules (see STYLE): fixed-width integers and byte arrays only, no `bool`, no enums,
//! padding written out as fields, and a compile-time size assertion beside each type.
//! Userspace never transmutes ring-buffer bytes into these types without checking the
//! length and the `kind` field first (see `agent/src/decode.rs`).
#![no_std]

/// Roles of a process in the `TRACED` map.
pub const ROLE_ROOT: u32 = 1; // a Redis server (or a `-p` target)
pub const ROLE_CHILD: u32 = 2; // a fork child of a root: its session

/// Event kinds on the session ring buffer (`PROC_EVENTS`, low rate, wakes userspace).
pub const EV_FORK: u32 = 1;
pub const EV_EXIT: u32 = 2;
pub const EV_FORK_RET: u32 = 3;
pub const EV_EXEC: u32 = 4;
pub const EV_TITLE: u32 = 5;
pub const EV_RENAME: u32 = 6;
/// The OOM killer chose a traced process (`value`: its RSS in bytes).
pub const EV_OOM: u32 = 7;
/// A server daemonized: its fork child `pid` (which called `setsid()`) outlived the
/// parent `ppid` (which exited), so the child is now the traced root and its fork is
/// no session.
pub const EV_DAEMON: u32 = 8;
/// Session child `pid` of `ppid` called `setsid()`: a daemonizing child, not a save
/// (its session is held until it exits or becomes the root, `EV_DAEMON`).
pub const EV_SETSID: u32 = 9;
/// A traced server wrote to a socket: its first socket write since its last fork
/// (`pid` = that fork's child), or a write that starts a replica's full sync (`pid` = the
/// child forked since, if the server has written to no socket since the fork, else 0).
/// `value`: one of `RESYNC_*`.
pub const EV_RESYNC: u32 = 16;

/// `EV_RESYNC` values: what the server's socket write was.
/// Anything but the two below (the server's first socket write after a fork).
pub const RESYNC_NONE: u64 = 0;
/// `+FULLRESYNC <replid> <offset>\r\n`: a replica's full sync starts (replication.c,
/// `replicationSetupSlaveForFullResync`; Redis 2.8+, Valkey).
pub const RESYNC_FULLRESYNC: u64 = 1;
/// `$ENDOFF:<offset> ...`: Valkey's dual-channel replication tells the replica's RDB
/// channel where the snapshot ends (`sendCurrentOffsetToReplica`, Valkey 8).
pub const RESYNC_ENDOFF: u64 = 2;
/// Event kinds on the hot ring buffer (`HOT_EVENTS`, submitted without wakeup).
/// Which measurements the `tp_btf/sys_enter` and `sys_exit` programs serve (bits of the
/// one value of `SYSCALL_PATHS`): those whose fentry path the kernel refused. Set by
/// the loader before it attaches them.
pub const SYSCALL_WRITES: u32 = 1;
pub const SYSCALL_SYNCS: u32 = 2;
pub const SYSCALL_RENAMES: u32 = 4;
pub const SYSCALL_FORKS: u32 = 8;
pub const SYSCALL_EXIT_TITLES: u32 = 16;
pub const SYSCALL_SETSID: u32 = 32;

pub const EV_COW: u32 = 10;
pub const EV_WRITE: u32 = 11;
pub const EV_FSYNC: u32 = 12;
pub const EV_DISK: u32 = 13;
pub const EV_FDATASYNC: u32 = 14;
pub const EV_SYNC_FILE_RANGE: u32 = 15;

/// The sync system calls, counted apart (`IoCounters::sync_calls` and `sync_ns` are
/// indexed by these): `fsync` and `fdatasync` wait for the data to reach the disk, while
/// `sync_file_range` (Redis's `rdb-save-incremental-fsync`) only starts writeback of a
/// range and returns, so their latencies must not be mixed.
pub const SYNC_FSYNC: usize = 0;
pub const SYNC_FDATASYNC: usize = 1;
pub const SYNC_FILE_RANGE: usize = 2;
/// Number of sync system calls counted apart.
pub const SYNC_CALLS: usize = 3;
/// The event kind of each sync call, by index.
pub const SYNC_EVENT_KINDS: [u32; SYNC_CALLS] = [EV_FSYNC, EV_FDATASYNC, EV_SYNC_FILE_RANGE];

/// The index into `IoCounters::sync_calls` of a sync event kind, or None for any other
/// kind.
pub const fn sync_index(kind: u32) -> Option<usize> {
    match kind {
        EV_FSYNC => Some(SYNC_FSYNC),
        EV_FDATASYNC => Some(SYNC_FDATASYNC),
        EV_SYNC_FILE_RANGE => Some(SYNC_FILE_RANGE),
        _ => None,
    }
}

/// Index into the per-CPU `DROPS` array: reserves that failed, per ring buffer.
pub const DROP_HOT: u32 = 0;
pub const DROP_PROC: u32 = 1;
pub const DROP_SLOTS: u32 = 2;

/// Index into the per-CPU `ERRORS` array: kernel-side failures, by kind. Each is a map
/// update that failed (the map was full, or out of memory), which would otherwise lose a
/// session, a traced process or a measurement in silence. `ERROR_NAMES` names them.
pub const ERR_TRACED: u32 = 0;
pub const ERR_SESSIONS: u32 = 1;
pub const ERR_SESSION_PREV: u32 = 2;
pub const ERR_PENDING: u32 = 3;
pub const ERR_FORK_START: u32 = 4;
pub const ERR_SYSCALL_START: u32 = 5;
pub const ERR_FILES: u32 = 6;
pub const ERR_INODE_OWNER: u32 = 7;
pub const ERR_RQ_START: u32 = 8;
pub const ERR_SLOTS: u32 = 9;
/// The map each `ERR_*` slot counts failed inserts of, by index (the names of
/// `agent-ebpf/src/maps.rs`).
pub const ERROR_NAMES: [&str; ERR_SLOTS as usize] = [
    "TRACED",
    "SESSIONS",
    "SESSION_PREV",
    "PENDING",
    "FORK_START",
    "SYSCALL_START",
    "FILES",
    "INODE_OWNER",
    "RQ_START",
];

/// `CowEvent::flags` bits.
pub const COW_FLAG_CHILD: u32 = 1; // the copy was made by the session child
pub const COW_FLAG_ZERO: u32 = 2; // a write to the shared zero page (a zero-filled allocation)

/// Values of the kernel's `DAEMON_GATE` map: which half of a daemonization was seen
/// first for a session child. The second half promotes it (see agent-ebpf `fork.rs`).
pub const GATE_SETSID: u32 = 1;
pub const GATE_PARENT_EXITED: u32 = 2;

/// Byte length of a file name kept by the kernel side (a dentry name or a rename path).
pub const NAME_LEN: usize = 64;
/// Byte length of the process title captured at `exit_group`.
pub const TITLE_LEN: usize = 64;
pub const COMM_LEN: usize = 16;

/// Slots of the kernel's `MAYBE_TRACED` pre-filter array: slot `tgid % MAYBE_TRACED_SLOTS`.
/// The kernel sizes the map with it and userspace marks slots with it, so both sides
/// must agree.
pub const MAYBE_TRACED_SLOTS: u32 = 65536;

/// Default byte size of the session ring buffer (`PROC_EVENTS`): the kernel declares the
/// map with it and userspace keeps it unless `COWTRACE_PROC_RING_BYTES` overrides it.
/// 4 MiB holds about 11,000 events (368 bytes and a header each): a 10,000-fork storm
/// on a busy 2-vCPU host lost 27,423 session events with 1 MiB, and the sessions whose
/// exits were lost stayed in `SESSIONS` until they filled it (338 forks with no session).
pub const PROC_RING_BYTES: u32 = 4 << 20;

/// `IoEvent::fd` of a block request, which has no file descriptor.
pub const NO_FD: u32 = u32::MAX;

/// `FileKey::target`: what a session child wrote to. Regular files are its `writes`;
/// pipes and sockets are what it sent (a diskless sync's RDB, Redis's child-info pipe).
pub const TARGET_FILE: u32 = 0;
pub const TARGET_PIPE: u32 = 1;
pub const TARGET_SOCKET: u32 = 2;

/// Exact copy-on-write counters. Kept in maps and updated with atomic adds,
/// so a full ring buffer never changes them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CowCounters {
    /// Write faults on present pages (`error_code & 3 == 3`): copies + reuses + zero fills.
    pub wp_faults: u64,
    /// Copies whose new page was order 0 (4 KiB).
    pub copies_4k: u64,
    /// Copies whose new page was order 9 (2 MiB on x86-64).
    pub copies_2m: u64,
    /// Copies of any other order.
    pub copies_other: u64,
    /// Bytes of all copies (`4096 << order` each). The kernel adds only the bytes of
    /// copies that are not 4 KiB (one atomic add less per copy); userspace adds
    /// `copies_4k * 4096` once, when it reads the counters (`with_4k_bytes`).
    pub copy_bytes: u64,
    /// Write faults on the shared zero page, which allocate a zeroed page.
    pub zero_fills: u64,
}
const _: () = assert!(core::mem::size_of::<CowCounters>() == 48);

impl CowCounters {
    /// All counters zero (`Default::default()` is not `const`, and BPF statics need one).
    pub const ZERO: Self = Self {
        wp_faults: 0,
        copies_4k: 0,
        copies_2m: 0,
        copies_other: 0,
        copy_bytes: 0,
        zero_fills: 0,
    };

    /// The counters as the kernel keeps them (`copy_bytes` without the 4 KiB copies) made
    /// whole: call exactly once, where userspace reads a map value or decodes an event.
    pub const fn with_4k_bytes(mut self) -> Self {
        // Saturating: bytes from a damaged record must not overflow (never panic).
        self.copy_bytes = self
            .copy_bytes
            .saturating_add(self.copies_4k.saturating_mul(4096));
        self
    }

    pub const fn copies(&self) -> u64 {
        self.copies_4k + self.copies_2m + self.copies_other
    }
    /// Faults that neither copied nor zero-filled: the page was already exclusive.
    pub const fn reuses(&self) -> u64 {
        self.wp_faults
            .saturating_sub(self.copies() + self.zero_fills)
    }
}

/// Value of the `TRACED` map, keyed by tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct TracedProc {
    pub role: u32,
    /// For a root: the tgid of its newest session child (0 when none was forked).
    pub newest_child: u32,
    /// For a child: its root's tgid.
    pub parent_tgid: u32,
    /// For a root: its newest session child while the root has written to no socket
    /// since that fork, else 0 (see `EV_RESYNC`).
    pub await_write: u32,
    /// Every COW fault of this process, inside a session or not.
    pub total: CowCounters,
    /// Every regular-file write, sync and block I/O of this process.
    pub io: IoCounters,
}
const _: () = assert!(core::mem::size_of::<TracedProc>() == 176);

/// Exact disk-write counters. Times are sums of latencies in ns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounters {
    /// write/pwrite64/writev/pwritev/pwritev2 calls on regular files, and bytes written.
    pub write_calls: u64,
    pub write_bytes: u64,
    pub write_ns: u64,
    /// Sync calls and the time spent in them, per call (index `SYNC_FSYNC`,
    /// `SYNC_FDATASYNC`, `SYNC_FILE_RANGE`).
    pub sync_calls: [u64; SYNC_CALLS],
    pub sync_ns: [u64; SYNC_CALLS],
    /// Block requests (issue to complete) for inodes this process wrote.
    pub disk_ios: u64,
    pub disk_bytes: u64,
    pub disk_ns: u64,
    /// Writes of a session child to pipes and sockets (what it sent, not disk writes),
    /// and their bytes. Zero for roots (a server's replies are not counted).
    pub sent_calls: u64,
    pub sent_bytes: u64,
}
const _: () = assert!(core::mem::size_of::<IoCounters>() == 112);

impl IoCounters {
    /// All counters zero (`Default::default()` is not `const`).
    pub const ZERO: Self = Self {
        write_calls: 0,
        write_bytes: 0,
        write_ns: 0,
        sync_calls: [0; SYNC_CALLS],
        sync_ns: [0; SYNC_CALLS],
        disk_ios: 0,
        disk_bytes: 0,
        disk_ns: 0,
        sent_calls: 0,
        sent_bytes: 0,
    };

    /// Sync calls of every kind.
    pub const fn sync_calls_total(&self) -> u64 {
        self.sync_calls[SYNC_FSYNC]
            + self.sync_calls[SYNC_FDATASYNC]
            + self.sync_calls[SYNC_FILE_RANGE]
    }

    /// Time in sync calls of every kind, ns.
    pub const fn sync_ns_total(&self) -> u64 {
        self.sync_ns[SYNC_FSYNC] + self.sync_ns[SYNC_FDATASYNC] + self.sync_ns[SYNC_FILE_RANGE]
    }
}

/// Value of the `SESSIONS` map, keyed by the child's tgid.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SessionState {
    pub parent_tgid: u32,
    /// Set to 1 when the child exits; the entry lives on until userspace reaps it.
    pub exited: u32,
    pub fork_ts_ns: u64,
    /// Copies made by the parent and charged to this session.
    pub parent: CowCounters,
    /// Copies made by the child itself.
    pub child: CowCounters,
    /// The child's file writes, syncs and the block I/O of the files it wrote.
    pub io: IoCounters,
    /// The parent's main thread (tid == tgid) in its copy faults, where the fault
    /// handler's return is seen (`do_wp_page` by fentry/fexit or kprobe/kretprobe): its
    /// copies (not zero fills) charged to this session, and nanoseconds from the
    /// handler's entry to its return summed over all of them but the last (each copy's
    /// time is added at the next one). Zero on the tracepoint path, which sees no return
    /// (userspace estimates there). Written by that thread only.
    pub main_ns: u64,
    pub main_copies: u64,
}
const _: () = assert!(core::mem::size_of::<SessionState>() == 240);

impl SessionState {
    /// All fields zero (`Default::default()` is not `const`, and BPF statics need one).
    pub const ZERO: Self = Self {
        parent_tgid: 0,
        exited: 0,
        fork_ts_ns: 0,
        parent: CowCounters::ZERO,
        child: CowCounters::ZERO,
        io: IoCounters::ZERO,
        main_ns: 0,
        main_copies: 0,
    };
}

/// Key of the `FILES` map: one file written by the child of one session.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FileKey {
    /// Session (child tgid).
    pub session: u32,
    pub tgid: u32,
    pub dev: u32,
    /// `TARGET_FILE`, `TARGET_PIPE` or `TARGET_SOCKET`.
    pub target: u32,
    pub ino: u64,
}
const _: () = assert!(core::mem::size_of::<FileKey>() == 24);

/// Value of the `FILES` map.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FileStat {
    pub bytes: u64,
    pub calls: u64,
    /// The file's name (dentry, no directory) at its first write.
    pub name: [u8; NAME_LEN],
}
const _: () = assert!(core::mem::size_of::<FileStat>() == 80);

/// Key of `INODE_OWNER`: which session last wrote an inode, so its block I/O, issued
/// later by a kworker or by `fsync`, is charged back to that session.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeKey {
    pub dev: u32,
    pub _pad: u32,
    pub ino: u64,
}
const _: () = assert!(core::mem::size_of::<InodeKey>() == 16);

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeOwner {
    pub session: u32,
    pub tgid: u32,
}
const _: () = assert!(core::mem::size_of::<InodeOwner>() == 8);

/// Kernel struct field offsets, from the running kernel's BTF (see agent/src/btf.rs),
/// set as one load-time global. The agent refuses to load if any is missing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_exit_code: u32,
    pub task_mm: u32,
    pub task_files: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub file_inode: u32,
    pub file_dentry: u32, // f_path + path.dentry
    pub dentry_name: u32, // d_name + qstr.name
    pub inode_mode: u32,
    pub inode_ino: u32,
    pub inode_sb: u32,
    pub sb_dev: u32,
    pub rq_data_len: u32,
    pub rq_bio: u32,
    pub bio_io_vec: u32,
    pub bvec_page: u32,
    pub page_mapping: u32,
    pub mapping_host: u32,
    /// `page.compound_head`: bit 0 set on a tail page of a large folio, with the head
    /// page's address in the other bits (include/linux/mm_types.h).
    pub page_compound_head: u32,
    /// `filename.name`: the kernel's copy of a path (`do_renameat2`'s arguments).
    pub filename_name: u32,
    /// A syscall's first argument in the `struct pt_regs *` a syscall function takes:
    /// `pt_regs.di` on x86-64 (`__x64_sys_*`), `pt_regs.regs[0]` on arm64
    /// (`__arm64_sys_*`).
    pub pt_regs_di: u32,
    /// `vm_fault.address`: the faulting address `do_wp_page` gets (the arm64 COW hooks).
    pub vmf_address: u32,
    /// `pt_regs.si`, `.dx`, `.r10`: a syscall's second, third and fourth arguments, and
    /// `pt_regs.orig_ax` its number (x86-64), read by the `tp_btf/sys_enter` and
    /// `sys_exit` programs (agent-ebpf/src/syscall.rs).
    pub pt_regs_si: u32,
    pub pt_regs_dx: u32,
    pub pt_regs_r10: u32,
    pub pt_regs_orig_ax: u32,
}
const _: () = assert!(core::mem::size_of::<Offsets>() == 124);

/// The last write-protect fault of a traced thread, in the `PENDING` map keyed by tid.
/// The entry lives as long as the thread and is updated in place; `active` says whether
/// the fault still waits for its page allocation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingFault {
    pub addr: u64,
    pub tgid: u32,
    /// Session (child tgid) the fault is charged to, 0 for none.
    pub session: u32,
    /// 1 when the faulting process is the session child.
    pub child_side: u32,
    /// `PENDING_WAITING` from the write-protect fault until its allocation or the
    /// thread's next fault; `PENDING_COPIED` once the allocation was a copy; else 0.
    pub active: u32,
    /// When the fault handler was entered (`bpf_ktime_get_ns`), by a parent's main
    /// thread on the paths that also see it return (`do_wp_page`); else 0.
    pub start_ns: u64,
    /// The handler time of this thread's last timed copy, not yet added to its session
    /// (`last_session`): the next timed copy adds it (agent-ebpf/src/fault.rs).
    pub last_ns: u64,
    pub last_session: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<PendingFault>() == 48);

/// `PendingFault::active`: the fault waits for its page.
pub const PENDING_WAITING: u32 = 1;
/// `PendingFault::active`: the fault's page was a copy; the handler has not returned.
pub const PENDING_COPIED: u32 = 2;

/// Event on the session ring buffer.
///
/// * `EV_FORK`: `pid` = child tgid, `ppid` = parent tgid, `tid` = forking thread.
/// * `EV_FORK_RET`: the parent's clone/fork syscall returned `pid`; `value` = latency ns.
/// * `EV_EXIT`: `pid` exited; `value` = raw wait status (`task_struct::exit_code`);
///   `ppid` = its root for a session child, else 0; `cow_proc` = its process totals,
///   `cow_parent`/`cow_child` = the session's parent/child counters for a child.
/// * `EV_EXEC`: `pid` exec'd a Redis-like binary and is now traced (auto mode).
/// * `EV_TITLE`: the process title of session child `pid`, read at `exit_group`;
///   `value` = length of the argv area (only that many bytes of `title` are argv).
/// * `EV_SETSID`: session child `pid` of root `ppid` called `setsid()`.
/// * `EV_RESYNC`: root `ppid` wrote to a socket; see `EV_RESYNC`.
/// * `EV_DAEMON`: session child `pid` is now a root: its parent `ppid` exited after it
///   called `setsid()` (a server that daemonized).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcEvent {
    pub kind: u32,
    pub pid: u32,
    pub ppid: u32,
    /// The thread that raised the event in the kernel (for `EV_FORK`, the forking
    /// thread); 0 in an event rebuilt by userspace, where it is unknown.
    pub tid: u32,
    pub ts_ns: u64,
    pub value: u64,
    pub comm: [u8; COMM_LEN],
    pub title: [u8; TITLE_LEN],
    /// `EV_EXIT`: the exiting process's own COW totals (`TracedProc::total`).
    pub cow_proc: CowCounters,
    /// `EV_EXIT` of a session child: copies made by the parent and charged to this
    /// session (`SessionState::parent`).
    pub cow_parent: CowCounters,
    /// `EV_EXIT` of a session child: copies made by the child (`SessionState::child`).
    pub cow_child: CowCounters,
    /// `EV_EXIT`: the session's I/O counters (child), or the root's process totals.
    pub io: IoCounters,
}
const _: () = assert!(core::mem::size_of::<ProcEvent>() == 368);

impl ProcEvent {
    /// An event with its comm, title and counters zero, and `tid` 0: userspace uses it to
    /// rebuild an event from map state (a lost fork or exit event), where the thread that
    /// raised it is unknown, and in tests. Nothing in userspace reads `ProcEvent::tid`.
    pub const fn new(kind: u32, pid: u32, ppid: u32, ts_ns: u64, value: u64) -> Self {
        Self {
            kind,
            pid,
            ppid,
            tid: 0,
            ts_ns,
            value,
            comm: [0; COMM_LEN],
            title: [0; TITLE_LEN],
            cow_proc: CowCounters::ZERO,
            cow_parent: CowCounters::ZERO,
            cow_child: CowCounters::ZERO,
            io: IoCounters::ZERO,
        }
    }
}

/// Event on the session ring: a session child (or root) renamed `old` to `new`
/// (`rename`, `renameat`, `renameat2`; paths as passed, truncated to NAME_LEN).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RenameEvent {
    pub kind: u32,
    pub pid: u32,
    /// Session (child tgid) or 0.
    pub session: u32,
    pub tid: u32,
    pub ts_ns: u64,
    pub old: [u8; NAME_LEN],
    pub new: [u8; NAME_LEN],
}
const _: () = assert!(core::mem::size_of::<RenameEvent>() == 152);

/// Event on the hot ring buffer: one write (`EV_WRITE`), sync (`EV_FSYNC`,
/// `EV_FDATASYNC`, `EV_SYNC_FILE_RANGE`) or block request (`EV_DISK`) of a traced process.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    /// Session (child tgid) or 0.
    pub session: u32,
    pub ts_ns: u64,
    pub latency_ns: u64,
    pub bytes: u64,
    pub ino: u64,
    pub dev: u32,
    /// The file descriptor (writes and syncs), or `NO_FD` (block requests).
    pub fd: u32,
}
const _: () = assert!(core::mem::size_of::<IoEvent>() == 56);

/// Event on the hot ring buffer: one COW copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CowEvent {
    pub kind: u32,
    pub pid: u32,
    pub tid: u32,
    pub order: u32,
    pub ts_ns: u64,
    pub addr: u64,
    /// Session (child tgid) the copy is charged to, 0 for none.
    pub session: u32,
    pub flags: u32,
}
const _: () = assert!(core::mem::size_of::<CowEvent>() == 40);

/// Why a parent copied a page (issue 15): the value of `AttribKey::id` when
/// `AttribKey::kind` is `ATTRIB_CAUSE`. The uprobes of `agent-ebpf/src/attrib.rs` set a
/// thread's current cause from their attach cookie; userspace names each id
/// (`agent/src/kernel/causes.rs`).
pub const CAUSE_NONE: u32 = 0; // the main thread before any cause probe fired
pub const CAUSE_LOOP: u32 = 1; // the event loop's own work (`beforeSleep`, client I/O)
pub const CAUSE_CRON: u32 = 2; // `serverCron`
pub const CAUSE_EXPIRE: u32 = 3; // `activeExpireCycle`
pub const CAUSE_EVICT: u32 = 4; // `performEvictions`
pub const CAUSE_DEFRAG: u32 = 5; // `activeDefragCycle`
pub const CAUSE_REHASH: u32 = 6; // `incrementallyRehash` (the cron's dict rehash)
/// Cookie of a command probe: `CAUSE_COMMAND + index` in the agent's command list.
pub const CAUSE_COMMAND: u32 = 64;
/// A copy by another thread of the server: `CAUSE_THREAD | tid` (userspace names it by
/// the thread's own name).
pub const CAUSE_THREAD: u32 = 1 << 31;

/// `AttribKey::kind`.
pub const ATTRIB_CAUSE: u32 = 0;
pub const ATTRIB_REGION: u32 = 1;
/// `AttribKey::id` for a region: no table was written yet (the copy came before the
/// agent read the server's memory map), or the address is in no row of it.
pub const REGION_UNKNOWN: u32 = 0xffff;
pub const REGION_UNMAPPED: u32 = 0xfffe;
/// Rows of a session's region table (the writable mappings of the server at fork).
pub const REGION_ROWS: usize = 64;

/// Key of the per-(session, cause) and per-(session, region) copy counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AttribKey {
    /// The session (child tgid).
    pub session: u32,
    /// `ATTRIB_CAUSE` or `ATTRIB_REGION`.
    pub kind: u32,
    /// A `CAUSE_*` value, or a row of the session's `RegionTable` (or `REGION_*`).
    pub id: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<AttribKey>() == 16);

/// The cause a server thread is working on, with the causes it interrupted (a
/// background function's uretprobe restores the one before it).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadCause {
    pub cur: u32,
    /// Entries used in `stack`.
    pub depth: u32,
    /// tgid of the thread, so the agent can delete a server's entries.
    pub tgid: u32,
    pub _pad: u32,
    pub stack: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<ThreadCause>() == 32);

/// A session's memory map at fork: `n` sorted, disjoint `[start, end)` rows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionTable {
    pub n: u32,
    pub _pad: u32,
    pub start: [u64; REGION_ROWS],
    pub end: [u64; REGION_ROWS],
}
const _: () = assert!(core::mem::size_of::<RegionTable>() == 8 + 16 * REGION_ROWS);

#[cfg(feature = "user")]
mod user {
    use super::*;
    // SAFETY: all of these are `repr(C)`, made only of integers and byte arrays, with
    // padding written out; every bit pattern is valid.
    unsafe impl aya::Pod for CowCounters {}
    unsafe impl aya::Pod for TracedProc {}
    unsafe impl aya::Pod for SessionState {}
    unsafe impl aya::Pod for PendingFault {}
    unsafe impl aya::Pod for ProcEvent {}
    unsafe impl aya::Pod for CowEvent {}
    unsafe impl aya::Pod for IoCounters {}
    unsafe impl aya::Pod for FileKey {}
    unsafe impl aya::Pod for FileStat {}
    unsafe impl aya::Pod for InodeKey {}
    unsafe impl aya::Pod for InodeOwner {}
    unsafe impl aya::Pod for Offsets {}
    unsafe impl aya::Pod for RenameEvent {}
    unsafe impl aya::Pod for IoEvent {}
    unsafe impl aya::Pod for AttribKey {}
    unsafe impl aya::Pod for ThreadCause {}
    unsafe impl aya::Pod for RegionTable {}
}
