//! What the loop does with each kernel event: a fork, an exit, a daemonizing child, a
//! title, a write, a sync, a block request; and the end of a session.
use super::*;

impl State {
    /// Whether an event is the agent's own helper's (`events::hidden`): dropped here,
    /// before the tracker, the outputs or /proc see it. Its sessions' kernel entries are
    /// reaped from the map (`settle_hidden`).
    pub(super) fn is_hidden(&mut self, ev: &Either<ProcMsg, HotMsg>) -> bool {
        if self.hidden.is_empty() {
            return false;
        }
        match ev {
            Either::Session(ProcMsg::Rename(r)) => self.hidden.detail_event(r.pid, r.session),
            Either::Session(p) => {
                let exit = matches!(p, ProcMsg::Exit(_));
                p.event()
                    .is_some_and(|e| self.hidden.proc_event(e.pid, e.ppid, exit))
            }
            Either::Detail(HotMsg::Cow(c)) => self.hidden.detail_event(c.pid, c.session),
            Either::Detail(HotMsg::Io(i)) => self.hidden.detail_event(i.pid, i.session),
        }
    }

    /// Mark the helper's exited sessions done, so that `reap` deletes their entries,
    /// with their file rows and cause counters; forget the helper once all is gone.
    pub(super) fn settle_hidden(&mut self) {
        if self.hidden.is_empty() {
            return;
        }
        let sessions: Vec<(u32, u32, bool)> = self
            .maps
            .sessions()
            .into_iter()
            .map(|(child, st)| (child, st.parent_tgid, st.exited != 0))
            .collect();
        let traced: Vec<u32> = self
            .hidden
            .roots()
            .into_iter()
            .filter(|&r| self.maps.traced(r).is_some())
            .collect();
        for child in self.hidden.settle(&sessions, &traced) {
            if self.done.insert(child) {
                let _ = self.maps.take_files(child);
                if let Some(c) = &mut self.causes {
                    c.discard(child);
                }
            }
        }
    }

    pub(super) fn on_proc(&mut self, msg: ProcMsg) -> Result<()> {
        match msg {
            ProcMsg::Fork(ev) => {
                self.tracker.on_fork(&ev);
                self.describe(ev.pid, ev.ppid);
                self.classify(procfs::monotonic_ns());
            }
            ProcMsg::ForkRet(ev) => self.tracker.on_fork_ret(&ev),
            ProcMsg::Title(ev) => {
                let parent = procfs::cmdline(ev.ppid);
                let parent = (!parent.is_empty()).then_some(parent);
                self.tracker.on_title(&ev, parent.as_deref());
            }
            ProcMsg::Rename(ev) if ev.session == 0 => {
                let (old, new) = (c_str(&ev.old), c_str(&ev.new));
                let recs = self.tracker.on_parent_rename(ev.pid, &old, &new);
                self.emit_all(recs)?;
            }
            ProcMsg::Rename(ev) => self.tracker.on_rename(&ev),
            ProcMsg::Oom(ev) => {
                log::warn!(
                    "the OOM killer chose traced process {} (RSS {} bytes)",
                    ev.pid,
                    ev.value
                );
                if self.oom.len() >= 64 {
                    self.oom.remove(0);
                }
                self.oom.push((ev.pid, ev.ts_ns, ev.value));
            }
            ProcMsg::Exit(ev) if ev.ppid != 0 => {
                if self.tracker.get(ev.pid).is_none() && !self.done.contains(&ev.pid) {
                    // Its fork event was lost: open the session from the kernel map (or
                    // from the exit itself) so that the exit still ends one.
                    let fork_ts = self.maps.session(ev.pid).map_or(ev.ts_ns, |s| s.fork_ts_ns);
                    self.tracker
                        .on_fork(&adopted_fork(ev.pid, ev.ppid, fork_ts));
                }
                self.end_session(&ev)?;
            }
            ProcMsg::Setsid(ev) => self.tracker.on_setsid(ev.pid),
            ProcMsg::Resync(ev) => self.tracker.on_resync(&ev),
            ProcMsg::Daemon(ev) => {
                let recs = self.tracker.on_daemonized(ev.pid, procfs::monotonic_ns());
                // What it wrote as a child (its log, the pid file) is no session's.
                let _ = self.maps.take_files(ev.pid);
                let _ = self.memory.take(ev.pid);
                if let Some(c) = &mut self.causes {
                    c.forget(ev.pid);
                }
                self.roots.insert(ev.pid);
                log::info!(
                    "pid {} daemonized: tracing its child {} as the server",
                    ev.ppid,
                    ev.pid
                );
                self.emit_all(recs)?;
            }
            ProcMsg::Exit(ev) => {
                let recs = self.tracker.on_root_exit(ev.pid);
                self.emit_all(recs)?;
                self.roots.remove(&ev.pid);
                self.memory.forget_server(ev.pid);
                log::info!("traced process {} exited", ev.pid);
                let comm = String::from_utf8_lossy(&ev.comm)
                    .trim_end_matches('\0')
                    .to_string();
                let instance = self.instances.remove(&ev.pid);
                self.emit(Record::Process(Box::new(ProcessRecord {
                    pid: ev.pid,
                    instance,
                    comm,
                    exited: true,
                    ts_ns: ev.ts_ns,
                    cow: (&ev.cow_proc).into(),
                    io: (&ev.io).into(),
                })))?;
            }
            ProcMsg::Exec(ev) => {
                self.roots.insert(ev.pid);
                log::info!("tracing new Redis server pid {}", ev.pid);
            }
        }
        Ok(())
    }

