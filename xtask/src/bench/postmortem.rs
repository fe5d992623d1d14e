//! Section 6: `cowtrace report` on large traces (issue 16). Two synthetic traces in the
//! format `record` writes: a day of saves (one a minute, each with its samples) and one
//! save recorded with `--events` (millions of `cow` and `write` lines). Each is reported
//! as text and as `--html`; the figures are the wall time, the peak RSS of the report
//! process (from wait4's rusage) and the size of what it printed. The report folds the
//! lines as it reads them and keeps bounded detail, so the page's size must not grow with
//! the trace's.
use anyhow::{Context as _, Result, bail};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One synthetic trace.
pub struct Case {
    pub name: &'static str,
    pub what: String,
    pub lines: u64,
    pub bytes: u64,
}

/// One `cowtrace report` of a case.
pub struct Run {
    pub format: &'static str,
    pub secs: f64,
    pub max_rss_bytes: u64,
    pub out_bytes: u64,
}

pub struct Results {
    pub cases: Vec<(Case, Vec<Run>)>,
}

const META: &str = r#"{"type":"meta","format":"cowtrace","version":1,"cowtrace_version":"0.1.0","host":"bench","kernel":"6.18","attach":{"method":"tracepoint"},"targets":"pids","pids":[1000],"start_unix_ms":1790000000000,"start_ts_ns":1000000000,"interval_ms":1000,"page_size":4096,"thp":"madvise","overcommit_memory":1}"#;

/// Writes lines, counting them.
struct Lines {
    w: std::io::BufWriter<std::fs::File>,
    n: u64,
}

impl Lines {
    fn create(path: &Path) -> Result<Lines> {
        let f =
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut l = Lines {
            w: std::io::BufWriter::with_capacity(1 << 20, f),
            n: 0,
        };
        l.line(META)?;
        Ok(l)
    }

    fn line(&mut self, s: &str) -> Result<()> {
        self.w.write_all(s.as_bytes())?;
        self.w.write_all(b"\n")?;
        self.n += 1;
        Ok(())
    }

    fn finish(mut self, sessions: u64, ts_ns: u64) -> Result<u64> {
        self.line(&format!(
            r#"{{"type":"end","sessions":{sessions},"lost_events":0,"lost_cow_events":0,"lost_session_events":0,"decode_errors":0,"ts_ns":{ts_ns},"duration_ms":{},"reason":"signal"}}"#,
            (ts_ns - 1_000_000_000) / 1_000_000
        ))?;
        self.w.flush()?;
        Ok(self.n)
    }
}

/// One session's lines: start, a sample a second, the end; with `events`, that many
/// `cow` lines and a tenth as many `write` lines spread over the save.
fn session(out: &mut Lines, id: u64, t0_ns: u64, secs: u64, events: u64) -> Result<u64> {
    let child = 2000 + id;
    let pages_per_s = 2_500u64;
    out.line(&format!(
        r#"{{"type":"session_start","session":{id},"instance":"127.0.0.1:6379","parent_pid":1000,"child_pid":{child},"kind":"rdb-bgsave","ts_ns":{t0_ns},"fork_us":2500.0,"title":"redis-rdb-bgsave 127.0.0.1:6379","parent_rss_bytes":1073741824}}"#
    ))?;
    let per_sec = events / secs.max(1);
    for s in 1..=secs {
        for e in 0..per_sec {
            let ts = t0_ns + (s - 1) * 1_000_000_000 + e * (1_000_000_000 / per_sec.max(1));
            out.line(&format!(
                r#"{{"type":"cow","session":{id},"ts_ns":{ts},"pid":1000,"tid":1000,"addr":{},"order":0,"side":"parent"}}"#,
                0x7f00_0000_0000u64 + e * 4096
            ))?;
            if e % 10 == 0 {
                out.line(&format!(
                    r#"{{"type":"write","session":{id},"ts_ns":{ts},"pid":{child},"bytes":4096,"latency_us":{}.5,"dev":2049,"ino":77,"fd":6}}"#,
                    5 + e % 50
                ))?;
            }
        }
        let pages = pages_per_s * s;
        out.line(&format!(
            r#"{{"type":"sample","session":{id},"instance":"127.0.0.1:6379","ts_ns":{},"elapsed_ms":{},"cow_pages":{pages},"cow_bytes":{},"parent_pages":{pages},"child_pages":0,"cow_pages_delta":{pages_per_s},"cow_pages_per_s":{pages_per_s}.0,"write_bytes":20971520,"disk_bytes":20971520}}"#,
            t0_ns + s * 1_000_000_000,
            s * 1000,
            pages * 4096
        ))?;
    }
    let pages = pages_per_s * secs;
    let buckets: Vec<String> = (0..secs * 10)
        .map(|_| (pages_per_s / 10).to_string())
        .collect();
    let end_ns = t0_ns + secs * 1_000_000_000;
    out.line(&format!(
        r#"{{"type":"session_end","session":{id},"instance":"127.0.0.1:6379","parent_pid":1000,"child_pid":{child},"kind":"rdb-bgsave","ts_ns":{end_ns},"duration_ms":{},"exit_code":0,"complete":true,"cow":{{"pages":{pages},"bytes":{},"parent_pages":{pages},"child_pages":0,"copies_4k":{pages},"parent_rss_at_fork_bytes":1073741824,"pct_of_parent_rss":{:.1},"peak_pages_per_s":{pages_per_s}.0,"timeline_bucket_ms":100,"timeline_pages":[{}]}},"writes":{{"calls":{},"bytes":{},"files":[{{"path":"/var/lib/redis/temp-{child}.rdb","renamed_to":"/var/lib/redis/dump.rdb","bytes":{},"calls":{}}}]}},"fsync":{{"calls":2,"total_ms":40.0}},"disk":{{"bytes":{},"ios":{}}}}}"#,
        secs * 1000,
        pages * 4096,
        pages as f64 * 4096.0 * 100.0 / 1073741824.0,
        buckets.join(","),
        secs * 5120,
        secs * 20_971_520,
        secs * 20_971_520,
        secs * 5120,
        secs * 20_971_520,
        secs * 40,
    ))?;
    Ok(end_ns)
}

