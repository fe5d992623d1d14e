//! Sections 3 and 4: how many events per second cowtrace keeps up with, exactly and
//! without drops, and what it costs itself (CPU, memory) while doing it.
//!
//! A storm is one or more `cowbench` processes started together: `cow` ones rewrite a
//! large populated region after a fork (one copy-on-write copy per 4 KiB page, as fast
//! as one thread can), `write` ones have a forked child write a file on tmpfs in 4 KiB
//! write() calls; a mixed storm runs both kinds at once. Each storm runs untraced and traced by one `cowtrace record -p ...` in
//! alternation. The event rate is the events of all processes over the span from the
//! first process's start to the last one's end (CLOCK_MONOTONIC stamps from cowbench).
//! cowtrace also traces an idle `sleep`, so it is still running after the storm: its CPU
//! time (CPU-time clock, ns) and memory (/proc/PID/status, smaps) are read after a
//! 300 ms pause that lets its 100 ms timer drain the ring, then it is stopped and its
//! trace is checked against what the workloads did.

use super::cow::SLACK;
use super::procs::{self, Proc, Workload};
use super::stats::{Spread, ratios};
use super::tracers::{Output, Running, Tools};
use anyhow::{Context as _, Result, bail};
use std::process::Command;
use std::time::Duration;

/// The processes of a storm, all started together.
#[derive(Clone, Copy, Debug)]
pub struct Storm {
    pub name: &'static str,
    /// Processes each rewriting `cow_mib` MiB once after a fork (COW copies).
    pub cow_procs: usize,
    pub cow_mib: usize,
    /// Processes whose fork child writes `write_mib` MiB in `chunk`-byte write() calls.
    pub write_procs: usize,
    pub write_mib: usize,
    pub chunk: usize,
    /// COW event ring size for cowtrace (`COWTRACE_HOT_RING_BYTES`), None for its default.
    pub ring_bytes: Option<u32>,
}

impl Storm {
    /// `procs` COW processes of `mib` MiB each.
    pub fn cow(name: &'static str, procs: usize, mib: usize) -> Storm {
        Storm {
            name,
            cow_procs: procs,
            cow_mib: mib,
            write_procs: 0,
            write_mib: 0,
            chunk: 4096,
            ring_bytes: None,
        }
    }

    /// `procs` write processes of `mib` MiB each, in 4 KiB calls.
    pub fn write(name: &'static str, procs: usize, mib: usize) -> Storm {
        Storm {
            name,
            cow_procs: 0,
            cow_mib: 0,
            write_procs: procs,
            write_mib: mib,
            chunk: 4096,
            ring_bytes: None,
        }
    }

    pub fn describe(&self) -> String {
        let plural = |n: usize| if n == 1 { "" } else { "es" };
        let mut parts = Vec::new();
        if self.cow_procs > 0 {
            parts.push(format!(
                "{} process{} × {} rewritten after fork (one COW copy per 4 KiB page)",
                self.cow_procs,
                plural(self.cow_procs),
                mib_text(self.cow_mib)
            ));
        }
        if self.write_procs > 0 {
            parts.push(format!(
                "{} process{} whose fork child writes {} in {}-byte write() calls to tmpfs",
                self.write_procs,
                plural(self.write_procs),
                mib_text(self.write_mib),
                self.chunk
            ));
        }
        let mut d = parts.join(", with ");
        if let Some(b) = self.ring_bytes {
            d.push_str(&format!(
                "; cowtrace with a {} KiB COW ring (`COWTRACE_HOT_RING_BYTES={b}`)",
                b / 1024
            ));
        }
        d
    }

    /// The single-process COW storm: one thread copying as fast as it can.
    pub fn is_single_cow(&self) -> bool {
        self.cow_procs == 1 && self.write_procs == 0
    }
}

fn mib_text(mib: usize) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{} GiB", mib / 1024)
    } else {
        format!("{mib} MiB")
    }
}

/// One storm run.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Events the workloads made (COW copies of their regions, or write() calls).
    pub events: u64,
    /// From the first start to the last end of the timed loops.
    pub span_s: f64,
    pub traced: Option<Traced>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.events as f64 / self.span_s
    }
}

/// What a traced run adds.
#[derive(Clone, Debug, Default)]
pub struct Traced {
    /// Events cowtrace counted for the workloads (session COW pages, or write calls).
    pub counted: u64,
    /// Every session's total matched the ground truth.
    pub exact: bool,
    pub mismatches: Vec<String>,
    pub lost: u64,
    /// cowtrace CPU seconds from just before `go` until the ring was drained.
    pub cpu_s: f64,
    /// VmHWM right after attaching, and at the end of the storm.
    pub hwm_attach: u64,
    pub hwm_end: u64,
    pub rss_end: u64,
    /// Resident bytes of cowtrace's mmapped BPF maps (the ring buffers) at the end.
    pub ring_rss: u64,
    pub attach_ms: f64,
    /// CPU used to start (load + attach), before any event, and its user/system split.
    pub startup_cpu_s: f64,
    pub startup_user_s: f64,
    pub startup_sys_s: f64,
    /// From SIGINT to exit.
    pub stop_ms: f64,
    /// Whole-life CPU and peak RSS from wait4 (start-up and the final trace included).
    pub life_cpu_s: f64,
    pub life_max_rss: u64,
}

