//! The event loop: ring buffers through `AsyncFd`, a 100 ms sampling tick, the output
//! interval, signals and the duration timer. It moves data between the kernel maps and
//! the pure modules; the rules live in `session`, `reap` and `record`.
use std::{
    collections::{HashMap, HashSet},
    io::Write as _,
    time::Duration,
};

use agent_common::{DROP_HOT, DROP_PROC, EV_WRITE, FileKey, FileStat, SessionState, TracedProc};
use anyhow::{Context as _, Result, bail};
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval},
};

use crate::{
    decode::{HotMsg, ProcMsg, decode_hot, decode_proc},
    diagnose::HostFacts,
    loader::{self, COW_HOOKS, COW_METHOD, DISK_HOOKS, LoadError, LoadOptions, WRITE_HOOKS},
    output, procfs,
    reap::{ReapAction, plan},
    record::{
        Attach, CowEventRecord, End, FORMAT_NAME, FORMAT_VERSION, IoEventRecord, MapOccupancy,
        Meta, ProcessRecord, Record,
    },
    session::{KernelFile, Tracker},
    trace::TraceWriter,
    view::{self, Live, model::Losses},
};

/// How long an exited child's session waits for its exit event before it is ended from
/// the kernel map (the event may be in flight; it carries the exit status).
const EXIT_EVENT_GRACE_NS: u64 = 1_000_000_000;

/// How often the exact counters are sampled (the timeline's resolution).
pub const TICK: Duration = Duration::from_millis(100);

pub enum Output {
    /// Lines for a person on stdout (`watch` when stdout is not a terminal, `--plain`).
    Watch,
    /// The full-screen live view (`watch` on a terminal).
    View,
    /// JSON Lines to a file or stdout.
    Trace(TraceWriter),
}

pub struct RunConfig {
    /// Empty: every Redis/Valkey server on the host, now and later.
    pub pids: Vec<u32>,
    pub duration: Option<Duration>,
    pub interval: Duration,
    pub output: Output,
    /// Write one line per COW copy (`record --events`).
    pub events: bool,
}

/// What a run ended with, for the exit status and the tests.
pub struct RunSummary {
    pub sessions: u64,
    pub lost_events: u64,
    pub reason: String,
}

struct State {
    tracker: Tracker,
    traced: BpfHashMap<MapData, u32, TracedProc>,
    sessions: BpfHashMap<MapData, u32, SessionState>,
    files: BpfHashMap<MapData, FileKey, FileStat>,
    drops: PerCpuArray<MapData, u64>,
    output: Output,
    events: bool,
    start_ns: u64,
    /// The costliest ended sessions, for the summary (bounded).
    ends: output::KeptEnds,
    /// Roots alive (pid mode ends when all of them and their sessions are gone).
    roots: HashSet<u32>,
    pid_mode: bool,
    /// Sessions whose end was recorded; their kernel entries may be reaped.
    done: HashSet<u32>,
    /// Exited sessions seen in the map before their exit event (lost-event fallback).
    exited_seen: HashMap<u32, u64>,
    /// Session-ring drops already answered by a scan of the kernel's sessions.
    lost_seen: u64,
    decode_errors: u64,
    cow_events: u64,
    /// `watch` (lines or the full-screen view); None when recording a trace.
    live: Option<Live>,
}

