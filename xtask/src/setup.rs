//! `cargo xtask setup`: install whatever the build and the tests need, idempotently.
//!
//! Every step first checks and prints `[setup] <what>: already present`, so on a machine
//! that is already set up this costs a few seconds (CI reuses the session's machine).

use crate::util;
use anyhow::{Context as _, Result, bail};
use std::path::Path;
use std::process::Command;

/// Debian packages: LLVM 22 for bpf-linker (matches nightly's LLVM), Redis for the demo
/// and the Redis tests, bpftrace/bpftool for cross-checks, strace (the ground truth of
/// the sync-call counts in agent/tests/writes.rs), Chromium, in which the tests load
/// `report --html` pages, Prometheus (with promtool), which scrapes `cowtrace serve` in
/// the tests and checks the alert rules, podman with runc (the container tests and the
/// image of `cargo xtask dist`; crun refuses this host's hybrid cgroups), man-db (`man -w`
/// finds the installed pages) and file,
/// and for `xtask vmtest`: QEMU, a static busybox and cpio for the guests' initramfs, xz
/// for the 6.12 kernel's modules, e2fsprogs for the guests' disk.
const APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "redis-server",
    "redis-tools",
    "tmux",
    "bpftrace",
    "bpftool",
    "chromium",
    "prometheus",
    "podman",
    "runc",
    "strace",
    "man-db",
    "file",
    // Valkey's build (setup step 5).
    "build-essential",
    "pkg-config",
    "qemu-system-x86",
    // `vmtest --arch arm64` (qemu-system-aarch64).
    "qemu-system-arm",
    "busybox-static",
    "cpio",
    "xz-utils",
    "e2fsprogs",
];

/// The static release target of `cargo xtask dist`.
const MUSL_TARGET: &str = crate::dist::TARGET;

const LLVM_DIR: &str = "/usr/lib/llvm-22";

/// The vendored Valkey source (its README: `../shared/vendor/README.md` from the repo),
/// built once into `target/` (never committed): Valkey is in no package list here, and
/// the root tests run real Valkey servers and its `fork.so` test module.
const VALKEY: &str = "valkey-8.0-dev";
/// Overrides where the Valkey source tarball is read from.
const VALKEY_TARBALL_ENV: &str = "COWTRACE_VALKEY_TARBALL";

pub fn run() -> Result<()> {
    apt_packages().context("setup step 1 (apt packages) failed")?;
    nightly().context("setup step 2 (nightly toolchain + rust-src) failed")?;
    bpf_linker().context("setup step 3 (bpf-linker) failed")?;
    tracefs().context("setup step 4 (tracefs) failed")?;
    musl_target().context("setup step 5 (Rust targets for static builds) failed")?;
    valkey().context("setup step 6 (Valkey from the vendored source) failed")?;
    arm64_packages().context("setup step 7 (Debian's arm64 package lists) failed")?;
    println!("[setup] done");
    Ok(())
}

fn apt_installed(pkg: &str) -> bool {
    util::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
        .is_ok_and(|s| s.trim() == "install ok installed")
}

