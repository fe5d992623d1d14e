//! The end of the fold: sessions ordered, histograms closed, what is missing or wrong
//! about the trace as a whole, and the `report --instance/--kind/--session` filter.
use super::*;

impl Report {
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
        self.reindex();
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
        self.reindex();
        self.filter = Some(f.describe());
        Ok(())
    }

    /// The session index, after the sessions were sorted or filtered.
    fn reindex(&mut self) {
        self.index = self
            .sessions
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
    }
}
