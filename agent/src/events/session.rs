//! Fork sessions: the pure state machine that turns kernel events into session records.
//!
//! The runner feeds it decoded events, the kernel counters it samples, and what it reads
//! from /proc; it returns the records to write. No I/O here, so every rule is unit-tested.
use std::collections::{BTreeMap, HashMap, VecDeque};

use agent_common::{
    CowCounters, EV_DISK, EV_WRITE, IoCounters, IoEvent, ProcEvent, RESYNC_ENDOFF,
    RESYNC_FULLRESYNC, RESYNC_NONE, RenameEvent, SYNC_CALLS, TARGET_FILE, TARGET_SOCKET,
    sync_index,
};

use crate::{
    events::{
        classify::{TITLE_GRACE_NS, classify_title, printable, title_is_set},
        files::{absolute, resolve},
        hist::Hist,
        timeline::{Timeline, pct},
    },
    trace::schema::{
        AofFiles, CowSummary, DiskSummary, FileRow, FsyncSummary, MidSave, Record, Replication,
        Sample, SentSummary, SentTarget, SessionEnd, SessionKind, SessionStart, SyncByCall,
        SyncCallSummary, WritesSummary, split_wait_status,
    },
};

/// A file row as the kernel's `FILES` map holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelFile {
    pub ino: u64,
    pub name: String,
    pub bytes: u64,
    pub calls: u64,
    /// `TARGET_FILE`, `TARGET_PIPE` or `TARGET_SOCKET` (agent-common).
    pub target: u32,
}

/// Latency and size histograms of one session, fed from ring-buffer events.
#[derive(Debug, Clone, Default)]
pub struct IoHists {
    pub write_lat_us: Hist,
    pub write_size: Hist,
    /// Per sync call (index `SYNC_FSYNC`, `SYNC_FDATASYNC`, `SYNC_FILE_RANGE`).
    pub sync_lat_us: [Hist; SYNC_CALLS],
    pub disk_lat_us: Hist,
}

impl IoHists {
    /// Every sync call's latencies in one histogram.
    pub fn all_sync_lat_us(&self) -> Hist {
        self.sync_lat_us.iter().fold(Hist::new(), |mut all, h| {
            all.merge(h);
            all
        })
    }

    /// Fold `other` into these histograms.
    pub fn merge(&mut self, other: &IoHists) {
        self.write_lat_us.merge(&other.write_lat_us);
        self.write_size.merge(&other.write_size);
        for (all, one) in self.sync_lat_us.iter_mut().zip(&other.sync_lat_us) {
            all.merge(one);
        }
        self.disk_lat_us.merge(&other.disk_lat_us);
    }
}

/// ns to ms with two decimals, as the trace writes times in ms.
fn ms2(ns: u64) -> f64 {
    (ns as f64 / 1e4).round() / 100.0
}

/// Ended sessions whose ids are kept for the events that arrive after their end (an
/// event of the detail ring is read up to one drain after the exit on the session ring).
const RECENTLY_ENDED: usize = 1024;

/// A NUL-terminated kernel string (a rename path, a comm) as text.
pub fn c_str(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// How long an AOF rewrite that exited waits for its server to rename its file into
/// place before its `session_end` is written without it. The server does it in its cron
/// (`backgroundRewriteDoneHandler` in aof.c, called from `serverCron` at `hz`, 10 by
/// default): within 100 ms, or a second at `hz 1`.
pub const AOF_RENAME_WAIT_NS: u64 = 3_000_000_000;

/// An AOF rewrite whose child exited well, waiting for the server to rename the file.
#[derive(Debug, Clone)]
struct Finishing {
    s: Session,
    ts_ns: u64,
    status: i64,
    files: Vec<KernelFile>,
    aof: Option<AofFiles>,
}

/// Full-sync lines a server wrote to replicas before a fork (a diskless sync writes
/// them, one per replica, right before it forks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resyncs {
    pub fullresync: u64,
    pub endoff: u64,
}

impl Resyncs {
    /// Replicas served: each gets a `+FULLRESYNC`, and with Valkey's dual-channel
    /// replication its RDB channel an `$ENDOFF` (a replica that used the old `SYNC`
    /// gets no `+FULLRESYNC`).
    pub fn replicas(&self) -> u64 {
        self.fullresync.max(self.endoff)
    }
}

/// `session_start` waits this long for the fork latency (the parent's syscall exit
/// follows the fork event by microseconds; this only matters if that event was lost).
const FORK_RET_WAIT_NS: u64 = 1_000_000_000;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub fork_ts_ns: u64,
    pub kind: Option<SessionKind>,
    pub title: Option<String>,
    pub fork_us: Option<f64>,
    pub parent_rss: Option<u64>,
    pub started: bool,
    pub parent: CowCounters,
    pub child: CowCounters,
    pub timeline: Timeline,
    pub io: IoCounters,
    pub hists: IoHists,
    /// Paths of written files, from /proc/PID/fd while they were open, by inode.
    pub fd_paths: HashMap<u64, String>,
    pub renames: Vec<(String, String)>,
    /// The writer's working directory (relative names are resolved against it).
    pub cwd: Option<String>,
    /// The traced server's name (`trace::schema::SessionStart::instance`).
    pub instance: Option<String>,
    /// Set when cowtrace attached while the child was already running.
    pub mid_save: Option<MidSave>,
    /// The child called `setsid()` (`EV_SETSID`), or its server exited while it ran: a
    /// plain fork that may be a server daemonizing, whose start is held until it exits
    /// or becomes the server (`Tracker::on_daemonized`).
    pub detached: bool,
    pub orphaned: bool,
    /// The server has written to a socket since this fork (`EV_RESYNC`).
    pub post_fork_write: bool,
    /// Replicas' full-sync lines the server wrote for this fork: `+FULLRESYNC` right
    /// after it (a disk-based sync, and replicas that join it), or before it, while no
    /// other fork was pending (`+FULLRESYNC`, `$ENDOFF`: a diskless sync).
    pub resyncs_after: u64,
    pub resyncs_before: Resyncs,
    last_sample_pages: u64,
    last_sample_ts: u64,
    last_sample_io: IoCounters,
}

impl Session {
    pub fn pages(&self) -> u64 {
        (self.parent.copy_bytes + self.child.copy_bytes) / 4096
    }

    fn kind_or_fork(&self) -> SessionKind {
        match self.kind {
            // A BGSAVE child the server announced to a replica with `+FULLRESYNC`
            // serves a disk-based sync (its title is the same).
            Some(SessionKind::RdbBgsave) if self.resyncs_after > 0 => SessionKind::RdbReplica,
            k => k.unwrap_or(SessionKind::Fork),
        }
    }

    /// Its kind as far as it is known (a disk-based replica sync is `rdb-replica`).
    pub fn effective_kind(&self) -> Option<SessionKind> {
        self.kind.map(|_| self.kind_or_fork())
    }

