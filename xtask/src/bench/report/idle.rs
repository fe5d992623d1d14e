//! Section 7: a traced Redis outside saves (issue 12).

use super::super::idle::{self, Config as I, OPS};
use super::super::stats::{num_or_na, ratio_or_na, verdict_max, verdict_min};
use super::fmt::{by_round, head, median, ratio_cell, row};

/// Issue 12's target for a traced server outside saves: CPU per request and requests per
/// second within 2% of no agent.
pub const T_IDLE: f64 = 1.02;

pub(super) fn render(md: &mut String, x: &idle::Results) {
    out!(md, "## 7. Redis outside saves\n");
    out!(
        md,
        "**Method.** One redis-server on a unix socket, filled with {} keys of 100 B; no save \
         runs in any window (checked with `INFO persistence`). A run: start the tracer (or \
         not), wait 300 ms, then two windows: `redis-benchmark -t set` and then `-t get`, \
         {} requests each over the loaded keys, {} clients, no pipelining (one request per \
         round trip, as most applications send them). Figures: the server's CPU time over \
         the window (all threads, its CPU-time clock) per request, and redis-benchmark's \
         requests per second. {} rounds of the {} configurations in rotated order; ratios \
         within a round. `cowtrace record -p REDIS` is how the product traces a server; \
         `-p OTHER` traces an idle `sleep` instead, so Redis is a bystander; the empty \
         programs are bpftrace's on the classic `raw_syscalls:sys_enter`/`sys_exit` \
         tracepoints: the syscall slow path that any program on those hooks switches on \
         for every task (section 9). redis-benchmark runs on the same 2 CPUs and pays the \
         same slow path on its own syscalls.\n",
        x.params.keys,
        x.params.requests,
        x.params.clients,
        x.params.rounds,
        idle::CONFIGS.len()
    );
    let mut cols = vec!["configuration".to_string()];
    for op in OPS {
        let n = op.name();
        cols.extend([
            format!("{n}: server CPU ns per request"),
            "ratio".into(),
            format!("{n}/s"),
            "ratio".into(),
        ]);
    }
    head(md, &cols.iter().map(String::as_str).collect::<Vec<_>>());
    for cfg in idle::CONFIGS {
        let reference = cfg == I::Untraced;
        let mut cells = vec![cfg.label().to_string()];
        for op in OPS {
            cells.extend([
                num_or_na(x.cpu(cfg, op), 0),
                ratio_cell(reference, || x.cpu_ratio(cfg, op)),
                num_or_na(x.ops(cfg, op), 0),
                ratio_cell(reference, || x.ops_ratio(cfg, op)),
            ]);
        }
        row(md, &cells);
    }
    out!(md);
    let traced = x.runs_of(I::Cowtrace);
    let lost: u64 = traced.iter().filter_map(|r| r.lost).sum();
    let sessions: usize = traced.iter().filter_map(|r| r.sessions).sum();
    out!(
        md,
        "`cowtrace record -p REDIS` lost {lost} events and recorded {sessions} sessions over \
         these runs (none expected: no save ran).\n"
    );
    for op in OPS {
        let n = op.name();
        let cpu = x.cpu_ratio(I::Cowtrace, op);
        let ops = x.ops_ratio(I::Cowtrace, op);
        out!(
            md,
            "- **{n}, traced ÷ no agent** (target ≤ {T_IDLE:.2}×): server CPU per request {} \
             ({}), +{} ns; requests per second {} ({}). The empty programs on the syscall \
             hooks alone: CPU {} (+{} ns), requests per second {}; Redis not traced, cowtrace \
             tracing another process: CPU {} (+{} ns), requests per second {}.",
            ratio_or_na(cpu),
            cpu.map_or("n/a".into(), |s| verdict_max(s.median, T_IDLE)),
            num_or_na(x.extra_cpu_ns(I::Cowtrace, op), 0),
            ratio_or_na(ops),
            ops.map_or("n/a".into(), |s| verdict_min(s.median, 1.0 / T_IDLE)),
            ratio_or_na(x.cpu_ratio(I::SyscallFloor, op)),
            num_or_na(x.extra_cpu_ns(I::SyscallFloor, op), 0),
            ratio_or_na(x.ops_ratio(I::SyscallFloor, op)),
            ratio_or_na(x.cpu_ratio(I::Elsewhere, op)),
            num_or_na(x.extra_cpu_ns(I::Elsewhere, op), 0),
            ratio_or_na(x.ops_ratio(I::Elsewhere, op)),
        );
    }
    out!(md);
    if let Some(share) = floor_share(x) {
        out!(md, "{share}\n");
    }
    out!(
        md,
        "By round, SET then GET: server CPU ns per request / requests per second:\n"
    );
    let labels = idle::CONFIGS.iter().map(|c| c.label());
    by_round(md, x.params.rounds, labels.zip(&x.runs), |r| {
        format!(
            "{:.0} / {:.0}; {:.0} / {:.0}",
            r.set.cpu_ns_per_op, r.set.ops_per_s, r.get.cpu_ns_per_op, r.get.ops_per_s
        )
    });
}

/// How much of the traced server's extra CPU per request the empty syscall programs
/// account for, per request type (medians of the per-round differences).
fn floor_share(x: &idle::Results) -> Option<String> {
    let parts: Vec<String> = OPS
        .iter()
        .filter_map(|&op| {
            let traced = median(x.extra_cpu_ns(I::Cowtrace, op));
            let floor = median(x.extra_cpu_ns(I::SyscallFloor, op));
            (traced.is_finite() && floor.is_finite() && traced > 0.0).then(|| {
                format!(
                    "{}: {:.0} of {:.0} ns ({:.0}%)",
                    op.name(),
                    floor,
                    traced,
                    floor / traced * 100.0
                )
            })
        })
        .collect();
    (!parts.is_empty()).then(|| {
        format!(
            "**What limits it.** Of the extra server CPU per request under `record -p REDIS`, \
             empty programs on the same syscall tracepoints (no cowtrace at all) account for \
             {}. A share near or above 100% means the cost is the syscall slow path that \
             any program on `sys_enter`/`sys_exit` switches on, not what cowtrace's programs \
             do in it; the rest is cowtrace's programs (their syscall-number and pid \
             filters, and the measurements of a traced process's own writes).",
            parts.join("; ")
        )
    })
}
