//! `watch`: lines when stdout is not a terminal (or `--plain`), else a full-screen view;
//! and the summary that ends every run.
//!
//! - `store`: per-interval deltas, recent sessions and run-wide histograms (pure);
//! - `lines`: the `watch --plain` lines (pure);
//! - `summary`: the end-of-run summary, histograms and diagnoses (pure);
//! - `screen`: the full-screen view: its model, rendering, keys and the terminal.
//!
//! [`Live`] is the glue the runner holds: it feeds the store, reads the traced
//! processes from /proc at each refresh and drives the screen.
pub mod lines;
pub mod screen;
pub mod store;
pub mod summary;

use std::collections::HashMap;

use crossterm::event::Event;

use crate::{
    events::session::Tracker,
    live::{
        screen::{
            model::{Context, Losses, ProcInfo, ViewModel},
            term::Term,
            ui::{Action, UiState},
        },
        store::{IntervalRow, Store},
    },
    procfs::{self, sockets},
    text::diagnosis::HostFacts,
    trace::schema::{Record, StopReason},
};

struct Screen {
    term: Term,
    ui: UiState,
    /// The model on screen (kept while paused, redrawn on keys and resizes).
    model: ViewModel,
}

/// The `watch` state beside the tracker.
pub struct Live {
    pub store: Store,
    screen: Option<Screen>,
    pub host: HostFacts,
    pids: Vec<u32>,
    start_ns: u64,
    interval_ms: u64,
    /// Each traced server's name from its listening sockets, read until it has one
    /// (a server that just started may not listen yet).
    names: HashMap<u32, String>,
}

/// What the runner reads from the kernel for each refresh.
pub struct Inputs<'a> {
    pub tracker: &'a Tracker,
    /// The traced Redis processes alive.
    pub roots: &'a [u32],
    pub losses: Losses,
    pub now_ns: u64,
}

impl Live {
    pub fn new(pids: Vec<u32>, start_ns: u64, interval_ns: u64, host: HostFacts) -> Self {
        Self {
            store: Store::new(interval_ns),
            screen: None,
            host,
            pids,
            start_ns,
            interval_ms: interval_ns / 1_000_000,
            names: HashMap::new(),
        }
    }

    /// Take the terminal for the full-screen view and draw a first screen.
    pub fn open_screen(&mut self, i: &Inputs) -> std::io::Result<()> {
        let model = self.model(i);
        let mut term = Term::enter()?;
        let ui = UiState::default();
        term.draw(&model, &ui)?;
        self.screen = Some(Screen { term, ui, model });
        Ok(())
    }

    pub fn has_screen(&self) -> bool {
        self.screen.is_some()
    }

    /// Give the terminal back (before the summary is printed).
    pub fn close_screen(&mut self) {
        self.screen = None;
    }

    /// Session records as they are emitted.
    pub fn on_record(&mut self, rec: &Record) {
        match rec {
            Record::SessionStart(s) => self.store.on_start(s),
            Record::SessionEnd(e) => self.store.on_end(e),
            _ => {}
        }
    }

    /// End of an output interval: the lines for `--plain`, or a new screen.
    pub fn on_interval(&mut self, i: &Inputs) -> std::io::Result<Vec<IntervalRow>> {
        let rows = self.store.on_interval(i.now_ns, i.tracker);
        if self.screen.as_ref().is_some_and(|s| !s.ui.paused) {
            self.refresh(i)?;
        }
        Ok(rows)
    }

    fn refresh(&mut self, i: &Inputs) -> std::io::Result<()> {
        let model = self.model(i);
        if let Some(s) = &mut self.screen {
            s.model = model;
            s.term.draw(&s.model, &s.ui)?;
        }
        Ok(())
    }

    fn model(&mut self, i: &Inputs) -> ViewModel {
        let procs: Vec<ProcInfo> = i
            .roots
            .iter()
            .map(|&pid| ProcInfo {
                pid,
                instance: self.name(pid),
                rss: procfs::rss_bytes(pid),
            })
            .collect();
        let alive: std::collections::HashSet<u32> = i.roots.iter().copied().collect();
        self.names.retain(|pid, _| alive.contains(pid));
        let cx = Context {
            version: env!("CARGO_PKG_VERSION"),
            now_ns: i.now_ns,
            start_ns: self.start_ns,
            interval_ms: self.interval_ms,
            pids: self.pids.clone(),
            host: self.host.clone(),
            losses: i.losses,
        };
        screen::model::build(&self.store, i.tracker, &procs, &cx)
    }

    /// The name of server `pid`, as its sessions are named (`sockets::instance_name`);
    /// read again at each refresh while it is only `pid N`.
    fn name(&mut self, pid: u32) -> String {
        if let Some(n) = self.names.get(&pid) {
            return n.clone();
        }
        let n = sockets::instance_name(pid);
        if n != format!("pid {pid}") {
            self.names.insert(pid, n.clone());
        }
        n
    }

    /// The next key or resize of the screen; never ready without one.
    pub async fn next_event(&mut self) -> std::io::Result<Event> {
        match &mut self.screen {
            Some(s) => s.term.next_event().await,
            None => std::future::pending().await,
        }
    }

    /// Handle a terminal event; returns why the run should stop, if it should.
    pub fn on_event(&mut self, ev: Event, i: &Inputs) -> std::io::Result<Option<StopReason>> {
        let Some(s) = &mut self.screen else {
            return Ok(None);
        };
        let action = match ev {
            Event::Key(k) => s.ui.on_key(k, &s.model),
            // ratatui notices the new size, erases the screen and draws all of it.
            Event::Resize(..) => Action::Redraw,
            _ => Action::Nothing,
        };
        match action {
            Action::Nothing => {}
            Action::Redraw => s.term.draw(&s.model, &s.ui)?,
            Action::Refresh => self.refresh(i)?,
            Action::Quit => return Ok(Some(StopReason::Quit)),
            // Ctrl-C: the same reason as SIGINT in the other modes.
            Action::Interrupt => return Ok(Some(StopReason::Signal)),
        }
        Ok(None)
    }

    /// What follows the summary at the end of the run: the run's histograms as text,
    /// then the diagnosis of each session.
    pub fn end_text(&self, ends: &summary::KeptEnds) -> String {
        let mut s = summary::run_hists(&self.store.run, ends.total());
        s.push_str(&summary::diagnoses(&ends.sessions(), &self.host));
        s
    }
}
