//! Section 1: cost per COW fault, traced and untraced, against the bpftrace peer.

use super::super::cow::{self, Config as C, Metric as M};
use super::super::stats::{Spread, num_or_na};
use super::fmt::{head, ratio_cell, row, spread, unless_reference};

pub(super) fn render(md: &mut String, c: &cow::Results) {
    let p = c.params;
    out!(md, "## 1. Cost per COW fault\n");
    out!(
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
    head(
        md,
        &[
            "configuration",
            "wall ns per copy",
            "wall ratio to untraced",
            "extra wall ns per copy",
            "CPU ns per copy",
            "CPU ratio to untraced",
            "copies counted",
        ],
    );
    for cfg in [
        C::Untraced,
        C::Control,
        C::Cowtrace,
        C::Bpftrace,
        C::HookFloor,
    ] {
        let reference = cfg == C::Untraced;
        row(
            md,
            &[
                cfg.label().to_string(),
                num_or_na(c.ns(cfg, M::CowWall), 0),
                ratio_cell(reference, || c.ratio(cfg, M::CowWall)),
                unless_reference(reference, "–", || {
                    num_or_na(c.extra_ns(cfg, M::CowWall), 0)
                }),
                num_or_na(c.ns(cfg, M::CowCpu), 0),
                ratio_cell(reference, || c.ratio(cfg, M::CowCpu)),
                counted(c, cfg),
            ],
        );
    }
    out!(md);
    for cfg in [C::Cowtrace, C::Bpftrace, C::HookFloor] {
        let (kw, n) = c.above_control(cfg, M::CowWall);
        let (kc, _) = c.above_control(cfg, M::CowCpu);
        out!(
            md,
            "- {}: ratio above the same round's A/A control in {kw} of {n} rounds (wall), {kc} of {n} (CPU time).",
            cfg.label()
        );
    }
    out!(
        md,
        "\nThe wall clock is what the brief asks for; the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, \
         user + system, which includes the tracers' programs since they run in the faulting \
         thread) leaves out the time the thread sat preempted by other work, which on this \
         shared 2-CPU VM is most of the noise. Neither includes the tracer's own userspace \
         work, which section 4 measures.\n"
    );
}

/// The "copies counted" cell: the tracers' counts against the pages written.
fn counted(c: &cow::Results, cfg: C) -> String {
    if !matches!(cfg, C::Cowtrace | C::Bpftrace) {
        return "–".into();
    }
    let runs = c.runs_of(cfg);
    let ok = runs.iter().filter(|r| r.exact == Some(true)).count();
    let lost: u64 = runs.iter().filter_map(|r| r.lost).sum();
    let counted: Option<Spread> = spread(runs.iter().filter_map(|r| r.counted.map(|v| v as f64)));
    let made = runs.first().map_or(0, |r| r.expected);
    let mut s = format!(
        "{} for {made} made; exact in {ok} of {} runs",
        num_or_na(counted, 0),
        runs.len()
    );
    if cfg == C::Cowtrace {
        s.push_str(&format!("; {lost} events lost"));
    }
    s
}
