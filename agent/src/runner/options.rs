//! Settings from the environment, parsed once at start-up. They exist for the tests
//! (tiny rings make events drop, to prove that totals stay exact; the tracepoint path
//! forced on a kernel that allows fentry) and for tuning; a value that does not parse is
//! an error, never silently ignored.
use thiserror::Error;

use crate::kernel::{
    hooks::{HOOKS_ENV, Policy},
    loader::LoadOptions,
};

/// `COWTRACE_HOT_RING_BYTES`: size of the detail ring (COW copies, writes, syncs, block
/// requests).
pub const HOT_RING_BYTES: &str = "COWTRACE_HOT_RING_BYTES";
/// `COWTRACE_PROC_RING_BYTES`: size of the session ring (forks, exits, titles, renames).
pub const PROC_RING_BYTES: &str = "COWTRACE_PROC_RING_BYTES";
/// `COWTRACE_HOT_WAKE_BYTES`: the detail ring's fill level that forces a wakeup (above
/// the ring's size, only the 100 ms timer drains it).
pub const HOT_WAKE_BYTES: &str = "COWTRACE_HOT_WAKE_BYTES";
/// `COWTRACE_MAX_ENTRIES`: `MAP=N[,MAP=N...]`, the size of kernel hash maps (the tests
/// make a map too small on purpose, to prove that a full map is counted, not silent).
pub const MAX_ENTRIES: &str = "COWTRACE_MAX_ENTRIES";

/// The kernel maps whose size `COWTRACE_MAX_ENTRIES` may set (agent-ebpf `maps.rs`).
pub const SIZABLE_MAPS: [&str; 10] = [
    "TRACED",
    "SESSIONS",
    "SESSION_PREV",
    "PENDING",
    "DAEMON_GATE",
    "FORK_START",
    "SYSCALL_START",
    "FILES",
    "INODE_OWNER",
    "RQ_START",
];

