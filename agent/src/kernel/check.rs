//! `cowtrace check`: what this host allows, and whether cowtrace can run here.
use std::fmt::Write as _;

use crate::{
    kernel::btf::{KernelBtf, btf_path, read_btf},
    kernel::hooks::{self, HOOKS_ENV, Policy},
    kernel::loader::{self, BTF_TRACEPOINTS, Hooks, LoadOptions, Probes, ProtoChecks},
    kernel::privileges,
    procfs::{self, sockets},
    text::{error::chain_of, units::fmt_bytes},
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

    // The BTF file is read once; btf-rs (offsets, hooks) and aya (loading) parse it.
    let path = btf_path();
    let bytes = read_btf(&path);
    let btf = bytes
        .as_ref()
        .map_err(|e| e.to_string())
        .and_then(|b| KernelBtf::from_file_or_bytes(&path, b).map_err(|e| e.to_string()));
    let offsets = match &btf {
        Ok(b) => match b.offsets() {
            Ok(o) => {
                items.push(item(
                    "BTF",
                    Some(true),
                    format!(
                        "ok: {} (task_struct.exit_code at +{})",
                        path.display(),
                        o.task_exit_code
                    ),
                ));
                Some(o)
            }
            Err(e) => {
                items.push(item("BTF", Some(false), e.to_string()));
                None
            }
        },
        Err(e) => {
            items.push(item("BTF", Some(false), e.clone()));
            None
        }
    };
    let protos = btf.as_ref().map(ProtoChecks::of).unwrap_or_default();
    let policy = match std::env::var(HOOKS_ENV) {
        Err(_) => Some(Policy::Auto),
        Ok(v) => Policy::parse(&v),
    };
    if policy.is_none() {
        items.push(item(
            "hooks",
            Some(false),
            format!("{HOOKS_ENV} must be `auto`, `tracepoint` or `classic`"),
        ));
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
    drop(btf);

    // Probes are detached in the background while the rest is read, and joined before
    // `run` returns.
    let mut detaching = None;
    match (priv_ok, offsets, &bytes) {
        (true, Some(offsets), Ok(bytes)) => {
            let loaded = loader::parse_btf(bytes, &path)
                .map_err(|e| chain_of(&e))
                .and_then(|btf| {
                    let opts = LoadOptions {
                        auto_redis: false,
                        hot_ring_bytes: 1 << 16,
                        hooks: policy.unwrap_or_default(),
                        ..Default::default()
                    };
                    loader::load_with(&opts, offsets, &btf, Hooks::OnePerCategory, &protos)
                        .map(|p| (p, btf))
                        .map_err(|e| chain_of(&e))
                });
            match loaded {
                Ok((mut probes, btf)) => {
                    items.extend(attach_items(&mut probes, &btf));
                    detaching = Some(std::mem::take(&mut probes.links).detach_in_background());
                }
                Err(e) => items.push(item("attach", Some(false), e)),
            }
        }
        _ => items.push(item("attach", None, "not tried (needs root and BTF)")),
    }
    drop(bytes);

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
            "\n{:14}pid {} {} {} RSS {}",
            "",
            r.pid,
            r.comm,
            sockets::instance_name(r.pid),
            procfs::rss_bytes(r.pid).map_or("?".to_string(), fmt_bytes)
        );
    }
    items.push(item("Redis", None, detail));
    if let Some(d) = detaching {
        d.wait();
    }
    items
}

/// What loading and attaching proved, and the optional attach types.
fn attach_items(probes: &mut Probes, btf: &aya::Btf) -> Vec<Item> {
    let mut items = vec![
        item(
            "tracepoint",
            Some(true),
            "ok: the syscall programs (tp_btf/sys_enter + sys_exit, or with \
             COWTRACE_HOOKS=classic every syscalls/* program) and oom/mark_victim load; \
             one of each kind attaches",
        ),
        item(
            "tp_btf",
            Some(true),
            format!("ok: {} load and attach", BTF_TRACEPOINTS.join(", ")),
        ),
    ];
    let optional = loader::probe_optional(&mut probes.ebpf, btf, &mut probes.links);
    for r in &optional {
        let detail = if r.ok {
            "ok".to_string()
        } else {
            format!("refused: {}", r.detail)
        };
        items.push(item(r.kind, None, detail));
    }
    // x86-64: BTF tracepoints, which cost what fentry costs (about 3 ns a hit); other
    // architectures: the write-protect fault handler (`kernel::cow`).
    items.push(item(
        "COW method",
        None,
        format!("{}: {}", probes.cow.method.word(), probes.cow.describe()),
    ));
    for c in &probes.paths {
        items.push(item(c.measurement, None, c.describe()));
    }
    items.push(item(
        "paths",
        None,
        format!("fentry {}", hooks::fentry_summary(&probes.paths)),
    ));
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
