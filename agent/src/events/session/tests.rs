//! The session state machine's unit tests: kernel events in, records out.
use super::*;
use agent_common::{
    EV_EXIT, EV_FDATASYNC, EV_FORK, EV_FORK_RET, EV_FSYNC, EV_RESYNC, EV_SYNC_FILE_RANGE, EV_TITLE,
};

fn ev(kind: u32, pid: u32, ppid: u32, ts: u64, value: u64) -> ProcEvent {
    ProcEvent::new(kind, pid, ppid, ts, value)
}

fn title(t: &[u8]) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..t.len()].copy_from_slice(t);
    b
}

#[test]
fn bgsave_session_life() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 200, 100, 1_000, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 200, 100, 1_500, 1_234_567));
    // Title not set yet: nothing to start.
    t.observe_cmdline(200, b"redis-server *:6379", b"redis-server *:6379", 2_000);
    assert!(t.ready_starts(2_000).is_empty());
    t.observe_cmdline(
        200,
        b"redis-rdb-bgsave *:6379",
        b"redis-server *:6379",
        3_000,
    );
    // An RDB child's start waits for its server's first socket write.
    assert!(t.ready_starts(3_000).is_empty());
    t.on_resync(&ev(EV_RESYNC, 200, 100, 2_500, RESYNC_NONE));
    t.set_parent_rss(200, 1 << 30);
    let starts = t.ready_starts(3_000);
    assert_eq!(starts.len(), 1);
    let Record::SessionStart(s) = &starts[0] else {
        panic!()
    };
    assert_eq!(
        (s.session, s.parent_pid, s.child_pid, s.kind),
        (1, 100, 200, SessionKind::RdbBgsave)
    );
    assert_eq!(s.fork_us, Some(1234.6));
    assert!(t.ready_starts(4_000).is_empty(), "started once");

    let mut exit = ev(EV_EXIT, 200, 100, 2_000_001_000, 0);
    exit.cow_parent = CowCounters {
        copies_4k: 10,
        copy_bytes: 40960,
        wp_faults: 12,
        ..Default::default()
    };
    exit.cow_child = CowCounters {
        copies_4k: 2,
        copy_bytes: 8192,
        wp_faults: 2,
        ..Default::default()
    };
    let files = [KernelFile {
        ino: 5,
        name: "temp-200.rdb".into(),
        bytes: 100,
        calls: 2,
        target: 0,
    }];
    exit.io = IoCounters {
        write_calls: 2,
        write_bytes: 100,
        sync_calls: [1, 0, 15],
        sync_ns: [2_000_000, 0, 30_000],
        disk_bytes: 4096,
        disk_ios: 1,
        ..Default::default()
    };
    let mut rn = RenameEvent {
        kind: 6,
        pid: 200,
        session: 200,
        tid: 200,
        ts_ns: 9,
        old: [0; 64],
        new: [0; 64],
    };
    rn.old[..12].copy_from_slice(b"temp-200.rdb");
    rn.new[..8].copy_from_slice(b"dump.rdb");
    t.on_rename(&rn);
    t.set_cwd(200, "/data".into());
    let out = t.on_exit(&exit, &files);
    assert_eq!(out.len(), 1);
    let Record::SessionEnd(e) = &out[0] else {
        panic!()
    };
    assert_eq!(
        (e.exit_code, e.exit_signal, e.duration_ms),
        (Some(0), None, 2000)
    );
    assert_eq!(
        (
            e.cow.pages,
            e.cow.parent_pages,
            e.cow.child_pages,
            e.cow.reuse_faults
        ),
        (12, 10, 2, 2)
    );
    assert_eq!(e.cow.pct_of_parent_rss, Some(0.0));
    assert_eq!(
        (
            e.writes.calls,
            e.writes.bytes,
            e.fsync.calls,
            e.disk.bytes,
            e.disk.ios
        ),
        (2, 100, 16, 4096, 1)
    );
    assert_eq!(e.fsync.calls_by_call(), Some([1, 0, 15]));
    assert_eq!(e.fsync.total_ms, 2.03);
    let by = e.fsync.by_call.as_ref().unwrap();
    assert_eq!(
        (by.fsync.total_ms, by.sync_file_range.total_ms),
        (2.0, 0.03)
    );
    assert_eq!(e.writes.files[0].path, "/data/temp-200.rdb");
    assert_eq!(
        e.writes.files[0].renamed_to.as_deref(),
        Some("/data/dump.rdb")
    );
    assert_eq!(t.live().count(), 0);
    assert_eq!((t.opened, t.ended), (1, 1));
}

