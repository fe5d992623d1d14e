//! The trace: the JSON Lines format of `record` (docs/trace-format.md).
//!
//! `schema` holds one serde type per line type, shared by the writer and the reader;
//! `writer` writes lines to a file or stdout; `reader` reads and validates them with
//! bounded memory. This folder imports nothing else from the crate.
pub mod ledger;
pub mod reader;
pub mod schema;
pub mod stall;
pub mod writer;

pub use reader::{Item, LineProblem, ReadError, TraceReader};
pub use schema::Record;
pub use writer::{TraceError, TraceWriter};

#[cfg(test)]
mod tests {
    use super::{
        reader::parse_line,
        schema::{
            Attach, Build, CowEvent, CowSummary, DiskSummary, End, FORMAT_NAME, FORMAT_VERSION,
            FileRow, FsyncSummary, IoEvent, MapOccupancy, Meta, MidSave, ProcessCow, ProcessIo,
            ProcessRecord, Quantiles, Sample, SessionEnd, SessionKind, SessionStart, Side,
            SyncByCall, SyncCall, SyncCallSummary, SyncCounts, WritesSummary,
        },
        *,
    };

    fn q(n: u64) -> Quantiles {
        Quantiles {
            count: n,
            p50: n + 1,
            p90: n + 2,
            p99: n + 3,
            max: n + 4,
        }
    }

