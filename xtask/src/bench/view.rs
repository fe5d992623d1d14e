//! Section 4's live-view figure: what `cowtrace watch` costs per refresh.
//!
//! `cowtrace watch -i 0.2 -d 10 -p <a sleeping process>` runs once full screen, in a
//! 120x40 pseudo-terminal made by util-linux `script`, and once with `--plain`, in
//! alternating rounds. The cowtrace process's CPU time (from
//! /proc/PID/task/*/schedstat) is read 2 s and 9.5 s after it starts; the difference divided by the
//! refreshes in between (37.5) is the CPU per refresh. It includes the agent's own 100 ms
//! sampling ticks, so it is an upper bound of the drawing cost.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{check_interrupted, tracers::Tools};

pub struct Results {
    /// CPU ms per refresh, one value per round.
    pub full_ms: Vec<f64>,
    pub plain_ms: Vec<f64>,
}

const INTERVAL_S: f64 = 0.2;
const FROM_S: f64 = 2.0;
const TO_S: f64 = 9.5;

/// Kill and reap on drop.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU time of all of `pid`'s threads in ns: the first field of each thread's
/// /proc/PID/task/TID/schedstat (nanosecond resolution, where /proc/PID/stat has 10 ms).
fn cpu_ns(pid: u32) -> Option<u64> {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let s = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}

/// The pid of the `cowtrace` process whose parent is `ppid` (the one `script` starts).
pub(super) fn child_cowtrace(ppid: u32) -> Option<u32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(')') else {
            continue;
        };
        let parent = tail
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if head.ends_with("(cowtrace") && parent == Some(ppid) {
            return Some(pid);
        }
    }
    None
}

fn one(tools: &Tools, target: u32, full: bool) -> Result<f64> {
    let cowtrace = tools.cowtrace.display().to_string();
    let args = format!("watch -i {INTERVAL_S} -d 10 -p {target}");
    let started = Instant::now();
    let (kid, pid) = if full {
        let kid = Kid(Command::new("script")
            .args([
                "-qfec",
                &format!("stty cols 120 rows 40; exec {cowtrace} {args}"),
                "/dev/null",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting `script` (util-linux) for a pseudo-terminal")?);
        let t0 = Instant::now();
        let pid = loop {
            if let Some(p) = child_cowtrace(kid.0.id()) {
                break p;
            }
            if t0.elapsed() > Duration::from_secs(3) {
                bail!("cowtrace did not start under `script`");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        (kid, pid)
    } else {
        let kid = Kid(Command::new(&tools.cowtrace)
            .args([
                "watch",
                "--plain",
                "-i",
                &INTERVAL_S.to_string(),
                "-d",
                "10",
                "-p",
                &target.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting cowtrace watch --plain")?);
        let pid = kid.0.id();
        (kid, pid)
    };
    let at = |s: f64| -> Result<u64> {
        let until = Duration::from_secs_f64(s);
        while started.elapsed() < until {
            check_interrupted()?;
            std::thread::sleep(Duration::from_millis(20));
        }
        cpu_ns(pid).context("cowtrace watch exited early")
    };
    let a = at(FROM_S)?;
    let b = at(TO_S)?;
    drop(kid);
    let refreshes = (TO_S - FROM_S) / INTERVAL_S;
    Ok(b.saturating_sub(a) as f64 / 1e6 / refreshes)
}

pub fn run(tools: &Tools, rounds: usize) -> Result<Results> {
    let target = Kid(Command::new("sleep")
        .arg("600")
        .spawn()
        .context("starting sleep")?);
    let mut r = Results {
        full_ms: Vec::new(),
        plain_ms: Vec::new(),
    };
    for round in 0..rounds {
        // Alternate which mode goes first.
        for full in [round % 2 == 0, round % 2 != 0] {
            let v = one(tools, target.0.id(), full)?;
            if full {
                r.full_ms.push(v)
            } else {
                r.plain_ms.push(v)
            }
        }
    }
    Ok(r)
}
