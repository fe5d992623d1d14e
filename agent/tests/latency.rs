//! What a save costs the server's main thread (issue 15 item 5), against `cowload`:
//! its main thread writes K shared pages (K copies) and times that loop with its own
//! thread CPU clock. On the tracepoint path (x86-64) cowtrace estimates: its main-thread
//! copies × the per-copy cost it measured at start-up on a helper it traces, so both
//! sides pay cowtrace's programs. Where the COW method sees the fault handler return
//! (`do_wp_page` by fentry/fexit or kprobe/kretprobe: the arm64 guests) the kernel times
//! each copy and the figure is measured, not estimated. Either must be within 25% of the
//! copies × the per-copy cost the workload measured in the same run, on the same host:
//! pairwise, no stored number. This VM's copy cost drifts
//! (2.6-9.8 µs a copy seen in one run of cowload under the agent, 2.6-2.8 µs alone), so
//! the test makes five such pairs, each with its own agent, and takes the median of
//! their errors, as the bench compares noisy figures; the counts are exact in each.
//! Root; run with `cargo test -p agent --test latency -- --ignored --test-threads=1`.
mod common;
use common::*;

const SLACK: u64 = 48;

const ROUNDS: usize = 5;

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn main_thread_cow_time_matches_the_workloads_own_timing() {
    require_root();
    let mut errors: Vec<f64> = (0..ROUNDS).map(|_| one_round()).collect();
    errors.sort_by(f64::total_cmp);
    let median = errors[ROUNDS / 2];
    eprintln!("errors of the {ROUNDS} rounds: {errors:.2?}; median {median:.2}");
    assert!(
        median <= 0.25,
        "the median estimate is {:.0}% off the workload's own timing (rounds: {errors:.2?})",
        median * 100.0
    );
}

/// One agent and one workload: the exact checks, and the estimate's relative error.
fn one_round() -> f64 {
    let k = 20_000u64;
    let dir = TempDir::new("latency");
    let w = Workload::spawn(&[
        "--mode",
        "parent-writes",
        "--mib",
        "128",
        "--pages",
        &k.to_string(),
    ]);
    let pid = w.pid.to_string();
    let rec = Recorder::start(dir.path(), &["-p", pid.as_str()], &[]);
    let r = w.go();
    let t = rec.wait(std::time::Duration::from_secs(60));
    let e = t.end_of_child(u(&r["children"][0]));
    let m = &e["main_thread"];
    assert!(m.is_object(), "session_end has no main_thread: {e}");
    eprintln!("main_thread: {m}; workload: {r}");
    let copies = u(&m["copies"]);
    assert!(
        (k..=k + SLACK).contains(&copies),
        "main-thread copies {copies} not in [{k}, {}]",
        k + SLACK
    );
    assert!(m["fork_us"].as_f64().is_some_and(|us| us > 0.0), "{m}");
    let method = t.lines[0]["attach"]["method"].as_str().unwrap_or("");
    let basis = m["basis"].as_str().unwrap_or("");
    if method == "tracepoint" {
        assert_eq!(
            m["estimate"], true,
            "the tracepoint path only estimates: {m}"
        );
        assert!(
            basis.contains("cowtrace's own cost included"),
            "the estimate must rest on traced copies: {m}"
        );
    } else {
        assert!(matches!(method, "fentry" | "kprobe"), "method {method}");
        assert_eq!(m["estimate"], false, "{method} times each copy: {m}");
        assert!(
            basis.contains("measured in the kernel") && basis.contains("do_wp_page"),
            "{m}"
        );
    }
    assert!(u(&m["untraced_per_copy_ns"]) > 0, "{m}");
    // The calibration helper's sessions are the agent's own: none in the trace.
    assert_eq!(u(&t.end()["sessions"]), 1, "{}", t.end());
    let measured_per_copy_ns = u(&r["write_cpu_ns"]) as f64 / k as f64;
    let expected_ms = copies as f64 * measured_per_copy_ns / 1e6;
    let got_ms = m["cow_ms"].as_f64().unwrap();
    let err = (got_ms - expected_ms).abs() / expected_ms;
    eprintln!(
        "{method}: cowtrace {got_ms:.2} ms ({} ns/copy) vs {expected_ms:.2} ms ({measured_per_copy_ns:.0} ns/copy, workload, traced): {:.0}% apart",
        u(&m["per_copy_ns"]),
        err * 100.0
    );
    err
}
