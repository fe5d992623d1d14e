//! Naming the files a session wrote.
//!
//! The kernel keeps each file's dentry name (no directory) at its first write. The
//! agent completes it, in this order of trust: the path of the open fd (read from
//! /proc while the writer still has it open); the path given to `rename()` whose last
//! component matches; the name under the writer's working directory. A later rename of
//! that path gives `renamed_to` (Redis writes `temp-<pid>.rdb`, then renames it to
//! `dump.rdb`), followed through every later rename of the new name (an AOF rewrite's
//! child renames its file, then the server renames it again into `appendonlydir/`).
use std::path::{Component, Path, PathBuf};

/// `p` made absolute against `cwd`, with `.` and `..` folded (no symlink lookups).
pub fn absolute(p: &str, cwd: Option<&str>) -> String {
    let path = Path::new(p);
    let joined: PathBuf = match (path.is_absolute(), cwd) {
        (true, _) | (false, None) => path.to_path_buf(),
        (false, Some(c)) => Path::new(c).join(path),
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out.to_string_lossy().into_owned()
}

fn base(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// Full path and rename target of a file the kernel knows as `name`.
pub fn resolve(
    name: &str,
    fd_path: Option<&str>,
    renames: &[(String, String)],
    cwd: Option<&str>,
) -> (String, Option<String>) {
    let path = match fd_path {
        Some(p) => p.to_string(),
        None => match renames.iter().find(|(old, _)| base(old) == name) {
            Some((old, _)) => absolute(old, cwd),
            None => absolute(name, cwd),
        },
    };
    let mut renamed_to = renames
        .iter()
        .find(|(old, _)| absolute(old, cwd) == path || (fd_path.is_none() && base(old) == name))
        .map(|(_, new)| absolute(new, cwd));
    // Each rename at most once, so a cycle of renames ends.
    for _ in 0..renames.len() {
        let Some(cur) = renamed_to.as_deref() else {
            break;
        };
        match renames.iter().find(|(old, _)| absolute(old, cwd) == cur) {
            Some((_, new)) if absolute(new, cwd) != cur => renamed_to = Some(absolute(new, cwd)),
            _ => break,
        }
    }
    (path, renamed_to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_temp_file_renamed_in_its_dir() {
        let renames = vec![("temp-123.rdb".to_string(), "dump.rdb".to_string())];
        let (p, r) = resolve("temp-123.rdb", None, &renames, Some("/var/lib/redis"));
        assert_eq!(p, "/var/lib/redis/temp-123.rdb");
        assert_eq!(r.as_deref(), Some("/var/lib/redis/dump.rdb"));
    }

    #[test]
    fn renames_are_followed_to_the_last_name() {
        let renames = vec![
            (
                "temp-rewriteaof-9.aof".to_string(),
                "temp-rewriteaof-bg-9.aof".to_string(),
            ),
            (
                "temp-rewriteaof-bg-9.aof".to_string(),
                "appendonlydir/appendonly.aof.2.base.rdb".to_string(),
            ),
            ("a".to_string(), "b".to_string()),
            ("b".to_string(), "a".to_string()),
        ];
        let (p, r) = resolve("temp-rewriteaof-9.aof", None, &renames, Some("/d"));
        assert_eq!(p, "/d/temp-rewriteaof-9.aof");
        assert_eq!(
            r.as_deref(),
            Some("/d/appendonlydir/appendonly.aof.2.base.rdb")
        );
        // A cycle ends.
        let (_, r) = resolve("a", None, &renames, Some("/d"));
        assert!(r.is_some());
    }

    #[test]
    fn fd_path_wins_and_rename_matches_it() {
        let renames = vec![("/d/../d/t.dat".to_string(), "/d/f.dat".to_string())];
        let (p, r) = resolve("t.dat", Some("/d/t.dat"), &renames, Some("/"));
        assert_eq!((p.as_str(), r.as_deref()), ("/d/t.dat", Some("/d/f.dat")));
    }

    #[test]
    fn unrenamed_file_under_cwd() {
        let (p, r) = resolve("appendonly.aof.1.base.rdb", None, &[], Some("/data"));
        assert_eq!((p.as_str(), r), ("/data/appendonly.aof.1.base.rdb", None));
        let (p, _) = resolve("x", None, &[], None);
        assert_eq!(p, "x");
    }

    #[test]
    fn absolute_folds_dots() {
        assert_eq!(absolute("./a/../b", Some("/r")), "/r/b");
        assert_eq!(absolute("/x/./y", None), "/x/y");
    }
}
