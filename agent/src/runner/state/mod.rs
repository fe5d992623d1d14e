//! What the event loop holds between events, and what it does with each: session-ring
//! and detail-ring events, the 100 ms tick (exact counters, titles, starts, reaping and
//! the lost-event fallbacks), the output interval and the end of the run. The rules live
//! in `events`; this moves data between the kernel maps, /proc, the tracker and the
//! outputs.
use std::{
    collections::{HashMap, HashSet},
    io::Write as _,
};

use agent_common::{
    COW_FLAG_CHILD, COW_FLAG_ZERO, EV_EXIT, EV_FORK, EV_WRITE, NO_FD, ProcEvent, SessionState,
    sync_index,
};
use anyhow::{Context as _, Result, bail};
use aya::maps::{MapData, RingBuf};

use super::{Output, start::Running};
use crate::{
    events::{
        decode::{HotMsg, ProcMsg, decode_hot, decode_proc},
        hidden::Hidden,
        merge::{self, Either},
        session::{Tracker, c_str},
        stall::{DEFAULT_SLOW_FORK_MS_PER_GIB, StallWatch, slow_fork},
    },
    kernel::maps::{Drops, KernelMaps},
    live::{
        self, Live,
        lines::{self, Clock},
        screen::model::Losses,
        summary::KeptEnds,
    },
    procfs::{self, sockets},
    trace::schema::{
        CowEvent, End, IoEvent, ProcessRecord, Record, Side, Stall, StopReason, SyncCall,
    },
};

/// How long an exited child's session waits for its exit event before it is ended from
/// the kernel map (the event may be in flight; it carries the exit status).
const EXIT_EVENT_GRACE_NS: u64 = 1_000_000_000;

mod dispatch;
mod tick;

/// A closed stdout (`| head`): ends the run quietly with `output-closed`.
#[derive(Debug, thiserror::Error)]
#[error("output closed")]
pub struct BrokenPipe;

pub struct State {
    pub tracker: Tracker,
    pub maps: KernelMaps,
    pub output: Output,
    /// Write one line per event (`record --events`).
    pub events: bool,
    pub start_ns: u64,
    /// How `watch` lines are stamped (`-T`: wall-clock time).
    pub clock: Clock,
    /// The costliest ended sessions, for the summary (bounded).
    pub ends: KeptEnds,
    /// Roots alive (pid mode ends when all of them and their sessions are gone).
    pub roots: HashSet<u32>,
    pub pid_mode: bool,
    /// Sessions whose end was recorded; their kernel entries may be reaped.
    done: HashSet<u32>,
    /// Exited sessions seen in the map before their exit event (lost-event fallback).
    exited_seen: HashMap<u32, u64>,
    /// Session-ring drops already answered by a scan of the kernel's sessions.
    lost_seen: u64,
    decode_errors: u64,
    detail_events: u64,
    /// `watch` (lines or the full-screen view); None when recording a trace.
    pub live: Option<Live>,
    /// Each traced server's name, read from its sockets at its first fork.
    instances: HashMap<u32, String>,
    /// The servers' memory limits and each running save's peak usage.
    memory: super::memory::MemoryWatch,
    /// Traced processes the OOM killer chose: pid -> (when, RSS), for their sessions'
    /// ends (bounded: a victim is forgotten when its session ends or after 64 more).
    oom: Vec<(u32, u64, u64)>,
    /// The cause probes and region tables (issue 15); `None` in tests without a kernel.
    pub causes: Option<crate::kernel::causes::CauseProbes>,
    /// Each ended session's split by cause and region, until its `session_end` is emitted.
    attrib: HashMap<u32, (crate::trace::ledger::Causes, crate::trace::ledger::Regions)>,
    /// Each running save's last write progress (`--stall`).
    stalls: StallWatch,
    /// `--slow-fork`, in ms per GiB of RSS.
    slow_fork_ms_per_gib: f64,
    /// Slow forks of running sessions, for their `session_end`.
    slow_forks: HashMap<u64, crate::trace::schema::SlowFork>,
    /// The host's THP mode, read once.
    thp: Option<String>,
    /// The fork blocks of running sessions, for the main thread's cost at their ends.
    latency: super::calibrate::Latency,
    /// The agent's own traced helpers (the calibration) and their sessions: never shown.
    hidden: Hidden,
}

/// A fork event rebuilt for a session whose own event was lost.
fn adopted_fork(child: u32, parent: u32, fork_ts_ns: u64) -> ProcEvent {
    ProcEvent::new(EV_FORK, child, parent, fork_ts_ns, 0)
}

