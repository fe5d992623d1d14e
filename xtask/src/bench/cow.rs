//! Sections 1 and 5: the cost of one copy-on-write fault, traced and not, and the cost
//! of a loaded cowtrace on a process it does not trace.
//!
//! One run is one `cowbench --mode cow` process: it touches `touch_mib` of fresh memory
//! (zero-fill faults, timed) and then `reps` times forks a child that only waits and
//! rewrites every page of `mib` MiB (one copy per page, timed). The value of a run is
//! the median ns per page of its reps. A round runs every configuration once, in an
//! order rotated from round to round, and each ratio is taken within a round.

use super::procs::Workload;
use super::stats::{Spread, ratios, rotation};
use super::tracers::{Output, Running, Tools};
use anyhow::{Context as _, Result, bail};
use std::process::Command;
use std::time::Duration;

/// Extra copies allowed over the region's pages: after fork the parent also writes its
/// stack, libc and Rust data (see agent/tests/cow.rs).
pub const SLACK: u64 = 64;

#[derive(Clone, Copy)]
pub struct Params {
    pub rounds: usize,
    pub mib: usize,
    pub reps: usize,
    pub touch_mib: usize,
    /// MiB the process writes itself in 4 KiB write() calls after the rounds.
    pub write_mib: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Config {
    Untraced,
    /// A second untraced run in the same round: the A/A control, i.e. the noise.
    Control,
    Cowtrace,
    Bpftrace,
    /// cowtrace loaded and tracing another process (a sleeper), not this one.
    CowtraceElsewhere,
    /// Empty bpftrace programs on the two tracepoints: what the hooks cost by themselves.
    HookFloor,
    /// Empty bpftrace programs on the raw `sys_enter`/`sys_exit` tracepoints, the hooks of
    /// cowtrace's syscall measurements: what the syscall slow path costs every process
    /// (attaching any program there sets `SYSCALL_WORK_SYSCALL_TRACEPOINT` on every task).
    SyscallFloor,
}

pub const CONFIGS: [Config; 7] = [
    Config::Untraced,
    Config::Control,
    Config::Cowtrace,
    Config::Bpftrace,
    Config::CowtraceElsewhere,
    Config::HookFloor,
    Config::SyscallFloor,
];

/// The configurations of the bystander section (`--only bystanders`): an untraced
/// process, with cowtrace tracing another one, and with empty programs on each family
/// of cowtrace's hooks.
pub const BYSTANDER_CONFIGS: [Config; 5] = [
    Config::Untraced,
    Config::Control,
    Config::CowtraceElsewhere,
    Config::HookFloor,
    Config::SyscallFloor,
];

impl Config {
    pub fn label(self) -> &'static str {
        match self {
            Config::Untraced => "untraced",
            Config::Control => "untraced again (A/A control)",
            Config::Cowtrace => "cowtrace record -p PID",
            Config::Bpftrace => "bpftrace bench/cow.bt PID",
            Config::CowtraceElsewhere => "cowtrace record -p OTHER (not this process)",
            Config::HookFloor => "bpftrace bench/empty.bt (empty programs on both tracepoints)",
            Config::SyscallFloor => {
                "bpftrace bench/empty-syscalls.bt (empty programs on raw_syscalls sys_enter + sys_exit)"
            }
        }
    }
}

/// One run's figures.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Wall-clock (CLOCK_MONOTONIC) ns per copied page: median of the reps.
    pub cow_ns: f64,
    /// The thread's CPU ns per copied page: median of the reps.
    pub cow_cpu_ns: f64,
    /// Wall-clock and CPU ns per first-touch (zero-fill) fault.
    pub touch_ns: f64,
    pub touch_cpu_ns: f64,
    /// Wall-clock and CPU ns per 4 KiB write() call.
    pub write_ns: f64,
    pub write_cpu_ns: f64,
    /// Copies the tracer counted for this process (None when untraced).
    pub counted: Option<u64>,
    /// Copies the workload made (pages × reps).
    pub expected: u64,
    /// Whether each counted total was within [expected, expected + SLACK × reps].
    pub exact: Option<bool>,
    pub lost: Option<u64>,
    pub attach_ms: Option<f64>,
    /// From SIGINT to exit (the tracers stopped with a signal).
    pub stop_ms: Option<f64>,
}