#[test]
fn io_events_feed_the_session_histograms() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 7, 6, 0, 0));
    let w = |kind, lat, bytes| IoEvent {
        kind,
        session: 7,
        latency_ns: lat,
        bytes,
        ..Default::default()
    };
    t.on_io(&w(EV_WRITE, 5_000, 8192));
    t.on_io(&w(EV_WRITE, 7_000, 4096));
    t.on_io(&w(EV_FSYNC, 2_000_000, 0));
    t.on_io(&w(EV_FDATASYNC, 1_000_000, 0));
    t.on_io(&w(EV_SYNC_FILE_RANGE, 3_000, 0));
    t.on_io(&w(EV_SYNC_FILE_RANGE, 4_000, 0));
    t.on_io(&w(EV_DISK, 300_000, 65536));
    t.on_io(&IoEvent {
        session: 99,
        ..w(EV_WRITE, 1, 1)
    }); // not a live session
    let s = t.get(7).unwrap();
    assert_eq!(
        (
            s.hists.write_lat_us.len(),
            s.hists.sync_lat_us.each_ref().map(Hist::len),
            s.hists.disk_lat_us.len()
        ),
        (2, [1, 1, 2], 1)
    );
    assert_eq!(s.hists.all_sync_lat_us().len(), 4);
    assert_eq!(s.hists.sync_lat_us[2].max(), 4);
    assert_eq!(s.hists.write_size.quantiles().max, 8192);
    assert!(t.wants_fd_path(7, 1));
    t.note_fd_path(7, 1, "/x".into());
    assert!(!t.wants_fd_path(7, 1));
}

#[test]
fn title_caught_while_redis_rewrites_it_is_read_again() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 7, 6, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 7, 6, 10, 50_000));
    let parent = b"redis-server *:6379\0";
    // Cleared, then half copied: neither is final within the grace period.
    t.observe_cmdline(7, &[0; 20], parent, 1_000);
    t.observe_cmdline(7, b"redis-rdb-bgs\0\0\0\0\0\0\0", parent, 2_000);
    assert!(t.ready_starts(2_000).is_empty());
    t.observe_cmdline(7, b"redis-rdb-bgsave *:6379\0", parent, 3_000);
    t.on_resync(&ev(EV_RESYNC, 7, 6, 3_000, RESYNC_NONE));
    let Record::SessionStart(s) = &t.ready_starts(3_000)[0] else {
        panic!()
    };
    assert_eq!(s.kind, SessionKind::RdbBgsave);
}

#[test]
fn child_that_never_retitles_is_a_plain_fork() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 7, 6, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 7, 6, 10, 50_000));
    t.observe_cmdline(7, b"cowload", b"cowload", 1_000);
    assert!(t.ready_starts(1_000).is_empty());
    t.observe_cmdline(7, b"cowload", b"cowload", TITLE_GRACE_NS + 1);
    let Record::SessionStart(s) = &t.ready_starts(TITLE_GRACE_NS + 1)[0] else {
        panic!()
    };
    assert_eq!(s.kind, SessionKind::Fork);
}

