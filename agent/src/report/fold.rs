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

    /// At the end: the same among all sessions, ended or not.
    fn limit_detail_all(&mut self) {
        let mut cands: Vec<(u64, u64, usize)> = self
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, s)| s.detailed())
            .map(|(i, s)| (s.cow_bytes(), u64::MAX - s.id, i))
            .collect();
        if cands.len() <= DETAIL_SESSIONS {
            return;
        }
        cands.sort_unstable_by(|a, b| b.cmp(a));
        for &(_, _, i) in &cands[DETAIL_SESSIONS..] {
            self.sessions[i].drop_detail();
        }
    }

    /// After the last line: order sessions, close open histograms, and say what is
    /// missing or wrong about the trace as a whole.
    pub fn finish(&mut self) {
        self.sessions.sort_by_key(|s| s.id);
        self.index = self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        for s in &mut self.sessions {
            s.freeze_hists();
        }
        self.live_hists = 0;
        self.detailed_ended.clear();
        self.limit_detail_all();

        let mut w = Vec::new();
        let n = self.sessions.len();
        let unfinished = self.sessions.iter().filter(|s| s.end.is_none()).count();
        if let Some(e) = self.end.as_ref().filter(|e| e.lost_events > 0) {
            w.push(format!(
                "LOST EVENTS: {} ({} COW/I-O detail, {} session: ring buffer full); totals are exact, per-event detail (quantiles, histograms{}) is not",
                e.lost_events,
                e.lost_detail_events,
                e.lost_session_events,
                if self.events.total() > 0 { ", --events lines" } else { "" }
            ));
        }
        if let Some(e) = &self.read_error {
            w.push(e.clone());
        }
        if let Some(no) = self.stopped_at {
            w.push(format!(
                "line {no} starts another trace (a second `meta` line: files concatenated?); only the first trace is reported"
            ));
        }
        match &self.end {
            None => w.push(format!(
                "trace ends without an `end` line (cowtrace was killed, or is still recording?): {n} session(s) shown{}",
                if unfinished > 0 {
                    format!(", {unfinished} without a `session_end` (their figures are from their last sample)")
                } else {
                    String::new()
                }
            )),
            Some(e) => {
                if unfinished > 0 {
                    w.push(format!(
                        "{unfinished} session(s) have no `session_end` line although the trace has an `end` line; their figures are from their last sample"
                    ));
                }
                let started = self.sessions.iter().filter(|s| s.start.is_some()).count() as u64;
                if e.sessions != started {
                    w.push(format!("the `end` line counts {} session(s) but the trace has {started} `session_start` line(s)", e.sessions));
                }
                if e.decode_errors > 0 {
                    w.push(format!("{} kernel record(s) failed validation while recording (decode_errors)", e.decode_errors));
                }
            }
        }
        if self.lines_after_end > 0 {
            w.push(format!(
                "{} line(s) after the `end` line (line {})",
                self.lines_after_end,
                self.end_line_no.unwrap_or(0)
            ));
        }
        if self.bad_lines > 0 {
            w.push(format!("{} unreadable line(s) skipped", self.bad_lines));
        }
        w.extend(self.line_warnings.iter().cloned());
        let listed = self.line_warnings.len() as u64;
        if self.line_problems > listed {
            w.push(format!(
                "... and {} more line problem(s) not listed",
                self.line_problems - listed
            ));
        }
        if !self.unknown_types.is_empty() {
            let list: Vec<String> = self
                .unknown_types
                .iter()
                .map(|(t, n)| format!("{t} ({n})"))
                .collect();
            w.push(format!(
                "line types this cowtrace does not know were skipped: {}",
                list.join(", ")
            ));
        }
        if self.hists_skipped > 0 {
            w.push(format!(
                "{} event line(s) left out of histograms: more than {LIVE_HIST_SESSIONS} sessions were open at once",
                self.hists_skipped
            ));
        }
        let late: u64 = self.sessions.iter().map(|s| s.late_events).sum();
        if late > 0 {
            w.push(format!("{late} event line(s) came after their session's end and are left out of its histograms"));
        }
        if self.orphan_samples > 0 {
            w.push(format!(
                "{} `sample` line(s) of sessions without a `session_start` were skipped",
                self.orphan_samples
            ));
        }
        if self.events_unattributed > 0 {
            w.push(format!(
                "{} event line(s) were not attributed: they name more than {LIVE_HIST_SESSIONS} sessions without a `session_start` at once",
                self.events_unattributed
            ));
        }
        if self.processes_skipped > 0 {
            w.push(format!(
                "{} `process` line(s) beyond the first {MAX_PROCESSES} were skipped",
                self.processes_skipped
            ));
        }
        self.warnings = w;
    }

    /// Keep only the sessions `f` selects (and, with `--instance`, that server's
    /// `process` lines). An error names what the trace has when nothing matches.
    pub fn retain(&mut self, f: &Filter) -> Result<(), String> {
        if f.is_empty() {
            return Ok(());
        }
        let mut names: Vec<String> = self.sessions.iter().map(Session::instance).collect();
        names.sort();
        names.dedup();
        self.sessions.retain(|s| f.matches(s));
        if self.sessions.is_empty() {
            return Err(format!(
                "no session in {} matches {}; its servers: {}",
                self.source,
                f.describe(),
                if names.is_empty() {
                    "none (no session at all)".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
        if let Some(i) = &f.instance {
            self.processes.retain(|p| {
                p.instance
                    .clone()
                    .unwrap_or_else(|| format!("pid {}", p.pid))
                    == *i
            });
        }
        self.index = self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        self.filter = Some(f.describe());
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(lines: &[String]) -> Report {
        let meta = r#"{"type":"meta","format":"cowtrace","version":1,"start_ts_ns":1000000000,"interval_ms":1000}"#;
        let text = format!("{meta}\n{}\n", lines.join("\n"));
        crate::report::read("t", text.as_bytes()).unwrap()
    }

    fn end_line(id: u64, cow_pages: u64) -> String {
        format!(
            r#"{{"type":"session_end","session":{id},"kind":"rdb-bgsave","duration_ms":500,"exit_code":0,"complete":true,"cow":{{"pages":{cow_pages},"bytes":{},"timeline_pages":[{cow_pages},0,0]}},"writes":{{"bytes":100,"calls":1,"files":[]}},"disk":{{"bytes":4096,"ios":1}}}}"#,
            cow_pages * 4096
        )
    }

    fn end_of_run(sessions: u64) -> String {
        format!(
            r#"{{"type":"end","sessions":{sessions},"lost_events":0,"duration_ms":2000,"reason":"signal"}}"#
        )
    }

    #[test]
    fn sync_lines_by_call_and_zero_fills_are_counted_apart() {
        let r = fold(&[
            r#"{"type":"session_start","session":1,"parent_pid":10,"child_pid":11,"kind":"rdb-bgsave","ts_ns":1100000000}"#.into(),
            r#"{"type":"cow","session":1,"ts_ns":1,"pid":10,"tid":10,"addr":4096,"order":0,"side":"parent"}"#.into(),
            r#"{"type":"zero_fill","session":1,"ts_ns":1,"pid":11,"tid":11,"addr":8192,"order":0,"side":"child"}"#.into(),
            r#"{"type":"zero_fill","session":null,"ts_ns":1,"pid":10,"tid":10,"addr":8192,"order":0,"side":"parent"}"#.into(),
            r#"{"type":"fsync","session":1,"ts_ns":2,"latency_us":3.9,"call":"sync_file_range"}"#.into(),
            r#"{"type":"fsync","session":1,"ts_ns":3,"latency_us":4.2,"call":"sync_file_range"}"#.into(),
            r#"{"type":"fsync","session":1,"ts_ns":4,"latency_us":25000.0,"call":"fsync"}"#.into(),
            r#"{"type":"fsync","session":1,"ts_ns":5,"latency_us":900.0,"call":"fdatasync"}"#.into(),
            end_line(1, 1),
            end_of_run(1),
        ]);
        let s = &r.sessions[0];
        assert_eq!((s.events.cow, s.events.zero_fill), (1, 1));
        assert_eq!((r.events.zero_fill, r.events_outside), (2, 1));
        assert_eq!(s.events.fsync, 4);
        assert_eq!(s.events.sync_calls(), Some([1, 1, 2]));
        let h = s.hists.as_ref().unwrap();
        let [f, d, sfr] = h.sync_latency_us.each();
        assert_eq!(
            (
                f.quantiles.max,
                d.quantiles.max,
                sfr.quantiles.count,
                sfr.quantiles.max
            ),
            (25000, 900, 2, 4)
        );
        assert_eq!(h.fsync_latency_us.quantiles.count, 4, "every call together");
        // The text names the calls and draws a histogram per call.
        let text = crate::report::render::text(&r);
        assert!(
            text.contains("4 sync (fsync 1, fdatasync 1, sync_file_range 2), 0 io, 1 cow: 1 parent, 0 child, 1 zero_fill"),
            "{text}"
        );
        for t in [
            "fsync latency (count 1",
            "fdatasync latency (count 1",
            "sync_file_range latency (count 2",
        ] {
            assert!(text.contains(t), "{t}: {text}");
        }
        // Without `call` (older traces) the lines are counted, not split.
        let r = fold(&[
            r#"{"type":"session_start","session":1,"parent_pid":10,"child_pid":11,"kind":"rdb-bgsave","ts_ns":1100000000}"#.into(),
            r#"{"type":"fsync","session":1,"ts_ns":2,"latency_us":3.9}"#.into(),
            end_line(1, 1),
            end_of_run(1),
        ]);
        assert_eq!((r.events.fsync, r.events.sync_calls()), (1, None));
        let text = crate::report::render::text(&r);
        assert!(
            text.contains("fsync/fdatasync/sync_file_range latency (count 1"),
            "{text}"
        );
    }

    #[test]
    fn events_before_their_session_start_count() {
        let r = fold(&[
            r#"{"type":"write","session":1,"ts_ns":1,"bytes":4096,"latency_us":9.6}"#.into(),
            r#"{"type":"write","session":null,"ts_ns":1,"bytes":10,"latency_us":1}"#.into(),
            r#"{"type":"session_start","session":1,"parent_pid":10,"child_pid":11,"kind":"rdb-bgsave","ts_ns":1100000000}"#.into(),
            r#"{"type":"sample","session":1,"ts_ns":2000000000,"elapsed_ms":300,"cow_bytes":8192,"write_bytes":60}"#.into(),
            r#"{"type":"fsync","session":1,"ts_ns":2,"bytes":0,"latency_us":700.2}"#.into(),
            end_line(1, 3),
            r#"{"type":"write","session":1,"ts_ns":3,"bytes":1,"latency_us":1}"#.into(),
            end_of_run(1),
        ]);
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("1 event line(s) came after")),
            "{:?}",
            r.warnings
        );
        assert_eq!(r.sessions.len(), 1);
        let s = &r.sessions[0];
        assert_eq!(
            (
                s.events.write,
                s.events.fsync,
                s.late_events,
                r.events_outside
            ),
            (2, 1, 1, 1)
        );
        let h = s.hists.as_ref().unwrap();
        assert_eq!(
            (
                h.write_latency_us.quantiles.count,
                h.write_latency_us.quantiles.max
            ),
            (1, 9)
        );
        assert_eq!(h.fsync_latency_us.quantiles.p50, 700);
        assert_eq!(
            s.cow_per_bucket,
            [(1, 2), (2, 1)],
            "two empty buckets (as 1) and one of 3 pages"
        );
        // The closing row carries what happened after the last sample.
        let rows: Vec<Row> = s.timeline.as_ref().unwrap().rows().copied().collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[1].elapsed_ms,
                rows[1].cow_bytes,
                rows[1].write_bytes,
                rows[1].disk_bytes
            ),
            (500, 12288, 40, 4096)
        );
        let t = r.totals();
        assert_eq!(
            (
                t.sessions,
                t.sessions_ended,
                t.cow_pages,
                t.write_bytes,
                t.lost_events
            ),
            (1, 1, 3, 100, Some(0))
        );
    }

    #[test]
    fn detail_is_kept_for_the_largest_sessions_only() {
        let n = DETAIL_SESSIONS as u64 + 5;
        let mut lines = Vec::new();
        for id in 1..=n {
            lines.push(format!(
                r#"{{"type":"session_start","session":{id},"kind":"fork"}}"#
            ));
            lines.push(format!(
                r#"{{"type":"sample","session":{id},"elapsed_ms":100,"cow_bytes":4096}}"#
            ));
            // Sessions 1..=5 copy the least.
            lines.push(end_line(id, id * 10));
        }
        lines.push(end_of_run(n));
        let r = fold(&lines);
        let detailed: Vec<u64> = r
            .sessions
            .iter()
            .filter(|s| s.detailed())
            .map(|s| s.id)
            .collect();
        assert_eq!(detailed, (6..=n).collect::<Vec<_>>());
        assert!(
            r.sessions.iter().all(|s| s.end.is_some()),
            "summaries of every session are kept"
        );
        assert_eq!(r.totals().cow_pages, (1..=n).map(|i| i * 10).sum::<u64>());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn open_session_histograms_are_capped() {
        let mut lines = Vec::new();
        for id in 0..(LIVE_HIST_SESSIONS as u64 + 3) {
            lines.push(format!(r#"{{"type":"session_start","session":{id}}}"#));
            lines.push(format!(
                r#"{{"type":"io","session":{id},"bytes":4096,"latency_us":50}}"#
            ));
        }
        let r = fold(&lines);
        assert_eq!(r.sessions.len(), LIVE_HIST_SESSIONS + 3);
        assert_eq!(
            r.sessions.iter().filter(|s| s.hists.is_some()).count(),
            LIVE_HIST_SESSIONS
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("3 event line(s) left out of histograms")),
            "{:?}",
            r.warnings
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("without an `end` line")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn sessions_are_made_by_their_lines_not_by_any_number() {
        let mut lines = Vec::new();
        for id in 0..(LIVE_HIST_SESSIONS as u64 + 3) {
            lines.push(format!(r#"{{"type":"cow","session":{id},"side":"child"}}"#));
            lines.push(format!(r#"{{"type":"sample","session":{}}}"#, id + 1000));
        }
        // A session seen first in events becomes a real one with its session_start.
        lines.push(r#"{"type":"session_start","session":0,"kind":"rdb-bgsave"}"#.into());
        lines.push(r#"{"type":"cow","session":1000,"side":"child"}"#.into());
        let r = fold(&lines);
        assert_eq!(
            r.sessions.len(),
            LIVE_HIST_SESSIONS + 1,
            "events made 64 sessions, then one more after a start"
        );
        assert_eq!(
            (r.get(0).unwrap().kind(), r.get(0).unwrap().events.cow_child),
            ("rdb-bgsave", 1)
        );
        let w = r.warnings.join("\n");
        assert!(w.contains("3 event line(s) were not attributed"), "{w}");
        assert!(
            w.contains("67 `sample` line(s) of sessions without a `session_start` were skipped"),
            "{w}"
        );
    }

    #[test]
    fn a_second_trace_stops_the_report() {
        let r = fold(&[
            end_line(1, 1),
            end_of_run(0),
            r#"{"type":"meta","format":"cowtrace","version":1}"#.into(),
            end_line(2, 1),
        ]);
        assert_eq!(r.sessions.len(), 1);
        let w = r.warnings.join("\n");
        assert!(w.contains("line 4 starts another trace"), "{w}");
        assert!(
            w.contains("the `end` line counts 0 session(s) but the trace has 0 `session_start`")
                || !w.contains("counts"),
            "{w}"
        );
    }

    #[test]
    fn duplicates_and_lines_after_end_are_noted() {
        let r = fold(&[
            end_line(1, 1),
            end_line(1, 2),
            end_of_run(0),
            r#"{"type":"sample","session":1}"#.into(),
        ]);
        let w = r.warnings.join("\n");
        assert!(
            w.contains("line 3: a second session_end for session 1"),
            "{w}"
        );
        assert!(w.contains("1 line(s) after the `end` line (line 4)"), "{w}");
        assert_eq!(
            r.totals().cow_pages,
            2,
            "the later session_end counts, once"
        );
    }

    #[test]
    fn hostile_numbers_saturate() {
        let big = u64::MAX;
        let r = fold(&[
            format!(
                r#"{{"type":"session_end","session":1,"duration_ms":{big},"cow":{{"pages":{big},"bytes":{big},"timeline_pages":[{big},{big}]}},"writes":{{"bytes":{big}}}}}"#
            ),
            format!(
                r#"{{"type":"session_end","session":2,"cow":{{"pages":{big},"bytes":{big}}},"writes":{{"bytes":{big}}}}}"#
            ),
            format!(r#"{{"type":"write","session":3,"bytes":{big},"latency_us":1e300}}"#),
            r#"{"type":"write","session":3,"bytes":0,"latency_us":-5}"#.to_string(),
        ]);
        assert_eq!(r.totals().cow_pages, big);
        let text = crate::report::render(&r, crate::report::Format::Text);
        assert!(text.contains("Session 1"), "{text}");
        let html = crate::report::render(&r, crate::report::Format::Html);
        assert!(html.contains("Session 1") && html.ends_with("</html>\n"));
        let json = crate::report::render(&r, crate::report::Format::Json);
        assert!(
            json.contains("\"cow_pages\": 18446744073709551615"),
            "{json}"
        );
    }
}
