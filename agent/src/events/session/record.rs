//! One fork session's state, and the records it makes: its start, its end (COW, writes,
//! syncs, what a replica sync sent), from what the tracker has gathered.
use super::*;

#[derive(Debug, Clone)]
pub struct Session {
    pub id: u64,
    pub parent_pid: u32,
    pub child_pid: u32,
    pub fork_ts_ns: u64,
    pub kind: Option<SessionKind>,
    pub title: Option<String>,
    pub fork_us: Option<f64>,
    pub parent_rss: Option<u64>,
    pub started: bool,
    pub parent: CowCounters,
    pub child: CowCounters,
    pub timeline: Timeline,
    pub io: IoCounters,
    pub hists: IoHists,
    /// Paths of written files, from /proc/PID/fd while they were open, by inode.
    pub fd_paths: HashMap<u64, String>,
    pub renames: Vec<(String, String)>,
    /// The writer's working directory (relative names are resolved against it).
    pub cwd: Option<String>,
    /// The traced server's name (`trace::schema::SessionStart::instance`).
    pub instance: Option<String>,
    /// Set when cowtrace attached while the child was already running.
    pub mid_save: Option<MidSave>,
    /// The child called `setsid()` (`EV_SETSID`), or its server exited while it ran: a
    /// plain fork that may be a server daemonizing, whose start is held until it exits
    /// or becomes the server (`Tracker::on_daemonized`).
    pub detached: bool,
    pub orphaned: bool,
    /// The server has written to a socket since this fork (`EV_RESYNC`).
    pub post_fork_write: bool,
    /// Replicas' full-sync lines the server wrote for this fork: `+FULLRESYNC` right
    /// after it (a disk-based sync, and replicas that join it), or before it, while no
    /// other fork was pending (`+FULLRESYNC`, `$ENDOFF`: a diskless sync).
    pub resyncs_after: u64,
    pub resyncs_before: Resyncs,
    pub(super) last_sample_pages: u64,
    pub(super) last_sample_ts: u64,
    pub(super) last_sample_io: IoCounters,
}

impl Session {
    pub fn pages(&self) -> u64 {
        (self.parent.copy_bytes + self.child.copy_bytes) / 4096
    }

    pub(super) fn kind_or_fork(&self) -> SessionKind {
        match self.kind {
            // A BGSAVE child the server announced to a replica with `+FULLRESYNC`
            // serves a disk-based sync (its title is the same).
            Some(SessionKind::RdbBgsave) if self.resyncs_after > 0 => SessionKind::RdbReplica,
            k => k.unwrap_or(SessionKind::Fork),
        }
    }

    /// Its kind as far as it is known (a disk-based replica sync is `rdb-replica`).
    pub fn effective_kind(&self) -> Option<SessionKind> {
        self.kind.map(|_| self.kind_or_fork())
    }

    /// How this session serves replicas, if it does.
    pub fn replication(&self) -> Option<Replication> {
        match (self.kind?, self.resyncs_after) {
            (SessionKind::RdbBgsave, n) if n > 0 => Some(Replication {
                target: "disk".into(),
                replicas: Some(n),
            }),
            (SessionKind::RdbReplica, _) => {
                let n = self.resyncs_before.replicas();
                Some(Replication {
                    target: "socket".into(),
                    replicas: (n > 0).then_some(n),
                })
            }
            _ => None,
        }
    }

    /// An RDB child whose server has not written to a socket since the fork may still
    /// be announced to a replica (disk-based syncs write `+FULLRESYNC` right after the
    /// fork): its start waits for that write, at most [`FORK_RET_WAIT_NS`].
    pub(super) fn awaits_resync(&self, now_ns: u64) -> bool {
        self.kind == Some(SessionKind::RdbBgsave)
            && !self.post_fork_write
            && self.mid_save.is_none()
            && now_ns.saturating_sub(self.fork_ts_ns) <= FORK_RET_WAIT_NS
    }

    /// A plain fork that detached or lost its server may be the server itself, after
    /// `daemonize()`: its start waits for its exit (or its end as a session).
    pub(super) fn maybe_daemon(&self) -> bool {
        (self.detached || self.orphaned) && self.kind == Some(SessionKind::Fork)
    }

    pub(super) fn start_record(&mut self) -> Record {
        self.started = true;
        Record::SessionStart(SessionStart {
            session: self.id,
            parent_pid: self.parent_pid,
            child_pid: self.child_pid,
            kind: self.kind_or_fork(),
            ts_ns: self.fork_ts_ns,
            fork_us: self.fork_us,
            title: self.title.clone(),
            parent_rss_bytes: self.parent_rss,
            instance: self.instance.clone(),
            attached_mid_save: self.mid_save.clone(),
            replication: self.replication(),
            slow_fork: None,
        })
    }

