//! The report's model: a fold over the trace's lines into per-session state.
//!
//! Memory does not grow with the trace's size, only with its number of sessions (made by
//! `session_start` and `session_end` lines; about 1.5 KB each): per session, a summary
//! and a timeline of at most [`TIMELINE_ROWS`] rows. Event lines only feed histograms,
//! which exist for unfinished sessions only (at most [`LIVE_HIST_SESSIONS`] at a time) and
//! shrink to a few buckets when the session ends; events may name a session before its
//! `session_start`, but at most [`LIVE_HIST_SESSIONS`] such sessions at a time. Timelines
//! and histogram buckets are kept for the [`DETAIL_SESSIONS`] sessions with the most COW,
//! the ones the text report details.
use std::collections::{BTreeMap, HashMap};

use super::{
    session::{EventCounts, IoKind, Session},
    timeline::Row,
};
use crate::{
    events::hist::Hist,
    trace::{
        Item,
        schema::{End, IoEvent, Meta, ProcessRecord, Record, Side, SyncCall, SyncCounts},
    },
};

/// Timeline rows kept per session (samples are merged in pairs beyond that).
pub const TIMELINE_ROWS: usize = 200;
/// Sessions whose timelines and histograms are kept and shown in the text report.
pub const DETAIL_SESSIONS: usize = 16;
/// Unfinished sessions that may have event histograms at the same time, and sessions
/// known only from event lines (no `session_start` yet) at the same time.
pub const LIVE_HIST_SESSIONS: usize = 64;
/// Line-level warnings kept (the rest are counted).
pub const MAX_LINE_WARNINGS: usize = 20;
/// `process` lines kept.
pub const MAX_PROCESSES: usize = 1024;

/// Which sessions a report is about (`report --instance/--kind/--session`); empty
/// fields select everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub instance: Option<String>,
    pub kind: Option<String>,
    pub session: Option<u64>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self == &Filter::default()
    }

    fn matches(&self, s: &Session) -> bool {
        self.instance.as_ref().is_none_or(|i| *i == s.instance())
            && self.kind.as_ref().is_none_or(|k| k == s.kind())
            && self.session.is_none_or(|id| id == s.id)
    }

    /// `--instance A --kind rdb-bgsave`, for the report's header.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(i) = &self.instance {
            parts.push(format!("--instance {i}"));
        }
        if let Some(k) = &self.kind {
            parts.push(format!("--kind {k}"));
        }
        if let Some(n) = self.session {
            parts.push(format!("--session {n}"));
        }
        parts.join(" ")
    }
}

/// Whether to keep reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

#[derive(Debug, Clone)]
pub struct Report {
    /// The input as named on the command line.
    pub source: String,
    pub meta: Meta,
    pub sessions: Vec<Session>,
    index: HashMap<u64, usize>,
    pub processes: Vec<ProcessRecord>,
    pub end: Option<End>,
    end_line_no: Option<u64>,
    lines_after_end: u64,
    pub events: EventCounts,
    /// Event lines outside any session (`session: null`).
    pub events_outside: u64,
    pub unknown_types: BTreeMap<String, u64>,
    /// Line numbers and problems of bad lines (the first [`MAX_LINE_WARNINGS`]).
    line_warnings: Vec<String>,
    line_problems: u64,
    pub bad_lines: u64,
    /// Warnings about the whole trace, made by [`Report::finish`].
    pub warnings: Vec<String>,
    /// The last line read (after the meta line).
    pub last_line: u64,
    pub last_ts_ns: u64,
    live_hists: usize,
    /// Indexes of ended sessions that keep their detail (at most [`DETAIL_SESSIONS`]).
    detailed_ended: Vec<usize>,
    hists_skipped: u64,
    /// Sessions known from event lines only, and event lines left without a session.
    unconfirmed: usize,
    events_unattributed: u64,
    orphan_samples: u64,
    processes_skipped: u64,
    stopped_at: Option<u64>,
    read_error: Option<String>,
    /// The filter applied (`Report::retain`), for the header.
    pub filter: Option<String>,
}