#[test]
fn short_child_is_classified_from_the_kernel_title_and_killed_status() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 9, 8, 0, 0));
    let mut te = ev(EV_TITLE, 9, 8, 5, 0);
    te.title = title(b"redis-aof-rewrite *:1");
    te.value = 21;
    t.on_title(&te, None);
    let out = t.on_exit(&ev(EV_EXIT, 9, 8, 10, 9), &[]);
    assert_eq!(out.len(), 2, "start then end");
    let Record::SessionStart(s) = &out[0] else {
        panic!()
    };
    assert_eq!(s.kind, SessionKind::AofRewrite);
    assert_eq!(s.title.as_deref(), Some("redis-aof-rewrite *:1"));
    assert_eq!(s.fork_us, None);
    let Record::SessionEnd(e) = &out[1] else {
        panic!()
    };
    assert_eq!((e.exit_code, e.exit_signal), (None, Some(9)));
}

#[test]
fn kernel_title_is_cut_at_the_argv_length_and_compared_with_the_parent() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 9, 8, 0, 0));
    let mut te = ev(EV_TITLE, 9, 8, 5, 0);
    // argv "python3 t.py" (13 bytes with NULs) followed by the environment.
    te.title = title(b"python3\0t.py\0HOME=/root\0");
    te.value = 13;
    t.on_title(&te, Some(b"python3\0t.py\0"));
    let Record::SessionStart(s) = &t.on_exit(&ev(EV_EXIT, 9, 8, 10, 0), &[])[0] else {
        panic!()
    };
    assert_eq!((s.kind, s.title.as_deref()), (SessionKind::Fork, None));
}

#[test]
fn events_read_after_the_end_keep_their_session() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 100, 0));
    t.on_fork(&ev(EV_FORK, 6, 4, 200, 0));
    assert_eq!((t.session_id(5), t.session_id(6)), (Some(1), Some(2)));
    t.on_exit(&ev(EV_EXIT, 5, 4, 300, 0), &[]);
    t.finish(400, |_| Vec::new());
    assert_eq!(t.live().count(), 0);
    assert_eq!((t.session_id(5), t.session_id(6)), (Some(1), Some(2)));
    assert_eq!(t.session_id(7), None, "never a session");
    // A reused pid is the new session while it lives.
    t.on_fork(&ev(EV_FORK, 5, 4, 500, 0));
    assert_eq!(t.session_id(5), Some(3));
    // Only the newest ones are kept.
    for pid in 1000..1000 + RECENTLY_ENDED as u32 {
        t.on_fork(&ev(EV_FORK, pid, 4, 600, 0));
        t.on_exit(&ev(EV_EXIT, pid, 4, 700, 0), &[]);
    }
    assert_eq!(t.session_id(6), None, "forgotten");
    assert!(t.session_id(1000).is_some());
    assert_eq!(t.session_id(5), Some(3), "still live");
}

#[test]
fn a_daemonizing_fork_is_no_session_in_either_order() {
    // The parent exits first: the plain fork is held, then dropped.
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
    assert!(t.on_root_exit(4).is_empty());
    t.observe_cmdline(5, b"redis-server", b"", TITLE_GRACE_NS + 1);
    assert!(t.ready_starts(2 * FORK_RET_WAIT_NS).is_empty(), "held");
    assert!(t.on_daemonized(5, 3 * FORK_RET_WAIT_NS).is_empty());
    assert_eq!((t.opened, t.live().count(), t.session_id(5)), (0, 0, None));
    // The server's own save is session 1.
    t.on_fork(&ev(EV_FORK, 6, 5, 10, 0));
    assert_eq!(t.session_id(6), Some(1));

    // setsid() first, while the parent still runs.
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_setsid(5);
    t.observe_cmdline(5, b"x", b"x", TITLE_GRACE_NS + 1);
    assert!(t.ready_starts(2 * FORK_RET_WAIT_NS).is_empty(), "held");
    assert!(t.on_daemonized(5, 1).is_empty());
    assert_eq!(t.opened, 0);
}

