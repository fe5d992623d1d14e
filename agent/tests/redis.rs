//! Root tests against a real redis-server (and valkey-server) on a unix socket.
mod common;
use common::*;

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn bgsave_and_bgrewriteaof_are_classified_sessions() {
    classified_sessions(Flavor::Redis);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn valkey_bgsave_and_bgrewriteaof_are_classified_sessions() {
    classified_sessions(Flavor::Valkey);
}

fn classified_sessions(flavor: Flavor) {
    require_root();
    let redis = Redis::start_flavor(flavor, &[]);
    redis.fill(20_000, 100);
    let dir = TempDir::new("redis-kinds");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);

    redis.save();
    let bgsave_child = redis.save_pid();
    let fork_usec: f64 = redis
        .info_field("stats", "latest_fork_usec")
        .unwrap()
        .parse()
        .unwrap();

    redis.rewrite_aof();
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
    let title = start["title"].as_str().unwrap();
    assert!(
        title.starts_with(&format!("{}-rdb-bgsave", flavor.name())),
        "{title}"
    );
    let aof_title = trace
        .of_type("session_start")
        .into_iter()
        .find(|s| s["kind"] == "aof-rewrite")
        .and_then(|s| s["title"].as_str().map(String::from))
        .unwrap();
    assert!(
        aof_title.starts_with(&format!("{}-aof-rewrite", flavor.name())),
        "{aof_title}"
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
        r.save();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();
    for r in [&before, &after] {
        let child = r.save_pid();
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
    cow_agrees_with_the_servers_estimate(Flavor::Redis);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn valkey_bgsave_cow_agrees_with_its_own_estimate() {
    cow_agrees_with_the_servers_estimate(Flavor::Valkey);
}

fn cow_agrees_with_the_servers_estimate(flavor: Flavor) {
    require_root();
    let redis = Redis::start_flavor(flavor, &["--rdb-key-save-delay", "10"]);
    // ~60 MB of data, then a save stretched to a few seconds while a write load runs.
    redis.fill(300_000, 150);
    let dir = TempDir::new("redis-cow");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.bgsave();
    let load = redis.write_load(300_000, 150);
    redis.wait_bgsave();
    drop(load);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let trace = rec.stop();
    let child = redis.save_pid();
    let e = trace.end_of_child(child);
    let ours = u(&e["cow"]["bytes"]) as f64;
    let theirs: f64 = redis
        .info_field("persistence", "rdb_last_cow_size")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "COW ({}): cowtrace {:.1} MB ({} parent + {} child pages), rdb_last_cow_size {:.1} MB, save {} ms",
        flavor.name(),
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
