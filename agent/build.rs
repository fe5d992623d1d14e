use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

/// Build `agent-ebpf` for the BPF target and place the object in OUT_DIR, as the
/// aya-template does. Needs nightly with rust-src and bpf-linker: `cargo xtask setup`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
    )
}