/// A line on stdout; a closed stdout (`| head`) ends the run quietly, never a panic.
pub fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        bail!(BrokenPipe);
    }
    Ok(())
}

/// The path of `pid`'s open `fd`, if it still refers to inode `ino`. Without an fd
/// (`NO_FD`: the fentry path hooks `vfs_write`, which is given the file, not the fd),
/// the first of `pid`'s open fds that refers to `ino`.
fn fd_path(pid: u32, fd: u32, ino: u64) -> Option<String> {
    if fd == NO_FD {
        return std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|&fd| fd != NO_FD)
            .find_map(|fd| fd_path(pid, fd, ino));
    }
    use std::os::unix::fs::MetadataExt;
    let link = format!("/proc/{pid}/fd/{fd}");
    let meta = std::fs::metadata(&link).ok()?;
    if meta.ino() != ino {
        return None;
    }
    let p = std::fs::read_link(&link).ok()?;
    let p = p.to_string_lossy();
    (!p.ends_with(" (deleted)")).then(|| p.into_owned())
}

impl State {
    pub fn new(
        maps: KernelMaps,
        output: Output,
        events: bool,
        roots: &[u32],
        pid_mode: bool,
        wall_clock: bool,
    ) -> Self {
        let start_ns = procfs::monotonic_ns();
        Self {
            tracker: Tracker::new(),
            maps,
            output,
            events,
            start_ns,
            clock: Clock {
                start_ns,
                wall_start_ms: wall_clock.then(procfs::unix_ms),
            },
            ends: KeptEnds::default(),
            roots: roots.iter().copied().collect(),
            pid_mode,
            done: HashSet::new(),
            exited_seen: HashMap::new(),
            lost_seen: 0,
            decode_errors: 0,
            detail_events: 0,
            live: None,
            instances: HashMap::new(),
            memory: Default::default(),
            oom: Vec::new(),
            causes: None,
            attrib: HashMap::new(),
            stalls: StallWatch::default(),
            slow_fork_ms_per_gib: DEFAULT_SLOW_FORK_MS_PER_GIB,
            slow_forks: HashMap::new(),
            thp: procfs::thp_mode(),
            latency: Default::default(),
            hidden: Hidden::default(),
        }
    }

    /// `root` is the agent's own traced helper: consume its sessions without a record.
    pub fn hide_root(&mut self, root: u32) {
        self.hidden.add_root(root);
    }

    /// Whether the kernel times the main thread's copies (the COW `method` sees the
    /// fault handler return), or the estimate is used.
    pub fn set_timed_faults(&mut self, timed: bool, method: crate::kernel::cow::Method) {
        self.latency.set_timed(timed.then(|| method.hooks()));
    }

    /// The thresholds of `--stall` and `--slow-fork`.
    pub fn set_flags(&mut self, f: super::Flags) {
        self.stalls = StallWatch::new(f.stall.as_nanos().min(u64::MAX as u128) as u64);
        self.slow_fork_ms_per_gib = f.slow_fork_ms_per_gib;
    }

    /// A session's start: watched for stalls if it is a save; its fork flagged if slow
    /// (with the parent's page-table size, read now: fork copied them).
    fn on_start(&mut self, s: &mut crate::trace::schema::SessionStart) {
        self.stalls.start(s.session, s.kind, s.child_pid, s.ts_ns);
        self.latency.start(s.session, s.fork_us);
        let (Some(us), Some(rss)) = (s.fork_us, s.parent_rss_bytes) else {
            return;
        };
        let Some(ms_per_gib) = slow_fork(us, rss, self.slow_fork_ms_per_gib) else {
            return;
        };
        let f = crate::trace::schema::SlowFork {
            fork_us: us,
            rss_bytes: rss,
            ms_per_gib,
            threshold_ms_per_gib: self.slow_fork_ms_per_gib,
            vm_pte_bytes: procfs::stalled::vm_pte_bytes(s.parent_pid),
            thp: self.thp.clone(),
        };
        self.slow_forks.insert(s.session, f.clone());
        s.slow_fork = Some(f);
    }