/// The traces: (name, description, sessions, seconds a save, events a save).
fn plan(quick: bool) -> Vec<(&'static str, String, u64, u64, u64)> {
    let (day, events) = if quick {
        (60, 100_000)
    } else {
        (1440, 2_000_000)
    };
    vec![
        (
            "day",
            format!("{day} saves of 30 s, one a minute (a day of saves), a sample a second"),
            day,
            30,
            0,
        ),
        (
            "events",
            format!(
                "one save of 200 s recorded with --events: {events} `cow` lines and {} `write` lines",
                events / 10
            ),
            1,
            200,
            events,
        ),
    ]
}

fn generate(path: &Path, sessions: u64, secs: u64, events: u64) -> Result<u64> {
    let mut out = Lines::create(path)?;
    let mut t = 2_000_000_000u64;
    for id in 1..=sessions {
        t = session(&mut out, id, t, secs, events)? + 30_000_000_000;
    }
    out.finish(sessions, t)
}

/// Run `cowtrace report ARGS`, its stdout to a file; wall time and peak RSS.
fn measure(cowtrace: &Path, args: &[&str], out: &Path) -> Result<(f64, u64)> {
    let file = std::fs::File::create(out)?;
    let t = Instant::now();
    let child = Command::new(cowtrace)
        .arg("report")
        .args(args)
        .stdout(Stdio::from(file))
        .stderr(Stdio::null())
        .spawn()
        .context("running cowtrace report")?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child, with valid pointers to locals; it reaps the child,
    // so `child` is not waited for again (dropping a Child does not wait).
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = t.elapsed().as_secs_f64();
    if r != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
        bail!("cowtrace report {args:?} failed (status {status})");
    }
    // ru_maxrss is in KiB on Linux.
    Ok((secs, u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024))
}

pub fn run(cowtrace: &Path, tmp: &Path, quick: bool) -> Result<Results> {
    let mut cases = Vec::new();
    for (name, what, sessions, secs, events) in plan(quick) {
        let path: PathBuf = tmp.join(format!("{name}.jsonl"));
        let lines = generate(&path, sessions, secs, events)?;
        let bytes = std::fs::metadata(&path)?.len();
        println!(
            "[bench] {name}: {lines} lines, {:.0} MiB",
            bytes as f64 / (1 << 20) as f64
        );
        let mut runs = Vec::new();
        for (format, flag) in [("text", None), ("html", Some("--html"))] {
            let out = tmp.join(format!("{name}.{format}"));
            let trace = path.to_string_lossy().into_owned();
            let args: Vec<&str> = flag.into_iter().chain([trace.as_str()]).collect();
            let (secs, max_rss_bytes) = measure(cowtrace, &args, &out)?;
            let out_bytes = std::fs::metadata(&out)?.len();
            println!(
                "[bench]   report {format}: {secs:.2} s, {} KiB out",
                out_bytes / 1024
            );
            runs.push(Run {
                format,
                secs,
                max_rss_bytes,
                out_bytes,
            });
            let _ = std::fs::remove_file(&out);
        }
        let _ = std::fs::remove_file(&path);
        cases.push((
            Case {
                name,
                what,
                lines,
                bytes,
            },
            runs,
        ));
    }
    Ok(Results { cases })
}