impl State {
    fn emit(&mut self, rec: Record) -> Result<()> {
        if let Record::SessionEnd(e) = &rec {
            self.ends.push(e.clone());
        }
        if let Some(l) = &mut self.live {
            l.on_record(&rec);
        }
        match &mut self.output {
            Output::Trace(w) => w.write(&rec)?,
            Output::View => {}
            Output::Watch => {
                if let Some(line) = output::watch_line(&rec, self.start_ns) {
                    let mut out = std::io::stdout().lock();
                    // A closed stdout (`| head`) ends the run quietly, never a panic.
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        bail!(BrokenPipe);
                    }
                }
            }
        }
        Ok(())
    }

    fn emit_all(&mut self, recs: Vec<Record>) -> Result<()> {
        recs.into_iter().try_for_each(|r| self.emit(r))
    }

    fn broken_pipe(&self) -> bool {
        matches!(&self.output, Output::Trace(w) if w.broken_pipe)
    }

    fn on_proc(&mut self, msg: ProcMsg) -> Result<()> {
        match msg {
            ProcMsg::Fork(ev) => {
                self.tracker.on_fork(&ev);
                // The child shares the parent's working directory: where relative
                // file names (Redis's temp-PID.rdb) live.
                if let Ok(cwd) = std::fs::read_link(format!("/proc/{}/cwd", ev.ppid)) {
                    self.tracker
                        .set_cwd(ev.pid, cwd.to_string_lossy().into_owned());
                }
                if let Some(rss) = procfs::rss_bytes(ev.ppid) {
                    self.tracker.set_parent_rss(ev.pid, rss);
                }
                self.classify(procfs::monotonic_ns());
            }
            ProcMsg::ForkRet(ev) => self.tracker.on_fork_ret(&ev),
            ProcMsg::Title(ev) => {
                let parent = procfs::cmdline(ev.ppid);
                let parent = (!parent.is_empty()).then_some(parent);
                self.tracker.on_title(&ev, parent.as_deref());
            }
            ProcMsg::Rename(ev) => self.tracker.on_rename(&ev),
            ProcMsg::Exit(ev) => {
                if ev.ppid != 0 {
                    if self.tracker.get(ev.pid).is_none() && !self.done.contains(&ev.pid) {
                        // Its fork event was lost: open the session from the kernel map
                        // (or from the exit itself) so that the exit still ends one.
                        let fork_ts = self
                            .sessions
                            .get(&ev.pid, 0)
                            .map_or(ev.ts_ns, |s| s.fork_ts_ns);
                        self.tracker
                            .on_fork(&adopted_fork(ev.pid, ev.ppid, fork_ts));
                    }
                    let files = take_files(&mut self.files, ev.pid);
                    self.keep_hists(ev.pid);
                    let recs = self.tracker.on_exit(&ev, &files);
                    self.done.insert(ev.pid);
                    self.exited_seen.remove(&ev.pid);
                    self.emit_all(recs)?;
                } else {
                    self.roots.remove(&ev.pid);
                    log::info!("traced process {} exited", ev.pid);
                    let comm = String::from_utf8_lossy(&ev.comm)
                        .trim_end_matches('\0')
                        .to_string();
                    self.emit(Record::Process(ProcessRecord {
                        pid: ev.pid,
                        comm,
                        exited: true,
                        ts_ns: ev.ts_ns,
                        cow: (&ev.cow_proc).into(),
                        io: (&ev.io).into(),
                    }))?;
                }
            }
            ProcMsg::Exec(ev) => {
                self.roots.insert(ev.pid);
                log::info!("tracing new Redis server pid {}", ev.pid);
            }
        }
        Ok(())
    }

    /// Read the title of every unclassified child from /proc.
    fn classify(&mut self, now: u64) {
        for (child, parent) in self.tracker.unclassified() {
            let c = procfs::cmdline(child);
            let p = procfs::cmdline(parent);
            self.tracker.observe_cmdline(child, &c, &p, now);
        }
    }

    /// Read both rings and handle their events in time order: a child's writes on the
    /// hot ring come after its fork and before its exit on the session ring, and the
    /// session must exist (and not yet be closed) when they are counted.
    fn drain(
        &mut self,
        proc_rb: &mut RingBuf<MapData>,
        hot_rb: &mut RingBuf<MapData>,
    ) -> Result<()> {
        let mut procs: Vec<ProcMsg> = Vec::new();
        while let Some(item) = proc_rb.next() {
            match decode_proc(&item) {
                Ok(m) => procs.push(m),
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("dropping a bad session record: {e}");
                }
            }
        }
        let mut hots: Vec<HotMsg> = Vec::new();
        while let Some(item) = hot_rb.next() {
            match decode_hot(&item) {
                Ok(m) => hots.push(m),
                Err(e) => {
                    self.decode_errors += 1;
                    log::warn!("dropping a bad event record: {e}");
                }
            }
        }
        let mut hots = hots.into_iter().peekable();
        for p in procs {
            while let Some(h) = hots.next_if(|h| h.ts_ns() <= p.ts_ns()) {
                self.on_hot(h)?;
            }
            self.on_proc(p)?;
        }
        for h in hots {
            self.on_hot(h)?;
        }
        Ok(())
    }

    fn on_hot(&mut self, msg: HotMsg) -> Result<()> {
        match msg {
            HotMsg::Cow(ev) => {
                self.cow_events += 1;
                if self.events
                    && let Output::Trace(w) = &mut self.output
                {
                    let rec = CowEventRecord {
                        kind: "cow",
                        session: self.tracker.get(ev.session).map(|s| s.id),
                        ts_ns: ev.ts_ns,
                        pid: ev.pid,
                        tid: ev.tid,
                        addr: ev.addr,
                        order: ev.order,
                        side: if ev.flags & agent_common::COW_FLAG_CHILD != 0 {
                            "child"
                        } else {
                            "parent"
                        },
                    };
                    w.write(&rec)?;
                }
            }
            HotMsg::Io(ev) => {
                if ev.kind == EV_WRITE
                    && self.tracker.wants_fd_path(ev.session, ev.ino)
                    && let Some(p) = fd_path(ev.pid, ev.fd, ev.ino)
                {
                    self.tracker.note_fd_path(ev.session, ev.ino, p);
                }
                self.tracker.on_io(&ev);
                if self.events
                    && let Output::Trace(w) = &mut self.output
                {
                    let rec = IoEventRecord {
                        kind: match ev.kind {
                            EV_WRITE => "write",
                            agent_common::EV_FSYNC => "fsync",
                            _ => "io",
                        },
                        session: self.tracker.get(ev.session).map(|s| s.id),
                        ts_ns: ev.ts_ns,
                        pid: ev.pid,
                        bytes: ev.bytes,
                        latency_us: ev.latency_ns as f64 / 1000.0,
                        dev: ev.dev,
                        ino: ev.ino,
                        fd: (ev.fd != agent_common::NO_FD).then_some(ev.fd),
                    };
                    w.write(&rec)?;
                }
            }
        }
        Ok(())
    }

    /// Every 100 ms: exact counters into the timelines, titles, starts, reaping.
    /// `grace_ns`: how long an exited child may wait for its exit event (0 at the end of
    /// the run, when both rings have been drained).
    fn tick(&mut self, grace_ns: u64) -> Result<()> {
        let now = procfs::monotonic_ns();
        self.adopt_lost_forks();
        self.classify(now);
        let live: Vec<u32> = self.tracker.live().map(|s| s.child_pid).collect();
        for child in live {
            if let Ok(st) = self.sessions.get(&child, 0) {
                self.tracker
                    .on_counters(child, now, st.parent, st.child, st.io);
                if st.exited != 0 {
                    self.lost_exit_fallback(child, &st, now, grace_ns)?;
                }
            }
        }
        let starts = self.tracker.ready_starts(now);
        self.emit_all(starts)?;
        self.reap();
        Ok(())
    }

    /// The kernel marked `child` exited but its exit event has not arrived: after a
    /// grace period (the event may simply be in flight), end the session from the map.
    fn lost_exit_fallback(
        &mut self,
        child: u32,
        st: &SessionState,
        now: u64,
        grace_ns: u64,
    ) -> Result<()> {
        let first = *self.exited_seen.entry(child).or_insert(now);
        if now.saturating_sub(first) < grace_ns {
            return Ok(());
        }
        log::warn!(
            "exit event of session child {child} was lost; ending it from the kernel counters"
        );
        // u32::MAX: the exit status is unknown.
        let mut ev = agent_common::ProcEvent::new(
            agent_common::EV_EXIT,
            child,
            st.parent_tgid,
            now,
            u32::MAX as u64,
        );
        (ev.cow_parent, ev.cow_child, ev.io) = (st.parent, st.child, st.io);
        let files = take_files(&mut self.files, child);
        self.keep_hists(child);
        let recs = self.tracker.on_exit(&ev, &files);
        self.done.insert(child);
        self.exited_seen.remove(&child);
        self.emit_all(recs)
    }

    /// When the session ring has dropped events, some forks may be unknown to the agent:
    /// take every session the kernel map holds and the agent does not, from the map
    /// (kind from /proc if the child still runs). Its end then comes from its exit event
    /// or, if that was lost too, from the map. So every session is accounted for, and no
    /// kernel entry is left behind.
    fn adopt_lost_forks(&mut self) {
        let (_, lost) = self.drops();
        if lost == self.lost_seen {
            return;
        }
        let snapshot: Vec<(u32, SessionState)> =
            self.sessions.iter().filter_map(Result::ok).collect();
        let mut adopted = 0;
        for (child, st) in snapshot {
            if self.tracker.get(child).is_some() || self.done.contains(&child) {
                continue;
            }
            self.tracker
                .on_fork(&adopted_fork(child, st.parent_tgid, st.fork_ts_ns));
            adopted += 1;
        }
        if adopted > 0 {
            log::warn!(
                "{adopted} fork event(s) were lost (session ring full); their sessions were taken from the kernel map"
            );
        }
        // Only once the scan is done: drops during it are seen at the next tick.
        self.lost_seen = lost;
    }

    fn reap(&mut self) {
        if self.done.is_empty() {
            return;
        }
        let snapshot: Vec<(u32, SessionState)> =
            self.sessions.iter().filter_map(Result::ok).collect();
        let mut newest = HashMap::new();
        for (_, s) in &snapshot {
            if let Ok(root) = self.traced.get(&s.parent_tgid, 0) {
                newest.insert(s.parent_tgid, root.newest_child);
            }
        }
        for action in plan(&snapshot, &newest, &self.done) {
            match action {
                ReapAction::Delete(pid) => {
                    let _ = self.sessions.remove(&pid);
                    self.done.remove(&pid);
                }
                ReapAction::SetPrev { session, prev } => {
                    if let Ok(mut st) = self.sessions.get(&session, 0) {
                        st.prev_child = prev;
                        // BPF_EXIST: never resurrect an entry deleted meanwhile.
                        let _ = self.sessions.insert(session, st, 2 /* BPF_EXIST */);
                    }
                }
            }
        }
        // Recorded sessions no longer in the map (overwritten by pid reuse) are done.
        let present: HashSet<u32> = snapshot.iter().map(|(k, _)| *k).collect();
        self.done.retain(|p| present.contains(p));
    }

    /// Entries in the kernel's bounded maps now (leak checks, soak).
    fn occupancy(&self) -> MapOccupancy {
        MapOccupancy {
            traced: self.traced.keys().count() as u64,
            sessions: self.sessions.keys().count() as u64,
            files: self.files.keys().count() as u64,
        }
    }

    /// The live view keeps a session's histograms after the tracker closes it.
    fn keep_hists(&mut self, child: u32) {
        if let Some(l) = &mut self.live {
            l.store.before_exit(&self.tracker, child);
        }
    }

    fn sorted_roots(&self) -> Vec<u32> {
        let mut roots: Vec<u32> = self.roots.iter().copied().collect();
        roots.sort_unstable();
        roots
    }

    fn losses(&self) -> Losses {
        let (hot, proc_) = self.drops();
        Losses {
            cow_events: hot,
            session_events: proc_,
            decode_errors: self.decode_errors,
        }
    }

    /// End of an output interval for `watch`: a line per live session, or a new screen.
    fn live_interval(&mut self, now_ns: u64) -> Result<()> {
        let (losses, roots) = (self.losses(), self.sorted_roots());
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        let i = view::Inputs {
            tracker: &self.tracker,
            roots: &roots,
            losses,
            now_ns,
        };
        let rows = live.on_interval(&i).context("drawing the live view")?;
        if let Output::Watch = self.output {
            for r in &rows {
                print_line(&output::interval_line(r, self.start_ns))?;
            }
        }
        Ok(())
    }

    /// A key or resize in the full-screen view; returns why to stop, if it should.
    fn live_event(&mut self, ev: crossterm::event::Event) -> Result<Option<&'static str>> {
        let (losses, roots) = (self.losses(), self.sorted_roots());
        let Some(live) = &mut self.live else {
            return Ok(None);
        };
        let i = view::Inputs {
            tracker: &self.tracker,
            roots: &roots,
            losses,
            now_ns: procfs::monotonic_ns(),
        };
        live.on_event(ev, &i).context("drawing the live view")
    }

    fn drops(&self) -> (u64, u64) {
        let sum = |i: u32| {
            self.drops
                .get(&i, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0)
        };
        (sum(DROP_HOT), sum(DROP_PROC))
    }

    fn targets_gone(&self) -> bool {
        self.pid_mode && self.roots.is_empty() && self.tracker.live().next().is_none()
    }
}