#[test]
fn a_detached_child_that_exits_is_a_plain_fork_and_saves_are_never_held() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_setsid(5);
    t.observe_cmdline(5, b"x", b"x", TITLE_GRACE_NS + 1);
    let out = t.on_exit(&ev(EV_EXIT, 5, 4, 10, 0), &[]);
    let Record::SessionStart(s) = &out[0] else {
        panic!()
    };
    assert_eq!((s.session, s.kind), (1, SessionKind::Fork));
    // A save whose server was killed is not held.
    t.on_fork(&ev(EV_FORK, 7, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 7, 4, 1, 1000));
    t.observe_cmdline(7, b"redis-rdb-bgsave", b"redis-server", 2);
    t.on_resync(&ev(EV_RESYNC, 7, 4, 2, RESYNC_NONE));
    assert!(t.on_root_exit(4).is_empty());
    assert_eq!(t.ready_starts(3).len(), 1);
    // A session already started when it turns out to be the server ends incomplete.
    t.on_fork(&ev(EV_FORK, 8, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 8, 4, 1, 1000));
    t.observe_cmdline(8, b"x", b"x", TITLE_GRACE_NS + 1);
    assert_eq!(t.ready_starts(TITLE_GRACE_NS + 1).len(), 1);
    let Record::SessionEnd(e) = &t.on_daemonized(8, TITLE_GRACE_NS + 2)[0] else {
        panic!()
    };
    assert!(!e.complete);
}

fn aof_child(t: &mut Tracker) -> Vec<Record> {
    t.on_fork(&ev(EV_FORK, 9, 8, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 9, 8, 1, 1000));
    t.set_cwd(9, "/d".into());
    t.observe_cmdline(9, b"redis-aof-rewrite *:1", b"redis-server", 2);
    assert_eq!(t.ready_starts(3).len(), 1);
    let mut rn = RenameEvent {
        kind: 6,
        pid: 9,
        session: 9,
        tid: 9,
        ts_ns: 4,
        old: [0; 64],
        new: [0; 64],
    };
    rn.old[..21].copy_from_slice(b"temp-rewriteaof-9.aof");
    rn.new[..24].copy_from_slice(b"temp-rewriteaof-bg-9.aof");
    t.on_rename(&rn);
    let files = [KernelFile {
        ino: 3,
        name: "temp-rewriteaof-9.aof".into(),
        bytes: 1000,
        calls: 2,
        target: 0,
    }];
    t.on_exit(&ev(EV_EXIT, 9, 8, 10, 0), &files)
}

#[test]
fn an_aof_rewrite_ends_once_its_server_renamed_the_file_and_the_manifest() {
    let mut t = Tracker::new();
    assert!(aof_child(&mut t).is_empty(), "held for the server's rename");
    assert_eq!(t.session_id(9), Some(1), "late events keep their session");
    assert!(
        t.on_parent_rename(7, "temp-rewriteaof-bg-9.aof", "x")
            .is_empty()
    );
    assert!(
        t.on_parent_rename(8, "other", "appendonlydir/a.manifest")
            .is_empty()
    );
    assert!(
        t.on_parent_rename(
            8,
            "temp-rewriteaof-bg-9.aof",
            "appendonlydir/appendonly.aof.2.base.rdb"
        )
        .is_empty()
    );
    assert!(
        t.on_parent_rename(
            8,
            "appendonlydir/temp-appendonly.aof.incr",
            "appendonlydir/appendonly.aof.3.incr.aof"
        )
        .is_empty()
    );
    let out = t.on_parent_rename(
        8,
        "appendonlydir/temp-appendonly.aof.manifest",
        "appendonlydir/appendonly.aof.manifest",
    );
    let Record::SessionEnd(e) = &out[0] else {
        panic!()
    };
    assert_eq!(
        e.writes.files[0].renamed_to.as_deref(),
        Some("/d/appendonlydir/appendonly.aof.2.base.rdb")
    );
    let aof = e.aof.as_ref().unwrap();
    assert_eq!(aof.base, "/d/appendonlydir/appendonly.aof.2.base.rdb");
    assert_eq!(
        aof.manifest.as_deref(),
        Some("/d/appendonlydir/appendonly.aof.manifest")
    );
    assert_eq!(t.ended, 1);
}