/// Which figure of a run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Metric {
    CowWall,
    CowCpu,
    TouchWall,
    TouchCpu,
    WriteWall,
    WriteCpu,
}

impl Metric {
    fn of(self, r: &Run) -> f64 {
        match self {
            Metric::CowWall => r.cow_ns,
            Metric::CowCpu => r.cow_cpu_ns,
            Metric::TouchWall => r.touch_ns,
            Metric::TouchCpu => r.touch_cpu_ns,
            Metric::WriteWall => r.write_ns,
            Metric::WriteCpu => r.write_cpu_ns,
        }
    }
}

pub struct Results {
    pub params: Params,
    /// runs[config index][round]
    pub runs: Vec<Vec<Option<Run>>>,
}

impl Results {
    /// The runs of `c` by round (none when this invocation did not run it).
    fn rounds_of(&self, c: Config) -> &[Option<Run>] {
        CONFIGS
            .iter()
            .position(|x| *x == c)
            .and_then(|i| self.runs.get(i))
            .map_or(&[], Vec::as_slice)
    }

    fn col(&self, c: Config, f: impl Fn(&Run) -> f64) -> Vec<Option<f64>> {
        self.rounds_of(c)
            .iter()
            .map(|r| r.as_ref().map(&f))
            .collect()
    }

    pub fn runs_of(&self, c: Config) -> Vec<&Run> {
        self.rounds_of(c).iter().flatten().collect()
    }

    /// Whether any round ran `c`.
    pub fn has(&self, c: Config) -> bool {
        !self.runs_of(c).is_empty()
    }

    /// A metric of a configuration over the rounds (ns).
    pub fn ns(&self, c: Config, m: Metric) -> Option<Spread> {
        let v: Vec<f64> = self.col(c, |r| m.of(r)).into_iter().flatten().collect();
        Spread::of(&v)
    }

    /// Per-round ratio of `c` to the untraced run of the same round.
    pub fn ratio(&self, c: Config, m: Metric) -> Option<Spread> {
        Spread::of(&ratios(
            &self.col(c, |r| m.of(r)),
            &self.col(Config::Untraced, |r| m.of(r)),
        ))
    }

    /// In how many rounds (of those with both) `c`'s ratio to untraced was above the A/A
    /// control's ratio of the same round: a paired comparison that one outlier round
    /// cannot hide the way it widens a min–max range.
    pub fn above_control(&self, c: Config, m: Metric) -> (usize, usize) {
        let a = ratios_by_round(
            &self.col(c, |r| m.of(r)),
            &self.col(Config::Untraced, |r| m.of(r)),
        );
        let k = ratios_by_round(
            &self.col(Config::Control, |r| m.of(r)),
            &self.col(Config::Untraced, |r| m.of(r)),
        );
        let pairs: Vec<(f64, f64)> = a
            .iter()
            .zip(&k)
            .filter_map(|(a, k)| Some(((*a)?, (*k)?)))
            .collect();
        (pairs.iter().filter(|(a, k)| a > k).count(), pairs.len())
    }

    /// Per-round difference to the untraced run, in ns.
    pub fn extra_ns(&self, c: Config, m: Metric) -> Option<Spread> {
        let a = self.col(c, |r| m.of(r));
        let u = self.col(Config::Untraced, |r| m.of(r));
        let d: Vec<f64> = a
            .iter()
            .zip(&u)
            .filter_map(|(a, u)| Some((*a)? - (*u)?))
            .filter(|d| !d.is_nan())
            .collect();
        Spread::of(&d)
    }

    /// Per-round ratio of cowtrace's attach time to bpftrace's.
    pub fn attach_ratio(&self) -> Option<Spread> {
        let a = |c| self.col(c, |r| r.attach_ms.unwrap_or(f64::NAN));
        let v: Vec<f64> = ratios(&a(Config::Cowtrace), &a(Config::Bpftrace))
            .into_iter()
            .filter(|x| !x.is_nan())
            .collect();
        Spread::of(&v)
    }

