//! The loop's clock: every 100 ms the exact counters into the timelines, titles,
//! starts, stalls and reaping (`tick`); every interval the outputs (`on_interval`); the
//! full-screen view's keys; the run's losses.
use super::*;

impl State {
    /// Every 100 ms: exact counters into the timelines, titles, starts, reaping. Returns
    /// why to stop, if it should.
    pub fn on_tick(&mut self) -> Result<Option<StopReason>> {
        self.tick(EXIT_EVENT_GRACE_NS)?;
        let gone = self.pid_mode && self.roots.is_empty() && self.tracker.live().next().is_none();
        Ok(gone.then_some(StopReason::TargetsExited))
    }

    /// `grace_ns`: how long an exited child may wait for its exit event (0 at the end of
    /// the run, when both rings have been drained).
    pub(super) fn tick(&mut self, grace_ns: u64) -> Result<()> {
        let now = procfs::monotonic_ns();
        self.settle_hidden();
        self.adopt_lost_forks();
        self.classify(now);
        let live: Vec<(u32, u32)> = self
            .tracker
            .live()
            .map(|s| (s.child_pid, s.parent_pid))
            .collect();
        for &(child, parent) in &live {
            if let Some((limit, usage)) = self.memory.sample(child, parent)
                && let Output::Serve(_) = self.output
            {
                let name = self.instance(parent);
                if let Output::Serve(x) = &mut self.output {
                    x.on_memory(&name, limit, usage);
                }
            }
        }
        for child in live.into_iter().map(|l| l.0) {
            if let Some(st) = self.maps.session(child) {
                self.tracker
                    .on_counters(child, now, st.parent, st.child, st.io);
                if st.exited != 0 {
                    self.lost_exit_fallback(child, &st, now, grace_ns)?;
                }
            }
        }
        let starts = self.tracker.ready_starts(now);
        self.emit_all(starts)?;
        let ends = self.tracker.release_finishing(Some(now), None);
        self.emit_all(ends)?;
        self.maps.reap(&mut self.done);
        Ok(())
    }

    /// The kernel marked `child` exited but its exit event has not arrived: after a
    /// grace period (the event may simply be in flight), end the session from the map.
    pub(super) fn lost_exit_fallback(
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
        let mut ev = ProcEvent::new(EV_EXIT, child, st.parent_tgid, now, u32::MAX as u64);
        (ev.cow_parent, ev.cow_child, ev.io) = (st.parent, st.child, st.io);
        self.end_session(&ev)
    }

    /// When the session ring has dropped events, some forks may be unknown to the agent:
    /// take every session the kernel map holds and the agent does not, from the map
    /// (kind from /proc if the child still runs). Its end then comes from its exit event
    /// or, if that was lost too, from the map. So every session is accounted for, and no
    /// kernel entry is left behind.
    pub(super) fn adopt_lost_forks(&mut self) {
        let lost = self.maps.drops().session;
        if lost == self.lost_seen {
            return;
        }
        let mut adopted = 0;
        for (child, st) in self.maps.sessions() {
            if self.tracker.get(child).is_some()
                || self.done.contains(&child)
                || self.hidden.owns_session(child, st.parent_tgid)
            {
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

    pub(super) fn sorted_roots(&self) -> Vec<u32> {
        let mut roots: Vec<u32> = self.roots.iter().copied().collect();
        roots.sort_unstable();
        roots
    }

    pub(super) fn losses(&self) -> Losses {
        let Drops { detail, session } = self.maps.drops();
        Losses {
            detail_events: detail,
            session_events: session,
            decode_errors: self.decode_errors,
            kernel_errors: self.maps.kernel_errors().values().sum(),
        }
    }

    /// End of an output interval: samples and a flush of the trace, or for `watch` a
    /// line per live session or a new screen.
    pub fn on_interval(&mut self) -> Result<()> {
        let now = procfs::monotonic_ns();
        let mut samples = self.tracker.samples(now);
        let projections = self.memory.project(&self.tracker, &mut samples);
        let stalls = self.look_for_stalls(&mut samples);
        if let Output::Trace(_) | Output::Serve(_) = self.output {
            self.emit_all(samples)?;
        }
        if let Output::Serve(_) = self.output {
            let Drops { detail, session } = self.maps.drops();
            let o = self.maps.occupancy();
            let figures = crate::serve::AgentFigures {
                cpu_seconds: procfs::own_cpu_seconds(),
                rss_bytes: procfs::rss_bytes(std::process::id()).unwrap_or(0),
                lost_events: detail + session,
                decode_errors: self.decode_errors,
                kernel_errors: self.maps.kernel_errors().into_iter().collect(),
                maps: vec![
                    ("traced".into(), o.traced),
                    ("sessions".into(), o.sessions),
                    ("files".into(), o.files),
                ],
            };
            if let Output::Serve(x) = &mut self.output {
                x.on_agent(figures);
            }
        }
        if let Output::Trace(w) = &mut self.output {
            w.flush()?;
            w.check_peer();
        }
        let (losses, roots) = (self.losses(), self.sorted_roots());
        let Some(live) = &mut self.live else {
            return Ok(());
        };
        let i = live::Inputs {
            tracker: &self.tracker,
            roots: &roots,
            losses,
            now_ns: now,
        };
        let rows = live.on_interval(&i).context("drawing the live view")?;
        if let Output::Watch = self.output {
            for r in &rows {
                let mut line = lines::interval_line(r, &self.clock);
                if let Some(p) = projections.get(&r.session) {
                    line.push_str(&lines::projection_text(p));
                }
                if let Some(st) = stalls.get(&r.session) {
                    line.push_str(&crate::text::stall::stall_mark(st));
                }
                print_line(&line)?;
            }
        }
        Ok(())
    }

    /// A key or resize in the full-screen view; returns why to stop, if it should.
    pub fn on_key(&mut self, ev: crossterm::event::Event) -> Result<Option<StopReason>> {
        let (losses, roots) = (self.losses(), self.sorted_roots());
        let Some(live) = &mut self.live else {
            return Ok(None);
        };
        let i = live::Inputs {
            tracker: &self.tracker,
            roots: &roots,
            losses,
            now_ns: procfs::monotonic_ns(),
        };
        live.on_event(ev, &i).context("drawing the live view")
    }
}