    /// How this session serves replicas, if it does.
    pub fn replication(&self) -> Option<Replication> {
        match (self.kind?, self.resyncs_after) {
            (SessionKind::RdbBgsave, n) if n > 0 => Some(Replication {
                target: "disk".into(),
                replicas: Some(n),
            }),
            (SessionKind::RdbReplica, _) => {
                let n = self.resyncs_before.replicas();
                Some(Replication {
                    target: "socket".into(),
                    replicas: (n > 0).then_some(n),
                })
            }
            _ => None,
        }
    }

    /// An RDB child whose server has not written to a socket since the fork may still
    /// be announced to a replica (disk-based syncs write `+FULLRESYNC` right after the
    /// fork): its start waits for that write, at most [`FORK_RET_WAIT_NS`].
    fn awaits_resync(&self, now_ns: u64) -> bool {
        self.kind == Some(SessionKind::RdbBgsave)
            && !self.post_fork_write
            && self.mid_save.is_none()
            && now_ns.saturating_sub(self.fork_ts_ns) <= FORK_RET_WAIT_NS
    }

    /// A plain fork that detached or lost its server may be the server itself, after
    /// `daemonize()`: its start waits for its exit (or its end as a session).
    fn maybe_daemon(&self) -> bool {
        (self.detached || self.orphaned) && self.kind == Some(SessionKind::Fork)
    }

    fn start_record(&mut self) -> Record {
        self.started = true;
        Record::SessionStart(SessionStart {
            session: self.id,
            parent_pid: self.parent_pid,
            child_pid: self.child_pid,
            kind: self.kind_or_fork(),
            ts_ns: self.fork_ts_ns,
            fork_us: self.fork_us,
            title: self.title.clone(),
            parent_rss_bytes: self.parent_rss,
            instance: self.instance.clone(),
            attached_mid_save: self.mid_save.clone(),
            replication: self.replication(),
            slow_fork: None,
        })
    }

