//! `cargo xtask build --arch arm64`: cowtrace (and its workloads and root tests) for
//! another architecture, as a static musl binary linked by the Rust toolchain's own
//! `rust-lld` (cowtrace is pure Rust, so no cross C compiler or target libraries are
//! needed). The kernel programs come with it: `agent/build.rs` builds them through
//! aya-build, which passes the target's architecture to the BPF build as
//! `bpf_target_arch`, so kprobe arguments are read from that architecture's `pt_regs`.
use crate::util;
use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;
use std::process::Command;

/// An architecture cowtrace is built for: the name users say, and its Rust target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arch {
    pub name: &'static str,
    pub target: &'static str,
}

pub const X86_64: Arch = Arch {
    name: "x86_64",
    target: "x86_64-unknown-linux-musl",
};
pub const ARM64: Arch = Arch {
    name: "arm64",
    target: "aarch64-unknown-linux-musl",
};

/// `x86_64`/`amd64`, `arm64`/`aarch64`.
pub fn arch(name: &str) -> Result<Arch> {
    match name {
        "x86_64" | "amd64" | "x86-64" => Ok(X86_64),
        "arm64" | "aarch64" => Ok(ARM64),
        other => bail!("unknown architecture {other:?}: use x86_64 or arm64"),
    }
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The architecture to build for: x86_64 or arm64 (aarch64).
    #[arg(long, default_value = "arm64")]
    pub arch: String,
    /// Also the ground-truth workloads (cowload, cowbench) and these root-test binaries
    /// (names of agent/tests/*.rs), as `vmtest` needs them.
    #[arg(long, value_delimiter = ',')]
    pub tests: Vec<String>,
}

pub fn run(args: BuildArgs) -> Result<()> {
    let arch = arch(&args.arch)?;
    let bin = build(arch, &["--bin", "cowtrace"])?;
    println!("[build] {}", bin.display());
    if !args.tests.is_empty() {
        build(arch, &["--example", "cowload", "--example", "cowbench"])?;
        let mut a = vec!["--no-run"];
        for t in &args.tests {
            a.extend(["--test", t.as_str()]);
        }
        test_build(arch, &a)?;
    }
    Ok(())
}

/// The rust-lld of the default toolchain (`rustc --print sysroot`).
pub fn rust_lld() -> Result<PathBuf> {
    let sysroot = util::output(Command::new("rustc").args(["--print", "sysroot"]))?;
    let host = util::output(Command::new("rustc").args(["-vV"]))?
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .context("rustc -vV names no host")?;
    let lld = PathBuf::from(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/rust-lld");
    if !lld.exists() {
        bail!(
            "{} is missing: the default Rust toolchain ships rust-lld; reinstall it with rustup",
            lld.display()
        );
    }
    Ok(lld)
}

/// `cargo` set up to link `arch`'s target with rust-lld (the host's own target keeps
/// its usual linker).
pub fn cargo_for(arch: Arch) -> Result<Command> {
    let mut cmd = util::cargo();
    if arch != X86_64 {
        let var = format!(
            "CARGO_TARGET_{}_LINKER",
            arch.target.to_uppercase().replace('-', "_")
        );
        cmd.env(var, rust_lld()?);
    }
    Ok(cmd)
}

/// `cargo build --release --target T -p agent ARGS`; the path of `cowtrace` for `T`.
pub fn build(arch: Arch, args: &[&str]) -> Result<PathBuf> {
    util::run(
        cargo_for(arch)?
            .args(["build", "--release", "--target", arch.target, "-p", "agent"])
            .args(args),
    )?;
    Ok(release_dir(arch).join("cowtrace"))
}

/// `cargo test --release --target T -p agent ARGS` (with `--no-run`: the test binaries).
pub fn test_build(arch: Arch, args: &[&str]) -> Result<String> {
    let out = cargo_for(arch)?
        .args(["test", "--release", "--target", arch.target, "-p", "agent"])
        .args(args)
        .args(["--message-format", "json"])
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "cargo test --no-run --target {} failed:\n{}",
            arch.target,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `cargo build --release --target T -p xtask`: the vmtest guest runner (`xtask
/// vmtest-guest`) for `arch`; its path.
pub fn build_xtask(arch: Arch) -> Result<PathBuf> {
    util::run(cargo_for(arch)?.args([
        "build",
        "--release",
        "--target",
        arch.target,
        "-p",
        "xtask",
    ]))?;
    Ok(release_dir(arch).join("xtask"))
}

pub fn release_dir(arch: Arch) -> PathBuf {
    util::repo_root()
        .join("target")
        .join(arch.target)
        .join("release")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_each_architecture() {
        assert_eq!(arch("aarch64").unwrap(), ARM64);
        assert_eq!(arch("arm64").unwrap().target, "aarch64-unknown-linux-musl");
        assert_eq!(arch("amd64").unwrap(), X86_64);
        assert!(
            arch("riscv64")
                .unwrap_err()
                .to_string()
                .contains("x86_64 or arm64")
        );
    }
}
