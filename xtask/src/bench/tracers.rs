//! The tracers under comparison: `cowtrace record` and the bpftrace peer scripts in
//! `bench/*.bt`. Each is started against a set of pids, and counts as attached when it
//! says so: cowtrace when the `meta` line is in its trace (written after every program is
//! attached), bpftrace when its `BEGIN` probe prints `attached` (bpftrace fires BEGIN
//! after attaching every other probe).

use super::procs::{Exit, Proc};
use anyhow::{Context as _, Result, bail};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a tracer may take to attach before the benchmark gives up.
const ATTACH_LIMIT: Duration = Duration::from_secs(30);

/// Paths of the binaries and scripts a benchmark needs.
pub struct Tools {
    pub cowtrace: PathBuf,
    pub cowbench: PathBuf,
    pub bench_dir: PathBuf,
    /// Where tracer outputs and logs go (inside the benchmark's temp dir).
    pub tmp: PathBuf,
    /// A directory on tmpfs for the workloads' files (so the disk is not measured).
    pub shm: PathBuf,
}

/// A tracer that has attached.
pub struct Running {
    pub proc: Proc,
    /// From spawn until it said it was attached.
    pub attach: Duration,
    out: PathBuf,
    err: PathBuf,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cowtrace,
    Bpftrace,
}

/// What a tracer left behind.
pub enum Output {
    Cowtrace(Trace),
    Bpftrace(BpfCounts),
}

impl Running {
    /// `cowtrace record -o TMP/<tag>.jsonl -p PID...`.
    pub fn cowtrace(t: &Tools, tag: &str, pids: &[u32]) -> Result<Running> {
        Running::cowtrace_env(t, tag, pids, &[])
    }

    /// The same with extra environment (`COWTRACE_HOT_RING_BYTES`, ...).
    pub fn cowtrace_env(
        t: &Tools,
        tag: &str,
        pids: &[u32],
        env: &[(&str, String)],
    ) -> Result<Running> {
        Running::cowtrace_with(t, tag, pids, &[], env)
    }

