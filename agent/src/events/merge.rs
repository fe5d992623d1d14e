//! Putting the two rings' events in one time order.
//!
//! The session ring (forks, exits, titles, renames) and the detail ring (COW copies,
//! writes, syncs, block requests) are drained separately. A child's writes on the detail
//! ring come after its fork and before its exit on the session ring, and its session must
//! exist (and not yet be closed) when they are counted: so each session event is handled
//! after every detail event that is not later than it.

/// `session` and `detail` events, each list already in time order (a ring is FIFO per
/// CPU and the kernel stamps events as it writes them), merged: at equal times the
/// detail event comes first.
pub fn by_time<S, D>(
    session: Vec<S>,
    detail: Vec<D>,
    session_ts: impl Fn(&S) -> u64,
    detail_ts: impl Fn(&D) -> u64,
) -> Vec<Either<S, D>> {
    let mut out = Vec::with_capacity(session.len() + detail.len());
    let mut detail = detail.into_iter().peekable();
    for s in session {
        let t = session_ts(&s);
        while let Some(d) = detail.next_if(|d| detail_ts(d) <= t) {
            out.push(Either::Detail(d));
        }
        out.push(Either::Session(s));
    }
    out.extend(detail.map(Either::Detail));
    out
}

/// One event of either ring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<S, D> {
    Session(S),
    Detail(D),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(s: &[u64], d: &[u64]) -> Vec<String> {
        by_time(s.to_vec(), d.to_vec(), |&t| t, |&t| t)
            .into_iter()
            .map(|e| match e {
                Either::Session(t) => format!("s{t}"),
                Either::Detail(t) => format!("d{t}"),
            })
            .collect()
    }

    #[test]
    fn detail_events_up_to_a_session_event_come_first() {
        // fork at 10, writes at 5, 10, 12, exit at 20, a late write at 30.
        assert_eq!(
            merged(&[10, 20], &[5, 10, 12, 30]),
            ["d5", "d10", "s10", "d12", "s20", "d30"]
        );
    }

    #[test]
    fn a_fork_read_again_after_the_detail_ring_comes_before_its_events() {
        // The drain reads the session ring (an exit at 5), the detail ring (copies at 10
        // and 20, the second by a child forked at 15), then the session ring again (the
        // fork at 15): the fork is handled before the copy of its session.
        let (first_read, second_read) = ([5], [15]);
        let session = [first_read, second_read].concat();
        assert_eq!(merged(&session, &[10, 20]), ["s5", "d10", "s15", "d20"]);
    }

    #[test]
    fn either_side_may_be_empty() {
        assert_eq!(merged(&[], &[1, 2]), ["d1", "d2"]);
        assert_eq!(merged(&[1, 2], &[]), ["s1", "s2"]);
        assert!(merged(&[], &[]).is_empty());
    }
}
