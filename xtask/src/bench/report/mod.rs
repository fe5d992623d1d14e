//! `bench/RESULTS.md`: the machine, the method and the figures of one invocation.
//! Where a target is missed, the text says by how much, from the figures of the same
//! invocation. Why a figure is what it is (what the agent does inside) is not generated:
//! it is written by hand in `bench/ANALYSIS.md`, which RESULTS.md links to, so that
//! claims about the code are dated and cannot go stale unnoticed.
//!
//! One module per section: `summary`, `cow` (1), `redis` (2), `capacity` (3), `agent`
//! (4, with the live view), `untraced` (5), `postmortem` (6), `missed`, `raw`; `fmt` holds the table and
//! number formatting they share.

/// `writeln!` into a `String`, which cannot fail.
macro_rules! out {
    ($md:expr) => {
        out!($md, "")
    };
    ($md:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($md, $($arg)*);
    }};
}

mod agent;
mod bystanders;
mod capacity;
mod cow;
mod fmt;
mod idle;
mod machine;
mod missed;
mod postmortem;
mod raw;
mod redis;
mod stop;
mod summary;
#[cfg(test)]
mod tests;
mod untraced;

pub use machine::{Machine, is_tracer, loadavg};

use super::capacity::{StormResult, Traced};
use super::cow::Config as C;
use super::stats::Spread;

/// Targets from issue 7.
const T_COW: f64 = 1.03;
const T_ELSEWHERE: f64 = 1.01;
const T_RATE: f64 = 2e6;
/// % of one core per 100k events/s.
const T_CPU_PCT: f64 = 2.0;
const T_RSS: f64 = 32.0 * 1024.0 * 1024.0;
const T_ATTACH_MS: f64 = 300.0;

/// The hand-written analysis, relative to RESULTS.md.
const ANALYSIS: &str = "[ANALYSIS.md](ANALYSIS.md)";

pub struct Results {
    pub machine: Machine,
    pub quick: bool,
    pub cow: Option<super::cow::Results>,
    pub redis: Option<super::redis::Results>,
    pub storms: Option<Vec<StormResult>>,
    pub view: Option<super::view::Results>,
    pub postmortem: Option<super::postmortem::Results>,
    /// Section 7: Redis outside saves.
    pub idle: Option<super::idle::Results>,
    /// Section 8: start and stop from outside.
    pub stop: Option<super::stop::Results>,
    /// Section 9: the bystander runs (a subset of the COW configurations).
    pub bystanders: Option<super::cow::Results>,
    pub elapsed_s: f64,
}

/// The sections that are measured on their own and can replace theirs in an existing
/// RESULTS.md (`--update-sections`): each rendered alone, stamped with the date, commit
/// and load of this run.
pub fn standalone_sections(r: &Results, how: &str) -> Vec<String> {
    let mut v = Vec::new();
    let mut add = |f: &dyn Fn(&mut String)| {
        let mut md = String::new();
        f(&mut md);
        v.push(stamp(&md, &r.machine, how));
    };
    if let Some(p) = &r.postmortem {
        add(&|md| postmortem::render(md, p));
    }
    if let Some(x) = &r.idle {
        add(&|md| idle::render(md, x));
    }
    if let Some(x) = &r.stop {
        add(&|md| stop::render(md, x));
    }
    if let Some(x) = &r.bystanders {
        add(&|md| bystanders::render(md, x));
    }
    v
}

/// `section` with a line saying when, on which commit and under what load it was
/// measured, after its heading.
pub fn stamp(section: &str, m: &Machine, how: &str) -> String {
    section.replacen(
        "\n\n",
        &format!(
            "\n\n*Measured on {} (commit {}, load average {} at the start, {} at the end) by `{how}`, apart from the other sections.*\n\n",
            m.date, m.commit, m.load_start, m.load_end
        ),
        1,
    )
}

/// The `## N. ` that starts a numbered section (None for any other text).
fn section_head(section: &str) -> Option<&str> {
    let rest = section.strip_prefix("## ")?;
    let dot = rest.find(". ")?;
    rest[..dot]
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| &section[..3 + dot + 2])
}

/// `old` with the numbered section of the same number as `section` replaced by it, or
/// `section` put before "Where targets are missed" (or at the end) when it has none.
pub fn replace_section(old: &str, section: &str) -> String {
    let section = section.trim_end().to_string() + "\n\n";
    if let Some(head) = section_head(&section)
        && let Some(a) = old
            .match_indices(head)
            .map(|(i, _)| i)
            .find(|&i| i == 0 || old[..i].ends_with('\n'))
    {
        let after = &old[a + head.len()..];
        let b = after
            .find("\n## ")
            .map_or(old.len(), |i| a + head.len() + i + 1);
        return format!("{}{section}{}", &old[..a], &old[b..]);
    }
    match old.find("## Where targets are missed") {
        Some(i) => format!("{}{section}{}", &old[..i], &old[i..]),
        None => format!("{}\n{section}", old.trim_end()),
    }
}

