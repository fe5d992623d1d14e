//! Root tests of what an on-call engineer meets in the first minute: a save that was
//! already running when cowtrace started, and several servers on one host, each named.
mod common;
use std::{
    process::{Child, Stdio},
    thread::sleep,
    time::Duration,
};

use common::*;
use serde_json::Value;

fn info_u64(redis: &Redis, section: &str, field: &str) -> u64 {
    redis
        .info_field(section, field)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO {section} has no {field}"))
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_save_running_before_cowtrace_starts_is_one_session_from_the_attach() {
    require_root();
    // ~60 MB of data; 20 us per key stretches the save to about 6 s.
    let redis = Redis::start(&["--rdb-key-save-delay", "20"]);
    redis.fill(300_000, 150);
    redis.bgsave();
    // A few copies before cowtrace starts (a short load leaves most pages shared), then
    // a quiet spell so that Redis's own figure (reported by the child about once a
    // second) is current when cowtrace attaches.
    redis.run_sets(300_000, 2_000, 150);
    sleep(Duration::from_millis(3000));
    let child = redis.save_pid();
    let dir = TempDir::new("midsave");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    let redis_at_attach = info_u64(&redis, "persistence", "current_cow_size");
    assert_eq!(
        redis
            .info_field("persistence", "rdb_bgsave_in_progress")
            .as_deref(),
        Some("1"),
        "the save must still run when cowtrace attaches: make it longer"
    );
    // More copies, counted exactly this time.
    let load = redis.write_load(300_000, 150);
    sleep(Duration::from_millis(1000));
    drop(load);
    redis.wait_bgsave();
    sleep(Duration::from_millis(300));
    let trace = rec.stop();
    let redis_total = info_u64(&redis, "persistence", "rdb_last_cow_size");

    let starts: Vec<&Value> = trace
        .of_type("session_start")
        .into_iter()
        .filter(|s| u(&s["child_pid"]) == child)
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "one session for the running save: {starts:#?}"
    );
    let mid = &starts[0]["attached_mid_save"];
    assert!(mid.is_object(), "marked attached_mid_save: {:#}", starts[0]);
    assert_eq!(starts[0]["kind"], "rdb-bgsave");
    assert!(u(&mid["ran_ms"]) >= 3000, "it had run 3.5 s: {mid}");
    let estimate = u(&mid["cow_bytes_estimate"]) as f64;
    eprintln!(
        "attach: estimate {:.1} MB, Redis current_cow_size {:.1} MB",
        estimate / 1e6,
        redis_at_attach as f64 / 1e6
    );
    assert!(
        redis_at_attach > 10_000_000,
        "the load must have copied: {redis_at_attach}"
    );
    let r = estimate / redis_at_attach as f64;
    assert!(
        (0.9..=1.1).contains(&r),
        "estimate / current_cow_size = {r:.3}"
    );
    assert!(
        u(&mid["written_bytes_estimate"]) > 0,
        "the RDB was being written: {mid}"
    );

    let e = trace.end_of_child(child);
    assert_eq!(e["exit_code"], 0, "{e:#}");
    assert_eq!(e["complete"], true);
    assert!(e["attached_mid_save"].is_object());
    let counted = u(&e["cow"]["bytes"]) as f64;
    let total = estimate + counted;
    eprintln!(
        "end: estimate {:.1} + counted {:.1} = {:.1} MB, Redis rdb_last_cow_size {:.1} MB",
        estimate / 1e6,
        counted / 1e6,
        total / 1e6,
        redis_total as f64 / 1e6
    );
    assert!(
        counted > 1e6,
        "copies after the attach are counted: {counted}"
    );
    let r = total / redis_total as f64;
    assert!(
        (0.9..=1.1).contains(&r),
        "(estimate + counted) / rdb_last_cow_size = {r:.3}"
    );
    assert_eq!(trace.end()["sessions"], 1);

    // The report says what is an estimate.
    let out = cowtrace()
        .args(["report"])
        .arg(trace_path(&dir))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("attached mid-save") && text.contains("(estimates)"),
        "{text}"
    );
}

