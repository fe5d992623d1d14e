//! `serve --trace-dir DIR --keep N`: every ended session as its own trace (the format
//! `record` writes: `meta`, `session_start`, its samples, `session_end`, `end`), mode
//! 0600, the newest N kept. A postmortem exists even when nobody was watching.
use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use crate::trace::{
    TraceWriter,
    schema::{End, Meta, Record, SessionEnd},
};

/// Samples kept for one session: ten hours at one a second. A longer session's trace
/// keeps its first samples and its end (the end line carries the exact totals).
pub const MAX_SAMPLES: usize = 36_000;

/// The prefix of the files this writes; only these are ever pruned.
const PREFIX: &str = "cowtrace-session-";

#[derive(Debug, thiserror::Error)]
pub enum TraceDirError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: crate::trace::TraceError,
    },
    #[error("cannot list {dir} to keep the newest {keep} traces: {source}")]
    List {
        dir: String,
        keep: usize,
        source: std::io::Error,
    },
}

pub struct TraceDir {
    dir: PathBuf,
    keep: usize,
    meta: Option<Meta>,
    open: HashMap<u64, Vec<Record>>,
    pub written: u64,
}

impl TraceDir {
    pub fn new(dir: PathBuf, keep: usize) -> Self {
        Self {
            dir,
            keep: keep.max(1),
            meta: None,
            open: HashMap::new(),
            written: 0,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The run's `meta` line, written at the top of every session's trace.
    pub fn set_meta(&mut self, meta: Meta) {
        self.meta = Some(meta);
    }

    pub fn on_record(&mut self, rec: &Record) -> Result<(), TraceDirError> {
        match rec {
            Record::SessionStart(s) => {
                self.open.insert(s.session, vec![rec.clone()]);
            }
            Record::Sample(s) => {
                if let Some(lines) = self.open.get_mut(&s.session)
                    && lines.len() <= MAX_SAMPLES
                {
                    lines.push(rec.clone());
                }
            }
            Record::SessionEnd(e) => {
                let mut lines = self.open.remove(&e.session).unwrap_or_default();
                lines.push(rec.clone());
                self.write(e, lines)?;
                self.prune()?;
            }
            _ => {}
        }
        Ok(())
    }

    /// `cowtrace-session-<UTC time of the end>-<session>-<server>.jsonl`: sorts by time.
    pub fn file_name(&self, e: &SessionEnd) -> String {
        let ms = match &self.meta {
            Some(m) => match (m.start_unix_ms, m.start_ts_ns) {
                (Some(wall), Some(t0)) => {
                    wall.saturating_add(e.ts_ns.saturating_sub(t0) / 1_000_000)
                }
                _ => 0,
            },
            None => 0,
        };
        let stamp: String = crate::text::date::utc(ms, true)
            .chars()
            .filter(char::is_ascii_digit)
            .collect();
        let server: String = e
            .instance_name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{PREFIX}{stamp}-{}-{server}.jsonl", e.session)
    }

    fn write(&mut self, e: &SessionEnd, lines: Vec<Record>) -> Result<(), TraceDirError> {
        let path = self.dir.join(self.file_name(e));
        let err = |source| TraceDirError::Write {
            path: path.display().to_string(),
            source,
        };
        // The name is new (time and session number); an existing file is replaced.
        let mut w = TraceWriter::open(&path, true).map_err(err)?;
        if let Some(m) = &self.meta {
            w.write(&Record::Meta(Box::new(m.clone()))).map_err(err)?;
        }
        for l in &lines {
            w.write(l).map_err(err)?;
        }
        let start_ns = self.meta.as_ref().and_then(|m| m.start_ts_ns).unwrap_or(0);
        w.write(&Record::End(End {
            sessions: 1,
            ts_ns: e.ts_ns,
            duration_ms: e.ts_ns.saturating_sub(start_ns) / 1_000_000,
            reason: "session-end".into(),
            ..Default::default()
        }))
        .map_err(err)?;
        w.flush().map_err(err)?;
        self.written += 1;
        Ok(())
    }

    /// Remove the oldest of this directory's session traces beyond the newest `keep`.
    fn prune(&self) -> Result<(), TraceDirError> {
        let list = |source| TraceDirError::List {
            dir: self.dir.display().to_string(),
            keep: self.keep,
            source,
        };
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(list)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with(PREFIX) && n.ends_with(".jsonl"))
            .collect();
        names.sort();
        let extra = names.len().saturating_sub(self.keep);
        for n in &names[..extra] {
            let _ = std::fs::remove_file(self.dir.join(n));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::{Sample, SessionKind, SessionStart};

    fn meta() -> Meta {
        Meta {
            format: "cowtrace".into(),
            version: 1,
            start_unix_ms: Some(1_790_000_000_000),
            start_ts_ns: Some(1_000_000_000),
            ..Default::default()
        }
    }

    fn session(d: &mut TraceDir, id: u64) {
        d.on_record(&Record::SessionStart(SessionStart {
            session: id,
            instance: Some("127.0.0.1:6379".into()),
            kind: SessionKind::RdbBgsave,
            ..Default::default()
        }))
        .unwrap();
        d.on_record(&Record::Sample(Sample {
            session: id,
            cow_bytes: 4096,
            ..Default::default()
        }))
        .unwrap();
        let mut e = SessionEnd {
            session: id,
            instance: Some("127.0.0.1:6379".into()),
            kind: SessionKind::RdbBgsave,
            ts_ns: 1_000_000_000 + id * 1_000_000_000,
            ..Default::default()
        };
        e.cow.bytes = 4096 * id;
        d.on_record(&Record::SessionEnd(Box::new(e))).unwrap();
    }

    #[test]
    fn each_session_is_a_whole_trace_and_the_newest_are_kept() {
        let dir = std::env::temp_dir().join(format!("cowtrace-tracedir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let other = dir.join("notes.txt");
        std::fs::write(&other, "mine").unwrap();
        let mut d = TraceDir::new(dir.clone(), 2);
        d.set_meta(meta());
        for id in 1..=3 {
            session(&mut d, id);
        }
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        names.sort();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names[0].contains("-2-127.0.0.1_6379"), "{names:?}");
        assert!(
            names[0].starts_with("cowtrace-session-20260921"),
            "{names:?}"
        );
        assert!(other.exists(), "other files are never pruned");
        // Each one reads as a trace with its session and an end.
        let r = crate::report::read_path(&dir.join(&names[1])).unwrap();
        assert_eq!(r.sessions.len(), 1);
        assert_eq!(r.sessions[0].cow_bytes(), 3 * 4096);
        assert!(r.end.is_some() && r.warnings.is_empty(), "{:?}", r.warnings);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(&names[1]))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unwritable_dir_is_an_error_naming_it() {
        let mut d = TraceDir::new(PathBuf::from("/proc/no-such-dir"), 3);
        d.set_meta(meta());
        d.on_record(&Record::SessionStart(SessionStart {
            session: 1,
            ..Default::default()
        }))
        .unwrap();
        let e = d
            .on_record(&Record::SessionEnd(Box::new(SessionEnd {
                session: 1,
                ..Default::default()
            })))
            .unwrap_err();
        assert!(e.to_string().contains("/proc/no-such-dir"), "{e}");
    }
}
