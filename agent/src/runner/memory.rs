//! The memory of servers whose saves are running: their cgroup's limit and usage, read
//! every tick (100 ms) while a save runs; each session keeps its peak, which goes on its
//! `session_end` (`memory`). Reads /proc and the cgroup files; the parsing is in
//! `procfs::cgroup`.
use std::collections::HashMap;

use crate::{
    events::{
        projection::{Inputs, Projector},
        session::Tracker,
    },
    procfs::cgroup::{self, Container, MemCgroup, Version},
    trace::schema::{Projection, ProjectionCheck, Record, SaveMemory, SessionEnd, SessionKind},
};

/// A server's cgroup, looked up once.
struct Server {
    cg: Option<MemCgroup>,
    container: Option<Container>,
    name: Option<String>,
}

struct Watch {
    root: u32,
    source: &'static str,
    limit: u64,
    at_fork: u64,
    /// The highest usage sampled.
    peak: u64,
    /// The cgroup's high-water mark when the save started: if it is higher at the end,
    /// the save set it, and it is the save's exact peak.
    max_at_start: Option<u64>,
    /// The last usage read.
    usage: u64,
}

/// `(source, limit, usage, high-water mark)`.
type Reading = (&'static str, u64, u64, Option<u64>);

#[derive(Default)]
pub struct MemoryWatch {
    servers: HashMap<u32, Server>,
    sessions: HashMap<u32, Watch>,
    projector: Projector,
}

/// A cgroup's figures, or the host's when the cgroup sets no limit.
fn read(cg: Option<&MemCgroup>) -> Option<Reading> {
    if let Some(cg) = cg
        && let Some(u) = cgroup::read_usage(cg)
        && let Some(limit) = u.limit
    {
        let source = match cg.version {
            Version::V1 => "cgroup v1",
            Version::V2 => "cgroup v2",
        };
        return Some((source, limit, u.usage, u.max));
    }
    let (total, used) = cgroup::host_memory()?;
    Some(("host", total, used, None))
}

impl MemoryWatch {
    /// Sample the memory of `root`, whose save `child` is running; returns the server's
    /// limit and usage.
    pub fn sample(&mut self, child: u32, root: u32) -> Option<(u64, u64)> {
        let server = self.servers.entry(root).or_insert_with(|| {
            let cg = cgroup::memory_cgroup(root);
            let container = cg.as_ref().and_then(|c| cgroup::container_of(&c.path));
            let name = container.as_ref().map(cgroup::display_name);
            Server {
                cg,
                container,
                name,
            }
        });
        let (source, limit, usage, max) = read(server.cg.as_ref())?;
        let w = self.sessions.entry(child).or_insert(Watch {
            root,
            source,
            limit,
            at_fork: usage,
            peak: usage,
            max_at_start: max,
            usage,
        });
        w.limit = limit;
        w.usage = usage;
        w.peak = w.peak.max(usage);
        Some((limit, usage))
    }

    /// The session's figures, for its `session_end`; forgets it.
    pub fn take(&mut self, child: u32) -> Option<SaveMemory> {
        let mut w = self.sessions.remove(&child)?;
        let server = self.servers.get(&w.root);
        if let Some((_, _, _, Some(max))) = read(server.and_then(|s| s.cg.as_ref()))
            && w.max_at_start.is_some_and(|m| max > m)
        {
            w.peak = w.peak.max(max);
        }
        let container = server.and_then(|s| s.container.as_ref());
        Some(SaveMemory {
            source: w.source.into(),
            cgroup: server.and_then(|s| s.cg.as_ref()).map(|c| c.path.clone()),
            limit_bytes: w.limit,
            at_fork_bytes: w.at_fork,
            peak_bytes: w.peak,
            container: server.and_then(|s| s.name.clone()),
            container_id: container.map(|c| c.id.clone()),
            pod_uid: container.and_then(|c| c.pod_uid.clone()),
        })
    }

    /// Each sample's projected peak (`events::projection`), put on the sample and
    /// returned by session for the watch lines.
    pub fn project(
        &mut self,
        tracker: &Tracker,
        samples: &mut [Record],
    ) -> HashMap<u64, Projection> {
        let mut out = HashMap::new();
        for rec in samples {
            let Record::Sample(s) = rec else { continue };
            let Some(sess) = tracker.live().find(|l| l.id == s.session) else {
                continue;
            };
            let memory = self
                .sessions
                .get(&sess.child_pid)
                .map(|w| (w.limit, w.usage));
            let i = Inputs {
                session: s.session,
                server: s.instance.as_deref().unwrap_or(""),
                kind: sess.kind.unwrap_or(SessionKind::Fork).as_str(),
                elapsed_ms: s.elapsed_ms,
                cow_bytes: s.cow_bytes,
                cow_rate: s.cow_pages_per_s * 4096.0,
                write_bytes: s.write_bytes,
                rss_at_fork: sess.parent_rss,
                memory,
            };
            if let Some(p) = self.projector.on_sample(&i) {
                out.insert(s.session, p.clone());
                s.projection = Some(p);
            }
        }
        out
    }

    /// How good the session's projection was, once its `memory` is known.
    pub fn check(&mut self, e: &SessionEnd) -> Option<ProjectionCheck> {
        self.projector.on_end(e)
    }

    /// A server that exited: look its cgroup up again if a new one takes its pid.
    pub fn forget_server(&mut self, root: u32) {
        self.servers.remove(&root);
    }
}