    pub(super) fn end_record(
        &self,
        ts_ns: u64,
        status: i64,
        complete: bool,
        files: &[KernelFile],
    ) -> Record {
        let (exit_code, exit_signal) = if complete {
            split_wait_status(status)
        } else {
            (None, None)
        };
        let mut rows: Vec<FileRow> = files
            .iter()
            .filter(|f| f.target == TARGET_FILE)
            .map(|f| {
                let (path, renamed_to) = resolve(
                    &f.name,
                    self.fd_paths.get(&f.ino).map(String::as_str),
                    &self.renames,
                    self.cwd.as_deref(),
                );
                FileRow {
                    path,
                    renamed_to,
                    bytes: f.bytes,
                    calls: f.calls,
                }
            })
            .collect();
        rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
        let io = &self.io;
        Record::SessionEnd(Box::new(SessionEnd {
            session: self.id,
            parent_pid: self.parent_pid,
            child_pid: self.child_pid,
            kind: self.kind_or_fork(),
            ts_ns,
            duration_ms: ts_ns.saturating_sub(self.fork_ts_ns) / 1_000_000,
            exit_code,
            exit_signal,
            complete,
            cow: self.cow_summary(),
            writes: WritesSummary {
                calls: io.write_calls,
                bytes: io.write_bytes,
                files: rows,
                latency_us: self.hists.write_lat_us.quantiles(),
                size_bytes: self.hists.write_size.quantiles(),
            },
            fsync: self.sync_summary(),
            disk: DiskSummary {
                bytes: io.disk_bytes,
                ios: io.disk_ios,
                latency_us: self.hists.disk_lat_us.quantiles(),
            },
            instance: self.instance.clone(),
            attached_mid_save: self.mid_save.clone(),
            sent: self.sent_summary(files),
            replication: self.replication(),
            memory: None,
            oom_kill: None,
            projection_check: None,
            aof: None,
            causes: None,
            regions: None,
            stall: None,
            slow_fork: None,
            main_thread: None,
        }))
    }

    /// The `sent` object, when the child wrote to a pipe or socket.
    pub(super) fn sent_summary(&self, files: &[KernelFile]) -> Option<SentSummary> {
        if self.io.sent_calls == 0 {
            return None;
        }
        let mut targets: Vec<SentTarget> = files
            .iter()
            .filter(|f| f.target != TARGET_FILE)
            .map(|f| {
                let socket = f.target == TARGET_SOCKET;
                SentTarget {
                    kind: if socket { "socket" } else { "pipe" }.into(),
                    ino: f.ino,
                    protocol: (socket && !f.name.is_empty()).then(|| f.name.clone()),
                    bytes: f.bytes,
                    calls: f.calls,
                }
            })
            .collect();
        targets.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ino.cmp(&b.ino)));
        let peers = self
            .replication()
            .filter(|r| r.target == "socket")
            .and_then(|r| r.replicas);
        Some(SentSummary {
            calls: self.io.sent_calls,
            bytes: self.io.sent_bytes,
            peers,
            targets,
        })
    }

    /// The `fsync` object: every sync call together, and per call.
    pub(super) fn sync_summary(&self) -> FsyncSummary {
        let (io, h) = (&self.io, &self.hists);
        let call = |i: usize| SyncCallSummary {
            calls: io.sync_calls[i],
            total_ms: ms2(io.sync_ns[i]),
            latency_us: h.sync_lat_us[i].quantiles(),
        };
        FsyncSummary {
            calls: io.sync_calls_total(),
            total_ms: ms2(io.sync_ns_total()),
            latency_us: h.all_sync_lat_us().quantiles(),
            by_call: Some(SyncByCall {
                fsync: call(0),
                fdatasync: call(1),
                sync_file_range: call(2),
            }),
        }
    }

    /// The `cow` object; a session attached mid-save has its share of the parent's RSS
    /// from the estimate plus what was counted.
    pub(super) fn cow_summary(&self) -> CowSummary {
        let mut c = self
            .timeline
            .summary(&self.parent, &self.child, self.parent_rss);
        if let Some(est) = self.mid_save.as_ref().and_then(|m| m.cow_bytes_estimate) {
            c.pct_of_parent_rss = pct(c.bytes.saturating_add(est), self.parent_rss);
        }
        c
    }
}
