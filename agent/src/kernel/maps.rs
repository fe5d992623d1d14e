//! The kernel maps the agent reads and writes, owned by one struct with their
//! operations: adding a root, reading a session's counters, taking a session's file
//! rows, the drop counters, occupancy, and reaping ended sessions (`events::reap` plans,
//! this applies). Every fallible call names the map in its error.
use std::collections::{BTreeMap, HashMap, HashSet};

use agent_common::{
    DROP_HOT, DROP_PROC, ERROR_NAMES, FileKey, FileStat, MAYBE_TRACED_SLOTS, ROLE_CHILD, ROLE_ROOT,
    SessionState, TracedProc,
};
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, MapError, PerCpuArray, RingBuf},
};

use crate::{
    events::{
        reap::{Link, ReapAction, plan},
        session::KernelFile,
    },
    kernel::loader::LoadError,
    trace::schema::MapOccupancy,
};

/// `bpf_map_update_elem` flags (include/uapi/linux/bpf.h).
const BPF_NOEXIST: u64 = 1;
const BPF_EXIST: u64 = 2;

/// The two ring buffers: the session ring (forks, exits, titles, renames; wakes the
/// agent) and the detail ring (COW copies, writes, syncs, block requests; drained on a
/// timer).
pub struct Rings {
    pub session: RingBuf<MapData>,
    pub detail: RingBuf<MapData>,
}

/// Events the kernel could not put in each ring (ring full), summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    pub detail: u64,
    pub session: u64,
}

pub struct KernelMaps {
    traced: BpfHashMap<MapData, u32, TracedProc>,
    sessions: BpfHashMap<MapData, u32, SessionState>,
    /// The sessions' chain (`SESSION_PREV`): the only session map the agent writes to.
    prev: BpfHashMap<MapData, u32, u32>,
    files: BpfHashMap<MapData, FileKey, FileStat>,
    drops: PerCpuArray<MapData, u64>,
    /// Failed map inserts by kind (`ERRORS`, index `ERR_*`).
    errors: PerCpuArray<MapData, u64>,
    maybe_traced: Array<MapData, u8>,
    /// `max_entries` of `TRACED` and `SESSIONS` as loaded (0: unknown).
    capacity: (u32, u32),
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |source| LoadError::Map {
        name,
        source: Box::new(source),
    }
}

/// The `ERRORS` slots (summed over CPUs, index `ERR_*`) by map name, the zero ones left
/// out (pure: unit-tested).
pub fn error_counts(per_slot: &[u64]) -> BTreeMap<String, u64> {
    ERROR_NAMES
        .iter()
        .zip(per_slot)
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| ((*name).to_string(), *n))
        .collect()
}

/// A `SESSIONS` value as the kernel keeps it, with the 4 KiB copies' bytes added (the
/// kernel leaves them out of `copy_bytes`, `CowCounters::with_4k_bytes`).
fn whole_session(mut s: SessionState) -> SessionState {
    s.parent = s.parent.with_4k_bytes();
    s.child = s.child.with_4k_bytes();
    s
}

/// Take map `name` out of the loaded object as its typed handle `T`.
fn take<T: TryFrom<Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(map_err(name))
}

