//! Section 5: cost on processes cowtrace does not trace (from the rounds of section 1).

use super::super::cow::{self, Config as C, Metric as M};
use super::super::stats::num_or_na;
use super::fmt::{head, ratio_cell, row};

pub(super) fn render(md: &mut String, c: &cow::Results) {
    out!(md, "## 5. Cost on processes cowtrace does not trace\n");
    out!(
        md,
        "**Method.** From the rounds of section 1: the same `cowbench` process, untraced, \
         while a `cowtrace record -p SLEEPER` traces an idle `sleep`: cowtrace's programs \
         are attached and fire on every fault and page allocation of the host, but this \
         process is not a target. Three things are timed: the COW copies; the first touch \
         of {} MiB of fresh memory (one zero-fill fault per page, timed before the forks); \
         and, after the forks, {} MiB written by the process itself to a tmpfs file in 4 KiB \
         write() calls. Also shown: the same figures for a process cowtrace *does* \
         trace, and for the bpftrace peer (which only hooks the two fault tracepoints).\n",
        c.params.touch_mib,
        c.params.write_mib
    );
    head(
        md,
        &[
            "configuration",
            "COW copy: wall ratio",
            "COW copy: CPU ratio",
            "first touch: wall ns",
            "first touch: wall ratio",
            "first touch: CPU ratio",
            "write(): wall ns",
            "write(): wall ratio",
            "write(): CPU ratio",
        ],
    );
    for cfg in [
        C::Untraced,
        C::Control,
        C::CowtraceElsewhere,
        C::Cowtrace,
        C::Bpftrace,
        C::HookFloor,
        C::SyscallFloor,
    ] {
        if !c.has(cfg) {
            continue;
        }
        let r = |m| ratio_cell(cfg == C::Untraced, || c.ratio(cfg, m));
        row(
            md,
            &[
                cfg.label().to_string(),
                r(M::CowWall),
                r(M::CowCpu),
                num_or_na(c.ns(cfg, M::TouchWall), 0),
                r(M::TouchWall),
                r(M::TouchCpu),
                num_or_na(c.ns(cfg, M::WriteWall), 0),
                r(M::WriteWall),
                r(M::WriteCpu),
            ],
        );
    }
    out!(md);
}