#[test]
fn an_aof_rewrite_without_the_servers_rename_ends_after_the_wait() {
    let mut t = Tracker::new();
    aof_child(&mut t);
    assert!(
        t.release_finishing(Some(10 + AOF_RENAME_WAIT_NS), None)
            .is_empty()
    );
    let out = t.release_finishing(Some(11 + AOF_RENAME_WAIT_NS), None);
    let Record::SessionEnd(e) = &out[0] else {
        panic!()
    };
    assert_eq!((e.aof.as_ref(), e.exit_code), (None, Some(0)));
    // Or when its server exits, or at the end of the run.
    let mut t = Tracker::new();
    aof_child(&mut t);
    assert_eq!(t.on_root_exit(8).len(), 1);
    let mut t = Tracker::new();
    aof_child(&mut t);
    assert_eq!(t.finish(20, |_| Vec::new()).len(), 1);
}

fn resync(child: u32, root: u32, what: u64) -> ProcEvent {
    ev(EV_RESYNC, child, root, 0, what)
}

fn start_of(out: &[Record]) -> &SessionStart {
    out.iter()
        .find_map(|r| match r {
            Record::SessionStart(s) => Some(s),
            _ => None,
        })
        .expect("a session_start")
}

fn end_of(out: &[Record]) -> &SessionEnd {
    out.iter()
        .find_map(|r| match r {
            Record::SessionEnd(e) => Some(&**e),
            _ => None,
        })
        .expect("a session_end")
}

#[test]
fn a_bgsave_announced_to_a_replica_is_a_disk_based_sync() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
    t.observe_cmdline(5, b"redis-rdb-bgsave *:6379", b"redis-server", 2);
    assert!(t.ready_starts(3).is_empty(), "waits for the server's write");
    t.on_resync(&resync(5, 4, RESYNC_FULLRESYNC));
    let starts = t.ready_starts(4);
    let s = start_of(&starts);
    assert_eq!(s.kind, SessionKind::RdbReplica);
    assert_eq!(
        s.replication,
        Some(Replication {
            target: "disk".into(),
            replicas: Some(1)
        })
    );
    // A second replica joins the running sync; a client's reply counts for nothing.
    t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
    t.on_resync(&resync(0, 4, RESYNC_NONE));
    let out = t.on_exit(&ev(EV_EXIT, 5, 4, 10, 0), &[]);
    let e = end_of(&out);
    assert_eq!(
        (e.kind, e.replication.as_ref().and_then(|r| r.replicas)),
        (SessionKind::RdbReplica, Some(2))
    );
    assert_eq!(e.sent, None, "it wrote to no pipe or socket");
}

#[test]
fn a_diskless_sync_counts_its_replicas_and_what_it_sent() {
    let mut t = Tracker::new();
    // Two replicas told before the fork.
    t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
    t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
    t.observe_cmdline(5, b"redis-rdb-to-slaves *:6379", b"redis-server", 2);
    let starts = t.ready_starts(3);
    assert_eq!(
        start_of(&starts).replication,
        Some(Replication {
            target: "socket".into(),
            replicas: Some(2)
        })
    );
    let mut exit = ev(EV_EXIT, 5, 4, 10, 0);
    exit.io.sent_calls = 3;
    exit.io.sent_bytes = 1000 + 40;
    let files = [
        KernelFile {
            ino: 8,
            name: String::new(),
            bytes: 40,
            calls: 1,
            target: agent_common::TARGET_PIPE,
        },
        KernelFile {
            ino: 9,
            name: String::new(),
            bytes: 1000,
            calls: 2,
            target: agent_common::TARGET_PIPE,
        },
    ];
    let out = t.on_exit(&exit, &files);
    let e = end_of(&out);
    assert!(e.writes.files.is_empty(), "pipes are not files");
    let sent = e.sent.as_ref().unwrap();
    assert_eq!((sent.calls, sent.bytes, sent.peers), (3, 1040, Some(2)));
    assert_eq!(
        sent.targets.iter().map(|t| t.ino).collect::<Vec<_>>(),
        [9, 8]
    );
    assert_eq!(sent.targets[0].kind, "pipe");
    // The next fork starts with no pending replicas.
    t.on_fork(&ev(EV_FORK, 6, 4, 20, 0));
    assert_eq!(t.get(6).unwrap().resyncs_before, Resyncs::default());
}

