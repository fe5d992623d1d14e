//! Root tests of stalled saves and slow forks (issue 15, item 4): a real BGSAVE made to
//! stall by stopping its child with SIGSTOP for longer than the stall threshold.
mod common;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The stall threshold given to cowtrace, and how long the child is stopped.
const STALL_S: f64 = 1.5;
const STOPPED: Duration = Duration::from_secs(3);
/// The output interval: stalls are looked for once per interval.
const INTERVAL_S: f64 = 0.25;

/// A BGSAVE of `keys` keys slowed to about 200 µs per key, so it runs a few seconds and
/// writes all along (a 4 KiB stdio buffer flushed every ~40 keys).
fn slow_saving_redis(keys: u64) -> Redis {
    let redis = Redis::start(&["--rdb-key-save-delay", "200"]);
    redis.fill(keys, 100);
    redis
}

/// Start a BGSAVE and return its child's pid, once Redis has logged it.
fn start_save(redis: &Redis, previous: Option<u64>) -> u64 {
    redis.bgsave();
    let t0 = Instant::now();
    loop {
        if let Some(p) = redis.logged_save_pid().filter(|&p| Some(p) != previous) {
            return p;
        }
        assert!(
            t0.elapsed() < limit(Duration::from_secs(10)),
            "Redis never logged the BGSAVE's pid:\n{}",
            redis.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn signal(pid: u64, sig: i32) {
    // SAFETY: kill(2) on the save child this test started through Redis.
    let rc = unsafe { libc::kill(pid as i32, sig) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {sig}): {}",
        std::io::Error::last_os_error()
    );
}

fn session_of(trace: &Trace, child: u64) -> u64 {
    u(&trace.end_of_child(child)["session"])
}

fn stalled_samples(trace: &Trace, session: u64) -> Vec<&Value> {
    trace
        .of_type("sample")
        .into_iter()
        .filter(|s| u(&s["session"]) == session && !s["stall"].is_null())
        .collect()
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_stopped_save_child_is_flagged_as_stalled_with_state_t() {
    require_root();
    let redis = slow_saving_redis(20_000);
    let dir = TempDir::new("stall");
    let pid = redis.pid().to_string();
    let stall = STALL_S.to_string();
    let interval = INTERVAL_S.to_string();
    // --slow-fork 0.001: every fork longer than 1 µs (per GiB, at least 1 GiB) is
    // flagged, so each session carries the slow-fork record and its /proc figures.
    let rec = Recorder::start(
        dir.path(),
        &[
            "-p",
            &pid,
            "-i",
            &interval,
            "--stall",
            &stall,
            "--slow-fork",
            "0.001",
        ],
        &[],
    );

    // A save stopped for 3 s (twice the threshold) once it has written for a while.
    let stopped = start_save(&redis, None);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        redis
            .info_field("persistence", "rdb_bgsave_in_progress")
            .as_deref()
            == Some("1"),
        "the save ended before it could be stopped: make it longer"
    );
    signal(stopped, libc::SIGSTOP);
    std::thread::sleep(STOPPED);
    signal(stopped, libc::SIGCONT);
    redis.wait_bgsave();
    assert_eq!(
        redis
            .info_field("persistence", "rdb_last_bgsave_status")
            .as_deref(),
        Some("ok")
    );
    // The same save, not stopped: no stall.
    let normal = start_save(&redis, Some(stopped));
    redis.wait_bgsave();
    std::thread::sleep(Duration::from_millis(300));
    let trace = rec.stop();

    // The stopped save: its samples while stopped say so, with the state /proc gave.
    let s1 = session_of(&trace, stopped);
    let flagged = stalled_samples(&trace, s1);
    assert!(
        !flagged.is_empty(),
        "no sample of session {s1} flagged a stall: {:#?}",
        trace.of_type("sample")
    );
    for s in &flagged {
        let st = &s["stall"];
        assert_eq!(st["state"], "T", "the stopped child's state: {st}");
        assert_eq!(st["state_name"], "stopped by a signal", "{st}");
        assert_eq!(u(&st["threshold_ms"]), (STALL_S * 1000.0) as u64, "{st}");
        assert!(u(&st["for_ms"]) >= (STALL_S * 1000.0) as u64, "{st}");
    }
    eprintln!("while stopped: {}", flagged.last().unwrap()["stall"]);
    let end = trace.end_of_child(stopped);
    let sum = &end["stall"];
    assert_eq!(u(&sum["count"]), 1, "one stretch without writes: {sum}");
    assert_eq!(sum["longest"]["state"], "T", "{sum}");
    // Stopped for 3 s: the last look before it wrote again saw at least 3 s minus an
    // interval, and no look can see more than the stop plus an interval and the time to
    // its next write (the child resumes mid-buffer; allow 1 s).
    let longest = u(&sum["longest"]["for_ms"]);
    let stop_ms = STOPPED.as_millis() as u64;
    assert!(
        longest >= stop_ms - (INTERVAL_S * 1000.0) as u64 - 100
            && longest <= stop_ms + (INTERVAL_S * 1000.0) as u64 + 1000,
        "longest stall {longest} ms for a {stop_ms} ms stop"
    );

    // The save that was not stopped never stalled.
    let s2 = session_of(&trace, normal);
    assert!(
        stalled_samples(&trace, s2).is_empty(),
        "session {s2} was never stopped"
    );
    assert!(
        trace.end_of_child(normal)["stall"].is_null(),
        "{}",
        trace.end_of_child(normal)
    );

    // Both forks are slow under a 0.001 ms/GiB threshold, with the parent's page tables.
    for child in [stopped, normal] {
        let start = trace
            .of_type("session_start")
            .into_iter()
            .find(|s| u(&s["child_pid"]) == child)
            .unwrap();
        let f = &start["slow_fork"];
        assert!(!f.is_null(), "slow_fork in {start}");
        assert!(u(&f["vm_pte_bytes"]) > 0, "{f}");
        assert_eq!(f["fork_us"], start["fork_us"], "{f}");
        let rss = u(&start["parent_rss_bytes"]) as f64 / (1u64 << 30) as f64;
        let want = start["fork_us"].as_f64().unwrap() / 1000.0 / rss;
        assert!(
            (f["ms_per_gib"].as_f64().unwrap() - want).abs() < 1e-6 * want,
            "{f}"
        );
        assert_eq!(trace.end_of_child(child)["slow_fork"], *f);
    }

    // The diagnosis says it, with what to do.
    let out = cowtrace()
        .arg("report")
        .arg(rec_path(&dir))
        .output()
        .expect("cowtrace report");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "report failed: {text}");
    assert!(
        text.contains(&format!(
            "Stalled: the child (pid {stopped}) wrote nothing for"
        )) && text.contains("state T (stopped by a signal)")
            && text.contains("send SIGCONT"),
        "{text}"
    );
    assert!(
        text.contains("Slow fork: it blocked the server for"),
        "{text}"
    );
}

fn rec_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("trace.jsonl")
}
