//! COW by cause and by memory region (issue 15): which probes to attach to a server, the
//! names of the kernel's cause ids, the region table of a server's memory map at fork,
//! and the split of a session's parent copies that `session_end` carries. Pure: the
//! kernel side is `agent-ebpf/src/attrib.rs`, the attaching `kernel/causes.rs`.
use std::collections::BTreeMap;

use agent_common::{
    CAUSE_COMMAND, CAUSE_CRON, CAUSE_DEFRAG, CAUSE_EVICT, CAUSE_EXPIRE, CAUSE_LOOP, CAUSE_REHASH,
    CAUSE_THREAD, REGION_ROWS, REGION_UNKNOWN, REGION_UNMAPPED,
};

use crate::trace::ledger::{CauseShare, Causes, RegionShare, Regions};

/// The write commands whose function gets an entry uprobe while a save runs: bounded,
/// the usual writers of Redis 7 and Valkey 8 (a command missing from a binary is
/// skipped). A read command does not copy during a save (Redis stops updating a key's
/// LRU clock while a child runs), so its copies, if any, go to the cause before it.
pub const COMMANDS: [&str; 62] = [
    "set",
    "setex",
    "psetex",
    "setnx",
    "mset",
    "msetnx",
    "getset",
    "getdel",
    "getex",
    "append",
    "setrange",
    "incr",
    "decr",
    "incrby",
    "decrby",
    "incrbyfloat",
    "del",
    "unlink",
    "expire",
    "pexpire",
    "expireat",
    "pexpireat",
    "persist",
    "hset",
    "hsetnx",
    "hmset",
    "hincrby",
    "hincrbyfloat",
    "hdel",
    "lpush",
    "rpush",
    "lpop",
    "rpop",
    "lset",
    "lrem",
    "ltrim",
    "linsert",
    "lmove",
    "rpoplpush",
    "sadd",
    "srem",
    "spop",
    "smove",
    "zadd",
    "zincrby",
    "zrem",
    "zremrangebyscore",
    "zremrangebyrank",
    "zpopmin",
    "zpopmax",
    "xadd",
    "xdel",
    "xtrim",
    "pfadd",
    "setbit",
    "bitfield",
    "eval",
    "evalSha",
    "fcall",
    "rename",
    "restore",
    "flushall",
];

/// Background functions: (symbol, cause id). Each gets an entry uprobe and a uretprobe
/// (they run a few times a second, so the second trap is cheap).
pub const BACKGROUND: [(&str, u32); 5] = [
    ("serverCron", CAUSE_CRON),
    ("activeExpireCycle", CAUSE_EXPIRE),
    ("performEvictions", CAUSE_EVICT),
    ("activeDefragCycle", CAUSE_DEFRAG),
    ("incrementallyRehash", CAUSE_REHASH),
];

/// The event loop's turn: an entry uprobe that resets the thread's cause.
pub const LOOP: &str = "beforeSleep";

/// The function symbol of a command (`setCommand`).
pub fn command_symbol(cmd: &str) -> String {
    format!("{cmd}Command")
}

/// What a cause id means, given the names of the server's threads (tid to name).
pub fn cause_name(id: u32, threads: &BTreeMap<u32, String>) -> (String, &'static str) {
    if id & CAUSE_THREAD != 0 {
        let tid = id & !CAUSE_THREAD;
        let name = threads
            .get(&tid)
            .cloned()
            .unwrap_or_else(|| format!("tid {tid}"));
        return (format!("thread {name}"), "thread");
    }
    if id >= CAUSE_COMMAND
        && let Some(c) = COMMANDS.get((id - CAUSE_COMMAND) as usize)
    {
        return (c.to_ascii_uppercase(), "command");
    }
    let name = match id {
        CAUSE_LOOP => "event loop",
        CAUSE_CRON => "cron",
        CAUSE_EXPIRE => "expiry",
        CAUSE_EVICT => "eviction",
        CAUSE_DEFRAG => "defrag",
        CAUSE_REHASH => "rehash",
        _ => return ("other".into(), "other"),
    };
    (name.into(), "background")
}

