//! Root tests of every fork a Redis or Valkey server makes (issue 17): a server that
//! daemonizes, Valkey's saves, module forks, replication syncs and the AOF's final file.
mod common;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// Session lines (`session_start` and `session_end`) of the processes in `pids`, as
/// parent or child.
fn sessions_of<'a>(t: &'a Trace, kind: &str, pids: &[u32]) -> Vec<&'a Value> {
    t.of_type(kind)
        .into_iter()
        .filter(|l| {
            pids.iter()
                .any(|&p| l["parent_pid"] == p as u64 || l["child_pid"] == p as u64)
        })
        .collect()
}

/// A server started with `--daemonize yes` after `record`: its fork to daemonize is no
/// session, the child it leaves is the traced server, and that server's BGSAVE is one
/// `rdb-bgsave` session with the child pid its log names. With `by_pid`, cowtrace is
/// given the pid that daemonizes (`-p`), held before its exec so it can be known.
fn daemonized_server_is_followed(flavor: Flavor, by_pid: bool) {
    require_root();
    let dir = TempDir::new("forks-daemon");
    let (rec, redis, pre) = if by_pid {
        let d = Redis::daemonize(flavor, &[], true);
        let pre = d.pid();
        let rec = Recorder::start(dir.path(), &["-p", &pre.to_string()], &[]);
        (rec, d.go(), pre)
    } else {
        let rec = Recorder::start(dir.path(), &[], &[]);
        let d = Redis::daemonize(flavor, &[], false);
        let pre = d.pid();
        (rec, d.go(), pre)
    };
    let server = redis.pid();
    assert_ne!(server, pre, "the server daemonized");
    redis.fill(20_000, 100);
    redis.save();
    let child = redis.save_pid();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();

    let ends = sessions_of(&t, "session_end", &[pre, server]);
    assert_eq!(ends.len(), 1, "one session, the BGSAVE: {ends:#?}");
    let e = ends[0];
    assert_eq!(
        (
            e["kind"].as_str(),
            u(&e["parent_pid"]),
            u(&e["child_pid"]),
            e["exit_code"].as_i64()
        ),
        (Some("rdb-bgsave"), server as u64, child, Some(0)),
        "{e:#}"
    );
    assert!(u(&e["writes"]["bytes"]) > 0, "{e:#}");
    let starts = sessions_of(&t, "session_start", &[pre, server]);
    assert_eq!(
        starts.len(),
        1,
        "no start for the daemonizing fork: {starts:#?}"
    );
    let p = t.process(server as u64);
    assert_eq!(p["exited"], false, "{p:#}");
    if by_pid {
        assert_eq!(t.lines[0]["pids"], serde_json::json!([pre]));
        assert_eq!(
            t.end()["reason"],
            "signal",
            "the -p target's exit did not end the run: the server it left is traced"
        );
        // Only the -p target's sessions are in the trace, and this is its only one.
        assert_eq!(t.end()["sessions"], 1);
        assert_eq!(e["session"], 1);
    }
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_redis_started_with_daemonize_yes_is_followed() {
    daemonized_server_is_followed(Flavor::Redis, false);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_valkey_started_with_daemonize_yes_is_followed() {
    daemonized_server_is_followed(Flavor::Valkey, false);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_p_target_that_daemonizes_is_followed() {
    daemonized_server_is_followed(Flavor::Redis, true);
}

/// A fork through the module API (Valkey's `fork.so` test module: `fork.create CODE
/// USLEEP` forks, the child sleeps, then exits with CODE) is a `module-fork` session
/// that ends with the module's exit status, with the COW the server's writes made while
/// it ran and the child's own writes (its log lines).
#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_module_fork_is_a_session_with_its_exit_status() {
    require_root();
    let redis = Redis::start_flavor(Flavor::Valkey, &["--enable-module-command", "yes"]);
    let module = valkey_fork_module();
    let reply = redis.cli(&["MODULE", "LOAD", module.to_str().unwrap()]);
    assert_eq!(reply.trim(), "OK", "MODULE LOAD: {reply}");
    redis.fill(20_000, 100);
    let dir = TempDir::new("forks-module");
    let rec = Recorder::start(dir.path(), &["-p", &redis.pid().to_string()], &[]);
    let reply = redis.cli(&["fork.create", "3", "1500000"]);
    let child: u64 = reply
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("fork.create: {reply}"));
    // The server's writes while the child sleeps are what copy.
    redis.run_sets(20_000, 20_000, 100);
    let t0 = std::time::Instant::now();
    while redis.cli(&["fork.exitcode"]).trim() != "3" {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the module never saw its child exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let e = t.end_of_child(child);
    eprintln!("module fork: {e}");
    assert_eq!(e["kind"], "module-fork", "{e:#}");
    assert_eq!(
        (e["exit_code"].as_i64(), e["exit_signal"].as_i64()),
        (Some(3), None),
        "{e:#}"
    );
    assert!(u(&e["cow"]["parent_pages"]) > 0, "{e:#}");
    assert!(u(&e["writes"]["bytes"]) > 0, "its log lines: {e:#}");
    let s = t
        .of_type("session_start")
        .into_iter()
        .find(|s| u(&s["child_pid"]) == child)
        .unwrap()
        .clone();
    assert!(
        s["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("valkey-module-fork")),
        "{s}"
    );
}