    fn end_record(&self, ts_ns: u64, status: i64, complete: bool, files: &[KernelFile]) -> Record {
        let (exit_code, exit_signal) = if complete {
            split_wait_status(status)
        } else {
            (None, None)
        };
        let mut rows: Vec<FileRow> = files
            .iter()
            .filter(|f| f.target == TARGET_FILE)
            .map(|f| {
                let (path, renamed_to) = resolve(
                    &f.name,
                    self.fd_paths.get(&f.ino).map(String::as_str),
                    &self.renames,
                    self.cwd.as_deref(),
                );
                FileRow {
                    path,
                    renamed_to,
                    bytes: f.bytes,
                    calls: f.calls,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
        let io = &self.io;
        Record::SessionEnd(Box::new(SessionEnd {
            session: self.id,
            parent_pid: self.parent_pid,
            child_pid: self.child_pid,
            kind: self.kind_or_fork(),
            ts_ns,
            duration_ms: ts_ns.saturating_sub(self.fork_ts_ns) / 1_000_000,
            exit_code,
            exit_signal,
            complete,
            cow: self.cow_summary(),
            writes: WritesSummary {
                calls: io.write_calls,
                bytes: io.write_bytes,
                files: rows,
                latency_us: self.hists.write_lat_us.quantiles(),
                size_bytes: self.hists.write_size.quantiles(),
            },
            fsync: self.sync_summary(),
            disk: DiskSummary {
                bytes: io.disk_bytes,
                ios: io.disk_ios,
                latency_us: self.hists.disk_lat_us.quantiles(),
            },
            instance: self.instance.clone(),
            attached_mid_save: self.mid_save.clone(),
            sent: self.sent_summary(files),
            replication: self.replication(),
            memory: None,
            oom_kill: None,
            projection_check: None,
            aof: None,
            causes: None,
            regions: None,
            stall: None,
            slow_fork: None,
            main_thread: None,
        }))
    }

    /// The `sent` object, when the child wrote to a pipe or socket.
    fn sent_summary(&self, files: &[KernelFile]) -> Option<SentSummary> {
        if self.io.sent_calls == 0 {
            return None;
        }
        let mut targets: Vec<SentTarget> = files
            .iter()
            .filter(|f| f.target != TARGET_FILE)
            .map(|f| {
                let socket = f.target == TARGET_SOCKET;
                SentTarget {
                    kind: if socket { "socket" } else { "pipe" }.into(),
                    ino: f.ino,
                    protocol: (socket && !f.name.is_empty()).then(|| f.name.clone()),
                    bytes: f.bytes,
                    calls: f.calls,
                }
            })
            .collect();
        targets.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ino.cmp(&b.ino)));
        let peers = self
            .replication()
            .filter(|r| r.target == "socket")
            .and_then(|r| r.replicas);
        Some(SentSummary {
            calls: self.io.sent_calls,
            bytes: self.io.sent_bytes,
            peers,
            targets,
        })
    }

    /// The `fsync` object: every sync call together, and per call.
    fn sync_summary(&self) -> FsyncSummary {
        let (io, h) = (&self.io, &self.hists);
        let call = |i: usize| SyncCallSummary {
            calls: io.sync_calls[i],
            total_ms: ms2(io.sync_ns[i]),
            latency_us: h.sync_lat_us[i].quantiles(),
        };
        FsyncSummary {
            calls: io.sync_calls_total(),
            total_ms: ms2(io.sync_ns_total()),
            latency_us: h.all_sync_lat_us().quantiles(),
            by_call: Some(SyncByCall {
                fsync: call(0),
                fdatasync: call(1),
                sync_file_range: call(2),
            }),
        }
    }

    /// The `cow` object; a session attached mid-save has its share of the parent's RSS
    /// from the estimate plus what was counted.
    fn cow_summary(&self) -> CowSummary {
        let mut c = self
            .timeline
            .summary(&self.parent, &self.child, self.parent_rss);
        if let Some(est) = self.mid_save.as_ref().and_then(|m| m.cow_bytes_estimate) {
            c.pct_of_parent_rss = pct(c.bytes.saturating_add(est), self.parent_rss);
        }
        c
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    next_id: u64,
    live: BTreeMap<u32, Session>,
    /// Session ids of the last [`RECENTLY_ENDED`] ended sessions by child pid, and the
    /// order they ended in (oldest first), so late events keep their session.
    ended_ids: HashMap<u32, u64>,
    ended_order: VecDeque<u32>,
    /// AOF rewrites that exited, waiting for their server's rename (by child pid).
    finishing: BTreeMap<u32, Finishing>,
    /// Full-sync lines each server wrote that no fork has taken yet (by server pid).
    pending_resyncs: HashMap<u32, Resyncs>,
    /// Sessions ended so far.
    pub ended: u64,
    /// Sessions started (ids handed out) so far.
    pub opened: u64,
}

impl Tracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn live(&self) -> impl Iterator<Item = &Session> {
        self.live.values()
    }

    pub fn get(&self, child: u32) -> Option<&Session> {
        self.live.get(&child)
    }

    /// The session id of child `child`, live or recently ended: the kernel charged an
    /// event to it, even when the event is read after the session's end.
    pub fn session_id(&self, child: u32) -> Option<u64> {
        match self.live.get(&child) {
            Some(s) => Some(s.id),
            None => self.ended_ids.get(&child).copied(),
        }
    }

    /// Keep the id of a session that ends, for its late events.
    fn remember_ended(&mut self, child: u32, id: u64) {
        if self.ended_ids.insert(child, id).is_none() {
            self.ended_order.push_back(child);
        }
        while self.ended_order.len() > RECENTLY_ENDED {
            if let Some(old) = self.ended_order.pop_front() {
                self.ended_ids.remove(&old);
            }
        }
    }

    /// `EV_FORK`: a traced parent forked `ev.pid`. A second fork of a live child (its
    /// session was rebuilt from the kernel map while its own event was still queued)
    /// opens nothing.
    pub fn on_fork(&mut self, ev: &ProcEvent) {
        if self
            .live
            .get(&ev.pid)
            .is_some_and(|s| s.parent_pid == ev.ppid)
        {
            return;
        }
        self.next_id += 1;
        self.opened += 1;
        let s = Session {
            id: self.next_id,
            parent_pid: ev.ppid,
            child_pid: ev.pid,
            fork_ts_ns: ev.ts_ns,
            kind: None,
            title: None,
            fork_us: None,
            parent_rss: None,
            started: false,
            parent: CowCounters::default(),
            child: CowCounters::default(),
            timeline: Timeline::new(ev.ts_ns),
            io: IoCounters::default(),
            hists: IoHists::default(),
            fd_paths: HashMap::new(),
            renames: Vec::new(),
            cwd: None,
            instance: None,
            mid_save: None,
            detached: false,
            orphaned: false,
            post_fork_write: false,
            resyncs_after: 0,
            resyncs_before: self.pending_resyncs.remove(&ev.ppid).unwrap_or_default(),
            last_sample_pages: 0,
            last_sample_ts: ev.ts_ns,
            last_sample_io: IoCounters::default(),
        };
        // A pid can only be reused after its previous owner exited, and the exit event
        // came first on the same ring, so nothing live is overwritten here.
        self.live.insert(ev.pid, s);
    }

    /// `EV_RESYNC`: server `ev.ppid` wrote to a socket: for the first time since it
    /// forked `ev.pid` (when not 0), and (`ev.value`) whether it was a replica's
    /// full-sync line. A `+FULLRESYNC` right after a fork announces that fork's RDB to a
    /// replica (a disk-based sync); one with no fork pending goes to a disk-based sync
    /// that runs (a replica joining it), else to the server's next fork (a diskless sync
    /// writes them before it forks).
    pub fn on_resync(&mut self, ev: &ProcEvent) {
        let (root, child, what) = (ev.ppid, ev.pid, ev.value);
        if child != 0 {
            if let Some(s) = self.live.get_mut(&child)
                && s.parent_pid == root
            {
                s.post_fork_write = true;
                if what == RESYNC_FULLRESYNC {
                    s.resyncs_after += 1;
                }
            }
            return;
        }
        if what == RESYNC_NONE {
            return;
        }
        if what == RESYNC_FULLRESYNC
            && let Some(s) = self
                .live
                .values_mut()
                .rev()
                .find(|s| s.parent_pid == root && s.resyncs_after > 0)
        {
            s.resyncs_after += 1;
            return;
        }
        let p = self.pending_resyncs.entry(root).or_default();
        match what {
            RESYNC_FULLRESYNC => p.fullresync += 1,
            RESYNC_ENDOFF => p.endoff += 1,
            _ => {}
        }
    }

    /// `EV_SETSID`: the child of this session called `setsid()`.
    pub fn on_setsid(&mut self, child: u32) {
        if let Some(s) = self.live.get_mut(&child) {
            s.detached = true;
        }
    }

    /// Traced server `root` exited: its children that live on may be the server
    /// itself, daemonized.
    /// Its AOF rewrites waiting for its rename end now.
    pub fn on_root_exit(&mut self, root: u32) -> Vec<Record> {
        self.pending_resyncs.remove(&root);
        for s in self.live.values_mut().filter(|s| s.parent_pid == root) {
            s.orphaned = true;
        }
        self.release_finishing(None, Some(root))
    }

    /// `EV_DAEMON`: the child of this session called `setsid()` and outlived its
    /// parent: it is the server, daemonized, and its fork was no session. The session
    /// goes without a record, and gives its number back when it was the newest. A start
    /// already written (only if the child waited longer than the title grace before it
    /// detached) is closed as incomplete.
    pub fn on_daemonized(&mut self, child: u32, now_ns: u64) -> Vec<Record> {
        let Some(s) = self.live.remove(&child) else {
            return Vec::new();
        };
        if s.started {
            self.ended += 1;
            self.remember_ended(child, s.id);
            return vec![s.end_record(now_ns, -1, false, &[])];
        }
        if s.id == self.next_id {
            self.next_id -= 1;
        }
        self.opened -= 1;
        Vec::new()
    }

    /// `EV_FORK_RET`: the parent's fork syscall returned `ev.pid` after `ev.value` ns.
    pub fn on_fork_ret(&mut self, ev: &ProcEvent) {
        if let Some(s) = self.live.get_mut(&ev.pid)
            && s.parent_pid == ev.ppid
        {
            s.fork_us = Some((ev.value as f64 / 100.0).round() / 10.0);
        }
    }

    /// Name the session by its server (`procfs::instance_name`).
    pub fn set_instance(&mut self, child: u32, instance: String) {
        if let Some(s) = self.live.get_mut(&child) {
            s.instance.get_or_insert(instance);
        }
    }

    /// Open the session of a child that was already running when cowtrace started
    /// (`ev` is its fork rebuilt from /proc), with what it had done before.
    pub fn on_attached_mid_save(&mut self, ev: &ProcEvent, mid: MidSave) {
        self.on_fork(ev);
        if let Some(s) = self.live.get_mut(&ev.pid) {
            s.mid_save = Some(mid);
        }
    }

    pub fn set_cwd(&mut self, child: u32, cwd: String) {
        if let Some(s) = self.live.get_mut(&child) {
            s.cwd.get_or_insert(cwd);
        }
    }

    /// A write, sync or block request charged to a session: feeds its histograms.
    pub fn on_io(&mut self, ev: &IoEvent) {
        let Some(s) = self.live.get_mut(&ev.session) else {
            return;
        };
        let us = ev.latency_ns / 1000;
        match ev.kind {
            EV_WRITE => {
                s.hists.write_lat_us.record(us);
                s.hists.write_size.record(ev.bytes);
            }
            EV_DISK => s.hists.disk_lat_us.record(us),
            k => {
                if let Some(i) = sync_index(k) {
                    s.hists.sync_lat_us[i].record(us);
                }
            }
        }
    }

    /// True when the path of `ino` written by `session` is not known yet.
    pub fn wants_fd_path(&self, session: u32, ino: u64) -> bool {
        self.live
            .get(&session)
            .is_some_and(|s| !s.fd_paths.contains_key(&ino))
    }

    pub fn note_fd_path(&mut self, session: u32, ino: u64, path: String) {
        if let Some(s) = self.live.get_mut(&session) {
            s.fd_paths.entry(ino).or_insert(path);
        }
    }

    pub fn on_rename(&mut self, ev: &RenameEvent) {
        if let Some(s) = self.live.get_mut(&ev.session) {
            s.renames.push((c_str(&ev.old), c_str(&ev.new)));
        }
    }

    pub fn set_parent_rss(&mut self, child: u32, bytes: u64) {
        if let Some(s) = self.live.get_mut(&child) {
            s.parent_rss.get_or_insert(bytes);
        }
    }

    /// Children that still need a title (the runner reads their /proc cmdline).
    pub fn unclassified(&self) -> Vec<(u32, u32)> {
        self.live
            .values()
            .filter(|s| s.kind.is_none())
            .map(|s| (s.child_pid, s.parent_pid))
            .collect()
    }

    /// What /proc says the child's and parent's command lines are, at `now_ns`.
    pub fn observe_cmdline(
        &mut self,
        child: u32,
        child_cmd: &[u8],
        parent_cmd: &[u8],
        now_ns: u64,
    ) {
        let Some(s) = self.live.get_mut(&child) else {
            return;
        };
        if s.kind.is_some() {
            return;
        }
        let late = now_ns.saturating_sub(s.fork_ts_ns) > TITLE_GRACE_NS;
        if title_is_set(child_cmd, parent_cmd) {
            let kind = classify_title(child_cmd);
            // Redis's setproctitle() clears the argv area, then copies the new title in
            // (setproctitle.c), so a read at that moment sees an empty or cut title:
            // before the grace period ends, only a title that names a save is final.
            if kind != SessionKind::Fork || late {
                s.kind = Some(kind);
                s.title = Some(printable(child_cmd));
            }
        } else if late {
            s.kind = Some(SessionKind::Fork);
        }
    }

    /// `EV_TITLE`: the kernel read the child's title as it called `exit_group`.
    pub fn on_title(&mut self, ev: &ProcEvent, parent_cmd: Option<&[u8]>) {
        let Some(s) = self.live.get_mut(&ev.pid) else {
            return;
        };
        if s.kind.is_some() {
            return;
        }
        let len = (ev.value as usize).min(ev.title.len());
        let title = &ev.title[..len];
        let kind = classify_title(title);
        // The kernel read at most 64 bytes: compare with as much of the parent's cmdline.
        let own = parent_cmd.is_none_or(|p| title_is_set(title, &p[..p.len().min(len)]));
        if kind != SessionKind::Fork || own {
            s.title = Some(printable(title));
        }
        s.kind = Some(kind);
    }

    /// Exact counters read from the kernel's `SESSIONS` map at `ts_ns`.
    pub fn on_counters(
        &mut self,
        child: u32,
        ts_ns: u64,
        parent: CowCounters,
        child_c: CowCounters,
        io: IoCounters,
    ) {
        if let Some(s) = self.live.get_mut(&child) {
            s.parent = parent;
            s.child = child_c;
            s.io = io;
            let pages = s.pages();
            s.timeline.observe(ts_ns, pages);
        }
    }

    /// `session_start` records that are ready: the kind is known and so is the fork
    /// latency (or it is overdue).
    pub fn ready_starts(&mut self, now_ns: u64) -> Vec<Record> {
        let mut out = Vec::new();
        for s in self.live.values_mut() {
            if !s.started
                && s.kind.is_some()
                && !s.maybe_daemon()
                && !s.awaits_resync(now_ns)
                && (s.fork_us.is_some() || now_ns.saturating_sub(s.fork_ts_ns) > FORK_RET_WAIT_NS)
            {
                out.push(s.start_record());
            }
        }
        out
    }

    /// One `sample` record per started live session.
    pub fn samples(&mut self, now_ns: u64) -> Vec<Record> {
        let mut out = Vec::new();
        for s in self.live.values_mut().filter(|s| s.started) {
            let pages = s.pages();
            let delta = pages.saturating_sub(s.last_sample_pages);
            let dt = now_ns.saturating_sub(s.last_sample_ts).max(1);
            out.push(Record::Sample(Sample {
                session: s.id,
                instance: s.instance.clone(),
                ts_ns: now_ns,
                elapsed_ms: now_ns.saturating_sub(s.fork_ts_ns) / 1_000_000,
                cow_pages: pages,
                cow_bytes: s.parent.copy_bytes + s.child.copy_bytes,
                parent_pages: s.parent.copy_bytes / 4096,
                child_pages: s.child.copy_bytes / 4096,
                cow_pages_delta: delta,
                cow_pages_per_s: (delta as f64 * 1e9 / dt as f64).round(),
                write_bytes: s
                    .io
                    .write_bytes
                    .saturating_sub(s.last_sample_io.write_bytes),
                disk_bytes: s.io.disk_bytes.saturating_sub(s.last_sample_io.disk_bytes),
                projection: None,
                sent_bytes: (s.io.sent_bytes > 0)
                    .then(|| s.io.sent_bytes.saturating_sub(s.last_sample_io.sent_bytes)),
                stall: None,
            }));
            s.last_sample_pages = pages;
            s.last_sample_ts = now_ns;
            s.last_sample_io = s.io;
        }
        out
    }

    /// `EV_EXIT` of a session child: its final counters travel in the event; `files`
    /// are its rows of the kernel's `FILES` map.
    /// Returns the records to write (a late `session_start`, then `session_end`).
    pub fn on_exit(&mut self, ev: &ProcEvent, files: &[KernelFile]) -> Vec<Record> {
        let Some(mut s) = self.live.remove(&ev.pid) else {
            return Vec::new();
        };
        s.parent = ev.cow_parent;
        s.child = ev.cow_child;
        s.io = ev.io;
        let pages = s.pages();
        s.timeline.observe(ev.ts_ns, pages);
        s.kind.get_or_insert(SessionKind::Fork);
        let mut out = Vec::new();
        if !s.started {
            out.push(s.start_record());
        }
        let status = ev.value as u32 as i32 as i64;
        self.remember_ended(s.child_pid, s.id);
        if s.kind == Some(SessionKind::AofRewrite) && status == 0 {
            // Its file is not in place yet: the server renames it when it reaps the
            // child (`on_parent_rename`).
            self.finishing.insert(
                s.child_pid,
                Finishing {
                    s,
                    ts_ns: ev.ts_ns,
                    status,
                    files: files.to_vec(),
                    aof: None,
                },
            );
            return out;
        }
        out.push(s.end_record(ev.ts_ns, status, true, files));
        self.ended += 1;
        out
    }

    /// A traced server renamed `old` to `new` (paths as it passed them). The rename of
    /// the file an AOF rewrite's child left (`temp-rewriteaof-bg-PID.aof`) names the new
    /// base file; the next rename to a `.manifest` names the manifest, and the session
    /// ends with both.
    pub fn on_parent_rename(&mut self, root: u32, old: &str, new: &str) -> Vec<Record> {
        let mut done = Vec::new();
        for (&child, f) in self.finishing.iter_mut() {
            if f.s.parent_pid != root {
                continue;
            }
            let cwd = f.s.cwd.clone();
            let cwd = cwd.as_deref();
            match &mut f.aof {
                None => {
                    let old_abs = absolute(old, cwd);
                    let hit = f.files.iter().any(|k| {
                        let fd = f.s.fd_paths.get(&k.ino).map(String::as_str);
                        let (path, renamed) = resolve(&k.name, fd, &f.s.renames, cwd);
                        renamed.unwrap_or(path) == old_abs
                    });
                    if hit {
                        f.s.renames.push((old.to_string(), new.to_string()));
                        f.aof = Some(AofFiles {
                            base: absolute(new, cwd),
                            manifest: None,
                        });
                    }
                }
                Some(aof) if new.ends_with(".manifest") => {
                    aof.manifest = Some(absolute(new, cwd));
                    done.push(child);
                }
                Some(_) => {}
            }
        }
        done.into_iter().filter_map(|c| self.release(c)).collect()
    }

    /// AOF rewrites that waited long enough for their server's rename (`now_ns`), or
    /// all of those of `root` (its server exited), or all (`None`, `None`: the run ends).
    pub fn release_finishing(&mut self, now_ns: Option<u64>, root: Option<u32>) -> Vec<Record> {
        let due: Vec<u32> = self
            .finishing
            .iter()
            .filter(|(_, f)| {
                root.is_none_or(|r| f.s.parent_pid == r)
                    && now_ns.is_none_or(|n| n.saturating_sub(f.ts_ns) > AOF_RENAME_WAIT_NS)
            })
            .map(|(&c, _)| c)
            .collect();
        due.into_iter().filter_map(|c| self.release(c)).collect()
    }

    fn release(&mut self, child: u32) -> Option<Record> {
        let f = self.finishing.remove(&child)?;
        let mut rec = f.s.end_record(f.ts_ns, f.status, true, &f.files);
        if let Record::SessionEnd(e) = &mut rec {
            e.aof = f.aof;
        }
        self.ended += 1;
        Some(rec)
    }

    /// End of the run: close every live session as incomplete. `files_of` gives each
    /// session's rows of the kernel's `FILES` map.
    pub fn finish(
        &mut self,
        now_ns: u64,
        mut files_of: impl FnMut(u32) -> Vec<KernelFile>,
    ) -> Vec<Record> {
        let mut out = self.release_finishing(None, None);
        for (pid, mut s) in std::mem::take(&mut self.live) {
            s.kind.get_or_insert(SessionKind::Fork);
            if !s.started {
                out.push(s.start_record());
            }
            out.push(s.end_record(now_ns, -1, false, &files_of(pid)));
            self.ended += 1;
            self.remember_ended(pid, s.id);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::{
        EV_EXIT, EV_FDATASYNC, EV_FORK, EV_FORK_RET, EV_FSYNC, EV_RESYNC, EV_SYNC_FILE_RANGE,
        EV_TITLE,
    };

    fn ev(kind: u32, pid: u32, ppid: u32, ts: u64, value: u64) -> ProcEvent {
        ProcEvent::new(kind, pid, ppid, ts, value)
    }

    fn title(t: &[u8]) -> [u8; 64] {
        let mut b = [0u8; 64];
        b[..t.len()].copy_from_slice(t);
        b
    }

    #[test]
    fn bgsave_session_life() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 200, 100, 1_000, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 200, 100, 1_500, 1_234_567));
        // Title not set yet: nothing to start.
        t.observe_cmdline(200, b"redis-server *:6379", b"redis-server *:6379", 2_000);
        assert!(t.ready_starts(2_000).is_empty());
        t.observe_cmdline(
            200,
            b"redis-rdb-bgsave *:6379",
            b"redis-server *:6379",
            3_000,
        );
        // An RDB child's start waits for its server's first socket write.
        assert!(t.ready_starts(3_000).is_empty());
        t.on_resync(&ev(EV_RESYNC, 200, 100, 2_500, RESYNC_NONE));
        t.set_parent_rss(200, 1 << 30);
        let starts = t.ready_starts(3_000);
        assert_eq!(starts.len(), 1);
        let Record::SessionStart(s) = &starts[0] else {
            panic!()
        };
        assert_eq!(
            (s.session, s.parent_pid, s.child_pid, s.kind),
            (1, 100, 200, SessionKind::RdbBgsave)
        );
        assert_eq!(s.fork_us, Some(1234.6));
        assert!(t.ready_starts(4_000).is_empty(), "started once");

        let mut exit = ev(EV_EXIT, 200, 100, 2_000_001_000, 0);
        exit.cow_parent = CowCounters {
            copies_4k: 10,
            copy_bytes: 40960,
            wp_faults: 12,
            ..Default::default()
        };
        exit.cow_child = CowCounters {
            copies_4k: 2,
            copy_bytes: 8192,
            wp_faults: 2,
            ..Default::default()
        };
        let files = [KernelFile {
            ino: 5,
            name: "temp-200.rdb".into(),
            bytes: 100,
            calls: 2,
            target: 0,
        }];
        exit.io = IoCounters {
            write_calls: 2,
            write_bytes: 100,
            sync_calls: [1, 0, 15],
            sync_ns: [2_000_000, 0, 30_000],
            disk_bytes: 4096,
            disk_ios: 1,
            ..Default::default()
        };
        let mut rn = RenameEvent {
            kind: 6,
            pid: 200,
            session: 200,
            tid: 200,
            ts_ns: 9,
            old: [0; 64],
            new: [0; 64],
        };
        rn.old[..12].copy_from_slice(b"temp-200.rdb");
        rn.new[..8].copy_from_slice(b"dump.rdb");
        t.on_rename(&rn);
        t.set_cwd(200, "/data".into());
        let out = t.on_exit(&exit, &files);
        assert_eq!(out.len(), 1);
        let Record::SessionEnd(e) = &out[0] else {
            panic!()
        };
        assert_eq!(
            (e.exit_code, e.exit_signal, e.duration_ms),
            (Some(0), None, 2000)
        );
        assert_eq!(
            (
                e.cow.pages,
                e.cow.parent_pages,
                e.cow.child_pages,
                e.cow.reuse_faults
            ),
            (12, 10, 2, 2)
        );
        assert_eq!(e.cow.pct_of_parent_rss, Some(0.0));
        assert_eq!(
            (
                e.writes.calls,
                e.writes.bytes,
                e.fsync.calls,
                e.disk.bytes,
                e.disk.ios
            ),
            (2, 100, 16, 4096, 1)
        );
        assert_eq!(e.fsync.calls_by_call(), Some([1, 0, 15]));
        assert_eq!(e.fsync.total_ms, 2.03);
        let by = e.fsync.by_call.as_ref().unwrap();
        assert_eq!(
            (by.fsync.total_ms, by.sync_file_range.total_ms),
            (2.0, 0.03)
        );
        assert_eq!(e.writes.files[0].path, "/data/temp-200.rdb");
        assert_eq!(
            e.writes.files[0].renamed_to.as_deref(),
            Some("/data/dump.rdb")
        );
        assert_eq!(t.live().count(), 0);
        assert_eq!((t.opened, t.ended), (1, 1));
    }