impl Report {
    pub fn new(source: &str, meta: Meta, meta_line: u64) -> Self {
        Self {
            source: source.to_string(),
            meta,
            sessions: Vec::new(),
            index: HashMap::new(),
            processes: Vec::new(),
            end: None,
            end_line_no: None,
            lines_after_end: 0,
            events: EventCounts::default(),
            events_outside: 0,
            unknown_types: BTreeMap::new(),
            line_warnings: Vec::new(),
            line_problems: 0,
            bad_lines: 0,
            warnings: Vec::new(),
            last_line: meta_line,
            last_ts_ns: 0,
            live_hists: 0,
            detailed_ended: Vec::new(),
            hists_skipped: 0,
            unconfirmed: 0,
            events_unattributed: 0,
            orphan_samples: 0,
            processes_skipped: 0,
            stopped_at: None,
            read_error: None,
            filter: None,
        }
    }

    /// The session of a `session_start` or `session_end` line, made if new.
    fn session(&mut self, id: u64) -> &mut Session {
        let i = *self.index.entry(id).or_insert_with(|| {
            self.sessions.push(Session::new(id, true));
            self.sessions.len() - 1
        });
        let s = &mut self.sessions[i];
        if !s.confirmed {
            s.confirmed = true;
            self.unconfirmed -= 1;
        }
        &mut self.sessions[i]
    }

    /// The session of an event line: events come before their session's `session_start`
    /// (up to ~100 ms), so a few sessions may be made by events; `None` beyond that.
    fn event_session(&mut self, id: u64) -> Option<&mut Session> {
        let i = match self.index.get(&id) {
            Some(&i) => i,
            None if self.unconfirmed < LIVE_HIST_SESSIONS => {
                self.unconfirmed += 1;
                self.sessions.push(Session::new(id, false));
                self.index.insert(id, self.sessions.len() - 1);
                self.sessions.len() - 1
            }
            None => {
                self.events_unattributed = self.events_unattributed.saturating_add(1);
                return None;
            }
        };
        Some(&mut self.sessions[i])
    }

    fn line_warning(&mut self, no: u64, text: String) {
        self.line_problems = self.line_problems.saturating_add(1);
        if self.line_warnings.len() < MAX_LINE_WARNINGS {
            self.line_warnings.push(format!("line {no}: {text}"));
        }
    }

    fn ts(&mut self, ts_ns: u64) {
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
    }

    /// A read error after the first line: report what was read before it.
    pub fn read_failed(&mut self, line: u64, error: String) {
        self.read_error = Some(format!(
            "reading stopped at line {line}: {error}; the report covers the lines before it"
        ));
    }

