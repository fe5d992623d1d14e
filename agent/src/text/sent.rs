//! What a session sent to replicas, in words: `sent 19.6 MiB to 1 replica` for a
//! diskless sync (the child's pipe and socket writes), `RDB for 2 replicas (disk)` for a
//! disk-based one (the child writes the file, the server sends it).
use crate::{
    text::units::fmt_bytes,
    trace::schema::{SessionEnd, SessionKind},
};

/// Below this, what a child that is not a replica sync wrote to pipes is Redis's own
/// child-info messages to its server (a few dozen bytes per save): not worth a word.
const QUIET_BYTES: u64 = 64 * 1024;

fn replicas(n: u64) -> String {
    format!("{n} replica{}", if n == 1 { "" } else { "s" })
}

/// The words for a session's replicas and sent bytes, or None when there is nothing to
/// say (a save that sent only its child-info messages).
pub fn sent_text(e: &SessionEnd) -> Option<String> {
    let rep = e.replication.as_ref();
    let sent = e.sent.as_ref();
    if rep.is_some_and(|r| r.target == "disk") {
        let n = rep.and_then(|r| r.replicas);
        return Some(match n {
            Some(n) => format!("RDB for {} (disk)", replicas(n)),
            None => "RDB for a replica (disk)".into(),
        });
    }
    let bytes = sent.map_or(0, |s| s.bytes);
    if e.kind != SessionKind::RdbReplica && bytes < QUIET_BYTES {
        return None;
    }
    let to = match sent.and_then(|s| s.peers).or(rep.and_then(|r| r.replicas)) {
        Some(n) => format!(" to {}", replicas(n)),
        None if e.kind == SessionKind::RdbReplica => " to replicas".into(),
        None => String::new(),
    };
    Some(format!("sent {}{to}", fmt_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::schema::{Replication, SentSummary};

    fn end(kind: SessionKind, target: Option<&str>, n: Option<u64>, sent: u64) -> SessionEnd {
        SessionEnd {
            kind,
            replication: target.map(|t| Replication {
                target: t.into(),
                replicas: n,
            }),
            sent: (sent > 0).then(|| SentSummary {
                calls: 1,
                bytes: sent,
                peers: n.filter(|_| target == Some("socket")),
                targets: Vec::new(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn words() {
        let mib = 1 << 20;
        assert_eq!(
            sent_text(&end(
                SessionKind::RdbReplica,
                Some("socket"),
                Some(1),
                20 * mib
            ))
            .as_deref(),
            Some("sent 20.0 MiB to 1 replica")
        );
        assert_eq!(
            sent_text(&end(SessionKind::RdbReplica, Some("socket"), None, mib)).as_deref(),
            Some("sent 1.0 MiB to replicas")
        );
        assert_eq!(
            sent_text(&end(SessionKind::RdbReplica, Some("disk"), Some(2), 80)).as_deref(),
            Some("RDB for 2 replicas (disk)")
        );
        assert_eq!(
            sent_text(&end(SessionKind::RdbBgsave, None, None, 80)),
            None
        );
        assert_eq!(
            sent_text(&end(SessionKind::Fork, None, None, 2 * mib)).as_deref(),
            Some("sent 2.0 MiB")
        );
    }
}