/// The split of `total` parent copies over the counted causes: named causes sorted by
/// copies, then `other` (what no probe named, and what the counters missed), always
/// present so the split adds up to `total`.
pub fn split_causes(
    counted: &[(u32, u64)],
    threads: &BTreeMap<u32, String>,
    total: u64,
    note: Option<String>,
) -> Causes {
    let mut by_name: BTreeMap<String, (&'static str, u64)> = BTreeMap::new();
    for &(id, n) in counted {
        let (name, kind) = cause_name(id, threads);
        by_name.entry(name).or_insert((kind, 0)).1 += n;
    }
    let other_counted = by_name.remove("other").map_or(0, |(_, n)| n);
    let mut rows: Vec<(String, &'static str, u64)> = by_name
        .into_iter()
        .map(|(name, (kind, n))| (name, kind, n))
        .filter(|r| r.2 > 0)
        .collect();
    rows.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let named: u64 = rows.iter().map(|r| r.2).sum();
    // Counters read a little after the session's own (or a failed insert): never let
    // the named causes exceed the total.
    let total = total.max(named);
    let other = total - named;
    let _ = other_counted;
    rows.push(("other".into(), "other", other));
    let share = |n: u64| {
        if total == 0 {
            0.0
        } else {
            n as f64 * 100.0 / total as f64
        }
    };
    Causes {
        copies: total,
        by_cause: rows
            .into_iter()
            .map(|(cause, kind, copies)| CauseShare {
                cause,
                kind: kind.into(),
                copies,
                share_pct: share(copies),
            })
            .collect(),
        note,
    }
}

/// One writable mapping of the server at fork.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    /// `heap`, `stack`, `anonymous`, `binary data`, `file` or `other`.
    pub kind: &'static str,
    pub path: Option<String>,
    /// Whether THP may back it: `Some(true)` for a big enough anonymous range with THP
    /// `always`, `Some(false)` for file data or THP `never`, `None` with `madvise`
    /// (whether the server madvised it is only in smaps, which cowtrace does not read).
    pub thp_eligible: Option<bool>,
}

/// The writable mappings of `/proc/PID/maps` (`text`), sorted, at most `REGION_ROWS`
/// (neighbours of one kind merged when there are more). `exe` is the server's binary;
/// `thp` the host's THP mode (`always`, `madvise`, `never`).
pub fn region_table(text: &str, exe: &str, thp: &str) -> Vec<Region> {
    let mut rows: Vec<Region> = text
        .lines()
        .filter_map(|l| parse_line(l, exe, thp))
        .collect();
    rows.sort_by_key(|r| r.start);
    while rows.len() > REGION_ROWS {
        // Merge the smallest neighbouring pair of one kind, else the smallest pair.
        let i = (0..rows.len() - 1)
            .min_by_key(|&i| {
                let same = rows[i].kind == rows[i + 1].kind;
                (!same, rows[i + 1].end - rows[i].start)
            })
            .unwrap_or(0);
        let next = rows.remove(i + 1);
        rows[i].end = next.end;
        if rows[i].kind != next.kind {
            rows[i].kind = "other";
            rows[i].path = None;
        }
    }
    rows
}

fn parse_line(line: &str, exe: &str, thp: &str) -> Option<Region> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let perms = f.next()?;
    let (_off, _dev, _ino) = (f.next()?, f.next()?, f.next()?);
    let path: String = f.collect::<Vec<_>>().join(" ");
    if perms.as_bytes().get(1) != Some(&b'w') {
        return None;
    }
    let (a, b) = range.split_once('-')?;
    let start = u64::from_str_radix(a, 16).ok()?;
    let end = u64::from_str_radix(b, 16).ok()?;
    if end <= start {
        return None;
    }
    let kind = match path.as_str() {
        "" => "anonymous",
        "[heap]" => "heap",
        p if p.starts_with("[stack") => "stack",
        p if p.starts_with('[') => "other",
        p if p == exe => "binary data",
        _ => "file",
    };
    let anon = matches!(kind, "anonymous" | "heap");
    // A huge page needs a 2 MiB-aligned 2 MiB range inside the mapping.
    const HUGE: u64 = 2 << 20;
    let fits = start.div_ceil(HUGE) * HUGE + HUGE <= end;
    let thp_eligible = if !anon || !fits {
        Some(false)
    } else {
        match thp {
            "always" => Some(true),
            "never" => Some(false),
            _ => None,
        }
    };
    Some(Region {
        start,
        end,
        kind,
        path: (!path.is_empty()).then_some(path),
        thp_eligible,
    })
}