    /// One record of every type, each field set to a value that is not its default.
    fn every_record() -> Vec<Record> {
        let io = IoEvent {
            session: Some(3),
            ts_ns: 9,
            pid: 11,
            bytes: 4096,
            latency_us: 12.5,
            dev: 8,
            ino: 77,
            fd: Some(5),
            call: None,
        };
        vec![
            Record::Meta(Box::new(Meta {
                format: FORMAT_NAME.into(),
                version: FORMAT_VERSION,
                cowtrace_version: "0.1.0".into(),
                host: "h".into(),
                kernel: "6.18".into(),
                attach: Attach {
                    method: "tracepoint".into(),
                    fork: "a".into(),
                    exit: "b".into(),
                    fork_latency: "c".into(),
                    cow: "d".into(),
                    writes: "e".into(),
                    syncs: "e2".into(),
                    renames: "e3".into(),
                    titles: "e4".into(),
                    disk: "f".into(),
                    daemonize: Some("i".into()),
                    fentry: "g".into(),
                    kprobe: "h".into(),
                },
                targets: "pids".into(),
                pids: vec![10],
                start_unix_ms: Some(1),
                start_ts_ns: Some(2),
                interval_ms: Some(1000),
                page_size: Some(4096),
                thp: Some("madvise".into()),
                overcommit_memory: Some(1),
                build: Some(Build {
                    commit: "eb6ae18".into(),
                    date: "2026-12-03T07:18:00Z".into(),
                    bpf_object_sha256: "87a4".into(),
                }),
            })),
            Record::SessionStart(SessionStart {
                session: 3,
                instance: Some("db1:6379".into()),
                attached_mid_save: Some(MidSave {
                    ran_ms: 3000,
                    cow_bytes_estimate: Some(1 << 20),
                    cow_source: "smaps_rollup".into(),
                    written_bytes_estimate: Some(4096),
                }),
                parent_pid: 10,
                child_pid: 11,
                kind: SessionKind::AofRewrite,
                ts_ns: 5,
                fork_us: Some(420.5),
                title: Some("redis-aof-rewrite".into()),
                parent_rss_bytes: Some(1 << 30),
                replication: None,
                slow_fork: Some(schema::SlowFork {
                    fork_us: 20_000.0,
                    rss_bytes: 1 << 30,
                    ms_per_gib: 20.0,
                    threshold_ms_per_gib: 10.0,
                    vm_pte_bytes: Some(2 << 20),
                    thp: Some("madvise".into()),
                }),
            }),
            Record::Sample(Sample {
                session: 3,
                instance: Some("db1:6379".into()),
                ts_ns: 6,
                elapsed_ms: 100,
                cow_pages: 2,
                cow_bytes: 8192,
                parent_pages: 1,
                child_pages: 1,
                cow_pages_delta: 2,
                cow_pages_per_s: 20.0,
                write_bytes: 100,
                disk_bytes: 4096,
                projection: Some(schema::Projection {
                    peak_bytes: 1,
                    limit_bytes: 2,
                    pct_of_limit: 50.0,
                    seconds_left: Some(3.5),
                    basis: "last save's output".into(),
                }),
                sent_bytes: Some(64),
                stall: Some(schema::Stall {
                    for_ms: 12_000,
                    threshold_ms: 10_000,
                    state: Some("T".into()),
                    state_name: Some("stopped by a signal".into()),
                    wchan: Some("do_signal_stop".into()),
                    syscall: Some("write".into()),
                }),
            }),
            Record::SessionEnd(Box::new(SessionEnd {
                session: 3,
                instance: Some("/run/redis.sock".into()),
                attached_mid_save: Some(MidSave::default()),
                memory: Some(schema::SaveMemory {
                    source: "cgroup v1".into(),
                    cgroup: Some("/libpod_parent/libpod-1".into()),
                    limit_bytes: 512 << 20,
                    at_fork_bytes: 300 << 20,
                    peak_bytes: 480 << 20,
                    container: Some("redis1".into()),
                    container_id: Some("4f2d".into()),
                    pod_uid: Some("0b6a".into()),
                }),
                oom_kill: Some(schema::OomKill {
                    side: "child".into(),
                    pid: 11,
                    rss_bytes: 300 << 20,
                    cow_bytes: 200 << 20,
                }),
                projection_check: Some(schema::ProjectionCheck {
                    at_ms: 300,
                    projected_peak_bytes: 5,
                    actual_peak_bytes: 6,
                    error_pct: -16.7,
                }),
                sent: Some(schema::SentSummary {
                    calls: 3,
                    bytes: 1 << 20,
                    peers: Some(2),
                    targets: vec![schema::SentTarget {
                        kind: "pipe".into(),
                        ino: 77,
                        protocol: None,
                        bytes: 1 << 20,
                        calls: 3,
                    }],
                }),
                replication: Some(schema::Replication {
                    target: "socket".into(),
                    replicas: Some(2),
                }),
                aof: Some(schema::AofFiles {
                    base: "/d/appendonlydir/appendonly.aof.2.base.rdb".into(),
                    manifest: Some("/d/appendonlydir/appendonly.aof.manifest".into()),
                }),
                stall: Some(schema::StallSummary {
                    count: 2,
                    longest: schema::Stall {
                        for_ms: 12_000,
                        threshold_ms: 10_000,
                        state: Some("D".into()),
                        ..Default::default()
                    },
                }),
                slow_fork: Some(schema::SlowFork::default()),
                main_thread: Some(schema::MainThread::default()),
                parent_pid: 10,
                child_pid: 11,
                causes: None,
                regions: None,
                kind: SessionKind::RdbReplica,
                ts_ns: 7,
                duration_ms: 300,
                exit_code: None,
                exit_signal: Some(9),
                complete: false,
                cow: CowSummary {
                    pages: 2,
                    bytes: 8192,
                    parent_pages: 1,
                    child_pages: 1,
                    parent_bytes: 4096,
                    child_bytes: 4096,
                    copies_4k: 2,
                    copies_2m: 3,
                    copies_other: 4,
                    reuse_faults: 5,
                    parent_reuse_faults: 2,
                    child_reuse_faults: 3,
                    zero_fills: 6,
                    wp_faults: 7,
                    parent_rss_at_fork_bytes: Some(1 << 20),
                    pct_of_parent_rss: Some(0.8),
                    peak_pages_per_s: 20.0,
                    peak_at_ms: 100,
                    ninety_pct_at_ms: Some(300),
                    timeline_bucket_ms: 100,
                    timeline_pages: vec![2, 0],
                },
                writes: WritesSummary {
                    calls: 1,
                    bytes: 100,
                    files: vec![FileRow {
                        path: "/d/temp-11.aof".into(),
                        renamed_to: Some("/d/appendonly.aof".into()),
                        bytes: 100,
                        calls: 1,
                    }],
                    latency_us: q(1),
                    size_bytes: q(2),
                },
                fsync: FsyncSummary {
                    calls: 6,
                    total_ms: 0.5,
                    latency_us: q(3),
                    by_call: Some(SyncByCall {
                        fsync: SyncCallSummary {
                            calls: 1,
                            total_ms: 0.25,
                            latency_us: q(5),
                        },
                        fdatasync: SyncCallSummary {
                            calls: 2,
                            total_ms: 0.2,
                            latency_us: q(6),
                        },
                        sync_file_range: SyncCallSummary {
                            calls: 3,
                            total_ms: 0.05,
                            latency_us: q(7),
                        },
                    }),
                },
                disk: DiskSummary {
                    bytes: 4096,
                    ios: 1,
                    latency_us: q(4),
                },
            })),
            Record::Process(Box::new(ProcessRecord {
                pid: 10,
                instance: Some("pid 10".into()),
                comm: "redis-server".into(),
                exited: true,
                ts_ns: 8,
                cow: ProcessCow {
                    pages: 1,
                    bytes: 2,
                    copies_4k: 3,
                    copies_2m: 4,
                    copies_other: 5,
                    reuse_faults: 6,
                    zero_fills: 7,
                    wp_faults: 8,
                },
                io: ProcessIo {
                    write_calls: 1,
                    write_bytes: 2,
                    fsync_calls: 3,
                    sync_calls: Some(SyncCounts {
                        fsync: 1,
                        fdatasync: 1,
                        sync_file_range: 1,
                    }),
                    disk_ios: 4,
                    disk_bytes: 5,
                },
            })),
            Record::Cow(CowEvent {
                session: Some(3),
                ts_ns: 9,
                pid: 10,
                tid: 12,
                addr: 0x7f00_0000_1000,
                order: 0,
                side: Side::Child,
            }),
            Record::ZeroFill(CowEvent {
                session: Some(3),
                ts_ns: 9,
                pid: 10,
                tid: 12,
                addr: 0x7f00_0000_2000,
                order: 0,
                side: Side::Parent,
            }),
            Record::Write(io.clone()),
            Record::Fsync(IoEvent {
                fd: None,
                session: None,
                call: Some(SyncCall::SyncFileRange),
                ..io.clone()
            }),
            Record::Io(io),
            Record::End(End {
                sessions: 1,
                lost_events: 3,
                lost_detail_events: 2,
                lost_session_events: 1,
                decode_errors: 4,
                ts_ns: 10,
                duration_ms: 2000,
                reason: "signal".into(),
                maps: MapOccupancy {
                    traced: 1,
                    sessions: 2,
                    files: 3,
                },
                agent_max_rss_bytes: Some(25 << 20),
                // Round-trips the additive field (absent when empty).
                kernel_errors: [("SESSIONS".to_string(), 2)].into(),
            }),
        ]
    }