impl KernelMaps {
    /// Take the agent's maps and rings out of the loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<(Self, Rings), LoadError> {
        let cap = |name| match ebpf.map(name) {
            Some(Map::HashMap(d)) => d.info().map_or(0, |i| i.max_entries()),
            _ => 0,
        };
        let capacity = (cap("TRACED"), cap("SESSIONS"));
        let maps = Self {
            capacity,
            traced: take(ebpf, "TRACED")?,
            sessions: take(ebpf, "SESSIONS")?,
            prev: take(ebpf, "SESSION_PREV")?,
            files: take(ebpf, "FILES")?,
            drops: take(ebpf, "DROPS")?,
            errors: take(ebpf, "ERRORS")?,
            maybe_traced: take(ebpf, "MAYBE_TRACED")?,
        };
        let rings = Rings {
            session: take(ebpf, "PROC_EVENTS")?,
            detail: take(ebpf, "HOT_EVENTS")?,
        };
        Ok((maps, rings))
    }

    /// Trace `child`, a fork child of `root` that was already running when cowtrace
    /// started, as a session: the same entries the fork hook makes (agent-ebpf fork.rs),
    /// with `prev` the root's session before it. Called before the root is added, so the
    /// kernel never sees a chain that points to a missing entry.
    pub fn add_running_child(
        &mut self,
        root: u32,
        child: u32,
        prev: u32,
        fork_ts_ns: u64,
    ) -> Result<(), LoadError> {
        self.maybe_traced
            .set(child % MAYBE_TRACED_SLOTS, 1u8, 0)
            .map_err(map_err("MAYBE_TRACED"))?;
        let state = SessionState {
            parent_tgid: root,
            fork_ts_ns,
            ..Default::default()
        };
        self.sessions
            .insert(child, state, BPF_NOEXIST)
            .map_err(map_err("SESSIONS"))?;
        self.prev
            .insert(child, prev, 0)
            .map_err(map_err("SESSION_PREV"))?;
        let traced = TracedProc {
            role: ROLE_CHILD,
            parent_tgid: root,
            ..Default::default()
        };
        self.traced
            .insert(child, traced, BPF_NOEXIST)
            .map_err(map_err("TRACED"))
    }

    /// Start tracing `tgid` as a root (a Redis server or a `-p` target): mark its slot
    /// of the pre-filter first, then add it to `TRACED`. `newest_child` is its newest
    /// running session child (`add_running_child`), 0 for none.
    pub fn add_root(&mut self, tgid: u32, newest_child: u32) -> Result<(), LoadError> {
        self.maybe_traced
            .set(tgid % MAYBE_TRACED_SLOTS, 1u8, 0)
            .map_err(map_err("MAYBE_TRACED"))?;
        let v = TracedProc {
            role: ROLE_ROOT,
            newest_child,
            ..Default::default()
        };
        // NOEXIST: the exec hook may have added it already, with sessions linked to it.
        match self.traced.insert(tgid, v, BPF_NOEXIST) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(())
            }
            Err(source) => Err(map_err("TRACED")(source)),
        }
    }

    /// A traced process's entry (its process totals), if it is still there.
    pub fn traced(&self, tgid: u32) -> Option<TracedProc> {
        self.traced.get(&tgid, 0).ok().map(|mut t| {
            t.total = t.total.with_4k_bytes();
            t
        })
    }

    /// A session child's entry (its exact counters), if it is still there.
    /// A session entry, once the fork program has filled it in (it inserts a zeroed
    /// value, then sets the parent: agent-ebpf/src/fork.rs).
    pub fn session(&self, child: u32) -> Option<SessionState> {
        self.sessions
            .get(&child, 0)
            .ok()
            .filter(|s| s.parent_tgid != 0)
            .map(whole_session)
    }

    /// Every session entry now (as `session`: filled-in ones only).
    pub fn sessions(&self) -> Vec<(u32, SessionState)> {
        self.sessions
            .iter()
            .filter_map(Result::ok)
            .filter(|(_, v)| v.parent_tgid != 0)
            .map(|(k, v)| (k, whole_session(v)))
            .collect()
    }

    /// Remove and return the `FILES` rows of `session`, one per inode.
    pub fn take_files(&mut self, session: u32) -> Vec<KernelFile> {
        let rows: Vec<(FileKey, FileStat)> = self
            .files
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, _)| k.session == session)
            .collect();
        for (k, _) in &rows {
            // Already gone (a second agent took it) is fine: the row is ours anyway.
            let _ = self.files.remove(k);
        }
        file_rows(rows)
    }

    pub fn drops(&self) -> Drops {
        let sum = |i: u32| {
            self.drops
                .get(&i, 0)
                .map(|v| v.iter().sum::<u64>())
                .unwrap_or(0)
        };
        Drops {
            detail: sum(DROP_HOT),
            session: sum(DROP_PROC),
        }
    }

    /// Kernel-side failures so far, summed over CPUs, by map name (non-zero only).
    pub fn kernel_errors(&self) -> BTreeMap<String, u64> {
        let per_slot: Vec<u64> = (0..ERROR_NAMES.len() as u32)
            .map(|i| {
                self.errors
                    .get(&i, 0)
                    .map(|v| v.iter().sum::<u64>())
                    .unwrap_or(0)
            })
            .collect();
        error_counts(&per_slot)
    }

    /// Entries in the kernel's bounded maps now (leak checks, soak).
    pub fn occupancy(&self) -> MapOccupancy {
        MapOccupancy {
            traced: self.traced.keys().count() as u64,
            sessions: self.sessions.keys().count() as u64,
            files: self.files.keys().count() as u64,
        }
    }

    /// Free entries in `TRACED` and `SESSIONS` now (0 when the size is unknown).
    pub fn room(&self) -> (u64, u64) {
        let o = self.occupancy();
        (
            u64::from(self.capacity.0).saturating_sub(o.traced),
            u64::from(self.capacity.1).saturating_sub(o.sessions),
        )
    }

    /// Delete the entries of recorded sessions (`done`) that the attribution chain no
    /// longer needs, relinking the chain around them (`events::reap::plan`). Sessions
    /// deleted here, or gone from the map, leave `done`.
    pub fn reap(&mut self, done: &mut HashSet<u32>) {
        if done.is_empty() {
            return;
        }
        let snapshot: Vec<(u32, Link)> = self
            .sessions()
            .into_iter()
            .map(|(pid, s)| {
                let link = Link {
                    parent_tgid: s.parent_tgid,
                    prev_child: self.prev.get(&pid, 0).unwrap_or(0),
                    exited: s.exited,
                };
                (pid, link)
            })
            .collect();
        let mut newest = HashMap::new();
        for (_, s) in &snapshot {
            if let Some(root) = self.traced(s.parent_tgid) {
                newest.insert(s.parent_tgid, root.newest_child);
            }
        }
        for action in plan(&snapshot, &newest, done) {
            match action {
                ReapAction::Delete(pid) => {
                    // Gone already (pid reuse, another agent): nothing left to do.
                    let _ = self.sessions.remove(&pid);
                    let _ = self.prev.remove(&pid);
                    done.remove(&pid);
                }
                ReapAction::SetPrev { session, prev } => {
                    // Its own map: a SESSIONS value is never written back (the kernel
                    // adds to its counters all the time). EXIST: never resurrect an entry
                    // deleted meanwhile (there is nothing to relink then).
                    let _ = self.prev.insert(session, prev, BPF_EXIST);
                }
            }
        }
        // Recorded sessions no longer in the map (overwritten by pid reuse) are done.
        let present: HashSet<u32> = snapshot.iter().map(|(k, _)| *k).collect();
        done.retain(|p| present.contains(p));
    }
}

