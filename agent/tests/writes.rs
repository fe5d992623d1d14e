//! Root ground-truth tests of disk-write attribution.
mod common;
use common::*;

use std::time::Duration;

fn files(e: &serde_json::Value) -> Vec<(String, Option<String>, u64)> {
    e["writes"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["renamed_to"].as_str().map(str::to_string),
                u(&f["bytes"]),
            )
        })
        .collect()
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn child_file_write_bytes_names_fsync_and_disk() {
    require_root();
    let dir = TempDir::new("writes");
    let d = dir.path().to_str().unwrap().to_string();
    const B: u64 = 12 * 1024 * 1024 + 12345; // not a multiple of the chunk or page size
    let w = Workload::spawn(&[
        "--mode",
        "child-file-write",
        "--dir",
        &d,
        "--bytes",
        &B.to_string(),
        "--chunk",
        "65536",
    ]);
    let pid = w.pid.to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    // An untraced writer at the same time, on the same filesystem: never attributed.
    let noise = dir.path().join("untraced.dat");
    let mut dd = std::process::Command::new("dd")
        .args([
            "if=/dev/zero",
            "bs=1M",
            "count=16",
            "conv=fsync",
            "status=none",
        ])
        .arg(format!("of={}", noise.display()))
        .spawn()
        .unwrap();
    let r = w.go();
    assert!(dd.wait().unwrap().success());
    let t = rec.wait(Duration::from_secs(30));
    let e = t.end_of_child(u(&r["children"][0]));
    eprintln!(
        "writes {} fsync {} disk {}",
        e["writes"], e["fsync"], e["disk"]
    );
    assert_eq!(u(&e["writes"]["bytes"]), B, "write bytes exact");
    assert_eq!(
        u(&e["writes"]["calls"]),
        B.div_ceil(65536),
        "one call per chunk"
    );
    let f = files(e);
    assert_eq!(f.len(), 1, "only the child's file: {f:?}");
    assert_eq!(f[0].0, r["temp"].as_str().unwrap());
    assert_eq!(f[0].1.as_deref(), r["final"].as_str());
    assert_eq!(f[0].2, B);
    assert_eq!(u(&e["fsync"]["calls"]), 1);
    assert_eq!(u(&e["fsync"]["latency_us"]["count"]), 1);
    let disk = u(&e["disk"]["bytes"]);
    // The fsync forces every dirty page of the file to the device before the child
    // exits; block requests are whole pages, so disk bytes are B rounded up to 4 KiB.
    assert!(disk * 100 >= B * 95, "disk bytes {disk} < 95% of {B}");
    assert!(
        disk <= B.div_ceil(4096) * 4096,
        "disk bytes {disk} > file pages"
    );
    assert!(u(&e["disk"]["ios"]) > 0);
    assert_eq!(
        u(&e["writes"]["latency_us"]["count"]),
        u(&e["writes"]["calls"]),
        "a latency per call"
    );
    let sampled: u64 = t
        .of_type("sample")
        .iter()
        .map(|s| u(&s["write_bytes"]))
        .sum();
    assert!(sampled <= B, "samples carry interval deltas: {sampled}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn redis_bgsave_writes_equal_the_rdb_file() {
    require_root();
    // Log to stdout (not a regular file): the save child also appends its "DB saved"
    // lines to a log file, which are real writes and would count too.
    let redis = Redis::start(&["--logfile", ""]);
    redis.fill(100_000, 100);
    let dir = TempDir::new("redis-writes");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.save();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let e = t
        .ends()
        .into_iter()
        .find(|e| e["kind"] == "rdb-bgsave")
        .expect("an rdb-bgsave session")
        .clone();
    let child = u(&e["child_pid"]);
    let rdb = redis.dir.path().join("dump.rdb");
    let size = std::fs::metadata(&rdb).unwrap().len();
    eprintln!(
        "RDB {size} bytes; writes {} disk {}",
        e["writes"], e["disk"]
    );
    assert_eq!(
        u(&e["writes"]["bytes"]),
        size,
        "bytes written == dump.rdb size"
    );
    let dir_s = redis.dir.path().to_str().unwrap();
    let f = files(&e);
    assert_eq!(f.len(), 1, "{f:?}");
    let temp = format!("{dir_s}/temp-{child}.rdb");
    let row = f
        .iter()
        .find(|r| r.0 == temp)
        .unwrap_or_else(|| panic!("{temp} not in {f:?}"));
    assert_eq!(row.1.as_deref(), Some(format!("{dir_s}/dump.rdb").as_str()));
    assert!(u(&e["fsync"]["calls"]) >= 1, "Redis fsyncs the RDB");
    let disk = u(&e["disk"]["bytes"]);
    assert!(disk * 100 >= size * 90, "disk {disk} < 90% of {size}");
}

#[test]
#[ignore = "root: run with `cargo xtask test`"]
fn redis_bgrewriteaof_writes_equal_the_new_base_file() {
    require_root();
    let redis = Redis::start(&["--appendonly", "yes", "--logfile", ""]);
    redis.fill(50_000, 100);
    redis.wait_aof_rewrite();
    let dir = TempDir::new("redis-aof");
    let pid = redis.pid().to_string();
    let rec = Recorder::start(dir.path(), &["-p", &pid], &[]);
    redis.rewrite_aof();
    std::thread::sleep(Duration::from_millis(300));
    let t = rec.stop();
    let e = t
        .ends()
        .into_iter()
        .find(|e| e["kind"] == "aof-rewrite")
        .expect("an aof-rewrite session")
        .clone();
    // Redis 7 keeps the AOF in appendonlydir/; the manifest names the newest base file.
    let aofdir = redis.dir.path().join("appendonlydir");
    let manifest = std::fs::read_to_string(aofdir.join("appendonly.aof.manifest")).unwrap();
    let base = manifest
        .lines()
        .find(|l| l.contains("type b"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no base file in manifest:\n{manifest}"));
    let size = std::fs::metadata(aofdir.join(base)).unwrap().len();
    eprintln!("AOF base {base} {size} bytes; writes {}", e["writes"]);
    assert_eq!(
        u(&e["writes"]["bytes"]),
        size,
        "bytes written == new base AOF size"
    );
    let child = u(&e["child_pid"]);
    // The child writes temp-rewriteaof-PID.aof and renames it to
    // temp-rewriteaof-bg-PID.aof; the parent later renames that to the base file.
    let f = files(&e);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(
        f[0].0.ends_with(&format!("/temp-rewriteaof-{child}.aof")),
        "{f:?}"
    );
    assert!(
        f[0].1
            .as_deref()
            .is_some_and(|r| r.ends_with(&format!("/temp-rewriteaof-bg-{child}.aof"))),
        "{f:?}"
    );
}
