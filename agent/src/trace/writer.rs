//! The trace writer: JSON Lines to a file or stdout.
//!
//! New files are created with mode 0600 (a trace names processes and files of the host).
//! An existing path such as /dev/null or a FIFO is opened as it is and its mode is never
//! changed. The writer flushes at every interval, so a killed agent loses at most the
//! last interval; the `end` line is written on every clean exit.
use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TraceError {
    #[error("cannot open trace output {path}: {source}; choose a writable path with -o")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot write trace output {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

pub struct TraceWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    path: PathBuf,
    /// True once stdout's reader has gone away (EPIPE): stop quietly.
    pub broken_pipe: bool,
}

impl TraceWriter {
    /// `-` is stdout. Opened before anything is attached, so a bad path fails early.
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            let f: File = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| TraceError::Open {
                    path: path.to_path_buf(),
                    source,
                })?;
            Box::new(f)
        };
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, out),
            path: path.to_path_buf(),
            broken_pipe: false,
        })
    }

    pub fn write<T: Serialize>(&mut self, rec: &T) -> Result<(), TraceError> {
        if self.broken_pipe {
            return Ok(());
        }
        let r = serde_json::to_writer(&mut self.out, rec)
            .map_err(io::Error::from)
            .and_then(|()| self.out.write_all(b"\n"));
        self.check(r)
    }

    pub fn flush(&mut self) -> Result<(), TraceError> {
        if self.broken_pipe {
            return Ok(());
        }
        let r = self.out.flush();
        self.check(r)
    }

    /// When writing to stdout, notice that its reader has gone (`| head -1`) even if
    /// nothing was written since: a pipe whose read end is closed polls as POLLERR.
    pub fn check_peer(&mut self) {
        if self.path != Path::new("-") || self.broken_pipe {
            return;
        }
        let mut pfd = libc::pollfd {
            fd: 1,
            events: 0,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n > 0 && pfd.revents & (libc::POLLERR | libc::POLLHUP) != 0 {
            self.broken_pipe = true;
        }
    }

    fn check(&mut self, r: io::Result<()>) -> Result<(), TraceError> {
        match r {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.broken_pipe = true;
                Ok(())
            }
            Err(source) => Err(TraceError::Write {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_file_is_0600_and_lines_are_json() {
        let p = std::env::temp_dir().join(format!("cowtrace-trace-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&p);
        let mut w = TraceWriter::open(&p).unwrap();
        w.write(&serde_json::json!({"type":"meta","version":1}))
            .unwrap();
        w.write(&serde_json::json!({"type":"end"})).unwrap();
        w.flush().unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(mode, 0o600);
        assert_eq!(
            text,
            "{\"type\":\"meta\",\"version\":1}\n{\"type\":\"end\"}\n"
        );
    }

    #[test]
    fn dev_null_keeps_its_mode() {
        let before = std::fs::metadata("/dev/null").unwrap().permissions().mode();
        let mut w = TraceWriter::open(Path::new("/dev/null")).unwrap();
        w.write(&1).unwrap();
        w.flush().unwrap();
        assert_eq!(
            std::fs::metadata("/dev/null").unwrap().permissions().mode(),
            before
        );
    }

    #[test]
    fn unwritable_path_names_the_path() {
        let e = TraceWriter::open(Path::new("/nonexistent-dir/t.jsonl"))
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("/nonexistent-dir/t.jsonl") && msg.contains("-o"),
            "{msg}"
        );
    }
}