    /// The session of child `ev.pid` ends with this exit event (real or rebuilt). Its
    /// counters are read from the kernel's map again: a copy whose fault came before
    /// the exit and its page after it is counted after the exit event was written.
    pub(super) fn end_session(&mut self, ev: &ProcEvent) -> Result<()> {
        let mut ev = *ev;
        if let Some(st) = self.maps.session(ev.pid)
            && st.parent_tgid == ev.ppid
        {
            (ev.cow_parent, ev.cow_child, ev.io) = (st.parent, st.child, st.io);
            self.latency.measured(ev.pid, st.main_ns, st.main_copies);
        }
        let ev = &ev;
        if let Some(c) = &mut self.causes
            && let Some(split) = c.session_end(ev.pid, ev.cow_parent.copies())
        {
            self.attrib.insert(ev.pid, split);
        }
        let files = self.maps.take_files(ev.pid);
        // The live view keeps a session's histograms after the tracker closes it.
        if let Some(l) = &mut self.live {
            l.store.before_exit(&self.tracker, ev.pid);
        }
        let recs = self.tracker.on_exit(ev, &files);
        self.done.insert(ev.pid);
        self.exited_seen.remove(&ev.pid);
        self.emit_all(recs)
    }

    /// Read the title of every unclassified child from /proc.
    pub(super) fn classify(&mut self, now: u64) {
        for (child, parent) in self.tracker.unclassified() {
            let c = procfs::cmdline(child);
            let p = procfs::cmdline(parent);
            self.tracker.observe_cmdline(child, &c, &p, now);
        }
    }

    pub(super) fn on_hot(&mut self, msg: HotMsg) -> Result<()> {
        self.detail_events += 1;
        match msg {
            HotMsg::Cow(ev) => {
                let rec = CowEvent {
                    session: self.tracker.session_id(ev.session),
                    ts_ns: ev.ts_ns,
                    pid: ev.pid,
                    tid: ev.tid,
                    addr: ev.addr,
                    order: ev.order,
                    side: if ev.flags & COW_FLAG_CHILD != 0 {
                        Side::Child
                    } else {
                        Side::Parent
                    },
                };
                // A zero fill allocates a page but copies nothing: its own line type, so
                // that `cow` lines count copies only.
                self.emit_event(if ev.flags & COW_FLAG_ZERO != 0 {
                    Record::ZeroFill(rec)
                } else {
                    Record::Cow(rec)
                })
            }
            HotMsg::Io(ev) => {
                if ev.kind == EV_WRITE
                    && self.tracker.wants_fd_path(ev.session, ev.ino)
                    && let Some(p) = fd_path(ev.pid, ev.fd, ev.ino)
                {
                    self.tracker.note_fd_path(ev.session, ev.ino, p);
                }
                self.tracker.on_io(&ev);
                let call = sync_index(ev.kind).map(|i| SyncCall::ALL[i]);
                let rec = IoEvent {
                    session: self.tracker.session_id(ev.session),
                    ts_ns: ev.ts_ns,
                    pid: ev.pid,
                    bytes: ev.bytes,
                    latency_us: ev.latency_ns as f64 / 1000.0,
                    dev: ev.dev,
                    ino: ev.ino,
                    fd: (ev.fd != NO_FD).then_some(ev.fd),
                    call,
                };
                self.emit_event(match ev.kind {
                    EV_WRITE => Record::Write(rec),
                    _ if call.is_some() => Record::Fsync(rec),
                    _ => Record::Io(rec),
                })
            }
        }
    }
}
