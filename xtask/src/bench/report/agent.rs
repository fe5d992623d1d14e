//! Section 4: what cowtrace costs itself: CPU per event, memory, start and stop times,
//! and the live view's CPU per refresh.

use super::super::cow::Config as C;
use super::super::redis::Config as R;
use super::super::stats::{Spread, num_or_na, ratio_or_na};
use super::fmt::{head, mib_spread, rate_spread, row};
use super::{Results, attach_all, pct_per_100k, rss_excl_ring, traced_spread};

pub(super) fn render(md: &mut String, r: &Results) {
    out!(md, "## 4. What cowtrace costs itself\n");
    out!(
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
    head(md, &["figure", "target", "result: median (min–max)"]);
    // A figure with no target.
    let fig = |md: &mut String, what: &str, value: String| row(md, &[what, "–", &value]);
    if let Some(storms) = &r.storms {
        for s in storms {
            let share = s.cpu_share();
            row(
                md,
                &[
                    format!("CPU, storm `{}`", s.storm.name),
                    "≤ 0.20 s per M events (2% of a core per 100k/s)".to_string(),
                    format!(
                        "{} s per M events = {} % of one core per 100k events/s (it used {} % of one core at {})",
                        num_or_na(s.cpu_per_m(), 3),
                        s.cpu_per_m()
                            .map_or("n/a".into(), |x| format!("{:.2}", pct_per_100k(x.median))),
                        share.map_or("n/a".into(), |x| format!("{:.1}", x.median * 100.0)),
                        rate_spread(s.traced_rate())
                            .split(" (")
                            .next()
                            .unwrap_or("n/a")
                    ),
                ],
            );
        }
        let bytes = |f: fn(&super::Traced) -> u64| mib_spread(traced_spread(r, |t| f(t) as f64));
        fig(
            md,
            "peak RSS (VmHWM) at the end of a storm",
            bytes(|t| t.hwm_end),
        );
        fig(
            md,
            "of which ring-buffer pages (smaps)",
            bytes(|t| t.ring_rss),
        );
        row(
            md,
            &[
                "VmHWM minus ring-buffer pages",
                "≤ 32 MiB",
                &mib_spread(rss_excl_ring(r)),
            ],
        );
        fig(
            md,
            "VmHWM right after attach, before any event",
            bytes(|t| t.hwm_attach),
        );
        fig(md, "VmRSS at the end of a storm", bytes(|t| t.rss_end));
        fig(
            md,
            "peak RSS over cowtrace's whole run (wait4 `ru_maxrss`)",
            bytes(|t| t.life_max_rss),
        );
        fig(
            md,
            "CPU to start (load and attach)",
            format!(
                "{} s (user {} s, system {} s, 10 ms ticks)",
                num_or_na(traced_spread(r, |t| t.startup_cpu_s), 3),
                num_or_na(traced_spread(r, |t| t.startup_user_s), 2),
                num_or_na(traced_spread(r, |t| t.startup_sys_s), 2)
            ),
        );
        fig(
            md,
            "CPU over cowtrace's whole run (wait4), storm included",
            format!("{} s", num_or_na(traced_spread(r, |t| t.life_cpu_s), 3)),
        );
    }
    let att = attach_all(r);
    row(
        md,
        &[
            format!("start to attached, all {} starts", att.map_or(0, |s| s.n)),
            "≤ 300 ms".to_string(),
            format!("{} ms", num_or_na(att, 0)),
        ],
    );
    if let Some(c) = &r.cow {
        fig(
            md,
            "start to attached ÷ bpftrace's, same round",
            format!(
                "{} (bpftrace: {} ms)",
                ratio_or_na(c.attach_ratio()),
                num_or_na(Spread::of(&c.attach_ms(C::Bpftrace)), 0)
            ),
        );
    }
    let mut stops: Vec<f64> = super::all_traced(r).iter().map(|t| t.stop_ms).collect();
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
        fig(
            md,
            "SIGINT to exit (trace finished and programs detached)",
            format!(
                "{} ms (bpftrace: {} ms)",
                num_or_na(Spread::of(&stops), 0),
                num_or_na(bt, 0)
            ),
        );
    }
    match &r.view {
        Some(v) => fig(
            md,
            "live view CPU per refresh (`watch -i 0.2` on an idle target, CPU from schedstat between 2 s and 9.5 s, agent ticks included)",
            format!(
                "full screen 120x40: {} ms; `--plain`: {} ms",
                num_or_na(Spread::of(&v.full_ms), 2),
                num_or_na(Spread::of(&v.plain_ms), 2)
            ),
        ),
        None => fig(
            md,
            "live view CPU per refresh",
            "not measured in this run (`--only` without `view`)".into(),
        ),
    }
    out!(md);
}