    /// The same with extra `record` arguments (`--events`) and environment.
    pub fn cowtrace_with(
        t: &Tools,
        tag: &str,
        pids: &[u32],
        args: &[&str],
        env: &[(&str, String)],
    ) -> Result<Running> {
        let out = t.tmp.join(format!("{tag}.jsonl"));
        let err = t.tmp.join(format!("{tag}.cowtrace.log"));
        let mut cmd = Command::new(&t.cowtrace);
        cmd.arg("record").arg("-o").arg(&out).args(args);
        for p in pids {
            cmd.args(["-p", &p.to_string()]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(
            std::fs::File::create(&err).with_context(|| format!("creating {}", err.display()))?,
        );
        let t0 = Instant::now();
        let mut proc = Proc::spawn("cowtrace record", &mut cmd, libc::SIGINT)?;
        wait_for(&mut proc, &out, &err, "\"type\":\"meta\"")?;
        Ok(Running {
            proc,
            attach: t0.elapsed(),
            out,
            err,
            kind: Kind::Cowtrace,
        })
    }

    /// `bpftrace -B line bench/<script> ARGS...`.
    pub fn bpftrace(t: &Tools, tag: &str, script: &str, args: &[String]) -> Result<Running> {
        let out = t.tmp.join(format!("{tag}.bpftrace.out"));
        let err = t.tmp.join(format!("{tag}.bpftrace.log"));
        let mut cmd = Command::new("bpftrace");
        cmd.args(["-B", "line"])
            .arg(t.bench_dir.join(script))
            .args(args)
            .stdin(Stdio::null())
            .stdout(
                std::fs::File::create(&out)
                    .with_context(|| format!("creating {}", out.display()))?,
            )
            .stderr(
                std::fs::File::create(&err)
                    .with_context(|| format!("creating {}", err.display()))?,
            );
        let t0 = Instant::now();
        let mut proc = Proc::spawn("bpftrace", &mut cmd, libc::SIGINT)?;
        wait_for(&mut proc, &out, &err, "attached")?;
        Ok(Running {
            proc,
            attach: t0.elapsed(),
            out,
            err,
            kind: Kind::Bpftrace,
        })
    }

    /// Wait until it exits by itself (cowtrace ends when all its `-p` targets and their
    /// children are gone), then read its output.
    pub fn wait(mut self, limit: Duration) -> Result<(Output, Exit)> {
        let exit = self.proc.wait(limit)?;
        self.finish(exit)
    }

    /// SIGINT, wait, read its output. Also returns how long it took to exit.
    pub fn stop(mut self) -> Result<(Output, Exit, Duration)> {
        let t0 = Instant::now();
        let exit = self.proc.stop(Duration::from_secs(30))?;
        let took = t0.elapsed();
        let (out, exit) = self.finish(exit)?;
        Ok((out, exit, took))
    }

    fn finish(self, exit: Exit) -> Result<(Output, Exit)> {
        if !exit.success() {
            bail!(
                "{} failed ({}); its log:\n{}",
                self.proc.name,
                exit.describe(),
                tail(&self.err)
            );
        }
        let out = match self.kind {
            Kind::Cowtrace => Output::Cowtrace(Trace::read(&self.out)?),
            Kind::Bpftrace => {
                let text = std::fs::read_to_string(&self.out)
                    .with_context(|| format!("reading {}", self.out.display()))?;
                Output::Bpftrace(BpfCounts::parse(&text))
            }
        };
        Ok((out, exit))
    }
}

/// Poll `file` until it contains `needle`; fail early if the tracer exits.
fn wait_for(proc: &mut Proc, file: &Path, log: &Path, needle: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if std::fs::read_to_string(file).is_ok_and(|s| s.contains(needle)) {
            return Ok(());
        }
        if let Some(e) = proc.poll()? {
            bail!(
                "{} exited before attaching ({}); its log:\n{}",
                proc.name,
                e.describe(),
                tail(log)
            );
        }
        if t0.elapsed() > ATTACH_LIMIT {
            bail!(
                "{} did not attach within {ATTACH_LIMIT:?}; its log:\n{}",
                proc.name,
                tail(log)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The last lines of a log file, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A cowtrace JSON Lines trace.
pub struct Trace {
    pub lines: Vec<Value>,
}

impl Trace {
    pub fn read(path: &Path) -> Result<Trace> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Trace::parse(&text).with_context(|| format!("trace {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Trace> {
        let lines = text
            .lines()
            .map(|l| serde_json::from_str(l).with_context(|| format!("bad trace line {l:?}")))
            .collect::<Result<Vec<Value>>>()?;
        if lines.first().map(|l| &l["type"]) != Some(&"meta".into()) {
            bail!("the first line is not `meta`");
        }
        if lines.last().map(|l| &l["type"]) != Some(&"end".into()) {
            bail!("the last line is not `end` (cowtrace did not finish the trace)");
        }
        Ok(Trace { lines })
    }

    /// The `session_end` of the session whose child is `child`.
    pub fn end_of_child(&self, child: u64) -> Option<&Value> {
        self.lines
            .iter()
            .find(|l| l["type"] == "session_end" && l["child_pid"] == child)
    }

    /// The final `end` line.
    pub fn end(&self) -> &Value {
        self.lines.last().expect("parse checked the last line")
    }

    /// COW events lost because the ring was full (`end.lost_cow_events`).
    pub fn lost_cow_events(&self) -> u64 {
        self.end()["lost_cow_events"].as_u64().unwrap_or(u64::MAX)
    }
}

/// The `@name: N` lines bpftrace prints for its count/sum maps at exit.
#[derive(Debug, Default, PartialEq)]
pub struct BpfCounts(pub Vec<(String, u64)>);

impl BpfCounts {
    pub fn parse(text: &str) -> BpfCounts {
        BpfCounts(
            text.lines()
                .filter_map(|l| {
                    let (k, v) = l.strip_prefix('@')?.split_once(": ")?;
                    Some((k.to_string(), v.trim().parse().ok()?))
                })
                .collect(),
        )
    }

    /// A map's value (0 when bpftrace printed nothing for it: it never counted).
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or(0, |(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_counts() {
        let out = "Attaching 4 probes...\nattached\n\n\n@copies: 32769\n@write_bytes: 10\n";
        let c = BpfCounts::parse(out);
        assert_eq!(c.get("copies"), 32769);
        assert_eq!(c.get("write_bytes"), 10);
        assert_eq!(c.get("missing"), 0);
    }

    #[test]
    fn trace_needs_meta_and_end() {
        let ok = "{\"type\":\"meta\"}\n{\"type\":\"session_end\",\"child_pid\":7,\"cow\":{\"parent_pages\":3}}\n{\"type\":\"end\",\"lost_cow_events\":0}\n";
        let t = Trace::parse(ok).unwrap();
        assert_eq!(t.end_of_child(7).unwrap()["cow"]["parent_pages"], 3);
        assert!(t.end_of_child(8).is_none());
        assert_eq!(t.lost_cow_events(), 0);
        assert!(Trace::parse("{\"type\":\"meta\"}\n").is_err());
        assert!(Trace::parse("not json\n").is_err());
    }
}
