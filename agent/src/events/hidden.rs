//! Processes the agent traces for itself, and their sessions: the traced calibration
//! helper (`runner::calibrate`), a root whose forks open real kernel sessions so that its
//! copies cost what a traced server's do. Their events are consumed without a record,
//! a live-view row or a metric; their kernel entries are reaped like any session's.
//! Pure: the agent feeds it events and map snapshots.
use std::collections::HashSet;

/// The hidden roots and their session children. Pids are reused quickly (a fork storm
/// goes through them in seconds), so an event is matched by its root where it names
/// one, a root stops matching its own pid at its exit, and a child at its exit.
#[derive(Debug, Default)]
pub struct Hidden {
    /// Helpers still running.
    roots: HashSet<u32>,
    /// Helpers that exited, until no session entry names them.
    exited: HashSet<u32>,
    /// Their session children still running.
    children: HashSet<u32>,
}

impl Hidden {
    /// Hide `root` (already in the kernel's traced set) and every session it opens.
    pub fn add_root(&mut self, root: u32) {
        self.roots.insert(root);
    }

    pub fn is_empty(&self) -> bool {
        self.roots.is_empty() && self.exited.is_empty() && self.children.is_empty()
    }

    /// Whether a kernel session entry (`child`, root `parent`) is a helper's.
    pub fn owns_session(&self, _child: u32, parent: u32) -> bool {
        self.roots.contains(&parent) || self.exited.contains(&parent)
    }

    /// Whether a session-ring event of process `pid` (its session's root `ppid`, 0 for
    /// none; `exit`: its exit event) is hidden. A hidden root's fork makes its child
    /// hidden too, until the child's exit.
    pub fn proc_event(&mut self, pid: u32, ppid: u32, exit: bool) -> bool {
        if self.roots.contains(&ppid) || self.exited.contains(&ppid) {
            if exit {
                self.children.remove(&pid);
            } else {
                self.children.insert(pid);
            }
            return true;
        }
        if ppid == 0 && self.roots.contains(&pid) {
            if exit {
                self.roots.remove(&pid);
                self.exited.insert(pid);
            }
            return true;
        }
        false
    }

    /// Whether a detail-ring event of process `pid`, charged to session `session` (0 for
    /// none), is hidden.
    pub fn detail_event(&self, pid: u32, session: u32) -> bool {
        self.roots.contains(&pid)
            || self.children.contains(&pid)
            || self.children.contains(&session)
    }

    /// One map snapshot: `sessions` are the kernel's (child, root, exited) entries,
    /// `traced_roots` the hidden roots still in the traced set. Returns the exited hidden
    /// sessions (to be marked done, so that reaping deletes them). A root leaves the set
    /// once it is out of the traced set (it exited: the exit hook removed it) and no
    /// session entry names it; a child once its entry is gone. So a reused pid is never
    /// hidden for longer than it takes to reap its predecessor.
    pub fn settle(&mut self, sessions: &[(u32, u32, bool)], traced_roots: &[u32]) -> Vec<u32> {
        let mut done = Vec::new();
        let mut named: HashSet<u32> = HashSet::new();
        let mut running: HashSet<u32> = HashSet::new();
        for &(child, root, exited) in sessions {
            if !self.owns_session(child, root) {
                continue;
            }
            named.insert(root);
            if exited {
                done.push(child);
            } else {
                running.insert(child);
            }
        }
        // A root out of the traced set has exited (its exit event may have been lost).
        let gone: Vec<u32> = self
            .roots
            .iter()
            .copied()
            .filter(|r| !traced_roots.contains(r))
            .collect();
        for r in gone {
            self.roots.remove(&r);
            self.exited.insert(r);
        }
        self.exited.retain(|r| named.contains(r));
        self.children.retain(|c| running.contains(c));
        done.sort_unstable();
        done
    }

    /// The hidden roots now (to look them up in the traced set).
    pub fn roots(&self) -> Vec<u32> {
        self.roots.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_roots_forks_and_their_events_are_hidden_and_no_one_elses() {
        let mut h = Hidden::default();
        assert!(h.is_empty());
        h.add_root(50);
        // Its fork (pid 51, root 50) and its child's title.
        assert!(h.proc_event(51, 50, false));
        assert!(h.proc_event(51, 50, false));
        // A server's fork and exit are not.
        assert!(!h.proc_event(61, 60, false));
        assert!(!h.proc_event(60, 0, true));
        // Detail events: the root's copies (pid 50, session 51), the child's own.
        assert!(h.detail_event(50, 51));
        assert!(h.detail_event(51, 51));
        assert!(h.detail_event(7, 51));
        assert!(!h.detail_event(60, 61));
        assert!(h.owns_session(51, 50) && h.owns_session(52, 50) && !h.owns_session(61, 60));
        // The child's exit, then its pid reused by a server's fork: that one is shown.
        assert!(h.proc_event(51, 50, true));
        assert!(!h.detail_event(51, 51));
        assert!(!h.proc_event(51, 60, false));
        // The root's exit; its pid reused by a server's child: shown.
        assert!(h.proc_event(50, 0, true));
        assert!(!h.proc_event(50, 60, false));
        assert!(!h.detail_event(50, 50));
        // Its sessions' entries are still its own until reaped.
        assert!(h.owns_session(52, 50));
    }

    #[test]
    fn settle_marks_exited_sessions_done_and_forgets_the_root_once_all_is_gone() {
        let mut h = Hidden::default();
        h.add_root(50);
        // Two rounds exited, the third running; a server's session is left alone. A
        // fork event lost: child 53 is learnt from the map.
        let map = [
            (51, 50, true),
            (52, 50, true),
            (53, 50, false),
            (61, 60, true),
        ];
        assert_eq!(h.settle(&map, &[50]), vec![51, 52]);
        // The root exited (gone from the traced set) but its newest entry is still
        // there: it stays hidden until the entry is reaped.
        assert_eq!(h.settle(&[(53, 50, true)], &[]), vec![53]);
        assert!(!h.is_empty());
        assert_eq!(h.settle(&[(61, 60, true)], &[]), Vec::<u32>::new());
        assert!(h.is_empty());
        // Its pid reused by a server later: not hidden.
        assert!(!h.proc_event(70, 50, false));
        assert!(!h.proc_event(50, 0, false));
    }

    #[test]
    fn a_root_still_traced_stays_hidden_before_its_first_fork() {
        let mut h = Hidden::default();
        h.add_root(50);
        assert!(h.settle(&[], &[50]).is_empty());
        assert!(h.proc_event(51, 50, false));
    }
}