pub struct StormResult {
    pub storm: Storm,
    pub untraced: Vec<Run>,
    pub traced: Vec<Run>,
}

impl StormResult {
    pub fn untraced_rate(&self) -> Option<Spread> {
        Spread::of(&self.untraced.iter().map(Run::rate).collect::<Vec<_>>())
    }

    /// cowtrace-counted events per second in the traced runs.
    pub fn traced_rate(&self) -> Option<Spread> {
        Spread::of(
            &self
                .traced
                .iter()
                .filter_map(|r| Some(r.traced.as_ref()?.counted as f64 / r.span_s))
                .collect::<Vec<_>>(),
        )
    }

    /// Per-pair ratio of traced to untraced workload speed (events per second).
    pub fn speed_ratio(&self) -> Option<Spread> {
        let t: Vec<Option<f64>> = self.traced.iter().map(|r| Some(r.rate())).collect();
        let u: Vec<Option<f64>> = self.untraced.iter().map(|r| Some(r.rate())).collect();
        Spread::of(&ratios(&t, &u))
    }

    pub fn traced_info(&self) -> Vec<&Traced> {
        self.traced
            .iter()
            .filter_map(|r| r.traced.as_ref())
            .collect()
    }

    /// cowtrace CPU seconds per million events.
    pub fn cpu_per_m(&self) -> Option<Spread> {
        Spread::of(
            &self
                .traced_info()
                .iter()
                .filter(|t| t.counted > 0)
                .map(|t| t.cpu_s / (t.counted as f64 / 1e6))
                .collect::<Vec<_>>(),
        )
    }

    /// cowtrace's CPU over the storm as a share of one core (0..1 per core).
    pub fn cpu_share(&self) -> Option<Spread> {
        Spread::of(
            &self
                .traced
                .iter()
                .filter_map(|r| Some(r.traced.as_ref()?.cpu_s / r.span_s))
                .collect::<Vec<_>>(),
        )
    }

    pub fn total_lost(&self) -> u64 {
        self.traced_info().iter().map(|t| t.lost).sum()
    }

    pub fn all_exact(&self) -> bool {
        !self.traced.is_empty() && self.traced_info().iter().all(|t| t.exact)
    }
}

pub fn run(
    t: &Tools,
    storms: &[Storm],
    pairs: usize,
    check: &dyn Fn() -> Result<()>,
) -> Result<Vec<StormResult>> {
    let mut sleeper = Proc::spawn("sleep", Command::new("sleep").arg("3600"), libc::SIGKILL)?;
    let mut out = Vec::new();
    for storm in storms {
        let mut r = StormResult {
            storm: *storm,
            untraced: Vec::new(),
            traced: Vec::new(),
        };
        for pair in 0..pairs {
            // A B, then B A: neither side always runs first.
            for traced in [pair % 2 == 1, pair % 2 == 0] {
                check()?;
                let run = one(t, storm, traced, pair, sleeper.pid()).with_context(|| {
                    format!(
                        "storm {} pair {} ({})",
                        storm.name,
                        pair + 1,
                        if traced { "traced" } else { "untraced" }
                    )
                })?;
                let mut msg = format!(
                    "[bench] storm {} pair {}/{pairs} {}: {:.0}k events/s",
                    storm.name,
                    pair + 1,
                    if traced { "traced  " } else { "untraced" },
                    run.rate() / 1e3
                );
                if let Some(tr) = &run.traced {
                    msg.push_str(&format!(
                        ", counted {} of {}, lost {}, cowtrace CPU {:.3} s{}",
                        tr.counted,
                        run.events,
                        tr.lost,
                        tr.cpu_s,
                        if tr.exact { "" } else { " NOT EXACT" }
                    ));
                }
                println!("{msg}");
                if traced {
                    r.traced.push(run);
                } else {
                    r.untraced.push(run);
                }
            }
        }
        out.push(r);
    }
    sleeper.stop(Duration::from_secs(5))?;
    Ok(out)
}

