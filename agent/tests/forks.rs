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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sync {
    /// `repl-diskless-sync no`: the child writes the RDB file, the server sends it.
    Disk,
    /// `repl-diskless-sync yes`: the child sends the RDB through a pipe to the server.
    Diskless,
    /// Valkey's `dual-channel-replication-enabled yes`: the child writes the RDB to the
    /// replica's own RDB connection.
    DualChannel,
}

/// The RDB sizes a replica's log names: `receiving N bytes from master/primary`.
fn received_bytes(log: &str) -> Option<u64> {
    log.lines().rev().find_map(|l| {
        let rest = l.split("sync: receiving ").nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// A real replica on loopback makes one full sync of a master holding about 20 MB: the
/// master's sync is one `rdb-replica` session, with the RDB it wrote (disk) or sent
/// (diskless, dual-channel) within 1% of what the replica received.
fn replica_full_sync(flavor: Flavor, sync: Sync) {
    require_root();
    let port = free_port().to_string();
    let diskless = if sync == Sync::Disk { "no" } else { "yes" };
    let dual = if sync == Sync::DualChannel {
        "yes"
    } else {
        "no"
    };
    let mut args = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--repl-diskless-sync",
        diskless,
        "--repl-diskless-sync-delay",
        "0",
    ];
    if flavor == Flavor::Valkey {
        args.extend(["--dual-channel-replication-enabled", dual]);
    }
    let master = Redis::start_flavor(flavor, &args);
    master.fill(270_000, 100);
    let dir = TempDir::new("forks-replica");
    let rec = Recorder::start(dir.path(), &["-p", &master.pid().to_string()], &[]);
    let mut rargs = vec!["--replicaof", "127.0.0.1", &port];
    if flavor == Flavor::Valkey {
        rargs.extend(["--dual-channel-replication-enabled", dual]);
    }
    let replica = Redis::start_flavor(flavor, &rargs);
    replica.wait_field("replication", "master_link_status", "up");
    master.wait_bgsave();
    std::thread::sleep(Duration::from_millis(500));
    let t = rec.stop();

    let ends = t.ends();
    eprintln!("{flavor:?} {sync:?}: {ends:#?}");
    assert_eq!(ends.len(), 1, "one session, the sync: {ends:#?}");
    let e = ends[0];
    assert_eq!(e["kind"], "rdb-replica", "{e:#}");
    assert_eq!(e["exit_code"], 0, "{e:#}");
    let target = if sync == Sync::Disk { "disk" } else { "socket" };
    assert_eq!(
        e["replication"],
        serde_json::json!({"target": target, "replicas": 1}),
        "{e:#}"
    );
    let rlog = replica.log();
    let mlog = master.log();
    let replica_rdb = std::fs::metadata(replica.dir.path().join("dump.rdb"))
        .map(|m| m.len())
        .unwrap_or_else(|e| panic!("the replica's dump.rdb: {e}\n{rlog}"));
    match sync {
        Sync::Disk => {
            let received = received_bytes(&rlog)
                .unwrap_or_else(|| panic!("no `receiving N bytes` in the replica's log:\n{rlog}"));
            let master_rdb = std::fs::metadata(master.dir.path().join("dump.rdb"))
                .unwrap()
                .len();
            // The child also appends its "DB saved" lines to the log: the RDB's row.
            let written = e["writes"]["files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| {
                    f["renamed_to"]
                        .as_str()
                        .is_some_and(|r| r.ends_with("/dump.rdb"))
                })
                .map(|f| u(&f["bytes"]))
                .unwrap_or_else(|| panic!("no row renamed to dump.rdb: {e:#}"));
            eprintln!(
                "disk sync: written {written}, master dump.rdb {master_rdb}, replica received {received}"
            );
            assert_eq!(
                written, master_rdb,
                "the child wrote the RDB the server sent"
            );
            assert_eq!(received, master_rdb, "and the replica received it");
            assert!(
                e["sent"].is_null() || u(&e["sent"]["bytes"]) < 4096,
                "{e:#}"
            );
        }
        Sync::Diskless | Sync::DualChannel => {
            let sent = &e["sent"];
            let bytes = u(&sent["bytes"]);
            eprintln!(
                "{sync:?}: sent {bytes} in {} call(s) to {} ({}), replica's RDB {replica_rdb}; written {}",
                sent["calls"], sent["peers"], sent["targets"], e["writes"]["bytes"]
            );
            assert_eq!(sent["peers"], 1, "{e:#}");
            let ratio = bytes as f64 / replica_rdb as f64;
            assert!(
                (0.99..=1.01).contains(&ratio),
                "sent {bytes} vs the replica's RDB {replica_rdb}: {ratio:.4}\n{mlog}\n{rlog}"
            );
            assert!(
                u(&e["writes"]["bytes"]) < 4096,
                "a diskless sync writes no RDB file: {e:#}"
            );
            let kind = if sync == Sync::DualChannel {
                "socket"
            } else {
                "pipe"
            };
            assert_eq!(sent["targets"][0]["type"], kind, "{e:#}");
        }
    }
    assert!(replica_rdb > 15_000_000, "about 20 MB: {replica_rdb}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_disk_based_replica_sync_is_an_rdb_replica_session() {
    replica_full_sync(Flavor::Redis, Sync::Disk);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_diskless_replica_sync_counts_what_it_sent() {
    replica_full_sync(Flavor::Redis, Sync::Diskless);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_valkey_disk_based_replica_sync_is_an_rdb_replica_session() {
    replica_full_sync(Flavor::Valkey, Sync::Disk);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_valkey_diskless_replica_sync_counts_what_it_sent() {
    replica_full_sync(Flavor::Valkey, Sync::Diskless);
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn a_valkey_dual_channel_sync_counts_what_it_sent_to_the_replica() {
    replica_full_sync(Flavor::Valkey, Sync::DualChannel);
}
