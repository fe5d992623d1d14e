//! Developer tasks for cowtrace: `cargo xtask <setup|build|test|demo|bench|soak|dist|vmtest>`.
//!
//! The project's own files must install everything a fresh machine needs (see
//! `/work/shared/TOOLCHAIN.md`), so `setup` is idempotent and `test` / `demo` call it
//! first. CI runs `.ci/run`, which is just `cargo xtask test`.

mod bench;
mod cross;
mod demo;
mod dist;
mod redis;
mod setup;
mod soak;
mod test;
mod util;
mod vmtest;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "cowtrace developer tasks")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing (apt packages, nightly + rust-src, bpf-linker, tracefs,
    /// the musl target).
    Setup,
    /// Cross-build cowtrace for another architecture (static musl, linked by rust-lld):
    /// target/<target>/release/cowtrace.
    Build(cross::BuildArgs),
    /// Run setup, the unit tests, the root integration tests (needs root), then the kernel
    /// matrix (`vmtest`).
    Test(test::TestArgs),
    /// Run setup, build release, and show `cowtrace watch` on a local Redis doing BGSAVEs.
    Demo,
    /// Run setup, build release, run the benchmarks and write bench/RESULTS.md (needs root).
    Bench(bench::BenchArgs),
    /// Run cowtrace for N minutes against a Redis saving every few seconds; writes bench/SOAK.md.
    Soak(soak::SoakArgs),
    /// Build the release artifacts in target/dist/: static tarball, .deb, container
    /// image, SHA256SUMS.
    Dist(dist::DistArgs),
    /// Boot Debian's 6.1 and 6.12 kernels under QEMU and run the ground-truth tests in them
    /// (x86-64 guests, or arm64 ones with --arch arm64).
    Vmtest(vmtest::VmtestArgs),
    /// The test runner inside a vmtest guest (started by the guest's /init).
    #[command(hide = true)]
    VmtestGuest { plan: std::path::PathBuf },
}

fn main() {
    let cli = Cli::parse();
    // Tools that `cargo install` puts in ~/.cargo/bin (bpf-linker) must be visible to
    // every child we start, including aya-build's nested `cargo +nightly`.
    util::ensure_cargo_bin_on_path();
    let result = match cli.command {
        Cmd::Setup => setup::run(),
        Cmd::Build(args) => cross::run(args),
        Cmd::Test(args) => test::run(args),
        Cmd::Demo => demo::run(),
        Cmd::Bench(args) => bench::run(args),
        Cmd::Soak(args) => soak::run(args),
        Cmd::Dist(args) => dist::run(args),
        Cmd::Vmtest(args) => vmtest::run_cli(args),
        Cmd::VmtestGuest { plan } => vmtest::guest(&plan),
    };
    // Print the error chain ourselves: anyhow's Debug output adds a backtrace whenever
    // RUST_BACKTRACE is set, which buries the message in CI logs.
    if let Err(e) = result {
        eprintln!("xtask: error: {e}");
        for cause in e.chain().skip(1) {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}
