//! `cowtrace check`: what this host allows, and whether cowtrace can run here.
use std::fmt::Write as _;

use crate::{
    kernel::btf::{KernelBtf, btf_path},
    kernel::loader::{self, BTF_TRACEPOINTS, COW_HOOKS, LoadOptions},
    kernel::privileges,
    procfs,
    text::units::fmt_bytes,
};

#[derive(Debug, Clone)]
pub struct Item {
    pub name: &'static str,
    /// Some(false) makes cowtrace unable to run; None is information only.
    pub ok: Option<bool>,
    pub detail: String,
}

fn item(name: &'static str, ok: Option<bool>, detail: impl Into<String>) -> Item {
    Item {
        name,
        ok,
        detail: detail.into(),
    }
}

pub fn run() -> Vec<Item> {
    let mut items = Vec::new();
    let (euid, caps) = privileges::current();
    let priv_ok = privileges::require().is_ok();
    items.push(item(
        "privileges",
        Some(priv_ok),
        if priv_ok {
            format!("ok (euid {euid}, CapEff {caps:#x})")
        } else {
            privileges::NEED_ROOT.to_string()
        },
    ));
    items.push(item(
        "kernel",
        None,
        format!("{} {}", procfs::kernel_release(), std::env::consts::ARCH),
    ));

    let path = btf_path();
    let btf = KernelBtf::open(&path);
    match &btf {
        Ok(b) => match b.offsets() {
            Ok(o) => items.push(item(
                "BTF",
                Some(true),
                format!(
                    "ok: {} (task_struct.exit_code at +{})",
                    path.display(),
                    o.task_exit_code
                ),
            )),
            Err(e) => items.push(item("BTF", Some(false), e.to_string())),
        },
        Err(e) => items.push(item("BTF", Some(false), e.to_string())),
    }
    if let Ok(b) = &btf {
        let missing: Vec<_> = BTF_TRACEPOINTS
            .iter()
            .filter(|t| !b.has_btf_tracepoint(t))
            .collect();
        items.push(item(
            "tp_btf hooks",
            Some(missing.is_empty()),
            if missing.is_empty() {
                format!("present: {}", BTF_TRACEPOINTS.join(", "))
            } else {
                format!("missing from this kernel: {missing:?}")
            },
        ));
    }

    if priv_ok && btf.is_ok() {
        match loader::load(&LoadOptions {
            auto_redis: false,
            hot_ring_bytes: 1 << 16,
            ..Default::default()
        }) {
            Ok(mut probes) => {
                items.push(item(
                    "tracepoint",
                    Some(true),
                    "ok: syscalls/* and sched/* attach",
                ));
                items.push(item(
                    "tp_btf",
                    Some(true),
                    "ok: fork, exit, page_fault_user, mm_page_alloc attach",
                ));
                let optional = loader::parse_btf(&path)
                    .map(|b| loader::probe_optional(&mut probes.ebpf, &b))
                    .unwrap_or_default();
                for r in &optional {
                    let detail = if r.ok {
                        "ok".to_string()
                    } else {
                        format!("refused: {}", r.detail)
                    };
                    items.push(item(r.kind, None, detail));
                }
                let fentry_ok = optional.iter().any(|r| r.kind == "fentry" && r.ok);
                items.push(item(
                    "COW method",
                    None,
                    format!(
                        "tracepoint ({COW_HOOKS}){}",
                        if fentry_ok {
                            "; fentry is available but not used by this version"
                        } else {
                            "; fentry refused here, so the tracepoint path is the one in use"
                        }
                    ),
                ));
            }
            Err(e) => items.push(item("attach", Some(false), loader::chain(&e))),
        }
    } else {
        items.push(item("attach", None, "not tried (needs root and BTF)"));
    }

    items.push(item(
        "THP",
        None,
        procfs::thp_mode().unwrap_or_else(|| "unknown".into()),
    ));
    items.push(item(
        "overcommit",
        None,
        match procfs::overcommit_memory() {
            Some(0) => {
                "vm.overcommit_memory = 0 (heuristic: a large fork may fail; Redis recommends 1)"
                    .to_string()
            }
            Some(1) => "vm.overcommit_memory = 1 (always, as Redis recommends)".to_string(),
            Some(v) => format!("vm.overcommit_memory = {v} (strict: BGSAVE fork may fail)"),
            None => "unknown".to_string(),
        },
    ));
    let redis = procfs::find_redis(std::path::Path::new("/proc"));
    let mut detail = format!("{} found", redis.len());
    for r in &redis {
        let _ = write!(
            detail,
            "\n{:14}pid {} {} port {} RSS {}",
            "",
            r.pid,
            r.comm,
            r.port.map_or("?".to_string(), |p| p.to_string()),
            procfs::rss_bytes(r.pid).map_or("?".to_string(), fmt_bytes)
        );
    }
    items.push(item("Redis", None, detail));
    items
}

pub fn can_run(items: &[Item]) -> bool {
    items.iter().all(|i| i.ok != Some(false))
}

pub fn render(items: &[Item]) -> String {
    let mut s = String::new();
    for i in items {
        let mark = match i.ok {
            Some(true) => "ok  ",
            Some(false) => "FAIL",
            None => "    ",
        };
        let _ = writeln!(s, "{mark} {:<12} {}", i.name, i.detail);
    }
    let verdict = if can_run(items) {
        "cowtrace can run on this host"
    } else {
        "cowtrace cannot run on this host (see FAIL lines)"
    };
    let _ = writeln!(s, "{verdict}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_follows_fail_lines() {
        let good = vec![item("a", Some(true), "ok"), item("b", None, "info")];
        assert!(can_run(&good));
        assert!(render(&good).ends_with("cowtrace can run on this host\n"));
        let bad = vec![item("a", Some(false), "no BTF")];
        assert!(!can_run(&bad));
        assert!(render(&bad).contains("FAIL a            no BTF"));
    }
}
