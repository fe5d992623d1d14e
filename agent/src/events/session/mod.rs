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

mod record;
pub use record::Session;
#[cfg(test)]
mod tests;
