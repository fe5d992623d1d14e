//! `bench/RESULTS.md`: the machine, the method and the figures of one invocation.
//! Where a target is missed, the text says by how much and what limits it, from the
//! figures of the same invocation.

use super::capacity::StormResult;
use super::cow::{self, Config as C, Metric as M};
use super::redis::{self, Config as R};
use super::stats::{Spread, num_or_na, ratio_or_na, verdict_max, verdict_min};
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

/// Targets from issue 7.
const T_COW: f64 = 1.03;
const T_ELSEWHERE: f64 = 1.01;
const T_RATE: f64 = 2e6;
/// % of one core per 100k events/s.
const T_CPU_PCT: f64 = 2.0;
const T_RSS: f64 = 32.0 * 1024.0 * 1024.0;
const T_ATTACH_MS: f64 = 300.0;

pub struct Machine {
    pub date: String,
    pub nproc: usize,
    pub mem_bytes: u64,
    pub cpu_model: String,
    pub kernel: String,
    pub commit: String,
    pub bpftrace: String,
    pub load_start: String,
    pub load_end: String,
    /// Other tracers found running at the start (their programs skew every figure).
    pub others: Vec<String>,
    /// Runs, runs that started while a foreign tracer ran, and those tracers.
    pub foreign: (usize, usize, Vec<String>),
}