    pub fn add(&mut self, item: Item) -> Flow {
        let (no, line) = match item {
            Item::Bad { no, problem } => {
                self.last_line = no;
                self.bad_lines += 1;
                self.line_warning(no, problem.to_string());
                return Flow::Continue;
            }
            Item::Line { no, line } => (no, line),
        };
        self.last_line = no;
        if self.end.is_some() && !matches!(line, Record::Meta(_)) {
            self.lines_after_end += 1;
        }
        match line {
            Record::Meta(_) => {
                self.stopped_at = Some(no);
                return Flow::Stop;
            }
            Record::SessionStart(s) => {
                self.ts(s.ts_ns);
                let sess = self.session(s.session);
                if sess.start.is_some() {
                    self.line_warning(
                        no,
                        format!(
                            "a second session_start for session {}; the later one is used",
                            s.session
                        ),
                    );
                }
                let id = s.session;
                self.session(id).start = Some(s);
            }
            Record::Sample(s) => {
                self.ts(s.ts_ns);
                // A writer's sample always follows its session's `session_start`.
                let Some(&i) = self.index.get(&s.session) else {
                    self.orphan_samples = self.orphan_samples.saturating_add(1);
                    return Flow::Continue;
                };
                let sess = &mut self.sessions[i];
                sess.samples = sess.samples.saturating_add(1);
                sess.sampled_write_bytes = sess.sampled_write_bytes.saturating_add(s.write_bytes);
                sess.sampled_disk_bytes = sess.sampled_disk_bytes.saturating_add(s.disk_bytes);
                if let Some(t) = &mut sess.timeline {
                    t.push(Row {
                        elapsed_ms: s.elapsed_ms,
                        cow_bytes: s.cow_bytes,
                        parent_pages: s.parent_pages,
                        child_pages: s.child_pages,
                        write_bytes: s.write_bytes,
                        disk_bytes: s.disk_bytes,
                        samples: 1,
                    });
                }
                sess.last_sample = Some(s);
            }
            Record::SessionEnd(e) => {
                let mut e = *e;
                self.ts(e.ts_ns);
                let id = e.session;
                if self.session(id).end.is_some() {
                    self.line_warning(
                        no,
                        format!("a second session_end for session {id}; the later one is used"),
                    );
                }
                let pages = std::mem::take(&mut e.cow.timeline_pages);
                let sess = self.session(id);
                if sess.live.is_some() {
                    sess.freeze_hists();
                    self.live_hists = self.live_hists.saturating_sub(1);
                }
                let sess = self.session(id);
                if let Some(t) = &mut sess.timeline {
                    let mut h = Hist::new();
                    for p in pages {
                        h.record(p);
                    }
                    sess.cow_per_bucket = h.log2_buckets();
                    // A closing row: what happened after the last sample.
                    let (w, d) = t.rows().fold((0u64, 0u64), |(w, d), r| {
                        (
                            w.saturating_add(r.write_bytes),
                            d.saturating_add(r.disk_bytes),
                        )
                    });
                    if t.last().is_none_or(|r| r.elapsed_ms < e.duration_ms) {
                        t.rows.extend(t.pending.take());
                        t.rows.push(Row {
                            elapsed_ms: e.duration_ms,
                            cow_bytes: e.cow.bytes,
                            parent_pages: e.cow.parent_pages,
                            child_pages: e.cow.child_pages,
                            write_bytes: e.writes.bytes.saturating_sub(w),
                            disk_bytes: e.disk.bytes.saturating_sub(d),
                            samples: 0,
                        });
                    }
                }
                sess.end = Some(e);
                if let Some(&i) = self.index.get(&id) {
                    self.limit_detail(i);
                }
            }
            Record::Process(p) => {
                self.ts(p.ts_ns);
                if self.processes.len() < MAX_PROCESSES {
                    self.processes.push(*p);
                } else {
                    self.processes_skipped += 1;
                }
            }
            Record::End(e) => {
                self.ts(e.ts_ns);
                if self.end.is_some() {
                    self.line_warning(no, "a second `end` line; the later one is used".into());
                }
                self.end = Some(e);
                self.end_line_no = Some(no);
            }
            Record::Cow(c) => {
                self.events.cow = self.events.cow.saturating_add(1);
                let child = c.side == Side::Child;
                if child {
                    self.events.cow_child = self.events.cow_child.saturating_add(1);
                } else {
                    self.events.cow_parent = self.events.cow_parent.saturating_add(1);
                }
                match c.session {
                    None => self.events_outside = self.events_outside.saturating_add(1),
                    Some(id) => {
                        let Some(sess) = self.event_session(id) else {
                            return Flow::Continue;
                        };
                        let ev = &mut sess.events;
                        ev.cow = ev.cow.saturating_add(1);
                        if child {
                            ev.cow_child = ev.cow_child.saturating_add(1);
                        } else {
                            ev.cow_parent = ev.cow_parent.saturating_add(1);
                        }
                    }
                }
            }
            Record::ZeroFill(z) => {
                self.events.zero_fill = self.events.zero_fill.saturating_add(1);
                match z.session {
                    None => self.events_outside = self.events_outside.saturating_add(1),
                    Some(id) => {
                        if let Some(sess) = self.event_session(id) {
                            sess.events.zero_fill = sess.events.zero_fill.saturating_add(1);
                        }
                    }
                }
            }
            Record::Write(e) => self.io_event(IoKind::Write, e),
            Record::Fsync(e) => self.io_event(IoKind::Sync, e),
            Record::Io(e) => self.io_event(IoKind::Io, e),
            Record::Unknown(t) => {
                if let Some(n) = self.unknown_types.get_mut(&t) {
                    *n = n.saturating_add(1);
                } else if self.unknown_types.len() < 16 {
                    self.unknown_types.insert(t, 1);
                }
            }
        }
        Flow::Continue
    }