/// The kernel's table for `rows`: starts and ends, sorted.
pub fn kernel_table(rows: &[Region]) -> agent_common::RegionTable {
    let mut t = agent_common::RegionTable {
        n: 0,
        _pad: 0,
        start: [0; REGION_ROWS],
        end: [0; REGION_ROWS],
    };
    for (i, r) in rows.iter().take(REGION_ROWS).enumerate() {
        t.start[i] = r.start;
        t.end[i] = r.end;
        t.n = i as u32 + 1;
    }
    t
}

/// The split of a session's parent copies by region: one row per mapping that was
/// copied from (largest first), then the copies made before the table was written and
/// those outside any writable mapping of the fork.
pub fn split_regions(rows: &[Region], counted: &[(u32, u64)], total: u64) -> Regions {
    let mut out: Vec<RegionShare> = Vec::new();
    let mut unknown = 0;
    for &(id, n) in counted {
        match id {
            REGION_UNKNOWN => unknown += n,
            REGION_UNMAPPED => out.push(row("unmapped", None, 0, 0, None, n)),
            i => match rows.get(i as usize) {
                Some(r) => out.push(row(
                    r.kind,
                    r.path.clone(),
                    r.start,
                    r.end,
                    r.thp_eligible,
                    n,
                )),
                None => out.push(row("unmapped", None, 0, 0, None, n)),
            },
        }
    }
    let counted_sum: u64 = counted.iter().map(|c| c.1).sum();
    let total = total.max(counted_sum);
    // What the counters missed (a full map) is unknown too, so the rows add up.
    unknown += total - counted_sum;
    out.sort_by(|a, b| b.copies.cmp(&a.copies).then(a.start.cmp(&b.start)));
    if unknown > 0 {
        out.push(row(
            "unknown (before the map was read)",
            None,
            0,
            0,
            None,
            unknown,
        ));
    }
    for r in &mut out {
        r.share_pct = if total == 0 {
            0.0
        } else {
            r.copies as f64 * 100.0 / total as f64
        };
    }
    Regions {
        copies: total,
        rows: out,
    }
}

