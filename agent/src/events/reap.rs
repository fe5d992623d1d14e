//! Reaping the kernel's `SESSIONS` map, as a pure decision over a snapshot.
//!
//! The fault handler finds a parent's newest live session by walking
//! `TRACED[root].newest_child -> SESSION_PREV[c] -> ...`, skipping exited children. An
//! exited session can be deleted once the agent has its final counters, but deleting it
//! must not cut that chain:
//! * a session whose previous one is the reaped one is relinked to the reaped one's
//!   previous (the kernel only writes `SESSION_PREV` when it creates an entry, and
//!   `SESSION_PREV` holds nothing else: the agent never writes back a `SESSIONS` value,
//!   whose counters the kernel adds to at any time; doing so lost about ten copies a
//!   save in a 2-vCPU guest);
//! * the root's `newest_child` is written by the kernel on every fork, so the agent
//!   never writes it: an exited session that is still a root's newest is kept until the
//!   next fork (or the root's exit) makes it unreachable. At most one per root.
use std::collections::{HashMap, HashSet};

/// What reaping needs to know of one `SESSIONS` entry and its `SESSION_PREV` link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Link {
    pub parent_tgid: u32,
    pub prev_child: u32,
    pub exited: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReapAction {
    Delete(u32),
    SetPrev { session: u32, prev: u32 },
}

/// `sessions`: snapshot of `SESSIONS` with their links; `newest`: `newest_child` of each
/// live root; `done`: sessions whose end the agent has already recorded.
pub fn plan(
    sessions: &[(u32, Link)],
    newest: &HashMap<u32, u32>,
    done: &HashSet<u32>,
) -> Vec<ReapAction> {
    let by_pid: HashMap<u32, &Link> = sessions.iter().map(|(k, v)| (*k, v)).collect();
    let reapable = |pid: u32, s: &Link| {
        s.exited != 0 && done.contains(&pid) && newest.get(&s.parent_tgid) != Some(&pid)
    };
    let gone: HashSet<u32> = sessions
        .iter()
        .filter(|(k, s)| reapable(*k, s))
        .map(|(k, _)| *k)
        .collect();
    let mut out = Vec::new();
    for (pid, s) in sessions {
        if gone.contains(pid) || !gone.contains(&s.prev_child) {
            continue;
        }
        // Skip over every reaped session to the first one that stays.
        let mut prev = s.prev_child;
        let mut hops = 0;
        while gone.contains(&prev) && hops < 64 {
            prev = by_pid.get(&prev).map_or(0, |p| p.prev_child);
            hops += 1;
        }
        out.push(ReapAction::SetPrev {
            session: *pid,
            prev,
        });
    }
    let mut dels: Vec<u32> = gone.into_iter().collect();
    dels.sort_unstable();
    out.extend(dels.into_iter().map(ReapAction::Delete));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(parent: u32, prev: u32, exited: u32) -> Link {
        Link {
            parent_tgid: parent,
            prev_child: prev,
            exited,
        }
    }

    #[test]
    fn reaps_exited_and_relinks_chain() {
        // root 1: 10 <- 11 <- 12 (newest). 11 exited and recorded; 10 alive.
        let sessions = vec![(10, st(1, 0, 0)), (11, st(1, 10, 1)), (12, st(1, 11, 0))];
        let newest = HashMap::from([(1, 12)]);
        let done = HashSet::from([11]);
        assert_eq!(
            plan(&sessions, &newest, &done),
            vec![
                ReapAction::SetPrev {
                    session: 12,
                    prev: 10
                },
                ReapAction::Delete(11)
            ]
        );
    }

    #[test]
    fn keeps_newest_and_unrecorded() {
        let sessions = vec![(10, st(1, 0, 1)), (11, st(1, 10, 1))];
        let newest = HashMap::from([(1, 11)]);
        // 11 is the root's newest: kept. 10 not yet recorded: kept.
        assert_eq!(plan(&sessions, &newest, &HashSet::from([11])), vec![]);
        // Once 10 is recorded it goes, and 11 is relinked past it.
        assert_eq!(
            plan(&sessions, &newest, &HashSet::from([10, 11])),
            vec![
                ReapAction::SetPrev {
                    session: 11,
                    prev: 0
                },
                ReapAction::Delete(10)
            ]
        );
    }

    #[test]
    fn root_gone_means_everything_exited_goes() {
        let sessions = vec![(10, st(1, 0, 1)), (11, st(1, 10, 1)), (12, st(1, 11, 1))];
        let plan = plan(&sessions, &HashMap::new(), &HashSet::from([10, 11, 12]));
        assert_eq!(
            plan,
            vec![
                ReapAction::Delete(10),
                ReapAction::Delete(11),
                ReapAction::Delete(12)
            ]
        );
    }

    #[test]
    fn relinks_over_several_reaped() {
        let sessions = vec![
            (10, st(1, 0, 0)),
            (11, st(1, 10, 1)),
            (12, st(1, 11, 1)),
            (13, st(1, 12, 0)),
        ];
        let newest = HashMap::from([(1, 13)]);
        let p = plan(&sessions, &newest, &HashSet::from([11, 12]));
        assert_eq!(
            p,
            vec![
                ReapAction::SetPrev {
                    session: 13,
                    prev: 10
                },
                ReapAction::Delete(11),
                ReapAction::Delete(12)
            ]
        );
    }
}
