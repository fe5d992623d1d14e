//! Section 2: overhead on Redis during a BGSAVE.

use super::super::redis::{self, Config as R};
use super::super::stats::num_or_na;
use super::fmt::{head, mib_spread, ratio_cell, row, spread, unless_reference};

pub(super) fn render(md: &mut String, x: &redis::Results) {
    let p = x.params;
    out!(md, "## 2. Overhead on Redis during a BGSAVE\n");
    out!(
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
    head(
        md,
        &[
            "configuration",
            "CPU ms per 1k SETs",
            "ratio",
            "SET/s",
            "ratio",
            "parent COW copies counted",
            "child bytes written counted",
        ],
    );
    for cfg in redis::CONFIGS {
        let runs = x.runs_of(cfg);
        let reference = cfg == R::Untraced;
        row(
            md,
            &[
                cfg.label().to_string(),
                num_or_na(x.cpu(cfg), 2),
                ratio_cell(reference, || x.cpu_ratio(cfg)),
                num_or_na(x.ops(cfg), 0),
                ratio_cell(reference, || x.ops_ratio(cfg)),
                unless_reference(reference, "–", || {
                    num_or_na(
                        spread(
                            runs.iter()
                                .filter_map(|r| r.parent_copies.map(|v| v as f64)),
                        ),
                        0,
                    )
                }),
                unless_reference(reference, "–", || {
                    mib_spread(spread(
                        runs.iter()
                            .filter_map(|r| r.child_write_bytes.map(|v| v as f64)),
                    ))
                }),
            ],
        );
    }
    out!(md);
    let early = x
        .runs
        .iter()
        .flatten()
        .flatten()
        .filter(|r| !r.child_alive)
        .count();
    if early > 0 {
        out!(
            md,
            "**{early} run(s) had the save child gone before the window ended**: their COW load is lower.\n"
        );
    }
    let lost: u64 = x.runs_of(R::Cowtrace).iter().filter_map(|r| r.lost).sum();
    out!(
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