#[test]
fn dual_channel_replicas_are_counted_once() {
    let mut t = Tracker::new();
    t.on_resync(&resync(0, 4, RESYNC_ENDOFF));
    t.on_resync(&resync(0, 4, RESYNC_FULLRESYNC));
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.observe_cmdline(5, b"valkey-rdb-to-replicas", b"valkey-server", 2);
    assert_eq!(
        t.get(5).unwrap().replication().and_then(|r| r.replicas),
        Some(1)
    );
}

#[test]
fn a_bgsave_whose_server_says_nothing_starts_after_the_wait() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
    t.observe_cmdline(5, b"redis-rdb-bgsave", b"redis-server", 2);
    assert!(t.ready_starts(FORK_RET_WAIT_NS).is_empty());
    let starts = t.ready_starts(FORK_RET_WAIT_NS + 1);
    let s = start_of(&starts);
    assert_eq!(
        (s.kind, s.replication.as_ref()),
        (SessionKind::RdbBgsave, None)
    );
}

#[test]
fn a_fork_seen_twice_is_one_session() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 100, 0));
    t.on_fork(&ev(EV_FORK, 5, 4, 100, 0));
    assert_eq!((t.opened, t.live().count()), (1, 1));
}

#[test]
fn exit_of_unknown_pid_is_ignored_and_forkret_must_match_parent() {
    let mut t = Tracker::new();
    assert!(t.on_exit(&ev(EV_EXIT, 1, 0, 0, 0), &[]).is_empty());
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 5, 999, 1, 1000));
    assert_eq!(t.get(5).unwrap().fork_us, None);
}

#[test]
fn samples_carry_deltas_and_finish_closes_incomplete() {
    let mut t = Tracker::new();
    t.on_fork(&ev(EV_FORK, 5, 4, 0, 0));
    t.on_fork_ret(&ev(EV_FORK_RET, 5, 4, 1, 1000));
    t.observe_cmdline(5, b"redis-rdb-bgsave", b"redis-server", 2);
    t.on_resync(&ev(EV_RESYNC, 5, 4, 2, RESYNC_NONE));
    assert_eq!(t.ready_starts(2).len(), 1);
    let c = |p| CowCounters {
        copies_4k: p,
        copy_bytes: p * 4096,
        ..Default::default()
    };
    t.on_counters(
        5,
        500_000_000,
        c(100),
        c(0),
        IoCounters {
            write_bytes: 10,
            ..Default::default()
        },
    );
    let Record::Sample(s) = &t.samples(1_000_000_000)[0] else {
        panic!()
    };
    assert_eq!(
        (s.cow_pages, s.cow_pages_delta, s.cow_pages_per_s),
        (100, 100, 100.0)
    );
    t.on_counters(
        5,
        1_500_000_000,
        c(300),
        c(1),
        IoCounters {
            write_bytes: 25,
            disk_bytes: 8,
            ..Default::default()
        },
    );
    let Record::Sample(s) = &t.samples(2_000_000_000)[0] else {
        panic!()
    };
    assert_eq!(
        (
            s.cow_pages,
            s.cow_pages_delta,
            s.parent_pages,
            s.child_pages
        ),
        (301, 201, 300, 1)
    );
    assert_eq!((s.write_bytes, s.disk_bytes), (15, 8));
    let out = t.finish(3_000_000_000, |_| Vec::new());
    let Record::SessionEnd(e) = &out[0] else {
        panic!()
    };
    assert!(!e.complete);
    assert_eq!((e.exit_code, e.exit_signal, e.cow.pages), (None, None, 301));
    assert_eq!(e.cow.timeline_pages[5], 100);
    assert_eq!(e.cow.timeline_pages[15], 201);
}
