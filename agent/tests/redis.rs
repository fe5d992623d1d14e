//! Root tests against a real redis-server on a unix socket.
mod common;
use common::*;

/// The pid Redis logs for its last background save: "Background saving started by pid N".
fn logged_bgsave_pid(log: &str) -> u64 {
    log.lines()
        .rev()
        .find_map(|l| l.split("Background saving started by pid ").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no BGSAVE pid in the Redis log:\n{log}"))
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn bgsave_and_bgrewriteaof_are_classified_sessions() {
    require_root();
    let redis = Redis::start(&[]);
    redis.fill(20_000, 100);
    let dir = TempDir::new("redis-kinds");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);

    assert!(redis.cli(&["BGSAVE"]).contains("Background saving started"));
    redis.wait_field("persistence", "rdb_bgsave_in_progress", "0");
    let bgsave_child = logged_bgsave_pid(&redis.log());
    let fork_usec: f64 = redis
        .info_field("stats", "latest_fork_usec")
        .unwrap()
        .parse()
        .unwrap();

    assert!(redis.cli(&["BGREWRITEAOF"]).contains("rewriting"));
    redis.wait_field("persistence", "aof_rewrite_in_progress", "0");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();

    let ends = trace.ends();
    let rdb: Vec<_> = ends.iter().filter(|e| e["kind"] == "rdb-bgsave").collect();
    assert_eq!(rdb.len(), 1, "exactly one rdb-bgsave session: {ends:#?}");
    assert_eq!(u(&rdb[0]["child_pid"]), bgsave_child);
    assert_eq!(u(&rdb[0]["parent_pid"]), redis.pid() as u64);
    assert_eq!(rdb[0]["exit_code"], 0);
    let aof: Vec<_> = ends.iter().filter(|e| e["kind"] == "aof-rewrite").collect();
    assert_eq!(aof.len(), 1, "one aof-rewrite session: {ends:#?}");

    // Fork latency: cowtrace times the clone syscall, Redis times its fork() call.
    let start = trace
        .of_type("session_start")
        .into_iter()
        .find(|s| u(&s["child_pid"]) == bgsave_child)
        .unwrap()
        .clone();
    let ours = start["fork_us"].as_f64().expect("fork_us measured");
    eprintln!("fork latency: cowtrace {ours} us, Redis latest_fork_usec {fork_usec} us");
    assert!(
        ours <= fork_usec + 50.0,
        "the syscall is inside Redis's timing: {ours} vs {fork_usec}"
    );
    assert!(
        ours >= fork_usec * 0.5 - 50.0,
        "and most of it: {ours} vs {fork_usec}"
    );
    assert_eq!(start["kind"], "rdb-bgsave");
    assert!(
        start["title"]
            .as_str()
            .unwrap()
            .starts_with("redis-rdb-bgsave")
    );
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn auto_mode_finds_redis_started_before_and_after() {
    require_root();
    let before = Redis::start(&[]);
    let dir = TempDir::new("redis-auto");
    let rec = Recorder::start(dir.path(), &[], &[]);
    let after = Redis::start(&[]);
    for r in [&before, &after] {
        assert!(r.cli(&["BGSAVE"]).contains("Background saving started"));
        r.wait_field("persistence", "rdb_bgsave_in_progress", "0");
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();
    for r in [&before, &after] {
        let child = logged_bgsave_pid(&r.log());
        let e = trace.end_of_child(child);
        assert_eq!(
            (e["kind"].as_str(), u(&e["parent_pid"])),
            (Some("rdb-bgsave"), r.pid() as u64)
        );
    }
    assert_eq!(trace.lines[0]["targets"], "auto");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn bgsave_cow_agrees_with_redis_own_estimate() {
    require_root();
    let redis = Redis::start(&["--rdb-key-save-delay", "10"]);
    // ~60 MB of data, then a save stretched to a few seconds while a write load runs.
    redis.fill(300_000, 150);
    let dir = TempDir::new("redis-cow");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    assert!(redis.cli(&["BGSAVE"]).contains("Background saving started"));
    let mut load = std::process::Command::new("redis-benchmark")
        .arg("-s")
        .arg(&redis.sock)
        .args([
            "-t",
            "set",
            "-P",
            "16",
            "-q",
            "-r",
            "300000",
            "-n",
            "100000000",
            "-d",
            "150",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    redis.wait_field("persistence", "rdb_bgsave_in_progress", "0");
    let _ = load.kill();
    let _ = load.wait();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();
    let child = logged_bgsave_pid(&redis.log());
    let e = trace.end_of_child(child);
    let ours = u(&e["cow"]["bytes"]) as f64;
    let theirs: f64 = redis
        .info_field("persistence", "rdb_last_cow_size")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "COW: cowtrace {:.1} MB ({} parent + {} child pages), Redis rdb_last_cow_size {:.1} MB, save {} ms",
        ours / 1e6,
        e["cow"]["parent_pages"],
        e["cow"]["child_pages"],
        theirs / 1e6,
        e["duration_ms"]
    );
    assert!(
        theirs > 1e6,
        "the load must have made Redis copy memory: {theirs}"
    );
    let ratio = ours / theirs;
    assert!(
        (0.75..=1.25).contains(&ratio),
        "cowtrace/Redis = {ratio:.3}"
    );
    assert!(
        !trace.of_type("sample").is_empty(),
        "samples while the save ran"
    );
}