/// `FILES` rows of one session as file rows: the same inode written under one name is
/// one row; pipes and sockets (`FileKey::target`) stay apart from files (pure:
/// unit-tested).
pub fn file_rows(rows: Vec<(FileKey, FileStat)>) -> Vec<KernelFile> {
    let mut out: Vec<KernelFile> = Vec::new();
    for (k, v) in rows {
        let end = v.name.iter().position(|&c| c == 0).unwrap_or(v.name.len());
        match out
            .iter_mut()
            .find(|f| f.ino == k.ino && f.target == k.target)
        {
            Some(f) => {
                f.bytes += v.bytes;
                f.calls += v.calls;
            }
            None => out.push(KernelFile {
                ino: k.ino,
                name: String::from_utf8_lossy(&v.name[..end]).into_owned(),
                bytes: v.bytes,
                calls: v.calls,
                target: k.target,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use agent_common::{ERR_PENDING, ERR_SESSIONS, ERR_SLOTS};

    #[test]
    fn error_counts_name_the_maps_that_failed_and_only_those() {
        let mut slots = vec![0u64; ERR_SLOTS as usize];
        assert!(error_counts(&slots).is_empty());
        slots[ERR_SESSIONS as usize] = 2;
        slots[ERR_PENDING as usize] = 5;
        let c = error_counts(&slots);
        assert_eq!(
            c.into_iter().collect::<Vec<_>>(),
            vec![("PENDING".to_string(), 5), ("SESSIONS".to_string(), 2)]
        );
    }

    use super::*;

    fn row(session: u32, ino: u64, name: &str, bytes: u64) -> (FileKey, FileStat) {
        let mut stat = FileStat {
            bytes,
            calls: 1,
            name: [0; agent_common::NAME_LEN],
        };
        stat.name[..name.len()].copy_from_slice(name.as_bytes());
        let key = FileKey {
            session,
            ino,
            ..Default::default()
        };
        (key, stat)
    }

    #[test]
    fn rows_of_one_inode_are_one_file() {
        let rows = file_rows(vec![
            row(7, 10, "temp-7.rdb", 4096),
            row(7, 11, "other", 1),
            row(7, 10, "temp-7.rdb", 100),
            (
                FileKey {
                    target: agent_common::TARGET_PIPE,
                    ..row(7, 10, "", 5).0
                },
                row(7, 10, "", 5).1,
            ),
        ]);
        assert_eq!(
            rows,
            vec![
                KernelFile {
                    ino: 10,
                    name: "temp-7.rdb".into(),
                    bytes: 4196,
                    calls: 2,
                    target: 0
                },
                KernelFile {
                    ino: 11,
                    name: "other".into(),
                    bytes: 1,
                    calls: 1,
                    target: 0
                },
                KernelFile {
                    ino: 10,
                    name: "".into(),
                    bytes: 5,
                    calls: 1,
                    target: agent_common::TARGET_PIPE
                },
            ]
        );
    }
}