/// A fork event rebuilt for a session whose own event was lost.
fn adopted_fork(child: u32, parent: u32, fork_ts_ns: u64) -> agent_common::ProcEvent {
    agent_common::ProcEvent::new(agent_common::EV_FORK, child, parent, fork_ts_ns, 0)
}

/// Remove and return the `FILES` rows of `session`.
fn take_files(files: &mut BpfHashMap<MapData, FileKey, FileStat>, session: u32) -> Vec<KernelFile> {
    let rows: Vec<(FileKey, FileStat)> = files
        .iter()
        .filter_map(Result::ok)
        .filter(|(k, _)| k.session == session)
        .collect();
    let mut out: Vec<KernelFile> = Vec::new();
    for (k, v) in rows {
        let _ = files.remove(&k);
        let end = v.name.iter().position(|&c| c == 0).unwrap_or(v.name.len());
        let name = String::from_utf8_lossy(&v.name[..end]).into_owned();
        // The same inode written by the child under one name: one row.
        match out.iter_mut().find(|f| f.ino == k.ino) {
            Some(f) => {
                f.bytes += v.bytes;
                f.calls += v.calls;
            }
            None => out.push(KernelFile {
                ino: k.ino,
                name,
                bytes: v.bytes,
                calls: v.calls,
            }),
        }
    }
    out
}