impl Machine {
    pub fn probe(root: &Path) -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let nproc = cpuinfo
            .lines()
            .filter(|l| l.starts_with("processor"))
            .count();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let mem_bytes =
            super::procs::parse_status_kb(&read("/proc/meminfo"), "MemTotal").unwrap_or(0) * 1024;
        let out = |cmd: &mut Command| {
            crate::util::output(cmd)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let head =
            out(Command::new("git")
                .arg("-C")
                .arg(root)
                .args(["rev-parse", "--short=12", "HEAD"]));
        let dirty = !out(Command::new("git").arg("-C").arg(root).args([
            "status",
            "--porcelain",
            "--untracked-files=no",
        ]))
        .is_empty();
        let commit = match (head.is_empty(), dirty) {
            (true, _) => "unknown (not a git checkout)".to_string(),
            (false, false) => head,
            (false, true) => format!("{head} plus uncommitted changes"),
        };
        let ps = out(Command::new("ps").args(["-eo", "pid,args"]));
        let others = ps
            .lines()
            .filter(|l| is_tracer(l))
            .map(|l| l.trim().to_string())
            .collect();
        Machine {
            date: out(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"])),
            nproc: nproc.max(1),
            mem_bytes,
            cpu_model,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            commit,
            bpftrace: out(Command::new("bpftrace").arg("--version")),
            load_start: loadavg(),
            load_end: String::new(),
            others,
            foreign: (0, 0, Vec::new()),
        }
    }
}

/// Whether a `ps -eo pid,args` line is a running cowtrace or bpftrace (not a shell or
/// tmux that merely mentions one).
pub fn is_tracer(line: &str) -> bool {
    let mut words = line.split_whitespace();
    let (Some(_pid), Some(prog)) = (words.next(), words.next()) else {
        return false;
    };
    let name = prog.rsplit('/').next().unwrap_or(prog);
    (name == "cowtrace" || name == "bpftrace")
        && words
            .next()
            .is_some_and(|a| a != "check" && a != "--help" && a != "--version")
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

pub struct Results {
    pub machine: Machine,
    pub quick: bool,
    pub cow: Option<cow::Results>,
    pub redis: Option<redis::Results>,
    pub storms: Option<Vec<StormResult>>,
    pub view: Option<super::view::Results>,
    pub elapsed_s: f64,
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

/// `Spread` of bytes, as MiB.
fn mib_spread(s: Option<Spread>) -> String {
    s.map_or_else(
        || "n/a".into(),
        |s| {
            format!(
                "{} ({}–{})",
                mib(s.median),
                mib(s.min).trim_end_matches(" MiB"),
                mib(s.max)
            )
        },
    )
}

fn rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M/s", r / 1e6)
    } else {
        format!("{:.0}k/s", r / 1e3)
    }
}

fn rate_spread(s: Option<Spread>) -> String {
    s.map_or_else(
        || "n/a".into(),
        |s| format!("{} ({}–{})", rate(s.median), rate(s.min), rate(s.max)),
    )
}

/// What the A/A control says about configuration `cfg`, paired round by round.
fn noise_note(c: &cow::Results, cfg: C, wall: M, cpu: M) -> String {
    let (kw, nw) = c.above_control(cfg, wall);
    let (kc, nc) = c.above_control(cfg, cpu);
    let ctl = c.ratio(C::Control, wall);
    format!(
        "Noise: its ratio was above the same round's A/A control ratio in {kw} of {nw} rounds \
         (wall clock; thread CPU time: {kc} of {nc}); the control itself is {}.",
        ratio_or_na(ctl)
    )
}

pub fn render(r: &Results) -> String {
    let mut md = String::new();
    let m = &r.machine;
    let _ = writeln!(md, "# cowtrace benchmarks\n");
    if r.quick {
        let _ = writeln!(
            md,
            "**`--quick` run: tiny sizes, one or two rounds. These figures mean nothing.**\n"
        );
    }
    let _ = writeln!(
        md,
        "Written by `cargo xtask bench` on {} (the run took {:.1} min). Regenerate with \
         `sudo cargo xtask bench`; the code is in `xtask/src/bench/`, the workload in \
         `agent/examples/cowbench.rs`, the bpftrace peers in `bench/*.bt`.\n",
        m.date,
        r.elapsed_s / 60.0
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(
        md,
        "| machine | {} CPUs ({}), {:.1} GiB memory |",
        m.nproc,
        m.cpu_model,
        m.mem_bytes as f64 / (1u64 << 30) as f64
    );
    let _ = writeln!(md, "| kernel | {} |", m.kernel);
    let _ = writeln!(md, "| cowtrace | commit {} |", m.commit);
    let redis_v = r
        .redis
        .as_ref()
        .map_or("not run", |x| x.redis_version.as_str());
    let _ = writeln!(md, "| peers | {}; {} |", m.bpftrace, redis_v);
    let _ = writeln!(
        md,
        "| load average (1, 5, 15 min) | {} at the start, {} at the end |",
        m.load_start, m.load_end
    );
    let (runs, with, seen) = &m.foreign;
    if *with > 0 || !m.others.is_empty() {
        let mut all: Vec<String> = m.others.clone();
        all.extend(seen.iter().cloned());
        all.dedup();
        let _ = writeln!(
            md,
            "| **other tracers on the machine** | {with} of {runs} runs started while a cowtrace or \
             bpftrace that this harness did not start was running (their programs also run on \
             every fault and syscall, so those runs' baselines are not clean): {} |",
            all.iter()
                .map(|c| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join("; ")
        );
    } else {
        let _ = writeln!(
            md,
            "| other tracers on the machine | none seen before any of the {runs} runs |"
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "**How to read this.** Every figure is a ratio between runs of this one invocation, \
         taken in alternating order (a round runs each configuration once, in an order \
         rotated from round to round; storms alternate untraced/traced, then traced/untraced), \
         and is reported as the median over the rounds with the min–max range in brackets. \
         Absolute times appear only next to the ratio they come from. This VM is noisy: \
         identical untraced runs differ by up to ±15% (see the A/A control in section 1, \
         the same untraced configuration twice per round), and other engineers may be \
         compiling on it at the same time (see the load average). Nothing here is asserted: \
         benchmarks are not tests.\n"
    );

    summary(&mut md, r);
    if let Some(c) = &r.cow {
        section1(&mut md, c);
    }
    if let Some(x) = &r.redis {
        section2(&mut md, x);
    }
    if let Some(s) = &r.storms {
        section3(&mut md, s);
    }
    section4(&mut md, r);
    if let Some(c) = &r.cow {
        section5(&mut md, c);
    }
    missed(&mut md, r);
    raw(&mut md, r);
    md
}

/// The best storm: the highest cowtrace-counted rate among storms with no drops and
/// exact totals (or the highest at all, if none qualifies), default settings only.
fn best_storm(storms: &[StormResult]) -> Option<(&StormResult, Spread, bool)> {
    let clean = |s: &StormResult| s.total_lost() == 0 && s.all_exact();
    let mut v: Vec<(&StormResult, Spread, bool)> = storms
        .iter()
        .filter(|s| s.storm.ring_bytes.is_none())
        .filter_map(|s| Some((s, s.traced_rate()?, clean(s))))
        .collect();
    v.sort_by(|a, b| {
        (b.2, b.1.median)
            .partial_cmp(&(a.2, a.1.median))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    v.into_iter().next()
}

/// Agent CPU in % of one core per 100k events/s, from CPU seconds per million events:
/// at 100k events/s a million events take 10 s, so the share is (s per M) / 10 s.
fn pct_per_100k(s_per_m: f64) -> f64 {
    s_per_m * 10.0
}

/// The traced runs of the storms with cowtrace's default settings (not the small-ring
/// variant, which trades CPU for memory on purpose).
fn all_traced(r: &Results) -> Vec<&super::capacity::Traced> {
    r.storms
        .iter()
        .flatten()
        .filter(|s| s.storm.ring_bytes.is_none())
        .flat_map(|s| s.traced_info())
        .collect()
}

/// Every cowtrace start-to-attached time of the invocation, in ms.
fn attach_all(r: &Results) -> Vec<f64> {
    let mut v: Vec<f64> = Vec::new();
    if let Some(c) = &r.cow {
        v.extend(c.attach_ms(C::Cowtrace));
        v.extend(c.attach_ms(C::CowtraceElsewhere));
    }
    v.extend(all_traced(r).iter().map(|t| t.attach_ms));
    v
}

fn rss_excl_ring(r: &Results) -> Option<Spread> {
    Spread::of(
        &all_traced(r)
            .iter()
            .map(|t| t.hwm_end.saturating_sub(t.ring_rss) as f64)
            .collect::<Vec<_>>(),
    )
}

fn cpu_pct_all(r: &Results) -> Option<Spread> {
    Spread::of(
        &all_traced(r)
            .iter()
            .filter(|t| t.counted > 0)
            .map(|t| pct_per_100k(t.cpu_s / (t.counted as f64 / 1e6)))
            .collect::<Vec<_>>(),
    )
}

fn summary(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "| figure | target | result: median (min–max) | verdict |\n|---|---|---|---|"
    );
    if let Some(c) = &r.cow {
        for (what, m) in [("wall clock", M::CowWall), ("thread CPU time", M::CowCpu)] {
            let ct = c.ratio(C::Cowtrace, m);
            let _ = writeln!(
                md,
                "| 1. time per COW copy ({what}), traced by cowtrace ÷ untraced | ≤ {T_COW:.2}× | {} | {} |",
                ratio_or_na(ct),
                ct.map_or("n/a".into(), |s| verdict_max(s.median, T_COW))
            );
        }
        let _ = writeln!(
            md,
            "| 1. the same, traced by the bpftrace peer (counts only) | ≈ 1.00× | wall {}; CPU {} | peer |",
            ratio_or_na(c.ratio(C::Bpftrace, M::CowWall)),
            ratio_or_na(c.ratio(C::Bpftrace, M::CowCpu))
        );
        let _ = writeln!(
            md,
            "| 1. the hooks alone: empty bpftrace programs on both tracepoints | – | wall {}; CPU {} | floor of any tracer on these hooks |",
            ratio_or_na(c.ratio(C::HookFloor, M::CowWall)),
            ratio_or_na(c.ratio(C::HookFloor, M::CowCpu))
        );
        let _ = writeln!(
            md,
            "| 1. A/A control: untraced ÷ untraced, same round | 1.00× | wall {}; CPU {} | noise floor |",
            ratio_or_na(c.ratio(C::Control, M::CowWall)),
            ratio_or_na(c.ratio(C::Control, M::CowCpu))
        );
    }
    if let Some(x) = &r.redis {
        let _ = writeln!(
            md,
            "| 2. Redis parent CPU per 1k SETs during BGSAVE, cowtrace ÷ none | (report only) | {} | see §2 |",
            ratio_or_na(x.cpu_ratio(R::Cowtrace))
        );
        let _ = writeln!(
            md,
            "| 2. the same, bpftrace peer ÷ none | (report only) | {} | see §2 |",
            ratio_or_na(x.cpu_ratio(R::Bpftrace))
        );
    }
    if let Some(s) = &r.storms {
        if let Some((best, rate_s, clean)) = best_storm(s) {
            let _ = writeln!(
                md,
                "| 3. events/s traced, zero drops, exact totals | ≥ 2 M/s | {} in storm `{}` ({}) | {} |",
                rate_spread(Some(rate_s)),
                best.storm.name,
                if clean {
                    "0 drops, exact"
                } else {
                    "NOT clean: drops or inexact totals"
                },
                if clean {
                    verdict_min(rate_s.median, T_RATE)
                } else {
                    "missed (not clean)".into()
                }
            );
        }
        let cpu = cpu_pct_all(r);
        let _ = writeln!(
            md,
            "| 4. cowtrace CPU, % of one core per 100k events/s | ≤ {T_CPU_PCT:.0}% | {} | {} |",
            cpu.map_or("n/a".into(), |s| format!(
                "{:.2}% ({:.2}–{:.2})",
                s.median, s.min, s.max
            )),
            cpu.map_or("n/a".into(), |s| verdict_max(s.median, T_CPU_PCT))
        );
        let rss = rss_excl_ring(r);
        let _ = writeln!(
            md,
            "| 4. cowtrace peak RSS (VmHWM) minus ring-buffer pages | ≤ 32 MiB | {} | {} |",
            mib_spread(rss),
            rss.map_or("n/a".into(), |s| verdict_max(s.median, T_RSS))
        );
    }
    let att = Spread::of(&attach_all(r));
    if att.is_some() {
        let _ = writeln!(
            md,
            "| 4. start to attached (spawn → `meta` line) | ≤ 300 ms | {} ms{} | {} |",
            num_or_na(att, 0),
            r.cow
                .as_ref()
                .and_then(|c| c.attach_ratio())
                .map_or(String::new(), |s| format!("; {} of bpftrace's", s.ratio())),
            att.map_or("n/a".into(), |s| verdict_max(s.median, T_ATTACH_MS))
        );
    }
    if let Some(c) = &r.cow {
        for (what, w, cpu) in [
            ("COW copy", M::CowWall, M::CowCpu),
            ("first-touch (zero-fill) fault", M::TouchWall, M::TouchCpu),
            ("4 KiB write() to tmpfs", M::WriteWall, M::WriteCpu),
        ] {
            let e = c.ratio(C::CowtraceElsewhere, w);
            let _ = writeln!(
                md,
                "| 5. untraced process, cowtrace loaded elsewhere ÷ not loaded: {what} | ≤ {T_ELSEWHERE:.2}× | wall {}; CPU {} | {} |",
                ratio_or_na(e),
                ratio_or_na(c.ratio(C::CowtraceElsewhere, cpu)),
                e.map_or("n/a".into(), |s| verdict_max(s.median, T_ELSEWHERE))
            );
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "A verdict compares the median alone. How far to trust it: section 1 says in how many \
         rounds each tracer's ratio was above the A/A control of the same round; where the \
         control moves as much as the distance to the target, one invocation cannot tell a \
         miss from noise.\n"
    );
}

fn section1(md: &mut String, c: &cow::Results) {
    let p = c.params;
    let _ = writeln!(md, "## 1. Cost per COW fault\n");
    let _ = writeln!(
        md,
        "**Method.** `cowbench --mode cow --mib {} --reps {} --touch-mib {}`: {} MiB of private \
         anonymous memory (THP off for the region) is populated and written before the \
         tracer attaches; then, {} times, the process forks a child that only waits and \
         rewrites one byte of every page ({} pages: one copy each), timing that loop alone \
         with CLOCK_MONOTONIC. A run's value is the median ns per page of its {} rewrites. \
         {} rounds; each runs every configuration once, in rotated order, and each ratio is \
         that configuration's run divided by the untraced run of the same round. cowtrace \
         is `cowtrace record -o FILE -p PID`, counted as attached when the `meta` line is in \
         FILE; the peer is `bpftrace bench/cow.bt PID`, which counts copies in a map on the \
         same two tracepoints (`exceptions:page_fault_user` with `(error_code & 3) == 3`, \
         then `kmem:mm_page_alloc` of a user page in the same thread) and streams nothing. \
         Both tracers' counts are checked against the pages written (within {} pages of \
         libc/stack copies per fork).\n",
        p.mib,
        p.reps,
        p.touch_mib,
        p.mib,
        p.reps,
        p.mib * 256,
        p.reps,
        p.rounds,
        cow::SLACK
    );
    let _ = writeln!(
        md,
        "| configuration | wall ns per copy | wall ratio to untraced | extra wall ns per copy | CPU ns per copy | CPU ratio to untraced | copies counted |\n|---|---|---|---|---|---|---|"
    );
    for cfg in [
        C::Untraced,
        C::Control,
        C::Cowtrace,
        C::Bpftrace,
        C::HookFloor,
    ] {
        let runs = c.runs_of(cfg);
        let counted = if matches!(cfg, C::Cowtrace | C::Bpftrace) {
            let ok = runs.iter().filter(|r| r.exact == Some(true)).count();
            let lost: u64 = runs.iter().filter_map(|r| r.lost).sum();
            let counted = Spread::of(
                &runs
                    .iter()
                    .filter_map(|r| r.counted.map(|v| v as f64))
                    .collect::<Vec<_>>(),
            );
            let made = runs.first().map_or(0, |r| r.expected);
            let mut s = format!(
                "{} for {made} made; exact in {ok} of {} runs",
                num_or_na(counted, 0),
                runs.len()
            );
            if cfg == C::Cowtrace {
                let _ = write!(s, "; {lost} events lost");
            }
            s
        } else {
            "–".into()
        };
        let reference = cfg == C::Untraced;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cfg.label(),
            num_or_na(c.ns(cfg, M::CowWall), 0),
            if reference {
                "1 (reference)".into()
            } else {
                ratio_or_na(c.ratio(cfg, M::CowWall))
            },
            if reference {
                "–".into()
            } else {
                num_or_na(c.extra_ns(cfg, M::CowWall), 0)
            },
            num_or_na(c.ns(cfg, M::CowCpu), 0),
            if reference {
                "1 (reference)".into()
            } else {
                ratio_or_na(c.ratio(cfg, M::CowCpu))
            },
            counted
        );
    }
    let _ = writeln!(md);
    for cfg in [C::Cowtrace, C::Bpftrace, C::HookFloor] {
        let (kw, n) = c.above_control(cfg, M::CowWall);
        let (kc, _) = c.above_control(cfg, M::CowCpu);
        let _ = writeln!(
            md,
            "- {}: ratio above the same round's A/A control in {kw} of {n} rounds (wall), {kc} of {n} (CPU time).",
            cfg.label()
        );
    }
    let _ = writeln!(
        md,
        "\nThe wall clock is what the brief asks for; the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, \
         user + system, which includes the tracers' programs since they run in the faulting \
         thread) leaves out the time the thread sat preempted by other work, which on this \
         shared 2-CPU VM is most of the noise. Neither includes the tracer's own userspace \
         work, which section 4 measures.\n"
    );
}

fn section2(md: &mut String, x: &redis::Results) {
    let p = x.params;
    let _ = writeln!(md, "## 2. Overhead on Redis during a BGSAVE\n");
    let _ = writeln!(
        md,
        "**Method.** One redis-server on a unix socket, filled with {} keys of 100 B \
         (RSS {:.0} MiB). A run: start the tracer, `CONFIG SET rdb-key-save-delay {}` (µs per \
         key, so the save would take far longer than the window), `BGSAVE`, then the measured \
         window: `redis-benchmark -t set -n {} -r {} -d 100 -P 16 -q` over the existing keys, \
         so the parent keeps rewriting memory it shares with the save child (COW copies). \
         Then SIGUSR1 to the child (a cancelled save for Redis), and the tracer is stopped. \
         Figures: the Redis process's CPU time over the window (all threads, from its \
         CPU-time clock) per 1,000 SETs, and redis-benchmark's SET/s. {} rounds of the \
         three configurations in rotated order; ratios within a round. cowtrace is \
         `cowtrace record -p REDIS`; the peer is `bpftrace bench/redis.bt REDIS` (COW copies \
         of Redis and its children, bytes its children write, counted in maps).\n",
        p.keys,
        x.rss_bytes as f64 / (1u64 << 20) as f64,
        p.save_delay_us,
        p.sets,
        p.keys,
        p.rounds
    );
    let _ = writeln!(
        md,
        "| configuration | CPU ms per 1k SETs | ratio | SET/s | ratio | parent COW copies counted | child bytes written counted |\n|---|---|---|---|---|---|---|"
    );
    for cfg in redis::CONFIGS {
        let runs = x.runs_of(cfg);
        let copies = Spread::of(
            &runs
                .iter()
                .filter_map(|r| r.parent_copies.map(|v| v as f64))
                .collect::<Vec<_>>(),
        );
        let bytes = Spread::of(
            &runs
                .iter()
                .filter_map(|r| r.child_write_bytes.map(|v| v as f64))
                .collect::<Vec<_>>(),
        );
        let reference = cfg == R::Untraced;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cfg.label(),
            num_or_na(x.cpu(cfg), 2),
            if reference {
                "1 (reference)".into()
            } else {
                ratio_or_na(x.cpu_ratio(cfg))
            },
            num_or_na(x.ops(cfg), 0),
            if reference {
                "1 (reference)".into()
            } else {
                ratio_or_na(x.ops_ratio(cfg))
            },
            if reference {
                "–".into()
            } else {
                num_or_na(copies, 0)
            },
            if reference {
                "–".into()
            } else {
                mib_spread(bytes)
            },
        );
    }
    let _ = writeln!(md);
    let early = x
        .runs
        .iter()
        .flatten()
        .flatten()
        .filter(|r| !r.child_alive)
        .count();
    if early > 0 {
        let _ = writeln!(
            md,
            "**{early} run(s) had the save child gone before the window ended**: their COW load is lower.\n"
        );
    }
    let lost: u64 = x.runs_of(R::Cowtrace).iter().filter_map(|r| r.lost).sum();
    let _ = writeln!(
        md,
        "cowtrace lost {lost} events over these runs. The parent copies differ from run to \
         run because each save starts from the memory the previous SETs left; the two \
         tracers' counts cover slightly different spans (the peer counts from its attach to \
         its stop, cowtrace the session from fork to exit, and the peer also takes zero-page \
         fills for copies). Redis throughput on this VM moves 2–3× between rounds \
         (KERNEL-NOTES), so these ratios are reported but cannot decide anything alone: \
         section 1 measures the same per-copy cost without Redis's noise.\n"
    );
}

fn section3(md: &mut String, storms: &[StormResult]) {
    let _ = writeln!(md, "## 3. Capacity: event rate, drops and exact totals\n");
    let pairs = storms.first().map_or(0, |s| s.traced.len());
    let _ = writeln!(
        md,
        "**Method.** A storm starts its processes together (`cowbench`, populated before the \
         tracer attaches) and times each one's loop with CLOCK_MONOTONIC; the rate is all \
         the events over the span from the first start to the last end. Each storm runs {pairs} \
         pairs, untraced/traced then traced/untraced. Traced means one `cowtrace record -p \
         P1 -p P2 ... -p SLEEPER` (default 8 MiB COW ring, forced wakeup at half full, 100 ms \
         timer drain). The traced rate counts the events cowtrace reports (COW: each \
         session's `cow.parent_pages`; writes: `writes.calls`). Exact means every session's \
         total matched its process (COW: within {} pages of the pages written; writes: \
         `writes.bytes` equal to the bytes written, and as many calls). Drops are the \
         trace's `end.lost_cow_events` (the event ring that carries both COW and write \
         events). Write storms write to tmpfs, so the disk is not what is measured.\n",
        cow::SLACK
    );
    let _ = writeln!(
        md,
        "| storm | untraced events/s | traced: events/s cowtrace counted | speed traced ÷ untraced | drops | totals |\n|---|---|---|---|---|---|"
    );
    for s in storms {
        let exact = s.traced_info().iter().filter(|t| t.exact).count();
        let _ = writeln!(
            md,
            "| `{}`: {} | {} | {} | {} | {} | exact in {} of {} |",
            s.storm.name,
            s.storm.describe(),
            rate_spread(s.untraced_rate()),
            rate_spread(s.traced_rate()),
            ratio_or_na(s.speed_ratio()),
            s.total_lost(),
            exact,
            s.traced.len()
        );
        for t in s.traced_info() {
            for m in &t.mismatches {
                let _ = writeln!(md, "|   mismatch | {m} | | | | |");
            }
        }
    }
    let _ = writeln!(md);
    if let Some(s) = storms.iter().find(|s| s.storm.ring_bytes.is_some()) {
        let b = s.storm.ring_bytes.unwrap_or(0);
        let _ = writeln!(
            md,
            "`{}` runs cowtrace with a {} KiB COW ring instead of the default 8 MiB: the forced \
             wakeup at half full then comes every ~{} events (48 bytes each), so the ring keeps \
             up only if those wakeups do: it lost {} events over {} runs, at {} of the untraced \
             speed. It is left out of the summary and of section 4's totals.\n",
            s.storm.name,
            b / 1024,
            b / 2 / 48,
            s.total_lost(),
            s.traced.len(),
            ratio_or_na(s.speed_ratio()),
        );
    }
    if let Some((best, rate_s, clean)) = best_storm(storms) {
        let _ = writeln!(
            md,
            "Best clean rate: {} (storm `{}`, {}). Target ≥ 2 M COW+write events/s: {}.\n",
            rate_spread(Some(rate_s)),
            best.storm.name,
            if clean {
                "zero drops, exact totals"
            } else {
                "not clean"
            },
            verdict_min(rate_s.median, T_RATE)
        );
    }
}

fn section4(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## 4. What cowtrace costs itself\n");
    let _ = writeln!(
        md,
        "**Method.** In the traced storms of section 3: cowtrace's CPU time (its CPU-time \
         clock, all threads) from just after it attached until 300 ms after the storm \
         ended (by then its 100 ms timer has drained the ring), divided by the events it \
         counted; as a share of one core that is (CPU s per million events) ÷ 10 s at \
         100k events/s. Memory: VmHWM from /proc/PID/status right after attach and at the \
         end of the storm; the ring-buffer pages are the resident pages of its \
         `anon_inode:bpf-map` mappings in /proc/PID/smaps (the data pages of a BPF ring are \
         mapped twice, so they count twice in RSS). Start to attached: from spawning \
         `cowtrace record` to the `meta` line in its output, over every cowtrace start of \
         this invocation, and as a ratio to bpftrace's spawn-to-`BEGIN` in the same rounds \
         of section 1.\n"
    );
    let _ = writeln!(
        md,
        "| figure | target | result: median (min–max) |\n|---|---|---|"
    );
    if let Some(storms) = &r.storms {
        for s in storms {
            let share = s.cpu_share();
            let _ = writeln!(
                md,
                "| CPU, storm `{}` | ≤ 0.20 s per M events (2% of a core per 100k/s) | {} s per M events = {} % of one core per 100k events/s (it used {} % of one core at {}) |",
                s.storm.name,
                num_or_na(s.cpu_per_m(), 3),
                s.cpu_per_m()
                    .map_or("n/a".into(), |x| format!("{:.2}", pct_per_100k(x.median))),
                share.map_or("n/a".into(), |x| format!("{:.1}", x.median * 100.0)),
                rate_spread(s.traced_rate())
                    .split(" (")
                    .next()
                    .unwrap_or("n/a")
            );
        }
        let t = all_traced(r);
        let sp = |f: &dyn Fn(&&super::capacity::Traced) -> f64| {
            Spread::of(&t.iter().map(f).collect::<Vec<_>>())
        };
        let _ = writeln!(
            md,
            "| peak RSS (VmHWM) at the end of a storm | – | {} |",
            mib_spread(sp(&|t| t.hwm_end as f64))
        );
        let _ = writeln!(
            md,
            "| of which ring-buffer pages (smaps) | – | {} |",
            mib_spread(sp(&|t| t.ring_rss as f64))
        );
        let _ = writeln!(
            md,
            "| VmHWM minus ring-buffer pages | ≤ 32 MiB | {} |",
            mib_spread(rss_excl_ring(r))
        );
        let _ = writeln!(
            md,
            "| VmHWM right after attach, before any event | – | {} |",
            mib_spread(sp(&|t| t.hwm_attach as f64))
        );
        let _ = writeln!(
            md,
            "| VmRSS at the end of a storm | – | {} |",
            mib_spread(sp(&|t| t.rss_end as f64))
        );
        let _ = writeln!(
            md,
            "| peak RSS over cowtrace's whole run (wait4 `ru_maxrss`) | – | {} |",
            mib_spread(sp(&|t| t.life_max_rss as f64))
        );
        let _ = writeln!(
            md,
            "| CPU to start (load and attach) | – | {} s (user {} s, system {} s, 10 ms ticks) |",
            num_or_na(sp(&|t| t.startup_cpu_s), 3),
            num_or_na(sp(&|t| t.startup_user_s), 2),
            num_or_na(sp(&|t| t.startup_sys_s), 2)
        );
        let _ = writeln!(
            md,
            "| CPU over cowtrace's whole run (wait4), storm included | – | {} s |",
            num_or_na(sp(&|t| t.life_cpu_s), 3)
        );
    }
    let att = Spread::of(&attach_all(r));
    let _ = writeln!(
        md,
        "| start to attached, all {} starts | ≤ 300 ms | {} ms |",
        att.map_or(0, |s| s.n),
        num_or_na(att, 0)
    );
    if let Some(c) = &r.cow {
        let _ = writeln!(
            md,
            "| start to attached ÷ bpftrace's, same round | – | {} (bpftrace: {} ms) |",
            ratio_or_na(c.attach_ratio()),
            num_or_na(Spread::of(&c.attach_ms(C::Bpftrace)), 0)
        );
    }
    let mut stops: Vec<f64> = all_traced(r).iter().map(|t| t.stop_ms).collect();
    if let Some(c) = &r.cow {
        stops.extend(c.stop_ms(C::CowtraceElsewhere));
    }
    if let Some(x) = &r.redis {
        stops.extend(x.runs_of(R::Cowtrace).iter().filter_map(|r| r.stop_ms));
    }
    if !stops.is_empty() {
        let bt = r
            .cow
            .as_ref()
            .and_then(|c| Spread::of(&c.stop_ms(C::Bpftrace)));
        let _ = writeln!(
            md,
            "| SIGINT to exit (trace finished and programs detached) | – | {} ms (bpftrace: {} ms) |",
            num_or_na(Spread::of(&stops), 0),
            num_or_na(bt, 0)
        );
    }
    match &r.view {
        Some(v) => {
            let _ = writeln!(
                md,
                "| live view CPU per refresh (`watch -i 0.2` on an idle target, CPU from schedstat between 2 s and 9.5 s, agent ticks included) | – | full screen 120x40: {} ms; `--plain`: {} ms |",
                num_or_na(Spread::of(&v.full_ms), 2),
                num_or_na(Spread::of(&v.plain_ms), 2)
            );
        }
        None => {
            let _ = writeln!(
                md,
                "| live view CPU per refresh | – | not measured in this run (`--only` without `view`) |"
            );
        }
    }
    let _ = writeln!(md);
}

fn section5(md: &mut String, c: &cow::Results) {
    let _ = writeln!(md, "## 5. Cost on processes cowtrace does not trace\n");
    let _ = writeln!(
        md,
        "**Method.** From the rounds of section 1: the same `cowbench` process, untraced, \
         while a `cowtrace record -p SLEEPER` traces an idle `sleep`: cowtrace's programs \
         are attached and fire on every fault and page allocation of the host, but this \
         process is not a target. Three things are timed: the COW copies; the first touch \
         of {} MiB of fresh memory (one zero-fill fault per page, timed before the forks); \
         and, after the forks, {} MiB written by the process itself to a tmpfs file in 4 KiB \
         write() calls (cowtrace attaches to the write and sync syscall tracepoints, and any \
         attached syscall tracepoint sends every syscall of every task through the kernel's \
         syscall-work slow path). Also shown: the same figures for a process cowtrace *does* \
         trace, and for the bpftrace peer (which only hooks the two fault tracepoints).\n",
        c.params.touch_mib, c.params.write_mib
    );
    let _ = writeln!(
        md,
        "| configuration | COW copy: wall ratio | COW copy: CPU ratio | first touch: wall ns | first touch: wall ratio | first touch: CPU ratio | write(): wall ns | write(): wall ratio | write(): CPU ratio |\n|---|---|---|---|---|---|---|---|---|"
    );
    for cfg in [
        C::Untraced,
        C::Control,
        C::CowtraceElsewhere,
        C::Cowtrace,
        C::Bpftrace,
        C::HookFloor,
    ] {
        let reference = cfg == C::Untraced;
        let r = |m| {
            if reference {
                "1 (reference)".into()
            } else {
                ratio_or_na(c.ratio(cfg, m))
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            cfg.label(),
            r(M::CowWall),
            r(M::CowCpu),
            num_or_na(c.ns(cfg, M::TouchWall), 0),
            r(M::TouchWall),
            r(M::TouchCpu),
            num_or_na(c.ns(cfg, M::WriteWall), 0),
            r(M::WriteWall),
            r(M::WriteCpu),
        );
    }
    let _ = writeln!(md);
}

fn missed(md: &mut String, r: &Results) {
    let mut items: Vec<String> = Vec::new();
    if let Some(c) = &r.cow {
        if let Some(ct) = c.ratio(C::Cowtrace, M::CowWall)
            && ct.median > T_COW
        {
            let extra = c
                .extra_ns(C::Cowtrace, M::CowWall)
                .map_or(f64::NAN, |s| s.median);
            let peer = c
                .extra_ns(C::Bpftrace, M::CowWall)
                .map_or(f64::NAN, |s| s.median);
            let base = c.ns(C::Untraced, M::CowWall).map_or(f64::NAN, |s| s.median);
            let cpu = c
                .ratio(C::Cowtrace, M::CowCpu)
                .map_or(f64::NAN, |s| s.median);
            let cpu_extra = c
                .extra_ns(C::Cowtrace, M::CowCpu)
                .map_or(f64::NAN, |s| s.median);
            let cpu_peer = c
                .extra_ns(C::Bpftrace, M::CowCpu)
                .map_or(f64::NAN, |s| s.median);
            let floor = c.ratio(C::HookFloor, M::CowCpu);
            let floor_ns = c
                .extra_ns(C::HookFloor, M::CowCpu)
                .map_or(f64::NAN, |s| s.median);
            // Two floors from the same rounds: cowtrace's own (BTF) hooks when they only
            // filter, i.e. cowtrace tracing another process; and empty bpftrace programs
            // on the classic tracepoints.
            let own = c.ratio(C::CowtraceElsewhere, M::CowCpu);
            let own_ns = c
                .extra_ns(C::CowtraceElsewhere, M::CowCpu)
                .map_or(f64::NAN, |s| s.median);
            let floor_text = match (own, floor) {
                (Some(o), Some(f)) => format!(
                    " Two floors were measured in the same rounds: cowtrace's own hooks when they \
                     only filter (cowtrace loaded but tracing another process, section 5) cost {} \
                     ({own_ns:+.0} ns per copy), and empty bpftrace programs on the classic \
                     tracepoints {} ({floor_ns:+.0} ns). {} cowtrace's work on top of its \
                     filter-only cost is about {:+.0} ns per copy.",
                    o.ratio(),
                    f.ratio(),
                    if o.median > T_COW && f.median > T_COW {
                        "Both are above the target, so on this VM no tracer on these hooks reaches \
                         it; the hooks themselves, not the work in them, are most of the cost."
                    } else if o.median > T_COW {
                        "cowtrace's filter-only cost alone is above the target."
                    } else {
                        "The filter-only cost leaves room under the target."
                    },
                    cpu_extra - own_ns
                ),
                _ => String::new(),
            };
            items.push(format!(
                "**COW fault cost** {:.3}× against ≤ {T_COW:.2}× (missed by {:.1}%): cowtrace adds \
                 {extra:+.0} ns to a {base:.0} ns copy, the bpftrace peer {peer:+.0} ns (medians of \
                 per-round differences). In the thread's CPU time, which preemption does not \
                 inflate, the ratio is {cpu:.3}× ({cpu_extra:+.0} ns; peer {cpu_peer:+.0} ns).{floor_text} \
                 What cowtrace does per copy (agent-ebpf/src/fault.rs), where the peer updates one \
                 count: in `page_fault_user`, a `TRACED` lookup, the walk of the session chain in \
                 `SESSIONS`, two atomic counter updates and an in-place `PENDING` update; in \
                 `mm_page_alloc`, the `PENDING` lookup, counter updates in `TRACED` and `SESSIONS`, \
                 a `BPF_RB_AVAIL_DATA` query, `bpf_ktime_get_ns` and a 40-byte ring-buffer \
                 reserve/submit; and its userspace drains and decodes every \
                 event on the other core, which on 2 vCPUs competes with the workload. {}",
                ct.median,
                (ct.median / T_COW - 1.0) * 100.0,
                noise_note(c, C::Cowtrace, M::CowWall, M::CowCpu),
            ));
        }
        const FAULTS: &str = "cowtrace's fault programs run for every user fault and page \
            allocation on the host: a fault that is not a write-protect fault costs a `PENDING` \
            lookup, a write-protect fault a `TRACED` lookup, a user-page allocation a `PENDING` \
            lookup (other allocations only a gfp test), plus the cost of the hook itself, which the empty-program row of sections 1 \
            and 5 measures on this VM.";
        const SYSCALLS: &str = "cowtrace attaches programs to the syscall tracepoints of \
            write, pwrite64, writev, pwritev(2), fsync, fdatasync, sync_file_range, rename(at)(2), \
            clone/fork and exit_group. While any syscall tracepoint has a user, the kernel flags \
            every task for syscall work (`syscall_regfunc` in kernel/tracepoint.c sets \
            `SYSCALL_WORK_SYSCALL_TRACEPOINT` on all threads), so every syscall of every process \
            leaves the fast path, and each write() also runs cowtrace's enter and exit programs \
            (a `TRACED` lookup each). The bpftrace peer, on the fault tracepoints only, does not \
            pay this. Avoiding it needs hooks that are not syscall tracepoints (fentry/fexit on \
            `vfs_write`, which this kernel refuses, or a narrower set of syscalls).";
        for (what, w, cpu_m, why) in [
            ("COW copies", M::CowWall, M::CowCpu, FAULTS),
            ("first-touch faults", M::TouchWall, M::TouchCpu, FAULTS),
            ("write() syscalls", M::WriteWall, M::WriteCpu, SYSCALLS),
        ] {
            let (s, cpu) = (
                c.ratio(C::CowtraceElsewhere, w),
                c.ratio(C::CowtraceElsewhere, cpu_m),
            );
            if let Some(s) = s
                && (s.median > T_ELSEWHERE || cpu.is_some_and(|c| c.median > T_ELSEWHERE))
            {
                items.push(format!(
                    "**Cost on untraced processes ({what})**: wall {} ({}), thread CPU time {} ({}) \
                     against ≤ {T_ELSEWHERE:.2}×. {why} {}",
                    s.ratio(),
                    verdict_max(s.median, T_ELSEWHERE),
                    ratio_or_na(cpu),
                    cpu.map_or("n/a".into(), |c| verdict_max(c.median, T_ELSEWHERE)),
                    noise_note(c, C::CowtraceElsewhere, w, cpu_m),
                ));
            }
        }
    }
    if let Some(storms) = &r.storms {
        if let Some((best, rate_s, clean)) = best_storm(storms)
            && (!clean || rate_s.median < T_RATE)
        {
            let ceiling = storms
                .iter()
                .filter_map(|s| s.untraced_rate())
                .map(|s| s.median)
                .fold(0.0, f64::max);
            let per_thread = storms
                .iter()
                .filter(|s| s.storm.is_single_cow())
                .filter_map(|s| s.untraced_rate())
                .map(|s| s.median)
                .next();
            let speed = ratio_or_na(best.speed_ratio());
            let why = if ceiling < T_RATE {
                format!(
                    "The first limit is the workload on this machine: untraced, the fastest \
                     storm made only {} in all{}, so 2 vCPUs cannot make 2 M faults or \
                     write() calls per second whoever watches.",
                    rate(ceiling),
                    per_thread.map_or(String::new(), |p| format!(
                        " (one thread copying as fast as it can: {}, i.e. {:.1} µs per copy)",
                        rate(p),
                        1e6 / p
                    )),
                )
            } else {
                format!(
                    "The workload alone reaches {} here, so the limit is cowtrace.",
                    rate(ceiling)
                )
            };
            let drops = if clean {
                String::new()
            } else {
                format!(
                    " The best storm lost {} events or had inexact totals (see section 3).",
                    best.total_lost()
                )
            };
            let writes = storms
                .iter()
                .find(|s| s.storm.cow_procs == 0 && s.storm.write_procs > 0)
                .and_then(|s| Some((s.storm.name, s.speed_ratio()?)));
            let traced_write = r
                .cow
                .as_ref()
                .and_then(|c| c.ratio(C::Cowtrace, M::WriteCpu));
            let write_note = match (writes, traced_write) {
                (Some((name, sp)), Some(tw)) => format!(
                    " Writes are where cowtrace costs the most: `{name}` ran at {} of its untraced \
                     speed, and in section 5 a traced process's 4 KiB write() takes {} of an \
                     untraced one (agent-ebpf/src/write.rs: the enter program inserts into the \
                     `SYSCALL_START` LRU map; the exit program looks it up and deletes it, reads \
                     fd → file → inode through five kernel-memory reads, updates counters, \
                     inserts into the `INODE_OWNER` LRU map on every call, and emits an event; in \
                     a session it also updates `FILES`).",
                    sp.ratio(),
                    tw.ratio()
                ),
                _ => String::new(),
            };
            items.push(format!(
                "**Capacity** {} ({}) against ≥ 2 M events/s: {}. {why} Traced, the storm \
                 `{}` ran at {speed} of its untraced speed (pairs): the rest is cowtrace's \
                 kernel-side work per event, plus its userspace taking CPU from the \
                 workload on a 2-CPU machine.{write_note}{drops}",
                rate(rate_s.median),
                if clean {
                    "zero drops, exact totals"
                } else {
                    "with drops or inexact totals"
                },
                verdict_min(rate_s.median, T_RATE),
                best.storm.name,
            ));
        }
        if let Some(cpu) = cpu_pct_all(r)
            && cpu.median > T_CPU_PCT
        {
            items.push(format!(
                "**Agent CPU** {:.2}% of one core per 100k events/s against ≤ {T_CPU_PCT:.0}% (missed \
                 by {:.0}%): {:.2} µs of userspace and syscall time per event (ring drain, decode, \
                 session bookkeeping).",
                cpu.median,
                (cpu.median / T_CPU_PCT - 1.0) * 100.0,
                cpu.median / 10.0
            ));
        }
        let t = all_traced(r);
        if let Some(rss) = rss_excl_ring(r)
            && rss.median > T_RSS
        {
            let at_attach = Spread::of(&t.iter().map(|t| t.hwm_attach as f64).collect::<Vec<_>>());
            let end_rss = Spread::of(&t.iter().map(|t| t.rss_end as f64).collect::<Vec<_>>());
            let from_start = at_attach.is_some_and(|a| a.median >= rss.median);
            items.push(format!(
                "**Peak RSS** {} without ring pages against ≤ 32 MiB (missed by {:.0}%). VmHWM is \
                 already {} right after attach, before any event{}, and RSS at the end of a storm \
                 is {}: the peak comes from start-up (loading the BPF object and reading the \
                 kernel's BTF, whose parsed form is freed afterwards), not from the events. A \
                 lower peak needs a leaner start-up (e.g. read only the BTF types it needs).",
                mib(rss.median),
                (rss.median / T_RSS - 1.0) * 100.0,
                mib_spread(at_attach),
                if from_start {
                    " (as high as the peak)"
                } else {
                    ""
                },
                mib_spread(end_rss),
            ));
        }
    }
    let att = Spread::of(&attach_all(r));
    if let Some(a) = att
        && a.median > T_ATTACH_MS
    {
        let bt = r
            .cow
            .as_ref()
            .and_then(|c| Spread::of(&c.attach_ms(C::Bpftrace)));
        let cpu = Spread::of(
            &all_traced(r)
                .iter()
                .map(|t| t.startup_cpu_s)
                .collect::<Vec<_>>(),
        );
        items.push(format!(
            "**Start to attached** {:.0} ms against ≤ 300 ms (missed by {:.0}%). bpftrace, which \
             compiles its script with LLVM first, attached in {} ms in the same rounds. cowtrace's \
             start-up is CPU-bound: {} s of CPU before it attached (section 4), so on a busy \
             2-CPU machine it also waits for a CPU. A perf profile taken while writing this \
             harness put most of that CPU in reading the kernel BTF rather than in the verifier: \
             /sys/kernel/btf/vmlinux (5.5 MB here) is parsed three times (cowtrace's offsets via \
             btf-rs, then aya twice), and btf-rs reads it through a seeking reader (about 127k \
             lseek syscalls per start). Reading the file into memory once and parsing from the \
             bytes would remove most of it.",
            a.median,
            (a.median / T_ATTACH_MS - 1.0) * 100.0,
            num_or_na(bt, 0),
            num_or_na(cpu, 3),
        ));
    }
    let _ = writeln!(md, "## Where targets are missed\n");
    if items.is_empty() {
        let _ = writeln!(
            md,
            "Every target with a figure in this run was met (by the median).\n"
        );
    } else {
        for i in items {
            let _ = writeln!(md, "- {i}\n");
        }
    }
}

fn raw(md: &mut String, r: &Results) {
    let _ = writeln!(md, "## Raw runs\n");
    if let Some(c) = &r.cow {
        let _ = writeln!(
            md,
            "Section 1/5, wall / CPU ns per COW copy by round (first-touch wall ns in brackets):\n"
        );
        let _ = writeln!(
            md,
            "| configuration | {} |",
            (1..=c.params.rounds)
                .map(|i| format!("r{i}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(md, "|---|{}", "---|".repeat(c.params.rounds));
        for (i, cfg) in cow::CONFIGS.iter().enumerate() {
            let cells: Vec<String> = c.runs[i]
                .iter()
                .map(|x| {
                    x.as_ref().map_or("–".into(), |x| {
                        format!("{:.0} / {:.0} ({:.0})", x.cow_ns, x.cow_cpu_ns, x.touch_ns)
                    })
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", cfg.label(), cells.join(" | "));
        }
        let _ = writeln!(md);
    }
    if let Some(x) = &r.redis {
        let _ = writeln!(md, "Section 2, CPU ms per 1k SETs / SET/s by round:\n");
        let _ = writeln!(
            md,
            "| configuration | {} |",
            (1..=x.params.rounds)
                .map(|i| format!("r{i}"))
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(md, "|---|{}", "---|".repeat(x.params.rounds));
        for (i, cfg) in redis::CONFIGS.iter().enumerate() {
            let cells: Vec<String> = x.runs[i]
                .iter()
                .map(|v| {
                    v.as_ref().map_or("–".into(), |v| {
                        format!("{:.2} / {:.0}", v.cpu_ms_per_k, v.ops_per_s)
                    })
                })
                .collect();
            let _ = writeln!(md, "| {} | {} |", cfg.label(), cells.join(" | "));
        }
        let _ = writeln!(md);
    }
    if let Some(storms) = &r.storms {
        let _ = writeln!(
            md,
            "Section 3/4, per pair: untraced events/s, traced events/s, cowtrace CPU s, VmHWM, ring pages:\n"
        );
        for s in storms {
            let cells: Vec<String> = s
                .untraced
                .iter()
                .zip(&s.traced)
                .map(|(u, t)| {
                    let tr = t.traced.clone().unwrap_or_default();
                    format!(
                        "{} / {} / {:.3} s / {} / {}",
                        rate(u.rate()),
                        rate(t.rate()),
                        tr.cpu_s,
                        mib(tr.hwm_end as f64),
                        mib(tr.ring_rss as f64)
                    )
                })
                .collect();
            let _ = writeln!(md, "- `{}`: {}", s.storm.name, cells.join("; "));
        }
        let _ = writeln!(md);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::capacity::{Run as SRun, Storm, Traced};

    fn machine() -> Machine {
        Machine {
            date: "2025-01-01 00:00 UTC".into(),
            nproc: 2,
            mem_bytes: 24 << 30,
            cpu_model: "test CPU".into(),
            kernel: "6.18".into(),
            commit: "abc".into(),
            bpftrace: "bpftrace v0.17.0".into(),
            load_start: "1 1 1".into(),
            load_end: "1 1 1".into(),
            others: vec![],
            foreign: (10, 0, vec![]),
        }
    }

    fn cow_run(ns: f64) -> Option<cow::Run> {
        Some(cow::Run {
            cow_ns: ns,
            cow_cpu_ns: ns,
            touch_ns: ns,
            touch_cpu_ns: ns,
            write_ns: ns,
            write_cpu_ns: ns,
            counted: Some(100),
            expected: 100,
            exact: Some(true),
            lost: Some(0),
            attach_ms: Some(400.0),
            stop_ms: Some(1000.0),
        })
    }

    #[test]
    fn tracer_lines() {
        assert!(is_tracer(
            "24327 /work/main/target/release/cowtrace watch -p 30591"
        ));
        assert!(is_tracer("99 bpftrace -e tracepoint:x {}"));
        assert!(!is_tracer(
            "24324 bash -c /work/main/target/release/cowtrace watch -p 30591"
        ));
        assert!(!is_tracer("4709 tmux -L vt new-session cowtrace watch"));
        assert!(!is_tracer("5 /usr/bin/cowtrace check"));
    }

    #[test]
    fn renders_every_section_and_names_misses() {
        let p = cow::Params {
            rounds: 1,
            mib: 1,
            reps: 1,
            touch_mib: 1,
            write_mib: 1,
        };
        // untraced, control, cowtrace (10% slower), bpftrace, elsewhere, hook floor
        let runs = [1000.0, 1000.0, 1100.0, 1000.0, 1000.0, 1000.0]
            .iter()
            .map(|&ns| vec![cow_run(ns)])
            .collect();
        let traced = Traced {
            counted: 1_000_000,
            exact: true,
            cpu_s: 0.05,
            hwm_attach: 40 << 20,
            hwm_end: 40 << 20,
            rss_end: 20 << 20,
            ring_rss: 16 << 20,
            attach_ms: 400.0,
            ..Traced::default()
        };
        let storm = StormResult {
            storm: Storm::cow("cow-test", 1, 1),
            untraced: vec![SRun {
                events: 1_000_000,
                span_s: 2.0,
                traced: None,
            }],
            traced: vec![SRun {
                events: 1_000_000,
                span_s: 2.5,
                traced: Some(traced),
            }],
        };
        let r = Results {
            machine: machine(),
            quick: false,
            cow: Some(cow::Results { params: p, runs }),
            redis: None,
            storms: Some(vec![storm]),
            view: Some(super::super::view::Results {
                full_ms: vec![1.5, 1.7],
                plain_ms: vec![1.0],
            }),
            elapsed_s: 60.0,
        };
        let md = render(&r);
        for h in [
            "## Summary",
            "## 1. Cost per COW fault",
            "## 3. Capacity",
            "## 4. What cowtrace costs itself",
            "## 5. Cost on processes",
            "## Where targets are missed",
            "live view CPU per refresh",
        ] {
            assert!(md.contains(h), "missing {h:?} in:\n{md}");
        }
        // 1.1× against 1.03×, 400 ms against 300 ms, 400k/s against 2 M/s.
        assert!(md.contains("missed by 6.8%"), "{md}");
        assert!(md.contains("**Start to attached** 400 ms"), "{md}");
        assert!(md.contains("**Capacity** 400k/s"), "{md}");
        // 0.05 s per M events = 0.5% of a core per 100k/s: met. 24 MiB without ring: met.
        assert!(!md.contains("**Agent CPU**"), "{md}");
        assert!(!md.contains("**Peak RSS**"), "{md}");
    }

    /// Every section with figures, and every target missed: three rounds of section 1/5
    /// (wall ns per configuration and round), two of Redis, a COW, a write and a
    /// small-ring storm.
    pub(super) fn fixture() -> Results {
        let p = cow::Params {
            rounds: 3,
            mib: 4,
            reps: 2,
            touch_mib: 8,
            write_mib: 2,
        };
        let run = |cow: f64, touch: f64, write: f64, traced: bool| {
            Some(cow::Run {
                cow_ns: cow,
                cow_cpu_ns: cow - 10.0,
                touch_ns: touch,
                touch_cpu_ns: touch - 5.0,
                write_ns: write,
                write_cpu_ns: write - 1.0,
                counted: traced.then_some(1030),
                expected: 1024,
                exact: traced.then_some(true),
                lost: traced.then_some(2),
                attach_ms: traced.then_some(350.0),
                stop_ms: traced.then_some(900.0),
            })
        };
        // CONFIGS order: untraced, control, cowtrace, bpftrace, elsewhere, hook floor.
        let table: [[(f64, f64, f64); 3]; 6] = [
            [
                (3000.0, 2000.0, 2500.0),
                (3100.0, 2100.0, 2600.0),
                (2900.0, 2050.0, 2550.0),
            ],
            [
                (3050.0, 2010.0, 2490.0),
                (3000.0, 2120.0, 2640.0),
                (2950.0, 2040.0, 2500.0),
            ],
            [
                (3700.0, 2300.0, 4000.0),
                (3800.0, 2400.0, 4100.0),
                (3600.0, 2350.0, 4050.0),
            ],
            [
                (4600.0, 3000.0, 2800.0),
                (4700.0, 3100.0, 2900.0),
                (4500.0, 3050.0, 2850.0),
            ],
            [
                (3150.0, 2200.0, 3100.0),
                (3250.0, 2300.0, 3200.0),
                (3050.0, 2250.0, 3150.0),
            ],
            [
                (3300.0, 2500.0, 2700.0),
                (3400.0, 2600.0, 2800.0),
                (3200.0, 2550.0, 2750.0),
            ],
        ];
        let runs = table
            .iter()
            .enumerate()
            .map(|(i, rounds)| {
                let traced = matches!(
                    cow::CONFIGS[i],
                    C::Cowtrace | C::Bpftrace | C::CowtraceElsewhere
                );
                rounds
                    .iter()
                    .map(|&(c, t, w)| run(c, t, w, traced))
                    .collect()
            })
            .collect();
        let rrun = |cpu: f64, ops: f64, traced: bool| {
            Some(redis::Run {
                cpu_ms_per_k: cpu,
                ops_per_s: ops,
                parent_copies: traced.then_some(14000),
                child_write_bytes: traced.then_some(400 << 10),
                child_alive: true,
                lost: traced.then_some(0),
                stop_ms: traced.then_some(800.0),
            })
        };
        let redis = redis::Results {
            params: redis::Params {
                rounds: 2,
                keys: 1000,
                sets: 2000,
                save_delay_us: 100,
            },
            runs: vec![
                vec![rrun(2.0, 400_000.0, false), rrun(2.2, 380_000.0, false)],
                vec![rrun(2.1, 390_000.0, true), rrun(2.4, 350_000.0, true)],
                vec![rrun(2.3, 360_000.0, true), None],
            ],
            redis_version: "Redis server v=7.0.15".into(),
            rss_bytes: 50 << 20,
        };
        let traced = |counted: u64, cpu_s: f64, ring: u64| Traced {
            counted,
            exact: true,
            cpu_s,
            hwm_attach: 60 << 20,
            hwm_end: 60 << 20,
            rss_end: 30 << 20,
            ring_rss: ring,
            attach_ms: 420.0,
            startup_cpu_s: 0.3,
            startup_user_s: 0.2,
            startup_sys_s: 0.1,
            stop_ms: 1900.0,
            life_cpu_s: 0.5,
            life_max_rss: 60 << 20,
            ..Traced::default()
        };
        let storm =
            |storm: Storm, events: u64, untraced_s: f64, traced_s: f64, cpu_s: f64, ring: u64| {
                StormResult {
                    storm,
                    untraced: vec![SRun {
                        events,
                        span_s: untraced_s,
                        traced: None,
                    }],
                    traced: vec![SRun {
                        events,
                        span_s: traced_s,
                        traced: Some(traced(events, cpu_s, ring)),
                    }],
                }
            };
        let mut mism = storm(
            Storm::write("write-2x8MiB", 2, 8),
            4096,
            0.01,
            0.02,
            0.002,
            18 << 20,
        );
        if let Some(t) = mism.traced[0].traced.as_mut() {
            t.mismatches.push("pid 7: 10 calls, 9 counted".into());
        }
        Results {
            machine: machine(),
            quick: false,
            cow: Some(cow::Results { params: p, runs }),
            redis: Some(redis),
            storms: Some(vec![
                storm(
                    Storm::cow("cow-1x8MiB", 1, 8),
                    2048,
                    0.01,
                    0.0125,
                    0.001,
                    18 << 20,
                ),
                mism,
                storm(
                    Storm {
                        ring_bytes: Some(64 << 10),
                        ..Storm::cow("cow-1x4MiB-ring64KiB", 1, 4)
                    },
                    1024,
                    0.005,
                    0.008,
                    0.001,
                    2 << 20,
                ),
            ]),
            view: Some(super::super::view::Results {
                full_ms: vec![0.4, 0.5],
                plain_ms: vec![0.3],
            }),
            elapsed_s: 300.0,
        }
    }

    #[test]
    fn renders_fixture() {
        let md = render(&fixture());
        if let Ok(p) = std::env::var("BENCH_REPORT_DUMP") {
            std::fs::write(p, &md).unwrap();
        }
        assert!(md.contains("## 2. Overhead on Redis"), "{md}");
    }
}
