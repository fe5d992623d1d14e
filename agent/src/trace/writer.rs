//! The trace writer: JSON Lines to a file or stdout.
//!
//! New files are created with mode 0600 (a trace names processes and files of the host).
//! An existing regular file is refused unless the caller asks to overwrite it (`record
//! --force`), as the shell's `noclobber` does: a trace of an incident is not lost to a
//! second run with the same `-o`. An existing path such as /dev/null or a FIFO is opened
//! as it is and its mode is never changed. The writer flushes at every interval, so a
//! killed agent loses at most the last interval; the `end` line is written on every clean
//! exit.
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
    /// The io::Error is in the message (as the missing directory when that is the
    /// cause), not a `source`: the chain would say it twice.
    #[error(
        "cannot open trace output {path}: {}; choose a writable path with -o",
        why(path, error)
    )]
    Open { path: PathBuf, error: io::Error },
    #[error(
        "trace output {path} already exists ({size} bytes); cowtrace does not overwrite it: \
         choose another path with -o, or add --force to replace it"
    )]
    Exists { path: PathBuf, size: u64 },
    #[error("cannot write trace output {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Why `path` could not be created, in words: a missing directory is named.
fn why(path: &Path, e: &io::Error) -> String {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    match dir {
        Some(d) if e.kind() == io::ErrorKind::NotFound && !d.exists() => {
            format!("directory {} does not exist", d.display())
        }
        _ => e.to_string(),
    }
}

pub struct TraceWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    path: PathBuf,
    /// True once stdout's reader has gone away (EPIPE): stop quietly.
    pub broken_pipe: bool,
}

/// Open `path` for a new trace: created 0600; an existing regular file only with
/// `force` (then truncated); anything else that exists (a device, a FIFO) as it is.
fn create(path: &Path, force: bool) -> Result<File, TraceError> {
    let open_err = |error| TraceError::Open {
        path: path.to_path_buf(),
        error,
    };
    let mut o = OpenOptions::new();
    o.write(true).mode(0o600);
    if force {
        return o.create(true).truncate(true).open(path).map_err(open_err);
    }
    match o.clone().create_new(true).open(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let meta = std::fs::metadata(path).map_err(open_err)?;
            if meta.is_file() {
                return Err(TraceError::Exists {
                    path: path.to_path_buf(),
                    size: meta.len(),
                });
            }
            o.open(path).map_err(open_err)
        }
        r => r.map_err(open_err),
    }
}

impl TraceWriter {
    /// `-` is stdout. Opened before anything is attached, so a bad path fails early. An
    /// existing regular file is refused unless `force`.
    pub fn open(path: &Path, force: bool) -> Result<Self, TraceError> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(create(path, force)?)
        };
        Ok(Self {
            out: BufWriter::with_capacity(64 * 1024, out),
            path: path.to_path_buf(),
            broken_pipe: false,
        })
    }

    /// Where the trace goes (`-` for stdout).
    pub fn path(&self) -> &Path {
        &self.path
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
        let mut w = TraceWriter::open(&p, false).unwrap();
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
        let mut w = TraceWriter::open(Path::new("/dev/null"), false).unwrap();
        w.write(&1).unwrap();
        w.flush().unwrap();
        assert_eq!(
            std::fs::metadata("/dev/null").unwrap().permissions().mode(),
            before
        );
    }

    #[test]
    fn unwritable_path_names_the_path_and_the_missing_directory_once() {
        let e = TraceWriter::open(Path::new("/nonexistent-dir/t.jsonl"), false)
            .err()
            .unwrap();
        // The io::Error is not a `source`: this is the whole chain.
        assert!(std::error::Error::source(&e).is_none());
        let msg = e.to_string();
        assert_eq!(
            msg,
            "cannot open trace output /nonexistent-dir/t.jsonl: directory /nonexistent-dir \
             does not exist; choose a writable path with -o"
        );
    }

    #[test]
    fn an_existing_file_is_kept_unless_forced() {
        let p = std::env::temp_dir().join(format!("cowtrace-keep-{}.jsonl", std::process::id()));
        std::fs::write(&p, b"an earlier trace\n").unwrap();
        let e = TraceWriter::open(&p, false).err().unwrap();
        let msg = e.to_string();
        assert!(
            matches!(e, TraceError::Exists { size: 17, .. })
                && msg.contains(&p.display().to_string())
                && msg.contains("already exists (17 bytes)")
                && msg.contains("--force"),
            "{msg}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), b"an earlier trace\n");
        let mut w = TraceWriter::open(&p, true).unwrap();
        w.write(&serde_json::json!({"type":"end"})).unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::remove_file(&p).unwrap();
        assert_eq!(text, "{\"type\":\"end\"}\n");
    }
}