/// The path of `pid`'s open `fd`, if it still refers to inode `ino`.
fn fd_path(pid: u32, fd: u32, ino: u64) -> Option<String> {
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

#[derive(Debug, thiserror::Error)]
#[error("output closed")]
struct BrokenPipe;

/// A line on stdout; a closed stdout (`| head`) ends the run quietly, never a panic.
fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        bail!(BrokenPipe);
    }
    Ok(())
}

/// The next key or resize of the full-screen view (never ready without one).
async fn next_key(live: &mut Option<Live>) -> std::io::Result<crossterm::event::Event> {
    match live {
        Some(l) => l.next_event().await,
        None => std::future::pending().await,
    }
}

/// Register a BPF fd owner (ring buffer, logger) with the event loop.
fn register<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its fd and keeps it open for as long as the AsyncFd lives.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("cannot poll a BPF ring buffer: {}", e.into_parts().1))
}

fn take_map(ebpf: &mut aya::Ebpf, name: &'static str) -> Result<aya::maps::Map, LoadError> {
    ebpf.take_map(name).ok_or(LoadError::MissingMap(name))
}

/// Check every `-p` pid before anything is loaded; returns their tgids.
pub fn resolve_pids(pids: &[u32]) -> Result<Vec<u32>> {
    let me = std::process::id();
    let mut out = Vec::new();
    for &pid in pids {
        let Some(tgid) = procfs::tgid_of(pid) else {
            bail!("no process with pid {pid} (-p {pid}): check the pid with `pgrep redis-server`");
        };
        if tgid == me {
            bail!("-p {pid} is cowtrace itself; cowtrace never traces its own process");
        }
        if !out.contains(&tgid) {
            out.push(tgid);
        }
    }
    Ok(out)
}