fn trace_path(dir: &TempDir) -> std::path::PathBuf {
    dir.path().join("trace.jsonl")
}

/// `cowtrace watch --plain` in the background, its stdout captured.
fn watch_plain(args: &[&str]) -> Child {
    cowtrace()
        .args(["watch", "--plain"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn three_servers_saving_at_once_are_each_named_everywhere() {
    require_root();
    let (p1, p2) = (free_port(), free_port());
    let a = Redis::start(&[
        "--port",
        &p1.to_string(),
        "--bind",
        "127.0.0.1",
        "--rdb-key-save-delay",
        "20",
    ]);
    let b = Redis::start(&[
        "--port",
        &p2.to_string(),
        "--bind",
        "127.0.0.1",
        "--rdb-key-save-delay",
        "20",
    ]);
    let c = Redis::start(&["--rdb-key-save-delay", "20"]);
    let servers = [
        (&a, format!("127.0.0.1:{p1}")),
        (&b, format!("127.0.0.1:{p2}")),
        (&c, c.sock.display().to_string()),
    ];
    for (r, _) in &servers {
        r.fill(20_000, 100);
    }
    let dir = TempDir::new("three");
    let pids: Vec<String> = servers.iter().map(|(r, _)| r.pid().to_string()).collect();
    let mut args = Vec::new();
    for p in &pids {
        args.extend(["-p", p.as_str()]);
    }
    let rec = Recorder::start(dir.path(), &args, &[]);
    let mut watch = watch_plain(&args);
    sleep(Duration::from_millis(1500)); // the watcher attaches
    for (r, _) in &servers {
        r.bgsave();
    }
    for (r, _) in &servers {
        r.wait_bgsave();
    }
    sleep(Duration::from_millis(1500)); // interval lines and ends reach both
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    let status = wait_timeout(&mut watch, Duration::from_secs(30));
    assert!(status.success());
    let mut lines = String::new();
    std::io::Read::read_to_string(&mut watch.stdout.take().unwrap(), &mut lines).unwrap();
    let trace = rec.stop();

    for (r, name) in &servers {
        let child = r.save_pid();
        let e = trace.end_of_child(child);
        assert_eq!(e["instance"], name.as_str(), "session_end of {name}: {e:#}");
        for t in ["session_start", "sample"] {
            for l in trace
                .of_type(t)
                .into_iter()
                .filter(|l| l["session"] == e["session"])
            {
                assert_eq!(l["instance"], name.as_str(), "{t} of {name}: {l}");
            }
        }
        assert_eq!(trace.process(r.pid() as u64)["instance"], name.as_str());
        // watch: the start and end lines of this save name the server.
        for tag in ["START", "END  "] {
            assert!(
                lines.lines().any(|l| l.contains(tag)
                    && l.contains(name.as_str())
                    && l.contains(&format!("child {child}"))),
                "no {tag} line for {name}:\n{lines}"
            );
        }
        // The end-of-run summary and the diagnosis name it too.
        let named = |l: &&str| l.trim_start().starts_with("session") && l.contains(name.as_str());
        assert!(
            lines.lines().filter(named).any(|l| l.contains("COW")),
            "summary row of {name}:\n{lines}"
        );
        assert!(
            lines.lines().filter(named).any(|l| l.contains("(parent")),
            "diagnosis of {name}:\n{lines}"
        );
        // report --instance selects exactly its sessions.
        let out = cowtrace()
            .args(["report", "--json", "--instance", name])
            .arg(trace_path(&dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let s = v["sessions"].as_array().unwrap();
        assert_eq!(s.len(), 1, "{name}: {s:#?}");
        assert_eq!(u(&s[0]["start"]["child_pid"]), child);
        assert_eq!(s[0]["instance"], name.as_str());
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn event_lines_match_the_counters_and_name_their_session() {
    event_lines_match_the_counters(Flavor::Redis);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn valkey_event_lines_match_the_counters_and_name_their_session() {
    event_lines_match_the_counters(Flavor::Valkey);
}

fn event_lines_match_the_counters(flavor: Flavor) {
    require_root();
    // Saves stretched to a few seconds (a sleep per key) while a write load runs: the
    // parent copies up to the moment each child exits, so events cross the ends of
    // their sessions.
    let redis = Redis::start_flavor(flavor, &["--rdb-key-save-delay", "1"]);
    redis.fill(60_000, 100);
    let dir = TempDir::new("events");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid, "--events"], &[]);
    let load = redis.write_load(60_000, 100);
    for _ in 0..3 {
        redis.save();
    }
    drop(load);
    sleep(Duration::from_millis(300));
    let t = rec.stop();

    let end = t.end();
    assert_eq!(
        (u(&end["lost_events"]), u(&end["decode_errors"])),
        (0, 0),
        "events were lost: the lines cannot match the counters: {end}"
    );
    let ends = t.ends();
    assert_eq!(ends.len(), 3, "three saves");
    let lines = |ty: &str, session: &Value| {
        t.of_type(ty)
            .into_iter()
            .filter(|l| l["session"] == *session)
            .count() as u64
    };
    let (mut pages, mut parent_pages) = (0, 0);
    for e in &ends {
        let c = &e["cow"];
        assert_eq!(
            u(&c["pages"]),
            u(&c["copies_4k"]),
            "4 KiB copies only, so pages are copies: {c}"
        );
        assert!(u(&c["pages"]) > 0, "the load copied during the save: {c}");
        // One `cow` line per copy and one `zero_fill` line per zero fill, by session.
        assert_eq!(
            lines("cow", &e["session"]),
            u(&c["pages"]),
            "cow lines of session {}",
            e["session"]
        );
        assert_eq!(
            lines("zero_fill", &e["session"]),
            u(&c["zero_fills"]),
            "zero_fill lines of session {}",
            e["session"]
        );
        pages += u(&c["pages"]);
        parent_pages += u(&c["parent_pages"]);
        // Every event line of the child names its session.
        let child = &e["child_pid"];
        for l in t.lines.iter().filter(|l| {
            ["cow", "zero_fill", "write", "fsync", "io"].contains(&l["type"].as_str().unwrap())
                && l["pid"] == *child
        }) {
            assert_eq!(
                l["session"], e["session"],
                "an event line of child {child}: {l}"
            );
        }
    }
    // Every copy charged to no session (the server wrote a page it still shared with a
    // child that had exited but whose memory was not freed yet: the attribution rule
    // charges only live sessions) is a `cow` line without a session, and the server's
    // own counter has it too.
    let cow = t.of_type("cow");
    let outside: Vec<&&Value> = cow.iter().filter(|l| l["session"].is_null()).collect();
    let ends_ts: Vec<u64> = ends.iter().map(|e| u(&e["ts_ns"])).collect();
    for l in &outside {
        let ts = u(&l["ts_ns"]);
        let after = ends_ts
            .iter()
            .filter(|&&e| e <= ts)
            .map(|&e| (ts - e) / 1000)
            .min();
        eprintln!("cow line outside a session, {after:?} us after a child's exit: {l}");
    }
    let p = &t.process(redis.pid() as u64)["cow"];
    eprintln!(
        "{} cow lines ({} outside a session), {pages} pages in 3 sessions; the server's counter: {} pages",
        cow.len(),
        outside.len(),
        p["pages"]
    );
    assert_eq!(
        cow.len() as u64,
        pages + outside.len() as u64,
        "cow lines = COW pages of the sessions + lines outside any session"
    );
    assert_eq!(
        u(&p["pages"]),
        parent_pages + outside.len() as u64,
        "the server's copies = its copies charged to sessions + the cow lines outside any: {p}"
    );
}