    #[test]
    fn every_record_type_is_read_back_as_written() {
        let records = every_record();
        let mut file = Vec::new();
        for r in &records {
            serde_json::to_writer(&mut file, r).unwrap();
            file.push(b'\n');
        }
        // The first line through the reader's checks, the rest line by line.
        let mut reader = TraceReader::open("t", file.as_slice()).unwrap();
        assert_eq!(Record::Meta(Box::new(reader.meta.clone())), records[0]);
        for want in &records[1..] {
            match reader.next_item().unwrap() {
                Some(Item::Line { line, .. }) => assert_eq!(&line, want),
                other => panic!("expected {want:?}, got {other:?}"),
            }
        }
        assert_eq!(reader.next_item().unwrap(), None);
    }

    #[test]
    fn lines_of_an_older_or_newer_writer_are_read() {
        // A format-1 line without the fields added later, with one this reader does not
        // know, and an unknown kind: defaults, ignored, Unknown.
        let l = parse_line(br#"{"type":"session_end","session":4,"kind":"module","future":1}"#)
            .unwrap();
        let Record::SessionEnd(e) = l else {
            panic!("{l:?}")
        };
        assert_eq!(
            (e.session, e.kind, e.complete),
            (4, SessionKind::Unknown, true)
        );
        assert_eq!(e.writes, WritesSummary::default());
        // Sync counts of a trace written before the calls were told apart: the total
        // only, and `fsync` lines without `call`.
        let l = parse_line(br#"{"type":"session_end","session":4,"fsync":{"calls":17}}"#).unwrap();
        let Record::SessionEnd(e) = l else {
            panic!("{l:?}")
        };
        assert_eq!((e.fsync.calls, e.fsync.calls_by_call()), (17, None));
        let l = parse_line(br#"{"type":"fsync","session":1,"latency_us":3.5}"#).unwrap();
        assert!(
            matches!(l, Record::Fsync(IoEvent { call: None, .. })),
            "{l:?}"
        );
        let l = parse_line(br#"{"type":"fsync","session":1,"call":"syncfs"}"#).unwrap();
        assert!(
            matches!(
                l,
                Record::Fsync(IoEvent {
                    call: Some(SyncCall::Unknown),
                    ..
                })
            ),
            "{l:?}"
        );
        let l = parse_line(br#"{"type":"process","pid":3,"io":{"fsync_calls":2}}"#).unwrap();
        let Record::Process(p) = l else {
            panic!("{l:?}")
        };
        assert_eq!((p.io.fsync_calls, p.io.sync_calls), (2, None));
        // The identity of a line is required.
        assert!(parse_line(br#"{"type":"sample","ts_ns":1}"#).is_err());
        assert!(parse_line(br#"{"type":"process","comm":"x"}"#).is_err());
    }

    #[test]
    fn a_meta_line_without_build_is_read() {
        // As written before `meta.build` existed (the fixtures' traces are such).
        let old = br#"{"type":"meta","format":"cowtrace","version":1,"cowtrace_version":"0.1.0","host":"vm","kernel":"6.18"}
"#;
        let reader = TraceReader::open("old", old.as_slice()).unwrap();
        assert_eq!(reader.meta.build, None);
        assert_eq!(reader.meta.host, "vm");
        let new = br#"{"type":"meta","format":"cowtrace","version":1,"build":{"commit":"abc","date":"2026-12-03T07:18:00Z","bpf_object_sha256":"87a4","later":1}}
"#;
        let reader = TraceReader::open("new", new.as_slice()).unwrap();
        let b = reader.meta.build.unwrap();
        assert_eq!(
            (
                b.commit.as_str(),
                b.date.as_str(),
                b.bpf_object_sha256.as_str()
            ),
            ("abc", "2026-12-03T07:18:00Z", "87a4")
        );
    }
}