pub fn render(r: &Results) -> String {
    let mut md = String::new();
    header(&mut md, r);
    summary::render(&mut md, r);
    if let Some(c) = &r.cow {
        cow::render(&mut md, c);
    }
    if let Some(x) = &r.redis {
        redis::render(&mut md, x);
    }
    if let Some(s) = &r.storms {
        capacity::render(&mut md, s);
    }
    agent::render(&mut md, r);
    if let Some(c) = &r.cow {
        untraced::render(&mut md, c);
    }
    if let Some(p) = &r.postmortem {
        postmortem::render(&mut md, p);
    }
    if let Some(x) = &r.idle {
        idle::render(&mut md, x);
    }
    if let Some(x) = &r.stop {
        stop::render(&mut md, x);
    }
    if let Some(x) = &r.bystanders {
        bystanders::render(&mut md, x);
    }
    missed::render(&mut md, r);
    raw::render(&mut md, r);
    md
}

/// Title, machine and how to read the figures.
fn header(md: &mut String, r: &Results) {
    let m = &r.machine;
    out!(md, "# cowtrace benchmarks\n");
    if r.quick {
        out!(
            md,
            "**`--quick` run: tiny sizes, one or two rounds. These figures mean nothing.**\n"
        );
    }
    out!(
        md,
        "Written by `cargo xtask bench` on {} (the run took {:.1} min). Regenerate with \
         `sudo cargo xtask bench`; the code is in `xtask/src/bench/`, the workload in \
         `agent/examples/cowbench.rs`, the bpftrace peers in `bench/*.bt`. Why the figures \
         are what they are is in {ANALYSIS}, written by hand.\n",
        m.date,
        r.elapsed_s / 60.0
    );
    out!(md, "| | |\n|---|---|");
    fmt::row(
        md,
        &[
            "machine".to_string(),
            format!(
                "{} CPUs ({}), {:.1} GiB memory",
                m.nproc,
                m.cpu_model,
                m.mem_bytes as f64 / (1u64 << 30) as f64
            ),
        ],
    );
    fmt::row(md, &["kernel", &m.kernel]);
    fmt::row(
        md,
        &["cowtrace".to_string(), format!("commit {}", m.commit)],
    );
    let redis_v = r
        .redis
        .as_ref()
        .map_or("not run", |x| x.redis_version.as_str());
    fmt::row(
        md,
        &["peers".to_string(), format!("{}; {redis_v}", m.bpftrace)],
    );
    fmt::row(
        md,
        &[
            "load average (1, 5, 15 min)".to_string(),
            format!("{} at the start, {} at the end", m.load_start, m.load_end),
        ],
    );
    let (runs, with, seen) = &m.foreign;
    if *with > 0 || !m.others.is_empty() {
        let mut all: Vec<String> = m.others.clone();
        all.extend(seen.iter().cloned());
        all.dedup();
        out!(
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
        out!(
            md,
            "| other tracers on the machine | none seen before any of the {runs} runs |"
        );
    }
    out!(md);
    out!(
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
}

// Figures that several sections use.

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
fn all_traced(r: &Results) -> Vec<&Traced> {
    r.storms
        .iter()
        .flatten()
        .filter(|s| s.storm.ring_bytes.is_none())
        .flat_map(|s| s.traced_info())
        .collect()
}

/// One figure of every default-settings traced storm run.
fn traced_spread(r: &Results, f: impl Fn(&Traced) -> f64) -> Option<Spread> {
    fmt::spread(all_traced(r).into_iter().map(f))
}

/// Every cowtrace start-to-attached time of the invocation, in ms.
fn attach_all(r: &Results) -> Option<Spread> {
    let mut v: Vec<f64> = Vec::new();
    if let Some(c) = &r.cow {
        v.extend(c.attach_ms(C::Cowtrace));
        v.extend(c.attach_ms(C::CowtraceElsewhere));
    }
    v.extend(all_traced(r).iter().map(|t| t.attach_ms));
    Spread::of(&v)
}

fn rss_excl_ring(r: &Results) -> Option<Spread> {
    traced_spread(r, |t| t.hwm_end.saturating_sub(t.ring_rss) as f64)
}

fn cpu_pct_all(r: &Results) -> Option<Spread> {
    fmt::spread(
        all_traced(r)
            .iter()
            .filter(|t| t.counted > 0)
            .map(|t| pct_per_100k(t.cpu_s / (t.counted as f64 / 1e6))),
    )
}