fn apt_packages() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| !apt_installed(p))
        .collect();
    for p in APT_PACKAGES {
        if !missing.contains(p) {
            println!("[setup] apt {p}: already present");
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    println!("[setup] apt {list}: installing ...");
    if !util::is_root() || !util::on_path("apt-get") {
        bail!(
            "apt packages missing: {list}; installing them needs root and apt-get. Run \
             `cargo xtask setup` as root, or install them yourself: \
             `sudo apt-get update && sudo apt-get install -y --no-install-recommends {list}`"
        );
    }
    util::run(Command::new("apt-get").args(["update", "-q"]))?;
    util::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still: Vec<&str> = missing
        .iter()
        .copied()
        .filter(|p| !apt_installed(p))
        .collect();
    if !still.is_empty() {
        bail!(
            "apt-get finished but these are still not installed: {}",
            still.join(" ")
        );
    }
    Ok(())
}

fn nightly() -> Result<()> {
    if !util::on_path("rustup") {
        bail!("rustup is not on PATH; install it from https://rustup.rs (the build needs nightly)");
    }
    // Use whatever nightly is there; never pin a dated one (it would need a download).
    let toolchains = util::output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains
        .lines()
        .any(|l| l.trim_start().starts_with("nightly"))
    {
        println!("[setup] nightly toolchain: already present");
    } else {
        println!("[setup] nightly toolchain: installing ...");
        util::run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    // rust-src is needed by `-Z build-std=core` for bpfel-unknown-none.
    let components = util::output(Command::new("rustup").args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))?;
    if components.lines().any(|l| l.trim().starts_with("rust-src")) {
        println!("[setup] rust-src (nightly): already present");
    } else {
        println!("[setup] rust-src (nightly): installing ...");
        util::run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    Ok(())
}

/// `rustup target add` for the default toolchain: `cargo xtask dist` builds the static
/// binary with it (pure Rust, so no musl-gcc is needed).
/// `vmtest --arch arm64` downloads Debian's arm64 kernels, busybox, Redis and their
/// libraries with `apt-get download` (never installed on this host): dpkg must know the
/// architecture and apt must have its lists.
fn arm64_packages() -> Result<()> {
    let foreign = util::output(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if foreign.lines().any(|l| l.trim() == "arm64") {
        println!("[setup] dpkg architecture arm64: already present");
        return Ok(());
    }
    if !util::is_root() {
        bail!(
            "dpkg does not know arm64; run `sudo dpkg --add-architecture arm64 && sudo apt-get update`"
        );
    }
    println!("[setup] dpkg architecture arm64: adding, then apt-get update ...");
    util::run(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
    util::run(Command::new("apt-get").args(["update", "-q"]))
}

/// The arm64 one is for `cargo xtask build --arch arm64`, `dist` and `vmtest --arch arm64`.
fn musl_target() -> Result<()> {
    let installed = util::output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    for target in [MUSL_TARGET, crate::cross::ARM64.target] {
        if installed.lines().any(|l| l.trim() == target) {
            println!("[setup] rust target {target}: already present");
            continue;
        }
        println!("[setup] rust target {target}: installing ...");
        util::run(Command::new("rustup").args(["target", "add", target]))?;
    }
    Ok(())
}

fn bpf_linker_present() -> bool {
    if util::succeeds(Command::new("bpf-linker").arg("--version")) {
        return true;
    }
    util::cargo_bin_dir()
        .map(|d| d.join("bpf-linker"))
        .is_some_and(|p| util::succeeds(Command::new(p).arg("--version")))
}

fn bpf_linker() -> Result<()> {
    if bpf_linker_present() {
        println!("[setup] bpf-linker: already present");
        return Ok(());
    }
    println!("[setup] bpf-linker: installing ... (builds against LLVM 22, about 4 minutes)");
    if !Path::new(LLVM_DIR).join("bin").is_dir() {
        bail!("{LLVM_DIR} is missing; install llvm-22-dev first (setup step 1)");
    }
    // Without LLVM 22's bin dir first on PATH, llvm-sys finds /usr's llvm-config and fails
    // with `unable to find library -lLLVM`.
    util::run(
        Command::new("cargo")
            .env("PATH", util::path_with(&Path::new(LLVM_DIR).join("bin")))
            .env("LLVM_PREFIX", LLVM_DIR)
            .args([
                "install",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]),
    )?;
    if !bpf_linker_present() {
        bail!("bpf-linker was installed but `bpf-linker --version` still does not run");
    }
    Ok(())
}

fn tracefs() -> Result<()> {
    let tracing = Path::new("/sys/kernel/tracing");
    if tracing.join("events").is_dir() {
        println!("[setup] tracefs: already present");
        return Ok(());
    }
    println!(
        "[setup] tracefs: installing ... (mount -t tracefs nodev {})",
        tracing.display()
    );
    if !util::is_root() {
        bail!(
            "tracefs is not mounted at /sys/kernel/tracing; run as root: `mount -t tracefs nodev /sys/kernel/tracing`"
        );
    }
    util::run(
        Command::new("mount")
            .args(["-t", "tracefs", "nodev"])
            .arg(tracing),
    )?;
    if !tracing.join("events").is_dir() {
        bail!(
            "mounted tracefs but {} still does not exist",
            tracing.join("events").display()
        );
    }
    Ok(())
}

/// Build Valkey (the server, cli, benchmark and the `fork.so` test module) into
/// `target/valkey-8.0-dev` when it is not there: about 70 s on two cores, once.
fn valkey() -> Result<()> {
    let target = util::repo_root().join("target");
    let dir = target.join(VALKEY);
    let server = dir.join("src/valkey-server");
    let module = dir.join("tests/modules/fork.so");
    if server.is_file() && module.is_file() {
        println!("[setup] valkey ({}): already present", dir.display());
        return Ok(());
    }
    println!(
        "[setup] valkey: building into {} ... (about 70 s)",
        dir.display()
    );
    if !dir.join("Makefile").is_file() {
        let tarball = std::env::var_os(VALKEY_TARBALL_ENV)
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                util::repo_root()
                    .join("../shared/vendor")
                    .join(format!("{VALKEY}.tar.gz"))
            });
        if !tarball.is_file() {
            bail!(
                "the Valkey source {} is missing; put it there or name it with {VALKEY_TARBALL_ENV}",
                tarball.display()
            );
        }
        std::fs::create_dir_all(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        util::run(
            Command::new("tar")
                .arg("xzf")
                .arg(&tarball)
                .arg("-C")
                .arg(&target),
        )?;
    }
    if !server.is_file() {
        util::run(
            Command::new("make")
                .arg("-C")
                .arg(&dir)
                .args(["-j2", "BUILD_TLS=no"]),
        )?;
    }
    if !module.is_file() {
        util::run(
            Command::new("make")
                .arg("-C")
                .arg(dir.join("tests/modules"))
                .arg("fork.so"),
        )?;
    }
    if !server.is_file() || !module.is_file() {
        bail!(
            "make finished but {} or {} is missing",
            server.display(),
            module.display()
        );
    }
    Ok(())
}