    /// A `write`, `fsync` or `io` line: counted, and into its session's histograms while
    /// the session is open.
    fn io_event(&mut self, kind: IoKind, e: IoEvent) {
        let call = e.call.and_then(SyncCall::index);
        let count = |c: &mut EventCounts| {
            let n = match kind {
                IoKind::Write => &mut c.write,
                IoKind::Sync => &mut c.fsync,
                IoKind::Io => &mut c.io,
            };
            *n = n.saturating_add(1);
            if let Some(i) = call {
                let mut by = c.sync_by_call.to_array();
                by[i] = by[i].saturating_add(1);
                c.sync_by_call = SyncCounts::of(by);
            }
        };
        count(&mut self.events);
        let Some(id) = e.session else {
            self.events_outside = self.events_outside.saturating_add(1);
            return;
        };
        let live_hists = self.live_hists;
        let Some(sess) = self.event_session(id) else {
            return;
        };
        count(&mut sess.events);
        if sess.end.is_some() {
            sess.late_events = sess.late_events.saturating_add(1);
            return;
        }
        if sess.live.is_none() {
            if live_hists >= LIVE_HIST_SESSIONS {
                self.hists_skipped = self.hists_skipped.saturating_add(1);
                return;
            }
            sess.live = Some(Box::default());
            self.live_hists += 1;
        }
        let Some(sess) = self.event_session(id) else {
            return;
        };
        if let Some(h) = sess.live.as_deref_mut() {
            // Whole µs rounded down, as the recorder's own histograms do
            // (`latency_ns / 1000`), so both give the same quantiles. `as`
            // saturates: a negative or huge latency cannot wrap.
            let lat = e.latency_us.floor() as u64;
            match kind {
                IoKind::Write => {
                    h.write_lat_us.record(lat);
                    h.write_size.record(e.bytes);
                }
                IoKind::Sync => {
                    h.fsync_lat_us.record(lat);
                    if let Some(i) = call {
                        h.sync_lat_us[i].record(lat);
                    }
                }
                IoKind::Io => h.disk_lat_us.record(lat),
            }
        }
    }

    /// Keep timelines and histogram buckets of the [`DETAIL_SESSIONS`] sessions with the
    /// most COW: called when session `i` ends, it evicts the smallest of the ended sessions
    /// that still have theirs (open sessions keep theirs until they end). O(DETAIL_SESSIONS).
    fn limit_detail(&mut self, i: usize) {
        if self.detailed_ended.contains(&i) || !self.sessions[i].detailed() {
            return;
        }
        self.detailed_ended.push(i);
        if self.detailed_ended.len() <= DETAIL_SESSIONS {
            return;
        }
        // Smallest COW, and the later session among equals.
        let key = |s: &Session| (s.cow_bytes(), u64::MAX - s.id);
        let Some((pos, _)) = self
            .detailed_ended
            .iter()
            .enumerate()
            .min_by_key(|&(_, &j)| key(&self.sessions[j]))
        else {
            return;
        };
        let j = self.detailed_ended.swap_remove(pos);
        self.sessions[j].drop_detail();
    }

    pub fn get(&self, id: u64) -> Option<&Session> {
        self.index.get(&id).map(|&i| &self.sessions[i])
    }

    /// Run length: the `end` line's, else the span of the timestamps read.
    /// When and how long the trace was recorded, and what ended it, in words.
    pub fn recorded(&self) -> String {
        let mut rec = self
            .meta
            .start_unix_ms
            .map_or("at an unknown time".into(), |ms| {
                crate::text::date::utc(ms, false)
            });
        match (self.duration_ms(), &self.end) {
            (Some(d), Some(e)) => {
                let reason = if e.reason.is_empty() { "?" } else { &e.reason };
                rec.push_str(&format!(
                    ", for {:.1} s, ended by {reason}",
                    d as f64 / 1000.0
                ));
            }
            (Some(d), None) => {
                rec.push_str(&format!(
                    ", for at least {:.1} s (no `end` line)",
                    d as f64 / 1000.0
                ));
            }
            (None, _) => {}
        }
        rec
    }

    pub fn duration_ms(&self) -> Option<u64> {
        match (&self.end, self.meta.start_ts_ns) {
            (Some(e), _) => Some(e.duration_ms),
            (None, Some(s)) if self.last_ts_ns > s => Some((self.last_ts_ns - s) / 1_000_000),
            _ => None,
        }
    }
}

mod finish;
#[cfg(test)]
mod tests;