    pub fn attach_ms(&self, c: Config) -> Vec<f64> {
        self.runs_of(c).iter().filter_map(|r| r.attach_ms).collect()
    }

    pub fn stop_ms(&self, c: Config) -> Vec<f64> {
        self.runs_of(c).iter().filter_map(|r| r.stop_ms).collect()
    }
}

/// `a[i] / b[i]` per round, None where either is missing (or NaN, or b is 0).
fn ratios_by_round(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<Option<f64>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y > 0.0 && !x.is_nan() => Some(x / y),
            _ => None,
        })
        .collect()
}

/// Runs `configs` (a subset of [`CONFIGS`]) for `p.rounds` rounds, in rotated order.
pub fn run(
    t: &Tools,
    p: Params,
    configs: &[Config],
    check: &dyn Fn() -> Result<()>,
) -> Result<Results> {
    // The process cowtrace traces in the `CowtraceElsewhere` configuration.
    let mut sleeper =
        super::procs::Proc::spawn("sleep", Command::new("sleep").arg("3600"), libc::SIGKILL)?;
    let mut res = Results {
        params: p,
        runs: vec![vec![None; p.rounds]; CONFIGS.len()],
    };
    for round in 0..p.rounds {
        let mut line = Vec::new();
        for k in rotation(configs.len(), round) {
            check()?;
            let c = configs[k];
            let ci = CONFIGS
                .iter()
                .position(|x| *x == c)
                .context("a configuration missing from CONFIGS")?;
            let r = one(t, p, c, round, sleeper.pid())
                .with_context(|| format!("COW benchmark, round {}, {}", round + 1, c.label()))?;
            line.push(format!(
                "{:?} {:.0} ns/copy {:.0} ns/write",
                c, r.cow_ns, r.write_ns
            ));
            res.runs[ci][round] = Some(r);
        }
        println!(
            "[bench] cow round {}/{}: {}",
            round + 1,
            p.rounds,
            line.join(", ")
        );
    }
    sleeper.stop(Duration::from_secs(5))?;
    Ok(res)
}

