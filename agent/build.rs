use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};
use sha2::{Digest as _, Sha256};

/// Build `agent-ebpf` for the BPF target and place the object in OUT_DIR, as the
/// aya-template does (needs nightly with rust-src and bpf-linker: `cargo xtask setup`),
/// then embed what `cowtrace --version` and the trace's `meta.build` say about this build.
fn main() -> anyhow::Result<()> {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .ok_or_else(|| anyhow!("agent crate has no parent directory"))?
        .join("agent-ebpf");
    let root_dir = root.to_str().context("agent-ebpf path is not UTF-8")?;
    aya_build::build_ebpf(
        [Package {
            name: "agent-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::default(),
    )?;
    build_info(manifest_dir)
}

/// `COWTRACE_GIT_COMMIT`, `COWTRACE_BUILD_UNIX`, `COWTRACE_TARGET` and
/// `COWTRACE_BPF_OBJECT_SHA256` for `cowtrace::build_info`.
fn build_info(manifest_dir: &Path) -> anyhow::Result<()> {
    // The object `kernel::loader` embeds with include_bytes_aligned!.
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").context("OUT_DIR is not set")?);
    let object = out_dir.join("agent");
    let bpf_sha256 = match std::fs::read(&object) {
        Ok(bytes) => hex(&Sha256::digest(&bytes)),
        // AYA_BUILD_SKIP builds nothing; the crate then fails to embed it anyway.
        Err(_) => "unknown".to_string(),
    };
    println!("cargo:rustc-env=COWTRACE_BPF_OBJECT_SHA256={bpf_sha256}");

    let commit = git(manifest_dir, &["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=COWTRACE_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves: a commit or a checkout changes HEAD or the ref it names
    // (a loose ref, or packed-refs). Paths from `git rev-parse --git-path` are right in a
    // linked worktree too, and relative to the directory git ran in.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(manifest_dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(p) = git(manifest_dir, &["rev-parse", "--git-path", &name]) {
            let p = manifest_dir.join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }

    // Reproducible builds (https://reproducible-builds.org/specs/source-date-epoch/): the
    // date is SOURCE_DATE_EPOCH when it is set, else the time of this build.
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let date = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => s
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?,
        Err(_) => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    println!("cargo:rustc-env=COWTRACE_BUILD_UNIX={date}");
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=COWTRACE_TARGET={target}");
    Ok(())
}

/// Trimmed stdout of a git command that succeeded, or None (no git, not a checkout).
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