    /// Marks the samples of saves that made no write progress for the stall threshold,
    /// with the child's state read from /proc now; returns them by session.
    fn look_for_stalls(&mut self, samples: &mut [Record]) -> HashMap<u64, Stall> {
        let mut out = HashMap::new();
        for r in samples {
            let Record::Sample(s) = r else { continue };
            let progressed = s.write_bytes > 0 || s.sent_bytes.is_some_and(|b| b > 0);
            let Some(st) = self.stalls.observe(s.session, s.ts_ns, progressed) else {
                continue;
            };
            let stall =
                procfs::stalled::stall_of(st.child_pid, st.for_ms, self.stalls.threshold_ms());
            self.stalls.record(s.session, &stall);
            s.stall = Some(stall.clone());
            out.insert(s.session, stall);
        }
        out
    }

    /// The name of server `root`, read once (a server listens before it forks).
    pub fn instance(&mut self, root: u32) -> String {
        self.instances
            .entry(root)
            .or_insert_with(|| sockets::instance_name(root))
            .clone()
    }

    /// A new session of `root`: where it writes, the parent's RSS, the server's name.
    fn describe(&mut self, child: u32, root: u32) {
        // The child shares the parent's working directory: where relative file names
        // (Redis's temp-PID.rdb) live.
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{root}/cwd")) {
            self.tracker
                .set_cwd(child, cwd.to_string_lossy().into_owned());
        }
        if let Some(rss) = procfs::rss_bytes(root) {
            self.tracker.set_parent_rss(child, rss);
        }
        let name = self.instance(root);
        self.tracker.set_instance(child, name);
        // The first memory reading at the fork: a save can be OOM-killed before the
        // first tick (a fast writer copies 20 MiB in well under 100 ms).
        let _ = self.memory.sample(child, root);
        if let Some(c) = &mut self.causes {
            c.session_start(root, child);
        }
    }

    /// Sessions of saves that were running when cowtrace attached (`start::add_roots`).
    pub fn adopt_running(&mut self, running: Vec<Running>) {
        for r in running {
            let ev = adopted_fork(r.child, r.root, r.fork_ts_ns);
            self.tracker.on_attached_mid_save(&ev, r.mid);
            self.describe(r.child, r.root);
        }
        self.classify(procfs::monotonic_ns());
    }

    pub fn emit(&mut self, mut rec: Record) -> Result<()> {
        if let Record::SessionStart(st) = &mut rec {
            self.on_start(st);
        }
        if let Record::SessionEnd(e) = &mut rec {
            e.stall = self.stalls.end(e.session);
            e.slow_fork = self.slow_forks.remove(&e.session);
            e.memory = self.memory.take(e.child_pid);
            e.oom_kill = self.oom_kill_of(e);
            e.projection_check = self.memory.check(e);
            if let Some((c, r)) = self.attrib.remove(&e.child_pid) {
                e.causes = Some(c);
                e.regions = Some(r);
            }
            // The kernel's timing of the main thread's copies, as read at the exit; a
            // session still running at the end of the trace has it in the map.
            if let Some(st) = self.maps.session(e.child_pid)
                && st.parent_tgid == e.parent_pid
            {
                self.latency
                    .measured(e.child_pid, st.main_ns, st.main_copies);
            }
            self.latency.end(e);
            self.ends.push((**e).clone());
        }
        if let Some(l) = &mut self.live {
            l.on_record(&rec);
        }
        match &mut self.output {
            Output::Trace(w) => w.write(&rec)?,
            Output::Serve(x) => x.on_record(&rec),
            Output::View => {}
            Output::Watch => {
                if let Some(line) = lines::watch_line(&rec, &self.clock) {
                    print_line(&line)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the OOM killer chose this session's child, or its server while the child
    /// ran.
    fn oom_kill_of(
        &mut self,
        e: &crate::trace::schema::SessionEnd,
    ) -> Option<crate::trace::schema::OomKill> {
        let fork_ns = e
            .ts_ns
            .saturating_sub(e.duration_ms.saturating_mul(1_000_000));
        let i = self.oom.iter().position(|&(pid, ts, _)| {
            pid == e.child_pid || (pid == e.parent_pid && ts >= fork_ns && ts <= e.ts_ns)
        })?;
        let (pid, _, rss) = self.oom.remove(i);
        Some(crate::trace::schema::OomKill {
            side: if pid == e.child_pid {
                "child"
            } else {
                "parent"
            }
            .into(),
            pid,
            rss_bytes: rss,
            cow_bytes: e.cow_bytes_with_estimate(),
        })
    }

    fn emit_all(&mut self, recs: Vec<Record>) -> Result<()> {
        recs.into_iter().try_for_each(|r| self.emit(r))
    }

    /// An event line (`record --events` only).
    fn emit_event(&mut self, rec: Record) -> Result<()> {
        match (self.events, &mut self.output) {
            (true, Output::Trace(w)) => w.write(&rec)?,
            // Latency histograms (the event is not written anywhere).
            (_, Output::Serve(x)) => x.on_event(&rec),
            _ => {}
        }
        Ok(())
    }

    pub fn broken_pipe(&self) -> bool {
        matches!(&self.output, Output::Trace(w) if w.broken_pipe)
    }

    /// Read what the session ring holds now into `procs`.
    fn read_session_ring(&mut self, session: &mut RingBuf<MapData>, procs: &mut Vec<ProcMsg>) {
        while let Some(item) = session.next() {
            match decode_proc(&item) {
                Ok(m) => procs.push(m),
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("dropping a bad session record: {e}");
                }
            }
        }
    }

    /// Read both rings and handle their events in time order (`events::merge`).
    ///
    /// The session ring is read again after the detail ring: a fork that happened while
    /// the detail ring was read is then handled before the copies and writes of its
    /// session, which would otherwise be read first and find no session.
    pub fn drain(
        &mut self,
        session: &mut RingBuf<MapData>,
        detail: &mut RingBuf<MapData>,
    ) -> Result<()> {
        let mut procs: Vec<ProcMsg> = Vec::new();
        self.read_session_ring(session, &mut procs);
        let mut hots: Vec<HotMsg> = Vec::new();
        while let Some(item) = detail.next() {
            match decode_hot(&item) {
                Ok(m) => hots.push(m),
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("dropping a bad event record: {e}");
                }
            }
        }
        self.read_session_ring(session, &mut procs);
        for ev in merge::by_time(procs, hots, ProcMsg::ts_ns, HotMsg::ts_ns) {
            if self.is_hidden(&ev) {
                continue;
            }
            match ev {
                Either::Session(p) => self.on_proc(p)?,
                Either::Detail(h) => self.on_hot(h)?,
            }
        }
        Ok(())
    }

    /// Drain what is left, close open sessions, write the `process` lines and `end`,
    /// and restore the terminal. Returns the `end` record.
    pub fn finish(
        &mut self,
        session: &mut RingBuf<MapData>,
        detail: &mut RingBuf<MapData>,
        reason: StopReason,
    ) -> Result<End> {
        // A helper still measuring (a run a few ms long): its sessions would outlive the
        // final reaping (`end.maps`).
        super::calibrate::wait_idle(std::time::Duration::from_secs(1));
        let r = self
            .drain(session, detail)
            // Both rings are drained: an exited child's exit event is not coming any more.
            .and_then(|()| self.tick(0));
        if let Err(e) = r
            && !e.is::<BrokenPipe>()
        {
            log::warn!("while finishing: {e:#}");
        }
        let now = procfs::monotonic_ns();
        if let Some(l) = &mut self.live {
            l.store.before_finish(&self.tracker);
        }
        let maps = &mut self.maps;
        let recs = self.tracker.finish(now, |pid| maps.take_files(pid));
        // A closed output is noticed at the `end` line below; keep going until then.
        let _ = self.emit_all(recs);
        for pid in self.sorted_roots() {
            if let Some(t) = self.maps.traced(pid) {
                let instance = Some(self.instance(pid));
                let _ = self.emit(Record::Process(Box::new(ProcessRecord {
                    pid,
                    instance,
                    comm: procfs::comm(pid).unwrap_or_default(),
                    exited: false,
                    ts_ns: now,
                    cow: (&t.total).into(),
                    io: (&t.io).into(),
                })));
            }
        }
        let Drops { detail, session } = self.maps.drops();
        let end = End {
            sessions: self.tracker.opened,
            lost_events: detail + session,
            lost_detail_events: detail,
            lost_session_events: session,
            decode_errors: self.decode_errors,
            ts_ns: now,
            duration_ms: now.saturating_sub(self.start_ns) / 1_000_000,
            reason: reason.as_str().to_string(),
            maps: self.maps.occupancy(),
            agent_max_rss_bytes: procfs::max_rss_bytes(std::process::id()),
            kernel_errors: self.maps.kernel_errors(),
        };
        if let Output::Trace(w) = &mut self.output {
            w.write(&Record::End(end.clone()))?;
            w.flush()?;
        }
        if let Some(l) = &mut self.live {
            // The terminal is restored before anything is printed.
            l.close_screen();
        }
        log::debug!("{} detail events drained", self.detail_events);
        Ok(end)
    }
}