fn row(
    kind: &str,
    path: Option<String>,
    start: u64,
    end: u64,
    thp_eligible: Option<bool>,
    copies: u64,
) -> RegionShare {
    RegionShare {
        kind: kind.into(),
        path,
        start,
        end,
        thp_eligible,
        copies,
        share_pct: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::CAUSE_NONE;

    const MAPS: &str = "\
55d0c0000000-55d0c0100000 r-xp 00000000 08:01 1234 /usr/bin/redis-server
55d0c0200000-55d0c0210000 rw-p 00200000 08:01 1234 /usr/bin/redis-server
55d0c1000000-55d0c1400000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000800000 rw-p 00000000 00:00 0 
7f1000000000-7f1000001000 rw-p 00001000 08:01 99 /usr/lib/libc.so.6
7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn table_keeps_writable_rows_by_kind() {
        let t = region_table(MAPS, "/usr/bin/redis-server", "always");
        let kinds: Vec<_> = t.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["binary data", "heap", "anonymous", "file", "stack"]);
        assert_eq!(t[1].thp_eligible, Some(true)); // 4 MiB heap holds an aligned 2 MiB
        assert_eq!(t[0].thp_eligible, Some(false));
        let m = region_table(MAPS, "/usr/bin/redis-server", "madvise");
        assert_eq!(m[2].thp_eligible, None);
        let k = kernel_table(&t);
        assert_eq!(k.n, 5);
        assert_eq!((k.start[1], k.end[1]), (0x55d0c1000000, 0x55d0c1400000));
    }

    #[test]
    fn table_is_bounded() {
        let text: String = (0..200u64)
            .map(|i| {
                format!(
                    "{:x}-{:x} rw-p 0 00:00 0 \n",
                    0x1000_0000 + i * 0x2000,
                    0x1000_1000 + i * 0x2000
                )
            })
            .collect();
        let t = region_table(&text, "/x", "never");
        assert_eq!(t.len(), REGION_ROWS);
        assert!(t.windows(2).all(|w| w[0].end <= w[1].start));
        assert_eq!(t[0].start, 0x1000_0000);
        assert_eq!(t.last().unwrap().end, 0x1000_1000 + 199 * 0x2000);
    }

    #[test]
    fn causes_add_up_with_other() {
        let mut threads = BTreeMap::new();
        threads.insert(42, "bio_lazy_free".to_string());
        let set = CAUSE_COMMAND; // COMMANDS[0] = set
        let c = split_causes(
            &[
                (set, 90),
                (CAUSE_EXPIRE, 5),
                (CAUSE_THREAD | 42, 2),
                (CAUSE_NONE, 1),
            ],
            &threads,
            100,
            None,
        );
        let names: Vec<_> = c
            .by_cause
            .iter()
            .map(|r| (r.cause.as_str(), r.copies))
            .collect();
        assert_eq!(
            names,
            [
                ("SET", 90),
                ("expiry", 5),
                ("thread bio_lazy_free", 2),
                ("other", 3)
            ]
        );
        assert_eq!(c.by_cause.iter().map(|r| r.copies).sum::<u64>(), 100);
        assert!((c.by_cause[0].share_pct - 90.0).abs() < 1e-9);
        // Nothing counted: all other, still present.
        let e = split_causes(&[], &threads, 7, Some("no symbols".into()));
        assert_eq!(e.by_cause.len(), 1);
        assert_eq!(e.by_cause[0].copies, 7);
        // The counters may run ahead of the session's total: never a negative other.
        let a = split_causes(&[(set, 12)], &threads, 10, None);
        assert_eq!(a.copies, 12);
        assert_eq!(a.by_cause[1].copies, 0);
    }

    #[test]
    fn command_names() {
        let t = BTreeMap::new();
        let evalsha = COMMANDS.iter().position(|c| *c == "evalSha").unwrap() as u32;
        assert_eq!(cause_name(CAUSE_COMMAND + evalsha, &t).0, "EVALSHA");
        assert_eq!(cause_name(CAUSE_THREAD | 7, &t).0, "thread tid 7");
        assert_eq!(command_symbol("hset"), "hsetCommand");
    }

    #[test]
    fn regions_add_up() {
        let t = region_table(MAPS, "/usr/bin/redis-server", "always");
        let r = split_regions(
            &t,
            &[(1, 60), (2, 30), (REGION_UNKNOWN, 4), (REGION_UNMAPPED, 1)],
            100,
        );
        assert_eq!(r.rows[0].kind, "heap");
        assert_eq!(r.rows[1].kind, "anonymous");
        assert_eq!(r.rows.last().unwrap().copies, 9); // 4 counted + 5 missed
        assert_eq!(r.rows.iter().map(|x| x.copies).sum::<u64>(), 100);
    }
}
