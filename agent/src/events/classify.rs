//! Session classification from the fork child's process title.
//!
//! Redis keeps `comm` as `redis-server` in its fork children but rewrites the argv area
//! with setproctitle right after `fork()` (`redisSetProcTitle` in server.c): for example
//! `redis-rdb-bgsave *:6379`. The title is therefore only meaningful once it differs from
//! the parent's command line. The agent reads `/proc/<child>/cmdline` when the fork event
//! arrives and on every tick after until it changes; the kernel also captures the title
//! at the child's `exit_group` (for children that exit before the agent looks). A child
//! whose title never changes within [`TITLE_GRACE_NS`] is a plain `fork`.

use crate::trace::schema::SessionKind;

/// How long after the fork a child may keep its parent's title before it counts as a
/// plain fork. Redis sets the title within microseconds of `fork()` returning.
pub const TITLE_GRACE_NS: u64 = 250_000_000;

/// Classify a child's title (the argv area, NULs allowed). Valkey uses the same
/// suffixes with its own prefix, so only the part after the first `-` is matched.
pub fn classify_title(title: &[u8]) -> SessionKind {
    let first = title.split(|&b| b == 0 || b == b' ').next().unwrap_or(&[]);
    let Ok(first) = std::str::from_utf8(first) else {
        return SessionKind::Fork;
    };
    let Some((_prefix, role)) = first.split_once('-') else {
        return SessionKind::Fork;
    };
    match role {
        "rdb-bgsave" => SessionKind::RdbBgsave,
        "aof-rewrite" => SessionKind::AofRewrite,
        "rdb-to-slaves" | "rdb-to-replicas" => SessionKind::RdbReplica,
        "module-fork" => SessionKind::ModuleFork,
        _ => SessionKind::Fork,
    }
}

/// True when the child has set a title of its own (it differs from the parent's).
pub fn title_is_set(child: &[u8], parent: &[u8]) -> bool {
    !child.is_empty() && trim_nul(child) != trim_nul(parent)
}

fn trim_nul(b: &[u8]) -> &[u8] {
    let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
    &b[..end]
}

/// Printable form of an argv area: NULs become spaces, trailing ones dropped.
pub fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(trim_nul(b)).replace('\0', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_titles() {
        assert_eq!(
            classify_title(b"redis-rdb-bgsave *:6379"),
            SessionKind::RdbBgsave
        );
        assert_eq!(
            classify_title(b"redis-aof-rewrite 127.0.0.1:7000\0"),
            SessionKind::AofRewrite
        );
        assert_eq!(
            classify_title(b"redis-rdb-to-slaves *:6379"),
            SessionKind::RdbReplica
        );
        assert_eq!(
            classify_title(b"valkey-rdb-bgsave *:6379"),
            SessionKind::RdbBgsave
        );
        assert_eq!(
            classify_title(b"valkey-rdb-to-replicas"),
            SessionKind::RdbReplica
        );
        assert_eq!(
            classify_title(b"valkey-module-fork"),
            SessionKind::ModuleFork
        );
        assert_eq!(
            classify_title(b"redis-module-fork\0"),
            SessionKind::ModuleFork
        );
    }

    #[test]
    fn anything_else_is_a_fork() {
        assert_eq!(classify_title(b"redis-server *:6379"), SessionKind::Fork);
        assert_eq!(
            classify_title(b"/usr/bin/redis-server\0--port\x000\0"),
            SessionKind::Fork
        );
        assert_eq!(classify_title(b""), SessionKind::Fork);
        assert_eq!(classify_title(b"\xff\xfe-rdb-bgsave"), SessionKind::Fork);
        assert_eq!(classify_title(b"rdb-bgsave"), SessionKind::Fork);
        assert_eq!(classify_title(b"cowload"), SessionKind::Fork);
    }

    #[test]
    fn title_set_only_when_it_differs() {
        assert!(!title_is_set(
            b"redis-server *:6379\0",
            b"redis-server *:6379"
        ));
        assert!(title_is_set(
            b"redis-rdb-bgsave *:6379",
            b"redis-server *:6379"
        ));
        assert!(!title_is_set(b"", b"redis-server"));
    }

    #[test]
    fn printable_argv() {
        assert_eq!(printable(b"a\0b\0\0"), "a b");
        assert_eq!(SessionKind::AofRewrite.to_string(), "aof-rewrite");
    }
}
