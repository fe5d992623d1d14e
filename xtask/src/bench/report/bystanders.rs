//! Section 9: what cowtrace costs a process it does not trace, next to empty programs on
//! each family of its hooks, so the cost can be split between the hooks themselves and
//! cowtrace's programs (issue 12).

use super::super::cow::{self, Config as C, Metric as M};
use super::super::stats::{num_or_na, ratio_or_na, verdict_max};
use super::fmt::{head, median, ratio_cell, row};

/// Issue 12's target for an untraced process: within 2% of no agent.
pub const T_BYSTANDER: f64 = 1.02;

/// The three operations timed, with their wall and CPU metrics.
const OPS: [(&str, M, M); 3] = [
    ("COW copy", M::CowWall, M::CowCpu),
    ("first-touch fault", M::TouchWall, M::TouchCpu),
    ("4 KiB write()", M::WriteWall, M::WriteCpu),
];

pub(super) fn render(md: &mut String, c: &cow::Results) {
    out!(
        md,
        "## 9. Bystanders: cost on untraced processes, and its floor\n"
    );
    out!(
        md,
        "**Method.** As section 5, in a run of its own (`--only bystanders`): one `cowbench` \
         process, never traced, first touches {} MiB (one zero-fill fault per page), then \
         {} times forks a child that waits while the parent rewrites {} MiB (one COW copy per \
         page), then writes {} MiB to a tmpfs file in 4 KiB write() calls; each is timed \
         with the thread's CPU time (CLOCK_THREAD_CPUTIME_ID, which includes the programs run \
         in that thread and leaves out preemption) and the wall clock. Configurations: \
         nothing loaded; again (A/A control); `cowtrace record -p OTHER` (every cowtrace \
         program attached, tracing an idle `sleep`); `bpftrace bench/empty.bt` (empty \
         programs on the classic `exceptions:page_fault_user` and `kmem:mm_page_alloc` \
         tracepoints: the fault hooks); `bpftrace bench/empty-syscalls.bt` (empty programs \
         on the classic `raw_syscalls:sys_enter`/`sys_exit` tracepoints: the syscall hooks). \
         bpftrace v0.17 has no raw tracepoints, so both floors use the classic dispatch, \
         which does more per call than cowtrace's `tp_btf` programs (it copies the \
         arguments into a record first): they are upper bounds of an empty `tp_btf` \
         program. {} rounds in rotated order; ratios within a round.\n",
        c.params.touch_mib,
        c.params.reps,
        c.params.mib,
        c.params.write_mib,
        c.params.rounds
    );
    let mut cols = vec!["configuration".to_string()];
    for (what, _, _) in OPS {
        cols.push(format!("{what}: CPU ratio"));
        cols.push(format!("{what}: extra CPU ns"));
        cols.push(format!("{what}: wall ratio"));
    }
    head(md, &cols.iter().map(String::as_str).collect::<Vec<_>>());
    for cfg in cow::BYSTANDER_CONFIGS {
        if !c.has(cfg) {
            continue;
        }
        let reference = cfg == C::Untraced;
        let mut cells = vec![cfg.label().to_string()];
        for (_, wall, cpu) in OPS {
            cells.push(ratio_cell(reference, || c.ratio(cfg, cpu)));
            cells.push(if reference {
                format!("{} ns (absolute)", num_or_na(c.ns(cfg, cpu), 0))
            } else {
                num_or_na(c.extra_ns(cfg, cpu), 0)
            });
            cells.push(ratio_cell(reference, || c.ratio(cfg, wall)));
        }
        row(md, &cells);
    }
    out!(md);
    for (what, _, cpu) in OPS {
        let e = c.ratio(C::CowtraceElsewhere, cpu);
        let (k, n) = c.above_control(C::CowtraceElsewhere, cpu);
        out!(
            md,
            "- **{what}**, cowtrace loaded elsewhere ÷ nothing loaded (target ≤ \
             {T_BYSTANDER:.2}×): {} ({}); above the same round's A/A control in {k} of {n} \
             rounds (control {}). {}",
            ratio_or_na(e),
            e.map_or("n/a".into(), |s| verdict_max(s.median, T_BYSTANDER)),
            ratio_or_na(c.ratio(C::Control, cpu)),
            floor_note(c, what, cpu)
        );
    }
    out!(md);
    out!(
        md,
        "By round, CPU ns per COW copy / first touch / write() (wall ns per write() in \
         brackets):\n"
    );
    let rows: Vec<(&str, &Vec<Option<cow::Run>>)> = cow::CONFIGS
        .iter()
        .zip(&c.runs)
        .filter(|(cfg, _)| c.has(**cfg))
        .map(|(cfg, runs)| (cfg.label(), runs))
        .collect();
    super::fmt::by_round(md, c.params.rounds, rows, |r| {
        format!(
            "{:.0} / {:.0} / {:.0} ({:.0})",
            r.cow_cpu_ns, r.touch_cpu_ns, r.write_cpu_ns, r.write_ns
        )
    });
}

/// How much of the bystander's extra CPU per operation the empty programs on the hooks
/// that operation crosses account for (medians of per-round differences).
fn floor_note(c: &cow::Results, what: &str, cpu: M) -> String {
    let (floor_cfg, hooks) = if cpu == M::WriteCpu {
        (C::SyscallFloor, "the syscall hooks")
    } else {
        (C::HookFloor, "the fault hooks")
    };
    let ours = median(c.extra_ns(C::CowtraceElsewhere, cpu));
    let floor = median(c.extra_ns(floor_cfg, cpu));
    if !ours.is_finite() || !floor.is_finite() {
        return String::new();
    }
    let share = if ours > 0.0 && floor > 0.0 {
        format!(" ({:.0}% of cowtrace's)", floor / ours * 100.0)
    } else {
        String::new()
    };
    format!(
        "Empty programs on {hooks} alone: {} ({floor:+.0} ns per {what}{share}); cowtrace \
         loaded elsewhere: {ours:+.0} ns.",
        ratio_or_na(c.ratio(floor_cfg, cpu))
    )
}