#[derive(Debug, Error, PartialEq, Eq)]
pub enum OptionError {
    #[error("{name}={value:?} is not a whole number: {want}, or unset it")]
    NotANumber {
        name: &'static str,
        value: String,
        want: &'static str,
    },
    #[error("{name}={value}: must be a power of two of at least 4096 (a ring's size in bytes)")]
    BadRingSize { name: &'static str, value: u32 },
    #[error(
        "{HOOKS_ENV}={0:?}: must be `auto` (the fentry path where the kernel allows it) or `tracepoint`"
    )]
    BadHooks(String),
    #[error(
        "{MAX_ENTRIES}={0:?}: must be MAP=N[,MAP=N...] with N at least 1 and MAP one of {maps}",
        maps = SIZABLE_MAPS.join(", ")
    )]
    BadMaxEntries(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvOverrides {
    pub hot_ring_bytes: Option<u32>,
    pub proc_ring_bytes: Option<u32>,
    pub hot_wake_bytes: Option<u64>,
    /// `COWTRACE_HOOKS`: `tracepoint` forces the tracepoint path of every measurement
    /// that has a fentry path too (kernel/hooks.rs).
    pub hooks: Option<Policy>,
    /// `COWTRACE_MAX_ENTRIES`: (map, entries) pairs.
    pub max_entries: Vec<(&'static str, u32)>,
}

const RING_WANT: &str = "a power of two of at least 4096";

fn number<T: std::str::FromStr>(
    name: &'static str,
    value: Option<String>,
    want: &'static str,
) -> Result<Option<T>, OptionError> {
    let Some(value) = value else { return Ok(None) };
    value
        .trim()
        .parse()
        .map(Some)
        .map_err(|_| OptionError::NotANumber { name, value, want })
}

fn ring(name: &'static str, value: Option<String>) -> Result<Option<u32>, OptionError> {
    match number::<u32>(name, value, RING_WANT)? {
        Some(v) if !v.is_power_of_two() || v < 4096 => {
            Err(OptionError::BadRingSize { name, value: v })
        }
        v => Ok(v),
    }
}

/// `MAP=N[,MAP=N...]` of `COWTRACE_MAX_ENTRIES`, each MAP one of `SIZABLE_MAPS`.
fn max_entries(value: Option<String>) -> Result<Vec<(&'static str, u32)>, OptionError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let bad = || OptionError::BadMaxEntries(value.clone());
    value
        .split(',')
        .map(|pair| {
            let (name, n) = pair.trim().split_once('=').ok_or_else(bad)?;
            let map = SIZABLE_MAPS
                .iter()
                .find(|m| **m == name.trim())
                .ok_or_else(bad)?;
            match n.trim().parse::<u32>() {
                Ok(n) if n >= 1 => Ok((*map, n)),
                _ => Err(bad()),
            }
        })
        .collect()
}

impl EnvOverrides {
    pub fn from_env() -> Result<Self, OptionError> {
        Self::parse(|k| std::env::var(k).ok())
    }

    /// `get` reads a variable (the environment, or a map in the tests).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self, OptionError> {
        Ok(Self {
            hot_ring_bytes: ring(HOT_RING_BYTES, get(HOT_RING_BYTES))?,
            proc_ring_bytes: ring(PROC_RING_BYTES, get(PROC_RING_BYTES))?,
            hot_wake_bytes: number(HOT_WAKE_BYTES, get(HOT_WAKE_BYTES), "bytes")?,
            hooks: match get(HOOKS_ENV) {
                None => None,
                Some(v) => Some(Policy::parse(&v).ok_or(OptionError::BadHooks(v))?),
            },
            max_entries: max_entries(get(MAX_ENTRIES))?,
        })
    }

    pub fn apply(&self, opts: &mut LoadOptions) {
        if let Some(v) = self.hot_ring_bytes {
            opts.hot_ring_bytes = v;
        }
        opts.proc_ring_bytes = self.proc_ring_bytes.or(opts.proc_ring_bytes);
        opts.hot_wake_bytes = self.hot_wake_bytes.or(opts.hot_wake_bytes);
        if let Some(h) = self.hooks {
            opts.hooks = h;
        }
        opts.max_entries.extend_from_slice(&self.max_entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)]) -> Result<EnvOverrides, OptionError> {
        EnvOverrides::parse(|k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn unset_is_none_and_values_apply() {
        assert_eq!(parse(&[]).unwrap(), EnvOverrides::default());
        let o = parse(&[(HOT_RING_BYTES, "65536"), (HOT_WAKE_BYTES, "1048576")]).unwrap();
        let mut opts = LoadOptions::default();
        o.apply(&mut opts);
        assert_eq!(opts.hot_ring_bytes, 65536);
        assert_eq!(opts.hot_wake_bytes, Some(1 << 20));
        assert_eq!(opts.proc_ring_bytes, None);
    }

    #[test]
    fn values_that_do_not_parse_are_errors() {
        let e = parse(&[(PROC_RING_BYTES, "64k")]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "COWTRACE_PROC_RING_BYTES=\"64k\" is not a whole number: a power of two of at least 4096, or unset it"
        );
        assert!(matches!(
            parse(&[(HOT_WAKE_BYTES, "-1")]),
            Err(OptionError::NotANumber { .. })
        ));
        assert_eq!(
            parse(&[(HOT_RING_BYTES, "5000")]).unwrap_err(),
            OptionError::BadRingSize {
                name: HOT_RING_BYTES,
                value: 5000
            }
        );
        assert!(parse(&[(HOT_RING_BYTES, "2048")]).is_err());
        assert_eq!(
            parse(&[(HOOKS_ENV, "kprobe")]).unwrap_err().to_string(),
            "COWTRACE_HOOKS=\"kprobe\": must be `auto` (the fentry path where the kernel allows it) or `tracepoint`"
        );
    }

    #[test]
    fn max_entries_parse_and_apply() {
        let o = parse(&[(MAX_ENTRIES, "SESSIONS=1, TRACED=64")]).unwrap();
        assert_eq!(o.max_entries, vec![("SESSIONS", 1), ("TRACED", 64)]);
        let mut opts = LoadOptions::default();
        o.apply(&mut opts);
        assert_eq!(opts.max_entries, vec![("SESSIONS", 1), ("TRACED", 64)]);
        for bad in [
            "SESSIONS",
            "SESSIONS=0",
            "NOPE=4",
            "HOT_EVENTS=4096",
            "TRACED=x",
        ] {
            let e = parse(&[(MAX_ENTRIES, bad)]).unwrap_err();
            assert_eq!(e, OptionError::BadMaxEntries(bad.to_string()));
            assert!(e.to_string().contains("MAP=N"), "{e}");
        }
    }

    #[test]
    fn hooks_policy_applies() {
        let o = parse(&[(HOOKS_ENV, "tracepoint")]).unwrap();
        let mut opts = LoadOptions::default();
        assert_eq!(opts.hooks, Policy::Auto);
        o.apply(&mut opts);
        assert_eq!(opts.hooks, Policy::Tracepoint);
    }
}
