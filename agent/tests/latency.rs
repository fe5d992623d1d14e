//! What a save costs the server's main thread (issue 15 item 5), against `cowload`:
//! its main thread writes K shared pages (K copies) after each of two forks in a row (two
//! sessions, each checked for its own K copies) and times those loops with its own
//! thread CPU clock. On the tracepoint path (x86-64) cowtrace estimates: its main-thread
//! copies × the per-copy cost it measured at start-up on a helper it traces, so both
//! sides pay cowtrace's programs. Where the COW method sees the fault handler return
//! (`do_wp_page` by fentry/fexit or kprobe/kretprobe: the arm64 guests) the kernel times
//! each copy and the figure is measured, not estimated. The estimate must be within 25%
//! of the copies × the per-copy cost the traced workload measured in the same round, on
//! the same host: pairwise, no stored number. The measured figure is the handler's part
//! of each fault, without the exception's entry and exit and most of the probes' own
//! cost (which TCG inflates: a traced copy cost 1.4× an untraced one under TCG, where
//! the handler's time matched the untraced copy within 3%). So it must lie between 75%
//! of the copies' untraced cost (the same workload run without the agent in the same
//! round) and their traced cost (10% over for wall against CPU time). This VM's copy
//! cost drifts (2.6-9.8 µs a copy seen in one run of cowload under the agent, 2.6-2.8 µs
//! alone), so the test makes five rounds, each with its own agent, and takes the
//! medians, as the bench compares noisy figures; the counts are exact in each.
//! Root; run with `cargo test -p agent --test latency -- --ignored --test-threads=1`.
mod common;
use common::*;

const SLACK: u64 = 48;

const ROUNDS: usize = 5;
const PAGES: u64 = 20_000;
/// Forks per workload run, back to back (cowload `--rounds`): two sessions of the same
/// main thread, so a copy's time cannot leak into the next session unseen.
const SAVES: u64 = 2;

/// One round's figures: the COW method, cowtrace's main-thread time, and the workload's
/// own timing of its copies with and without the agent, all in milliseconds.
struct Round {
    method: String,
    got_ms: f64,
    traced_ms: f64,
    untraced_ms: f64,
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn main_thread_cow_time_matches_the_workloads_own_timing() {
    require_root();
    let rounds: Vec<Round> = (0..ROUNDS).map(|_| one_round()).collect();
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[ROUNDS / 2], v)
    };
    if rounds[0].method == "tracepoint" {
        let (m, all) = median(&|r| (r.got_ms - r.traced_ms).abs() / r.traced_ms);
        eprintln!("estimate's errors: {all:.2?}; median {m:.2}");
        assert!(
            m <= 0.25,
            "the median estimate is {:.0}% off the workload's own timing (rounds: {all:.2?})",
            m * 100.0
        );
    } else {
        let (lo, lo_all) = median(&|r| r.got_ms / r.untraced_ms);
        let (hi, hi_all) = median(&|r| r.got_ms / r.traced_ms);
        eprintln!(
            "measured ÷ untraced: {lo_all:.2?} (median {lo:.2}); measured ÷ traced: {hi_all:.2?} (median {hi:.2})"
        );
        assert!(
            lo >= 0.75,
            "the measured time is under 75% of the copies' untraced cost: {lo_all:.2?}"
        );
        assert!(
            hi <= 1.10,
            "the measured time is over the copies' traced cost: {hi_all:.2?}"
        );
    }
}

/// The workload's own CPU time of its copy loops, per copy, in ns.
fn per_copy_ns(r: &serde_json::Value) -> f64 {
    u(&r["write_cpu_ns"]) as f64 / (PAGES * SAVES) as f64
}

fn workload() -> Workload {
    Workload::spawn(&[
        "--mode",
        "parent-writes",
        "--mib",
        "128",
        "--pages",
        &PAGES.to_string(),
        "--rounds",
        &SAVES.to_string(),
    ])
}

/// The workload alone, then with an agent: the exact checks, and the figures.
fn one_round() -> Round {
    let k = PAGES;
    let untraced = per_copy_ns(&workload().go());
    let dir = TempDir::new("latency");
    let w = workload();
    let pid = w.pid.to_string();
    let rec = Recorder::start(dir.path(), &["-p", pid.as_str()], &[]);
    let r = w.go();
    let t = rec.wait(std::time::Duration::from_secs(60));
    let method = t.lines[0]["attach"]["method"].as_str().unwrap_or("");
    let children = r["children"].as_array().expect("children");
    assert_eq!(children.len() as u64, SAVES, "{r}");
    // Each session: its own main-thread copies, exactly (a copy of the other session,
    // or another thread's, would show), and the same kind of figure.
    let (mut copies, mut got_ms) = (0, 0.0);
    let mut shown = 0;
    for c in children {
        let e = t.end_of_child(u(c));
        let m = &e["main_thread"];
        assert!(m.is_object(), "session_end has no main_thread: {e}");
        eprintln!("main_thread: {m}");
        let n = u(&m["copies"]);
        assert!(
            (k..=k + SLACK).contains(&n),
            "main-thread copies {n} not in [{k}, {}]",
            k + SLACK
        );
        assert!(m["fork_us"].as_f64().is_some_and(|us| us > 0.0), "{m}");
        check_basis(method, m);
        assert!(u(&m["untraced_per_copy_ns"]) > 0, "{m}");
        copies += n;
        got_ms += m["cow_ms"].as_f64().unwrap();
        shown = u(&m["per_copy_ns"]);
    }
    eprintln!("workload: {r}");
    // The calibration helper's sessions are the agent's own: none in the trace.
    assert_eq!(u(&t.end()["sessions"]), SAVES, "{}", t.end());
    let traced = per_copy_ns(&r);
    let ms = |ns: f64| copies as f64 * ns / 1e6;
    let round = Round {
        method: method.to_string(),
        got_ms,
        traced_ms: ms(traced),
        untraced_ms: ms(untraced),
    };
    eprintln!(
        "{method}: cowtrace {:.2} ms ({} ns/copy); the workload's copies: {:.2} ms traced ({traced:.0} ns/copy), {:.2} ms untraced ({untraced:.0} ns/copy)",
        round.got_ms, shown, round.traced_ms, round.untraced_ms,
    );
    round
}

/// What `main_thread` must say of its figure on the COW method `method`.
fn check_basis(method: &str, m: &serde_json::Value) {
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
}