    #[test]
    fn io_events_feed_the_session_histograms() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 7, 6, 0, 0));
        let w = |kind, lat, bytes| IoEvent {
            kind,
            session: 7,
            latency_ns: lat,
            bytes,
            ..Default::default()
        };
        t.on_io(&w(EV_WRITE, 5_000, 8192));
        t.on_io(&w(EV_WRITE, 7_000, 4096));
        t.on_io(&w(EV_FSYNC, 2_000_000, 0));
        t.on_io(&w(EV_FDATASYNC, 1_000_000, 0));
        t.on_io(&w(EV_SYNC_FILE_RANGE, 3_000, 0));
        t.on_io(&w(EV_SYNC_FILE_RANGE, 4_000, 0));
        t.on_io(&w(EV_DISK, 300_000, 65536));
        t.on_io(&IoEvent {
            session: 99,
            ..w(EV_WRITE, 1, 1)
        }); // not a live session
        let s = t.get(7).unwrap();
        assert_eq!(
            (
                s.hists.write_lat_us.len(),
                s.hists.sync_lat_us.each_ref().map(Hist::len),
                s.hists.disk_lat_us.len()
            ),
            (2, [1, 1, 2], 1)
        );
        assert_eq!(s.hists.all_sync_lat_us().len(), 4);
        assert_eq!(s.hists.sync_lat_us[2].max(), 4);
        assert_eq!(s.hists.write_size.quantiles().max, 8192);
        assert!(t.wants_fd_path(7, 1));
        t.note_fd_path(7, 1, "/x".into());
        assert!(!t.wants_fd_path(7, 1));
    }

    #[test]
    fn title_caught_while_redis_rewrites_it_is_read_again() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 7, 6, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 7, 6, 10, 50_000));
        let parent = b"redis-server *:6379\0";
        // Cleared, then half copied: neither is final within the grace period.
        t.observe_cmdline(7, &[0; 20], parent, 1_000);
        t.observe_cmdline(7, b"redis-rdb-bgs\0\0\0\0\0\0\0", parent, 2_000);
        assert!(t.ready_starts(2_000).is_empty());
        t.observe_cmdline(7, b"redis-rdb-bgsave *:6379\0", parent, 3_000);
        t.on_resync(&ev(EV_RESYNC, 7, 6, 3_000, RESYNC_NONE));
        let Record::SessionStart(s) = &t.ready_starts(3_000)[0] else {
            panic!()
        };
        assert_eq!(s.kind, SessionKind::RdbBgsave);
    }

    #[test]
    fn child_that_never_retitles_is_a_plain_fork() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 7, 6, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 7, 6, 10, 50_000));
        t.observe_cmdline(7, b"cowload", b"cowload", 1_000);
        assert!(t.ready_starts(1_000).is_empty());
        t.observe_cmdline(7, b"cowload", b"cowload", TITLE_GRACE_NS + 1);
        let Record::SessionStart(s) = &t.ready_starts(TITLE_GRACE_NS + 1)[0] else {
            panic!()
        };
        assert_eq!(s.kind, SessionKind::Fork);
    }

    #[test]
    fn short_child_is_classified_from_the_kernel_title_and_killed_status() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 9, 8, 0, 0));
        let mut te = ev(EV_TITLE, 9, 8, 5, 0);
        te.title = title(b"redis-aof-rewrite *:1");
        te.value = 21;
        t.on_title(&te, None);
        let out = t.on_exit(&ev(EV_EXIT, 9, 8, 10, 9), &[]);
        assert_eq!(out.len(), 2, "start then end");
        let Record::SessionStart(s) = &out[0] else {
            panic!()
        };
        assert_eq!(s.kind, SessionKind::AofRewrite);
        assert_eq!(s.title.as_deref(), Some("redis-aof-rewrite *:1"));
        assert_eq!(s.fork_us, None);
        let Record::SessionEnd(e) = &out[1] else {
            panic!()
        };
        assert_eq!((e.exit_code, e.exit_signal), (None, Some(9)));
    }

    #[test]
    fn kernel_title_is_cut_at_the_argv_length_and_compared_with_the_parent() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 9, 8, 0, 0));
        let mut te = ev(EV_TITLE, 9, 8, 5, 0);
        // argv "python3 t.py" (13 bytes with NULs) followed by the environment.
        te.title = title(b"python3\0t.py\0HOME=/root\0");
        te.value = 13;
        t.on_title(&te, Some(b"python3\0t.py\0"));
        let Record::SessionStart(s) = &t.on_exit(&ev(EV_EXIT, 9, 8, 10, 0), &[])[0] else {
            panic!()
        };
        assert_eq!((s.kind, s.title.as_deref()), (SessionKind::Fork, None));
    }

    #[test]
    fn events_read_after_the_end_keep_their_session() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 100, 0));
        t.on_fork(&ev(EV_FORK, 6, 4, 200, 0));
        assert_eq!((t.session_id(5), t.session_id(6)), (Some(1), Some(2)));
        t.on_exit(&ev(EV_EXIT, 5, 4, 300, 0), &[]);
        t.finish(400, |_| Vec::new());
        assert_eq!(t.live().count(), 0);
        assert_eq!((t.session_id(5), t.session_id(6)), (Some(1), Some(2)));
        assert_eq!(t.session_id(7), None, "never a session");
        // A reused pid is the new session while it lives.
        t.on_fork(&ev(EV_FORK, 5, 4, 500, 0));
        assert_eq!(t.session_id(5), Some(3));
        // Only the newest ones are kept.
        for pid in 1000..1000 + RECENTLY_ENDED as u32 {
            t.on_fork(&ev(EV_FORK, pid, 4, 600, 0));
            t.on_exit(&ev(EV_EXIT, pid, 4, 700, 0), &[]);
        }
        assert_eq!(t.session_id(6), None, "forgotten");
        assert!(t.session_id(1000).is_some());
        assert_eq!(t.session_id(5), Some(3), "still live");
    }

    #[test]
    fn a_daemonizing_fork_is_no_session_in_either_order() {
        // The parent exits first: the plain fork is held, then dropped.
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
        assert!(t.on_root_exit(4).is_empty());
        t.observe_cmdline(5, b"redis-server", b"", TITLE_GRACE_NS + 1);
        assert!(t.ready_starts(2 * FORK_RET_WAIT_NS).is_empty(), "held");
        assert!(t.on_daemonized(5, 3 * FORK_RET_WAIT_NS).is_empty());
        assert_eq!((t.opened, t.live().count(), t.session_id(5)), (0, 0, None));
        // The server's own save is session 1.
        t.on_fork(&ev(EV_FORK, 6, 5, 10, 0));
        assert_eq!(t.session_id(6), Some(1));

        // setsid() first, while the parent still runs.
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_setsid(5);
        t.observe_cmdline(5, b"x", b"x", TITLE_GRACE_NS + 1);
        assert!(t.ready_starts(2 * FORK_RET_WAIT_NS).is_empty(), "held");
        assert!(t.on_daemonized(5, 1).is_empty());
        assert_eq!(t.opened, 0);
    }

    #[test]
    fn a_detached_child_that_exits_is_a_plain_fork_and_saves_are_never_held() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_setsid(5);
        t.observe_cmdline(5, b"x", b"x", TITLE_GRACE_NS + 1);
        let out = t.on_exit(&ev(EV_EXIT, 5, 4, 10, 0), &[]);
        let Record::SessionStart(s) = &out[0] else {
            panic!()
        };
        assert_eq!((s.session, s.kind), (1, SessionKind::Fork));
        // A save whose server was killed is not held.
        t.on_fork(&ev(EV_FORK, 7, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 7, 4, 1, 1000));
        t.observe_cmdline(7, b"redis-rdb-bgsave", b"redis-server", 2);
        t.on_resync(&ev(EV_RESYNC, 7, 4, 2, RESYNC_NONE));
        assert!(t.on_root_exit(4).is_empty());
        assert_eq!(t.ready_starts(3).len(), 1);
        // A session already started when it turns out to be the server ends incomplete.
        t.on_fork(&ev(EV_FORK, 8, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 8, 4, 1, 1000));
        t.observe_cmdline(8, b"x", b"x", TITLE_GRACE_NS + 1);
        assert_eq!(t.ready_starts(TITLE_GRACE_NS + 1).len(), 1);
        let Record::SessionEnd(e) = &t.on_daemonized(8, TITLE_GRACE_NS + 2)[0] else {
            panic!()
        };
        assert!(!e.complete);
    }

    fn aof_child(t: &mut Tracker) -> Vec<Record> {
        t.on_fork(&ev(EV_FORK, 9, 8, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 9, 8, 1, 1000));
        t.set_cwd(9, "/d".into());
        t.observe_cmdline(9, b"redis-aof-rewrite *:1", b"redis-server", 2);
        assert_eq!(t.ready_starts(3).len(), 1);
        let mut rn = RenameEvent {
            kind: 6,
            pid: 9,
            session: 9,
            tid: 9,
            ts_ns: 4,
            old: [0; 64],
            new: [0; 64],
        };
        rn.old[..21].copy_from_slice(b"temp-rewriteaof-9.aof");
        rn.new[..24].copy_from_slice(b"temp-rewriteaof-bg-9.aof");
        t.on_rename(&rn);
        let files = [KernelFile {
            ino: 3,
            name: "temp-rewriteaof-9.aof".into(),
            bytes: 1000,
            calls: 2,
            target: 0,
        }];
        t.on_exit(&ev(EV_EXIT, 9, 8, 10, 0), &files)
    }

    #[test]
    fn an_aof_rewrite_ends_once_its_server_renamed_the_file_and_the_manifest() {
        let mut t = Tracker::new();
        assert!(aof_child(&mut t).is_empty(), "held for the server's rename");
        assert_eq!(t.session_id(9), Some(1), "late events keep their session");
        assert!(
            t.on_parent_rename(7, "temp-rewriteaof-bg-9.aof", "x")
                .is_empty()
        );
        assert!(
            t.on_parent_rename(8, "other", "appendonlydir/a.manifest")
                .is_empty()
        );
        assert!(
            t.on_parent_rename(
                8,
                "temp-rewriteaof-bg-9.aof",
                "appendonlydir/appendonly.aof.2.base.rdb"
            )
            .is_empty()
        );
        assert!(
            t.on_parent_rename(
                8,
                "appendonlydir/temp-appendonly.aof.incr",
                "appendonlydir/appendonly.aof.3.incr.aof"
            )
            .is_empty()
        );
        let out = t.on_parent_rename(
            8,
            "appendonlydir/temp-appendonly.aof.manifest",
            "appendonlydir/appendonly.aof.manifest",
        );
        let Record::SessionEnd(e) = &out[0] else {
            panic!()
        };
        assert_eq!(
            e.writes.files[0].renamed_to.as_deref(),
            Some("/d/appendonlydir/appendonly.aof.2.base.rdb")
        );
        let aof = e.aof.as_ref().unwrap();
        assert_eq!(aof.base, "/d/appendonlydir/appendonly.aof.2.base.rdb");
        assert_eq!(
            aof.manifest.as_deref(),
            Some("/d/appendonlydir/appendonly.aof.manifest")
        );
        assert_eq!(t.ended, 1);
    }

    #[test]
    fn an_aof_rewrite_without_the_servers_rename_ends_after_the_wait() {
        let mut t = Tracker::new();
        aof_child(&mut t);
        assert!(
            t.release_finishing(Some(10 + AOF_RENAME_WAIT_NS), None)
                .is_empty()
        );
        let out = t.release_finishing(Some(11 + AOF_RENAME_WAIT_NS), None);
        let Record::SessionEnd(e) = &out[0] else {
            panic!()
        };
        assert_eq!((e.aof.as_ref(), e.exit_code), (None, Some(0)));
        // Or when its server exits, or at the end of the run.
        let mut t = Tracker::new();
        aof_child(&mut t);
        assert_eq!(t.on_root_exit(8).len(), 1);
        let mut t = Tracker::new();
        aof_child(&mut t);
        assert_eq!(t.finish(20, |_| Vec::new()).len(), 1);
    }

    fn resync(child: u32, root: u32, what: u64) -> ProcEvent {
        ev(EV_RESYNC, child, root, 0, what)
    }

    fn start_of(out: &[Record]) -> &SessionStart {
        out.iter()
            .find_map(|r| match r {
                Record::SessionStart(s) => Some(s),
                _ => None,
            })
            .expect("a session_start")
    }

    fn end_of(out: &[Record]) -> &SessionEnd {
        out.iter()
            .find_map(|r| match r {
                Record::SessionEnd(e) => Some(&**e),
                _ => None,
            })
            .expect("a session_end")
    }

    #[test]
    fn a_bgsave_announced_to_a_replica_is_a_disk_based_sync() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
        t.observe_cmdline(5, b"redis-rdb-bgsave *:6379", b"redis-server", 2);
        assert!(t.ready_starts(3).is_empty(), "waits for the server's write");
        t.on_resync(&resync(5, 4, RESYNC_FULLRESYNC));
        let starts = t.ready_starts(4);
        let s = start_of(&starts);
        assert_eq!(s.kind, SessionKind::RdbReplica);
        assert_eq!(
            s.replication,
            Some(Replication {
                target: "disk".into(),
                replicas: Some(1)
            })
        );
        // A second replica joins the running sync; a client's reply counts for nothing.
        t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
        t.on_resync(&resync(0, 4, RESYNC_NONE));
        let out = t.on_exit(&ev(EV_EXIT, 5, 4, 10, 0), &[]);
        let e = end_of(&out);
        assert_eq!(
            (e.kind, e.replication.as_ref().and_then(|r| r.replicas)),
            (SessionKind::RdbReplica, Some(2))
        );
        assert_eq!(e.sent, None, "it wrote to no pipe or socket");
    }

    #[test]
    fn a_diskless_sync_counts_its_replicas_and_what_it_sent() {
        let mut t = Tracker::new();
        // Two replicas told before the fork.
        t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
        t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
        t.observe_cmdline(5, b"redis-rdb-to-slaves *:6379", b"redis-server", 2);
        let starts = t.ready_starts(3);
        assert_eq!(
            start_of(&starts).replication,
            Some(Replication {
                target: "socket".into(),
                replicas: Some(2)
            })
        );
        let mut exit = ev(EV_EXIT, 5, 4, 10, 0);
        exit.io.sent_calls = 3;
        exit.io.sent_bytes = 1000 + 40;
        let files = [
            KernelFile {
                ino: 8,
                name: String::new(),
                bytes: 40,
                calls: 1,
                target: agent_common::TARGET_PIPE,
            },
            KernelFile {
                ino: 9,
                name: String::new(),
                bytes: 1000,
                calls: 2,
                target: agent_common::TARGET_PIPE,
            },
        ];
        let out = t.on_exit(&exit, &files);
        let e = end_of(&out);
        assert!(e.writes.files.is_empty(), "pipes are not files");
        let sent = e.sent.as_ref().unwrap();
        assert_eq!((sent.calls, sent.bytes, sent.peers), (3, 1040, Some(2)));
        assert_eq!(
            sent.targets.iter().map(|t| t.ino).collect::<Vec<_>>(),
            [9, 8]
        );
        assert_eq!(sent.targets[0].kind, "pipe");
        // The next fork starts with no pending replicas.
        t.on_fork(&ev(EV_FORK, 6, 4, 20, 0));
        assert_eq!(t.get(6).unwrap().resyncs_before, Resyncs::default());
    }

    #[test]
    fn dual_channel_replicas_are_counted_once() {
        let mut t = Tracker::new();
        t.on_resync(&resync(0, 4, RESYNC_ENDOFF));
        t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.observe_cmdline(5, b"valkey-rdb-to-replicas", b"valkey-server", 2);
        assert_eq!(
            t.get(5).unwrap().replication().and_then(|r| r.replicas),
            Some(1)
        );
    }

    #[test]
    fn a_bgsave_whose_server_says_nothing_starts_after_the_wait() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
        t.observe_cmdline(5, b"redis-rdb-bgsave", b"redis-server", 2);
        assert!(t.ready_starts(FORK_RET_WAIT_NS).is_empty());
        let starts = t.ready_starts(FORK_RET_WAIT_NS + 1);
        let s = start_of(&starts);
        assert_eq!(
            (s.kind, s.replication.as_ref()),
            (SessionKind::RdbBgsave, None)
        );
    }

    #[test]
    fn a_fork_seen_twice_is_one_session() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 100, 0));
        t.on_fork(&ev(EV_FORK, 5, 4, 100, 0));
        assert_eq!((t.opened, t.live().count()), (1, 1));
    }

    #[test]
    fn exit_of_unknown_pid_is_ignored_and_forkret_must_match_parent() {
        let mut t = Tracker::new();
        assert!(t.on_exit(&ev(EV_EXIT, 1, 0, 0, 0), &[]).is_empty());
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 5, 999, 1, 1000));
        assert_eq!(t.get(5).unwrap().fork_us, None);
    }

    #[test]
    fn samples_carry_deltas_and_finish_closes_incomplete() {
        let mut t = Tracker::new();
        t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
        t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
        t.observe_cmdline(5, b"redis-rdb-bgsave", b"redis-server", 2);
        t.on_resync(&ev(EV_RESYNC, 5, 4, 2, RESYNC_NONE));
        assert_eq!(t.ready_starts(2).len(), 1);
        let c = |p| CowCounters {
            copies_4k: p,
            copy_bytes: p * 4096,
            ..Default::default()
        };
        t.on_counters(
            5,
            500_000_000,
            c(100),
            c(0),
            IoCounters {
                write_bytes: 10,
                ..Default::default()
            },
        );
        let Record::Sample(s) = &t.samples(1_000_000_000)[0] else {
            panic!()
        };
        assert_eq!(
            (s.cow_pages, s.cow_pages_delta, s.cow_pages_per_s),
            (100, 100, 100.0)
        );
        t.on_counters(
            5,
            1_500_000_000,
            c(300),
            c(1),
            IoCounters {
                write_bytes: 25,
                disk_bytes: 8,
                ..Default::default()
            },
        );
        let Record::Sample(s) = &t.samples(2_000_000_000)[0] else {
            panic!()
        };
        assert_eq!(
            (
                s.cow_pages,
                s.cow_pages_delta,
                s.parent_pages,
                s.child_pages
            ),
            (301, 201, 300, 1)
        );
        assert_eq!((s.write_bytes, s.disk_bytes), (15, 8));
        let out = t.finish(3_000_000_000, |_| Vec::new());
        let Record::SessionEnd(e) = &out[0] else {
            panic!()
        };
        assert!(!e.complete);
        assert_eq!((e.exit_code, e.exit_signal, e.cow.pages), (None, None, 301));
        assert_eq!(e.cow.timeline_pages[5], 100);
        assert_eq!(e.cow.timeline_pages[15], 201);
    }
}