fn one(t: &Tools, storm: &Storm, traced: bool, pair: usize, sleeper: u32) -> Result<Run> {
    super::procs::note_foreign_tracers();
    let mut ws = Vec::new();
    for _ in 0..storm.cow_procs {
        let mut cmd = Command::new(&t.cowbench);
        cmd.args([
            "--mode",
            "cow",
            "--mib",
            &storm.cow_mib.to_string(),
            "--reps",
            "1",
        ]);
        ws.push(Workload::spawn("cowbench", &mut cmd)?);
    }
    for _ in 0..storm.write_procs {
        let mut cmd = Command::new(&t.cowbench);
        cmd.args(["--mode", "write", "--dir"]).arg(&t.shm).args([
            "--bytes",
            &(storm.write_mib << 20).to_string(),
            "--chunk",
            &storm.chunk.to_string(),
        ]);
        ws.push(Workload::spawn("cowbench", &mut cmd)?);
    }
    let mut tracer = None;
    let mut pre = Traced::default();
    if traced {
        let mut pids: Vec<u32> = ws.iter().map(Workload::pid).collect();
        pids.push(sleeper);
        let tag = format!("storm-{}-{pair}", storm.name);
        let env: Vec<(&str, String)> = storm
            .ring_bytes
            .map(|b| ("COWTRACE_HOT_RING_BYTES", b.to_string()))
            .into_iter()
            .collect();
        let r = Running::cowtrace_env(t, &tag, &pids, &env)?;
        let pid = r.proc.pid();
        pre.attach_ms = r.attach.as_secs_f64() * 1e3;
        pre.hwm_attach = procs::status_bytes(pid, "VmHWM")?;
        pre.startup_cpu_s = procs::cpu_seconds(pid)?;
        (pre.startup_user_s, pre.startup_sys_s) = procs::user_sys_seconds(pid)?;
        tracer = Some(r);
    }
    for w in &mut ws {
        w.go()?;
    }
    let mut results = Vec::new();
    for w in &mut ws {
        results.push(w.result(Duration::from_secs(300))?);
    }
    let mut events = 0;
    let (mut first, mut last) = (u64::MAX, 0);
    for v in &results {
        events += match v["mode"].as_str() {
            Some("cow") => v["pages"].as_u64(),
            _ => v["calls"].as_u64(),
        }
        .context("cowbench result without pages/calls")?;
        first = first.min(v["t0_ns"][0].as_u64().context("no t0_ns")?);
        last = last.max(v["t1_ns"][0].as_u64().context("no t1_ns")?);
    }
    let mut run = Run {
        events,
        span_s: last.saturating_sub(first) as f64 / 1e9,
        traced: None,
    };
    if run.span_s <= 0.0 {
        bail!("storm {}: the timed loops took no time", storm.name);
    }
    let Some(tracer) = tracer else {
        return Ok(run);
    };
    // Two 100 ms drain ticks, then read its cost while it still runs.
    std::thread::sleep(Duration::from_millis(300));
    let pid = tracer.proc.pid();
    let mut tr = pre;
    tr.cpu_s = procs::cpu_seconds(pid)? - tr.startup_cpu_s;
    tr.hwm_end = procs::status_bytes(pid, "VmHWM")?;
    tr.rss_end = procs::status_bytes(pid, "VmRSS")?;
    tr.ring_rss = procs::bpf_map_rss(pid)?;
    let (Output::Cowtrace(trace), exit, took) = tracer.stop()? else {
        bail!("cowtrace produced no trace");
    };
    tr.stop_ms = took.as_secs_f64() * 1e3;
    tr.life_cpu_s = exit.cpu_s;
    tr.life_max_rss = exit.max_rss;
    tr.lost = trace.lost_cow_events();
    tr.exact = true;
    for v in &results {
        let child = v["children"][0]
            .as_u64()
            .context("cowbench result without a child")?;
        let Some(end) = trace.end_of_child(child) else {
            tr.exact = false;
            tr.mismatches
                .push(format!("no session_end for child {child}"));
            continue;
        };
        match v["mode"].as_str() {
            Some("cow") => {
                let want = v["pages"].as_u64().unwrap_or(0);
                let got = end["cow"]["parent_pages"].as_u64().unwrap_or(0);
                tr.counted += got;
                if !(want..=want + SLACK).contains(&got) {
                    tr.exact = false;
                    tr.mismatches.push(format!(
                        "child {child}: {got} parent pages for {want} written"
                    ));
                }
            }
            _ => {
                let want = v["bytes"].as_u64().unwrap_or(0);
                let got = end["writes"]["bytes"].as_u64().unwrap_or(0);
                let calls = end["writes"]["calls"].as_u64().unwrap_or(0);
                tr.counted += calls;
                if got != want || calls != v["calls"].as_u64().unwrap_or(0) {
                    tr.exact = false;
                    tr.mismatches.push(format!(
                        "child {child}: {got} bytes in {calls} calls for {want} bytes in {} calls",
                        v["calls"]
                    ));
                }
            }
        }
    }
    run.traced = Some(tr);
    Ok(run)
}