pub async fn run(cfg: RunConfig) -> Result<RunSummary> {
    // Catch stop signals before anything is attached: a signal that arrives while the
    // programs load must still end the run cleanly (probes detached, `end` written).
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sighup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    let pid_mode = !cfg.pids.is_empty();
    let pids = resolve_pids(&cfg.pids)?;
    let t0 = std::time::Instant::now();
    // COWTRACE_HOT_RING_BYTES (a power of two >= 4096) sizes the COW event ring; the
    // tests make it tiny to prove that totals stay exact when events are dropped.
    let mut opts = LoadOptions {
        auto_redis: !pid_mode,
        ..Default::default()
    };
    if let Some(v) = std::env::var("COWTRACE_HOT_RING_BYTES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        if !v.is_power_of_two() || v < 4096 {
            bail!("COWTRACE_HOT_RING_BYTES={v}: must be a power of two of at least 4096");
        }
        opts.hot_ring_bytes = v;
    }
    // COWTRACE_PROC_RING_BYTES: the session event ring (tests make it tiny so that fork
    // events are lost and the agent must recover the sessions from the kernel map).
    if let Some(v) = std::env::var("COWTRACE_PROC_RING_BYTES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        if !v.is_power_of_two() || v < 4096 {
            bail!("COWTRACE_PROC_RING_BYTES={v}: must be a power of two of at least 4096");
        }
        opts.proc_ring_bytes = Some(v);
    }
    // COWTRACE_HOT_WAKE_BYTES: the fill level that forces a wakeup (tests set it above
    // the ring size so that only the 100 ms timer drains it, and events must drop).
    if let Some(v) = std::env::var("COWTRACE_HOT_WAKE_BYTES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        opts.hot_wake_bytes = Some(v);
    }
    let probes = loader::load(&opts)?;
    let mut ebpf = probes.ebpf;

    // Kernel-side logs (aya-log) show with RUST_LOG=debug.
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(register(l)?),
        Err(e) => {
            log::debug!("kernel logs unavailable: {e}");
            None
        }
    };

    let mut traced: BpfHashMap<MapData, u32, TracedProc> =
        BpfHashMap::try_from(take_map(&mut ebpf, "TRACED")?).map_err(|source| LoadError::Map {
            name: "TRACED",
            source: Box::new(source),
        })?;
    let sessions = BpfHashMap::try_from(take_map(&mut ebpf, "SESSIONS")?).map_err(|source| {
        LoadError::Map {
            name: "SESSIONS",
            source: Box::new(source),
        }
    })?;
    let files =
        BpfHashMap::try_from(take_map(&mut ebpf, "FILES")?).map_err(|source| LoadError::Map {
            name: "FILES",
            source: Box::new(source),
        })?;
    let drops =
        PerCpuArray::try_from(take_map(&mut ebpf, "DROPS")?).map_err(|source| LoadError::Map {
            name: "DROPS",
            source: Box::new(source),
        })?;
    let proc_rb = RingBuf::try_from(take_map(&mut ebpf, "PROC_EVENTS")?).map_err(|source| {
        LoadError::Map {
            name: "PROC_EVENTS",
            source: Box::new(source),
        }
    })?;
    let hot_rb =
        RingBuf::try_from(take_map(&mut ebpf, "HOT_EVENTS")?).map_err(|source| LoadError::Map {
            name: "HOT_EVENTS",
            source: Box::new(source),
        })?;

    // Roots: the -p targets, or every Redis server running now (the exec hook, already
    // attached, catches the ones that start later).
    let roots: Vec<u32> = if pid_mode {
        pids.clone()
    } else {
        procfs::find_redis(std::path::Path::new("/proc"))
            .iter()
            .map(|p| p.pid)
            .collect()
    };
    let mut maybe: aya::maps::Array<MapData, u8> =
        aya::maps::Array::try_from(take_map(&mut ebpf, "MAYBE_TRACED")?).map_err(|source| {
            LoadError::Map {
                name: "MAYBE_TRACED",
                source: Box::new(source),
            }
        })?;
    for &pid in &roots {
        loader::add_root(&mut maybe, &mut traced, pid)?;
    }
    for &pid in &pids {
        // A -p target that exited while we were loading must not go unnoticed.
        if procfs::tgid_of(pid).is_none() {
            bail!("process {pid} (-p {pid}) exited before cowtrace attached");
        }
    }
    let attach_ms = t0.elapsed().as_millis();

    let start_ns = procfs::monotonic_ns();
    let mut st = State {
        tracker: Tracker::new(),
        traced,
        sessions,
        files,
        drops,
        output: cfg.output,
        events: cfg.events,
        start_ns,
        ends: output::KeptEnds::default(),
        roots: roots.iter().copied().collect(),
        pid_mode,
        done: HashSet::new(),
        exited_seen: HashMap::new(),
        lost_seen: 0,
        decode_errors: 0,
        cow_events: 0,
        live: None,
    };

    let meta = Meta {
        format: FORMAT_NAME,
        version: FORMAT_VERSION,
        cowtrace_version: env!("CARGO_PKG_VERSION"),
        host: procfs::hostname(),
        kernel: procfs::kernel_release(),
        attach: Attach {
            method: COW_METHOD,
            fork: "tp_btf/sched_process_fork",
            exit: "tp_btf/sched_process_exit",
            fork_latency: "tracepoint/syscalls/sys_{enter,exit}_{clone,clone3,fork,vfork}",
            cow: COW_HOOKS,
            writes: WRITE_HOOKS,
            disk: DISK_HOOKS,
            fentry: "not used by this version; `cowtrace check` probes it".into(),
            kprobe: "not used by this version; `cowtrace check` probes it".into(),
        },
        targets: if pid_mode { "pids" } else { "auto" },
        pids: roots.clone(),
        start_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        start_ts_ns: start_ns,
        interval_ms: cfg.interval.as_millis() as u64,
        page_size: procfs::page_size(),
        thp: procfs::thp_mode(),
        overcommit_memory: procfs::overcommit_memory(),
    };
    if !matches!(st.output, Output::Trace(_)) {
        let host = HostFacts {
            thp: meta.thp.clone(),
            overcommit_memory: meta.overcommit_memory,
        };
        let interval_ns = cfg.interval.as_nanos().min(u64::MAX as u128) as u64;
        st.live = Some(Live::new(
            if pid_mode { roots.clone() } else { Vec::new() },
            start_ns,
            interval_ns,
            host,
        ));
    }
    match &mut st.output {
        Output::Trace(w) => {
            w.write(&Record::Meta(meta))?;
            w.flush()?;
        }
        Output::View => {}
        Output::Watch => {
            let who = if pid_mode {
                format!(
                    "pid {}",
                    roots
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else if roots.is_empty() {
                "no Redis server running yet; waiting for one to start".to_string()
            } else {
                format!(
                    "Redis server(s) {}",
                    roots
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            let _ = writeln!(
                std::io::stdout(),
                "cowtrace {}: watching {who} (attached in {attach_ms} ms; Ctrl-C to stop)",
                env!("CARGO_PKG_VERSION")
            );
        }
    }
    log::info!("attached in {attach_ms} ms");

    let mut proc_fd = register(proc_rb)?;
    let mut hot_fd = register(hot_rb)?;
    let mut logger = logger;
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut out_tick = interval(cfg.interval);
    out_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    out_tick.tick().await; // the first tick is immediate
    let deadline = tokio::time::sleep(cfg.duration.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    if let (Output::View, Some(live)) = (&st.output, &mut st.live) {
        let i = view::Inputs {
            tracker: &st.tracker,
            roots: &roots,
            losses: Losses::default(),
            now_ns: start_ns,
        };
        live.open_screen(&i)
            .context("cannot take over the terminal for the live view (try --plain)")?;
    }

    let reason: String = loop {
        let step: Result<Option<&str>> = tokio::select! {
            g = proc_fd.readable_mut() => {
                let mut g = g?;
                // Events of a session on the hot ring precede its exit: drain them first,
                // so the session's histograms are complete when it is closed.
                let r = st.drain(g.get_inner_mut(), hot_fd.get_mut());
                g.clear_ready();
                r.map(|()| None)
            }
            g = hot_fd.readable_mut() => {
                let mut g = g?;
                let r = st.drain(proc_fd.get_mut(), g.get_inner_mut());
                g.clear_ready();
                r.map(|()| None)
            }
            g = async { logger.as_mut().unwrap().readable_mut().await }, if logger.is_some() => {
                let mut g = g?;
                g.get_inner_mut().flush();
                g.clear_ready();
                Ok(None)
            }
            _ = tick.tick() => {
                // The COW ring is submitted without wakeups: drain it here.
                (|| {
                    st.drain(proc_fd.get_mut(), hot_fd.get_mut())?;
                    st.tick(EXIT_EVENT_GRACE_NS)?;
                    Ok(st.targets_gone().then_some("targets-exited"))
                })()
            }
            _ = out_tick.tick() => {
                let now = procfs::monotonic_ns();
                (|| {
                    if let Output::Trace(_) = st.output {
                        let samples = st.tracker.samples(now);
                        st.emit_all(samples)?;
                    }
                    if let Output::Trace(w) = &mut st.output {
                        w.flush()?;
                        w.check_peer();
                    }
                    st.live_interval(now)?;
                    Ok(None)
                })()
            }
            ev = next_key(&mut st.live) => match ev {
                Ok(ev) => st.live_event(ev),
                Err(e) => Err(anyhow::Error::new(e).context("reading keys from the terminal")),
            },
            _ = sigint.recv() => Ok(Some("signal")),
            _ = sigterm.recv() => Ok(Some("signal")),
            _ = sighup.recv() => Ok(Some("signal")),
            _ = &mut deadline => Ok(Some("duration")),
        };
        match step {
            Ok(Some(r)) => break r.to_string(),
            Ok(None) if st.broken_pipe() => break "output-closed".to_string(),
            Ok(None) => {}
            Err(e) if e.is::<BrokenPipe>() => break "output-closed".to_string(),
            Err(e) => {
                // Still end the trace properly, then report the error.
                let _ = finish(&mut st, &mut proc_fd, &mut hot_fd, "error");
                return Err(e);
            }
        }
    };
    let summary = finish(&mut st, &mut proc_fd, &mut hot_fd, &reason)?;
    drop(ebpf); // detaches every program
    Ok(summary)
}

/// Drain what is left, close open sessions, write `end`, print the summary.
fn finish(
    st: &mut State,
    proc_fd: &mut AsyncFd<RingBuf<MapData>>,
    hot_fd: &mut AsyncFd<RingBuf<MapData>>,
    reason: &str,
) -> Result<RunSummary> {
    let quiet = reason == "output-closed";
    let r = (|| -> Result<()> {
        st.drain(proc_fd.get_mut(), hot_fd.get_mut())?;
        // Both rings are drained: an exited child's exit event is not coming any more.
        st.tick(0)?;
        Ok(())
    })();
    if let Err(e) = r
        && !e.is::<BrokenPipe>()
    {
        log::warn!("while finishing: {e:#}");
    }
    let now = procfs::monotonic_ns();
    if let Some(l) = &mut st.live {
        l.store.before_finish(&st.tracker);
    }
    let files = &mut st.files;
    let recs = st.tracker.finish(now, |pid| take_files(files, pid));
    // Read the closing counters of still-open sessions happened in tick() above.
    let _ = st.emit_all(recs);
    let mut roots: Vec<u32> = st.roots.iter().copied().collect();
    roots.sort_unstable();
    for pid in roots {
        if let Ok(t) = st.traced.get(&pid, 0) {
            let rec = ProcessRecord {
                pid,
                comm: procfs::comm(pid).unwrap_or_default(),
                exited: false,
                ts_ns: now,
                cow: (&t.total).into(),
                io: (&t.io).into(),
            };
            let _ = st.emit(Record::Process(rec));
        }
    }
    let (hot, proc_) = st.drops();
    let end = End {
        sessions: st.tracker.opened,
        lost_events: hot + proc_,
        lost_cow_events: hot,
        lost_session_events: proc_,
        decode_errors: st.decode_errors,
        ts_ns: now,
        duration_ms: now.saturating_sub(st.start_ns) / 1_000_000,
        reason: reason.to_string(),
        maps: st.occupancy(),
        agent_max_rss_bytes: procfs::max_rss_bytes(std::process::id()),
    };
    if let Output::Trace(w) = &mut st.output {
        w.write(&Record::End(end.clone()))?;
        w.flush()?;
    }
    if let Some(l) = &mut st.live {
        // The terminal is restored before anything is printed.
        l.close_screen();
    }
    if !quiet {
        let text = output::summary(&st.ends, &end);
        match (&st.output, &st.live) {
            // The trace may be on stdout: the summary goes to stderr.
            (Output::Trace(_), _) => eprint!("{text}"),
            (Output::Watch | Output::View, live) => {
                let more = live
                    .as_ref()
                    .map_or(String::new(), |l| l.end_text(&st.ends));
                let _ = write!(std::io::stdout(), "{text}{more}");
            }
        }
    }
    log::debug!("{} COW events drained", st.cow_events);
    Ok(RunSummary {
        sessions: end.sessions,
        lost_events: end.lost_events,
        reason: end.reason,
    })
}