pub fn one(t: &Tools, p: Params, c: Config, round: usize, sleeper: u32) -> Result<Run> {
    super::procs::note_foreign_tracers();
    let mut w = Workload::spawn(
        "cowbench",
        Command::new(&t.cowbench)
            .args([
                "--mode",
                "cow",
                "--mib",
                &p.mib.to_string(),
                "--reps",
                &p.reps.to_string(),
                "--touch-mib",
                &p.touch_mib.to_string(),
                "--write-mib",
                &p.write_mib.to_string(),
                "--dir",
            ])
            .arg(&t.shm),
    )?;
    let pid = w.pid();
    let tag = format!("cow-{round}-{c:?}");
    let tracer = match c {
        Config::Untraced | Config::Control => None,
        Config::Cowtrace => Some(Running::cowtrace(t, &tag, &[pid])?),
        Config::CowtraceElsewhere => Some(Running::cowtrace(t, &tag, &[sleeper])?),
        Config::Bpftrace => Some(Running::bpftrace(t, &tag, "cow.bt", &[pid.to_string()])?),
        Config::HookFloor => Some(Running::bpftrace(t, &tag, "empty.bt", &[])?),
        Config::SyscallFloor => Some(Running::bpftrace(t, &tag, "empty-syscalls.bt", &[])?),
    };
    w.go()?;
    let v = w.result(Duration::from_secs(120))?;
    let pages = v["pages"].as_u64().context("cowbench: no pages")?;
    let reps = v["reps"].as_u64().context("cowbench: no reps")?;
    let arr = |k: &str| -> Result<Vec<u64>> {
        v[k].as_array()
            .with_context(|| format!("cowbench: no {k}"))?
            .iter()
            .map(|x| x.as_u64().with_context(|| format!("cowbench: bad {k}")))
            .collect()
    };
    let (t0, t1, cpu) = (arr("t0_ns")?, arr("t1_ns")?, arr("cpu_ns")?);
    let per_page = |ns: u64| ns as f64 / pages as f64;
    let wall: Vec<f64> = t0.iter().zip(&t1).map(|(a, b)| per_page(b - a)).collect();
    let cpu: Vec<f64> = cpu.iter().map(|c| per_page(*c)).collect();
    let cow_ns = Spread::of(&wall).context("cowbench: no reps timed")?.median;
    let cow_cpu_ns = Spread::of(&cpu).context("cowbench: no reps timed")?.median;
    let touch_pages = v["touch_pages"].as_u64().unwrap_or(0);
    let per_touch = |k: &str| {
        if touch_pages > 0 {
            v[k].as_u64().unwrap_or(0) as f64 / touch_pages as f64
        } else {
            f64::NAN
        }
    };
    let (touch_ns, touch_cpu_ns) = (per_touch("touch_ns"), per_touch("touch_cpu_ns"));
    let write_calls = v["write_calls"].as_u64().unwrap_or(0);
    let per_write = |k: &str| {
        if write_calls > 0 {
            v[k].as_u64().unwrap_or(0) as f64 / write_calls as f64
        } else {
            f64::NAN
        }
    };
    let (write_ns, write_cpu_ns) = (per_write("write_ns"), per_write("write_cpu_ns"));
    let expected = pages * reps;
    let mut run = Run {
        cow_ns,
        cow_cpu_ns,
        touch_ns,
        touch_cpu_ns,
        write_ns,
        write_cpu_ns,
        expected,
        ..Run::default()
    };
    let Some(tracer) = tracer else {
        return Ok(run);
    };
    run.attach_ms = Some(tracer.attach.as_secs_f64() * 1e3);
    let out = match c {
        // It ends by itself once the workload and its children are gone.
        Config::Cowtrace => tracer.wait(Duration::from_secs(60))?.0,
        _ => {
            let (out, _, took) = tracer.stop()?;
            run.stop_ms = Some(took.as_secs_f64() * 1e3);
            out
        }
    };
    match (c, out) {
        (Config::Cowtrace, Output::Cowtrace(trace)) => {
            let mut total = 0;
            let mut exact = true;
            for child in v["children"].as_array().context("cowbench: no children")? {
                let child = child.as_u64().context("cowbench: bad child pid")?;
                let Some(end) = trace.end_of_child(child) else {
                    bail!("cowtrace recorded no session_end for child {child}");
                };
                let n = end["cow"]["parent_pages"].as_u64().unwrap_or(0);
                exact &= (pages..=pages + SLACK).contains(&n);
                total += n;
            }
            run.counted = Some(total);
            run.exact = Some(exact);
            run.lost = Some(trace.lost_cow_events());
        }
        (Config::Bpftrace, Output::Bpftrace(counts)) => {
            let n = counts.get("copies");
            run.counted = Some(n);
            run.exact = Some((expected..=expected + SLACK * reps).contains(&n));
        }
        _ => {}
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ns: f64) -> Option<Run> {
        Some(Run {
            cow_ns: ns,
            cow_cpu_ns: ns,
            touch_ns: f64::NAN,
            touch_cpu_ns: f64::NAN,
            ..Run::default()
        })
    }

    #[test]
    fn paired_control_comparison_and_differences() {
        let p = Params {
            rounds: 3,
            mib: 1,
            reps: 1,
            touch_mib: 0,
            write_mib: 0,
        };
        let mut runs = vec![vec![None; 3]; CONFIGS.len()];
        // untraced, control (one outlier round), cowtrace
        runs[0] = vec![run(100.0), run(100.0), run(100.0)];
        runs[1] = vec![run(100.0), run(130.0), run(101.0)];
        runs[2] = vec![run(120.0), run(120.0), None];
        let r = Results { params: p, runs };
        assert_eq!(r.above_control(Config::Cowtrace, Metric::CowWall), (1, 2));
        assert_eq!(
            r.ratio(Config::Cowtrace, Metric::CowWall).unwrap().median,
            1.2
        );
        assert_eq!(
            r.extra_ns(Config::Cowtrace, Metric::CowCpu).unwrap().median,
            20.0
        );
        // No first-touch figures (NaN): no ratio at all.
        assert!(r.ratio(Config::Cowtrace, Metric::TouchWall).is_none());
    }
}
